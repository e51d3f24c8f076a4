"""One feature-cache entry on disk: creation, fill bookkeeping, completion with checksums, and the checks that
keep a corrupted entry from ever being read as sound.

    meta.json                    the key's inputs, shapes, dtype, counts; written last when the arrays are created
    index.json                   the sample ids, row order
    pooled_L007.npy              (N, V, D) float16, the token-grid mean of layer 7, for every requested layer
    tokens_L007.npy              (N, V, L, D) float16, full tokens, only for token layers (they are large)
    filled.npy                   (N,) uint8: 0 = to do, 1 = written, 2 = skipped (bad input)
    skipped-<host>-<pid>.json    the samples one process could not read, while filling
    skipped.json                 all of them, merged when the entry completes
    COMPLETE                     written last, by atomic rename: the checksum record (JSON)

Arrays are preallocated when created (`files.preallocate`): on a full disk, writing into a sparse memory map
kills the process with SIGBUS; preallocated, the full disk is a one-line error at creation, and the arrays
already created are removed.

Checksums. The process that completes an entry reads it back and records a SHA-256 per chunk of rows (about
16 MiB) of every array, and one per small file (meta, index, fill state, skipped). Why chunks of rows: a flipped
value is located to the rows to recompute (the fill machinery then recomputes exactly those, as after a kill), an
open can check a sample of a terabyte entry, and chunks hash in parallel. Why read back at completion rather than
hash rows as they are written: rows are written in blocks that depend on the batch size, the number of ranks and
where a killed run resumed, and two runs may fill one entry; the bytes on disk at completion are what every
later read sees. `check` verifies (all chunks up to VERIFY_BYTES, a random sample beyond) and, under the entry's
lock, resets what is damaged: rows back to "to do", or the whole entry when a small file or an array header is
wrong. `toto-eval cache verify` checks everything.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..common import faults
from ..common import files as fs
from ..common.checksums import ALGORITHM, array_sums, chunk_rows, file_digest, rows_per_chunk
from ..common.errors import DataError, TotoEvalError, data_error
from ..common.files import atomic_write_text, disk_error, file_lock

if TYPE_CHECKING:
    from .cache import ClipSource

FORMAT_VERSION = 2  # 2: checksums in COMPLETE, skipped.json, preallocated arrays
TODO, FILLED, SKIPPED = 0, 1, 2
SMALL_FILES = ("meta.json", "index.json", "filled.npy", "skipped.json")
VERIFY_BYTES = 8 * 2**30  # an open verifies every chunk of an entry up to this size, a random sample beyond
LOUD_BYTES = 16 * 2**20  # entries from this size on announce themselves at INFO (smaller ones at DEBUG)
log = logging.getLogger(__name__)


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


@dataclass
class Damage:
    """A part of an entry that does not match its checksum record: `rows` to recompute, or None (the whole)."""

    text: str  # one line naming the file
    rows: np.ndarray | None = None


def load_array(path: Path, mmap_mode: str | None = "r") -> np.ndarray:
    """A cache array, memory-mapped, never unpickled; an unreadable one is a one-line DataError naming it."""
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except Exception as err:  # ValueError (object array, bad header), OSError, EOFError ...
        first = (str(err).strip().splitlines() or [""])[0][:150]
        raise data_error(path, f"unreadable cache array ({type(err).__name__}: {first})") from None


def read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise data_error(path, f"unreadable ({type(err).__name__})") from None


class Entry:
    """One cache directory: creation, fill bookkeeping, completion, checks and read-back."""

    def __init__(self, path: Path, inputs: dict, ids: list[str]) -> None:
        self.path, self.inputs, self.ids = path, inputs, ids
        self.lock_path = path.with_name(f".{path.name}.lock")
        self._arrays: dict[str, np.ndarray] = {}
        self.filled: np.ndarray | None = None
        self._skipped_file = path / f"skipped-{socket.gethostname()}-{os.getpid()}.json"
        self._my_skips: dict[str, str] = {}

    @property
    def complete(self) -> bool:
        return (self.path / "COMPLETE").exists()

    @property
    def allocated(self) -> bool:
        return self.filled is not None

    def meta(self) -> dict:
        return read_json(self.path / "meta.json")

    def todo(self) -> np.ndarray:
        if (self.path / "meta.json").exists():
            self._open_for_write()
            return np.flatnonzero(self.filled == TODO)
        return np.arange(len(self.ids))

    # --- filling ------------------------------------------------------------------------------------------------

    def allocate(self, shapes: dict[str, tuple[int, ...]], grid: tuple[int, int, int]) -> None:
        """Create the arrays (or open them when another process already did), under the entry's lock."""
        with file_lock(self.lock_path):
            if not (self.path / "meta.json").exists():
                self._create(shapes, grid)
            self._open_for_write()

    def _create(self, shapes: dict[str, tuple[int, ...]], grid: tuple[int, int, int]) -> None:
        n = len(self.ids)
        nbytes = sum(n * int(np.prod(s)) * 2 for s in shapes.values())
        self.path.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.path).free
        level = logging.INFO if nbytes >= LOUD_BYTES else logging.DEBUG  # DAVIS and robot make dozens of tiny ones
        log.log(level, "cache %s: will write %.1f MiB for %d samples (%d arrays); %.1f GiB free",
                self.path.name, nbytes / 2**20, n, len(shapes), free / 2**30)  # fmt: skip
        if nbytes * 1.05 > free:
            raise TotoEvalError(
                f"{self.path}: features need {nbytes / 2**30:.2f} GiB but only "
                f"{free / 2**30:.2f} GiB are free; use --cache-dir elsewhere or fewer --layers"
            )
        meta = {**self.inputs, "n": n, "grid": list(grid), "arrays": {k: list(s) for k, s in shapes.items()},
                "dtype_stored": "float16", "created": time.strftime("%Y-%m-%dT%H:%M:%S")}  # fmt: skip
        made = [self.path / f"{name}.npy" for name in shapes] + [self.path / "filled.npy"]
        try:
            atomic_write_text(self.path / "index.json", json.dumps(self.ids))
            for name, shape in shapes.items():
                created = np.lib.format.open_memmap(self.path / f"{name}.npy", "w+", np.float16, (n, *shape))
                del created  # the header and the (sparse) file exist; the memory map is opened again below
                fs.preallocate(self.path / f"{name}.npy")  # a full disk fails here, not as a SIGBUS mid-write
            np.save(self.path / "filled.npy", np.zeros(n, dtype=np.uint8))
        except OSError as err:
            for file in made:  # give the space back; without meta.json the entry is not allocated
                file.unlink(missing_ok=True)
            raise disk_error(self.path, err) from err
        faults.point("cache.create")
        atomic_write_text(self.path / "meta.json", json.dumps(meta, indent=1, default=str))  # last: "allocated"

    def _open_for_write(self) -> None:
        names = self.meta()["arrays"]
        self._arrays = {name: load_array(self.path / f"{name}.npy", "r+") for name in names}
        self.filled = load_array(self.path / "filled.npy", "r+")

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
            faults.point("cache.flush")
            if self._my_skips:
                atomic_write_text(self._skipped_file, json.dumps(self._my_skips, indent=1))
                row_of = {sid: i for i, sid in enumerate(self.ids)}
                for sid in self._my_skips:
                    self.filled[row_of[sid]] = SKIPPED
            self.filled[rows] = FILLED
            self.filled.flush()
        except OSError as err:
            raise disk_error(self.path, err) from err

    def skipped(self) -> dict[str, str]:
        """The unreadable samples: the merged record of a complete entry, else every process's files merged."""
        if self.complete and (self.path / "skipped.json").exists():
            return read_json(self.path / "skipped.json")
        merged: dict[str, str] = {}
        for file in sorted(self.path.glob("skipped-*.json")):
            merged.update(read_json(file))
        return merged

    # --- completion and checks ----------------------------------------------------------------------------------

    def finish(self) -> bool:
        """Write the checksum record and the completion marker once every row is filled or skipped (under the
        lock); False when another process completed the entry first."""
        with file_lock(self.lock_path):
            if self.complete:
                return False
            if not (self.path / "meta.json").exists():
                raise DataError(f"{self.path}: no sample could be read ({len(self._my_skips)} skipped)")
            filled = load_array(self.path / "filled.npy", None)
            missing = int((filled == TODO).sum())
            if missing:
                raise TotoEvalError(f"{self.path}: {missing} rows were not written (a rank stopped?); run again")
            row_of = {sid: i for i, sid in enumerate(self.ids)}
            skipped = {sid: why for sid, why in self.skipped().items() if filled[row_of[sid]] == SKIPPED}
            atomic_write_text(self.path / "skipped.json", json.dumps(skipped, indent=1, sort_keys=True))
            record = self._record()
            faults.point("cache.finish")
            atomic_write_text(self.path / "COMPLETE", json.dumps(record, indent=1))
            fs.remove_stale_temporaries(self.path)
        return True

    def _record(self) -> dict:
        arrays = {}
        for name in self.meta()["arrays"]:
            array = load_array(self.path / f"{name}.npy")
            per = rows_per_chunk(array)
            sums = array_sums(array, per)
            arrays[name] = {"rows_per_chunk": per, "sums": [sums[k] for k in sorted(sums)]}
        files = {name: file_digest(self.path / name) for name in SMALL_FILES}
        return {"format": FORMAT_VERSION, "algorithm": ALGORITHM, "files": files, "arrays": arrays,
                "completed": time.strftime("%Y-%m-%dT%H:%M:%S")}  # fmt: skip

    def check(self, budget: int | None = VERIFY_BYTES) -> str:
        """Verify and, if damaged, repair: returns "ok", "incomplete", or "repaired" (the damage named in one
        warning and reset for recomputation); under the entry's lock, so no two processes check or repair it at
        once."""
        with file_lock(self.lock_path):
            if not self.complete:
                return "incomplete"
            damage = self.verify(budget)
            if not damage:
                return "ok"
            more = f" (and {len(damage) - 1} more)" if len(damage) > 1 else ""
            what = "the whole entry" if any(d.rows is None for d in damage) else "those rows"
            log.warning("cache entry %s is corrupt: %s%s; recomputing %s", self.path, damage[0].text, more, what)
            self.reset(damage)
            return "repaired"

    def verify(self, budget: int | None = None) -> list[Damage]:
        """What does not match the checksum record: every chunk, or (`budget` bytes) a random sample of them."""
        try:
            record = read_json(self.path / "COMPLETE")
            if record.get("format") != FORMAT_VERSION or record.get("algorithm") != ALGORITHM:
                return [Damage(f"{self.path / 'COMPLETE'}: no checksum record of format {FORMAT_VERSION}")]
            for name, expected in record["files"].items():
                if not (self.path / name).exists() or file_digest(self.path / name) != expected:
                    return [Damage(f"{self.path / name}: does not match its checksum")]
            arrays = {name: load_array(self.path / f"{name}.npy") for name in self.meta()["arrays"]}
        except (DataError, AttributeError, KeyError, TypeError) as err:
            return [Damage(str(err) if isinstance(err, DataError) else f"{self.path}: malformed checksum record")]
        meta = self.meta()
        total = sum(a.nbytes for a in arrays.values())
        share = 1.0 if budget is None or total <= budget else budget / total
        rng = np.random.default_rng()  # a different sample at every open: over time every chunk is checked
        damage = []
        for name, array in arrays.items():
            expected, kept = (meta["n"], *meta["arrays"][name]), record["arrays"].get(name)
            if array.shape != expected or array.dtype != np.float16 or kept is None:
                return [Damage(f"{self.path / name}.npy: shape {array.shape} {array.dtype}, expected {expected}")]
            per, sums = kept["rows_per_chunk"], kept["sums"]
            if len(sums) != -(-len(array) // per):
                return [Damage(f"{self.path / name}.npy: {len(sums)} checksums for {len(array)} rows")]
            chunks = np.arange(len(sums))
            if share < 1.0:
                chunks = np.sort(rng.choice(chunks, size=max(1, round(share * len(chunks))), replace=False))
            got = array_sums(array, per, chunks.tolist())
            bad = [k for k in chunks.tolist() if got[k] != sums[k]]
            if bad:
                rows = np.concatenate([chunk_rows(k, per, len(array)) for k in bad])
                text = f"{self.path / name}.npy: rows {_spans(rows)} do not match their checksums"
                damage.append(Damage(text, rows))
        return damage

    def reset(self, damage: list[Damage]) -> None:
        """Make damaged rows "to do" again (the marker goes first), or remove the whole entry. Caller holds the
        lock."""
        (self.path / "COMPLETE").unlink(missing_ok=True)
        if any(d.rows is None for d in damage):
            shutil.rmtree(self.path, ignore_errors=True)
            return
        filled = load_array(self.path / "filled.npy", "r+")
        filled[np.unique(np.concatenate([d.rows for d in damage]))] = TODO
        filled.flush()
        (self.path / "skipped.json").unlink(missing_ok=True)

    def open(self) -> Features:
        meta = self.meta()
        arrays = {name: load_array(self.path / f"{name}.npy") for name in meta["arrays"]}
        pooled = {int(n.split("_L")[1]): a for n, a in arrays.items() if n.startswith("pooled_")}
        tokens = {int(n.split("_L")[1]): a for n, a in arrays.items() if n.startswith("tokens_")}
        return Features(self.ids, pooled, tokens, tuple(meta["grid"]), skipped=self.skipped())


def _spans(rows: np.ndarray) -> str:
    """`[0 1 2 7 8]` -> "0-2, 7-8" (at most three spans, then a count)."""
    cuts = np.flatnonzero(np.diff(rows) != 1) + 1
    spans = [f"{p[0]}-{p[-1]}" if len(p) > 1 else f"{p[0]}" for p in np.split(rows, cuts)]
    return ", ".join(spans[:3]) + (f" and {len(spans) - 3} more spans" if len(spans) > 3 else "")
