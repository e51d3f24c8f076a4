"""The planner: what a run will cost, decided before any compute.

Each task describes the passes it makes over its data (`Task.extraction`): per split, the samples, the views of
a sample, the input shape of a view, which layers are cached pooled or as full tokens, and how many times the
backbone sees each view. From those and the backbone's token grid and FLOP count, the planner tabulates the
bytes the feature cache will hold, the backbone FLOPs, and a time estimate from a short measured throughput (or
from a GPU count and peak given on the command line). In `auto` mode it picks, per probe task, the cached mode
when the task's token cache fits what is left of `--cache-budget` and online training otherwise, so the token
cache of ImageNet and Kinetics (terabytes) is never written. `run` refuses a plan over budget with this table,
before it computes anything.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import torch

from ..common.errors import ConfigError, TotoEvalError
from .backbone import Backbone
from .parallel import as_finished, worker_backbone

log = logging.getLogger(__name__)
FP16 = 2  # bytes per cached value
UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50}


@dataclass(frozen=True)
class Extraction:
    """One split's passes through the backbone, as a task plans them."""

    split: str
    samples: int
    views: int  # views per sample (test crops x segments)
    shape: tuple[int, int, int]  # (T, H, W) of one view
    layers: int  # layers cached pooled
    token_layers: int  # layers whose full token grid is cached (cached mode)
    token_share: float = 1.0  # the part of a view's tokens a task keeps (Ego4D keeps 2 frames' reductions)
    passes: float = 1.0  # backbone passes per view (online probing: one per epoch, plus prediction)
    online_token_layers: int = 0  # token layers an online probe reads instead (nothing cached)


@dataclass
class SplitCost:
    task: str
    split: str
    samples: int
    views: int
    tokens: int  # tokens of one view
    pooled_bytes: int
    token_bytes: int
    flops: float
    layers: int  # layers cached (pooled) for this split


@dataclass
class TaskPlan:
    task: str
    mode: str  # "cached", "online", or "-" for tasks without a probe mode
    splits: list[SplitCost] = field(default_factory=list)

    @property
    def cache_bytes(self) -> int:
        return sum(s.pooled_bytes + s.token_bytes for s in self.splits)

    @property
    def flops(self) -> float:
        return sum(s.flops for s in self.splits)


@dataclass
class RunPlan:
    tasks: list[TaskPlan]
    budget: int | None
    flops_per_second: float  # measured locally, or given (GPUs x peak x MFU)
    throughput_source: str

    @property
    def cache_bytes(self) -> int:
        return sum(t.cache_bytes for t in self.tasks)

    def task(self, name: str) -> TaskPlan:
        return next(t for t in self.tasks if t.task == name)

    @property
    def over_budget(self) -> bool:
        return self.budget is not None and self.cache_bytes > self.budget

    def table(self) -> str:
        head = f"{'task':16s} {'split':8s} {'mode':7s} {'samples':>10s} {'views':>5s} {'tokens':>6s} "
        head += f"{'pooled':>9s} {'tokens':>9s} {'per layer':>10s} {'FLOP':>9s} {'time':>9s}"
        lines = [head, "-" * len(head)]
        for t in self.tasks:
            for s in t.splits:
                per_layer = (s.pooled_bytes + s.token_bytes) / max(1, s.layers)
                lines.append(
                    f"{t.task:16s} {s.split:8s} {t.mode:7s} {s.samples:10d} {s.views:5d} {s.tokens:6d} "
                    f"{size(s.pooled_bytes):>9s} {size(s.token_bytes):>9s} {size(per_layer):>10s} "
                    f"{flops(s.flops):>9s} {duration(s.flops / self.flops_per_second):>9s}"
                )
        total = sum(t.flops for t in self.tasks)
        budget = f" of a {size(self.budget)} budget" if self.budget is not None else ""
        lines.append(f"cache: {size(self.cache_bytes)}{budget}; compute: {flops(total)}, about "
                     f"{duration(total / self.flops_per_second)} at {flops(self.flops_per_second)}/s "
                     f"({self.throughput_source})")  # fmt: skip
        return "\n".join(lines)


def parse_size(text: str) -> int:
    """'500G', '1.5T', '1024' -> bytes (binary units)."""
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    number, unit = (text[:-1], text[-1]) if text and text[-1] in UNITS else (text, "")
    try:
        return int(float(number) * UNITS[unit])
    except ValueError:
        raise ConfigError(f"{text!r} is not a size (e.g. 500G, 1.5T)") from None


def size(nbytes: float | None) -> str:
    if nbytes is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(nbytes) < 1024 or unit == "PiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} PiB"


def flops(value: float) -> str:
    """1.2e15 -> '1.20 PFLOP' (decimal units, as FLOP counts are quoted)."""
    if value != value:  # NaN: not measured
        return "-"
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}FLOP"
    return f"{value:.0f} FLOP"


def duration(seconds: float) -> str:
    if seconds != seconds:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def cost(task: str, backbone: Backbone, ex: Extraction, online: bool) -> SplitCost:
    """Bytes and FLOPs of one split's extraction (and, online, its probe training passes)."""
    t, h, w = backbone.token_grid(*ex.shape)
    tokens = t * h * w
    dim = backbone.embed_dim
    views = ex.samples * ex.views
    pooled = views * dim * FP16 * ex.layers
    token_bytes = 0 if online else int(views * tokens * ex.token_share * dim * FP16 * ex.token_layers)
    flops = backbone.flops_per_view(*ex.shape) * views * (ex.passes if online else 1.0)
    return SplitCost(task, ex.split, ex.samples, ex.views, tokens, pooled, token_bytes, flops, ex.layers)


def plan_run(
    backbone: Backbone,
    names: list[str],
    options,
    ctx,
    counts: str = "data",
    cluster: tuple[int, float, float] | None = None,
    measure: bool = True,
    pool: ProcessPoolExecutor | None = None,
) -> RunPlan:
    """The plan of `names` on `backbone` under `options` (a RunOptions): modes, bytes, FLOPs and, when
    `measure`, time (from `cluster` = (GPUs, peak TFLOP/s, MFU) if given, else a short measured forward).
    Planning counts the data, so it generates the mini datasets on first use: in `pool`'s workers, if given."""
    from .registry import TASKS

    budget = options.cache_budget if options.cache_budget is not None else free_space(ctx.cache.root)
    if pool is None:
        passes = {name: task_extractions(name, options, counts, backbone, ctx) for name in names}
    else:
        calls = [(name, options, counts) for name in names]
        passes = {}
        for (name, *_), found, died in as_finished(pool, task_extractions, calls):
            if died:  # planned as free; the task itself fails with its own reason when it runs
                log.warning("%s: cannot plan (%s)", name, died)
            passes[name] = found or []
    candidates = {}  # task -> (probe mode choice, cached plan, online plan)
    for name in names:
        extractions = passes[name]
        cached = TaskPlan(name, "cached", [cost(name, backbone, e, False) for e in extractions])
        online = TaskPlan(name, "online", [cost(name, backbone, e, True) for e in extractions])
        mode = options.probe_mode if TASKS.get(name).has_probe_mode else "-"
        candidates[name] = (mode, cached, online)
    chosen = _choose(candidates, budget)
    tasks = [chosen[name] for name in names]
    speed, source = throughput(backbone, ctx, cluster) if measure else (float("nan"), "not measured")
    return RunPlan(tasks, budget, speed, source)


def task_extractions(name: str, options, counts: str, backbone: Backbone | None = None, ctx=None) -> list[Extraction]:
    """One task's passes over its data (in a worker process, with the worker's backbone and a fresh context);
    none when the data cannot be read: the task will fail the same way when it runs, and be recorded failed."""
    from .evaluate import load_builtins, run_context, task_config
    from .registry import TASKS

    load_builtins()
    backbone = backbone if backbone is not None else worker_backbone()
    ctx = ctx if ctx is not None else run_context(options)
    cls = TASKS.get(name)
    config, _ = task_config(cls, ctx.mini and options.mini_overrides, options.task_config.get(name))
    try:
        return cls(config).extraction(backbone, ctx, counts)
    except TotoEvalError as err:
        log.warning("%s: cannot plan (%s)", name, err)
        return []


def _choose(candidates: dict[str, tuple[str, TaskPlan, TaskPlan]], budget: int) -> dict[str, TaskPlan]:
    """Each task's plan: its mode as asked, and in auto mode the cached plan for the smallest token caches that
    fit the budget together (greedy, smallest first), online for the rest."""
    chosen: dict[str, TaskPlan] = {}
    left = budget
    for name, (mode, cached, online) in candidates.items():  # fixed modes spend the budget first
        if mode != "auto":
            chosen[name] = online if mode == "online" else cached
            chosen[name].mode = mode
            left -= chosen[name].cache_bytes
    auto = sorted((c[1].cache_bytes, name) for name, c in candidates.items() if c[0] == "auto")
    for _, name in auto:
        _, cached, online = candidates[name]
        chosen[name] = cached if cached.cache_bytes <= left else online
        left -= chosen[name].cache_bytes
    return chosen


def free_space(path) -> int:
    """Free bytes on the disk that holds `path` (or its nearest existing parent)."""
    import shutil
    from pathlib import Path

    path = Path(path)
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def throughput(backbone: Backbone, ctx, cluster: tuple[int, float, float] | None) -> tuple[float, str]:
    """Backbone FLOP/s: from (GPUs, peak TFLOP/s, MFU) when given, else measured on a short forward here."""
    if cluster and cluster[0] and cluster[1]:
        gpus, peak, mfu = cluster
        return gpus * peak * 1e12 * mfu, f"{gpus} GPUs x {peak:g} TFLOP/s x {mfu:g} MFU"
    shape = (1, backbone.preprocess.resolution, backbone.preprocess.resolution)
    x = torch.zeros(1, *shape[:1], 3, *shape[1:], device=ctx.device)
    backbone.eval().to(ctx.device)
    with torch.inference_mode():
        backbone.forward_features(x)  # warm up
        start, reps = time.perf_counter(), 0
        while reps < 3 or time.perf_counter() - start < 0.5:
            backbone.forward_features(x)
            reps += 1
    seconds = (time.perf_counter() - start) / reps
    return backbone.flops_per_view(*shape) / seconds * ctx.dist.world, f"measured on {ctx.device}"


def check_budget(plan: RunPlan) -> None:
    """Refuse a plan over its cache budget, before any compute: the table on stderr, then one error line."""
    if plan.over_budget:
        log.error("the plan:\n%s", plan.table())
        raise TotoEvalError(
            f"the feature cache would need {size(plan.cache_bytes)}, over the --cache-budget of {size(plan.budget)}; "
            "use --probe-mode auto (online probes for the large tasks), fewer --layers, or a larger budget"
        )
