"""`ego4d_sta`: Ego4D short-term object-interaction anticipation with a frozen backbone and per-box heads.

Protocol (the two-stage FRCNN+SlowFast baseline, with the frozen backbone in place of SlowFast): the backbone
sees the clip that ends at each query frame (`frames` x `frame_stride`, default the backbone's own); boxes and
nouns come from a still-image detection file in the baseline's format (`boxes="detections"`) or, as an upper
bound, from the annotations (`boxes="oracle"`); per-box verb and TTC heads (`heads.py`) are trained on the
ground-truth boxes of the train split on features pooled inside each box on the token grid; each box yields a
prediction scored as the baselines score it (`score="detector"`: the detector's score, FRCNN+SF;
`"detector_x_verb"`: detector score x verb probability for the top `verb_topk` verbs, StillFast). Predictions are
written in the official challenge format and scored with the official top-5 STA mAP.

Toto's paper does not document its STA protocol (frozen or fine-tuned, Ego4D version and split, frames,
resolution, head), so no run of this task is comparable to its Table 9; the result says so.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch

from toto_eval.common.config import subset
from toto_eval.common.errors import ConfigError, DataError, data_error
from toto_eval.harness.backbone import Backbone
from toto_eval.harness.cache import Features
from toto_eval.harness.display import Display, Metric
from toto_eval.harness.intervals import bootstrap
from toto_eval.harness.plan import Extraction
from toto_eval.harness.task import RunContext, Task, TaskOutput, register, unreadable_counts

from .data import STASplit, VideoMeta, load_detections, load_split
from .frames import FrameReader, STAClips
from .heads import BoxHeads, BoxSet, HeadConfig, box_features, fit_heads, predict_heads
from .metrics import Boxes
from .mini import VERSION as MINI_VERSION
from .mini import make_mini
from .results import matched, prediction, score, write_results

# Toto Table 9 (top-5 mAP %, noun / noun+verb / noun+TTC / overall). Provenance: a secondary reproduction of the
# paper's table (see shared/research/ego4d_kinetics_robotics.md section 1.7); Ego4D version and split not stated.
TABLE9 = {
    "FRCNN+Rnd": (17.55, 1.56, 3.21, 0.34),
    "FRCNN+SF": (17.55, 5.19, 5.37, 2.07),
    "Hiera-large": (14.05, 6.03, 4.53, 2.12),
    "StillFast": (16.20, 7.47, 4.94, 2.48),
    "VideoMAE-large": (15.16, 6.72, 5.26, 2.55),
    "MAE-ST-large": (13.71, 6.63, 4.94, 2.60),
    "Toto-large": (15.20, 6.75, 5.41, 2.70),
}
NOT_COMPARABLE = (
    "not comparable to Toto Table 9: the paper does not document its STA protocol (frozen or fine-tuned, "
    "Ego4D version/split, frames, resolution, head); this is a frozen-backbone two-stage protocol"
)


@dataclass(frozen=True)
class Config:
    """Every knob of the protocol. Paths are relative to the dataset root, laid out as the Ego4D CLI downloads v1/v2
    (`annotations/`, `full_scale/`, `sta_models/object_detections.json`), so `<data-root>/ego4d` can link there."""

    boxes: Literal["detections", "oracle"] = "detections"
    detections: str = "sta_models/object_detections.json"  # the baseline's detections (or an absolute path)
    annotations_dir: str = "annotations"  # holds fho_sta_<split>.json
    videos_dir: str = "full_scale"  # canonical videos <video_uid>.mp4
    frames_dir: str = ""  # pre-extracted frames instead of videos, when set
    frame_template: str = "{video_uid}_{frame:07d}.jpg"
    train_split: str = "train"
    eval_split: str = "val"
    predict_test: bool = False  # also write predictions for fho_sta_test_unannotated.json (challenge upload)
    frames: int = 0  # 0: the backbone's preprocess.frames
    frame_stride: int = 0  # 0: the backbone's preprocess.frame_stride
    roi_size: int = 2
    context_scale: float = 3.0  # the surroundings ROI is the box enlarged this many times
    hidden: int = 256
    dropout: float = 0.5
    lrs: tuple[float, ...] = (1e-3, 3e-3)
    epochs: int = 30
    min_steps: int = 500
    batch_size: int = 256
    weight_decay: float = 1e-4
    ttc_loss_weight: float = 10.0
    holdout: float = 0.1
    score: Literal["detector", "detector_x_verb"] = "detector_x_verb"
    verb_topk: int = 1
    score_threshold: float = 0.0  # the baseline's DETECTION_SCORE_THRESH
    box_check: Literal["error", "clip", "keep"] = "keep"  # an out-of-frame box: kept, as the official scorer keeps it
    official_quirks: bool = True  # the reference's handling of examples with no predictions
    interval_resamples: int = 200  # bootstrap resamples of the eval examples for the 95% intervals (0: none)
    max_skipped: float = 0.05  # fail when more than this fraction of clips cannot be read
    predictions_path: str = ""  # the challenge JSON; "" = <results-dir>/predictions/ego4d_sta/<backbone-variant-config>


@dataclass
class _Run:
    """What the protocol has prepared: splits (restricted to the cached rows), sources, features, test boxes."""

    root: Path
    reader: FrameReader
    layers: list[int]
    train: STASplit
    evals: STASplit
    sources: dict[str, STAClips]  # "train", "eval"
    feats: dict[str, Features]
    test_boxes: dict[str, Boxes]


@register("ego4d_sta", tags=("video", "detection", "anticipation"), main_metric="overall")
class Ego4DSTA(Task):
    Config = Config
    display = Display(
        "Ego4D short-term anticipation, top-5 mAP (Table 9)",
        (
            Metric("noun", "noun", False),
            Metric("noun_verb", "N+V", False),
            Metric("noun_ttc", "N+TTC", False),
            Metric("overall", "overall", False),
        ),
        table=9,
        decimals=2,
        layer_score="overall",
    )
    version = "2"  # 2: only the last-frame and time-mean maps are cached; out-of-frame boxes kept
    paper_sizes: ClassVar[dict[str, int]] = {"train": 27_801, "eval": 17_217}  # Ego4D v1 STA train / val clips

    def extraction(self, backbone: Backbone, ctx: RunContext, counts: str = "data") -> list[Extraction]:
        """One clip ending at each query frame, the chosen layer's tokens kept for the box heads."""
        cfg, pre = self.config, backbone.preprocess

        def count() -> dict[str, int]:
            root = ctx.dataset_root("ego4d", make_mini, MINI_VERSION)
            splits = {"train": cfg.train_split, "eval": cfg.eval_split}
            return {s: len(ctx.limited(self._split(root, name, True).annotations)) for s, name in splits.items()}

        n = self.sizes(counts, count)
        layers = 1 if ctx.layers is None else len(ctx.probe_layers(backbone))
        shape = (cfg.frames or pre.frames, pre.resolution, pre.resolution)
        t = backbone.token_grid(*shape)[0]
        return [Extraction(s, n[s], 1, shape, layers, layers, token_share=2 / t) for s in ("train", "eval")]

    def evaluate(self, backbone: Backbone, ctx: RunContext) -> TaskOutput:
        cfg = self.config
        if cfg.verb_topk < 1 or cfg.frames < 0 or cfg.frame_stride < 0 or cfg.train_split == cfg.eval_split:
            raise ConfigError("ego4d_sta: needs verb_topk >= 1, frames and frame_stride >= 0, two different splits")
        t0 = time.perf_counter()
        run = self._prepare(backbone, ctx)
        t_feat = time.perf_counter() - t0
        rows, (selected, metrics, results, head) = self._fit_layers(run, ctx)
        predicted = {u: Boxes.from_dicts(p, True) for u, p in results.items()}
        intervals = {k: self._interval(run.evals, predicted, k) for k in ("overall", "noun", "noun_verb", "noun_ttc")}
        extra = {"predictions": str(self._write(ctx, backbone, results, cfg.eval_split))}
        if cfg.predict_test:
            extra["test_predictions"] = self._predict_test(run, backbone, ctx, selected["layer"], head)
        frames, stride = run.sources["train"].frames, run.sources["train"].stride
        return TaskOutput(
            intervals=intervals,
            metrics={k: metrics[k] for k in ("overall", "noun", "noun_verb", "noun_ttc", "num_empty_predictions")},
            per_layer=rows,
            selected=selected,
            data={
                **{
                    s: {"identity": src.identity(), "n": len(run.feats[s].ids), "skipped": run.feats[s].skipped}
                    for s, src in run.sources.items()
                },
                "num_nouns": len(run.train.nouns),
                "num_verbs": len(run.train.verbs),
                "clipped_boxes": run.train.num_clipped + run.evals.num_clipped,
            },
            extra=extra
            | {
                "variant": {
                    "boxes": cfg.boxes,
                    "score": cfg.score,
                    "verb_topk": cfg.verb_topk,
                    "train_boxes": "ground truth",
                    "frames": frames,
                    "frame_stride": stride,
                    "resolution": backbone.preprocess.resolution,
                    "official_quirks": cfg.official_quirks,
                },
                "comparable_to_table9": False,
                "table9": TABLE9,
                "note": NOT_COMPARABLE,
                "layers": run.layers,
                "default_layer": backbone.default_layer,
                "cache": {s: f.stats for s, f in run.feats.items()},
                "seconds": {"features": t_feat, "total": time.perf_counter() - t0},
            },
        )

    def _prepare(self, backbone: Backbone, ctx: RunContext) -> _Run:
        """Read both splits, check them, and get the token features of every clip (cached)."""
        cfg = self.config
        root = ctx.dataset_root("ego4d", make_mini, MINI_VERSION)
        train, evals = self._split(root, cfg.train_split, True), self._split(root, cfg.eval_split, True)
        if (train.nouns, train.verbs) != (evals.nouns, evals.verbs):
            raise data_error(evals.path, f"noun/verb lists differ from {train.path.name}")
        reader = self._reader(root)
        frames = cfg.frames or backbone.preprocess.frames
        stride = cfg.frame_stride or backbone.preprocess.frame_stride
        layers = [ctx.single_layer(backbone)] if ctx.layers is None else ctx.probe_layers(backbone)
        sources = {
            s: STAClips(sp, reader, backbone.preprocess, frames, stride)
            for s, sp in (("train", train), ("eval", evals))
        }
        feats = {s: self._features(backbone, ctx, src, layers) for s, src in sources.items()}
        for s, f in feats.items():
            unreadable_counts(s, f, cfg.max_skipped)
        train, evals = _restrict(train, feats["train"].ids), _restrict(evals, feats["eval"].ids)
        return _Run(root, reader, layers, train, evals, sources, feats, self._test_boxes(root, evals))

    def _fit_layers(self, run: _Run, ctx: RunContext) -> tuple[list[dict], tuple]:
        """Heads per layer; the layer whose best head has the lowest holdout loss is selected (never on eval)."""
        cfg = self.config
        head_cfg = subset(HeadConfig, cfg, seed=ctx.seed)
        rows, best = [], None
        for layer in run.layers:
            trainset = _train_boxes(run.train, run.feats["train"], layer, cfg)
            head, heads = fit_heads(trainset, len(run.train.verbs), head_cfg, ctx.device)
            results = _predict(run.evals, run.feats["eval"], layer, head, run.test_boxes, cfg, ctx.device)
            boxes = {u: Boxes.from_dicts(p, True) for u, p in results.items()}
            metrics = score(run.evals, boxes, cfg.official_quirks)
            ci = self._interval(run.evals, boxes, "overall")
            chosen = min(heads, key=lambda r: r["holdout_loss"])
            scored = {**metrics, "overall_ci": [ci["low"], ci["high"]]}
            rows += [{"layer": layer, **h, **(scored if h is chosen else {})} for h in heads]
            if best is None or chosen["holdout_loss"] < best[0]["holdout_loss"]:
                best = ({"layer": layer, **chosen}, metrics, results, head)
        return rows, best

    def _interval(self, split: STASplit, boxes: dict[str, Boxes], key: str) -> dict:
        """Bootstrap over the eval examples: the mAP recomputed on resampled annotation sets (each example is
        matched once; a resample only recomputes the AP)."""
        metric = matched(split, boxes, self.config.official_quirks)
        return bootstrap(
            metric.num_examples,
            lambda idx: metric.compute(idx)[key],
            resamples=self.config.interval_resamples,
            ids=[ann.uid for ann in split.annotations],
        )

    def _features(self, backbone: Backbone, ctx: RunContext, source: STAClips, layers: list[int]) -> Features:
        """The chosen layers' tokens reduced to what the box heads read: the last frame and the time mean."""
        return ctx.features(backbone, source, layers=layers, tokens=True, token_reduction="last_and_mean")

    def _split(self, root: Path, split: str, annotated: bool) -> STASplit:
        path = root / self.config.annotations_dir / f"fho_sta_{split}.json"
        return load_split(path, require_objects=annotated, box_check=self.config.box_check)

    def _reader(self, root: Path) -> FrameReader:
        cfg = self.config
        if cfg.frames_dir:
            return FrameReader(frames_dir=root / cfg.frames_dir, template=cfg.frame_template)
        return FrameReader(videos_dir=root / cfg.videos_dir)

    def _test_boxes(self, root: Path, split: STASplit) -> dict[str, Boxes]:
        """Boxes, nouns and detector scores per uid: the detection file, or the annotations (scores 1)."""
        if self.config.boxes == "oracle":
            return {a.uid: _oracle(split.ground_truth(a)) for a in split.annotations}
        return load_detections(root / self.config.detections, split, self.config.score_threshold)

    def _write(self, ctx: RunContext, backbone: Backbone, results: dict, split: str) -> Path:
        cfg = self.config
        path = Path(cfg.predictions_path) if cfg.predictions_path and split == cfg.eval_split else None
        if path is None:
            folder = ctx.predictions_dir("ego4d_sta", backbone, cfg.boxes, dataclasses.asdict(cfg))
            path = folder / f"{split}.json"
        write_results(path, results)
        return path

    def _predict_test(self, run: _Run, backbone: Backbone, ctx: RunContext, layer: int, head: BoxHeads) -> str:
        """Challenge predictions for the unannotated test split with the selected head (detections only)."""
        if self.config.boxes == "oracle":
            return "skipped: the unannotated test split has no boxes for the oracle variant"
        test = self._split(run.root, "test_unannotated", False)
        src = run.sources["train"]
        source = STAClips(test, run.reader, backbone.preprocess, src.frames, src.stride)
        feats = self._features(backbone, ctx, source, run.layers)
        test = _restrict(test, feats.ids)
        results = _predict(test, feats, layer, head, self._test_boxes(run.root, test), self.config, ctx.device)
        return str(self._write(ctx, backbone, results, "test_unannotated"))


def _oracle(gt: Boxes) -> Boxes:
    return dataclasses.replace(gt, scores=np.ones(len(gt)))


def _restrict(split: STASplit, ids: list[str]) -> STASplit:
    """The split's annotations in `ids` (after --limit), in the features' row order."""
    by_uid = {a.uid: a for a in split.annotations}
    return dataclasses.replace(split, annotations=[by_uid[u] for u in ids])


def _train_boxes(split: STASplit, feats: Features, layer: int, cfg: Config) -> BoxSet:
    xs, verbs, ttcs, groups = [], [], [], []
    for row, ann in enumerate(split.annotations):
        if ann.uid in feats.skipped:
            continue
        meta = split.videos[ann.video_uid]
        gt = split.ground_truth(ann)
        xs.append(_box_features(feats, row, layer, gt.boxes, meta, cfg))
        verbs.append(gt.verbs)
        ttcs.append(gt.ttcs)
        groups += [ann.video_uid] * len(gt)
    if not xs:
        raise DataError(f"{split.path}: no training box could be read")
    return BoxSet(
        torch.cat(xs),
        torch.from_numpy(np.concatenate(verbs)),
        torch.from_numpy(np.concatenate(ttcs)).float(),
        np.array(groups),
    )


def _predict(
    split: STASplit,
    feats: Features,
    layer: int,
    head: BoxHeads,
    boxes: dict[str, Boxes],
    cfg: Config,
    device: torch.device,
) -> dict[str, list[dict]]:
    """Challenge-format predictions for every annotation (an unreadable clip gets an empty list)."""
    out = {}
    for row, ann in enumerate(split.annotations):
        det = boxes[ann.uid]
        if ann.uid in feats.skipped or len(det) == 0:
            out[ann.uid] = []
            continue
        meta = split.videos[ann.video_uid]
        x = _box_features(feats, row, layer, det.boxes, meta, cfg)
        probs, ttc = predict_heads(head, x, device)
        preds = []
        for k in range(len(det)):
            if cfg.score == "detector":
                preds.append(prediction(det.boxes[k], det.nouns[k], probs[k].argmax(), ttc[k], det.scores[k]))
                continue
            for verb in np.argsort(-probs[k], kind="stable")[: cfg.verb_topk]:
                s = det.scores[k] * probs[k, verb]
                preds.append(prediction(det.boxes[k], det.nouns[k], verb, ttc[k], s))
        out[ann.uid] = preds
    return out


def _box_features(
    feats: Features, row: int, layer: int, boxes: np.ndarray, meta: VideoMeta, cfg: Config
) -> torch.Tensor:
    maps = feats.tokens[layer][row, 0]  # (2*H'*W', D): the clip's last frame, then its time mean
    return box_features(maps, feats.grid[1:], boxes, (meta.width, meta.height), cfg.roi_size, cfg.context_scale)
