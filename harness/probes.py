"""Probes on frozen features, and the grid that trains all of them in one pass.

`AttentiveProbe` is the Toto/AIM attentive probe, written plainly as the definition: batch normalisation without
affine over the tokens, one learned query used directly (no query projection), key and value projections,
multi-head attention, no output projection, no MLP, a bias-free linear classifier. `LinearProbe` is the
average-pool baseline of the paper's Table 5.

Training one head per (layer x learning rate) one after another would read the features once per head. The grid
instead keeps, for each layer, the heads of all learning rates stacked along a leading axis (`AttentiveHeads`,
`LinearHeads`; tested equal to the plain probes), so one pass over a batch of cached features updates every head.
Heads stay independent: the loss is a sum, clipping is per head, and `StackedAdamW` applies each head's own
learning rate. Selection uses a seeded held-out part of train, never the reported split; every head's scores
are kept so per-layer curves can be drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..common.errors import ConfigError
from ..common.log import progress as progress_bar
from ..common.schedule import warmup_cosine
from .cache import Features
from .registry import PROBES


@dataclass(frozen=True)
class ProbeConfig:
    """Hyper-parameters of a probe grid (defaults: V-JEPA/AIM-style AdamW, cosine, per-head clipping).

    Every probe task nests one (`Config.probe`), with its own defaults; `--set TASK.probe.KEY=VALUE` changes it.
    The seed is the run's (`--seed`), not a setting here.
    """

    probe: str = "attentive"  # a PROBES name: "attentive" (tokens) or "linear" (pooled)
    lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    weight_decay: float = 1e-3
    epochs: int = 20
    batch_size: int = 64
    warmup_epochs: int = 1
    clip_grad: float = 1.0
    holdout: float = 0.1

    def __post_init__(self) -> None:
        if not self.lrs or min(self.lrs) <= 0:
            raise ConfigError(f"probe lrs must be positive, got {self.lrs}")
        if not 0 < self.holdout < 1:
            raise ConfigError(f"probe holdout must be in (0, 1), got {self.holdout}")
        if self.probe not in PROBES:
            raise ConfigError(PROBES.unknown_message(self.probe))

    @property
    def needs_tokens(self) -> bool:
        """Whether the probe reads the full token grid (attentive) or pooled vectors (linear)."""
        return PROBES.get(self.probe).input_kind == "tokens"


@dataclass
class ProbeData:
    """Inputs of a grid: per layer `(N, V, L, D)` tokens (attentive) or `(N, V, D)` pooled (linear)."""

    features: dict[int, np.ndarray]
    labels: np.ndarray  # (N,) int64


@dataclass
class GridResult:
    heads: list[dict]  # every head: layer, lr, probe, holdout_top1, test_top1, test_top5
    selected: dict  # the head with the best holdout top-1
    per_layer: list[dict]  # each layer's holdout-best head
    test_probs: np.ndarray  # (N_test, C) of the selected head
    layer_probs: dict[int, np.ndarray]  # layer -> (N_test, C) of that layer's holdout-best head


class RowView:
    """Rows `rows` of a memory-mapped `(N, ...)` array, read lazily: indexing reads only what is asked for."""

    def __init__(self, array: np.ndarray, rows: np.ndarray) -> None:
        self.array, self.rows = array, rows
        self.shape = (len(rows), *array.shape[1:])

    def __getitem__(self, index):  # an index array, or (index array, view array)
        if isinstance(index, tuple):
            return self.array[(self.rows[index[0]], *index[1:])]
        return self.array[self.rows[index]]


def probe_inputs(features: Features, cfg: ProbeConfig) -> ProbeData:
    """What the probe reads of cached features: tokens for a token probe, pooled vectors otherwise; only the
    rows that hold features, with their labels."""
    rows = features.rows()
    arrays = features.tokens if cfg.needs_tokens else features.pooled
    return ProbeData({layer: RowView(a, rows) for layer, a in arrays.items()}, features.labels)


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
        b, n, d = x.shape
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)  # statistics over batch and tokens
        k = self.k(x).view(b, n, self.num_heads, -1).transpose(1, 2)  # (B, h, N, dh)
        v = self.v(x).view(b, n, self.num_heads, -1).transpose(1, 2)
        q = self.query.view(1, self.num_heads, 1, -1).expand(b, -1, -1, -1)  # (B, h, 1, dh)
        pooled = F.scaled_dot_product_attention(q, k, v).reshape(b, d)
        return self.classifier(pooled)


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
        self.norm = nn.BatchNorm1d(dim, affine=False, eps=1e-6)  # identical for all heads: shared
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
        self.norm = nn.BatchNorm1d(dim, affine=False, eps=1e-6)
        self.weight = nn.Parameter(_linear_init(n, dim, num_classes))
        self.bias = nn.Parameter(torch.zeros(n, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, D) -> (n, B, C)
        return torch.einsum("bd,rdc->rbc", self.norm(x), self.weight) + self.bias[:, None]


def _linear_init(n: int, fan_in: int, fan_out: int) -> torch.Tensor:
    # nn.Linear's default (kaiming-uniform, a=sqrt(5)) bound, stored as (in, out) for einsum.
    bound = 1 / math.sqrt(fan_in)
    return torch.empty(n, fan_in, fan_out).uniform_(-bound, bound)


class StackedAdamW:
    """AdamW where parameter slice `[i]` of every tensor belongs to head i and uses `lrs[i]`.

    torch.optim.AdamW takes one learning rate per parameter group; stacked heads need one per slice. Weight
    decay is decoupled (AdamW) and skipped for biases and queries, as V-JEPA skips 1-D parameters.
    """

    def __init__(
        self,
        params: list[nn.Parameter],
        lrs: torch.Tensor,
        weight_decay: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params, self.lrs, self.wd, self.betas, self.eps = params, lrs, weight_decay, betas, eps
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
                p.mul_(1 - lr * self.wd)
            m.lerp_(p.grad, 1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            denom = (v / (1 - b2**self.t)).sqrt_().add_(self.eps)
            p.sub_(lr * (m / (1 - b1**self.t)) / denom)


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


def fit_probe_grid(
    train: ProbeData,
    test: ProbeData,
    num_classes: int,
    cfg: ProbeConfig,
    *,
    num_heads: int,
    seed: int = 0,
    device: torch.device = torch.device("cpu"),
    progress: bool = False,
) -> GridResult:
    """Train every (layer x lr) head in one pass per batch; select on a held-out part of train; score on test."""
    torch.manual_seed(seed)
    layers = sorted(train.features)
    head_cls = PROBES.get(cfg.probe)
    fit_rows, hold_rows = split_holdout(len(train.labels), cfg.holdout, seed)
    heads = nn.ModuleDict(
        {
            str(layer): head_cls(len(cfg.lrs), train.features[layer].shape[-1], num_heads, num_classes)
            for layer in layers
        }
    ).to(device)
    _train(heads, train, fit_rows, cfg, seed, device, progress)
    hold = {
        layer: _predict(heads[str(layer)], train.features[layer], hold_rows, cfg.batch_size, device) for layer in layers
    }
    tested = {
        layer: _predict(heads[str(layer)], test.features[layer], np.arange(len(test.labels)), cfg.batch_size, device)
        for layer in layers
    }
    return _score(layers, cfg, hold, train.labels[hold_rows], tested, test.labels)


def _train(
    heads: nn.ModuleDict,
    data: ProbeData,
    rows: np.ndarray,
    cfg: ProbeConfig,
    seed: int,
    device: torch.device,
    progress: bool,
) -> None:
    params = [p for p in heads.parameters()]
    lrs = torch.tensor(cfg.lrs, dtype=torch.float32, device=device)
    opt = StackedAdamW(params, lrs, cfg.weight_decay)
    rng = np.random.default_rng(seed + 1)
    steps_per_epoch = math.ceil(len(rows) / cfg.batch_size)
    total, warmup = cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch
    labels = torch.as_tensor(data.labels, device=device)
    heads.train()
    step = 0
    desc = f"probes ({len(heads)} layers x {len(cfg.lrs)} lrs)"
    for _ in progress_bar(range(cfg.epochs), enabled=progress, desc=desc, unit="epoch", leave=False):
        order = rng.permutation(rows)
        for start in range(0, len(order), cfg.batch_size):
            idx = np.sort(order[start : start + cfg.batch_size])
            if len(idx) < 2:  # batch norm needs two samples
                continue
            views = rng.integers(0, next(iter(data.features.values())).shape[1], size=len(idx))
            loss = sum(
                _loss(heads[str(layer)], _batch(feats, idx, views, device), labels[idx])
                for layer, feats in data.features.items()
            )
            for p in params:
                p.grad = None
            loss.backward()
            clip_per_head(params, cfg.clip_grad)
            opt.step(warmup_cosine(step, total, warmup))
            step += 1


def _batch(feats: np.ndarray, idx: np.ndarray, views: np.ndarray, device: torch.device) -> torch.Tensor:
    # feats: (N, V, ...) memmap; one view per sample (random views act as augmentation when V > 1)
    return torch.from_numpy(np.asarray(feats[idx, views], dtype=np.float32)).to(device)


def _loss(head: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = head(x)  # (n, B, C): summing the heads' mean losses keeps their gradients separate
    return F.cross_entropy(logits.flatten(0, 1), y.repeat(logits.shape[0]), reduction="sum") / len(y)


@torch.no_grad()
def _predict(head: nn.Module, feats: np.ndarray, rows: np.ndarray, batch_size: int, device: torch.device) -> np.ndarray:
    """(n, len(rows), C) probabilities, softmax averaged over the V views of each sample."""
    head.eval()
    out = []
    views = feats.shape[1]
    for start in range(0, len(rows), batch_size):
        idx = rows[start : start + batch_size]
        x = torch.from_numpy(np.asarray(feats[idx], dtype=np.float32)).to(device)  # (b, V, ...)
        probs = head(x.flatten(0, 1)).softmax(-1)  # (n, b*V, C)
        out.append(probs.view(probs.shape[0], len(idx), views, -1).mean(2).cpu())
    return torch.cat(out, 1).numpy()


def topk_accuracy(probs: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of rows whose label is among the k most probable classes (probs: (..., N, C))."""
    k = min(k, probs.shape[-1])
    top = np.argsort(-probs, axis=-1, kind="stable")[..., :k]
    return (top == labels[:, None]).any(-1).mean(-1)


def _score(
    layers: list[int], cfg: ProbeConfig, hold: dict, hold_labels: np.ndarray, tested: dict, test_labels: np.ndarray
) -> GridResult:
    rows, best_by_layer = [], {}
    for layer in layers:
        h1 = topk_accuracy(hold[layer], hold_labels)
        t1, t5 = topk_accuracy(tested[layer], test_labels), topk_accuracy(tested[layer], test_labels, 5)
        for r, lr in enumerate(cfg.lrs):
            rows.append(
                {
                    "layer": layer,
                    "lr": lr,
                    "probe": cfg.probe,
                    "holdout_top1": float(h1[r]),
                    "test_top1": float(t1[r]),
                    "test_top5": float(t5[r]),
                }
            )
        best_by_layer[layer] = int(np.argmax(h1))
    per_layer = [rows[i * len(cfg.lrs) + best_by_layer[layer]] for i, layer in enumerate(layers)]
    selected = max(per_layer, key=lambda row: row["holdout_top1"])  # first (shallowest) wins a tie
    layer_probs = {layer: tested[layer][best_by_layer[layer]] for layer in layers}
    return GridResult(rows, selected, per_layer, layer_probs[selected["layer"]], layer_probs)
