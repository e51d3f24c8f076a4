"""The per-layer feature cache: one backbone pass per sample, stored on disk, read back by every later run.

An entry is one directory named by a content hash of everything that changes the numbers (backbone fingerprint,
preprocessing, dataset identity and sampling, layers, pooling, dtype, format version). Inside it:

    meta.json            the key's inputs, shapes, dtype, counts; written when the arrays are created
    index.json           the sample ids, row order
    pooled_L007.npy      (N, V, D) float16, the token-grid mean of layer 7, for every requested layer
    tokens_L007.npy      (N, V, L, D) float16, full tokens, only for `token_layers` (they are large)
    filled.npy           (N,) uint8: 0 = to do, 1 = written, 2 = skipped (bad input; reason in skipped.json)
    COMPLETE             written last, by atomic rename

Arrays are `.npy` memory maps, so a killed extraction keeps every flushed row: rows are flushed before their
fill bits, and a restart computes only the rows still at 0. The size is printed before anything is written,
and extraction refuses to start when the disk cannot hold it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ..common.errors import DataError, TotoEvalError
from ..common.log import progress as progress_bar
from .backbone import Backbone

FORMAT_VERSION = 1
FP16_MAX = 65504.0
TODO, FILLED, SKIPPED = 0, 1, 2
log = logging.getLogger(__name__)


class ClipSource(Protocol):
    """One split of a dataset as the cache sees it."""

    ids: Sequence[str]

    def identity(self) -> dict: ...

    def __len__(self) -> int: ...

    def load(self, i: int) -> torch.Tensor: ...  # (V, T, C, H, W) float, normalised; DataError on bad input


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

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def key(
        self,
        backbone: Backbone,
        source: ClipSource,
        layers: Sequence[int],
        token_layers: Sequence[int],
        device: torch.device,
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
        progress: bool = True,
        num_workers: int = 0,
    ) -> Features:
        """Features of every sample of `source` at `layers` (pooled) and `token_layers` (full tokens)."""
        layers = sorted(set(layers) | set(token_layers))
        key, inputs = self.key(backbone, source, layers, token_layers, device)
        entry = _Entry(self.root / key, inputs, list(source.ids))
        t0 = time.perf_counter()
        computed = 0
        if not entry.complete:
            todo = entry.todo()
            if len(todo):
                computed = _run(
                    backbone, source, entry, todo, layers, token_layers, device, batch_size, progress, num_workers
                )
            entry.finish()
        feats = entry.open()
        feats.source = source
        feats.stats = {
            "computed": computed,
            "cached": len(source) - computed,
            "seconds": time.perf_counter() - t0,
            "key": key,
        }
        return feats

    def entries(self) -> list[Path]:
        return sorted(p for p in self.root.glob("*") if (p / "meta.json").exists()) if self.root.exists() else []


class _Entry:
    """One cache directory: creation, fill bookkeeping, completion and read-back."""

    def __init__(self, path: Path, inputs: dict, ids: list[str]) -> None:
        self.path, self.inputs, self.ids = path, inputs, ids
        self.complete = (path / "COMPLETE").exists()
        self._arrays: dict[str, np.ndarray] = {}
        self.filled: np.ndarray | None = None

    def todo(self) -> np.ndarray:
        if (self.path / "filled.npy").exists():
            self._open_for_write()
            return np.flatnonzero(self.filled == TODO)
        return np.arange(len(self.ids))

    def create(self, shapes: dict[str, tuple[int, ...]], grid: tuple[int, int, int]) -> None:
        """Allocate every array once the first batch has shown the shapes; refuse if the disk is too small."""
        n = len(self.ids)
        nbytes = sum(n * int(np.prod(s)) * 2 for s in shapes.values())
        self.path.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.path).free
        log.info(
            "cache %s: will write %.1f MiB for %d samples (%d arrays); %.1f GiB free",
            self.path.name, nbytes / 2**20, n, len(shapes), free / 2**30,
        )  # fmt: skip
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
        _atomic_write(self.path / "index.json", json.dumps(self.ids))
        for name, shape in shapes.items():
            np.lib.format.open_memmap(self.path / f"{name}.npy", mode="w+", dtype=np.float16, shape=(n, *shape))
        np.save(self.path / "filled.npy", np.zeros(n, dtype=np.uint8))
        _atomic_write(self.path / "meta.json", json.dumps(meta, indent=1, default=str))
        self._open_for_write()

    def _open_for_write(self) -> None:
        meta = json.loads((self.path / "meta.json").read_text())
        self._arrays = {name: np.load(self.path / f"{name}.npy", mmap_mode="r+") for name in meta["arrays"]}
        self.filled = np.load(self.path / "filled.npy", mmap_mode="r+")

    @property
    def allocated(self) -> bool:
        return self.filled is not None

    def write(self, rows: np.ndarray, values: dict[str, np.ndarray]) -> None:
        for name, arr in values.items():
            self._arrays[name][rows] = arr
            self._arrays[name].flush()
        self.filled[rows] = FILLED  # after the data: a row marked filled is always on disk
        self.filled.flush()

    def skip(self, row: int, reason: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        skipped = self._skipped()
        skipped[self.ids[row]] = reason
        _atomic_write(self.path / "skipped.json", json.dumps(skipped, indent=1))
        if self.filled is not None:
            self.filled[row] = SKIPPED
            self.filled.flush()

    def _skipped(self) -> dict[str, str]:
        p = self.path / "skipped.json"
        return json.loads(p.read_text()) if p.exists() else {}

    def finish(self) -> None:
        if self.filled is None:
            raise DataError(f"{self.path}: no sample could be read ({len(self._skipped())} skipped)")
        self._arrays, self.filled = {}, None
        _atomic_write(self.path / "COMPLETE", "ok\n")
        self.complete = True

    def open(self) -> Features:
        meta = json.loads((self.path / "meta.json").read_text())
        arrays = {name: np.load(self.path / f"{name}.npy", mmap_mode="r") for name in meta["arrays"]}
        pooled = {int(n.split("_L")[1]): a for n, a in arrays.items() if n.startswith("pooled_")}
        tokens = {int(n.split("_L")[1]): a for n, a in arrays.items() if n.startswith("tokens_")}
        return Features(self.ids, pooled, tokens, tuple(meta["grid"]), skipped=self._skipped())


def _run(
    backbone: Backbone,
    source: ClipSource,
    entry: _Entry,
    todo: np.ndarray,
    layers: list[int],
    token_layers: Sequence[int],
    device: torch.device,
    batch_size: int,
    progress: bool,
    num_workers: int,
) -> int:
    """Push the `todo` rows through the backbone in batches; one forward gives every layer."""
    loader = torch.utils.data.DataLoader(
        _Loading(source, todo), batch_size=batch_size, num_workers=num_workers, collate_fn=list
    )
    backbone.eval().to(device)
    done = 0
    bar = progress_bar(enabled=progress, total=len(todo), desc=f"features {backbone.name}", unit="clip", leave=False)
    for batch in loader:
        good = [(row, x) for row, x in batch if not isinstance(x, str)]
        for row, reason in ((row, x) for row, x in batch if isinstance(x, str)):
            log.warning("skipped: %s", reason)
            entry.skip(row, reason)
        if good:
            rows = np.array([row for row, _ in good])
            values, grid = _forward(backbone, torch.stack([x for _, x in good]), layers, token_layers, device)
            if not entry.allocated:
                entry.create({k: v.shape[1:] for k, v in values.items()}, grid)
                for sid in entry._skipped():
                    entry.filled[entry.ids.index(sid)] = SKIPPED
            entry.write(rows, values)
            done += len(rows)
        bar.update(len(batch))
    bar.close()
    return done


@torch.inference_mode()
def _forward(
    backbone: Backbone, x: torch.Tensor, layers: list[int], token_layers: Sequence[int], device: torch.device
) -> tuple[dict[str, np.ndarray], tuple[int, int, int]]:
    b, v = x.shape[:2]
    x = x.flatten(0, 1).to(device)  # (B*V, T, C, H, W): all views of all clips in one pass
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        out = backbone.forward_features(x, layers)
    values = {}
    grid = tuple(next(iter(out.values())).shape[1:4])
    for layer, feats in out.items():
        feats = feats.float()  # (B*V, T', H', W', D)
        values[f"pooled_L{layer:03d}"] = _to_fp16(feats.mean(dim=(1, 2, 3)).reshape(b, v, -1))
        if layer in token_layers:
            values[f"tokens_L{layer:03d}"] = _to_fp16(feats.flatten(1, 3).reshape(b, v, -1, feats.shape[-1]))
    return values, grid


def _to_fp16(t: torch.Tensor) -> np.ndarray:
    # Decoder activations can carry outlier channels beyond fp16's range; saturate rather than store inf.
    return t.clamp(-FP16_MAX, FP16_MAX).cpu().numpy().astype(np.float16)


class _Loading(torch.utils.data.Dataset):
    """Loads the rows still to do; a bad sample becomes its one-line reason instead of killing the run."""

    def __init__(self, source: ClipSource, rows: np.ndarray) -> None:
        self.source, self.rows = source, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int) -> tuple[int, torch.Tensor | str]:
        row = int(self.rows[k])
        try:
            return row, self.source.load(row)
        except DataError as err:
            return row, str(err)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
