"""`bench/paired.py` as a user runs it: the paired difference of two models per task, and with `--each` one
comparison per results folder (one per probe seed), the count of runs whose paired interval excludes 0 and the
interval over runs and samples.

Run: python -m pytest tests/test_bench_paired.py -q
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from toto_eval.harness.intervals import bootstrap_mean

ROOT = Path(__file__).resolve().parents[1]


def write(root: Path, backbone: str, hits: np.ndarray) -> None:
    """An imagenet_probe result scored on 200 shared val samples, with its bootstrap replicates."""
    ids = [f"val/{i}" for i in range(len(hits))]
    doc = {
        "backbone": backbone,
        "checkpoint": "builtin",
        "task": "imagenet_probe",
        "task_version": "1",
        "status": "ok",
        "main_metric": "top1",
        "main_score": float(hits.mean()),
        "metrics": {"top1": float(hits.mean())},
        "intervals": {"top1": bootstrap_mean(hits, ids=ids)},
        "num_params": 1,
        "num_layers": 1,
        "provenance": {"finished": "2026-01-01T00:00:00+0000"},
    }
    path = root / backbone / "builtin" / "imagenet_probe.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(doc))


def paired(*args: str) -> list[str]:
    cmd = [sys.executable, str(ROOT / "bench" / "paired.py"), *args, "--a", "a", "--b", "b"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return done.stdout.splitlines()


def test_each_compares_within_every_folder_and_counts_the_runs_that_exclude_zero(tmp_path):
    """Run 1: b misses 12 of a's 200 hits (-6 points; b never beats a on a resample: paired). Run 2: b equals a
    (exactly 0 on every resample, not paired)."""
    hits = (np.random.default_rng(1).random(200) < 0.6).astype(float)
    worse = hits.copy()
    worse[np.flatnonzero(hits)[:12]] = 0.0
    for run, b_hits in (("seed1", worse), ("seed2", hits)):
        write(tmp_path / run, "a", hits)
        write(tmp_path / run, "b", b_hits)

    rows = paired(str(tmp_path / "seed1"), str(tmp_path / "seed2"), "--each")
    per_run = [r for r in rows if r.startswith("imagenet_probe") and "seed" in r]
    assert len(per_run) == 2
    assert "+6.0 [" in per_run[0] and per_run[0].split()[-2:] == ["yes", str(tmp_path / "seed1")]
    assert "+0.0 [+0.0, +0.0]" in per_run[1] and per_run[1].split()[-2:] == ["no", str(tmp_path / "seed2")]
    *counts, low, high = rows[-1].split()
    assert counts == ["imagenet_probe", "2", "1", "0", "+3.0", "+0.0", "+6.0"]
    # over runs and samples: a quarter of the resamples draw seed2 twice (exactly 0), a quarter seed1 twice
    seed1_high = float(per_run[0].split("[")[-1].split("]")[0].split(",")[1])
    assert low == "[+0.0," and 6.0 < float(high.rstrip("]")) <= seed1_high

    pooled = paired(str(tmp_path / "seed1"))  # without --each: one comparison, no summary
    assert len(pooled) == 2 and pooled[1].split()[-2:] == ["no", "yes"]
