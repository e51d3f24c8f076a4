"""How a task's results are shown: its metrics, their scale, and the setting that splits its columns.

Each task class declares one `Display` next to its protocol (`Task.display`), so a new task brings its own table
and the leaderboard holds no per-task knowledge. Metric keys are looked up in `TaskResult.metrics`; a key a result
does not have is simply missing in that cell. The main metric is not repeated here: it is the task's
`main_metric`.

Scales: the paper reports percent. Tasks that store fractions (top-1 0.71, J&F 0.448, success 0.63) mark their
metrics `percent=True` and are shown x100; Ego4D's mAPs are stored in percent already; CATER's L1 is a distance.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    key: str  # key in TaskResult.metrics
    label: str  # column header
    percent: bool = True  # stored as a fraction; shown x100
    unit: str = "%"  # the unit shown ("%" after scaling, or e.g. "grid cells")


TOP1_TOP5 = (Metric("top1", "top-1"), Metric("top5", "top-5"))


@dataclass(frozen=True)
class Display:
    title: str
    metrics: tuple[Metric, ...]
    table: int | None = None  # the paper's table number
    variant_key: str = ""  # config key whose value is a separate setting (CATER frames, DAVIS resolution)
    variant_label: str = ""
    pivot_variant: bool = False  # one column per setting (CATER 16 | 32) instead of one row per setting
    default_variant: str = ""  # the setting of the paper's headline number
    suffix: str = ""  # also show every metric whose key ends with this (robot: one column per environment)
    decimals: int = 1
    layer_score: str = ""  # per-layer key plotted against depth
    layer_select: str = ""  # per-layer key that picks the best head of a layer (held-out, never the test split)


def probe_display(title: str, table: int) -> Display:
    """A classification probe task's table: top-1 and top-5; depth curves of each layer's held-out-best head."""
    return Display(title, TOP1_TOP5, table=table, layer_score="test_top1", layer_select="holdout_top1")
