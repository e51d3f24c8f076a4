"""Distributed runs on CPU (gloo, 2 ranks under torchrun): sharded extraction equals one process bit for bit, a
rank killed half way resumes to the same arrays, and two independent runs on one cache share an entry safely.

Run: python -m pytest tests/test_dist.py -q
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from toto_eval.harness.cache import FILLED, SKIPPED

WORKER = Path(__file__).with_name("dist_worker.py")


def launch(nproc: int, *args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if nproc == 1:
        cmd = [sys.executable, str(WORKER), *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        cmd += [str(WORKER), *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]


def entry(out: Path) -> Path:
    (path,) = [p for p in (out / "cache").iterdir() if p.is_dir()]
    return path


def arrays(path: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.load(p) for p in sorted(path.glob("*.npy"))}


def test_two_ranks_equal_one_rank_bit_for_bit(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    finish(launch(1, "extract", str(one)))
    finish(launch(2, "extract", str(two)))
    a, b = entry(one), entry(two)
    assert a.name == b.name and (a / "COMPLETE").exists() and (b / "COMPLETE").exists()
    first, second = arrays(a), arrays(b)
    assert set(first) == {"filled", "pooled_L000", "pooled_L001", "pooled_L003", "tokens_L001"}
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    assert first["filled"][5] == SKIPPED and (np.delete(first["filled"], 5) == FILLED).all()
    assert len(list(b.glob("skipped-*.json"))) == 1  # only the rank that met the bad sample recorded it
    assert (two / "done").read_text() == "21\n"  # both ranks' rows counted


def test_killed_rank_resumes_only_its_missing_rows(tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = launch(2, "extract", str(killed), "0.4")
    deadline = time.time() + 300
    filled = None
    while time.time() < deadline:  # wait until some, not all, rows are on disk
        files = list((killed / "cache").glob("*/filled.npy")) if (killed / "cache").exists() else []
        if files and 4 <= (np.load(files[0]) == FILLED).sum() < 15:
            filled = files[0]
            break
        time.sleep(0.05)
    assert filled is not None, "extraction never got half way"
    os.kill(int((killed / "pid.1").read_text()), signal.SIGKILL)
    proc.communicate(timeout=300)
    assert proc.returncode != 0 and not (filled.parent / "COMPLETE").exists()
    before = int((np.load(filled) == FILLED).sum())
    finish(launch(2, "extract", str(killed)))
    assert int((killed / "done").read_text()) == 21 - before  # only the rows not on disk were computed again
    finish(launch(1, "extract", str(clean)))
    for name, value in arrays(entry(clean)).items():
        np.testing.assert_array_equal(value, arrays(entry(killed))[name], err_msg=name)


@pytest.mark.slow  # tests/test_faults.py and test_concurrency.py keep quick forms in the default suite
def test_two_independent_runs_on_one_cache_share_an_entry(tmp_path):
    shared = tmp_path / "shared"
    first, second = launch(1, "extract", str(shared), "0.05"), launch(1, "extract", str(shared), "0.05")
    finish(first)
    finish(second)
    clean = tmp_path / "clean"
    finish(launch(1, "extract", str(clean)))
    for name, value in arrays(entry(clean)).items():
        np.testing.assert_array_equal(value, arrays(entry(shared))[name], err_msg=name)
