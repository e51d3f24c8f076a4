"""The per-layer feature cache: one backbone pass per sample, stored on disk, read back by every later run.

An entry is one directory named by a content hash of everything that changes the numbers (backbone fingerprint,
preprocessing, dataset identity and sampling, layers, pooling, dtype, format version); its files, checksums and
repair are described in `cache_entry.py`.

Work is split into blocks of rows (one forward pass each). Under `torchrun` the ranks take disjoint blocks of
one entry: the first rank to finish a forward pass creates the arrays (under a file lock, so two independent
runs on one cache directory cannot both create them), every rank writes its own rows, each process records the
samples it could not read in its own `skipped-<id>.json`, and rank 0 writes the completion marker once all rows
are done. Rows are flushed at intervals and only then marked filled, so a killed rank, restarted, recomputes
exactly the rows that were not on disk. Frames arrive as uint8 (or float in [0, 255]) and are normalised on the
device; tokens become fp16 on the device; a batch counts clips, and the views of a clip run in chunks of at most
`batch_size` clips, so memory is bounded whatever the number of test views.

Nothing is read back before it is checked: `extract` checks a complete entry against its checksum record once per
process (`Entry.check`; rank 0 checks, every rank follows its answer). A corrupted entry is named in one warning
and its damaged rows (or the whole entry) are recomputed; still corrupt after that, it is a DataError.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ..common import faults
from ..common.errors import DataError
from ..common.log import progress as progress_bar
from .backbone import Backbone
from .cache_entry import FILLED, FORMAT_VERSION, SKIPPED, TODO, VERIFY_BYTES, Entry, Features
from .dist import Dist

__all__ = ["FILLED", "FORMAT_VERSION", "SKIPPED", "TODO", "ClipSource", "FeatureCache", "Features"]
_Entry = Entry  # the name older code and tests use
FP16_MAX = 65504.0
FLUSH_SECONDS = 20.0  # written rows are flushed and marked filled at least this often
log = logging.getLogger(__name__)


def last_and_mean(feats: torch.Tensor) -> torch.Tensor:
    """(n, T', H', W', D) -> (n, 2, H', W', D): the last frame's grid and the time-averaged grid, all that heads
    reading the end of a clip need (Ego4D STA's box heads): 2 frames cached instead of T'."""
    return torch.stack([feats[:, -1], feats.mean(1)], 1)


# How the token grid of a view is stored: in full, or reduced on the device before it leaves it.
TOKEN_REDUCTIONS = {"full": lambda feats: feats, "last_and_mean": last_and_mean}


class ClipSource(Protocol):
    """One split of a dataset as the cache sees it.

    `load(i)` returns the sample's views `(V, T, C, H, W)` as uint8 frames, or float frames in [0, 255]; the
    cache normalises them on the device with the backbone's `preprocess`. A bad sample raises a DataError.
    """

    ids: Sequence[str]

    def identity(self) -> dict: ...

    def __len__(self) -> int: ...

    def load(self, i: int) -> torch.Tensor: ...


def compute_dtype(device: torch.device) -> str:
    return "bf16-autocast" if device.type == "cuda" else "fp32"


class FeatureCache:
    """A directory of cache entries; `extract` returns features, computing only what is missing."""

    def __init__(self, root: str | Path, dist: Dist | None = None) -> None:
        self.root = Path(root)
        self.dist = dist or Dist()
        self._checked: set[Path] = set()  # entries this process has checked against their checksums

    def key(
        self,
        backbone: Backbone,
        source: ClipSource,
        layers: Sequence[int],
        token_layers: Sequence[int],
        device: torch.device,
        reduction: str = "full",
    ) -> tuple[str, dict]:
        inputs = {
            "format": FORMAT_VERSION,
            "backbone": backbone.name,
            "fingerprint": backbone.fingerprint(),
            "backbone_config": backbone.config(),
            "source": source.identity(),
            "layers": sorted(set(layers)),
            "token_layers": sorted(set(token_layers)),
            "pooling": "mean",
            "dtype": compute_dtype(device),
        }
        if reduction != "full":
            inputs["token_reduction"] = reduction
        blob = json.dumps(inputs, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:20], inputs

    def extract(
        self,
        backbone: Backbone,
        source: ClipSource,
        *,
        layers: Sequence[int],
        token_layers: Sequence[int] = (),
        device: torch.device = torch.device("cpu"),
        batch_size: int = 32,
        progress: bool = False,
        num_workers: int = 0,
        token_reduction: str = "full",
    ) -> Features:
        """Features of every sample of `source` at `layers` (pooled) and `token_layers` (tokens, stored in full or
        reduced by a `TOKEN_REDUCTIONS` entry).

        Collective under torchrun: every rank calls it with the same arguments and computes its share.
        """
        layers = sorted(set(layers) | set(token_layers))
        key, inputs = self.key(backbone, source, layers, token_layers, device, token_reduction)
        plan = _Plan(layers, sorted(set(token_layers)), device, batch_size, num_workers, progress, token_reduction)
        t0 = time.perf_counter()
        computed, repaired = 0, False
        for _ in range(3):  # fill, check; a repaired entry is filled again (only what was damaged), checked again
            entry = Entry(self.root / key, inputs, list(source.ids))
            written = False
            if not self.dist.broadcast(entry.complete):  # rank 0's view: every rank takes the same branch
                computed += _fill(backbone, source, entry, plan, self.dist)
                self.dist.barrier()
                written = self.dist.main and entry.finish()
                self.dist.barrier()
            state = self._state(entry, trusted=written and not repaired)
            if state == "ok":
                break
            repaired = repaired or state == "repaired"
        else:
            raise DataError(
                f"{entry.path}: corrupt again after recomputing it (a failing disk?); see `toto-eval cache verify`"
            )
        feats = entry.open()
        feats.source = source
        done = int(self.dist.sum_(torch.tensor(computed)).item())
        feats.stats = {"computed": done, "cached": len(source) - done, "seconds": time.perf_counter() - t0, "key": key}
        return feats

    def _state(self, entry: Entry, trusted: bool) -> str:
        """Rank 0's verdict on a complete entry, "ok", "repaired" or "incomplete" (`Entry.check`), on every rank:
        checked once per process per entry, and not when this process has just written its checksum record from
        the bytes on disk (`trusted`)."""
        if entry.path in self._checked:
            return "ok"
        state = ("ok" if trusted else entry.check(VERIFY_BYTES)) if self.dist.main else None
        state = self.dist.broadcast(state)
        if state == "ok":
            self._checked.add(entry.path)
        return state

    def entries(self) -> list[Path]:
        return sorted(p for p in self.root.glob("*") if (p / "meta.json").exists()) if self.root.exists() else []


@dataclass(frozen=True)
class _Plan:
    layers: list[int]
    token_layers: list[int]
    device: torch.device
    batch_size: int  # clips (views) per forward pass
    num_workers: int
    progress: bool
    token_reduction: str = "full"


def _blocks(todo: np.ndarray, rows_per_block: int) -> list[np.ndarray]:
    """The todo rows grouped by fixed blocks of the index space ([0, b), [b, 2b), ...), so a block holds the same
    samples whatever the number of ranks or how often the extraction resumed: identical forward batches."""
    if not len(todo):
        return []
    keys = todo // rows_per_block
    cuts = np.flatnonzero(np.diff(keys)) + 1
    return np.split(todo, cuts)


def _fill(backbone: Backbone, source: ClipSource, entry: Entry, plan: _Plan, dist: Dist) -> int:
    """Compute this rank's share of the rows still to do; returns how many rows it computed."""
    views = max(1, int(getattr(source, "views", 1)))
    rows_per_block = max(1, plan.batch_size // views)
    todo = entry.todo()
    dist.barrier()  # every rank has read the fill state before any rank writes: they agree on the blocks
    mine = _blocks(todo, rows_per_block)[dist.rank :: dist.world]
    loader = torch.utils.data.DataLoader(
        _Loading(source),
        batch_sampler=[b.tolist() for b in mine],
        num_workers=plan.num_workers,
        collate_fn=list,
        pin_memory=plan.device.type == "cuda",
    )
    backbone.eval().to(plan.device)
    total = sum(len(b) for b in mine)
    bar = progress_bar(enabled=plan.progress, total=total, desc=f"features {backbone.name}", unit="clip", leave=False)
    done, pending, last_flush = 0, [], time.monotonic()
    for batch in loader:
        good = [(row, x) for row, x in batch if not isinstance(x, str)]
        for row, reason in ((row, x) for row, x in batch if isinstance(x, str)):
            log.warning("skipped: %s", reason)
            entry.skip(row, reason)
        if good:
            rows = np.array([row for row, _ in good])
            values, grid = _forward(backbone, torch.stack([x for _, x in good]), plan)
            if not entry.allocated:
                entry.allocate({k: v.shape[1:] for k, v in values.items()}, grid)
            entry.write(rows, values)
            faults.point("cache.batch")  # written, not yet flushed nor marked filled
            pending += rows.tolist()
            done += len(rows)
        if entry.allocated and time.monotonic() - last_flush > FLUSH_SECONDS:
            entry.flush(pending)
            pending, last_flush = [], time.monotonic()
        bar.update(len(batch))
    bar.close()
    if entry.allocated:
        entry.flush(pending)
    return done


@torch.inference_mode()
def _forward(backbone: Backbone, x: torch.Tensor, plan: _Plan) -> tuple[dict[str, np.ndarray], tuple[int, int, int]]:
    """(B, V, T, C, H, W) frames -> fp16 pooled / token arrays; views run in chunks of `batch_size` clips."""
    b, v = x.shape[:2]
    flat = x.flatten(0, 1)  # (B*V, T, C, H, W): the views of all clips
    parts: dict[str, list[np.ndarray]] = {}
    grid = None
    for chunk in flat.split(plan.batch_size):
        values, grid = _forward_chunk(backbone, chunk, plan)
        for name, value in values.items():
            parts.setdefault(name, []).append(value)
    out = {name: np.concatenate(p).reshape(b, v, *p[0].shape[1:]) for name, p in parts.items()}
    return out, grid


def _forward_chunk(backbone: Backbone, x: torch.Tensor, plan: _Plan) -> tuple[dict[str, np.ndarray], tuple]:
    device = plan.device
    x = backbone.preprocess.normalize(x.to(device, non_blocking=True))  # uint8 travels, floats are made here
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        out = backbone.forward_features(x, plan.layers)
    values = {}
    reduce = TOKEN_REDUCTIONS[plan.token_reduction]
    grid = tuple(reduce(next(iter(out.values()))[:1]).shape[1:4])  # of the stored token grid
    for layer, feats in out.items():
        feats = feats.float()  # (n, T', H', W', D)
        values[f"pooled_L{layer:03d}"] = _to_fp16(feats.mean(dim=(1, 2, 3)))
        if layer in plan.token_layers:
            values[f"tokens_L{layer:03d}"] = _to_fp16(reduce(feats).flatten(1, 3))
    return values, grid


def _to_fp16(t: torch.Tensor) -> np.ndarray:
    # Decoder activations can carry outlier channels beyond fp16's range; saturate rather than store inf.
    return t.clamp(-FP16_MAX, FP16_MAX).to(torch.float16).cpu().numpy()


class _Loading(torch.utils.data.Dataset):
    """Loads rows by index; a bad sample becomes its one-line reason instead of killing the run."""

    def __init__(self, source: ClipSource) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, row: int) -> tuple[int, torch.Tensor | str]:
        try:
            return row, self.source.load(row)
        except DataError as err:
            return row, str(err)
