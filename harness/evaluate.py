"""`evaluate()`: the one path from (backbone, tasks, options) to results, shared by the CLI, tests and notebooks.

resolve tasks -> for each task: skip if its result exists (overwrite policy), build its config (defaults, then
the mini suite's values, then the user's), seed, run it, wrap its output with the run's provenance (computed once
per run), write it atomically where asked. A task that fails is recorded as failed with its one-line reason and
the next task runs; results already written are never touched by a later failure.

Called from Python it is quiet: no progress bars and no files unless `RunOptions` asks for them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import random
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ..common.config import build_config, nest
from ..common.errors import ConfigError, TotoEvalError
from ..common.files import default_cache_dir
from . import dist as distributed
from .backbone import Backbone, Layers
from .cache import FeatureCache
from .parallel import as_finished, choose_jobs, open_pool, threads_per_job, worker_backbone
from .plan import RunPlan, check_budget, plan_run
from .registry import BACKBONES, TASKS
from .results import TaskResult, provenance, read_result, result_path, write_result
from .task import RunContext, Task

Overwrite = Literal["always", "never"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """Everything about a run except the backbone and the tasks."""

    data_root: Path | None = None  # None: the mini suite
    cache_dir: Path = dataclasses.field(default_factory=default_cache_dir)  # $TOTO_EVAL_CACHE_DIR or ~/.cache
    results_dir: Path | None = None  # None: results are returned, not written
    device: str = "cpu"
    seed: int = 0
    layers: Layers = None
    limit: int | None = None
    limit_seed: int = 0  # which --limit subset; not --seed, so the seeds of a study compare the same samples
    batch_size: int = 32
    num_workers: int = 0
    overwrite: Overwrite = "always"  # "never": keep an existing ok result and skip the task
    progress: bool = False
    mini_overrides: bool = True  # False: the mini suite runs every task's full protocol
    probe_mode: str = "cached"  # "cached", "online", or "auto" (the planner picks per task against the budget)
    jobs: int | None = 1  # tasks run at once in worker processes on a CPU (None: one per core; see `parallel`)
    cache_budget: int | None = None  # bytes the feature cache may use (auto mode, and the refusal of a plan)
    task_config: dict[str, dict] = field(default_factory=dict)  # task name -> Config overrides (dotted keys)


def load_builtins() -> None:
    """Import the built-in backbones and tasks so their decorators register them."""
    importlib.import_module("toto_eval.backbones")
    importlib.import_module("toto_eval.tasks").load()


def create_backbone(name: str, checkpoint: str | Path | None = None, random_init: bool = False) -> Backbone:
    """A registered backbone, with weights from `checkpoint` or an explicit random initialisation."""
    load_builtins()
    factory = BACKBONES.get(name)
    return factory(checkpoint=str(checkpoint) if checkpoint else None, random_init=random_init)


def resolve_tasks(spec: str | list[str]) -> list[str]:
    """Task names from names, tags and "all" (comma-separated or a list), in registry order, no duplicates."""
    load_builtins()
    words = [w.strip() for part in ([spec] if isinstance(spec, str) else spec) for w in part.split(",") if w.strip()]
    chosen: list[str] = []
    for word in words:
        if word == "all":
            matches = TASKS.names()
        elif word in TASKS:
            matches = [word]
        else:
            matches = [n for n in TASKS.names() if word in TASKS.get(n).tags]
            if not matches:
                TASKS.get(word)  # raises "unknown task ... did you mean"
        chosen += [m for m in matches if m not in chosen]
    if not chosen:
        raise ConfigError("no task selected; use --tasks NAME|TAG|all (see `toto-eval ls tasks`)")
    return chosen


def task_config(task_cls: type[Task], mini: bool, overrides: dict[str, Any] | None) -> tuple[Any, dict[str, Any]]:
    """(config, the mini values applied): the task's defaults, its `mini` values on the mini suite, then the
    user's overrides, which win over the mini values they name."""
    name = task_cls.name
    user = set(_dotted(nest(overrides or {})))
    applied = {k: v for k, v in task_cls.mini.items() if mini and k not in user} if mini else {}
    config = build_config(task_cls.Config, applied, where=name)
    return build_config(task_cls.Config, overrides, where=name, base=config), applied


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def evaluate(backbone: Backbone, tasks: str | list[str], options: RunOptions = RunOptions()) -> list[TaskResult]:
    """Run `tasks` on `backbone`; one TaskResult per task (in the order of `tasks`), also written under
    `options.results_dir` if set. The plan comes first (it generates the mini datasets on first use) and a plan
    over the cache budget is refused before any compute."""
    names = resolve_tasks(tasks)
    ctx = run_context(options)
    jobs = choose_jobs(options.jobs, len(names), str(ctx.device), ctx.dist.active)
    pool = open_pool(jobs, backbone) if jobs > 1 else None
    with pool or contextlib.nullcontext():
        plan = plan_run(backbone, names, options, ctx, measure=False, pool=pool)
        check_budget(plan)
        auto = options.probe_mode == "auto"
        ctx.probe_modes = {row.task: row.mode if auto else options.probe_mode for row in plan.tasks}
        facts = provenance()  # git and hardware: once per run
        kept = {name: found for name in names if (found := _existing(options, backbone, name)) is not None}
        todo = [name for name in names if name not in kept]
        if pool is None:
            done = {name: _run_here(name, backbone, ctx, facts, options) for name in todo}
        else:
            log.info("%d tasks, %d at a time (--jobs), each on %d thread(s)", len(todo), jobs, threads_per_job(jobs))
            done = _run_in_pool(pool, todo, plan, backbone, ctx, facts, options)
    return [{**kept, **done}[name] for name in names]


def _run_in_pool(
    pool: ProcessPoolExecutor,
    names: list[str],
    plan: RunPlan,
    backbone: Backbone,
    ctx: RunContext,
    facts: dict,
    options: RunOptions,
) -> dict[str, TaskResult]:
    """Run `names` in the pool's workers, the costliest first (a long task started last would finish alone),
    writing each result as it arrives; a task whose worker died is recorded as failed. Probe tasks count as the
    costliest: their probe grids, which the plan's backbone FLOPs leave out, are a run's longest stretches."""
    costliest = sorted(names, key=lambda name: (-TASKS.get(name).has_probe_mode, -plan.task(name).flops))
    calls = [(name, options, ctx.probe_modes, facts) for name in costliest]
    done = {}
    for (name, *_), result, died in as_finished(pool, _run_in_worker, calls):
        if died:
            task, applied = _task(name, ctx, options)
            result = dataclasses.replace(_result_base(task, backbone, ctx, facts, applied), status="failed", error=died)
        done[name] = _finish(result, options, ctx)
    return done


def _task(name: str, ctx: RunContext, options: RunOptions) -> tuple[Task, dict]:
    """The task with its config (defaults, the mini values, the user's) and the mini values applied."""
    task_cls = TASKS.get(name)
    config, applied = task_config(task_cls, ctx.mini and options.mini_overrides, options.task_config.get(name))
    return task_cls(config), applied


def _finish(result: TaskResult, options: RunOptions, ctx: RunContext) -> TaskResult:
    """Record the run's options in a task's result and write it (on rank 0) where the run writes results."""
    result.run = _run_record(options)
    if options.results_dir is not None and ctx.dist.main:
        path = write_result(result, options.results_dir)
        log.info("%s %s: %s = %s -> %s", result.task, result.status, result.main_metric, result.main_score, path)
    return result


def _run_in_worker(name: str, options: RunOptions, probe_modes: dict[str, str], facts: dict) -> TaskResult:
    """One task in a worker process (see `parallel`): the parent's options, plan and provenance."""
    load_builtins()
    ctx = dataclasses.replace(run_context(options), progress=False, probe_modes=probe_modes)
    task, applied = _task(name, ctx, options)
    return run_task(task, worker_backbone(), ctx, facts, applied)


def _run_here(name: str, backbone: Backbone, ctx: RunContext, facts: dict, options: RunOptions) -> TaskResult:
    """Run a task (and write its result) in this process; under torchrun on every rank (rank 0 keeps the
    artefacts and the result), or, for a task that cannot be split, on rank 0 alone while the others wait."""
    task, applied = _task(name, ctx, options)
    if not ctx.dist.active:
        return _finish(run_task(task, backbone, ctx, facts, applied), options, ctx)
    if task.distributed:
        if not ctx.dist.main:  # the same work, but artefacts (predictions) go to a private scratch folder
            scratch = ctx.cache.root.parent / "scratch" / f"rank{ctx.dist.rank}"
            ctx = dataclasses.replace(ctx, results_dir=scratch, progress=False)
        result = run_task(task, backbone, ctx, facts, applied)
    elif ctx.dist.main:
        alone = distributed.Dist(device=ctx.device)
        solo = dataclasses.replace(ctx, dist=alone, cache=FeatureCache(ctx.cache.root, dist=alone))
        result = run_task(task, backbone, solo, facts, applied)
    else:
        result = dataclasses.replace(_result_base(task, backbone, ctx, facts, applied), status="skipped")
    ctx.dist.barrier()
    return _finish(result, options, ctx)


def checkpoint_label(backbone: Backbone) -> str:
    if backbone.checkpoint:
        return backbone.checkpoint
    return "random-init" if backbone.random_init else "builtin"


def run_task(
    task: Task, backbone: Backbone, ctx: RunContext, facts: dict | None = None, mini_overrides: dict | None = None
) -> TaskResult:
    """Run one task; a failure becomes a failed TaskResult carrying the one-line reason."""
    seed_everything(ctx.seed)
    base = _result_base(task, backbone, ctx, facts or provenance(), mini_overrides or {})
    start = time.perf_counter()
    try:
        out = task.evaluate(backbone, ctx)
    except TotoEvalError as err:
        return dataclasses.replace(base, status="failed", error=str(err), wall_seconds=time.perf_counter() - start)
    except Exception as err:  # a bug, not bad input: keep the traceback visible, record it, go on
        log.exception("%s: internal error", task.name)
        return dataclasses.replace(
            base,
            status="failed",
            error=f"internal error: {type(err).__name__}: {err}",
            wall_seconds=time.perf_counter() - start,
        )
    if task.main_metric not in out.metrics:
        raise RuntimeError(f"task {task.name} did not report its main metric {task.main_metric!r}")
    return dataclasses.replace(
        base,
        status="ok",
        main_score=float(out.metrics[task.main_metric]),
        metrics=out.metrics,
        per_layer=out.per_layer,
        selected=out.selected,
        data=out.data,
        extra=out.extra,
        intervals=out.intervals,
        wall_seconds=time.perf_counter() - start,
        provenance={**base.provenance, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
    )


def run_context(options: RunOptions) -> RunContext:
    dist = distributed.init(options.device)
    return RunContext(
        cache=FeatureCache(options.cache_dir / "features", dist=dist),
        dist=dist,
        data_root=options.data_root,
        mini_root=options.cache_dir / "mini",
        device=dist.device,
        seed=options.seed,
        layers=options.layers,
        limit=options.limit,
        limit_seed=options.limit_seed,
        batch_size=options.batch_size,
        progress=options.progress and dist.main,
        num_workers=options.num_workers,
        results_dir=options.results_dir,
    )


def _existing(options: RunOptions, backbone: Backbone, task: str) -> TaskResult | None:
    """The stored ok result that `--overwrite never` keeps, if there is one."""
    if options.overwrite != "never" or options.results_dir is None:
        return None
    path = result_path(options.results_dir, backbone.name, checkpoint_label(backbone), task)
    if path.exists() and read_result(path).ok:
        log.info("%s: result exists, kept (--overwrite never): %s", task, path)
        return read_result(path)
    return None


def _run_record(options: RunOptions) -> dict[str, Any]:
    """The options of a run that shape its numbers, as `toto-eval run` spells them (for `--config RESULT`)."""
    layers = options.layers
    return {
        "layers": "all"
        if layers is None
        else f"last{layers}"
        if isinstance(layers, int)
        else ",".join(map(str, layers)),
        "limit": options.limit,
        "limit_seed": options.limit_seed,
        "data_root": str(options.data_root) if options.data_root else None,
        "device": options.device,
        "batch_size": options.batch_size,
        "full_protocol": not options.mini_overrides,
    }


def _dotted(tree: dict[str, Any], prefix: str = "") -> list[str]:
    """Every leaf key of a nested dict, dotted (`{"probe": {"lrs": 1}}` -> `["probe.lrs"]`)."""
    keys = []
    for key, value in tree.items():
        keys += _dotted(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"]
    return keys


def _result_base(task: Task, backbone: Backbone, ctx: RunContext, facts: dict, mini_overrides: dict) -> TaskResult:
    return TaskResult(
        backbone=backbone.name,
        checkpoint=checkpoint_label(backbone),
        task=task.name,
        task_version=task.version,
        status="running",
        main_metric=task.main_metric,
        main_score=None,
        config=dataclasses.asdict(task.config),
        fingerprint=backbone.fingerprint(),
        num_layers=backbone.num_layers,
        num_params=backbone.num_params(),
        seed=ctx.seed,
        flags={"limited": ctx.limit is not None, "random_init": backbone.random_init, "mini": ctx.mini},
        mini_overrides=mini_overrides,
        provenance=facts,
    )
