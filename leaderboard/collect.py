"""Read, validate and de-duplicate result files: the only input the leaderboard has.

Every `<backbone>/<checkpoint tag>/<task>.json` under the results directories is parsed with
`harness.results.read_result`. A file that is malformed or partial (no task name, an "ok" result without a main
score, metrics that are not a mapping) is reported by name and skipped; the rest still make a table. Two files for
the same (backbone, checkpoint, task, task version, setting) resolve to the newest (by the `finished` time in its
provenance, else the file's mtime), with a note naming both. Different task versions get different keys, so they
are never merged. With `pool_seeds`, files that differ in their seed are kept apart and then pooled into one
entry per key, the mean over the seeds (`leaderboard/seeds.py`).

`intervals` and `mini_overrides` (newer files) are read into the entry; a malformed interval is dropped with a
note naming the file, and the rest of the file is still used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..common.errors import DataError
from ..harness.results import TaskResult, checkpoint_tag, read_result
from .intervals import Interval, parse_intervals
from .specs import spec_for, variant_of

FLAGS = ("limited", "random_init", "mini")


@dataclass(frozen=True)
class Entry:
    """One accepted result file."""

    result: TaskResult
    path: Path
    variant: str  # the task's setting (CATER "16f", DAVIS "toto256"), '' when it has none
    finished: float  # seconds since the epoch: what "newest" means
    intervals: dict[str, Interval] = field(default_factory=dict)  # metric key -> 95% interval, stored units
    mini_overrides: dict = field(default_factory=dict)  # config keys the mini suite changed
    problems: tuple[str, ...] = ()  # parts of the file that were ignored (malformed intervals)
    seeds: tuple[int, ...] = ()  # the seeds a pooled entry is the mean of; () for one run

    def interval(self, metric: str) -> Interval | None:
        return self.intervals.get(metric) if self.result.ok else None

    @property
    def checkpoint(self) -> str:
        return checkpoint_tag(self.result.checkpoint)

    @property
    def flags(self) -> tuple[str, ...]:
        return tuple(f for f in FLAGS if self.result.flags.get(f))

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        r = self.result
        return (r.backbone, self.checkpoint, r.task, str(r.task_version), self.variant)


@dataclass
class Collection:
    entries: list[Entry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # duplicates resolved
    skipped: list[str] = field(default_factory=list)  # "path: problem", one per rejected file


def collect(results_dirs: list[Path], pool_seeds: bool = False) -> Collection:
    """Every valid result under the given directories, newest per key (and seed, when pooling them), sorted by
    backbone, checkpoint, task."""
    out = Collection()
    newest: dict[tuple, Entry] = {}
    for path in result_files(results_dirs, out):
        try:
            entry = load_entry(path)
        except DataError as err:
            out.skipped.append(str(err))
            continue
        out.notes += [f"{entry.path}: {p} (ignored)" for p in entry.problems]
        key = (*entry.key, entry.result.seed) if pool_seeds else entry.key
        old = newest.get(key)
        if old is None:
            newest[key] = entry
            continue
        keep, drop = (entry, old) if entry.finished > old.finished else (old, entry)
        newest[key] = keep
        out.notes.append(
            f"duplicate {'/'.join(k for k in entry.key if k)}: kept {keep.path} (newer), ignored {drop.path}"
        )
    entries = list(newest.values())
    if pool_seeds:
        from .seeds import pool_seeds as pool  # seeds.py builds on Entry

        entries, notes = pool(entries)
        out.notes += notes
    out.entries = sorted(entries, key=lambda e: e.key)
    return out


def load_entry(path: Path) -> Entry:
    """Parse and validate one result file; DataError (naming the file) when it cannot be used."""
    try:
        result = read_result(path)
    except AttributeError:  # a JSON array or scalar: read_result expects an object (reported to the lead)
        raise DataError(f"{path}: not a toto-eval result file (not a JSON object)") from None
    problem = _problem(result)
    if problem:
        raise DataError(f"{path}: {problem}")
    variant = variant_of(spec_for(result.task, [result]), result)
    intervals, problems = parse_intervals(result.intervals)
    overrides = result.mini_overrides
    if overrides is not None and not isinstance(overrides, dict):
        problems.append(f"mini_overrides is a {type(overrides).__name__}, not a mapping")
    overrides = overrides if isinstance(overrides, dict) else {}
    return Entry(result, Path(path), variant, _finished(result, Path(path)), intervals, overrides, tuple(problems))


def result_files(results_dirs: list[Path], out: Collection) -> list[Path]:
    """The result files under each directory, in order; a missing directory goes to `out.skipped`."""
    files = []
    for root in results_dirs:
        root = Path(root)
        if not root.is_dir():
            out.skipped.append(f"{root}: results directory not found")
            continue
        # The contract's layout, <backbone>/<checkpoint tag>/<task>.json: other files there (DAVIS predictions) are
        # not results. Hidden files are write-in-progress temporaries (atomic rename).
        files += sorted(p for p in root.glob("*/*/*.json") if not any(part.startswith(".") for part in p.parts[-3:]))
    return files


def _problem(r: TaskResult) -> str:
    """Why a parsed record cannot go in a table ('' when it can)."""
    for name in ("backbone", "checkpoint", "task", "main_metric"):
        if not isinstance(getattr(r, name), str) or not getattr(r, name):
            return f"field {name!r} missing or not a string"
    if r.status not in ("ok", "failed"):
        return f"status {r.status!r} is neither 'ok' nor 'failed'"
    if not isinstance(r.metrics, dict) or not isinstance(r.flags, dict) or not isinstance(r.config, dict):
        return "metrics, flags and config must be mappings"
    if not isinstance(r.per_layer, list) or not isinstance(r.extra, dict):
        return "per_layer must be a list and extra a mapping"
    if r.ok and not _finite(r.main_score):
        return f"status 'ok' but main score {r.main_score!r} is not a number (partial result)"
    return ""


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _finished(result: TaskResult, path: Path) -> float:
    stamp = result.provenance.get("finished") if isinstance(result.provenance, dict) else None
    try:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except (TypeError, ValueError):
        return path.stat().st_mtime
