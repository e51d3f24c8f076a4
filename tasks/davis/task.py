"""`davis`: DAVIS-2017 semi-supervised segmentation by label propagation of frozen features; no training.

Protocol (Toto's Table 10, with DINO's and CRW's propagation as presets): every frame is encoded on its own as a
T=1 image at the resolution preset's size; the chosen layer's token grid is L2-normalised per patch; the first
frame's GT mask is propagated through the video (see `propagation`); predictions are written as palette PNGs with
DAVIS's file names at the annotation size and scored with the official semi-supervised semantics (`metrics`), so
the official davis2017-evaluation code scores the same folder unchanged. Toto did not publish its resolution
policy, context or top-k, and J&F moves by 15-20 points with resolution, so every one of these is a setting and is
recorded. On the mini suite (`Davis.mini`) the frames are warped to the backbone's own resolution.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from toto_eval.common.errors import ConfigError, DataError, data_error
from toto_eval.common.log import progress
from toto_eval.harness.backbone import Backbone, Preprocess
from toto_eval.harness.display import Display, Metric
from toto_eval.harness.intervals import bootstrap
from toto_eval.harness.plan import Extraction
from toto_eval.harness.task import RunContext, Task, TaskOutput, register

from .data import Sequence, load_sequence, read_frame, read_labels, read_sequence_list, write_labels
from .metrics import VOID
from .mini import VERSION as MINI_VERSION
from .mini import make_mini
from .propagation import (
    RESOLUTIONS,
    PropagationConfig,
    first_frame_labels,
    input_size,
    preset,
    propagate,
    soft_to_labels,
)
from .scoring import score_folder, write_csvs


@dataclass(frozen=True)
class Config:
    split: str = "val"  # ImageSets/2017/<split>.txt
    propagation: str = "dino"  # "dino" (frame 0 + last 7, top-5, T 0.1) or "crw" (STC: 20, top-10, T 0.05)
    resolution: str = "toto256"  # "480p", "toto256", "toto512", or "backbone" (its preprocess side; mini)
    resize_mode: str = ""  # "" = the preset's ("square" for toto*, "short_side" for 480p)
    layer: int | None = None  # None: every --layers layer if given, else the backbone's default (middle) layer
    context: int | None = None  # overrides of the propagation preset
    topk: int | None = None
    temperature: float | None = None
    radius: int | None = None
    predictions_dir: str = ""  # "" = <results dir>/predictions/davis/<backbone>/<setting>


class FrameSource:
    """One sequence's frames as T=1 clips at the model input size; the feature cache's view of a sequence."""

    def __init__(self, sequence: Sequence, size: tuple[int, int], preprocess: Preprocess) -> None:
        self.sequence, self.size, self.preprocess = sequence, size, preprocess
        self.ids = [f"{sequence.name}/{name}" for name in sequence.frame_names]

    def identity(self) -> dict:
        files = [(p.name, p.stat().st_size) for p in self.sequence.frames]
        return {
            "dataset": "davis2017",
            "sequence": self.sequence.name,
            "files_sha": _sha(json.dumps(files)),
            "input_size": list(self.size),
            "resize": "bilinear",
            "views": 1,
            "frames": 1,
        }

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, i: int) -> torch.Tensor:
        frame = torch.from_numpy(read_frame(self.sequence.frames[i])).permute(2, 0, 1)[None].float()  # (1, 3, H, W)
        frame = F.interpolate(frame, size=self.size, mode="bilinear", align_corners=False)  # cv2.resize's rule
        return frame.clamp(0, 255)[None]  # (V=1, T=1, 3, H_in, W_in) in [0, 255]: normalised on the device


@register("davis", tags=("video", "propagation", "segmentation"), main_metric="J&F-Mean")
class Davis(Task):
    Config = Config
    display = Display(
        "DAVIS-2017 label propagation (Table 10)",
        (Metric("J&F-Mean", "J&F"), Metric("J-Mean", "J"), Metric("F-Mean", "F")),
        table=10,
        variant_key="resolution",
        variant_label="resolution",
        default_variant="toto256",
        layer_score="J&F-Mean",
    )
    mini: ClassVar[dict[str, Any]] = {"resolution": "backbone"}  # mini frames are made at the backbone's size
    paper_sizes: ClassVar[dict[str, int]] = {"val": 1_999}  # DAVIS-2017 val: 30 sequences, 1,999 frames

    def extraction(self, backbone: Backbone, ctx: RunContext, counts: str = "data") -> list[Extraction]:
        """Every frame once, alone (T = 1), at the resolution preset (480p frames for the short-side presets)."""
        cfg = self.config
        side, mode = _resolution(cfg.resolution, cfg.resize_mode, backbone)

        def count() -> dict[str, int]:
            root = ctx.dataset_root("DAVIS", make_mini, MINI_VERSION)
            return {"val": sum(len(load_sequence(root, n)) for n in ctx.limited(read_sequence_list(root, cfg.split)))}

        frames = self.sizes(counts, count)["val"]
        layers = len(_layers(cfg, ctx, backbone))
        return [Extraction("val", frames, 1, (1, *input_size(480, 854, side, mode)), layers, layers)]

    def evaluate(self, backbone: Backbone, ctx: RunContext) -> TaskOutput:
        cfg = self.config
        prop = preset(
            cfg.propagation, context=cfg.context, topk=cfg.topk, temperature=cfg.temperature, radius=cfg.radius
        )
        side, mode = _resolution(cfg.resolution, cfg.resize_mode, backbone)
        root = ctx.dataset_root("DAVIS", make_mini, MINI_VERSION)
        # --limit picks whole sequences: propagation needs every frame of a video
        names = ctx.limited(read_sequence_list(root, cfg.split))
        layers = _layers(cfg, ctx, backbone)
        out_root = _predictions_root(cfg, ctx, backbone, prop)
        timing = {"features_s": 0.0, "propagation_s": 0.0, "frames": 0, "computed_frames": 0}
        # Every sequence's layout and first annotation is checked before any compute, so bad data fails fast.
        sequences = [_first_annotation(load_sequence(root, name)) for name in names]
        for sequence, gt0 in progress(sequences, enabled=ctx.progress, desc="davis sequences", unit="video"):
            _run_sequence(backbone, ctx, sequence, gt0, layers, (side, mode), prop, out_root, timing)
        rows, objects = [], {}
        for layer in layers:
            folder = out_root / f"layer{layer:02d}"
            scores = score_folder(root, folder, cfg.split, names)
            write_csvs(scores, folder)
            objects[layer] = scores.objects
            ci = _interval(scores.objects, "J&F-Mean")
            rows.append({"layer": layer, **scores.global_row(), "J&F-Mean_ci": [ci["low"], ci["high"]],
                         "predictions": str(folder)})  # fmt: skip
        reported = next((r for r in rows if r["layer"] == backbone.default_layer), rows[0])
        metrics = {k: v for k, v in reported.items() if k not in ("layer", "predictions", "J&F-Mean_ci")}
        return TaskOutput(
            metrics=metrics,
            intervals={k: _interval(objects[reported["layer"]], k) for k in ("J&F-Mean", "J-Mean", "F-Mean")},
            per_layer=rows,
            selected={"layer": reported["layer"], "propagation": cfg.propagation, "resolution": cfg.resolution},
            data={"root": str(root), "split": cfg.split, "sequences": names, "identity": _identity(root, names)},
            extra={
                "settings": _settings(prop, cfg.resolution, side, mode, backbone),
                "timing": timing | _per_frame(timing),
                "scale": "0-1 (papers report x100)",
                "predictions": str(out_root),
            },
        )


def _interval(objects: list, key: str) -> dict:
    """Bootstrap over the scored objects (the official means are over objects, not sequences). Each statistic of
    the global table is a mean over objects of a per-object value, so those values are computed once and only
    their means are resampled (recomputing the table per resample took 100 s on the mini suite)."""
    rows = [o.stats() for o in objects]
    parts = ("J-Mean", "F-Mean") if key == "J&F-Mean" else (key,)
    values = np.array([np.mean([r[p] for p in parts]) for r in rows], dtype=np.float64)
    return bootstrap(len(values), lambda idx: float(np.mean(values[idx])), ids=[o.name for o in objects])


def _first_annotation(sequence: Sequence) -> tuple[Sequence, np.ndarray]:
    """The sequence and its frame-0 ids (void mapped to background), checked against the frame's size."""
    gt0 = read_labels(sequence.annotations[0])
    with Image.open(sequence.frames[0]) as frame:
        if frame.size != gt0.shape[::-1]:
            raise data_error(sequence.annotations[0], f"size {gt0.shape[::-1]} differs from its frame's {frame.size}")
    # Void would otherwise become a 256th label channel; the semi-supervised metric counts it as background anyway.
    return sequence, np.where(gt0 == VOID, 0, gt0).astype(np.uint8)


def _run_sequence(
    backbone: Backbone,
    ctx: RunContext,
    sequence: Sequence,
    gt0: np.ndarray,
    layers: list[int],
    resize: tuple[int, str],
    prop: PropagationConfig,
    out_root: Path,
    timing: dict,
) -> None:
    """Features (cached), propagation and palette PNGs of one sequence, for every layer."""
    size = input_size(*gt0.shape, *resize)
    source = FrameSource(sequence, size, backbone.preprocess)
    feats = ctx.features(backbone, source, layers=layers, tokens=True, limit=False)
    if feats.skipped:
        raise DataError(next(iter(feats.skipped.values())))
    timing["features_s"] += feats.stats["seconds"]
    timing["frames"] += len(sequence)
    timing["computed_frames"] += feats.stats["computed"]
    _, h, w = feats.grid
    start = time.perf_counter()
    for layer in layers:
        tokens = feats.tokens[layer][:, 0].reshape(len(sequence), h, w, -1)  # float16 memmap, read frame by frame
        first = first_frame_labels(gt0, (h, w), prop.label_downsample).to(ctx.device)
        soft = propagate(tokens, first, prop)  # (N, h, w, C)
        folder = out_root / f"layer{layer:02d}" / sequence.name
        write_labels(folder / f"{sequence.frame_names[0]}.png", gt0)
        for t in range(1, len(sequence)):
            labels = soft_to_labels(soft[t], size, gt0.shape, prop.norm_mask)
            write_labels(folder / f"{sequence.frame_names[t]}.png", labels)
    timing["propagation_s"] += time.perf_counter() - start


def _resolution(name: str, resize_mode: str, backbone: Backbone) -> tuple[int, str]:
    if name == "backbone":
        side, mode = backbone.preprocess.resolution, "square"
    elif name in RESOLUTIONS:
        side, mode = RESOLUTIONS[name]
    else:
        raise ConfigError(f"davis.resolution: {name!r} is not one of {', '.join([*RESOLUTIONS, 'backbone'])}")
    return side, resize_mode or mode


def _layers(cfg: Config, ctx: RunContext, backbone: Backbone) -> list[int]:
    """Its own `layer`, else every --layers layer (propagation is cheap per layer), else the default layer."""
    if cfg.layer is None and ctx.layers is not None:
        return ctx.probe_layers(backbone)
    return [ctx.single_layer(backbone, cfg.layer)]


def _predictions_root(cfg: Config, ctx: RunContext, backbone: Backbone, prop: PropagationConfig) -> Path:
    if cfg.predictions_dir:
        return Path(cfg.predictions_dir)
    setting = [cfg.propagation, cfg.resolution, cfg.resize_mode, cfg.split, prop.__dict__, ctx.mini]
    return ctx.predictions_dir("davis", backbone, f"{cfg.propagation}-{cfg.resolution}", setting)


def _settings(prop: PropagationConfig, resolution: str, side: int, mode: str, backbone: Backbone) -> dict:
    return {
        "propagation": prop.__dict__,
        "resolution": resolution,
        "side": side,
        "resize_mode": mode,
        "patch_size": backbone.patch_size,
        "frame_encoding": "each frame alone (T=1)",
    }


def _per_frame(timing: dict) -> dict:
    frames = max(timing["frames"], 1)
    computed = max(timing["computed_frames"], 1)
    return {
        "features_s_per_computed_frame": timing["features_s"] / computed if timing["computed_frames"] else None,
        "propagation_s_per_frame": timing["propagation_s"] / frames,
    }


def _identity(root: Path, names: list[str]) -> str:
    files = []
    for name in names:
        for sub in ("JPEGImages", "Annotations"):
            folder = root / sub / "480p" / name
            files += [(p.relative_to(root).as_posix(), p.stat().st_size) for p in sorted(folder.iterdir())]
    return _sha(json.dumps(files))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
