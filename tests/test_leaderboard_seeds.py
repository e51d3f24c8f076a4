"""Rows over seeds (`toto-eval leaderboard --pool-seeds`): one results directory per seed pooled into one row per
model and task, the mean over the seeds, with intervals that count the seed's spread as well as the samples'.

Run: python -m pytest tests/test_leaderboard_seeds.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from toto_eval.harness import cli
from toto_eval.harness.intervals import bootstrap_mean
from toto_eval.leaderboard import intervals
from toto_eval.leaderboard.collect import collect
from toto_eval.leaderboard.tables import build_tables

IDS = [f"val/{i}" for i in range(200)]
HITS = (np.random.default_rng(1).random(200) < 0.5).astype(float)


def shifted(k: int) -> np.ndarray:
    """HITS with k more samples right (k > 0) or k fewer (k < 0): a model k/200 above or below."""
    hits, flip = HITS.copy(), HITS < 0.5 if k > 0 else HITS > 0.5
    hits[np.flatnonzero(flip)[: abs(k)]] = 1.0 - hits[np.flatnonzero(flip)[: abs(k)]]
    return hits


def write(root: Path, backbone: str, seed: int, hits: np.ndarray | None, per_layer: list | None = None) -> None:
    """An imagenet_probe result of one seed; hits None: a failed run."""
    doc = {
        "backbone": backbone,
        "checkpoint": "builtin",
        "task": "imagenet_probe",
        "task_version": "1",
        "status": "ok" if hits is not None else "failed",
        "main_metric": "top1",
        "main_score": None if hits is None else float(hits.mean()),
        "metrics": {} if hits is None else {"top1": float(hits.mean())},
        "intervals": {} if hits is None else {"top1": bootstrap_mean(hits, ids=IDS)},
        "per_layer": per_layer or [],
        "seed": seed,
        "num_params": 1,
        "num_layers": 2,
        "provenance": {"finished": f"2026-01-01T00:00:0{seed}+0000"},
    }
    path = root / f"seed{seed}" / backbone / "builtin" / "imagenet_probe.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


@pytest.fixture
def seeds(tmp_path) -> list[Path]:
    """b is 6 points below a under seed 0 (paired: beyond doubt) and 6 above under seed 1: no difference."""
    write(tmp_path, "a", 0, HITS)
    write(tmp_path, "b", 0, shifted(-12))
    write(tmp_path, "a", 1, HITS)
    write(tmp_path, "b", 1, shifted(12))
    return [tmp_path / "seed0", tmp_path / "seed1"]


def test_pooled_entry_is_the_mean_over_seeds_with_an_interval_over_seeds_and_samples(seeds):
    plain, pooled = collect(seeds), collect(seeds, pool_seeds=True)
    assert [e.result.seed for e in plain.entries] == [1, 1]  # without pooling the newest run wins
    assert any(n.startswith("duplicate b/builtin/imagenet_probe") for n in plain.notes)

    a, b = pooled.entries
    assert (a.seeds, b.seeds) == ((0, 1), (0, 1))
    assert b.result.main_score == pytest.approx(HITS.mean()) and b.result.metrics["top1"] == pytest.approx(HITS.mean())
    runs = [load.interval("top1") for load in collect([seeds[0]]).entries[1:] + collect([seeds[1]]).entries[1:]]
    assert b.interval("top1") == intervals.pool_interval(runs)
    assert b.interval("top1").method == intervals.POOLED
    note = "the mean of seeds 0, 1 on imagenet_probe (intervals over seeds and samples)"
    assert pooled.notes == [f"a/builtin: {note}", f"b/builtin: {note}"]


def test_a_single_seeds_verdict_does_not_survive_the_other_seed(seeds):
    """Under seed 0 alone b is paired-below a; pooled over both seeds the two are not shown to differ (≈)."""
    one = {t.name: t for t in build_tables(collect([seeds[0]]), reported=False)}["imagenet_probe"]
    both = {t.name: t for t in build_tables(collect(seeds, pool_seeds=True), reported=False)}["imagenet_probe"]
    assert not any("≈" in m for m in one.marks["top-1"])
    assert sorted(both.marks["top-1"]) == ["", "≈"]
    assert set(both.frame["flags"]) == {"mean of 2 seeds"}


def test_per_layer_rows_are_averaged_where_the_runs_probed_the_same_heads_and_failed_seeds_are_left_out(tmp_path):
    def rows(top1: float) -> list[dict]:
        return [{"layer": 0, "lr": 1e-3, "test_top1": top1, "test_top1_ci": [0.0, 1.0]}, {"layer": 1, "lr": 1e-3}]

    write(tmp_path, "a", 0, HITS, rows(0.2))
    write(tmp_path, "a", 1, HITS, rows(0.4))
    write(tmp_path, "a", 2, None)
    write(tmp_path, "c", 0, HITS, rows(0.2))
    write(tmp_path, "c", 1, HITS, rows(0.2)[:1])  # other heads: no mean curve
    coll = collect([tmp_path / f"seed{s}" for s in range(3)], pool_seeds=True)
    a, c = coll.entries
    assert a.seeds == (0, 1) and a.result.per_layer == [
        {"layer": 0, "lr": 1e-3, "test_top1": pytest.approx(0.3)},  # a mean of intervals is no interval: dropped
        {"layer": 1, "lr": 1e-3},
    ]
    assert c.seeds == (0, 1) and c.result.per_layer == []
    assert "a/builtin/imagenet_probe/1: seed(s) 2 failed, left out of the mean" in coll.notes


def test_leaderboard_command_pools_seeds_as_a_user_runs_it(seeds, tmp_path, capsys):
    out = tmp_path / "board"
    argv = ["leaderboard", "--results-dir", *map(str, seeds), "--pool-seeds", "--out", str(out), "--formats", "md"]
    assert cli.main([*argv, "--no-reported"]) == 0
    text = (out / "leaderboard.md").read_text()
    assert "mean of 2 seeds" in text and "bootstrap over seeds and samples" in text
    assert capsys.readouterr().out.split() == [str(out / "leaderboard.md")]
