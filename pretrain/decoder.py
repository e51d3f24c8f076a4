"""The decoder base: everything Toto (`model.py`) and the Table 6 ablations (`gpt2.py`, `mamba.py`) share.

The three pre-training decoders differ only in their blocks, their final norm, how positions enter (RoPE inside
attention, a learned table added to the input, or none: a state-space scan is ordered by construction) and their
init. What is the same lives here once, so the training loop, checkpoints and the backbone wrapper see one
interface whatever the architecture:

- inputs are *embeddings* `(B, L, D)`, not ids: `embed_tokens` (discrete codes and the special tokens) and
  `embed_patches` (continuous patch tokens, when `patch_dim > 0`) share one trunk;
- `hidden_states(h, layers)` returns raw block outputs and runs no block past the deepest one asked for (feature
  extraction); `forward(h)` is the final-normed output of the last block; `logits` and `predict_patches` are the
  two bias-free heads, so the architectures' losses compare;
- `num_params` and `flops_per_token` count the same way for all; construction on the meta device skips init.

A subclass names its `block_class` and final `norm_class`, and supplies `init_parameter` (its init rule, one
parameter at a time, from one seeded generator walked in registration order) and, where needed, `add_positions`
and `prepare` (positions), `is_matmul_weight` and `mixing_flops` (FLOP counts).
Registration order is part of the contract: embeddings, [positions], blocks, final norm, heads; it fixes both the
state-dict names and which random numbers each seeded init draws.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from toto_eval.common.errors import ConfigError


@dataclass(frozen=True)
class DecoderConfig:
    """The fields every decoder has; subclasses add theirs, fill derived defaults and add checks."""

    dim: int = 768
    n_layers: int = 12
    vocab_size: int = 8192
    norm_eps: float = 1e-5
    max_seq_len: int = 4096  # the training length; a hard limit only for learned positions (GPT-2)
    patch_dim: int = 0  # > 0: continuous patch tokens of that many values, linear in and linear out
    init_std: float = 0.02

    def __post_init__(self) -> None:
        self.resolve_defaults()
        self.require_positive("dim", "n_layers", "vocab_size", "max_seq_len", "norm_eps", "init_std")
        if self.patch_dim < 0:
            raise ConfigError(f"{type(self).__name__}.patch_dim must be >= 0, got {self.patch_dim}")
        self.validate()

    def resolve_defaults(self) -> None:
        """Fill derived fields left as None (e.g. ffn_dim), so the stored config always says what was built."""

    def validate(self) -> None:
        """Architecture-specific checks; raise ConfigError."""

    def require_positive(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"{type(self).__name__}.{name} must be positive, got {value}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class AttentionConfig(DecoderConfig):
    """The fields of the attention decoders (Toto, GPT-2): heads and the MLP width."""

    n_heads: int = 12
    ffn_dim: int | None = None  # None -> default_ffn_dim(); resolved in __post_init__ so it is always stored

    def default_ffn_dim(self) -> int:
        raise NotImplementedError

    def resolve_defaults(self) -> None:
        if self.ffn_dim is None:
            object.__setattr__(self, "ffn_dim", self.default_ffn_dim())

    def validate(self) -> None:
        self.require_positive("n_heads", "ffn_dim")
        if self.dim % self.n_heads:
            raise ConfigError(f"{type(self).__name__}: dim {self.dim} is not divisible by n_heads {self.n_heads}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


class Decoder(nn.Module):
    """A causal decoder over embeddings. Built on the meta device (`with torch.device("meta"): ...`) it skips init."""

    INPUT_TABLES: tuple[str, ...] = ("tok_embeddings.weight", "patch_embed.weight")  # lookups, not matmuls
    block_class: type[nn.Module]  # Block(config): (h, *prepare's extra arguments) -> h
    norm_class: type[nn.Module]  # the final norm: Norm(dim, eps)

    def __init__(self, config: DecoderConfig, seed: int = 0) -> None:
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.patch_embed = nn.Linear(config.patch_dim, config.dim, bias=False) if config.patch_dim else None
        self.add_positions()
        self.layers = nn.ModuleList(self.block_class(config) for _ in range(config.n_layers))
        self.norm = self.norm_class(config.dim, config.norm_eps)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        self.patch_head = nn.Linear(config.dim, config.patch_dim, bias=False) if config.patch_dim else None
        if not self.output.weight.is_meta:
            self.init_weights(seed)

    # --- what an architecture supplies -----------------------------------------------------------------------

    def add_positions(self) -> None:
        """Register input position parameters here (GPT-2's table), between the embeddings and the blocks."""

    def prepare(self, h: Tensor) -> tuple[Tensor, tuple]:
        """(input to block 0, extra arguments every block takes) for input embeddings h (B, L, D)."""
        return h, ()

    def init_parameter(self, name: str, param: Tensor, generator: torch.Generator) -> None:
        raise NotImplementedError

    def is_matmul_weight(self, name: str, param: Tensor) -> bool:
        """Whether a (non-input-table) parameter costs 2 FLOPs per element per token; vectors do not."""
        return param.ndim > 1

    def mixing_flops(self, seq_len: int) -> float:
        """Forward FLOPs per token of mixing across positions: causal attention scores by default.

        QK^T and AV cost 2 * 2 * L * D per token per layer without masking; causal halves it.
        """
        return 2.0 * self.config.n_layers * seq_len * self.config.dim

    # --- shared ------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def init_weights(self, seed: int = 0) -> None:
        """Every parameter by `init_parameter`, in registration order, from one seeded generator."""
        generator = torch.Generator(device=self.output.weight.device).manual_seed(seed)
        for name, param in self.named_parameters():
            self.init_parameter(name, param, generator)

    def embed_tokens(self, ids: Tensor) -> Tensor:
        """(B, L) int64 token ids -> (B, L, D)."""
        return self.tok_embeddings(ids)

    def embed_patches(self, patches: Tensor) -> Tensor:
        """(B, L, patch_dim) continuous values -> (B, L, D)."""
        return self._patch_layer(self.patch_embed, "embedding")(patches)

    def hidden_states(self, h: Tensor, layers: list[int] | tuple[int, ...]) -> dict[int, Tensor]:
        """Raw outputs (B, L, D) of the given blocks (negatives count from the end; keys are non-negative).

        Block i's output is taken before the final norm; only blocks 0..max(layers) run.
        """
        n = self.config.n_layers
        wanted = sorted({i + n if i < 0 else i for i in layers})
        if not wanted or wanted[0] < 0 or wanted[-1] >= n:
            raise ValueError(f"layers {list(layers)} are not within a {n}-block {type(self).__name__} (0..{n - 1})")
        h, args = self.prepare(h)
        out: dict[int, Tensor] = {}
        for i in range(wanted[-1] + 1):
            h = self.layers[i](h, *args)
            if i in wanted:
                out[i] = h
        return out

    def forward(self, h: Tensor) -> Tensor:
        """(B, L, D) input embeddings -> (B, L, D) final-normed hidden states."""
        last = self.config.n_layers - 1
        return self.norm(self.hidden_states(h, [last])[last])

    def logits(self, hidden: Tensor) -> Tensor:
        """(B, L, D) final hidden -> (B, L, vocab_size) next-token logits."""
        return self.output(hidden)

    def predict_patches(self, hidden: Tensor) -> Tensor:
        """(B, L, D) final hidden -> (B, L, patch_dim) next-patch regression."""
        return self._patch_layer(self.patch_head, "head")(hidden)

    def _patch_layer(self, layer: nn.Module | None, what: str) -> nn.Module:
        if layer is None:
            raise ValueError(f"this {type(self).__name__} has no patch {what} (config.patch_dim is 0)")
        return layer

    def num_params(self, embeddings: bool = True) -> int:
        """Parameter count; embeddings=False leaves out the input tables (the usual 'non-embedding' count)."""
        skip = set() if embeddings else set(self.INPUT_TABLES)
        return sum(p.numel() for name, p in self.named_parameters() if name not in skip)

    def flops_per_token(self, seq_len: int) -> float:
        """Forward FLOPs per token: 2 per matmul weight (input tables are lookups) + `mixing_flops`.

        Multiply by 3 for forward + backward.
        """
        params = [(n, p) for n, p in self.named_parameters() if n not in self.INPUT_TABLES]
        matmul = sum(p.numel() for n, p in params if self.is_matmul_weight(n, p))
        return 2.0 * matmul + self.mixing_flops(seq_len)
