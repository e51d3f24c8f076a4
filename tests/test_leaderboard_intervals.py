"""Leaderboard uncertainty: 95% intervals from result files shown as ± or [low, high], CSV bounds, the ≈ mark for
rows not shown to differ from the best row (paired where the results allow it), per-layer bands in the depth
figure, and old files without intervals.

Run: python -m pytest tests/test_leaderboard_intervals.py -q
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from toto_eval.leaderboard import figures, intervals, render
from toto_eval.leaderboard.collect import collect
from toto_eval.leaderboard.tables import build_tables


def write(root: Path, backbone: str, task: str, score: float, metrics: dict, **fields) -> Path:
    """A result file as the harness writes it (raw JSON, so the newer fields travel whatever TaskResult declares)."""
    doc = {
        "backbone": backbone,
        "checkpoint": fields.pop("checkpoint", "builtin"),
        "task": task,
        "task_version": "1",
        "status": "ok",
        "main_metric": fields.pop("main", "top1"),
        "main_score": score,
        "metrics": metrics,
        "num_params": 2_500_000,
        "num_layers": 2,
        "provenance": {"finished": "2026-01-01T00:00:00+0000"},
    } | fields
    path = root / backbone / doc["checkpoint"] / f"{task}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def ci(low: float, high: float, method: str = "bootstrap", n: int = 400) -> dict:
    return {"low": low, "high": high, "level": 0.95, "method": method, "n": n}


@pytest.fixture
def tables(tmp_path):
    write(tmp_path, "a", "imagenet_probe", 0.80, {"top1": 0.80}, intervals={"top1": ci(0.76, 0.84)})
    write(tmp_path, "b", "imagenet_probe", 0.78, {"top1": 0.78}, intervals={"top1": ci(0.74, 0.82)})
    write(tmp_path, "c", "imagenet_probe", 0.60, {"top1": 0.60}, intervals={"top1": ci(0.55, 0.65)})
    write(tmp_path, "d", "imagenet_probe", 0.70, {"top1": 0.70})  # an older file: no intervals
    write(tmp_path, "e", "imagenet_probe", 0.50, {"top1": 0.50}, intervals={"top1": {"low": "x"}, "top5": []})
    success = {"success": 0.0625, "franka_pick_success": 0.0625}
    wilson = {k: ci(0.0111, 0.2833, "wilson", 16) for k in success}
    write(tmp_path, "a", "robot", 0.0625, success, main="success", intervals=wilson, mini_overrides={"episodes": 16})
    ego = {"overall": 2.5, "noun": 20.0}
    write(tmp_path, "a", "ego4d_sta", 2.5, ego, main="overall", intervals={"overall": ci(2.0, 3.0)})
    coll = collect([tmp_path])
    return {t.name: t for t in build_tables(coll, reported=False)}, coll


def cells(table, model: str) -> dict:
    i = table.frame.index[table.frame["model"] == model][0]
    return {c: render.cell_text(table, i, c) for c in table.frame.columns}


def test_rows_scored_on_the_same_samples_are_compared_on_their_paired_difference(tmp_path):
    """Two models on the same 200 samples, b right on 12 fewer: the marginal intervals overlap widely, but b is
    below a on every resample, so the paired interval excludes 0 and b is not marked. The same hits on other
    samples (another digest) cannot be paired and fall back to overlap."""
    import numpy as np

    from toto_eval.harness.intervals import bootstrap_mean

    rng = np.random.default_rng(1)
    hits_a = (rng.random(200) < 0.6).astype(float)
    hits_b = hits_a.copy()
    hits_b[np.flatnonzero(hits_a)[:12]] = 0.0
    ids = [f"val/{i}" for i in range(200)]
    for name, hits, sample_ids in (("a", hits_a, ids), ("b", hits_b, ids), ("c", hits_b, ids[::-1])):
        rec = bootstrap_mean(hits, ids=sample_ids)
        write(tmp_path, name, "imagenet_probe", hits.mean(), {"top1": hits.mean()}, intervals={"top1": rec})
    broken = bootstrap_mean(hits_b, ids=ids) | {"replicates": "not base64 %%"}
    write(tmp_path, "d", "imagenet_probe", 0.1, {"top1": 0.1}, intervals={"top1": broken})
    coll = collect([tmp_path])
    assert any("d/builtin/imagenet_probe.json: interval 'top1': replicates are not" in n for n in coll.notes)
    probe = {t.name: t for t in build_tables(coll, reported=False)}["imagenet_probe"]
    a, b = (coll.entries[i].interval("top1") for i in (0, 1))
    assert a.high > b.low  # the marginal intervals overlap...
    low, high = intervals.paired_difference(a, b)
    assert 0 < low <= 0.06 <= high  # ...but the paired difference (0.06) excludes 0
    assert intervals.paired_difference(a, coll.entries[2].interval("top1")) is None  # other samples: no pairing
    assert "≈" not in cells(probe, "b")["top-1"] and cells(probe, "c")["top-1"].endswith("≈")
    assert any("best measured a/builtin, 1 row(s) not shown to differ (1 paired)" in line for line in probe.footer)


def test_pooled_difference_resamples_the_runs_as_well_as_the_samples():
    """Three seeds whose differences are +1, +2 and +6 on every sample resample: a run's own paired interval is a
    single point; the pooled one runs from +1 to +6, because a resample draws one seed three times with
    probability 1/27 > 2.5% (+1 at the bottom, +6 at the top). Runs on other samples do not pool."""
    import numpy as np

    def iv(value: float, samples: str = "s") -> intervals.Interval:
        reps = np.full(1000, value) + np.linspace(0, 1e-9, 1000)  # the same resample in every run
        return intervals.Interval(value, value, n=50, replicates=reps, samples=samples)

    pairs = [(iv(d), iv(0.0)) for d in (1.0, 2.0, 6.0)]
    assert intervals.paired_difference(*pairs[0]) == pytest.approx((1.0, 1.0))
    assert intervals.pooled_difference(pairs) == pytest.approx((1.0, 6.0))
    two = [(iv(d), iv(0.0)) for d in (1.0, 6.0)]  # a quarter of the resamples draw +1 twice, a quarter +6
    assert intervals.pooled_difference(two) == pytest.approx((1.0, 6.0))
    assert intervals.pooled_difference([*pairs, (iv(1.0, "t"), iv(0.0, "t"))]) is None
    assert intervals.pooled_difference([]) is None


def test_text_is_plus_minus_only_when_the_interval_is_symmetric_at_the_precision_shown():
    assert intervals.text(10.0, 9.0, 11.04, 1) == "10.0 ± 1.0"  # off by 0.04 < half a last digit
    assert intervals.text(10.0, 9.0, 11.1, 1) == "10.0 [9.0, 11.1]"
    assert intervals.text(6.25, 1.11, 28.33, 1) == "6.2 [1.1, 28.3]"  # Wilson near 0: lopsided
    assert intervals.text(5.0, 6.0, 7.0, 1) == "5.0 [6.0, 7.0]"  # value outside its interval: never ±
    assert intervals.overlaps((1, 2), (2, 3)) and not intervals.overlaps((1, 2), (2.1, 3))


def test_intervals_are_shown_and_rows_within_the_best_are_marked(tables):
    tabs, coll = tables
    probe = tabs["imagenet_probe"]
    assert cells(probe, "a")["top-1"] == "80.0 ± 4.0"  # the best: no mark
    assert cells(probe, "b")["top-1"] == "78.0 ± 4.0 ≈"  # [74, 82] overlaps [76, 84]
    assert cells(probe, "c")["top-1"] == "60.0 ± 5.0"  # [55, 65] does not
    assert cells(probe, "d")["top-1"] == "70.0"  # no interval: as before, and never marked
    assert cells(probe, "e")["top-1"] == "50.0"  # a malformed interval is dropped
    assert any("e/builtin/imagenet_probe.json: interval 'top1'" in n and "(ignored)" in n for n in coll.notes)
    assert any(line.startswith("±: half-width of the 95% interval (bootstrap") for line in probe.footer)
    best = "best measured a/builtin, 1 row(s) not shown to differ (0 paired)"
    assert any("≈" in line and best in line for line in probe.footer)
    overall = tabs["overall"]
    assert cells(overall, "b")["imagenet_probe"] == "78.0 ± 4.0 ≈" and cells(overall, "a")["ego4d_sta"] == "2.50 ± 0.50"
    robot = cells(tabs["robot"], "a")
    assert robot["success (mean)"] == "6.2 [1.1, 28.3]" and robot["franka_pick"] == "6.2 [1.1, 28.3]"
    assert "mini-suite overrides, a/builtin: episodes=16." in tabs["robot"].footer
    assert cells(tabs["ego4d_sta"], "a")["noun"] == "20.00"  # stored in percent: no x100; no interval for noun


def test_every_format_carries_the_intervals(tables, tmp_path):
    tabs, _ = tables
    probe = tabs["imagenet_probe"]
    md = render.markdown([probe])
    assert "| b | builtin | measured |  | 2.50 | 78.0 ± 4.0 ≈ |" in md
    tex = render.latex([probe])
    assert "78.0 $\\pm$ 4.0 $\\approx$" in tex and "±" not in tex
    page = render.html_page([probe])
    assert 'data-v="0.78"' not in page and 'data-v="78.0"' in page  # sorting stays on the number
    assert '95% interval [74.00, 82.00]">78.0 ± 4.0 ≈</td>' in page
    render.write_csv(probe, tmp_path / "probe.csv")
    back = pd.read_csv(tmp_path / "probe.csv")
    assert list(back.columns)[-4:] == ["top-1", "top-1 low", "top-1 high", "marks"]
    b = back[back["model"] == "b"].iloc[0]
    assert (b["top-1"], b["top-1 low"], b["top-1 high"], b["marks"]) == (78.0, 74.0, 82.0, "top-1: ≈")
    d = back[back["model"] == "d"].iloc[0]
    assert math.isnan(d["top-1 low"]) and d["top-1"] == 70.0


def test_results_without_intervals_render_as_before(tmp_path):
    write(tmp_path, "a", "imagenet_probe", 0.80, {"top1": 0.80})
    write(tmp_path, "b", "imagenet_probe", 0.78, {"top1": 0.78})
    tabs = {t.name: t for t in build_tables(collect([tmp_path]), reported=False)}
    probe = tabs["imagenet_probe"]
    assert probe.interval_columns() == [] and not any("±" in line or "≈" in line for line in probe.footer)
    assert "| b | builtin | measured |  | 2.50 | 78.0 |" in render.markdown([probe])
    assert list(render.csv_frame(probe).columns) == list(probe.frame.columns)


def test_depth_figure_draws_the_per_layer_intervals_as_bands(tmp_path):
    heads = [
        {"layer": 0, "holdout_top1": 0.2, "test_top1": 0.10, "test_top1_ci": [0.05, 0.15]},
        {"layer": 0, "holdout_top1": 0.1, "test_top1": 0.40, "test_top1_ci": [0.30, 0.50]},  # worse on holdout
        {"layer": 1, "holdout_top1": 0.4, "test_top1": 0.30, "test_top1_ci": [0.2, "bad"]},
        {"layer": 2, "holdout_top1": 0.5, "test_top1": 0.50, "test_top1_ci": [0.45, 0.55]},
    ]
    write(tmp_path / "r", "a", "imagenet_probe", 0.5, {"top1": 0.5}, per_layer=heads, num_layers=3)
    write(tmp_path / "r", "b", "imagenet_probe", 0.5, {"top1": 0.5}, per_layer=[{**h} for h in heads], num_layers=3)
    entries = collect([tmp_path / "r"]).entries
    curve = figures.layer_curve(entries[0])
    assert [round(p.score, 6) for p in curve] == [10.0, 30.0, 50.0]
    assert (curve[0].low, curve[0].high) == (pytest.approx(5.0), pytest.approx(15.0))
    assert math.isnan(curve[1].low) and curve[2].high == pytest.approx(55.0)  # a malformed pair: no band there
    banded = figures.probe_depth(entries, tmp_path / "with")[1].read_text()
    for h in heads:
        h.pop("test_top1_ci")
    write(tmp_path / "plain", "a", "imagenet_probe", 0.5, {"top1": 0.5}, per_layer=heads, num_layers=3)
    plain = figures.probe_depth(collect([tmp_path / "plain"]).entries, tmp_path / "without")[1].read_text()
    assert "opacity: 0.18" in banded and "95% interval" in banded  # the bands and their legend entry
    assert "opacity: 0.18" not in plain and "95% interval" not in plain
