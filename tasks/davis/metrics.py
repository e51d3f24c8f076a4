"""J (region similarity) and F (boundary F-measure) exactly as davis2017-evaluation computes them.

Written from the published semantics, not from the official code (which is not on PyPI and whose licence metadata
disagrees with its licence file); numpy and scipy only, no OpenCV or scikit-image. The rules that matter:

- J = |pred ∧ gt| / |pred ∨ gt| (outside void), and J = 1 when both masks are empty.
- F compares one-pixel boundary maps (forward differences, image border never a boundary) matched within a disk of
  radius ceil(0.008 * image diagonal); P = 1, R = 0 when the prediction has no boundary, the reverse when the GT
  has none, and F = 1 when neither has.
- Per object over the scored frames: mean, recall (fraction of frames with value > 0.5, strictly) and decay (mean
  of the first quarter minus mean of the last quarter, with the official overlapping bins). The official code
  casts its bin indices to uint8 and so returns NaN decay from 256 scored frames on (under NumPy 2); we use
  integer indices, which equal it up to 255 frames (DAVIS has at most 104) and stay defined beyond.
- Semi-supervised scoring skips the first and last frames, takes the object count K from GT frame 0, counts void
  (255) GT pixels as background, scores objects missing from a prediction as empty masks and refuses a
  prediction id above K.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from toto_eval.common.errors import DataError

VOID = 255
BOUNDARY_THRESHOLD = 0.008


def region_similarity(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None) -> np.ndarray:
    """J of boolean masks `(..., H, W)`, one value per leading index (a scalar array for one frame)."""
    pred, gt = pred.astype(bool), gt.astype(bool)
    keep = np.ones_like(gt) if void is None else ~void.astype(bool)
    inter = np.sum(pred & gt & keep, axis=(-2, -1))
    union = np.sum((pred | gt) & keep, axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def boundary_map(seg: np.ndarray) -> np.ndarray:
    """One-pixel boundary of a boolean `(H, W)` mask, offset half a pixel towards the origin (official rule)."""
    seg = seg.astype(bool)
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    bmap = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    # The last row only sees horizontal changes, the last column only vertical ones, the corner none.
    bmap[-1, :] = seg[-1, :] ^ east[-1, :]
    bmap[:, -1] = seg[:, -1] ^ south[:, -1]
    bmap[-1, -1] = False
    return bmap


def boundary_radius(height: int, width: int, bound_th: float = BOUNDARY_THRESHOLD) -> int:
    """Match tolerance in pixels: `bound_th` itself when >= 1, else ceil(bound_th * diagonal)."""
    return int(bound_th) if bound_th >= 1 else math.ceil(bound_th * math.hypot(height, width))


def disk(radius: int) -> np.ndarray:
    """The `(2r+1, 2r+1)` structuring element x² + y² <= r² (scikit-image's `disk`)."""
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return x * x + y * y <= radius * radius


def _within(boundary: np.ndarray, box: tuple[slice, slice], radius: int) -> np.ndarray:
    """Dilation of `boundary` by `disk(radius)`, evaluated inside `box` only.

    A pixel is in the dilation iff its Euclidean distance to the nearest boundary pixel is <= radius; squared
    distances are integers, so this is the disk x² + y² <= r² exactly. Values are only read at boundary pixels,
    which all lie inside `box`, so transforming the crop alone is exact and much cheaper than dilating the frame.
    """
    return ndimage.distance_transform_edt(~boundary[box]) <= radius


def boundary_f_measure(
    pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None, bound_th: float = BOUNDARY_THRESHOLD
) -> float:
    """F of one frame: boolean `(H, W)` prediction and GT masks, optional void mask excluded from both."""
    pred, gt = pred.astype(bool), gt.astype(bool)
    if void is not None:
        pred, gt = pred & ~void.astype(bool), gt & ~void.astype(bool)
    pred_b, gt_b = boundary_map(pred), boundary_map(gt)
    n_pred, n_gt = int(pred_b.sum()), int(gt_b.sum())
    if n_pred == 0 and n_gt == 0:
        return 1.0
    if n_pred == 0:
        return 0.0  # P = 1, R = 0
    if n_gt == 0:
        return 0.0  # P = 0, R = 1
    rows, cols = np.nonzero(pred_b | gt_b)
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    radius = boundary_radius(*pred.shape, bound_th)
    pred_match = pred_b[box] & _within(gt_b, box, radius)
    gt_match = gt_b[box] & _within(pred_b, box, radius)
    precision = np.sum(pred_match) / float(n_pred)
    recall = np.sum(gt_match) / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def statistics(values: np.ndarray) -> tuple[float, float, float]:
    """(mean, recall, decay) of one object's per-frame J or F over the scored frames."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(np.nanmean(values))
    recall = float(np.mean(values > 0.5))  # NaN compares False, as in nanmean(v > 0.5)
    ids = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(np.int64)
    bins = [values[ids[i] : ids[i + 1] + 1] for i in range(4)]  # neighbouring bins share one frame
    decay = float(np.nanmean(bins[0]) - np.nanmean(bins[3]))
    return mean, recall, decay


@dataclass
class ObjectScores:
    """One object of one sequence: per-frame J and F over the scored frames, and their statistics."""

    sequence: str
    object_id: int
    j: np.ndarray  # (N-2,) float64
    f: np.ndarray  # (N-2,) float64

    @property
    def name(self) -> str:
        return f"{self.sequence}_{self.object_id}"

    def stats(self) -> dict[str, float]:
        jm, jr, jd = statistics(self.j)
        fm, fr, fd = statistics(self.f)
        return {"J-Mean": jm, "J-Recall": jr, "J-Decay": jd, "F-Mean": fm, "F-Recall": fr, "F-Decay": fd}


def check_prediction_ids(sequence: str, frame_names: list[str], pred: np.ndarray, num_objects: int) -> None:
    """The official evaluator aborts on an id above K; we raise a DataError naming the first such frame."""
    too_high = np.nonzero(pred.reshape(len(pred), -1).max(axis=1) > num_objects)[0]
    if too_high.size:
        i = int(too_high[0])
        found = int(pred[i].max())
        raise DataError(
            f"{sequence}/{frame_names[i]}: predicted id {found} but the sequence has {num_objects} object(s) "
            f"in its first annotated frame"
        )


def score_sequence(
    sequence: str, gt: np.ndarray, pred: np.ndarray, frame_names: list[str] | None = None
) -> list[ObjectScores]:
    """Semi-supervised J and F of one sequence.

    Args:
        sequence: name, used in object names and errors.
        gt: `(N, H, W)` uint8 GT ids of every frame (255 = void).
        pred: `(N, H, W)` or `(N-2, H, W)` predicted ids; only frames 1..N-2 are scored.
        frame_names: names of the N frames, for error messages.
    """
    n = len(gt)
    frame_names = frame_names or [f"{i:05d}" for i in range(n)]
    if n < 3:
        raise DataError(f"{sequence}: {n} annotated frame(s); scoring skips the first and last, so at least 3")
    gt = np.where(gt == VOID, 0, gt)
    num_objects = int(gt[0].max())
    gt, scored_pred = gt[1:-1], (pred[1:-1] if len(pred) == n else pred)
    if scored_pred.shape != gt.shape:
        raise DataError(f"{sequence}: prediction shape {scored_pred.shape} does not match the GT {gt.shape}")
    check_prediction_ids(sequence, frame_names[1:-1], scored_pred, num_objects)
    out = []
    for k in range(1, num_objects + 1):
        pred_k, gt_k = scored_pred == k, gt == k
        j = region_similarity(pred_k, gt_k).astype(np.float64)
        f = np.array([boundary_f_measure(p, g) for p, g in zip(pred_k, gt_k, strict=True)], dtype=np.float64)
        out.append(ObjectScores(sequence, k, j, f))
    return out


def global_table(objects: list[ObjectScores]) -> dict[str, float]:
    """The official global row: means over objects (not sequences) of each statistic, and J&F-Mean."""
    if not objects:
        raise DataError("no objects to score: the sequences' first frames contain no object ids")
    rows = [o.stats() for o in objects]
    out = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
    return {"J&F-Mean": (out["J-Mean"] + out["F-Mean"]) / 2.0, **out}
