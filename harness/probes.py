"""Probes on frozen features: the Toto/AIM attentive probe, the average-pool linear probe, and their stacked form.

`AttentiveProbe` is the Toto/AIM attentive probe, written plainly as the definition: batch normalisation without
affine over the tokens, one learned query used directly (no query projection), key and value projections,
multi-head attention, no output projection, no MLP, a bias-free linear classifier. `LinearProbe` is the
average-pool baseline of the paper's Table 5.

Training one head per (layer x learning rate x weight decay) one after another would read the features once per
head. The grid (`probe_grid.py`) instead keeps, for each layer, the heads of all settings stacked along a leading
axis (`AttentiveHeads`, `LinearHeads`; tested equal to the plain probes), so one pass over a batch updates every
head. Heads stay independent: the loss is a sum, clipping is per head, and `StackedAdamW` applies each head's
own learning rate and weight decay. Batch statistics are global: under torchrun `GlobalBatchNorm` all-reduces
them, so N ranks with a slice each compute what one process computes on the whole batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as td
import torch.distributed.nn.functional as tdf
import torch.nn.functional as F
from torch import nn

from ..common.errors import ConfigError
from .registry import PROBES


@dataclass(frozen=True)
class ProbeConfig:
    """Hyper-parameters of a probe grid (defaults: V-JEPA/AIM-style AdamW, cosine, per-head clipping).

    Every probe task nests one (`Config.probe`), with its own defaults; `--set TASK.probe.KEY=VALUE` changes it.
    One head is trained per (learning rate x weight decay) per layer. The seed is the run's (`--seed`).
    """

    probe: str = "attentive"  # a PROBES name: "attentive" (tokens) or "linear" (pooled)
    lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    weight_decays: tuple[float, ...] = (1e-3,)
    epochs: int = 20
    batch_size: int = 64
    warmup_epochs: int = 1
    clip_grad: float = 1.0
    holdout: float = 0.1

    def __post_init__(self) -> None:
        if not self.lrs or min(self.lrs) <= 0:
            raise ConfigError(f"probe lrs must be positive, got {self.lrs}")
        if not self.weight_decays or min(self.weight_decays) < 0:
            raise ConfigError(f"probe weight_decays must be >= 0, got {self.weight_decays}")
        if not 0 < self.holdout < 1:
            raise ConfigError(f"probe holdout must be in (0, 1), got {self.holdout}")
        if self.probe not in PROBES:
            raise ConfigError(PROBES.unknown_message(self.probe))

    @property
    def needs_tokens(self) -> bool:
        """Whether the probe reads the full token grid (attentive) or pooled vectors (linear)."""
        return PROBES.get(self.probe).input_kind == "tokens"

    def settings(self) -> list[tuple[float, float]]:
        """(lr, weight decay) of each stacked head, in head order."""
        return [(lr, wd) for lr in self.lrs for wd in self.weight_decays]


class AttentiveProbe(nn.Module):
    """The Toto/AIM attentive probe, one head, written as the reference definition."""

    def __init__(self, dim: int, num_heads: int, num_classes: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm = nn.BatchNorm1d(dim, affine=False, eps=1e-6)
        self.query = nn.Parameter(torch.randn(dim) * 0.02)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.classifier = nn.Linear(dim, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, N, D) -> (B, C)
        return self.classifier(self.attend(self.normalize(x)))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, D), statistics over batch and tokens."""
        return self.norm(x.transpose(1, 2)).transpose(1, 2)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) normalised tokens -> (B, D): the learned query's multi-head attention pool."""
        b, n, d = x.shape
        k = self.k(x).view(b, n, self.num_heads, -1).transpose(1, 2)  # (B, h, N, dh)
        v = self.v(x).view(b, n, self.num_heads, -1).transpose(1, 2)
        q = self.query.view(1, self.num_heads, 1, -1).expand(b, -1, -1, -1)  # (B, h, 1, dh)
        return F.scaled_dot_product_attention(q, k, v).reshape(b, d)


class LinearProbe(nn.Module):
    """Average-pooled features -> batch norm without affine -> linear classifier (one head)."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(dim, affine=False, eps=1e-6)
        self.classifier = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, D) -> (B, C)
        return self.classifier(self.norm(x))


@PROBES.register("attentive")
class AttentiveHeads(nn.Module):
    """`n` attentive probes on the same layer, parameters stacked on a leading head axis."""

    input_kind = "tokens"

    def __init__(self, n: int, dim: int, num_heads: int, num_classes: int) -> None:
        super().__init__()
        self.num_heads = num_heads if dim % num_heads == 0 else 1
        self.norm = GlobalBatchNorm(dim)  # identical for all heads: shared
        self.query = nn.Parameter(torch.randn(n, dim) * 0.02)
        self.k = nn.Parameter(_linear_init(n, dim, dim))
        self.v = nn.Parameter(_linear_init(n, dim, dim))
        self.classifier = nn.Parameter(_linear_init(n, dim, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, N, D) -> (n, B, C)
        # The query is a parameter, not a projection of x, so q.(x Wk) = x.(Wk q): fold Wk into the query once
        # instead of projecting every token, and pool x before Wv instead of projecting every token. Same
        # function as AttentiveProbe (tested), at O(B N D h) instead of O(B N D^2) per head.
        r, d = self.query.shape
        h = self.num_heads
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        q = self.query.view(r, h, d // h)
        k = self.k.view(r, d, h, d // h)
        v = self.v.view(r, d, h, d // h)
        u = torch.einsum("rdhe,rhe->rdh", k, q) / math.sqrt(d // h)  # (n, D, h): a key-side query per head
        attn = torch.einsum("btd,rdh->rbht", x, u).softmax(-1)  # (n, B, h, N)
        pooled = torch.einsum("rbht,btd->rbhd", attn, x)  # (n, B, h, D)
        out = torch.einsum("rbhd,rdhe->rbhe", pooled, v).flatten(2)  # (n, B, D)
        return torch.einsum("rbd,rdc->rbc", out, self.classifier)


@PROBES.register("linear")
class LinearHeads(nn.Module):
    """`n` linear probes on the same layer's pooled features, stacked on a leading head axis."""

    input_kind = "pooled"

    def __init__(self, n: int, dim: int, num_heads: int, num_classes: int) -> None:
        super().__init__()
        self.norm = GlobalBatchNorm(dim)
        self.weight = nn.Parameter(_linear_init(n, dim, num_classes))
        self.bias = nn.Parameter(torch.zeros(n, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, D) -> (n, B, C)
        return torch.einsum("bd,rdc->rbc", self.norm(x), self.weight) + self.bias[:, None]


class GlobalBatchNorm(nn.BatchNorm1d):
    """BatchNorm without affine whose training statistics cover the global batch of a torchrun run.

    In one process it is `nn.BatchNorm1d` exactly. Under torchrun with a slice of the batch per rank, the per-
    channel sum and sum of squares are all-reduced (differentiably) first; `nn.SyncBatchNorm` would do this but
    refuses CPU tensors, so it could not be tested under gloo. Running statistics follow BatchNorm's update.
    """

    def __init__(self, dim: int) -> None:
        super().__init__(dim, affine=False, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C) or (B, C, L)
        if not (self.training and td.is_available() and td.is_initialized() and td.get_world_size() > 1):
            return self._local(x)
        dims = [0, *range(2, x.ndim)]
        count = torch.tensor([x.numel() / max(x.shape[1], 1)], dtype=x.dtype, device=x.device)
        sums = torch.cat([x.sum(dims), x.pow(2).sum(dims), count])
        sums = tdf.all_reduce(sums)  # differentiable: gradients flow to every rank's slice
        c = x.shape[1]
        n = sums[-1]
        mean, sq = sums[:c] / n, sums[c : 2 * c] / n
        var = sq - mean * mean  # biased, as BatchNorm normalises
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(m * mean.detach())
            self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1))
        shape = [1, c] + [1] * (x.ndim - 2)
        return (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)

    def _local(self, x: torch.Tensor) -> torch.Tensor:
        """`nn.BatchNorm1d` in one process. Tokens arrive as (B, C, L), a transposed view of (B, L, C) memory:
        viewed as (B, C, L, 1) that is channels-last, which BatchNorm's CPU kernels read in place, where the 3-D
        path copies to (B, C, L) and back. 2-3x faster forward and backward on 512-token probes (the same
        statistics, summed in another order: equal to 1e-5, not bit for bit), and the output, transposed back,
        is contiguous for the einsums that follow."""
        if x.ndim != 3 or x.stride(1) != 1:
            return super().forward(x)
        if self.training:
            self.num_batches_tracked.add_(1)
        momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        out = F.batch_norm(
            x.unsqueeze(-1), self.running_mean, self.running_var, None, None, self.training, momentum, self.eps
        )
        return out.squeeze(-1)


def _linear_init(n: int, fan_in: int, fan_out: int) -> torch.Tensor:
    # nn.Linear's default (kaiming-uniform, a=sqrt(5)) bound, stored as (in, out) for einsum.
    bound = 1 / math.sqrt(fan_in)
    return torch.empty(n, fan_in, fan_out).uniform_(-bound, bound)


class StackedAdamW:
    """AdamW where parameter slice `[i]` of every tensor belongs to head i and uses `lrs[i]` and `wds[i]`.

    torch.optim.AdamW takes one learning rate per parameter group; stacked heads need one per slice. Weight
    decay is decoupled (AdamW) and skipped for biases and queries, as V-JEPA skips 1-D parameters.
    """

    def __init__(
        self,
        params: list[nn.Parameter],
        lrs: torch.Tensor,
        wds: torch.Tensor,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params, self.lrs, self.wds, self.betas, self.eps = params, lrs, wds, betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    @torch.no_grad()
    def step(self, scale: float) -> None:
        self.t += 1
        b1, b2 = self.betas
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            lr = (self.lrs * scale).view(-1, *([1] * (p.ndim - 1)))
            if p.ndim >= 3:  # matrices only
                p.mul_(1 - lr * self.wds.view_as(lr))
            m.lerp_(p.grad, 1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            denom = (v / (1 - b2**self.t)).sqrt_().add_(self.eps)
            p.sub_(lr * (m / (1 - b1**self.t)) / denom)

    def state_dict(self) -> dict:
        return {"m": self.m, "v": self.v, "t": self.t}

    def load_state_dict(self, state: dict) -> None:
        for mine, saved in zip(self.m + self.v, state["m"] + state["v"], strict=True):
            mine.copy_(saved)
        self.t = int(state["t"])


@torch.no_grad()
def clip_per_head(params: list[nn.Parameter], max_norm: float) -> None:
    """Clip the gradient norm of each head (slice along axis 0) separately, so heads stay independent."""
    sq = sum(p.grad.pow(2).flatten(1).sum(1) for p in params)
    factor = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
    for p in params:
        p.grad.mul_(factor.view(-1, *([1] * (p.ndim - 1))))


def split_holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (fit, holdout) row indices of a train set; the holdout picks the head, the test set never does."""
    perm = np.random.default_rng(seed).permutation(n)
    k = max(1, round(n * fraction))
    return np.sort(perm[k:]), np.sort(perm[:k])


def topk_hits(probs: np.ndarray, labels: np.ndarray, k: int = 1) -> np.ndarray:
    """Whether each row's label is among its k most probable classes (probs: (..., N, C)) -> (..., N) bool."""
    k = min(k, probs.shape[-1])
    top = np.argsort(-probs, axis=-1, kind="stable")[..., :k]
    return (top == labels[:, None]).any(-1)


def topk_accuracy(probs: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of rows whose label is among the k most probable classes (probs: (..., N, C))."""
    return topk_hits(probs, labels, k).mean(-1)
