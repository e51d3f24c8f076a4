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
from .intervals import bootstrap_mean, hits_interval
from .online import OnlineFeed
from .plan import Extraction
from .probe_grid import GRID_FORMAT, CachedFeed, Feed, GridResult, fit_probe_grid
from .probes import ProbeConfig, topk_hits
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


def cached_feed(features: Features, probe: ProbeConfig, ram_bytes: int) -> CachedFeed:
    """What the probe reads of cached features: tokens for a token probe, pooled vectors otherwise; only the rows
    that hold features, with their labels; in RAM when they fit `ram_bytes`."""
    arrays = features.tokens if probe.needs_tokens else features.pooled
    return CachedFeed(arrays, features.rows(), features.labels, ram_bytes)


class ProbeTask(Task):
    """A task whose protocol is a probe grid on frozen features. `Config` must have `probe: ProbeConfig` and
    `max_skipped: float`."""

    has_probe_mode = True

    @abstractmethod
    def layout(self, backbone: Backbone) -> dict[str, tuple[int, tuple[int, int, int]]]:
        """split -> (views per sample, (T, H, W) of a view), from the protocol alone (no data is read)."""

    def extraction(self, backbone: Backbone, ctx: RunContext, counts: str = "data") -> list[Extraction]:
        probe: ProbeConfig = self.config.probe
        n = self.sizes(
            counts, lambda: {s: len(ctx.subset(src)) for s, src in self.splits(backbone, ctx).sources.items()}
        )
        layers = len(ctx.probe_layers(backbone))
        out = []
        for split, (views, shape) in self.layout(backbone).items():
            # online: a pooled pass over every view, then per epoch one view of each fit sample, then prediction
            trained = probe.epochs * (1 - probe.holdout) / views if split == "train" else 0.0
            passes = 1 + trained + (probe.holdout if split == "train" else 1.0)
            tokens = layers if probe.needs_tokens else 0
            out.append(Extraction(split, n[split], views, shape, layers, tokens, passes=passes))
        return out

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

    def intervals(self, grid: GridResult, val: Features) -> dict[str, dict]:
        """Bootstrap intervals of the selected head's top-1 and top-5 over the val samples; per-layer rows get
        `test_top1_ci` (drawn as bands on the depth curves)."""
        labels, ids = val.labels, val_ids(val)
        for row in grid.per_layer:
            row["test_top1_ci"] = hits_interval(topk_hits(grid.layer_probs[row["layer"]], labels, 1))
        return {f"top{k}": bootstrap_mean(topk_hits(grid.test_probs, labels, k), ids=ids) for k in (1, 5)}

    def evaluate(self, backbone: Backbone, ctx: RunContext) -> TaskOutput:
        probe: ProbeConfig = self.config.probe
        splits = self.splits(backbone, ctx)
        layers = ctx.probe_layers(backbone)
        online = ctx.probe_mode(self.name) == "online" and probe.needs_tokens  # pooled inputs are always cached
        # Online, the cache keeps pooled vectors only (they also say which samples are readable); else what the
        # probe reads. One backbone pass serves every layer.
        tokens = probe.needs_tokens and not online
        feats = {s: ctx.features(backbone, splits.sources[s], layers=layers, tokens=tokens) for s in SPLITS}
        counts = {s: self._counts(s, feats[s], splits) for s in SPLITS}
        feeds = {s: self._feed(feats[s], backbone, ctx, layers, online) for s in SPLITS}
        keys = [f.stats["key"] for f in feats.values()]
        state = ctx.state_dir("probes", GRID_FORMAT, keys, probe, ctx.seed, splits.num_classes, backbone.num_heads,
                              "online" if online else "cached")  # fmt: skip
        grid = fit_probe_grid(
            feeds["train"],
            feeds["val"],
            splits.num_classes,
            probe,
            num_heads=backbone.num_heads,
            seed=ctx.seed,
            device=ctx.device,
            progress=ctx.progress,
            dist=ctx.dist,
            state_dir=state,
        )
        metrics, extra = self.score(grid, feats["val"], backbone)
        intervals = self.intervals(grid, feats["val"])
        return TaskOutput(
            intervals=intervals,
            metrics=metrics,
            per_layer=grid.heads,
            selected=grid.selected,
            data={s: {"identity": splits.sources[s].identity(), **counts[s]} for s in SPLITS}
            | {"num_classes": splits.num_classes, **splits.data},
            extra={
                **splits.extra,
                **extra,
                "probe_mode": "online" if online else "cached",
                "layers": layers,
                "default_layer": backbone.default_layer,
                "cache": {s: f.stats for s, f in feats.items()},
            },
        )

    def _counts(self, split: str, feats: Features, splits: ProbeSplits) -> dict[str, Any]:
        missing = splits.missing.get(split, ())
        return unreadable_counts(split, feats, self.config.max_skipped, missing, present=len(splits.sources[split]))

    def _feed(self, feats: Features, backbone: Backbone, ctx: RunContext, layers: list[int], online: bool) -> Feed:
        probe: ProbeConfig = self.config.probe
        if not online:
            return cached_feed(feats, probe, ctx.ram_bytes // 2)
        return OnlineFeed(backbone, feats.source, feats.rows(), layers, True, ctx.batch_size, ctx.num_workers)


def val_ids(val: Features) -> list[str]:
    """The ids of the val rows that were scored, in order: what a paired comparison of two results checks."""
    return [val.ids[i] for i in val.rows()]
