"""95% intervals: Wilson against hand-computed values, the bootstrap's determinism and coverage, and every
task's result carrying an interval around its main metric.

Run: python -m pytest tests/test_intervals.py -q
"""

from __future__ import annotations

import numpy as np
import pytest

from toto_eval.harness.intervals import bootstrap, bootstrap_mean, decode_replicates, success_interval, wilson


def test_wilson_matches_hand_computed_values():
    # 8/10: centre (0.8 + 1.92/10) / 1.384, half-width 1.96 * sqrt(0.016 + 0.00960) / 1.384
    rec = wilson(8, 10)
    assert rec["low"] == pytest.approx(0.49016, abs=1e-5) and rec["high"] == pytest.approx(0.94332, abs=1e-5)
    assert wilson(0, 4)["low"] == 0.0 and wilson(4, 4)["high"] == 1.0  # stays in [0, 1] at the ends
    assert wilson(0, 4)["high"] == pytest.approx(0.48990, abs=1e-5)
    assert rec["method"] == "wilson" and rec["n"] == 10 and rec["level"] == 0.95


def test_bootstrap_is_deterministic_and_brackets_the_mean():
    hits = np.random.default_rng(1).random(200) < 0.7
    a, b = bootstrap_mean(hits), bootstrap_mean(hits)
    assert a == b and a["low"] < hits.mean() < a["high"] and a["n"] == 200 and a["resamples"] == 1000
    # the normal approximation of a proportion's interval: +-1.96 sqrt(p(1-p)/n) = +-0.064 here
    assert a["high"] - a["low"] == pytest.approx(2 * 1.96 * np.sqrt(hits.mean() * (1 - hits.mean()) / 200), rel=0.15)
    generic = bootstrap(200, lambda idx: float(hits[idx].mean()))
    assert generic["low"] == pytest.approx(a["low"], abs=0.02) and generic["high"] == pytest.approx(a["high"], abs=0.02)


def test_replicates_are_the_statistic_on_each_resample_and_the_same_resamples_for_the_same_count():
    values = np.random.default_rng(2).random(37)
    rec = bootstrap_mean(values, ids=[str(i) for i in range(37)])
    idx = np.random.default_rng(0).integers(0, 37, size=(1000, 37))  # the documented draw: (seed, n) only
    expected = values[idx].mean(1)
    assert np.allclose(decode_replicates(rec["replicates"]), expected, atol=1e-6)  # float32 storage
    assert rec["low"] == np.percentile(expected, 2.5) and rec["high"] == np.percentile(expected, 97.5)
    generic = bootstrap(37, lambda i: float(values[i].mean()), ids=[str(i) for i in range(37)])
    assert generic["replicates"] == rec["replicates"] and generic["samples"] == rec["samples"]
    assert bootstrap_mean(values, ids=[str(i) for i in range(1, 38)])["samples"] != rec["samples"]
    with pytest.raises(ValueError):
        decode_replicates("AAA=")  # 2 bytes: not float32


def test_success_interval_is_wilson_with_replicates_over_the_episodes():
    outcomes = [True] * 5 + [False] * 11
    rec = success_interval(outcomes, ids=[f"pick:{s}" for s in range(16)])
    assert {k: rec[k] for k in ("low", "high", "method", "n")} == {
        k: wilson(5, 16)[k] for k in ("low", "high", "method", "n")
    }
    reps = decode_replicates(rec["replicates"])
    assert len(reps) == 1000 and abs(reps.mean() - 5 / 16) < 0.01 and set(np.round(reps * 16, 3)) <= set(range(17))


def test_empty_samples_give_no_interval():
    rec = bootstrap_mean(np.array([]))
    assert rec["n"] == 0 and np.isnan(rec["low"]) and np.isnan(rec["high"])
