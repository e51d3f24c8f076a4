"""Export a Toto checkpoint to a Hugging Face `transformers` Llama directory.

Toto is LLaMA with an 8k visual vocabulary, so the export is `LlamaForCausalLM`: `to_llama_config` maps the
architecture field by field (no biases, untied embeddings, `rope_theta = rope_base`, `intermediate_size =
ffn_dim`), and `llama_state_dict` renames tensors. Nothing is permuted: `pretrain.model` already implements RoPE
in HF's rotate-half layout, so Wq and Wk are stored exactly as `q_proj` / `k_proj` expect (with Meta's
interleaved layout, the rows of Wq and Wk would need the permutation HF's conversion script applies).

The export writes `config.json` and `model.safetensors` directly, without instantiating the HF model, so a 1B
export needs one copy of the weights in memory. A model with continuous patch tokens (`patch_dim > 0`) has two
layers Llama has no place for; they go to `toto_patch.safetensors` next to the export so nothing is lost.
`transformers` is a development dependency and is imported inside functions only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import save_file

from . import checkpoint
from .model import Toto, TotoConfig

if TYPE_CHECKING:
    from transformers import LlamaConfig

PATCH_FILE = "toto_patch.safetensors"

# Toto name (inside layers.{i}.) -> Llama name (inside model.layers.{i}.)
_BLOCK_NAMES = {
    "attention.wq.weight": "self_attn.q_proj.weight",
    "attention.wk.weight": "self_attn.k_proj.weight",
    "attention.wv.weight": "self_attn.v_proj.weight",
    "attention.wo.weight": "self_attn.o_proj.weight",
    "feed_forward.w1.weight": "mlp.gate_proj.weight",
    "feed_forward.w3.weight": "mlp.up_proj.weight",
    "feed_forward.w2.weight": "mlp.down_proj.weight",
    "attention_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
}
_TOP_NAMES = {
    "tok_embeddings.weight": "model.embed_tokens.weight",
    "norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_PATCH_NAMES = ("patch_embed.weight", "patch_head.weight")


def to_llama_config(cfg: TotoConfig) -> LlamaConfig:
    """The `transformers.LlamaConfig` whose model computes exactly what `Toto(cfg)` computes."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.dim,
        intermediate_size=cfg.ffn_dim,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_heads,
        head_dim=cfg.head_dim,
        hidden_act="silu",
        max_position_embeddings=cfg.max_seq_len,
        initializer_range=cfg.init_std,
        rms_norm_eps=cfg.norm_eps,
        rope_theta=cfg.rope_base,
        attention_bias=False,
        mlp_bias=False,
        tie_word_embeddings=False,
        bos_token_id=1,  # Toto's video start token (3 starts an image)
        eos_token_id=2,
        pad_token_id=None,
    )


def llama_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Toto tensor names -> `LlamaForCausalLM` names (drop the `model.` prefix and `lm_head` for `LlamaModel`)."""
    out = {}
    for name, tensor in state.items():
        if name in _PATCH_NAMES:
            continue
        if name in _TOP_NAMES:
            out[_TOP_NAMES[name]] = tensor
            continue
        _, index, rest = name.split(".", 2)  # "layers", "{i}", "attention.wq.weight"
        out[f"model.layers.{index}.{_BLOCK_NAMES[rest]}"] = tensor
    return out


def export_hf(ckpt_path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Write a directory that `transformers.LlamaForCausalLM.from_pretrained(out_dir)` loads; returns it."""
    model = checkpoint.load(ckpt_path, expect="toto")  # Llama has no place for GPT-2's or Mamba's blocks
    return export_model(model, out_dir)


def export_model(model: Toto, out_dir: str | os.PathLike) -> Path:
    """`export_hf` for a model already in memory."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    config = to_llama_config(model.config)
    config.architectures = ["LlamaForCausalLM"]
    config.dtype = str(next(iter(state.values())).dtype).removeprefix("torch.")
    config.save_pretrained(out)
    save_file(llama_state_dict(state), str(out / "model.safetensors"), metadata={"format": "pt"})
    patch = {name: state[name] for name in _PATCH_NAMES if name in state}
    if patch:
        save_file(patch, str(out / PATCH_FILE), metadata={"format": "pt"})
    return out
