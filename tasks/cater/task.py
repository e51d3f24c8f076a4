"""`cater`: CATER snitch localisation (task 3) with a probe grid on frozen clip tokens (the paper's Table 12).

Protocol: `frames` (16 or 32) frames spread uniformly over each whole video, the full frame squeezed to the
backbone's square input; every probed layer's tokens are cached once; an attentive probe per (layer x learning
rate) is trained on train (36-way: the snitch's cell on a 6x6 grid at the last frame), selected on a seeded 10 %
of train and reported on val. Metrics: top-1 (main), top-5 and mean L1 grid distance, each also on the videos
whose snitch is visible / hidden in the last frame (from the scene JSON when there is one).

`sampling="last"` is the control: the probe sees only the last frame, so it can only guess where a hidden snitch
is. The paper does not publish resolution, layer or camera variant; the static `all_actions` set is the default.

On the mini suite (`Cater.mini`, recorded in every result) the protocol is reduced to what 280 training videos can
teach a probe: the 4x4 grid (16 classes, about 17 videos each, instead of 7 per class on the 6x6 grid), 8 frames,
and batches of 16 (80 probe steps at 64 per batch left even the positive control's features unread). Measured on
the mini val: the CATER control 27.5% [19.2, 35.8] against the untrained toto_tiny 1.7% [0.0, 4.2]; at 6x6 and
16 frames, 7.5% against 2.5%, intervals overlapping.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Literal

from toto_eval.common.errors import ConfigError
from toto_eval.harness.backbone import Backbone
from toto_eval.harness.cache import Features
from toto_eval.harness.display import Display, Metric
from toto_eval.harness.intervals import bootstrap_mean
from toto_eval.harness.probe_grid import GridResult
from toto_eval.harness.probe_task import ProbeSplits, ProbeTask, val_ids
from toto_eval.harness.probes import ProbeConfig
from toto_eval.harness.task import RunContext, register

from .data import CaterClips, read_list, variant_dir
from .metrics import by_final_state, l1_per_sample, localization_metrics
from .mini import VERSION as MINI_VERSION
from .mini import make_mini, mini_dirname

NUM_CLASSES = {"localize": 36, "localize_4x4": 16, "localize_8x8": 64}
MINI_VARIANTS = ("all_actions", "all_actions_cameramotion")


@dataclass(frozen=True)
class Config:
    frames: int = 16  # 16 or 32 in the paper
    sampling: Literal["uniform", "last"] = "uniform"  # "last": the last-frame-only control
    variant: str = "all_actions"  # or all_actions_cameramotion
    list_task: Literal["localize", "localize_4x4", "localize_8x8"] = "localize"
    resize: Literal["square", "short_side_crop"] = "square"
    probe: ProbeConfig = ProbeConfig()
    max_skipped: float = 0.05  # fail when more than this fraction of videos cannot be read

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ConfigError(f"cater.frames must be positive, got {self.frames}")


@register("cater", tags=("video", "probe", "localization"), main_metric="top1")
class Cater(ProbeTask):
    Config = Config
    display = Display(
        "CATER snitch localisation (Table 12)",
        (
            Metric("top1", "top-1"),
            Metric("top5", "top-5"),
            Metric("l1", "L1", False, "grid cells"),
            Metric("top1_visible", "top-1 visible"),
            Metric("top1_hidden", "top-1 hidden"),
        ),
        table=12,
        variant_key="frames",
        variant_label="frames",
        pivot_variant=True,
        default_variant="16f",
        layer_score="test_top1",
        layer_select="holdout_top1",
    )

    paper_sizes: ClassVar[dict[str, int]] = {"train": 3_850, "val": 1_650}  # 5,500 videos split 70/30
    mini: ClassVar[dict[str, Any]] = {"list_task": "localize_4x4", "frames": 8, "probe.batch_size": 16}

    def layout(self, backbone: Backbone) -> dict[str, tuple[int, tuple[int, int, int]]]:
        r, t = backbone.preprocess.resolution, 1 if self.config.sampling == "last" else self.config.frames
        return {"train": (1, (t, r, r)), "val": (1, (t, r, r))}

    def splits(self, backbone: Backbone, ctx: RunContext) -> ProbeSplits:
        cfg = self.config
        root = _root(ctx, cfg.variant)
        sources = {split: _source(root, split, cfg, backbone) for split in ("train", "val")}
        return ProbeSplits(sources, NUM_CLASSES[cfg.list_task], data={"root": str(root)})

    def intervals(self, grid: GridResult, val: Features) -> dict[str, dict]:
        """The probe tasks' top-1/top-5 intervals, and the bootstrap interval of the mean L1 distance."""
        out = super().intervals(grid, val)
        out["l1"] = bootstrap_mean(l1_per_sample(grid.test_probs, val.labels), ids=val_ids(val))
        return out

    def score(self, grid: GridResult, val: Features, backbone: Backbone) -> tuple[dict[str, float], dict[str, Any]]:
        """Top-1, top-5 and L1 grid distance, each also for videos whose snitch is visible / hidden at the end."""
        labels, entries = val.labels, val.entries
        visible = [e.visible for e in entries]
        metrics = localization_metrics(grid.test_probs, labels, visible)
        metrics["holdout_top1"] = grid.selected["holdout_top1"]
        extra = {
            "by_final_state": by_final_state(grid.test_probs, labels, [e.final_state for e in entries]),
            "per_layer_metrics": {
                layer: localization_metrics(probs, labels, visible) for layer, probs in grid.layer_probs.items()
            },
        }
        return metrics, extra


def _source(root: Path, split: str, cfg: Config, backbone: Backbone) -> CaterClips:
    list_file = root / "lists" / cfg.list_task / f"{split}.txt"
    entries = read_list(list_file, root, NUM_CLASSES[cfg.list_task])
    return CaterClips(entries, list_file, backbone.preprocess, cfg.frames, cfg.sampling, cfg.resize)


def _root(ctx: RunContext, variant: str) -> Path:
    if ctx.mini:
        if variant not in MINI_VARIANTS:
            raise ConfigError(f"cater.variant {variant!r} has no mini version (one of {', '.join(MINI_VARIANTS)})")
        make = partial(make_mini, camera_motion=variant.endswith("cameramotion"))
        return variant_dir(ctx.dataset_root(mini_dirname(variant), make, MINI_VERSION), variant)
    return variant_dir(ctx.dataset_root("cater", make_mini, MINI_VERSION), variant)
