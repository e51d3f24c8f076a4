"""Every mini task must tell a learned model from noise: its positive control beats its floors beyond the intervals.

Run: python -m pytest tests/test_mini_range.py -q            (the fast checks)
     python -m pytest tests/test_mini_range.py -q -m slow    (the ranges themselves: many minutes on 2 cores)

The slow tests run the task exactly as `toto-eval run` does (through `bench/mini_range.py`, which also captures
per-sample predictions) on the untrained `toto_tiny` twin and on the task's supervised control, and require the
control's 95% bootstrap interval to lie entirely above the floor's. The fast checks cover the interval helpers and
the split hygiene the controls and pre-training rely on (train and val never share a sample).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "mini_range.py"


def _bench():
    spec = importlib.util.spec_from_file_location("mini_range", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["mini_range"] = module
    spec.loader.exec_module(module)
    return module


def test_wilson_and_bootstrap_intervals():
    bench = _bench()
    lo, hi = bench.wilson(8, 10)
    assert abs(lo - 0.4902) < 1e-3 and abs(hi - 0.9433) < 1e-3  # the textbook values for 8/10
    assert bench.wilson(0, 4)[0] == 0.0 and bench.wilson(4, 4)[1] == 1.0
    values = (np.arange(400) < 100).astype(float)  # p = 0.25, n = 400: normal interval +-0.042
    lo, hi = bench.bootstrap(values)
    assert lo < 0.25 < hi and 0.07 < hi - lo < 0.1


def test_davis_mini_has_disjoint_train_and_val_sequences(tmp_path):
    from toto_eval.tasks.davis.data import read_sequence_list
    from toto_eval.tasks.davis.mini import SPLITS, make_mini

    make_mini(tmp_path)
    val, train = read_sequence_list(tmp_path, "val"), read_sequence_list(tmp_path, "train")
    assert (len(val), len(train)) == (SPLITS["val"], SPLITS["train"]) and not set(val) & set(train)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task", "control"),
    [
        ("imagenet_probe", "control_imagenet"),
        ("k400_probe", "control_k400"),
        ("cater", "control_cater"),
        ("davis", "control_davis"),
        ("ego4d_sta", "ceiling"),  # perfect verb and TTC heads on the task's detections (no network)
    ],
)
def test_control_is_clearly_above_the_random_init_floor(task, control, tmp_path_factory):
    bench = _bench()
    cache = tmp_path_factory.getbasetemp() / "mini-range-cache"  # shared: each mini dataset is generated once
    results = tmp_path_factory.mktemp("results")
    floor = bench.measure(task, "toto_tiny:random", cache, results, {})
    top = bench.measure(task, control, cache, results, {})
    assert "error" not in floor and "error" not in top
    assert top["ci95"][0] > floor["ci95"][1], f"{task}: control {top} not clearly above floor {floor}"
