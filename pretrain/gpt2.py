"""A GPT-2-style decoder with exactly the `Toto` model interface: the paper's Table 6 "GPT-2" ablation.

What differs from Toto (`pretrain/model.py`) is what Table 6 varies, and nothing else: LayerNorm (with bias)
instead of RMSNorm, a 4x GELU MLP (tanh approximation, as GPT-2) instead of SwiGLU, learned absolute position
embeddings added to the input instead of RoPE, and biases on every linear layer of the trunk. Everything the
training loop and the backbone wrapper touch is shared: the model takes embeddings `(B, L, D)`; `embed_tokens`,
`embed_patches`, `hidden_states(h, layers)` (raw block outputs, stopping after the deepest block asked for),
`forward(h)` (final-normed), `logits`, `predict_patches`, `init_weights`, `num_params`, `flops_per_token`; the
heads `output` and `patch_head` are bias-free linear maps as in Toto, so the two models' losses compare.

Blocks are pre-norm as in GPT-2: h + attn(ln_1(h)), then h + mlp(ln_2(h)), and a final LayerNorm. Attention is
causal `F.scaled_dot_product_attention` over a fused qkv projection. Init follows GPT-2: matrices and the
position table normal(0, init_std), residual projections (`attn.c_proj`, `mlp.c_proj`) init_std /
sqrt(2 * n_layers), biases 0, LayerNorm gains 1. Built on the meta device it skips initialisation, like Toto.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from toto_eval.common.errors import ConfigError


@dataclass(frozen=True)
class GPT2Config:
    """Architecture of one GPT-2-style decoder; field names match `TotoConfig` where the meaning is the same."""

    dim: int = 768
    n_layers: int = 12
    n_heads: int = 12
    vocab_size: int = 8192
    ffn_dim: int | None = None  # None -> 4 * dim (GPT-2); resolved in __post_init__ so it is always stored
    norm_eps: float = 1e-5
    max_seq_len: int = 4096  # the size of the learned position table
    patch_dim: int = 0  # > 0: continuous patch tokens of that many values, linear in and linear out
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.ffn_dim is None:
            object.__setattr__(self, "ffn_dim", 4 * self.dim)
        for name in ("dim", "n_layers", "n_heads", "vocab_size", "ffn_dim", "max_seq_len"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"GPT2Config.{name} must be positive, got {getattr(self, name)}")
        if self.dim % self.n_heads:
            raise ConfigError(f"GPT2Config: dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if self.patch_dim < 0:
            raise ConfigError(f"GPT2Config.patch_dim must be >= 0, got {self.patch_dim}")
        for name in ("norm_eps", "init_std"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"GPT2Config.{name} must be positive, got {getattr(self, name)}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)


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


class GPT2(nn.Module):
    """The decoder. Built on the meta device (`with torch.device("meta"): GPT2(cfg)`) it skips initialisation."""

    def __init__(self, config: GPT2Config, seed: int = 0) -> None:
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.patch_embed = nn.Linear(config.patch_dim, config.dim, bias=False) if config.patch_dim else None
        self.pos_embeddings = nn.Embedding(config.max_seq_len, config.dim)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.dim, eps=config.norm_eps)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        self.patch_head = nn.Linear(config.dim, config.patch_dim, bias=False) if config.patch_dim else None
        if not self.output.weight.is_meta:
            self.init_weights(seed)

    @torch.no_grad()
    def init_weights(self, seed: int = 0) -> None:
        """GPT-2 init from a seeded generator: see the module docstring."""
        std = self.config.init_std
        generator = torch.Generator(device=self.output.weight.device).manual_seed(seed)
        for name, param in self.named_parameters():
            if name.endswith(".bias"):
                param.zero_()
            elif param.ndim == 1:  # LayerNorm gains
                param.fill_(1.0)
            elif name.endswith("c_proj.weight"):
                param.normal_(0.0, std / math.sqrt(2 * self.config.n_layers), generator=generator)
            else:
                param.normal_(0.0, std, generator=generator)

    def embed_tokens(self, ids: Tensor) -> Tensor:
        """(B, L) int64 token ids -> (B, L, D)."""
        return self.tok_embeddings(ids)

    def embed_patches(self, patches: Tensor) -> Tensor:
        """(B, L, patch_dim) continuous values -> (B, L, D)."""
        if self.patch_embed is None:
            raise ValueError("this GPT2 has no patch embedding (config.patch_dim is 0)")
        return self.patch_embed(patches)

    def _add_positions(self, h: Tensor) -> Tensor:
        length = h.shape[1]
        if length > self.config.max_seq_len:
            raise ValueError(f"sequence of {length} tokens is longer than max_seq_len={self.config.max_seq_len}")
        return h + self.pos_embeddings.weight[:length].to(h.dtype)  # (L, D) broadcast over the batch

    def hidden_states(self, h: Tensor, layers: list[int] | tuple[int, ...]) -> dict[int, Tensor]:
        """Raw outputs (B, L, D) of the given blocks (negatives count from the end; keys are non-negative).

        Block i's output is taken before the final norm; only blocks 0..max(layers) run.
        """
        n = self.config.n_layers
        wanted = sorted({i + n if i < 0 else i for i in layers})
        if not wanted or wanted[0] < 0 or wanted[-1] >= n:
            raise ValueError(f"layers {list(layers)} are not within a {n}-block GPT2 (0..{n - 1})")
        h = self._add_positions(h)
        out: dict[int, Tensor] = {}
        for i in range(wanted[-1] + 1):
            h = self.layers[i](h)
            if i in wanted:
                out[i] = h
        return out

    def forward(self, h: Tensor) -> Tensor:
        """(B, L, D) input embeddings -> (B, L, D) final-normed hidden states."""
        h = self._add_positions(h)
        for layer in self.layers:
            h = layer(h)
        return self.norm(h)

    def logits(self, hidden: Tensor) -> Tensor:
        """(B, L, D) final hidden -> (B, L, vocab_size) next-token logits."""
        return self.output(hidden)

    def predict_patches(self, hidden: Tensor) -> Tensor:
        """(B, L, D) final hidden -> (B, L, patch_dim) next-patch regression."""
        if self.patch_head is None:
            raise ValueError("this GPT2 has no patch head (config.patch_dim is 0)")
        return self.patch_head(hidden)

    def num_params(self, embeddings: bool = True) -> int:
        """Parameter count; embeddings=False leaves out the input tables (tokens, patches, positions)."""
        skip = set() if embeddings else {"tok_embeddings.weight", "patch_embed.weight", "pos_embeddings.weight"}
        return sum(p.numel() for name, p in self.named_parameters() if name not in skip)

    def flops_per_token(self, seq_len: int) -> float:
        """Forward FLOPs per token: 2 per matmul weight + causal attention scores (as `Toto.flops_per_token`)."""
        matmul = self.num_params(embeddings=False) - sum(p.numel() for p in self.parameters() if p.ndim == 1)
        attention = 2 * self.config.n_layers * seq_len * self.config.dim
        return 2.0 * matmul + attention
