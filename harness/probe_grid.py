"""Training the probe grid: every (layer x learning rate x weight decay) head in one pass per batch.

The grid reads its inputs from a `Feed`: cached features (`CachedFeed`, read once into RAM when they fit a
budget, else gathered from the memory maps) or the frozen backbone itself (`online.OnlineFeed`). Everything else
is one code path for both modes:

- one seeded global permutation per epoch and one random view per sample (views act as augmentation); under
  torchrun each rank takes a contiguous slice of every global batch, gradients are summed over ranks, batch
  statistics are global (`GlobalBatchNorm`), so N ranks compute what one process computes;
- the loss is the mean over the global batch of every head's cross-entropy (a sum over heads, so they stay
  independent), per-head clipping, `StackedAdamW`, warm-up + cosine;
- a checkpoint after every epoch (heads, optimiser moments, data-order state), so a killed run resumes at the
  epoch it reached; the finished grid is kept too, so rerunning an identical probe costs nothing; one run at a
  time trains a state folder (rank 0 holds its lock), so a second run of the same grid waits and reads it back;
- selection on a seeded held-out part of train, never on the reported split; prediction on the held-out and test
  rows is sharded over ranks, with every view of a test sample (softmax averaged), and only hit counts and the
  chosen heads' probabilities are kept (a (heads x samples x classes) array would not fit at ImageNet size).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..common import faults
from ..common.files import atomic_write_bytes, atomic_write_text, file_lock, remove_stale_temporaries
from ..common.log import progress as progress_bar
from ..common.schedule import warmup_cosine
from .dist import Dist
from .probes import PROBES, ProbeConfig, StackedAdamW, clip_per_head, split_holdout, topk_hits

log = logging.getLogger(__name__)
GRID_FORMAT = 1


Batch = tuple[np.ndarray, np.ndarray | None]  # (rows, the view of each row or None for every view)


class Feed(Protocol):
    """The probe inputs of one split, row by row (rows are the samples that hold features)."""

    layers: list[int]
    labels: np.ndarray  # (num_rows,) int64
    views: int

    def dim(self, layer: int) -> tuple[int, ...]:
        """Shape of one view's input at `layer`: (L, D) tokens or (D,) pooled."""

    def batches(self, plan: list[Batch], device: torch.device) -> Iterator[dict[int, torch.Tensor]]:
        """For each (rows, views) of `plan`, in order: layer -> float32 `(len(rows), *dim)` with the chosen view
        of each row, or with views None `(len(rows) * V, *dim)`, every view of each row (row-major). Knowing
        the whole plan up front lets a feed read ahead."""


@dataclass
class GridResult:
    heads: list[dict]  # every head: layer, lr, weight_decay, probe, holdout_top1, test_top1, test_top5
    selected: dict  # the head with the best holdout top-1
    per_layer: list[dict]  # each layer's holdout-best head
    test_probs: np.ndarray  # (N_test, C) of the selected head
    layer_probs: dict[int, np.ndarray]  # layer -> (N_test, C) of that layer's holdout-best head


class CachedFeed:
    """A split's cached features as a Feed: in RAM when they fit `ram_bytes` (read once), else memory-mapped."""

    def __init__(self, arrays: dict[int, np.ndarray], rows: np.ndarray, labels: np.ndarray, ram_bytes: int) -> None:
        size = sum(int(np.prod(a.shape[1:])) * a.itemsize * len(rows) for a in arrays.values())
        in_ram = size <= ram_bytes
        # in RAM: the rows gathered once; else: (array, row map) so each batch reads only its rows from disk
        self._arrays = {k: np.ascontiguousarray(a[rows]) if in_ram else a for k, a in arrays.items()}
        self._rows = None if in_ram else rows
        self.layers, self.labels = sorted(arrays), np.asarray(labels)
        self.views = next(iter(arrays.values())).shape[1]
        log.debug("probe inputs: %.1f MiB, %s", size / 2**20, "in RAM" if in_ram else "memory-mapped")

    def dim(self, layer: int) -> tuple[int, ...]:
        return tuple(self._arrays[layer].shape[2:])

    def batches(self, plan: list[Batch], device: torch.device) -> Iterator[dict[int, torch.Tensor]]:
        for rows, views in plan:
            yield self.batch(rows, views, device)

    def batch(self, rows: np.ndarray, views: np.ndarray | None, device: torch.device) -> dict[int, torch.Tensor]:
        index = rows if self._rows is None else self._rows[rows]
        if not len(index):  # an empty slice of a batch smaller than the world
            return {layer: torch.zeros(0, *self.dim(layer), device=device) for layer in self.layers}
        out = {}
        for layer, array in self._arrays.items():
            x = array[index] if views is None else array[index, views]  # (b, V, *dim) or (b, *dim) float16
            x = torch.from_numpy(np.ascontiguousarray(x)).float()  # torch widens fp16 6x faster than numpy
            out[layer] = (x.flatten(0, 1) if views is None else x).to(device)
        return out


def fit_probe_grid(
    train: Feed,
    test: Feed,
    num_classes: int,
    cfg: ProbeConfig,
    *,
    num_heads: int,
    seed: int = 0,
    device: torch.device = torch.device("cpu"),
    progress: bool = False,
    dist: Dist | None = None,
    state_dir: Path | None = None,
) -> GridResult:
    """Train every head, select on a held-out part of train, score on test; resumable through `state_dir`."""
    dist = dist or Dist()
    with _state_lock(state_dir, dist):
        if _finished(state_dir, dist):
            log.info("probe grid read back from %s", state_dir)
            return _load_result(state_dir, dist)
        torch.manual_seed(seed)
        head_cls, n = PROBES.get(cfg.probe), len(cfg.settings())
        heads = nn.ModuleDict(
            {str(layer): head_cls(n, train.dim(layer)[-1], num_heads, num_classes) for layer in train.layers}
        ).to(device)
        fit_rows, hold_rows = split_holdout(len(train.labels), cfg.holdout, seed)
        _train(heads, train, fit_rows, cfg, seed, device, progress, dist, state_dir)
        hold = _predict(heads, train, hold_rows, cfg, device, dist)
        best = {layer: int(np.argmax(hits[0].mean(-1))) for layer, hits in hold.items()}
        tested = _predict(heads, test, np.arange(len(test.labels)), cfg, device, dist, keep=best)
        result = _score(train.layers, cfg, hold, tested, best)
        if state_dir is not None and dist.main:
            _save_result(state_dir, result, heads)
        return result


def _train(
    heads: nn.ModuleDict,
    feed: Feed,
    rows: np.ndarray,
    cfg: ProbeConfig,
    seed: int,
    device: torch.device,
    progress: bool,
    dist: Dist,
    state_dir: Path | None,
) -> None:
    params = list(heads.parameters())
    settings = torch.tensor(cfg.settings(), dtype=torch.float32, device=device)  # (n, 2): lr, weight decay
    opt = StackedAdamW(params, settings[:, 0].contiguous(), settings[:, 1].contiguous())
    rng = np.random.default_rng(seed + 1)
    steps_per_epoch = math.ceil(len(rows) / cfg.batch_size)
    total, warmup = cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch
    labels = torch.as_tensor(feed.labels, device=device)
    first, step = _resume(state_dir, heads, opt, rng)
    heads.train()
    desc = f"probes ({len(heads)} layers x {len(cfg.settings())} heads)"
    bar = progress_bar(enabled=progress, total=cfg.epochs, initial=first, desc=desc, unit="epoch", leave=False)
    for epoch in range(first, cfg.epochs):
        plan = _epoch_plan(rng, rows, cfg.batch_size, feed.views)  # the global batches, the same on every rank
        mine = [_slice(batch, dist) for batch in plan]
        for (idx, _), (rows_r, _), x in zip(plan, mine, feed.batches(mine, device), strict=True):
            loss = sum(_loss(heads[str(layer)], x[layer], labels[rows_r], len(idx)) for layer in feed.layers)
            for p in params:
                p.grad = None
            loss.backward()
            for p in params:
                dist.sum_(p.grad)  # the global batch's gradient (each rank's loss is its share of the mean)
            clip_per_head(params, cfg.clip_grad)
            opt.step(warmup_cosine(step, total, warmup))
            step += 1
        _checkpoint(state_dir, dist, heads, opt, rng, epoch + 1, step)
        bar.update(1)
    bar.close()


def _epoch_plan(rng: np.random.Generator, rows: np.ndarray, batch_size: int, views: int) -> list[Batch]:
    """One seeded permutation of `rows` cut into batches (sorted within), with one random view per sample; a
    last batch of one sample is dropped (batch norm needs two)."""
    order = rng.permutation(rows)
    plan = []
    for start in range(0, len(order), batch_size):
        idx = np.sort(order[start : start + batch_size])
        if len(idx) >= 2:
            plan.append((idx, rng.integers(0, views, size=len(idx))))
    return plan


def _slice(batch: Batch, dist: Dist) -> Batch:
    """This rank's contiguous slice of a global batch (possibly empty when the batch is smaller than the world)."""
    idx, views = batch
    part = np.array_split(np.arange(len(idx)), dist.world)[dist.rank]
    return idx[part], None if views is None else views[part]


def _loss(head: nn.Module, x: torch.Tensor, y: torch.Tensor, global_batch: int) -> torch.Tensor:
    logits = head(x)  # (n, b, C): summing the heads' losses keeps their gradients separate
    return F.cross_entropy(logits.flatten(0, 1), y.repeat(logits.shape[0]), reduction="sum") / global_batch


@torch.no_grad()
def _predict(
    heads: nn.ModuleDict,
    feed: Feed,
    rows: np.ndarray,
    cfg: ProbeConfig,
    device: torch.device,
    dist: Dist,
    keep: dict[int, int] | None = None,
) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """layer -> (top-1 hits (n, N), top-5 hits (n, N), probs (N, C) of head `keep[layer]`) over `rows`; every
    view of a row softmax-averaged; one pass over the inputs serves every layer; each rank predicts a shard."""
    heads.eval()
    labels = feed.labels[rows]
    shard = np.array_split(np.arange(len(rows)), dist.world)[dist.rank]
    parts: dict[int, list[list[np.ndarray]]] = {layer: [[], [], []] for layer in feed.layers}
    parts_plan = [shard[start : start + cfg.batch_size] for start in range(0, len(shard), cfg.batch_size)]
    for part, x in zip(parts_plan, feed.batches([(rows[p], None) for p in parts_plan], device), strict=True):
        for layer, inputs in x.items():  # (b*V, ...) per layer
            probs = heads[str(layer)](inputs).softmax(-1)  # (n, b*V, C)
            probs = probs.view(probs.shape[0], len(part), feed.views, -1).mean(2).cpu().numpy()  # (n, b, C)
            out = parts[layer]
            out[0].append(topk_hits(probs, labels[part], 1))
            out[1].append(topk_hits(probs, labels[part], 5))
            if keep is not None:
                out[2].append(probs[keep[layer]])
    heads.train()
    mine = {layer: (_cat(p[0], 1), _cat(p[1], 1), _cat(p[2], 0)) for layer, p in parts.items()}
    shards = dist.gather(mine)
    return {
        layer: tuple(_join([s[layer][i] for s in shards], axis=1 if i < 2 else 0) for i in range(3))
        for layer in feed.layers
    }


def _join(parts: list[np.ndarray | None], axis: int) -> np.ndarray | None:
    present = [p for p in parts if p is not None]
    return np.concatenate(present, axis=axis) if present else None


def _cat(parts: list[np.ndarray], axis: int) -> np.ndarray | None:
    return np.concatenate(parts, axis=axis) if parts else None


def _score(layers: list[int], cfg: ProbeConfig, hold: dict, tested: dict, best: dict[int, int]) -> GridResult:
    rows = []
    for layer in layers:
        h1 = hold[layer][0].mean(-1)
        t1, t5 = tested[layer][0].mean(-1), tested[layer][1].mean(-1)
        for r, (lr, wd) in enumerate(cfg.settings()):
            rows.append(
                {
                    "layer": layer,
                    "lr": lr,
                    "weight_decay": wd,
                    "probe": cfg.probe,
                    "holdout_top1": float(h1[r]),
                    "test_top1": float(t1[r]),
                    "test_top5": float(t5[r]),
                }
            )
    n = len(cfg.settings())
    per_layer = [rows[i * n + best[layer]] for i, layer in enumerate(layers)]
    selected = max(per_layer, key=lambda row: row["holdout_top1"])  # first (shallowest) wins a tie
    layer_probs = {layer: tested[layer][2] for layer in layers}
    return GridResult(rows, selected, per_layer, layer_probs[selected["layer"]], layer_probs)


# --- checkpoints and the finished grid -----------------------------------------------------------------------


@contextlib.contextmanager
def _state_lock(state_dir: Path | None, dist: Dist):
    """`.<folder>.lock` beside a probe state folder, held by rank 0 while it trains (its other ranks follow its
    decisions), so two runs never train, checkpoint and finish one grid at once."""
    if state_dir is None or not dist.main:
        yield
        return
    with file_lock(state_dir.with_name(f".{state_dir.name}.lock")):
        yield


def _finished(state_dir: Path | None, dist: Dist) -> bool:
    """Whether the grid is finished, as rank 0 (holding the lock) sees it: every rank takes the same branch."""
    return bool(dist.broadcast(state_dir is not None and dist.main and (state_dir / "grid.json").exists()))


def _resume(
    state_dir: Path | None, heads: nn.ModuleDict, opt: StackedAdamW, rng: np.random.Generator
) -> tuple[int, int]:
    """(epoch, step) to continue from ((0, 0) without a checkpoint); restores heads, moments and data order."""
    file = state_dir / "epoch.pt" if state_dir is not None else None
    if file is None or not file.exists():
        return 0, 0
    state = torch.load(file, map_location="cpu", weights_only=True)
    heads.load_state_dict(state["heads"])
    opt.load_state_dict(state["opt"])
    rng.bit_generator.state = json.loads(state["rng"])
    log.info("probe training resumed at epoch %d from %s", state["epoch"], file)
    return int(state["epoch"]), int(state["step"])


def _checkpoint(state_dir: Path | None, dist: Dist, heads: nn.ModuleDict, opt, rng, epoch: int, step: int) -> None:
    if state_dir is None or not dist.main:
        return
    import io

    state_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(
        {"heads": heads.state_dict(), "opt": opt.state_dict(), "rng": json.dumps(rng.bit_generator.state),
         "epoch": epoch, "step": step},
        buffer,
    )  # fmt: skip
    atomic_write_bytes(state_dir / "epoch.pt", buffer.getvalue())
    faults.point("probe.epoch")


def _save_result(state_dir: Path, result: GridResult, heads: nn.ModuleDict) -> None:
    """The finished grid: every head's weights (safetensors), the chosen heads' probabilities, the scores."""
    import io

    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in heads.state_dict().items()}
    atomic_write_bytes(state_dir / "heads.safetensors", save(tensors))
    faults.point("probe.save")
    buffer = io.BytesIO()
    arrays = {"test_probs": result.test_probs, **{f"layer_{k}": v for k, v in result.layer_probs.items()}}
    np.savez(buffer, **arrays)
    atomic_write_bytes(state_dir / "grid.npz", buffer.getvalue())
    chosen = [next(i for i, h in enumerate(result.heads) if h is row) for row in result.per_layer]
    record = {"format": GRID_FORMAT, "heads": result.heads, "per_layer": chosen, "selected": result.selected}
    atomic_write_text(state_dir / "grid.json", json.dumps(record))  # last: marks the grid finished
    faults.point("probe.save")
    (state_dir / "epoch.pt").unlink(missing_ok=True)
    remove_stale_temporaries(state_dir)


def _load_result(state_dir: Path, dist: Dist) -> GridResult:
    if dist.main:  # what a run killed after finishing the grid may have left: its last checkpoint, temporaries
        (state_dir / "epoch.pt").unlink(missing_ok=True)
        remove_stale_temporaries(state_dir)
    record = json.loads((state_dir / "grid.json").read_text())
    with np.load(state_dir / "grid.npz", allow_pickle=False) as arrays:
        layer_probs = {int(k.split("_")[1]): arrays[k] for k in arrays.files if k.startswith("layer_")}
        test_probs = arrays["test_probs"]
    heads = record["heads"]  # per-layer rows are the same dicts as their heads' rows, as when trained
    per_layer = [heads[i] for i in record["per_layer"]]
    # and the selected head is one of them (the same dict: what a task adds to a row, e.g. its interval, it has too)
    selected = next((row for row in per_layer if row == record["selected"]), record["selected"])
    return GridResult(heads, selected, per_layer, test_probs, layer_probs)
