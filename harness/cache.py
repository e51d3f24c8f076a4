"""The per-layer feature cache: one backbone pass per sample, stored on disk, read back by every later run.

An entry is one directory named by a content hash of everything that changes the numbers (backbone fingerprint,
preprocessing, dataset identity and sampling, layers, pooling, dtype, format version). Inside it:

    meta.json            the key's inputs, shapes, dtype, counts; written when the arrays are created
    index.json           the sample ids, row order
    pooled_L007.npy      (N, V, D) float16, the token-grid mean of layer 7, for every requested layer
    tokens_L007.npy      (N, V, L, D) float16, full tokens, only for `token_layers` (they are large)
    filled.npy           (N,) uint8: 0 = to do, 1 = written, 2 = skipped (bad input; reason in skipped-*.json)
    COMPLETE             written last, by atomic rename

Work is split into blocks of rows (one forward pass each). Under `torchrun` the ranks take disjoint blocks of
one entry: the first rank to finish a forward pass creates the arrays (under a file lock, so two independent
runs on one cache directory cannot both create them), every rank writes its own rows, each process records the
samples it could not read in its own `skipped-<id>.json`, and rank 0 writes the completion marker once all rows
are done. Rows are flushed at intervals and only then marked filled, so a killed rank, restarted, recomputes
exactly the rows that were not on disk. Frames arrive as uint8 (or float in [0, 255]) and are normalised on the
device; tokens become fp16 on the device; a batch counts clips, and the views of a clip run in chunks of at most
`batch_size` clips, so memory is bounded whatever the number of test views.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ..common.errors import DataError, TotoEvalError
from ..common.files import atomic_write_text, disk_error, file_lock
from ..common.log import progress as progress_bar
from .backbone import Backbone
from .dist import Dist

FORMAT_VERSION = 1
FP16_MAX = 65504.0
TODO, FILLED, SKIPPED = 0, 1, 2
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


@dataclass
class Features:
    """Cached features of one source: memory-mapped, row i belongs to `ids[i]`, i.e. to `source`'s sample i.

    `rows()` are the rows that hold features (unreadable samples are skipped); `labels` and `entries` are the
    source's labels and per-sample records of exactly those rows, so a task never re-aligns them by hand.
    """

    ids: list[str]
    pooled: dict[int, np.ndarray]  # layer -> (N, V, D)
    tokens: dict[int, np.ndarray]  # layer -> (N, V, L, D)
    grid: tuple[int, int, int]  # (T', H', W') of one view
    stats: dict = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    source: ClipSource | None = None

    def rows(self) -> np.ndarray:
        """Indices of the rows that hold features (skipped samples excluded)."""
        bad = set(self.skipped)
        return np.array([i for i, sid in enumerate(self.ids) if sid not in bad], dtype=np.int64)

    @property
    def labels(self) -> np.ndarray:
        """`source.labels` of the rows that hold features."""
        return np.asarray(self.source.labels)[self.rows()]

    @property
    def entries(self) -> list:
        """`source.entries` (per-sample records) of the rows that hold features."""
        entries = self.source.entries
        return [entries[i] for i in self.rows()]


def compute_dtype(device: torch.device) -> str:
    return "bf16-autocast" if device.type == "cuda" else "fp32"


class FeatureCache:
    """A directory of cache entries; `extract` returns features, computing only what is missing."""

    def __init__(self, root: str | Path, dist: Dist | None = None) -> None:
        self.root = Path(root)
        self.dist = dist or Dist()

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
        entry = _Entry(self.root / key, inputs, list(source.ids))
        t0 = time.perf_counter()
        computed = 0
        if not entry.complete:
            plan = _Plan(layers, sorted(set(token_layers)), device, batch_size, num_workers, progress, token_reduction)
            computed = _fill(backbone, source, entry, plan, self.dist)
            self.dist.barrier()
            if self.dist.main:
                entry.finish()
            self.dist.barrier()
        feats = entry.open()
        feats.source = source
        done = int(self.dist.sum_(torch.tensor(computed)).item())
        feats.stats = {"computed": done, "cached": len(source) - done, "seconds": time.perf_counter() - t0, "key": key}
        return feats

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


class _Entry:
    """One cache directory: creation, fill bookkeeping, completion and read-back."""

    def __init__(self, path: Path, inputs: dict, ids: list[str]) -> None:
        self.path, self.inputs, self.ids = path, inputs, ids
        self.lock_path = path.with_name(f".{path.name}.lock")
        self.complete = (path / "COMPLETE").exists()
        self._arrays: dict[str, np.ndarray] = {}
        self.filled: np.ndarray | None = None
        self._skipped_file = path / f"skipped-{socket.gethostname()}-{os.getpid()}.json"
        self._my_skips: dict[str, str] = {}

    def todo(self) -> np.ndarray:
        if (self.path / "meta.json").exists():
            self._open_for_write()
            return np.flatnonzero(self.filled == TODO)
        return np.arange(len(self.ids))

    @property
    def allocated(self) -> bool:
        return self.filled is not None

    def allocate(self, shapes: dict[str, tuple[int, ...]], grid: tuple[int, int, int]) -> None:
        """Create the arrays (or open them when another process already did), under the entry's lock."""
        with file_lock(self.lock_path):
            if (self.path / "meta.json").exists():
                self._open_for_write()
                return
            self._create(shapes, grid)
            self._open_for_write()

    def _create(self, shapes: dict[str, tuple[int, ...]], grid: tuple[int, int, int]) -> None:
        n = len(self.ids)
        nbytes = sum(n * int(np.prod(s)) * 2 for s in shapes.values())
        self.path.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.path).free
        log.info("cache %s: will write %.1f MiB for %d samples (%d arrays); %.1f GiB free",
                 self.path.name, nbytes / 2**20, n, len(shapes), free / 2**30)  # fmt: skip
        if nbytes * 1.05 > free:
            raise TotoEvalError(
                f"{self.path}: features need {nbytes / 2**30:.2f} GiB but only "
                f"{free / 2**30:.2f} GiB are free; use --cache-dir elsewhere or fewer --layers"
            )
        meta = {
            **self.inputs,
            "n": n,
            "grid": list(grid),
            "arrays": {k: list(s) for k, s in shapes.items()},
            "dtype_stored": "float16",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        try:
            atomic_write_text(self.path / "index.json", json.dumps(self.ids))
            for name, shape in shapes.items():
                np.lib.format.open_memmap(self.path / f"{name}.npy", mode="w+", dtype=np.float16, shape=(n, *shape))
            np.save(self.path / "filled.npy", np.zeros(n, dtype=np.uint8))
        except OSError as err:
            raise disk_error(self.path, err) from err
        atomic_write_text(self.path / "meta.json", json.dumps(meta, indent=1, default=str))  # last: "allocated"

    def _open_for_write(self) -> None:
        meta = json.loads((self.path / "meta.json").read_text())
        self._arrays = {name: np.load(self.path / f"{name}.npy", mmap_mode="r+") for name in meta["arrays"]}
        self.filled = np.load(self.path / "filled.npy", mmap_mode="r+")

    def write(self, rows: np.ndarray, values: dict[str, np.ndarray]) -> None:
        for name, arr in values.items():
            self._arrays[name][rows] = arr

    def skip(self, row: int, reason: str) -> None:
        self._my_skips[self.ids[row]] = reason

    def flush(self, rows: list[int]) -> None:
        """Make written rows durable, then mark them filled (and recorded skips skipped): in that order, so a
        row marked filled is always on disk."""
        try:
            for arr in self._arrays.values():
                arr.flush()
            if self._my_skips:
                atomic_write_text(self._skipped_file, json.dumps(self._my_skips, indent=1))
                for sid in self._my_skips:
                    self.filled[self.ids.index(sid)] = SKIPPED
            self.filled[rows] = FILLED
            self.filled.flush()
        except OSError as err:
            raise disk_error(self.path, err) from err

    def skipped(self) -> dict[str, str]:
        """Every process's recorded unreadable samples, merged."""
        merged: dict[str, str] = {}
        for file in sorted(self.path.glob("skipped*.json")):
            merged.update(json.loads(file.read_text()))
        return merged

    def finish(self) -> None:
        """Write the completion marker once every row is filled or skipped (rank 0, under the lock)."""
        with file_lock(self.lock_path):
            if (self.path / "COMPLETE").exists():
                return
            if not (self.path / "meta.json").exists():
                raise DataError(f"{self.path}: no sample could be read ({len(self._my_skips)} skipped)")
            filled = np.load(self.path / "filled.npy")
            missing = int((filled == TODO).sum())
            if missing:
                raise TotoEvalError(f"{self.path}: {missing} rows were not written (a rank stopped?); run again")
            atomic_write_text(self.path / "COMPLETE", "ok\n")
        self.complete = True

    def open(self) -> Features:
        meta = json.loads((self.path / "meta.json").read_text())
        arrays = {name: np.load(self.path / f"{name}.npy", mmap_mode="r") for name in meta["arrays"]}
        pooled = {int(n.split("_L")[1]): a for n, a in arrays.items() if n.startswith("pooled_")}
        tokens = {int(n.split("_L")[1]): a for n, a in arrays.items() if n.startswith("tokens_")}
        return Features(self.ids, pooled, tokens, tuple(meta["grid"]), skipped=self.skipped())


def _blocks(todo: np.ndarray, rows_per_block: int) -> list[np.ndarray]:
    """The todo rows grouped by fixed blocks of the index space ([0, b), [b, 2b), ...), so a block holds the same
    samples whatever the number of ranks or how often the extraction resumed: identical forward batches."""
    if not len(todo):
        return []
    keys = todo // rows_per_block
    cuts = np.flatnonzero(np.diff(keys)) + 1
    return np.split(todo, cuts)


def _fill(backbone: Backbone, source: ClipSource, entry: _Entry, plan: _Plan, dist: Dist) -> int:
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
