"""The Toto transformer: one LLaMA-style causal decoder, used by pre-training and by the evaluated backbone.

Pre-norm blocks with RMSNorm, a SwiGLU MLP, rotary position embeddings (RoPE) with a configurable base, causal
attention through `F.scaled_dot_product_attention(is_causal=True)`, no biases anywhere, untied input and output
embeddings. This file holds what makes it LLaMA (config, norm, RoPE, attention, MLP, block, init); the plumbing
it shares with the Table 6 ablations is `Decoder` (`pretrain/decoder.py`): the model takes *embeddings*
`(B, L, D)`, not ids, so that discrete tokens (`embed_tokens`) and continuous patch tokens (`embed_patches`, when
`patch_dim > 0`) share one trunk; `hidden_states` returns raw block outputs and stops after the deepest block
asked for, which is what feature extraction needs.

Design choices, and why:
- RoPE uses the rotate-half layout (channel j is paired with channel j + head_dim/2), the layout of Hugging Face
  `LlamaModel`. Meta's original code pairs adjacent channels (2j, 2j+1); the two differ only by a fixed
  permutation of the Wq/Wk output rows. Using HF's layout makes the export to `transformers` a pure renaming of
  tensors, with nothing to permute and nothing to get wrong.
- The cos/sin tables are computed in each forward from the sequence length (O(L * head_dim), negligible next to
  the matmuls), so the model holds no buffers: it can be built on the meta device and loaded with
  `load_state_dict(assign=True)` without initialising 1B parameters first, and `state_dict()` is weights only.
  Nothing learned depends on the length either, so `max_seq_len` records the training length and is no limit:
  a model trained on 4097-token sequences evaluates 4098 (start and end) or 8194 (32 frames) tokens.
- FFN width. With an 8192-token vocabulary and untied embeddings, the LLaMA rule (2/3 * 4 * dim, rounded up to
  a multiple of 256) gives 97.5M / 222M / 1.16B parameters for base / large / 1b, and ffn_dim = 4 * dim gives
  126M / 285M / 1.51B. The paper reports 120M / 280M / 1.1B, so base and large use 4 * dim (without the input
  embedding table: 120M / 277M) and 1b uses the LLaMA rule (1.15B; its 2048 / 22 layers / 5632 is TinyLlama's
  shape). `ffn_dim=None` means the LLaMA rule.
- Init: every matrix is normal(0, init_std) from a seeded generator; the two projections that write into the
  residual stream (attention `wo`, MLP `w2`) use init_std / sqrt(2 * n_layers), because the stream is a sum of
  2 * n_layers such outputs and this keeps its variance at init independent of depth (GPT-2). Norm gains are 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from toto_eval.common.errors import ConfigError

from .decoder import AttentionConfig, Decoder


def llama_ffn_dim(dim: int, multiple_of: int = 256) -> int:
    """The LLaMA SwiGLU width: 2/3 of 4 * dim (same parameters as a 4 * dim GELU MLP), rounded up."""
    hidden = int(2 * 4 * dim / 3)
    return multiple_of * math.ceil(hidden / multiple_of)


@dataclass(frozen=True)
class TotoConfig(AttentionConfig):
    """Architecture of one Toto model. Everything that changes the weights' shapes or the function they compute.

    The shared fields (dim, n_layers, vocab_size, norm_eps, max_seq_len, patch_dim, init_std, n_heads, ffn_dim)
    are `AttentionConfig`'s. RoPE has no learned length: `max_seq_len` records the training length (and HF's
    max_position_embeddings); evaluation may run longer sequences.
    """

    rope_base: float = 10000.0

    def default_ffn_dim(self) -> int:
        return llama_ffn_dim(self.dim)

    def validate(self) -> None:
        super().validate()
        self.require_positive("rope_base")
        if self.head_dim % 2:
            raise ConfigError(f"TotoConfig: head_dim {self.head_dim} must be even for rotary embeddings")


TOTO_CONFIGS: dict[str, TotoConfig] = {
    # unit tests: a forward of a few hundred tokens takes milliseconds on CPU
    "test": TotoConfig(dim=64, n_layers=4, n_heads=4, vocab_size=512, ffn_dim=256, max_seq_len=1024),
    # pre-trainable on a 2-core CPU in ~20 minutes: 10.5M parameters, 4.2M of them input + output embeddings
    "tiny": TotoConfig(dim=256, n_layers=6, n_heads=4, ffn_dim=1024),
    # the studies' extra sizes (pretrain/studies): scaling needs sizes between test and tiny, depth a deep narrow one
    "s32": TotoConfig(dim=32, n_layers=2, n_heads=2, vocab_size=512, ffn_dim=128, max_seq_len=1024),
    "s128": TotoConfig(dim=128, n_layers=4, n_heads=4, vocab_size=512, ffn_dim=512, max_seq_len=1024),
    "deep8": TotoConfig(dim=64, n_layers=8, n_heads=4, vocab_size=512, ffn_dim=256, max_seq_len=1024),
    # the paper's three sizes; see the module docstring for the ffn_dim choice
    "base": TotoConfig(dim=768, n_layers=12, n_heads=12, ffn_dim=4 * 768),
    "large": TotoConfig(dim=1024, n_layers=16, n_heads=16, ffn_dim=4 * 1024),
    "1b": TotoConfig(dim=2048, n_layers=22, n_heads=16, ffn_dim=None),
}


class RMSNorm(nn.Module):
    """x / rms(x) * gain, computed in fp32 (as LLaMA does) so bf16 training does not lose the small variances."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.type_as(x)


def rope_tables(seq_len: int, head_dim: int, base: float, device: torch.device) -> tuple[Tensor, Tensor]:
    """cos and sin, each (L, head_dim), for the rotate-half layout: frequency j drives channels j and j + hd/2."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv_freq)  # (L, hd/2)
    angles = torch.cat([angles, angles], dim=-1)  # (L, hd)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate each (x_j, x_{j+hd/2}) pair of x (B, H, L, hd) by its position's angle; x's dtype out.

    cos and sin stay fp32 whatever x's dtype: rounded to bf16 they would add a 2^-8 relative error to every
    rotation, on top of x's own rounding."""
    x1, x2 = x.chunk(2, dim=-1)
    return (x * cos + torch.cat([-x2, x1], dim=-1) * sin).type_as(x)


class Attention(nn.Module):
    def __init__(self, cfg: TotoConfig) -> None:
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.wo = nn.Linear(cfg.dim, cfg.dim, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        B, L, D = x.shape
        q, k, v = (w(x).view(B, L, self.n_heads, self.head_dim).transpose(1, 2) for w in (self.wq, self.wk, self.wv))
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)  # (B, H, L, hd)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, L, hd)
        return self.wo(y.transpose(1, 2).reshape(B, L, D))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x); w1 is the gate, w3 the up projection, w2 the down projection."""

    def __init__(self, cfg: TotoConfig) -> None:
        super().__init__()
        assert cfg.ffn_dim is not None  # resolved by TotoConfig.__post_init__
        self.w1 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.w2 = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)
        self.w3 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    """Pre-norm residual block: h + attn(norm(h)), then h + mlp(norm(h))."""

    def __init__(self, cfg: TotoConfig) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attention = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.feed_forward = FeedForward(cfg)

    def forward(self, h: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        h = h + self.attention(self.attention_norm(h), cos, sin)
        return h + self.feed_forward(self.ffn_norm(h))


class Toto(Decoder):
    """The decoder: RMSNorm blocks with RoPE attention and SwiGLU (the shared plumbing is `Decoder`'s)."""

    config: TotoConfig
    block_class, norm_class = Block, RMSNorm

    def init_parameter(self, name: str, param: Tensor, generator: torch.Generator) -> None:
        """normal(0, init_std) matrices, residual projections scaled down by sqrt(2 * n_layers), gains 1."""
        std = self.config.init_std
        if param.ndim == 1:
            param.fill_(1.0)
        elif name.endswith(("attention.wo.weight", "feed_forward.w2.weight")):
            param.normal_(0.0, std / math.sqrt(2 * self.config.n_layers), generator=generator)
        else:
            param.normal_(0.0, std, generator=generator)

    def prepare(self, h: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Every block gets the fp32 cos/sin tables of this length; no length limit (RoPE has no table)."""
        return h, rope_tables(h.shape[1], self.config.head_dim, self.config.rope_base, h.device)
