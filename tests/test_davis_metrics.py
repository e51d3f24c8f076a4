"""DAVIS J and F: hand-checked values, the official semantics, the official CSVs, and vos-benchmark agreement.

Run: python -m pytest tests/test_davis_metrics.py -q
"""

from __future__ import annotations

import csv
import math
import warnings

import numpy as np
import pytest
from scipy import ndimage

from toto_eval.common.errors import DataError
from toto_eval.tasks.davis import metrics as M
from toto_eval.tasks.davis.data import write_labels
from toto_eval.tasks.davis.score_cli import main as score_main
from toto_eval.tasks.davis.scoring import GLOBAL_COLUMNS, score_folder, write_csvs


def square(shape, top, left, size=2):
    m = np.zeros(shape, dtype=bool)
    m[top : top + size, left : left + size] = True
    return m


def test_boundary_map_is_the_offset_ring():
    # A 2x2 square at rows/cols 2-3 gives the 3x3 ring at rows/cols 1-3 (the official half-pixel offset).
    b = M.boundary_map(square((8, 8), 2, 2))
    ring = np.zeros((8, 8), dtype=bool)
    ring[1:4, 1:4] = True
    ring[2, 2] = False
    np.testing.assert_array_equal(b, ring)


def test_boundary_map_never_marks_the_image_border():
    full = np.ones((6, 7), dtype=bool)
    assert not M.boundary_map(full).any()
    right = np.zeros((6, 7), dtype=bool)
    right[:, 4:] = True  # touches the right and top/bottom borders: only the vertical edge is a boundary
    b = M.boundary_map(right)
    assert b[:, 3].all() and b.sum() == 6  # only the column left of the edge, offset towards the origin


@pytest.mark.parametrize(("h", "w", "r"), [(480, 854, 8), (480, 910, 9), (480, 1152, 10), (256, 256, 3), (10, 10, 1)])
def test_boundary_radius_table(h, w, r):
    assert M.boundary_radius(h, w) == r


def test_disk_equals_scikit_image():
    disk = pytest.importorskip("skimage.morphology").disk

    for r in range(12):
        np.testing.assert_array_equal(M.disk(r), disk(r).astype(bool))


def test_hand_checked_j_and_f():
    gt = square((10, 10), 2, 2)
    # shift by one column: IoU 2/6; every boundary pixel within radius 1 of the other ring -> F = 1
    assert M.region_similarity(square((10, 10), 2, 3), gt) == pytest.approx(1 / 3)
    assert M.boundary_f_measure(square((10, 10), 2, 3), gt) == 1.0
    # shift by two columns: no overlap; 5 of 8 ring pixels match on each side -> P = R = F = 5/8
    assert M.region_similarity(square((10, 10), 2, 4), gt) == 0.0
    assert M.boundary_f_measure(square((10, 10), 2, 4), gt) == 0.625


def test_empty_mask_rules():
    empty, gt = np.zeros((10, 10), bool), square((10, 10), 2, 2)
    assert M.region_similarity(empty, empty) == 1.0 and M.boundary_f_measure(empty, empty) == 1.0
    assert M.region_similarity(empty, gt) == 0.0 and M.boundary_f_measure(empty, gt) == 0.0
    assert M.region_similarity(gt, empty) == 0.0 and M.boundary_f_measure(gt, empty) == 0.0


def test_void_is_excluded_when_given():
    gt, pred = square((10, 10), 2, 2, 4), square((10, 10), 2, 2, 4)
    pred[6:8, 2:6] = True  # 8 extra pixels
    void = np.zeros((10, 10), bool)
    void[6:8, :] = True
    assert M.region_similarity(pred, gt) == pytest.approx(16 / 24)
    assert M.region_similarity(pred, gt, void) == 1.0
    assert M.boundary_f_measure(pred, gt, void) == 1.0


def official_statistics(v):
    """The official formula literally, uint8 cast included (under NumPy 2 its last bin wraps from 256 values on)."""
    v = np.asarray(v)
    ids = (np.round(np.linspace(1, len(v), 5) + 1e-10) - 1).astype(np.uint8)
    bins = [v[ids[i] : ids[i + 1] + 1] for i in range(4)]
    return np.nanmean(v), np.nanmean(v > 0.5), np.nanmean(bins[0]) - np.nanmean(bins[3])


def test_statistics_hand_checked():
    # bins of 4 values are [0:2], [1:3], [2:3], [2:4]: decay = mean(1, 1) - mean(0, 0)
    assert M.statistics([1.0, 1.0, 0.0, 0.0]) == (0.5, 0.5, 1.0)
    assert M.statistics([1.0] * 7) == (1.0, 1.0, 0.0)
    assert M.statistics([0.5, 0.51, 0.2]) == pytest.approx((1.21 / 3, 1 / 3, 0.505 - 0.2))


def test_statistics_equal_the_official_formula_up_to_255_frames():
    rng = np.random.default_rng(0)
    for n in range(1, 256):
        v = rng.random(n)
        assert M.statistics(v) == official_statistics(v)
    # from 256 on, the official uint8 indices wrap and its decay is NaN; ours stays the defined quarter difference
    v = np.r_[np.ones(150), np.zeros(150)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the official mean of an empty bin
        assert math.isnan(official_statistics(v)[2])
    assert M.statistics(v)[2] == 1.0


def blob(rng, shape, sigma, quantile):
    field = ndimage.gaussian_filter(rng.random(shape), sigma)
    return field > np.quantile(field, quantile)


def make_sequence(rng, n, shape, num_objects, vanish=None, perfect=False, empty_object=None):
    """GT and a noisy prediction: objects are shifted blobs; `vanish` leaves after frame 2."""
    gt = np.zeros((n, *shape), np.uint8)
    for k in range(1, num_objects + 1):
        base = blob(rng, shape, 3, 0.85)
        for t in range(n):
            if k == vanish and t > 2:
                continue
            gt[t][np.roll(base, t, axis=1) & (gt[t] == 0)] = k
    pred = gt.copy()
    if not perfect:
        for t in range(n):
            pred[t] = np.roll(pred[t], rng.integers(-2, 3), axis=0)
            pred[t][rng.random(shape) < 0.01] = 0
    if empty_object:
        pred[pred == empty_object] = 0
    return gt, pred


def test_perfect_prediction_scores_one_with_no_decay():
    gt, pred = make_sequence(np.random.default_rng(1), 9, (30, 40), 2, perfect=True)
    for obj in M.score_sequence("seq", gt, pred):
        assert obj.stats() == {
            "J-Mean": 1.0,
            "J-Recall": 1.0,
            "J-Decay": 0.0,
            "F-Mean": 1.0,
            "F-Recall": 1.0,
            "F-Decay": 0.0,
        }


def test_semantics_first_last_frames_void_missing_ids_and_non_contiguous_ids():
    gt = np.zeros((4, 10, 10), np.uint8)
    gt[:, 2:4, 2:4] = 1
    gt[:, 6:8, 6:8] = 3  # ids {1, 3}: object 2 is scored as an always-empty object
    gt[:, 0, :] = M.VOID  # void counts as background
    pred = gt.copy()
    pred[0] = pred[3] = 0  # first and last frames are never read
    pred[1:3][pred[1:3] == 3] = 0  # object 3 missing from the prediction -> empty mask
    pred[1:3, 0, :] = 1  # predicting on void pixels is a false positive
    objs = M.score_sequence("s", gt, pred)
    assert [o.name for o in objs] == ["s_1", "s_2", "s_3"]
    np.testing.assert_allclose(objs[0].j, [4 / 14, 4 / 14])
    np.testing.assert_array_equal(objs[1].j, [1.0, 1.0])
    np.testing.assert_array_equal(objs[1].f, [1.0, 1.0])
    np.testing.assert_array_equal(objs[2].j, [0.0, 0.0])
    np.testing.assert_array_equal(objs[2].f, [0.0, 0.0])


def test_id_beyond_the_object_count_names_sequence_and_frame():
    gt = np.zeros((5, 8, 8), np.uint8)
    gt[:, 1:3, 1:3] = 1
    pred = gt.copy()
    pred[2, 5, 5] = 2
    with pytest.raises(DataError, match=r"^bike/00002: predicted id 2 .* 1 object"):
        M.score_sequence("bike", gt, pred)


def write_tree(root, sequences, preds):
    """A DAVIS tree (JPEGs, palette PNGs, val.txt) and a predictions folder."""
    from PIL import Image

    for name, gt in sequences.items():
        for t, labels in enumerate(gt):
            frame = root / "davis" / "JPEGImages" / "480p" / name / f"{t:05d}.jpg"
            frame.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.zeros((*labels.shape, 3), np.uint8)).save(frame)
            write_labels(root / "davis" / "Annotations" / "480p" / name / f"{t:05d}.png", labels)
            write_labels(root / "pred" / name / f"{t:05d}.png", preds[name][t])
    (root / "davis" / "ImageSets" / "2017").mkdir(parents=True)
    (root / "davis" / "ImageSets" / "2017" / "val.txt").write_text("\n".join(sequences) + "\n")
    return root / "davis", root / "pred"


@pytest.fixture(scope="module")
def fixture_tree(tmp_path_factory):
    """Sequences for the vos-benchmark check: every object present at frame 1 (its object-set rule), no void."""
    rng = np.random.default_rng(5)
    specs = {
        "vanish": dict(n=8, shape=(40, 64), num_objects=2, vanish=2),
        "border": dict(n=7, shape=(48, 64), num_objects=1),
        "empty-pred": dict(n=6, shape=(60, 90), num_objects=3, empty_object=2),
        "perfect": dict(n=6, shape=(33, 47), num_objects=1, perfect=True),
        "wide": dict(n=9, shape=(72, 200), num_objects=2),
    }
    seqs, preds = {}, {}
    for name, spec in specs.items():
        seqs[name], preds[name] = make_sequence(rng, **spec)
    seqs["border"][:, -6:, -10:] = 1  # touches the right and bottom borders
    preds["border"][:, -5:, -12:] = 1
    return write_tree(tmp_path_factory.mktemp("davis"), seqs, preds)


def test_j_and_f_means_match_vos_benchmark(fixture_tree):
    from PIL import Image

    Evaluator = pytest.importorskip("vos_benchmark.evaluator").Evaluator

    davis, pred = fixture_tree
    ours = {o.name: o.stats() for o in score_folder(davis, pred).objects}
    largest = 0.0
    for name in (davis / "ImageSets" / "2017" / "val.txt").read_text().split():
        ev = Evaluator(name=name)
        frames = sorted((davis / "Annotations" / "480p" / name).iterdir())[1:-1]
        for f in frames:
            ev.feed_frame(np.array(Image.open(pred / name / f.name)), np.array(Image.open(f)))
        iou, bf = ev.conclude()
        for k in iou:
            largest = max(largest, abs(iou[k] / 100 - ours[f"{name}_{k}"]["J-Mean"]))
            largest = max(largest, abs(bf[k] / 100 - ours[f"{name}_{k}"]["F-Mean"]))
    print(f"largest |ours - vos-benchmark| over J and F means: {largest:.3g}")
    assert len(ours) == 9 and largest < 1e-12


def test_cli_writes_the_official_csvs_at_full_precision(fixture_tree, capsys):
    davis, pred = fixture_tree
    assert score_main(["--davis-root", str(davis), "--predictions", str(pred)]) == 0
    out = capsys.readouterr().out
    assert "Global results for val" in out and "vanish_2" in out
    scores = score_folder(davis, pred)
    with open(pred / "global_results-val.csv") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == GLOBAL_COLUMNS
    expected = scores.global_row()
    assert [float(x) for x in rows[1]] == [expected[c] for c in GLOBAL_COLUMNS]  # exact: written with repr
    assert expected["J&F-Mean"] == (expected["J-Mean"] + expected["F-Mean"]) / 2
    with open(pred / "per-sequence_results-val.csv") as fh:
        seq_rows = list(csv.reader(fh))
    assert seq_rows[0] == ["Sequence", "J-Mean", "F-Mean"]
    assert [r[0] for r in seq_rows[1:]][:3] == ["vanish_1", "vanish_2", "border_1"]  # split-file order, per object


def test_global_row_averages_objects_not_sequences(fixture_tree, tmp_path):
    davis, pred = fixture_tree
    scores = score_folder(davis, pred)
    j = [o.stats()["J-Mean"] for o in scores.objects]
    assert scores.global_row()["J-Mean"] == float(np.mean(j))
    paths = write_csvs(scores, tmp_path)
    assert [p.name for p in paths] == ["global_results-val.csv", "per-sequence_results-val.csv"]


def test_object_interval_equals_the_bootstrap_of_the_global_table():
    """The task resamples per-object values; that is the bootstrap of the official global table, resample by
    resample (the table's statistics are means over objects)."""
    from toto_eval.harness.intervals import bootstrap
    from toto_eval.tasks.davis.task import _interval

    rng = np.random.default_rng(3)
    objects = [M.ObjectScores(f"s{i // 2}", 1 + i % 2, rng.random(12), rng.random(12)) for i in range(9)]
    for key in ("J&F-Mean", "J-Mean", "F-Mean", "J-Decay"):
        direct = bootstrap(len(objects), lambda idx, key=key: M.global_table([objects[i] for i in idx])[key])
        fast = _interval(objects, key)
        assert fast["low"] == pytest.approx(direct["low"], abs=1e-12)
        assert fast["high"] == pytest.approx(direct["high"], abs=1e-12)
