"""`k400_probe`: Kinetics-400 top-1 of attentive probes on frozen clip features, a grid over layers.

Protocol (the paper's Table 8 with V-JEPA's "16x8x3" evaluation mechanics; Toto's own frame count, stride and
view count are not published):

- clips of `frames` frames every `stride` (default: the backbone's `preprocess`, 16 x 4 for Toto) at the
  backbone's resolution, short side resized to `resolution * resize_ratio` before cropping;
- train: `train_clips` seeded random clips per video (default 1), centre crop; the probe sees one view per step;
- test: `test_segments` x `test_crops` views (default 8 x 3 = 24): segments centred in equal parts of the
  video, three crops along the long side; the probe's softmax is averaged over the views. (V-JEPA attends over
  the 8 segments jointly; here each view is classified on its own, then averaged.)
- every layer's tokens (all frames) are cached once; one attentive probe per (layer x lr) is trained in one
  pass, selected on a seeded 10% of train, reported on val. The backbone's default layer (Toto: the middle) is
  reported on its own as `default_layer_top1`.

Clips missing from disk or unreadable are listed per split, skipped and counted; above `max_skipped` of a split
the task fails with a DataError naming the count and the first files. On the mini suite the protocol shrinks to
at most `mini_frames` frames per clip (the stride stretched to keep the backbone's temporal span) and
`mini_test_segments` x `mini_test_crops` views (recorded in `extra["protocol"]`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from toto_eval.common.errors import DataError
from toto_eval.harness.backbone import Backbone
from toto_eval.harness.display import TOP1_TOP5, Display
from toto_eval.harness.probes import fit_probe_grid, probe_config, probe_data
from toto_eval.harness.registry import TASKS
from toto_eval.harness.task import RunContext, Task, TaskOutput

from .data import KineticsSource, Sampling, build_split, class_names, find_annotation, read_entries
from .mini import VERSION as MINI_VERSION
from .mini import make_mini


@dataclass(frozen=True)
class Config:
    frames: int | None = None  # None: backbone.preprocess.frames
    stride: int | None = None  # None: backbone.preprocess.frame_stride
    resolution: int | None = None  # None: backbone.preprocess.resolution
    resize_ratio: float = 256 / 224  # short side before cropping = resolution * resize_ratio
    train_clips: int = 1  # seeded random clips per train video (views the probe samples from)
    test_segments: int = 8
    test_crops: int = 3
    mini_frames: int = 8  # the mini suite's smaller protocol: at most 8 frames, the stride stretched to keep the
    mini_test_segments: int = 2  # backbone's span (16x4 -> 8x8: half the tokens), 2 segments x 1 crop at test
    mini_test_crops: int = 1
    train_annotations: str = ""  # relative to the dataset root; "" looks for annotations/train.csv, train.csv
    val_annotations: str = ""
    probe: str = "attentive"
    lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    weight_decay: float = 1e-2  # V-JEPA's video probes
    epochs: int = 20
    batch_size: int = 64
    warmup_epochs: int = 1
    clip_grad: float = 1.0
    holdout: float = 0.1
    max_skipped: float = 0.05  # fail when more than this fraction of a split is missing or unreadable


@TASKS.register("k400_probe")
class K400Probe(Task):
    name = "k400_probe"
    version = "1"
    tags = ("video", "probe", "classification")
    main_metric = "top1"
    Config = Config
    display = Display(
        "Kinetics-400 probe (Table 8)", TOP1_TOP5, table=8, layer_score="test_top1", layer_select="holdout_top1"
    )

    def evaluate(self, backbone: Backbone, ctx: RunContext) -> TaskOutput:
        cfg = self.config
        root = ctx.dataset_root("kinetics400", make_mini, MINI_VERSION)
        protocol = self.protocol(backbone, ctx.mini, ctx.seed)
        sources, missing, classes = load_sources(root, cfg, protocol, backbone)
        layers = ctx.probe_layers(backbone)
        token_layers = layers if cfg.probe == "attentive" else []
        feats = {s: ctx.features(backbone, src, layers=layers, token_layers=token_layers) for s, src in sources.items()}
        counts = {
            s: _counts(s, missing[s], f.skipped, len(sources[s]), len(f.ids), cfg.max_skipped) for s, f in feats.items()
        }
        data = {s: probe_data(f, ctx.subset(sources[s]).labels, cfg.probe) for s, f in feats.items()}
        grid = fit_probe_grid(
            data["train"],
            data["val"],
            len(classes),
            probe_config(cfg, ctx.seed),
            num_heads=backbone.num_heads,
            device=ctx.device,
            progress=ctx.progress,
        )
        best = grid.selected
        metrics = {"top1": best["test_top1"], "top5": best["test_top5"], "holdout_top1": best["holdout_top1"]}
        default = next((r for r in grid.per_layer if r["layer"] == backbone.default_layer), None)
        if default is not None:
            metrics["default_layer_top1"] = default["test_top1"]
        return TaskOutput(
            metrics=metrics,
            per_layer=grid.heads,
            selected=grid.selected,
            data={s: {"identity": sources[s].identity(), **counts[s]} for s in sources} | {"num_classes": len(classes)},
            extra={
                "protocol": {s: dataclasses.asdict(p) for s, p in protocol.items()} | {"mini": ctx.mini},
                "default_layer": backbone.default_layer,
                "layers": layers,
                "per_layer_top1": {r["layer"]: r["test_top1"] for r in grid.per_layer},
                "cache": {s: f.stats for s, f in feats.items()},
            },
        )

    def protocol(self, backbone: Backbone, mini: bool, seed: int) -> dict[str, Sampling]:
        """The train and val clip sampling: the config where set, else the backbone's preprocess."""
        cfg, pre = self.config, backbone.preprocess
        frames, stride = cfg.frames or pre.frames, cfg.stride or pre.frame_stride
        segments, crops = cfg.test_segments, cfg.test_crops
        if mini:
            if not cfg.frames and frames > cfg.mini_frames:
                stride, frames = cfg.stride or stride * frames // cfg.mini_frames, cfg.mini_frames
            segments, crops = cfg.mini_test_segments, cfg.mini_test_crops
        resolution = cfg.resolution or pre.resolution
        short = round(resolution * cfg.resize_ratio)
        common = {"frames": frames, "stride": stride, "resolution": resolution, "short_side": short}
        return {
            "train": Sampling(**common, segments=cfg.train_clips, crops=1, random_start=True, seed=seed),
            "val": Sampling(**common, segments=segments, crops=crops),
        }


def load_sources(
    root: Path, cfg: Config, protocol: dict[str, Sampling], backbone: Backbone
) -> tuple[dict[str, KineticsSource], dict[str, list[str]], list[str]]:
    """Both splits as cache sources, the annotated-but-missing videos per split, and the class names."""
    notes = {"train": cfg.train_annotations, "val": cfg.val_annotations}
    annotations = {s: find_annotation(root, s, notes[s]) for s in ("train", "val")}
    entries = {s: read_entries(a, root, s) for s, a in annotations.items()}
    if not entries["train"]:
        raise DataError(f"{annotations['train']}: no clips annotated")
    classes = class_names(entries["train"])
    splits = {s: build_split(entries[s], classes, annotations[s]) for s in entries}
    for s, split in splits.items():
        if split.missing:
            print(f"[k400] {len(split.missing)} annotated {s} videos are not on disk, e.g. {split.missing[0]}")
    sources = {s: KineticsSource(root, s, split, protocol[s], backbone.preprocess) for s, split in splits.items()}
    return sources, {s: split.missing for s, split in splits.items()}, classes


def _counts(split: str, missing: list[str], unreadable: dict[str, str], present: int, tried: int, limit: float) -> dict:
    """Counts of a split (`present` videos on disk, `tried` of them run); a DataError when too many are gone.

    Under --limit only `tried` videos are decoded, so their unreadable rate stands for the whole split.
    """
    annotated = present + len(missing)
    bad_share = (len(missing) + len(unreadable) * present / max(tried, 1)) / annotated
    if bad_share > limit:
        first = "; ".join([*missing[:2], *list(unreadable.values())[:2]])
        bad = len(missing) + len(unreadable)
        raise DataError(f"{bad} of {annotated} {split} clips missing or unreadable (> {limit:.0%}): {first}")
    return {
        "annotated": annotated,
        "evaluated": tried - len(unreadable),
        "missing": missing,
        "unreadable": unreadable,
        "skipped": len(missing) + len(unreadable),
    }
