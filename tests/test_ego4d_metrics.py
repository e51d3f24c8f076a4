"""Hand-computed fixtures for every rule of the official Ego4D STA mAP.

Run: python -m pytest tests/test_ego4d_metrics.py -q
"""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from toto_eval.tasks.ego4d_sta.metrics import AGNOSTIC_VARIANTS, STA_VARIANTS, Boxes, STAMeanAP, box_iou


def gt(*objs):
    """objs: (box, noun, verb, ttc)."""
    return Boxes(
        boxes=np.array([o[0] for o in objs], float).reshape(-1, 4),
        nouns=np.array([o[1] for o in objs], int),
        verbs=np.array([o[2] for o in objs], int),
        ttcs=np.array([o[3] for o in objs], float),
    )


def preds(*objs):
    """objs: (box, noun, verb, ttc, score)."""
    b = gt(*[o[:4] for o in objs])
    b.scores = np.array([o[4] for o in objs], float)
    return b


def run(examples, **kw):
    m = STAMeanAP(**kw)
    for p, g in examples:
        m.add(p, g)
    return m.compute()


BOX = [0, 0, 9, 9]  # 10 x 10 pixels under the +1 rule


def test_iou_uses_plus_one_pixel_areas():
    assert box_iou([[0, 0, 0, 0]], [[0, 0, 0, 0]])[0, 0] == pytest.approx(1.0)  # a single pixel has area 1
    assert box_iou([BOX], [[5, 0, 14, 9]])[0, 0] == pytest.approx(50 / 150)
    assert box_iou([BOX], [[20, 20, 30, 30]])[0, 0] == 0.0
    # 0.6 with +1 areas (4x4 boxes sharing 3 columns) but 0.5 with continuous areas: a match only officially.
    assert box_iou([[1, 0, 4, 3]], [[0, 0, 3, 3]])[0, 0] == pytest.approx(0.6)
    r = run([(preds(([1, 0, 4, 3], 0, 0, 1.0, 0.9)), gt(([0, 0, 3, 3], 0, 0, 1.0)))])
    assert r["noun"] == pytest.approx(100.0)


def test_iou_exactly_half_is_not_a_match():
    # GT 10x10, prediction 10x20 covering it: IoU = 100 / 200 = 0.5 exactly -> no match (strict >).
    assert box_iou([[0, 0, 9, 19]], [BOX])[0, 0] == pytest.approx(0.5)
    r = run([(preds(([0, 0, 9, 19], 0, 0, 1.0, 0.9)), gt((BOX, 0, 0, 1.0)))])
    assert r["noun"] == 0.0
    # One row less: IoU = 100 / 190 > 0.5 -> match.
    r = run([(preds(([0, 0, 9, 18], 0, 0, 1.0, 0.9)), gt((BOX, 0, 0, 1.0)))])
    assert r["noun"] == pytest.approx(100.0)


def test_ttc_error_of_exactly_a_quarter_second_is_a_match():
    g = gt((BOX, 0, 0, 1.0))
    r = run([(preds((BOX, 0, 0, 1.25, 0.9)), g)])
    assert r["noun_ttc"] == pytest.approx(100.0) and r["overall"] == pytest.approx(100.0)
    r = run([(preds((BOX, 0, 0, 0.75, 0.9)), g)])
    assert r["noun_ttc"] == pytest.approx(100.0)
    r = run([(preds((BOX, 0, 0, 1.3125, 0.9)), g)])  # 0.3125 off: no
    assert r["noun_ttc"] == 0.0 and r["noun"] == pytest.approx(100.0)


def test_verb_and_noun_conditions():
    g = gt((BOX, 3, 5, 1.0))
    r = run([(preds((BOX, 3, 6, 1.0, 0.9)), g)])
    assert r == {"noun": 100.0, "noun_verb": 0.0, "noun_ttc": 100.0, "overall": 0.0}
    r = run([(preds((BOX, 4, 5, 1.0, 0.9)), g)])  # wrong noun: class 4 has no GT, class 3 gets 0
    assert r == {"noun": 0.0, "noun_verb": 0.0, "noun_ttc": 0.0, "overall": 0.0}


def test_top5_forgives_four_false_positives_per_gt_box():
    far = [50, 50, 59, 59]
    g = gt((BOX, 0, 0, 1.0))
    five_fp_then_tp = preds(*[(far, 0, 0, 1.0, 0.9 - 0.1 * k) for k in range(5)], (BOX, 0, 0, 1.0, 0.3))
    # Top-5: the first 4 FPs are dropped; the ranked list is FP, TP -> precision 1/2 at recall 1 -> AP 50.
    assert run([(five_fp_then_tp, g)])["noun"] == pytest.approx(50.0)
    # Without the criterion: precision 1/6 at recall 1.
    assert run([(five_fp_then_tp, g)], top_k=None)["noun"] == pytest.approx(100 / 6)
    four_fp_then_tp = preds(*[(far, 0, 0, 1.0, 0.9 - 0.1 * k) for k in range(4)], (BOX, 0, 0, 1.0, 0.3))
    assert run([(four_fp_then_tp, g)])["noun"] == pytest.approx(100.0)
    # Two GT boxes: 8 FPs are forgiven.
    g2 = gt((BOX, 0, 0, 1.0), ([20, 0, 29, 9], 0, 0, 1.0))
    p = preds(
        *[(far, 0, 0, 1.0, 0.9 - 0.05 * k) for k in range(8)], (BOX, 0, 0, 1.0, 0.3), ([20, 0, 29, 9], 0, 0, 1.0, 0.2)
    )
    assert run([(p, g2)])["noun"] == pytest.approx(100.0)


def test_all_point_ap_on_a_ranked_list():
    gts = gt((BOX, 0, 0, 1.0), ([20, 0, 29, 9], 0, 0, 1.0), ([40, 0, 49, 9], 0, 0, 1.0))
    far = [60, 60, 69, 69]
    p = preds((BOX, 0, 0, 1.0, 0.9), (far, 0, 0, 1.0, 0.8), ([20, 0, 29, 9], 0, 0, 1.0, 0.7), (far, 0, 0, 1.0, 0.6))
    # TP FP TP FP with 3 GT: precision 1, 1/2, 2/3, 1/2 at recall 1/3, 1/3, 2/3, 2/3 -> envelope 1, 2/3 -> 5/9.
    assert run([(p, gts)], top_k=None)["noun"] == pytest.approx(500 / 9)
    # Top-5 forgives both FPs: precision 1 up to recall 2/3.
    assert run([(p, gts)])["noun"] == pytest.approx(200 / 3)


def test_class_without_ground_truth_is_ignored_and_class_without_predictions_counts_zero():
    g = gt((BOX, 0, 0, 1.0))
    # A high-scoring noun-1 prediction (class 1 has no GT) does not enter the mean.
    p = preds((BOX, 1, 0, 1.0, 0.9), (BOX, 0, 0, 1.0, 0.8))
    assert run([(p, g)])["noun"] == pytest.approx(100.0)
    # Class 2 has GT but no prediction: AP 0, so the mean over {0, 2} is 50.
    g2 = gt((BOX, 0, 0, 1.0), ([20, 0, 29, 9], 2, 0, 1.0))
    assert run([(preds((BOX, 0, 0, 1.0, 0.9)), g2)])["noun"] == pytest.approx(50.0)


def test_matching_is_separate_per_variant():
    # Two GTs of the same noun; the top prediction overlaps A best, but only B shares its verb.
    g = gt((BOX, 0, 0, 1.0), ([0, 0, 9, 11], 0, 1, 1.0))
    p = preds((BOX, 0, 1, 1.0, 0.9), ([0, 0, 9, 11], 0, 0, 1.0, 0.8))
    r = run([(p, g)], top_k=None)
    # Noun: p1 -> A, p2 -> B. Noun+verb: p1 -> B (verb 1), p2 -> A (verb 0, IoU 100/120). Both perfect.
    assert r["noun"] == pytest.approx(100.0) and r["noun_verb"] == pytest.approx(100.0)


def test_a_gt_box_is_matched_once():
    g = gt((BOX, 0, 0, 1.0))
    p = preds((BOX, 0, 0, 1.0, 0.9), (BOX, 0, 0, 1.0, 0.8))
    assert run([(p, g)], top_k=None)["noun"] == pytest.approx(100.0)  # TP then FP: precision 1 at recall 1
    m = STAMeanAP(top_k=None)
    m.add(p, g)
    assert np.array_equal(m._tp[0][:, 0], [1.0, 0.0])


def test_empty_predictions_official_quirk_and_the_fixed_behaviour():
    g = gt((BOX, 0, 0, 1.0))
    empty = preds()
    examples = [(preds((BOX, 0, 0, 1.0, 0.9)), g), (empty, g)]
    m = STAMeanAP()
    for p, gg in examples:
        m.add(p, gg)
    assert m.compute()["noun"] == pytest.approx(100.0)  # the empty example's GT drops out (reference behaviour)
    assert m.num_empty == 1 and m.num_examples == 2
    assert run(examples, official_quirks=False)["noun"] == pytest.approx(50.0)
    assert np.isnan(run([(empty, g)])["noun"])  # nothing contributed ground truth


def test_agnostic_variants_pool_all_nouns():
    g = gt((BOX, 0, 0, 1.0), ([20, 0, 29, 9], 1, 0, 1.0))
    p = preds((BOX, 0, 0, 1.0, 0.9), ([20, 0, 29, 9], 2, 0, 1.0, 0.8))  # second box has the wrong noun
    r = run([(p, g)], variants=STA_VARIANTS + AGNOSTIC_VARIANTS, top_k=None)
    assert r["ap_box"] == pytest.approx(100.0)
    assert r["ap_box_noun"] == pytest.approx(50.0)  # TP, FP over 2 GT: recall 1/2 at precision 1
    assert r["noun"] == pytest.approx(50.0)  # class 0: 100, class 1: 0


def test_box_iou_agrees_with_pycocotools_on_integer_boxes():
    # Sanity check of the IoU only (pycocotools is not STA mAP): +1 areas equal continuous xywh with w = x2-x1+1.
    rng = np.random.default_rng(0)
    a = rng.integers(0, 50, (20, 2))
    a = np.concatenate([a, a + rng.integers(0, 30, (20, 2))], 1).astype(float)
    b = rng.integers(0, 50, (15, 2))
    b = np.concatenate([b, b + rng.integers(0, 30, (15, 2))], 1).astype(float)

    def xywh(x):
        return np.concatenate([x[:, :2], x[:, 2:] - x[:, :2] + 1], 1)

    coco = mask_utils.iou(xywh(a).tolist(), xywh(b).tolist(), [0] * len(b))
    assert np.allclose(box_iou(a, b), coco, atol=1e-9)


@pytest.mark.parametrize("quirks", [True, False])
def test_a_resample_scores_as_the_examples_added_in_that_order(quirks):
    """`compute(idx)` (matching done once, used by the bootstrap) equals adding the resampled examples afresh."""
    rng = np.random.default_rng(5)

    def box():
        x, y = rng.integers(0, 40, 2)
        return [x, y, x + rng.integers(5, 30), y + rng.integers(5, 30)]

    examples = []
    for k in range(12):
        g = gt(*[(box(), int(rng.integers(3)), int(rng.integers(2)), float(rng.random())) for _ in range(2)])
        p = preds(*[(box(), int(rng.integers(3)), int(rng.integers(2)), float(rng.random()), float(rng.random()))
                    for _ in range(0 if k == 4 else 6)])  # fmt: skip
        examples.append((p, g))
    metric = STAMeanAP(official_quirks=quirks)
    for p, g in examples:
        metric.add(p, g)
    for _ in range(5):
        idx = rng.integers(0, len(examples), len(examples))
        assert metric.compute(idx) == run([examples[i] for i in idx], official_quirks=quirks)
    assert metric.compute() == run(examples, official_quirks=quirks)
