"""`imagenet_probe`: a probe grid over layers on frozen image features; top-1 per layer and at the selected head.

Protocol (the paper's Table 7, with the DINOv2/V-JEPA probe mechanics): every probed layer's tokens are cached
once; an attentive probe per (layer x learning rate) is trained in one pass; the head is selected on a seeded
10% of train and reported on val. On the mini suite (scikit-learn's digit scans in the same folder layout) the
same code runs with the same defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from toto_eval.common.errors import DataError
from toto_eval.harness.backbone import Backbone
from toto_eval.harness.display import TOP1_TOP5, Display
from toto_eval.harness.probes import fit_probe_grid, probe_config, probe_data
from toto_eval.harness.registry import TASKS
from toto_eval.harness.task import RunContext, Task, TaskOutput

from .data import ImageFolderSource, list_classes
from .mini import VERSION as MINI_VERSION
from .mini import make_mini


@dataclass(frozen=True)
class Config:
    probe: str = "attentive"  # "attentive" (tokens) or "linear" (average-pooled tokens)
    lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2)  # the mini suite selects at 1e-2..3e-2; wide enough both ways
    weight_decay: float = 1e-3
    epochs: int = 20
    batch_size: int = 64
    warmup_epochs: int = 1
    clip_grad: float = 1.0
    holdout: float = 0.1
    resize_ratio: float = 256 / 224
    max_skipped: float = 0.05  # fail when more than this fraction of images cannot be read


@TASKS.register("imagenet_probe")
class ImageNetProbe(Task):
    name = "imagenet_probe"
    version = "1"
    tags = ("image", "probe", "classification")
    main_metric = "top1"
    Config = Config
    display = Display(
        "ImageNet probe (Table 7)", TOP1_TOP5, table=7, layer_score="test_top1", layer_select="holdout_top1"
    )

    def evaluate(self, backbone: Backbone, ctx: RunContext) -> TaskOutput:
        cfg = self.config
        root = ctx.dataset_root("imagenet", make_mini, MINI_VERSION)
        classes = list_classes(root)
        splits = {
            s: ImageFolderSource(root, s, classes, backbone.preprocess, cfg.resize_ratio) for s in ("train", "val")
        }
        layers = ctx.probe_layers(backbone)
        token_layers = layers if cfg.probe == "attentive" else []
        feats = {s: ctx.features(backbone, src, layers=layers, token_layers=token_layers) for s, src in splits.items()}
        skipped = {s: f.skipped for s, f in feats.items()}
        _check_skipped(skipped, {s: len(f.ids) for s, f in feats.items()}, cfg.max_skipped)
        data = {s: probe_data(f, ctx.subset(splits[s]).labels, cfg.probe) for s, f in feats.items()}
        probe_cfg = probe_config(cfg, ctx.seed)
        grid = fit_probe_grid(
            data["train"],
            data["val"],
            len(classes),
            probe_cfg,
            num_heads=backbone.num_heads,
            device=ctx.device,
            progress=ctx.progress,
        )
        default = next((r for r in grid.per_layer if r["layer"] == backbone.default_layer), None)
        metrics = {
            "top1": grid.selected["test_top1"],
            "top5": grid.selected["test_top5"],
            "holdout_top1": grid.selected["holdout_top1"],
        }
        if default:
            metrics["default_layer_top1"] = default["test_top1"]
        return TaskOutput(
            metrics=metrics,
            per_layer=grid.heads,
            selected=grid.selected,
            data={s: {"identity": splits[s].identity(), "n": len(feats[s].ids), "skipped": skipped[s]} for s in splits}
            | {"num_classes": len(classes)},
            extra={
                "cache": {s: f.stats for s, f in feats.items()},
                "default_layer": backbone.default_layer,
                "layers": layers,
            },
        )


def _check_skipped(skipped: dict[str, dict], totals: dict[str, int], max_fraction: float) -> None:
    for split, bad in skipped.items():
        if len(bad) > max_fraction * totals[split]:
            first = "; ".join(list(bad.values())[:3])
            raise DataError(f"{len(bad)} of {totals[split]} {split} images unreadable (> {max_fraction:.0%}): {first}")
