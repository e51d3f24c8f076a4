"""What each task's table looks like: its metrics, their scale, and the setting that splits its columns.

A spec is data, not code, so a new task needs one entry here (or none: an unknown task gets a generic spec built
from its result files). Metric keys are looked up in `TaskResult.metrics`; a key a result does not have is simply
missing in that cell, so a task whose metric names drift shows what is there instead of crashing.

Scales: the paper reports percent. Tasks that store fractions (top-1 0.71, J&F 0.448, success 0.63) mark their
metrics `percent=True` and are shown x100; Ego4D's mAPs are stored in percent already; CATER's L1 is a distance.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..harness.results import TaskResult


@dataclass(frozen=True)
class Metric:
    key: str  # key in TaskResult.metrics
    label: str  # column header
    percent: bool = True  # stored as a fraction; shown x100
    unit: str = "%"  # the unit shown ("%" after scaling, or e.g. "grid cells")


@dataclass(frozen=True)
class TaskSpec:
    task: str
    title: str
    table: int | None  # the paper's table number
    main: str  # main metric key (the overall table's column)
    metrics: tuple[Metric, ...]
    variant_key: str = ""  # config key whose value is a separate setting (CATER frames, DAVIS resolution)
    variant_label: str = ""
    pivot_variant: bool = False  # one column per setting (CATER 16 | 32) instead of one row per setting
    default_variant: str = ""  # the setting of the paper's headline number
    suffix: str = ""  # also show every metric whose key ends with this (robot: one column per environment)
    decimals: int = 1
    layer_score: str = ""  # per-layer key plotted against depth
    layer_select: str = ""  # per-layer key that picks the best head of a layer (held-out, never the test split)


_TOP = (Metric("top1", "top-1"), Metric("top5", "top-5"))

SPECS: dict[str, TaskSpec] = {
    s.task: s
    for s in (
        TaskSpec(
            "imagenet_probe",
            "ImageNet probe (Table 7)",
            7,
            "top1",
            _TOP,
            layer_score="test_top1",
            layer_select="holdout_top1",
        ),
        TaskSpec(
            "k400_probe",
            "Kinetics-400 probe (Table 8)",
            8,
            "top1",
            _TOP,
            layer_score="test_top1",
            layer_select="holdout_top1",
        ),
        TaskSpec(
            "ego4d_sta",
            "Ego4D short-term anticipation, top-5 mAP (Table 9)",
            9,
            "overall",
            (
                Metric("noun", "noun", False),
                Metric("noun_verb", "N+V", False),
                Metric("noun_ttc", "N+TTC", False),
                Metric("overall", "overall", False),
            ),
            decimals=2,
            layer_score="overall",
        ),
        TaskSpec(
            "davis",
            "DAVIS-2017 label propagation (Table 10)",
            10,
            "J&F-Mean",
            (Metric("J&F-Mean", "J&F"), Metric("J-Mean", "J"), Metric("F-Mean", "F")),
            variant_key="resolution",
            variant_label="resolution",
            default_variant="toto256",
            layer_score="J&F-Mean",
        ),
        TaskSpec(
            "cater",
            "CATER snitch localisation (Table 12)",
            12,
            "top1",
            (
                Metric("top1", "top-1"),
                Metric("top5", "top-5"),
                Metric("l1", "L1", False, "grid cells"),
                Metric("top1_visible", "top-1 visible"),
                Metric("top1_hidden", "top-1 hidden"),
            ),
            variant_key="frames",
            variant_label="frames",
            pivot_variant=True,
            default_variant="16f",
            layer_score="test_top1",
            layer_select="holdout_top1",
        ),
        TaskSpec(
            "robot",
            "Robot behaviour cloning, success rate (Table 11 / Figure 6)",
            11,
            "success",
            (Metric("success", "success (mean)"), Metric("real_cube_pick_success", "real cube pick")),
            suffix="_success",
            layer_score="success",
        ),
    )
}


def spec_for(task: str, results: list[TaskResult] = ()) -> TaskSpec:
    """The task's spec, or a generic one: its main metric and every numeric metric its results have."""
    if task in SPECS:
        return SPECS[task]
    main = next((r.main_metric for r in results if r.main_metric), "score")
    keys = dict.fromkeys([main] + [k for r in results for k, v in r.metrics.items() if _number(v)])
    return TaskSpec(task, task, None, main, tuple(Metric(k, k, False, "") for k in keys))


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
