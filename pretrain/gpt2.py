"""A GPT-2-style decoder with exactly the `Toto` model interface: the paper's Table 6 "GPT-2" ablation.

What differs from Toto (`pretrain/model.py`) is what Table 6 varies, and nothing else: LayerNorm (with bias)
instead of RMSNorm, a 4x GELU MLP (tanh approximation, as GPT-2) instead of SwiGLU, learned absolute position
embeddings added to the input instead of RoPE, and biases on every linear layer of the trunk. Everything the
training loop and the backbone wrapper touch is `Decoder`'s (`pretrain/decoder.py`), shared with Toto: embeddings
in, `hidden_states` stopping after the deepest block asked for, the bias-free `output` / `patch_head` heads (so
the two models' losses compare), parameter and FLOP counts. The learned table makes `max_seq_len` a hard limit:
a longer sequence is an error naming `toto-pretrain train --max-seq-len`, the flag that sizes the table.

Blocks are pre-norm as in GPT-2: h + attn(ln_1(h)), then h + mlp(ln_2(h)), and a final LayerNorm. Attention is
causal `F.scaled_dot_product_attention` over a fused qkv projection. Init follows GPT-2: matrices and the
position table normal(0, init_std), residual projections (`attn.c_proj`, `mlp.c_proj`) init_std /
sqrt(2 * n_layers), biases 0, LayerNorm gains 1. Built on the meta device it skips initialisation, like Toto.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from toto_eval.common.errors import ConfigError

from .decoder import AttentionConfig, Decoder


@dataclass(frozen=True)
class GPT2Config(AttentionConfig):
    """Architecture of one GPT-2-style decoder: `AttentionConfig`'s fields, with GPT-2's 4 * dim MLP by default.

    `max_seq_len` is the size of the learned position table: a hard limit on the sequence length.
    """

    def default_ffn_dim(self) -> int:
        return 4 * self.dim


# the same shapes as TOTO_CONFIGS' test and tiny, so an ablation changes the block, not the width or depth
GPT2_CONFIGS: dict[str, GPT2Config] = {
    "test": GPT2Config(dim=64, n_layers=4, n_heads=4, vocab_size=512, ffn_dim=256, max_seq_len=1024),
    "tiny": GPT2Config(dim=256, n_layers=6, n_heads=4, ffn_dim=1024),
}


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPT2Config) -> None:
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.c_attn = nn.Linear(cfg.dim, 3 * cfg.dim)  # q, k, v stacked along the output
        self.c_proj = nn.Linear(cfg.dim, cfg.dim)

    def forward(self, x: Tensor) -> Tensor:
        B, L, D = x.shape
        qkv = self.c_attn(x).view(B, L, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (3, B, H, L, hd)
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=True)  # (B, H, L, hd)
        return self.c_proj(y.transpose(1, 2).reshape(B, L, D))


class MLP(nn.Module):
    def __init__(self, cfg: GPT2Config) -> None:
        super().__init__()
        assert cfg.ffn_dim is not None  # resolved by GPT2Config.__post_init__
        self.c_fc = nn.Linear(cfg.dim, cfg.ffn_dim)
        self.c_proj = nn.Linear(cfg.ffn_dim, cfg.dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    """Pre-norm residual block: h + attn(ln_1(h)), then h + mlp(ln_2(h))."""

    def __init__(self, cfg: GPT2Config) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, h: Tensor) -> Tensor:
        h = h + self.attn(self.ln_1(h))
        return h + self.mlp(self.ln_2(h))


class GPT2(Decoder):
    """The decoder: LayerNorm blocks with GELU MLPs, learned positions added to the input (plumbing: `Decoder`)."""

    config: GPT2Config
    INPUT_TABLES = (*Decoder.INPUT_TABLES, "pos_embeddings.weight")
    block_class, norm_class = Block, nn.LayerNorm  # LayerNorm(dim, eps)

    def add_positions(self) -> None:
        self.pos_embeddings = nn.Embedding(self.config.max_seq_len, self.config.dim)

    def init_parameter(self, name: str, param: Tensor, generator: torch.Generator) -> None:
        """GPT-2 init: see the module docstring."""
        std = self.config.init_std
        if name.endswith(".bias"):
            param.zero_()
        elif param.ndim == 1:  # LayerNorm gains
            param.fill_(1.0)
        elif name.endswith("c_proj.weight"):
            param.normal_(0.0, std / math.sqrt(2 * self.config.n_layers), generator=generator)
        else:
            param.normal_(0.0, std, generator=generator)

    def prepare(self, h: Tensor) -> tuple[Tensor, tuple]:
        """Add the learned positions; a sequence longer than the table is an error that says how to get a longer one."""
        length, limit = h.shape[1], self.config.max_seq_len
        if length > limit:
            raise ConfigError(
                f"sequence of {length} tokens is longer than this GPT-2's learned position table "
                f"(max_seq_len={limit}): pre-train with `toto-pretrain train --max-seq-len {length}` (or more), "
                "or evaluate shorter clips (fewer frames or a lower resolution)"
            )
        return h + self.pos_embeddings.weight[:length].to(h.dtype), ()  # (L, D) broadcast over the batch
