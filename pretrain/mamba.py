"""A Mamba-style selective state-space decoder in plain PyTorch: the paper's Table 6 "Mamba" ablation.

It has exactly the `Toto` model interface (`pretrain/model.py`: embeddings in, `embed_tokens`, `embed_patches`,
`hidden_states`, `forward`, `logits`, `predict_patches`, `init_weights`, `num_params`, `flops_per_token`, the
`output` / `patch_head` heads), so `toto-pretrain` trains it on the same tokens and the same backbone wrapper
evaluates it. No CUDA-only kernel is used: everything runs, and is tested, on CPU.

What follows Mamba-1 (Gu & Dao 2023, the `Mamba` block of `mamba_simple`): pre-norm residual blocks
h + mixer(RMSNorm(h)) and a final RMSNorm; the mixer projects to 2 * d_inner (a branch x and a gate z), runs a
depthwise causal conv1d (width d_conv, with bias) and SiLU on x, computes input-dependent dt (low rank dt_rank,
then `dt_proj` and softplus), B and C (d_state each) from x, runs the selective scan
    h_t = exp(dt_t * A) * h_{t-1} + dt_t * B_t * x_t,    y_t = C_t . h_t + D * x_t
with A = -exp(A_log) diagonal per channel (S4D-real init A_log = log(1..d_state)), gates y * silu(z) and projects
back. dt_proj's bias is the inverse softplus of dt drawn log-uniform in [dt_min, dt_max], and its weight is
uniform(+-dt_rank^-0.5), as in Mamba-1. What differs: the scan is PyTorch, so it materialises the
(B, L, d_inner, d_state) states the fused kernel keeps in SRAM (memory, not correctness); other matrices
are normal(0, init_std) from a seeded generator (the output projection scaled by 1 / sqrt(n_layers), Mamba-1's
"prenorm residual" rescale), for the same determinism as Toto; there is no fused add-norm and no inference
cache (evaluation runs whole clips).

Two exact scans: `selective_scan_sequential`, one step at a time (L small ops, the least arithmetic: the fastest
on CPU), and `selective_scan_chunked`, parallel inside blocks of `chunk_size` steps (L / chunk_size steps of
chunk_size times the arithmetic: the faster one on an accelerator, where launches dominate). The mixer picks by
device; tests check that the two agree, values and gradients.

Mamba has no attention heads; `config.n_heads` is the head count the attentive probe should use (dim // 64).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from toto_eval.common.errors import ConfigError

from .model import RMSNorm


@dataclass(frozen=True)
class MambaConfig:
    """Architecture of one Mamba-style decoder; field names match `TotoConfig` where the meaning is the same."""

    dim: int = 768
    n_layers: int = 24
    vocab_size: int = 8192
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | None = None  # None -> ceil(dim / 16) (Mamba-1's "auto"); resolved in __post_init__
    dt_min: float = 0.001
    dt_max: float = 0.1
    norm_eps: float = 1e-5
    max_seq_len: int = 4096  # recorded for the interface; a state-space model has no length limit
    patch_dim: int = 0  # > 0: continuous patch tokens of that many values, linear in and linear out
    init_std: float = 0.02
    chunk_size: int = 8  # time steps per block of the chunked scan (used off CPU)

    def __post_init__(self) -> None:
        if self.dt_rank is None:
            object.__setattr__(self, "dt_rank", math.ceil(self.dim / 16))
        positive = ("dim", "n_layers", "vocab_size", "d_state", "d_conv", "expand", "dt_rank", "max_seq_len")
        for name in (*positive, "chunk_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"MambaConfig.{name} must be positive, got {getattr(self, name)}")
        if self.patch_dim < 0:
            raise ConfigError(f"MambaConfig.patch_dim must be >= 0, got {self.patch_dim}")
        for name in ("norm_eps", "init_std", "dt_min"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"MambaConfig.{name} must be positive, got {getattr(self, name)}")
        if not self.dt_max > self.dt_min:
            raise ConfigError(f"MambaConfig: dt_max {self.dt_max} must exceed dt_min {self.dt_min}")

    @property
    def d_inner(self) -> int:
        return self.expand * self.dim

    @property
    def n_heads(self) -> int:
        """Heads for the attentive probe (Mamba itself has none)."""
        return max(1, self.dim // 64)

    def to_dict(self) -> dict:
        return asdict(self)


# Toto's test and tiny widths; Mamba-1 pairs one transformer block (12 dim^2) with two Mamba blocks (6 dim^2 each),
# so tiny has twice Toto tiny's depth and about its parameters. test keeps 4 blocks: it is for speed, not parity.
MAMBA_CONFIGS: dict[str, MambaConfig] = {
    "test": MambaConfig(dim=64, n_layers=4, vocab_size=512, max_seq_len=1024),
    "tiny": MambaConfig(dim=256, n_layers=12),
}


def selective_scan_sequential(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
    """The reference scan, one time step at a time: x, dt (b, L, d); A (d, n); B, C (b, L, n) -> y (b, L, d)."""
    h = x.new_zeros(x.shape[0], x.shape[2], A.shape[1])  # (b, d, n)
    ys = []
    for t in range(x.shape[1]):
        h = torch.exp(dt[:, t, :, None] * A) * h + (dt[:, t] * x[:, t])[:, :, None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1))  # (b, d)
    return torch.stack(ys, dim=1)


def selective_scan_chunked(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk_size: int) -> Tensor:
    """The same scan, parallel within blocks of `chunk_size` steps and recurrent across blocks.

    Inside a block, with S_t = sum_{r<=t} dt_r * A (the log decay since the block start, <= 0), the state is
    h_t = exp(S_t) * h_start + sum_{s<=t} exp(S_t - S_s) * u_s, u_s = dt_s * B_s * x_s. Every exponent is <= 0
    (positions s > t are masked to -inf before exp), so nothing overflows whatever dt grows to in training.
    """
    b, length, d = x.shape
    h = x.new_zeros(b, d, A.shape[1])  # (b, d, n): the state at the current block's start
    ys = []
    for start in range(0, length, chunk_size):
        sl = slice(start, start + chunk_size)
        k = x[:, sl].shape[1]
        log_decay = (dt[:, sl, :, None] * A).cumsum(dim=1)  # S: (b, k, d, n)
        u = (dt[:, sl] * x[:, sl])[..., None] * B[:, sl, None, :]  # (b, k, d, n)
        causal = torch.ones(k, k, dtype=torch.bool, device=x.device).tril()[None, :, :, None, None]  # (t, s)
        pair = (log_decay[:, :, None] - log_decay[:, None, :]).masked_fill(~causal, float("-inf"))  # (b, t, s, d, n)
        states = (pair.exp() * u[:, None]).sum(2) + log_decay.exp() * h[:, None]  # sum over s: (b, k, d, n)
        ys.append(torch.einsum("btdn,btn->btd", states, C[:, sl]))
        h = states[:, -1]
    return torch.cat(ys, dim=1)


class MambaMixer(nn.Module):
    """Mamba-1's mixer: in_proj -> causal depthwise conv -> SiLU -> selective scan -> gate -> out_proj."""

    def __init__(self, cfg: MambaConfig) -> None:
        super().__init__()
        assert cfg.dt_rank is not None  # resolved by MambaConfig.__post_init__
        self.cfg = cfg
        d = cfg.d_inner
        self.in_proj = nn.Linear(cfg.dim, 2 * d, bias=False)
        self.conv1d = nn.Conv1d(d, d, cfg.d_conv, groups=d, padding=cfg.d_conv - 1)
        self.x_proj = nn.Linear(d, cfg.dt_rank + 2 * cfg.d_state, bias=False)
        self.dt_proj = nn.Linear(cfg.dt_rank, d)
        self.A_log = nn.Parameter(torch.empty(d, cfg.d_state))
        self.D = nn.Parameter(torch.empty(d))
        self.out_proj = nn.Linear(d, cfg.dim, bias=False)

    def forward(self, hidden: Tensor, scan: str = "auto") -> Tensor:
        """`scan`: "sequential", "chunked", or "auto" (sequential on CPU, chunked elsewhere; both are exact)."""
        length = hidden.shape[1]
        x, z = self.in_proj(hidden).chunk(2, dim=-1)  # (B, L, d) each
        x = F.silu(self.conv1d(x.transpose(1, 2))[..., :length].transpose(1, 2))  # left padding only: causal
        dt, B, C = self.x_proj(x).split([self.cfg.dt_rank, self.cfg.d_state, self.cfg.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt))  # (B, L, d), the bias inside the softplus
        A = -torch.exp(self.A_log.float())  # (d, n), negative: every step decays the state
        args = (x.float(), dt.float(), A, B.float(), C.float())  # the scan in fp32, as the fused kernel does
        if scan == "auto":
            scan = "sequential" if hidden.device.type == "cpu" else "chunked"
        if scan == "sequential":
            y = selective_scan_sequential(*args)
        elif scan == "chunked":
            y = selective_scan_chunked(*args, self.cfg.chunk_size)
        else:
            raise ValueError(f"scan must be 'auto', 'sequential' or 'chunked', got {scan!r}")
        y = (y + x.float() * self.D.float()).type_as(x)
        return self.out_proj(y * F.silu(z))


class Block(nn.Module):
    """Pre-norm residual block: h + mixer(norm(h))."""

    def __init__(self, cfg: MambaConfig) -> None:
        super().__init__()
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mixer = MambaMixer(cfg)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.mixer(self.norm(h))


class Mamba(nn.Module):
    """The decoder. Built on the meta device (`with torch.device("meta"): Mamba(cfg)`) it skips initialisation."""

    def __init__(self, config: MambaConfig, seed: int = 0) -> None:
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.patch_embed = nn.Linear(config.patch_dim, config.dim, bias=False) if config.patch_dim else None
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        self.patch_head = nn.Linear(config.dim, config.patch_dim, bias=False) if config.patch_dim else None
        if not self.output.weight.is_meta:
            self.init_weights(seed)

    @torch.no_grad()
    def init_weights(self, seed: int = 0) -> None:
        """Mamba-1's S4D-real A, D = 1, dt init and conv init; seeded normal matrices (module docstring)."""
        cfg = self.config
        generator = torch.Generator(device=self.output.weight.device).manual_seed(seed)

        def uniform(param: Tensor, bound: float) -> None:
            param.uniform_(-bound, bound, generator=generator)

        for name, param in self.named_parameters():
            if name.endswith("A_log"):
                param.copy_(torch.arange(1, cfg.d_state + 1, dtype=torch.float32).log().expand_as(param))
            elif name.endswith(("mixer.D", "norm.weight")):
                param.fill_(1.0)
            elif name.endswith("conv1d.weight") or name.endswith("conv1d.bias"):
                uniform(param, 1.0 / math.sqrt(cfg.d_conv))  # PyTorch's default bound for this fan-in
            elif name.endswith("dt_proj.weight"):
                uniform(param, cfg.dt_rank**-0.5)
            elif name.endswith("dt_proj.bias"):
                log_dt = torch.rand(param.shape, generator=generator, device=param.device)
                dt = torch.exp(log_dt * (math.log(cfg.dt_max) - math.log(cfg.dt_min)) + math.log(cfg.dt_min))
                dt = dt.clamp(min=1e-4)
                param.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
            elif name.endswith("out_proj.weight"):
                param.normal_(0.0, cfg.init_std / math.sqrt(cfg.n_layers), generator=generator)
            else:
                param.normal_(0.0, cfg.init_std, generator=generator)

    def embed_tokens(self, ids: Tensor) -> Tensor:
        """(B, L) int64 token ids -> (B, L, D)."""
        return self.tok_embeddings(ids)

    def embed_patches(self, patches: Tensor) -> Tensor:
        """(B, L, patch_dim) continuous values -> (B, L, D)."""
        if self.patch_embed is None:
            raise ValueError("this Mamba has no patch embedding (config.patch_dim is 0)")
        return self.patch_embed(patches)

    def hidden_states(self, h: Tensor, layers: list[int] | tuple[int, ...]) -> dict[int, Tensor]:
        """Raw outputs (B, L, D) of the given blocks (negatives count from the end; keys are non-negative).

        Block i's output is taken before the final norm; only blocks 0..max(layers) run.
        """
        n = self.config.n_layers
        wanted = sorted({i + n if i < 0 else i for i in layers})
        if not wanted or wanted[0] < 0 or wanted[-1] >= n:
            raise ValueError(f"layers {list(layers)} are not within a {n}-block Mamba (0..{n - 1})")
        out: dict[int, Tensor] = {}
        for i in range(wanted[-1] + 1):
            h = self.layers[i](h)
            if i in wanted:
                out[i] = h
        return out

    def forward(self, h: Tensor) -> Tensor:
        """(B, L, D) input embeddings -> (B, L, D) final-normed hidden states."""
        for layer in self.layers:
            h = layer(h)
        return self.norm(h)

    def logits(self, hidden: Tensor) -> Tensor:
        """(B, L, D) final hidden -> (B, L, vocab_size) next-token logits."""
        return self.output(hidden)

    def predict_patches(self, hidden: Tensor) -> Tensor:
        """(B, L, D) final hidden -> (B, L, patch_dim) next-patch regression."""
        if self.patch_head is None:
            raise ValueError("this Mamba has no patch head (config.patch_dim is 0)")
        return self.patch_head(hidden)

    def num_params(self, embeddings: bool = True) -> int:
        """Parameter count; embeddings=False leaves out the input embedding tables (the usual 'non-embedding')."""
        skip = {"tok_embeddings.weight", "patch_embed.weight"} if not embeddings else set()
        return sum(p.numel() for name, p in self.named_parameters() if name not in skip)

    def flops_per_token(self, seq_len: int) -> float:
        """Forward FLOPs per token: 2 per matmul or conv weight, plus the scan's ~9 per state element.

        The scan (decay, update, readout) costs about 9 * d_inner * d_state per token per block, the count
        Mamba-1 uses; it does not grow with seq_len. Multiply by 3 for forward + backward.
        """
        vectors = sum(p.numel() for name, p in self.named_parameters() if p.ndim == 1 or name.endswith("A_log"))
        matmul = self.num_params(embeddings=False) - vectors
        scan = 9 * self.config.n_layers * self.config.d_inner * self.config.d_state
        return 2.0 * matmul + scan
