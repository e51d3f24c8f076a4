"""Each task's table settings, found through the task registry, and the helpers that apply them to results.

A task declares its `Display` (harness/display.py) next to its protocol; a task the registry does not know (a
result file from a plugin that is not installed) gets a generic spec built from its result files. A metric key a
result does not have is simply missing in that cell, so drifting metric names show what is there.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from ..harness.display import Display, Metric
from ..harness.registry import TASKS
from ..harness.results import TaskResult


@dataclass(frozen=True)
class TaskSpec:
    """A task's display settings (`Task.display`) with the task's name and main metric attached."""

    task: str
    main: str
    display: Display

    def __getattr__(self, name: str) -> object:  # title, metrics, table, ...: the Display's fields
        return getattr(self.display, name)


@cache
def known_specs() -> dict[str, TaskSpec]:
    """The spec of every registered task, in the paper's table order (tasks without a table last, by name)."""
    from ..harness.evaluate import load_builtins

    load_builtins()
    specs = [_spec(name, TASKS.get(name)) for name in TASKS.names()]
    return {s.task: s for s in sorted(specs, key=lambda s: (s.display.table is None, s.display.table or 0, s.task))}


def _spec(name: str, task: type) -> TaskSpec:
    display = task.display or Display(name, (Metric(task.main_metric, task.main_metric, False, ""),))
    return TaskSpec(name, task.main_metric, display)


def spec_for(task: str, results: list[TaskResult] = ()) -> TaskSpec:
    """The task's spec, or a generic one: its main metric and every numeric metric its results have."""
    known = known_specs()
    if task in known:
        return known[task]
    main = next((r.main_metric for r in results if r.main_metric), "score")
    keys = dict.fromkeys([main] + [k for r in results for k, v in r.metrics.items() if _number(v)])
    return TaskSpec(task, main, Display(task, tuple(Metric(k, k, False, "") for k in keys)))


def variant_of(spec: TaskSpec, result: TaskResult) -> str:
    """The setting that makes numbers incomparable across rows ('' when the task has none)."""
    if not spec.variant_key or spec.variant_key not in result.config:
        return ""
    value = result.config[spec.variant_key]
    return f"{value}f" if spec.variant_key == "frames" else str(value)


def metric_keys(spec: TaskSpec, results: list[TaskResult]) -> list[Metric]:
    """The spec's metrics plus, with a suffix, every matching key found in the results (sorted)."""
    found = [m for m in spec.metrics]
    if spec.suffix:
        known = {m.key for m in found}
        extra = sorted({k for r in results for k in r.metrics if k.endswith(spec.suffix) and k not in known})
        found += [Metric(k, k.removesuffix(spec.suffix), spec.metrics[0].percent) for k in extra]
    return found


def scaled(metric: Metric, value: object) -> float | None:
    """A stored value in the table's unit (percent where the paper uses percent); None when not a number."""
    if not _number(value):
        return None
    return float(value) * 100.0 if metric.percent else float(value)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value
