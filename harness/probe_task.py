"""The probe-task skeleton, written once: extract -> probe -> select -> score.

ImageNet, Kinetics-400 and CATER are the same protocol on different data (DINOv2's linear.py and V-JEPA's
frozen evals share one skeleton the same way): a task says what its two splits are (`splits`) and, if its metric
is more than top-1/top-5, how to score the selected head (`score`); `ProbeTask.evaluate` does the rest. Features
of every probed layer come from the cache in one backbone pass, as tokens or pooled vectors as the configured
probe declares; every (layer x learning rate) head is trained in one pass per batch, selected on a seeded part
of train, and scored on the test split; every head's scores are kept for depth curves.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any

from .backbone import Backbone
from .cache import ClipSource, Features
from .probes import GridResult, ProbeConfig, fit_probe_grid, probe_inputs
from .task import RunContext, Task, TaskOutput, unreadable_counts

SPLITS = ("train", "val")  # probe-task splits: fit (and select on a held-out part), then report


@dataclass
class ProbeSplits:
    """What a probe task prepares before any compute."""

    sources: dict[str, ClipSource]  # "train" and "val"
    num_classes: int
    missing: dict[str, list[str]] = field(default_factory=dict)  # per split: annotated samples not on disk
    data: dict[str, Any] = field(default_factory=dict)  # more dataset facts for the result
    extra: dict[str, Any] = field(default_factory=dict)  # protocol facts for the result


class ProbeTask(Task):
    """A task whose protocol is a probe grid on frozen features. `Config` must have `probe: ProbeConfig` and
    `max_skipped: float`."""

    @abstractmethod
    def splits(self, backbone: Backbone, ctx: RunContext) -> ProbeSplits:
        """The train and val sources (official layout under --data-root, else the mini suite) and the classes."""

    def score(self, grid: GridResult, val: Features, backbone: Backbone) -> tuple[dict[str, float], dict[str, Any]]:
        """(metrics, extra) of the selected head on val: top-1 and top-5, and the default layer's top-1."""
        best = grid.selected
        metrics = {"top1": best["test_top1"], "top5": best["test_top5"], "holdout_top1": best["holdout_top1"]}
        default = next((r for r in grid.per_layer if r["layer"] == backbone.default_layer), None)
        if default is not None:
            metrics["default_layer_top1"] = default["test_top1"]
        return metrics, {"per_layer_top1": {r["layer"]: r["test_top1"] for r in grid.per_layer}}

    def evaluate(self, backbone: Backbone, ctx: RunContext) -> TaskOutput:
        probe: ProbeConfig = self.config.probe
        splits = self.splits(backbone, ctx)
        layers = ctx.probe_layers(backbone)
        feats = {s: ctx.features(backbone, splits.sources[s], layers=layers, tokens=probe.needs_tokens) for s in SPLITS}
        counts = {
            s: unreadable_counts(
                s, feats[s], self.config.max_skipped, splits.missing.get(s, ()), present=len(splits.sources[s])
            )
            for s in SPLITS
        }
        train, val = (probe_inputs(feats[s], probe) for s in SPLITS)
        grid = fit_probe_grid(
            train,
            val,
            splits.num_classes,
            probe,
            num_heads=backbone.num_heads,
            seed=ctx.seed,
            device=ctx.device,
            progress=ctx.progress,
        )
        metrics, extra = self.score(grid, feats["val"], backbone)
        return TaskOutput(
            metrics=metrics,
            per_layer=grid.heads,
            selected=grid.selected,
            data={s: {"identity": splits.sources[s].identity(), **counts[s]} for s in SPLITS}
            | {"num_classes": splits.num_classes, **splits.data},
            extra={
                **splits.extra,
                **extra,
                "layers": layers,
                "default_layer": backbone.default_layer,
                "cache": {s: f.stats for s, f in feats.items()},
            },
        )
