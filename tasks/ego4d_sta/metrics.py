"""The official Ego4D STA mean average precision, re-implemented in numpy from its published rules.

The challenge ranks methods by a "top-5 mAP" that COCO tools do not compute (IoU > 0.5 strictly, with VOC "+1
pixel" box areas; verb equality and |TTC error| <= 0.25 s as extra match conditions; (K-1) x n_gt of an example's
highest-scoring false positives forgiven; VOC all-point AP; mean over the noun classes present in the ground truth).
Every rule is reproduced, including the order numpy's `argsort` gives to tied scores, so values equal the
reference evaluator's. One quirk of the reference is kept behind `official_quirks`: the ground truth of an example
with no predictions is left out of the recall denominator. The default is the official behaviour; the count of
such examples is reported so that emitting nothing for hard frames cannot raise a score silently.

Matching is done per variant: the Noun and Overall variants can match one prediction to different boxes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IOU_THRESHOLD = 0.5
TTC_THRESHOLD = 0.25  # seconds
TOP_K = 5
CONDITIONS = ("noun", "verb", "ttc")


@dataclass(frozen=True)
class Variant:
    """One AP measure: a box match plus `conditions`; `per_noun` averages over noun classes (mAP)."""

    name: str
    conditions: tuple[str, ...]
    per_noun: bool = True


# The four numbers the challenge and Toto's Table 9 report; "overall" ranks the challenge.
STA_VARIANTS = (
    Variant("noun", ("noun",)),
    Variant("noun_verb", ("noun", "verb")),
    Variant("noun_ttc", ("noun", "ttc")),
    Variant("overall", ("noun", "verb", "ttc")),
)
# The reference's extra class-agnostic APs (one AP over all boxes, no averaging over nouns).
AGNOSTIC_VARIANTS = tuple(
    Variant("ap_box" + "".join(f"_{c}" for c in conds), conds, per_noun=False)
    for conds in ((), ("noun",), ("verb",), ("ttc",), ("noun", "verb"), ("noun", "ttc"), ("verb", "ttc"), CONDITIONS)
)


@dataclass
class Boxes:
    """The boxes of one example: ground truth (`scores` None) or predictions. Boxes are `[x1, y1, x2, y2]` pixels."""

    boxes: np.ndarray  # (N, 4) float
    nouns: np.ndarray  # (N,) int
    verbs: np.ndarray  # (N,) int
    ttcs: np.ndarray  # (N,) float seconds
    scores: np.ndarray | None = None  # (N,) float, predictions only

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def from_dicts(cls, items: list[dict], with_scores: bool) -> Boxes:
        """From official-format dicts (`box`, `noun_category_id`, `verb_category_id`, `time_to_contact`, `score`)."""
        return cls(
            boxes=np.array([it["box"] for it in items], dtype=np.float64).reshape(-1, 4),
            nouns=np.array([it["noun_category_id"] for it in items], dtype=np.int64),
            verbs=np.array([it["verb_category_id"] for it in items], dtype=np.int64),
            ttcs=np.array([it["time_to_contact"] for it in items], dtype=np.float64),
            scores=np.array([it["score"] for it in items], dtype=np.float64) if with_scores else None,
        )


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix `(A, B)` with VOC areas: a box spans x2 - x1 + 1 pixels; negative extents count as 0."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(1, -1, 4)

    def area(x1, y1, x2, y2):
        return np.clip(x2 - x1 + 1, 0, None) * np.clip(y2 - y1 + 1, 0, None)

    with np.errstate(over="ignore", invalid="ignore"):  # huge or non-finite boxes give inf/NaN, as in the reference
        inter = area(
            np.maximum(a[..., 0], b[..., 0]),
            np.maximum(a[..., 1], b[..., 1]),
            np.minimum(a[..., 2], b[..., 2]),
            np.minimum(a[..., 3], b[..., 3]),
        )
        union = area(*np.moveaxis(a, -1, 0)) + area(*np.moveaxis(b, -1, 0)) - inter
        return inter / (union + 1e-11)  # the reference's epsilon, kept so values agree to the last bit


def average_precision(tp: np.ndarray, scores: np.ndarray, num_gt: int) -> float:
    """VOC all-point AP (fraction) of one class: the area under the monotone precision envelope."""
    tp = tp[np.argsort(scores)[::-1]]
    hits = np.cumsum(tp)
    misses = np.cumsum(1 - tp)
    precision = hits / (hits + misses)
    recall = hits / num_gt if num_gt > 0 else np.zeros_like(hits)
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre[1:-1] = np.maximum.accumulate(mpre[1:][::-1])[::-1][:-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


class STAMeanAP:
    """Accumulates examples with `add`, then `compute` returns every variant's value in percent.

    `official_quirks=True` (the reference behaviour) drops the ground truth of examples without predictions;
    False counts it (a missed example then lowers recall, as one would expect).
    """

    def __init__(
        self,
        variants: tuple[Variant, ...] = STA_VARIANTS,
        top_k: int | None = TOP_K,
        iou_threshold: float = IOU_THRESHOLD,
        ttc_threshold: float = TTC_THRESHOLD,
        official_quirks: bool = True,
    ) -> None:
        self.variants = variants
        self.top_k = top_k
        self.iou_threshold = iou_threshold
        self.ttc_threshold = ttc_threshold
        self.official_quirks = official_quirks
        self.num_examples = 0
        self.num_empty = 0  # examples with no predictions
        # Per example, in the order added (one entry each, so `compute` can score any resample of the examples):
        self._tp: list[np.ndarray] = []  # (P, V): 1 hit, 0 miss, NaN forgiven
        self._scores: list[np.ndarray] = []
        self._pred_nouns: list[np.ndarray] = []
        self._gt_nouns: list[np.ndarray] = []

    def add(self, pred: Boxes, gt: Boxes) -> None:
        """Match one example's predictions to its ground truth and keep what the AP needs."""
        self.num_examples += 1
        if len(pred) == 0:
            self.num_empty += 1
            self._tp.append(np.zeros((0, len(self.variants))))
            self._scores.append(np.zeros(0))
            self._pred_nouns.append(np.zeros(0, dtype=np.int64))
            self._gt_nouns.append(np.zeros(0, dtype=np.int64) if self.official_quirks else gt.nouns)
            return
        order = np.argsort(pred.scores)[::-1]  # the reference's order, ties included
        tp = self._match(pred, gt, order)[order]
        if self.top_k is not None and self.top_k > 1:
            fp = 1 - tp
            forgiven = (fp == 1) & (np.cumsum(fp, axis=0) <= (self.top_k - 1) * len(gt))
            tp[forgiven] = np.nan
        self._tp.append(tp)
        self._scores.append(pred.scores[order])
        self._pred_nouns.append(pred.nouns[order])
        self._gt_nouns.append(gt.nouns)

    def _match(self, pred: Boxes, gt: Boxes, order: np.ndarray) -> np.ndarray:
        # Greedy in descending score: each prediction takes the still-free GT with the highest IoU among those that
        # satisfy the variant's conditions (first index on ties). Returns (P, V) in the predictions' input order.
        iou = box_iou(pred.boxes, gt.boxes)  # (P, G)
        same = {
            "noun": pred.nouns[:, None] == gt.nouns[None, :],
            "verb": pred.verbs[:, None] == gt.verbs[None, :],
            "ttc": np.abs(pred.ttcs[:, None] - gt.ttcs[None, :]) <= self.ttc_threshold,
        }
        tp = np.zeros((len(pred), len(self.variants)))
        for v, variant in enumerate(self.variants):
            ok = iou > self.iou_threshold
            for cond in variant.conditions:
                ok = ok & same[cond]
            candidates = np.where(ok, iou, -1.0)
            taken = np.zeros(len(gt), dtype=bool)
            for i in order:
                row = np.where(taken, -1.0, candidates[i])
                if len(row) and row.max() > -1.0:
                    j = int(np.argmax(row))
                    tp[i, v], taken[j] = 1.0, True
        return tp

    def compute(self, examples: np.ndarray | None = None) -> dict[str, float]:
        """`{variant name: value in percent}`; NaN for a variant when no example contributed ground truth.

        `examples`: indices of added examples to score (repeats allowed: a bootstrap resample); None = all. The
        matching was done once in `add`, so a resample costs only the AP."""
        pick = range(self.num_examples) if examples is None else examples
        gt_nouns = _join([self._gt_nouns[i] for i in pick], np.zeros(0, dtype=np.int64))
        tp = _join([self._tp[i] for i in pick], np.zeros((0, len(self.variants))))
        scores = _join([self._scores[i] for i in pick], np.zeros(0))
        pred_nouns = _join([self._pred_nouns[i] for i in pick], np.zeros(0, dtype=np.int64))
        out = {}
        for v, variant in enumerate(self.variants):
            gt_cls = gt_nouns if variant.per_noun else np.zeros_like(gt_nouns)
            pred_cls = pred_nouns if variant.per_noun else np.zeros_like(pred_nouns)
            aps = []
            for c in np.unique(gt_cls):  # classes without ground truth are ignored
                sel = pred_cls == c
                hits, conf = tp[sel, v], scores[sel]
                keep = ~np.isnan(hits)
                hits, conf = hits[keep], conf[keep]
                # percent per class, then the mean: the reference's order of operations, to the last bit
                aps.append(100.0 * average_precision(hits, conf, int(np.sum(gt_cls == c))) if len(hits) else 0.0)
            out[variant.name] = float(np.mean(aps)) if aps else float("nan")
        return out


def _join(parts: list[np.ndarray], empty: np.ndarray) -> np.ndarray:
    return np.concatenate(parts) if parts else empty
