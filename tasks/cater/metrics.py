"""CATER localisation metrics, as in CATER's `localization_eval.py`: top-1, top-5 and the mean L1 grid distance.

L1 is the Manhattan distance between the argmax cell and the label cell on the square grid (side = sqrt(C),
x = id % side, y = id // side). Every metric is also reported on the videos whose snitch is visible in the last
frame and on those where it is hidden (contained, carried or occluded): the hidden ones measure object permanence.
"""

from __future__ import annotations

import math

import numpy as np

from toto_eval.harness.probes import topk_accuracy


def l1_per_sample(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """|dx| + |dy| between each predicted and true cell; probs (N, C), C a square number -> (N,)."""
    side = math.isqrt(probs.shape[1])
    if side * side != probs.shape[1]:
        raise ValueError(f"L1 needs a square grid, got {probs.shape[1]} classes")
    pred = probs.argmax(1)
    return np.abs(pred % side - labels % side) + np.abs(pred // side - labels // side)


def l1_distance(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean |dx| + |dy| between the predicted and the true cell; probs (N, C), C a square number."""
    return float(np.mean(l1_per_sample(probs, labels)))


def topk(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the k highest scores (the harness's definition)."""
    return float(topk_accuracy(probs, labels, k))


def localization_metrics(probs: np.ndarray, labels: np.ndarray, visible: list[bool | None]) -> dict[str, float]:
    """top1 / top5 / l1 overall and, where visibility is known, `_visible` / `_hidden`, plus the counts."""
    labels = np.asarray(labels)
    out = {"top1": topk(probs, labels, 1), "top5": topk(probs, labels, 5), "l1": l1_distance(probs, labels)}
    flags = np.array([v is True for v in visible]), np.array([v is False for v in visible])
    for suffix, mask in zip(("visible", "hidden"), flags, strict=True):
        out[f"n_{suffix}"] = int(mask.sum())
        if mask.any():
            out[f"top1_{suffix}"] = topk(probs[mask], labels[mask], 1)
            out[f"top5_{suffix}"] = topk(probs[mask], labels[mask], 5)
            out[f"l1_{suffix}"] = l1_distance(probs[mask], labels[mask])
    return out


def by_final_state(probs: np.ndarray, labels: np.ndarray, states: list[str | None]) -> dict[str, dict[str, float]]:
    """top-1 and count per final snitch state (visible / occluded / contained / carried)."""
    states_arr = np.array([s or "unknown" for s in states])
    out = {}
    for state in sorted(set(states_arr)):
        mask = states_arr == state
        out[state] = {"n": int(mask.sum()), "top1": topk(probs[mask], np.asarray(labels)[mask], 1)}
    return out
