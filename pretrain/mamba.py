"""A Mamba-style selective state-space decoder in plain PyTorch: the paper's Table 6 "Mamba" ablation.

It is a `Decoder` (`pretrain/decoder.py`: embeddings in, `hidden_states`, `forward`, the `output` / `patch_head`
heads, parameter and FLOP counts, shared with Toto), so `toto-pretrain` trains it on the same tokens and the same
backbone wrapper evaluates it. No CUDA-only kernel is used: everything runs, and is tested, on CPU.

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
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from toto_eval.common.errors import ConfigError

from .decoder import Decoder, DecoderConfig
from .model import RMSNorm


@dataclass(frozen=True)
class MambaConfig(DecoderConfig):
    """Architecture of one Mamba-style decoder: `DecoderConfig`'s fields and the selective scan's.

    `max_seq_len` is recorded for the interface only: a state-space model has no length limit.
    """

    n_layers: int = 24
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | None = None  # None -> ceil(dim / 16) (Mamba-1's "auto"); resolved in __post_init__
    dt_min: float = 0.001
    dt_max: float = 0.1
    chunk_size: int = 8  # time steps per block of the chunked scan (used off CPU)

    def resolve_defaults(self) -> None:
        if self.dt_rank is None:
            object.__setattr__(self, "dt_rank", math.ceil(self.dim / 16))

    def validate(self) -> None:
        self.require_positive("d_state", "d_conv", "expand", "dt_rank", "chunk_size", "dt_min")
        if not self.dt_max > self.dt_min:
            raise ConfigError(f"MambaConfig: dt_max {self.dt_max} must exceed dt_min {self.dt_min}")

    @property
    def d_inner(self) -> int:
        return self.expand * self.dim

    @property
    def n_heads(self) -> int:
        """Heads for the attentive probe (Mamba itself has none)."""
        return max(1, self.dim // 64)


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


class Mamba(Decoder):
    """The decoder: RMSNorm blocks around the selective-scan mixer, no positions (plumbing: `Decoder`)."""

    config: MambaConfig
    block_class, norm_class = Block, RMSNorm

    def init_parameter(self, name: str, param: Tensor, generator: torch.Generator) -> None:
        """Mamba-1's S4D-real A, D = 1, dt init and conv init; seeded normal matrices (module docstring)."""
        cfg = self.config
        if name.endswith("A_log"):
            param.copy_(torch.arange(1, cfg.d_state + 1, dtype=torch.float32).log().expand_as(param))
        elif name.endswith(("mixer.D", "norm.weight")):
            param.fill_(1.0)
        elif name.endswith(("conv1d.weight", "conv1d.bias")):
            param.uniform_(-1.0 / math.sqrt(cfg.d_conv), 1.0 / math.sqrt(cfg.d_conv), generator=generator)
        elif name.endswith("dt_proj.weight"):
            param.uniform_(-(cfg.dt_rank**-0.5), cfg.dt_rank**-0.5, generator=generator)
        elif name.endswith("dt_proj.bias"):
            log_dt = torch.rand(param.shape, generator=generator, device=param.device)
            dt = torch.exp(log_dt * (math.log(cfg.dt_max) - math.log(cfg.dt_min)) + math.log(cfg.dt_min))
            dt = dt.clamp(min=1e-4)
            param.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        elif name.endswith("out_proj.weight"):
            param.normal_(0.0, cfg.init_std / math.sqrt(cfg.n_layers), generator=generator)
        else:
            param.normal_(0.0, cfg.init_std, generator=generator)

    def is_matmul_weight(self, name: str, param: Tensor) -> bool:
        """A_log is a (d_inner, d_state) matrix but enters the scan elementwise, not as a matmul."""
        return param.ndim > 1 and not name.endswith("A_log")

    def mixing_flops(self, seq_len: int) -> float:
        """The scan (decay, update, readout): ~9 * d_inner * d_state per token per block, Mamba-1's count; it does
        not grow with seq_len."""
        return 9.0 * self.config.n_layers * self.config.d_inner * self.config.d_state
