"""Two processes on one cache directory and one results directory at once: the same task twice, or two different
tasks, give the results of sequential runs, no corrupted entry and no temporary file. Wherever two writers could
meet there is a lock: a cache entry (creation, completion, check), a probe state folder (one run trains, the other
waits and reads the grid back), a mini dataset (generated once), a result file (atomic rename under its lock).

Run: python -m pytest tests/test_concurrency.py -q            (slow: -m slow adds two different tasks at once)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from toto_eval.common import faults
from toto_eval.common.files import temporary_files
from toto_eval.harness.cache_entry import Entry

from .test_faults import fork

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _together(*works) -> list[int]:
    """Start every `work` in its own forked child at once; their exit codes."""
    pids = []
    for work in works:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                faults.arm("", os.environ.get(faults.LOG_ENV))
                work()
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    return [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]


def test_one_probe_grid_is_trained_once(tmp_path, monkeypatch):
    from toto_eval.harness.probe_grid import CachedFeed, fit_probe_grid
    from toto_eval.harness.probes import ProbeConfig

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 90)
    tokens = (rng.normal(size=(90, 1, 4, 8)) + labels[:, None, None, None]).astype(np.float16)
    cfg = ProbeConfig(lrs=(1e-3, 1e-2), epochs=3, batch_size=16)
    state = tmp_path / "probes" / "grid"

    def work(out: Path) -> None:
        train = CachedFeed({0: tokens[:60]}, np.arange(60), labels[:60], 2**30)
        test = CachedFeed({0: tokens[60:]}, np.arange(30), labels[60:], 2**30)
        result = fit_probe_grid(train, test, 3, cfg, num_heads=2, state_dir=state)
        out.write_text(json.dumps(result.heads))

    log = tmp_path / "hits.txt"
    monkeypatch.setenv(faults.LOG_ENV, str(log))
    assert _together(lambda: work(tmp_path / "a.json"), lambda: work(tmp_path / "b.json")) == [0, 0]
    assert log.read_text().split().count("probe.epoch") == 3  # 3 epochs in all: one process trained
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()
    monkeypatch.delenv(faults.LOG_ENV)
    assert fork(lambda: work(tmp_path / "c.json")) == 0  # sequential, on a fresh folder: the same heads
    assert (tmp_path / "c.json").read_text() == (tmp_path / "a.json").read_text()
    assert temporary_files(tmp_path) == []


def test_one_mini_dataset_is_generated_once(tmp_path):
    from toto_eval.harness.cache import FeatureCache
    from toto_eval.harness.task import RunContext

    calls = tmp_path / "calls.txt"

    def generator(root: Path) -> None:
        with open(calls, "a") as f:
            f.write("generated\n")
        time.sleep(0.5)  # long enough for the other process to arrive and wait
        (root / "a.bin").write_bytes(b"a" * 100)

    def work() -> None:
        ctx = RunContext(cache=FeatureCache(tmp_path / "features"), data_root=None, mini_root=tmp_path / "mini")
        assert ctx.dataset_root("toy", generator, "1").joinpath("a.bin").read_bytes() == b"a" * 100

    assert _together(work, work, work) == [0, 0, 0]
    assert calls.read_text() == "generated\n" and temporary_files(tmp_path) == []


def test_one_cache_entry_filled_by_two_processes(tmp_path, monkeypatch):
    import toto_eval.harness.cache as cache_module
    from toto_eval.harness.cache import FeatureCache

    from .conftest import ArraySource, CountingBackbone

    monkeypatch.setattr(cache_module, "FLUSH_SECONDS", 0)
    rng = np.random.default_rng(1)
    source = ArraySource(rng.normal(size=(40, 1, 1, 3, 8, 8)).astype(np.float32), np.zeros(40), bad=(7,))

    def work(folder: Path) -> None:
        FeatureCache(folder).extract(CountingBackbone(), source, layers=[0, 1], token_layers=[1], batch_size=2)

    assert _together(lambda: work(tmp_path / "shared"), lambda: work(tmp_path / "shared")) == [0, 0]
    assert fork(lambda: work(tmp_path / "alone")) == 0
    (shared,), (alone,) = (tmp_path / "shared").glob("*/"), (tmp_path / "alone").glob("*/")
    assert Entry(shared, {}, []).verify() == []
    for name in ("pooled_L000.npy", "tokens_L001.npy", "filled.npy", "skipped.json"):
        assert (shared / name).read_bytes() == (alone / name).read_bytes(), name
    assert temporary_files(tmp_path) == []


# --- whole runs through the command line -------------------------------------------------------------------------

RUN = ["run", "--backbone", "toto_test", "--limit", "120", "--layers", "1,3", "--no-progress",
       "--probe-mode", "cached"]  # fmt: skip
TASKS = {
    "imagenet_probe": ["--set", "imagenet_probe.probe.epochs=2", "--set", "imagenet_probe.probe.lrs=[1e-3,1e-2]"],
    "k400_probe": ["--set", "k400_probe.probe.epochs=2", "--set", "k400_probe.probe.lrs=[1e-3,1e-2]"],
}


def _folder(path: Path, session: Path) -> Path:
    (path / "cache").mkdir(parents=True)
    (session / "mini").mkdir(exist_ok=True)
    (path / "cache" / "mini").symlink_to(session / "mini", target_is_directory=True)
    return path


def _launch(folder: Path, task: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "toto_eval.harness.cli", *RUN, "--tasks", task, *TASKS[task],
           "--cache-dir", str(folder / "cache"), "--results-dir", str(folder / "results")]  # fmt: skip
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _done(*procs: subprocess.Popen) -> None:
    for proc in procs:
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]


def _numbers(folder: Path, task: str) -> dict:
    from toto_eval.harness.results import read_result

    (path,) = (folder / "results").glob(f"*/*/{task}.json")
    result = read_result(path)  # checks its checksum
    return {"metrics": result.metrics, "per_layer": result.per_layer, "selected": result.selected,
            "intervals": result.intervals}  # fmt: skip


def _sound(folder: Path) -> None:
    verify = subprocess.run([sys.executable, "-m", "toto_eval.harness.cli", "cache", "verify", "--cache-dir",
                             str(folder / "cache")], env=ENV, capture_output=True, text=True)  # fmt: skip
    assert verify.returncode == 0 and "0 bad entries" in verify.stdout, verify.stdout
    assert temporary_files(folder) == []


def test_same_task_twice_at_once_equals_a_sequential_run(tmp_path, mini_cache):
    shared, alone = _folder(tmp_path / "shared", mini_cache), _folder(tmp_path / "alone", mini_cache)
    _done(_launch(alone, "imagenet_probe"))  # also makes sure the mini dataset exists
    _done(_launch(shared, "imagenet_probe"), _launch(shared, "imagenet_probe"))
    assert _numbers(shared, "imagenet_probe") == _numbers(alone, "imagenet_probe")
    _sound(shared)


@pytest.mark.slow
def test_two_tasks_at_once_equal_sequential_runs(tmp_path, mini_cache):
    shared, alone = _folder(tmp_path / "shared", mini_cache), _folder(tmp_path / "alone", mini_cache)
    for task in TASKS:
        _done(_launch(alone, task))
    _done(*(_launch(shared, task) for task in TASKS), _launch(shared, "imagenet_probe"))
    for task in TASKS:
        assert _numbers(shared, task) == _numbers(alone, task), task
    _sound(shared)
