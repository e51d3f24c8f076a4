"""What a task is, and the run context every task talks to.

A task is a registered class with a frozen `Config`, a `version`, `tags`, a main metric, a `Display` and
`evaluate`. It owns its data (official layout, plus a mini generator writing the same layout), its protocol and
its metric, and nothing else: features come from `ctx.features`, layers from `ctx.probe_layers` /
`ctx.single_layer`, datasets from `ctx.dataset_root`, prediction folders from `ctx.predictions_dir`, and the
over-5%-unreadable rule from `unreadable_counts`. So each policy is written once and every task obeys it.

`Task.mini` holds the config values the mini suite changes (fewer frames, views, demonstrations); the runner
applies them on the mini suite, under the user's `--set`, and records them in the result. It returns a
`TaskOutput`; the runner adds provenance and writes the `TaskResult`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from ..common import faults
from ..common.checksums import folder_manifest, manifest_problem
from ..common.errors import ConfigError, DataError
from ..common.files import KEPT_HIDDEN, atomic_write_text, disk_error, file_lock
from .backbone import Backbone, Layers, resolve_layers
from .display import Display
from .dist import Dist
from .registry import TASKS

if TYPE_CHECKING:
    from .cache import ClipSource, FeatureCache, Features
    from .plan import Extraction

log = logging.getLogger(__name__)
STATE_KINDS = ("probes", "robot")  # folders beside the feature cache: probe-grid checkpoints, robot outcomes
MANIFEST = ".manifest.json"  # in a mini dataset: every file's size and SHA-256, written at generation
_SOUND_DATASETS: set[tuple] = set()  # (root, manifest and marker mtimes) found sound by this process


@dataclass
class RunContext:
    """Everything a task needs from the run besides the backbone."""

    cache: FeatureCache
    data_root: Path | None  # None: the mini suite
    mini_root: Path  # where mini datasets are generated on first use
    device: torch.device = torch.device("cpu")
    seed: int = 0
    layers: Layers = None  # --layers; None lets the task choose (usually every layer)
    limit: int | None = None  # a seeded random subset of this many samples per split
    limit_seed: int = 0  # seeds the --limit subset alone, so runs of different --seed read the same samples
    batch_size: int = 32
    progress: bool = False
    num_workers: int = 0
    results_dir: Path | None = None  # where a task may write artefacts beside its result (e.g. predictions)
    ram_bytes: int = field(default_factory=lambda: default_ram_budget())  # features up to this size train in RAM
    dist: Dist = field(default_factory=Dist)  # this process's place in a torchrun run
    probe_modes: dict[str, str] = field(default_factory=dict)  # task -> "cached" | "online" (the planner's choice)

    @property
    def mini(self) -> bool:
        return self.data_root is None

    def features(
        self,
        backbone: Backbone,
        source: ClipSource,
        *,
        layers: Sequence[int],
        tokens: bool = False,
        limit: bool = True,
        token_reduction: str = "full",
    ) -> Features:
        """Cached features of `source` (its --limit subset unless `limit=False`): pooled at every layer, and the
        full token grid too when `tokens`; one backbone pass serves them all. They know their source, so
        `features.labels` and `features.entries` are aligned with the rows that hold features."""
        return self.cache.extract(
            backbone,
            self.subset(source) if limit else source,
            layers=layers,
            token_layers=layers if tokens else (),
            device=self.device,
            batch_size=self.batch_size,
            progress=self.progress,
            num_workers=self.num_workers,
            token_reduction=token_reduction,
        )

    def subset(self, source: ClipSource) -> ClipSource:
        """The seeded random subset of `--limit` samples (not the first N, which would be biased)."""
        if self.limit is None or self.limit >= len(source):
            return source
        return Subset(source, self.limit, self.limit_seed)

    def limited(self, items: list) -> list:
        """The seeded `--limit` subset of a list, in its order (tasks that limit whole videos, not frames)."""
        if self.limit is None or self.limit >= len(items):
            return items
        return [items[i] for i in seeded_rows(len(items), self.limit, self.limit_seed)]

    def probe_layers(self, backbone: Backbone) -> list[int]:
        """The layers to probe: --layers if given, else every layer."""
        return resolve_layers(backbone.num_layers, self.layers)

    def single_layer(self, backbone: Backbone, override: int | None = None) -> int:
        """The one layer of a single-layer task: its own `layer` setting, else --layers when it names exactly
        one layer, else the backbone's default layer (Toto: the middle, where the paper finds the best)."""
        if override is not None:
            return resolve_layers(backbone.num_layers, [override])[0]
        if self.layers is not None:
            chosen = resolve_layers(backbone.num_layers, self.layers)
            if len(chosen) == 1:
                return chosen[0]
            log.warning("--layers names %d layers; a single-layer task uses the default layer", len(chosen))
        return backbone.default_layer

    def dataset_root(self, dirname: str, make_mini: Callable[[Path], None], version: str = "1") -> Path:
        """`<data-root>/<dirname>`, or the mini version, generated (atomically) on first use, and again whenever
        the generator's `version` differs from the one that wrote it or a file no longer matches the dataset's
        manifest (sizes and SHA-256 of every file, written at generation, checked once per process)."""
        if self.data_root is not None:
            root = self.data_root / dirname
            if not root.is_dir():
                raise DataError(f"{root}: dataset folder not found (expected under --data-root {self.data_root})")
            return root
        root = self.mini_root / dirname
        if _mini_version(root) == version and _mini_problem(root) is None and not _stale_generations(root):
            return root
        with file_lock(root.parent / f".{root.name}.lock"):  # one generator at a time: ranks, parallel runs
            stale = _stale_generations(root)  # under the lock: no generation of this dataset is running
            for path in stale:
                shutil.rmtree(path, ignore_errors=True)
            if stale:
                log.info("removed %d unfinished generation folder(s) of %s left by a stopped run", len(stale), root)
            if _mini_version(root) != version:
                log.info("generating the mini %s dataset in %s (once)", dirname, root)
                _generate_atomically(root, make_mini, version)
            elif (problem := _mini_problem(root)) is not None:
                log.warning("%s; regenerating the mini %s dataset", problem, dirname)
                _generate_atomically(root, make_mini, version)
        return root

    def probe_mode(self, task: str) -> str:
        """How `task` trains its probes: on cached features, or online from the backbone (see harness/online.py)."""
        return self.probe_modes.get(task, "cached")

    def state_dir(self, kind: str, *identity: object) -> Path:
        """`<cache>/<kind>/<hash of identity>`: where resumable work (probe training) keeps its checkpoints."""
        if kind not in STATE_KINDS:
            raise ValueError(f"unknown state kind {kind!r} (add it to STATE_KINDS, which `cache prune --all` empties)")
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:20]
        return self.cache.root.parent / kind / digest

    def predictions_dir(self, task: str, backbone: Backbone, label: str, setting: object) -> Path:
        """`<results or cache>/predictions/<task>/<backbone>-<weights>/<label>-<setting hash>`: one folder per
        setting, beside the result files when the run writes results, else in the cache folder."""
        digest = hashlib.sha256(json.dumps(setting, sort_keys=True, default=str).encode()).hexdigest()[:8]
        base = self.results_dir or self.cache.root.parent
        return base / "predictions" / task / f"{backbone.name}-{backbone.fingerprint()[:8]}" / f"{label}-{digest}"


def default_ram_budget() -> int:
    """A quarter of the machine's memory: what probe training may hold in RAM instead of reading memory maps."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def seeded_rows(n: int, k: int, seed: int) -> np.ndarray:
    """`k` of `range(n)` chosen at random from `seed`, sorted: the one definition of a `--limit` subset."""
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


class Subset:
    """A seeded random subset of a source, in the source's order; its identity names the subset."""

    def __init__(self, source: ClipSource, n: int, seed: int) -> None:
        self.source = source
        self.rows = seeded_rows(len(source), n, seed)
        self.ids = [source.ids[i] for i in self.rows]

    def identity(self) -> dict:
        return {**self.source.identity(), "subset": {"n": len(self.rows), "rows_sha": _sha(self.rows.tobytes())}}

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def labels(self) -> np.ndarray:
        """The subset's rows of `source.labels` (sources with labels keep them as an (N,) array)."""
        return np.asarray(self.source.labels)[self.rows]

    @property
    def entries(self) -> list:
        """The subset's rows of `source.entries` (per-sample records, for sources that have them)."""
        return [self.source.entries[i] for i in self.rows]

    def load(self, i: int) -> torch.Tensor:
        return self.source.load(int(self.rows[i]))


def unreadable_counts(
    split: str, feats: Features, max_fraction: float, missing: Sequence[str] = (), present: int | None = None
) -> dict[str, Any]:
    """A split's counts; a DataError when more than `max_fraction` of it is missing from disk or unreadable.

    `present` is the number of samples on disk (default: those extracted). Under --limit only the extracted
    ones were decoded, so their unreadable rate stands for the whole split.
    """
    tried = len(feats.ids)
    present = tried if present is None else present
    annotated = present + len(missing)
    bad_share = (len(missing) + len(feats.skipped) * present / max(tried, 1)) / max(annotated, 1)
    if bad_share > max_fraction:
        first = "; ".join([*missing[:2], *list(feats.skipped.values())[:2]])
        bad = len(missing) + len(feats.skipped)
        raise DataError(f"{bad} of {annotated} {split} samples missing or unreadable (> {max_fraction:.0%}): {first}")
    return {
        "annotated": annotated,
        "evaluated": tried - len(feats.skipped),
        "missing": list(missing),
        "unreadable": dict(feats.skipped),
        "skipped": len(missing) + len(feats.skipped),
    }


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _mini_version(root: Path) -> str | None:
    """The generator version recorded in a mini dataset's completion marker (None: absent or unfinished)."""
    marker = root / ".complete"
    if not marker.exists():
        return None
    text = marker.read_text().strip()
    return "1" if text == "ok" else text  # "ok": written before versions were recorded, i.e. version 1


def _mini_problem(root: Path) -> str | None:
    """None if a finished mini dataset matches its manifest (checked once per process and manifest), else the first
    difference, one line naming the file."""
    manifest = root / MANIFEST
    try:
        stamp = (str(root), manifest.stat().st_mtime_ns, (root / ".complete").stat().st_mtime_ns)
        if stamp in _SOUND_DATASETS:
            return None
        files = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{manifest}: missing or unreadable (written by an older toto-eval, or damaged)"
    problem = manifest_problem(root, files, skip=KEPT_HIDDEN)
    if problem is None:
        _SOUND_DATASETS.add(stamp)
    return problem


def _stale_generations(root: Path) -> list[Path]:
    """The `.<name>-XXXXXXXX` folders beside `root` (tempfile's names): generations, or replaced versions, of this
    dataset. Found under the dataset's lock, they are what a stopped run left behind."""
    pattern = re.compile(rf"\.{re.escape(root.name)}-[a-z0-9_]{{8}}")
    return [p for p in root.parent.glob(f".{root.name}-*") if p.is_dir() and pattern.fullmatch(p.name)]


def _generate_atomically(root: Path, make_mini: Callable[[Path], None], version: str) -> None:
    """Generate into a hidden sibling folder, write its manifest and completion marker, then rename it into place,
    so an interrupted generation never looks complete; a full disk is a one-line DiskFullError, nothing kept."""
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    old = None
    try:
        make_mini(tmp)
        files = folder_manifest(tmp, skip=KEPT_HIDDEN)
        atomic_write_text(tmp / MANIFEST, json.dumps({"version": version, "files": files}, indent=0))
        faults.point("mini.generated")
        atomic_write_text(tmp / ".complete", f"{version}\n")
        if root.exists():  # moved aside, then removed: readers of the old files keep them until they close them
            old = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
            os.replace(root, old)
            faults.point("mini.replace")
        os.replace(tmp, root)
    except OSError as err:
        raise disk_error(root, err) from err
    finally:
        for path in (tmp, old):
            if path is not None and path.exists():
                shutil.rmtree(path, ignore_errors=True)


@dataclass
class TaskOutput:
    """What `Task.evaluate` returns; the runner wraps it into a `TaskResult`."""

    metrics: dict[str, float]  # must contain the task's main_metric
    per_layer: list[dict[str, Any]] = field(default_factory=list)  # one row per (layer, head): scores
    selected: dict[str, Any] | None = None  # the selected head (layer, probe, lr, ...)
    data: dict[str, Any] = field(default_factory=dict)  # dataset fingerprint, counts, skipped files
    extra: dict[str, Any] = field(default_factory=dict)  # task-specific: cache stats, timings, curves
    intervals: dict[str, dict] = field(default_factory=dict)  # metric -> 95% interval (harness/intervals.py)


class Task(ABC):
    """Base class of every task. Subclasses define `Config` (a frozen dataclass) and `evaluate`."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    tags: ClassVar[tuple[str, ...]] = ()
    main_metric: ClassVar[str]
    higher_is_better: ClassVar[bool] = True
    Config: ClassVar[type]
    display: ClassVar[Display | None] = None  # how results are shown; None: a generic table of every metric
    mini: ClassVar[dict[str, Any]] = {}  # config values the mini suite changes (dotted keys), recorded in results
    has_probe_mode: ClassVar[bool] = False  # whether the task can train its probes online (the planner's choice)
    distributed: ClassVar[bool] = True  # under torchrun every rank takes part; False: rank 0 runs it alone
    paper_sizes: ClassVar[dict[str, int]] = {}  # samples per split of the real dataset, for `plan --sizes paper`

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()

    @abstractmethod
    def evaluate(self, backbone: Backbone, ctx: RunContext) -> TaskOutput:
        """Run the whole protocol on `backbone` and return its metrics."""

    def extraction(self, backbone: Backbone, ctx: RunContext, counts: str = "data") -> list[Extraction]:
        """The task's passes through the backbone, for the planner: samples counted on the data (`"data"`) or
        taken from `paper_sizes` (`"paper"`). A task that does not describe them is planned as free."""
        return []

    def sizes(self, counts: str, count: Callable[[], dict[str, int]]) -> dict[str, int]:
        """Samples per split: the real dataset's sizes (`paper_sizes`), or counted on the data by `count()`."""
        if counts == "paper":
            if not self.paper_sizes:
                raise ConfigError(f"{self.name}: no paper sizes known; plan it on data (--data-root)")
            return dict(self.paper_sizes)
        return count()


def register(name: str, *, tags: tuple[str, ...], main_metric: str) -> Callable[[type[Task]], type[Task]]:
    """Class decorator: `@register("k400_probe", tags=("video", "probe"), main_metric="top1")` names the task,
    tags it for `--tasks TAG` and says which metric ranks it, and registers it under that name."""

    def deco(cls: type[Task]) -> type[Task]:
        cls.name, cls.tags, cls.main_metric = name, tags, main_metric
        TASKS.add(name, cls)
        return cls

    return deco
