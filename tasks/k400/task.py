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
the task fails with a DataError naming the count and the first files. On the mini suite (`K400Probe.mini`) the
protocol shrinks to at most 8 frames per clip (`max_frames`: the stride stretched to keep the backbone's temporal
span) and 2 segments x 1 crop at test; the result records it.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from toto_eval.common.errors import DataError
from toto_eval.harness.backbone import Backbone
from toto_eval.harness.display import probe_display
from toto_eval.harness.probe_task import ProbeSplits, ProbeTask
from toto_eval.harness.probes import ProbeConfig
from toto_eval.harness.task import RunContext, register

from .data import KineticsSource, Sampling, build_split, class_names, find_annotation, read_entries
from .mini import VERSION as MINI_VERSION
from .mini import make_mini

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config:
    frames: int | None = None  # None: backbone.preprocess.frames
    stride: int | None = None  # None: backbone.preprocess.frame_stride
    max_frames: int | None = None  # cap on the backbone's frame count; the stride stretches to keep its span
    resolution: int | None = None  # None: backbone.preprocess.resolution
    resize_ratio: float = 256 / 224  # short side before cropping = resolution * resize_ratio
    train_clips: int = 1  # seeded random clips per train video (views the probe samples from)
    test_segments: int = 8
    test_crops: int = 3
    train_annotations: str = ""  # relative to the dataset root; "" looks for annotations/train.csv, train.csv
    val_annotations: str = ""
    probe: ProbeConfig = ProbeConfig(weight_decays=(1e-2,))  # V-JEPA's video probes decay 1e-2
    max_skipped: float = 0.05  # fail when more than this fraction of a split is missing or unreadable


@register("k400_probe", tags=("video", "probe", "classification"), main_metric="top1")
class K400Probe(ProbeTask):
    Config = Config
    display = probe_display("Kinetics-400 probe (Table 8)", table=8)
    # 16x4 -> 8x8 (half the tokens, the same span), 2 segments x 1 crop at test
    mini: ClassVar[dict[str, Any]] = {"max_frames": 8, "test_segments": 2, "test_crops": 1}

    paper_sizes: ClassVar[dict[str, int]] = {"train": 240_000, "val": 20_000}  # about: mirrors lack some clips

    def layout(self, backbone: Backbone) -> dict[str, tuple[int, tuple[int, int, int]]]:
        return {
            s: (p.segments * p.crops, (p.frames, p.resolution, p.resolution))
            for s, p in self.protocol(backbone, 0).items()
        }

    def splits(self, backbone: Backbone, ctx: RunContext) -> ProbeSplits:
        root = ctx.dataset_root("kinetics400", make_mini, MINI_VERSION)
        protocol = self.protocol(backbone, ctx.seed)
        sources, missing, classes = load_sources(root, self.config, protocol, backbone)
        extra = {"protocol": {s: dataclasses.asdict(p) for s, p in protocol.items()}}
        return ProbeSplits(sources, len(classes), missing=missing, extra=extra)

    def protocol(self, backbone: Backbone, seed: int) -> dict[str, Sampling]:
        """The train and val clip sampling: the config where set, else the backbone's preprocess."""
        cfg, pre = self.config, backbone.preprocess
        frames, stride = cfg.frames or pre.frames, cfg.stride or pre.frame_stride
        if not cfg.frames and cfg.max_frames and frames > cfg.max_frames:
            stride, frames = cfg.stride or stride * frames // cfg.max_frames, cfg.max_frames
        resolution = cfg.resolution or pre.resolution
        short = round(resolution * cfg.resize_ratio)
        common = {"frames": frames, "stride": stride, "resolution": resolution, "short_side": short}
        return {
            "train": Sampling(**common, segments=cfg.train_clips, crops=1, random_start=True, seed=seed),
            "val": Sampling(**common, segments=cfg.test_segments, crops=cfg.test_crops),
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
            log.warning("%d annotated %s videos are not on disk, e.g. %s", len(split.missing), s, split.missing[0])
    sources = {s: KineticsSource(root, s, split, protocol[s], backbone.preprocess) for s, split in splits.items()}
    return sources, {s: split.missing for s, split in splits.items()}, classes
