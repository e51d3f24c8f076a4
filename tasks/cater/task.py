"""`cater`: CATER snitch localisation (task 3) with a probe grid on frozen clip tokens (the paper's Table 12).

Protocol: `frames` (16 or 32) frames spread uniformly over each whole video, the full frame squeezed to the
backbone's square input; every probed layer's tokens are cached once; an attentive probe per (layer x learning
rate) is trained on train (36-way: the snitch's cell on a 6x6 grid at the last frame), selected on a seeded 10 %
of train and reported on val. Metrics: top-1 (main), top-5 and mean L1 grid distance, each also on the videos
whose snitch is visible / hidden in the last frame (from the scene JSON when there is one).

`sampling="last"` is the control: the probe sees only the last frame, so it can only guess where a hidden snitch
is. The paper does not publish resolution, layer or camera variant; the static `all_actions` set is the default.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Literal

from toto_eval.common.errors import ConfigError, DataError
from toto_eval.harness.backbone import Backbone
from toto_eval.harness.display import Display, Metric
from toto_eval.harness.probes import fit_probe_grid, probe_config, probe_data
from toto_eval.harness.registry import TASKS
from toto_eval.harness.task import RunContext, Task, TaskOutput

from .data import CaterClips, read_list, variant_dir
from .metrics import by_final_state, localization_metrics
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
    probe: str = "attentive"
    lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    weight_decay: float = 1e-3
    epochs: int = 20
    batch_size: int = 64
    warmup_epochs: int = 1
    clip_grad: float = 1.0
    holdout: float = 0.1
    max_skipped: float = 0.05  # fail when more than this fraction of videos cannot be read


MINI_OVERRIDES: dict = {}  # the mini set runs the paper protocol unchanged (recorded in extra when non-empty)


@TASKS.register("cater")
class Cater(Task):
    name = "cater"
    version = "1"
    tags = ("video", "probe", "localization")
    main_metric = "top1"
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

    def evaluate(self, backbone: Backbone, ctx: RunContext) -> TaskOutput:
        cfg = replace(self.config, **MINI_OVERRIDES) if ctx.mini else self.config
        if cfg.frames < 1:
            raise ConfigError(f"cater.frames must be positive, got {cfg.frames}")
        root = _root(ctx, cfg.variant)
        sources = {split: _source(root, split, cfg, backbone) for split in ("train", "val")}
        layers = ctx.probe_layers(backbone)
        token_layers = layers if cfg.probe == "attentive" else []
        feats = {s: ctx.features(backbone, src, layers=layers, token_layers=token_layers) for s, src in sources.items()}
        for split, f in feats.items():
            if len(f.skipped) > cfg.max_skipped * len(f.ids):
                first = "; ".join(list(f.skipped.values())[:3])
                raise DataError(f"{len(f.skipped)} of {len(f.ids)} {split} videos unreadable: {first}")
        used = {s: ctx.subset(src) for s, src in sources.items()}
        data = {s: probe_data(feats[s], used[s].labels, cfg.probe) for s in sources}
        grid = fit_probe_grid(
            data["train"],
            data["val"],
            NUM_CLASSES[cfg.list_task],
            probe_config(cfg, ctx.seed),
            num_heads=backbone.num_heads,
            device=ctx.device,
            progress=ctx.progress,
        )
        by_id = {e.name: e for e in sources["val"].entries}
        kept = [by_id[used["val"].ids[i]] for i in feats["val"].rows()]  # the val rows the probe scored
        labels, visible = data["val"].labels, [e.visible for e in kept]
        metrics = localization_metrics(grid.test_probs, labels, visible)
        metrics["holdout_top1"] = grid.selected["holdout_top1"]
        return TaskOutput(
            metrics=metrics,
            per_layer=grid.heads,
            selected=grid.selected,
            data={
                s: {"identity": sources[s].identity(), "n": len(feats[s].ids), "skipped": feats[s].skipped}
                for s in sources
            }
            | {"num_classes": NUM_CLASSES[cfg.list_task], "root": str(root)},
            extra={
                "by_final_state": by_final_state(grid.test_probs, labels, [e.final_state for e in kept]),
                "per_layer_metrics": {
                    layer: localization_metrics(probs, labels, visible) for layer, probs in grid.layer_probs.items()
                },
                "cache": {s: f.stats for s, f in feats.items()},
                "mini_overrides": MINI_OVERRIDES if ctx.mini else {},
                "layers": layers,
            },
        )


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
