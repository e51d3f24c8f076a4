"""`evaluate()`: the one path from (backbone, tasks, options) to result files, shared by the CLI, tests and notebooks.

resolve backbone -> resolve tasks -> for each task: skip if its result exists (overwrite policy), seed, run the
task, wrap its output with provenance, write it atomically. A task that fails is recorded as failed with its
one-line reason and the next task runs; results already written are never touched by a later failure.
"""

from __future__ import annotations

import dataclasses
import importlib
import random
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..common.config import build_config
from ..common.errors import ConfigError, TotoEvalError
from .backbone import Backbone, Layers
from .cache import FeatureCache
from .registry import BACKBONES, TASKS
from .results import TaskResult, provenance, read_result, result_path, write_result
from .task import RunContext, Task

Overwrite = Literal["always", "never"]
DEFAULT_CACHE = Path.home() / ".cache" / "toto-eval"


@dataclass(frozen=True)
class RunOptions:
    """Everything about a run except the backbone and the tasks."""

    data_root: Path | None = None  # None: the mini suite
    cache_dir: Path = DEFAULT_CACHE
    results_dir: Path = Path("results")
    device: str = "cpu"
    seed: int = 0
    layers: Layers = None
    limit: int | None = None
    batch_size: int = 32
    num_workers: int = 0
    overwrite: Overwrite = "always"  # "never": keep an existing ok result and skip the task
    progress: bool = True
    task_config: dict[str, dict] = field(default_factory=dict)  # task name -> Config overrides


def load_builtins() -> None:
    """Import the built-in backbones and tasks so their decorators register them."""
    importlib.import_module("toto_eval.backbones")
    importlib.import_module("toto_eval.tasks")


def create_backbone(name: str, checkpoint: str | Path | None = None, random_init: bool = False) -> Backbone:
    """A registered backbone, with weights from `checkpoint` or an explicit random initialisation."""
    load_builtins()
    if name.startswith("timm:"):  # any plain timm ViT by its timm name
        from ..backbones.timm_vit import create_timm_backbone

        return create_timm_backbone(name.removeprefix("timm:"), str(checkpoint) if checkpoint else None, random_init)
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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def evaluate(backbone: Backbone, tasks: str | list[str], options: RunOptions = RunOptions()) -> list[TaskResult]:
    """Run `tasks` on `backbone`; returns one TaskResult per task (also written under options.results_dir)."""
    names = resolve_tasks(tasks)
    ctx = RunContext(
        cache=FeatureCache(options.cache_dir / "features"),
        data_root=options.data_root,
        mini_root=options.cache_dir / "mini",
        device=torch.device(options.device),
        seed=options.seed,
        layers=options.layers,
        limit=options.limit,
        batch_size=options.batch_size,
        progress=options.progress,
        num_workers=options.num_workers,
        results_dir=options.results_dir,
    )
    results = []
    for name in names:
        existing = result_path(options.results_dir, backbone.name, checkpoint_label(backbone), name)
        if options.overwrite == "never" and existing.exists() and read_result(existing).ok:
            print(f"[{name}] result exists, kept (--overwrite never): {existing}")
            results.append(read_result(existing))
            continue
        task_cls = TASKS.get(name)
        config = build_config(task_cls.Config, options.task_config.get(name), where=name)
        result = run_task(task_cls(config), backbone, ctx)
        path = write_result(result, options.results_dir)
        print(f"[{name}] {result.status}: {result.main_metric} = {result.main_score} -> {path}")
        results.append(result)
    return results


def checkpoint_label(backbone: Backbone) -> str:
    if backbone.checkpoint:
        return backbone.checkpoint
    return "random-init" if backbone.random_init else "builtin"


def run_task(task: Task, backbone: Backbone, ctx: RunContext) -> TaskResult:
    """Run one task; a failure becomes a failed TaskResult carrying the one-line reason."""
    seed_everything(ctx.seed)
    base = _result_base(task, backbone, ctx)
    start = time.perf_counter()
    try:
        out = task.evaluate(backbone, ctx)
    except TotoEvalError as err:
        return dataclasses.replace(base, status="failed", error=str(err), wall_seconds=time.perf_counter() - start)
    except Exception as err:  # a bug, not bad input: keep the traceback visible, record it, go on
        traceback.print_exc(file=sys.stderr)
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
        wall_seconds=time.perf_counter() - start,
        provenance=provenance(),
    )


def _result_base(task: Task, backbone: Backbone, ctx: RunContext) -> TaskResult:
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
        provenance=provenance(),
    )
