"""`toto-eval run --jobs N`: tasks in worker processes give the results a serial run gives, written the same way;
`--include` files reach the workers; a worker that dies fails its task, not the run.

Run: python -m pytest tests/test_parallel.py -q
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toto_eval.harness.parallel import choose_jobs

TWO_CPUS = sorted(os.sched_getaffinity(0))[:2] if hasattr(os, "sched_getaffinity") else []


def run(*args: str, cwd: Path, threads: str | None = None) -> subprocess.CompletedProcess:
    """`toto-eval run ...` on two CPUs (a parallel run gives each of 2 workers one thread)."""
    env = {**os.environ, **({"OMP_NUM_THREADS": threads} if threads else {})}
    cmd = [sys.executable, "-m", "toto_eval.harness.cli", "run", "--no-progress", *args]
    pin = (lambda: os.sched_setaffinity(0, TWO_CPUS)) if TWO_CPUS else None
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, preexec_fn=pin, timeout=900)


def scores(folder: Path) -> dict[str, tuple]:
    """task -> (metrics, per-layer rows without their artefact paths) of every result under `folder`."""
    out = {}
    for path in folder.rglob("*.json"):
        result = json.loads(path.read_text())
        rows = [{k: v for k, v in row.items() if k != "predictions"} for row in result["per_layer"]]
        out[result["task"]] = (result["status"], result["metrics"], rows)
    return out


def test_jobs_below_one_is_a_one_line_error(tmp_path: Path) -> None:
    done = run("--backbone", "toto_test", "--random-init", "--tasks", "davis", "--jobs", "0", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr == "toto-eval: error: --jobs 0: must be 1 or more (tasks run at once)\n"


def test_choose_jobs() -> None:
    assert choose_jobs(4, 6, "cuda", False) == 1 and choose_jobs(4, 6, "cpu", True) == 1  # GPU, torchrun: serial
    assert choose_jobs(8, 3, "cpu", False) == 3 and choose_jobs(2, 6, "cpu", False) == 2
    assert choose_jobs(None, 6, "cpu", False) == min(6, len(os.sched_getaffinity(0)))


@pytest.mark.skipif(len(TWO_CPUS) < 2, reason="needs two CPUs")
def test_parallel_run_equals_serial_run(tmp_path: Path, mini_cache: Path) -> None:
    args = ["--backbone", "toto_test", "--random-init", "--tasks", "imagenet_probe,davis", "--limit", "60"]
    args += ["--layers", "-1", "--set", "imagenet_probe.probe.epochs=1"]
    parallel = run(*args, "--jobs", "2", "--cache-dir", str(mini_cache), "--results-dir", "par", "-v", cwd=tmp_path)
    assert parallel.returncode == 0, parallel.stderr
    assert "2 tasks, 2 at a time (--jobs), each on 1 thread(s)" in parallel.stderr
    assert "davis: cache" in parallel.stderr  # a worker's log line, named by its task
    fresh = tmp_path / "cache"  # the same mini datasets, features computed again
    fresh.mkdir()
    (fresh / "mini").symlink_to(mini_cache / "mini")
    serial = run(*args, "--jobs", "1", "--cache-dir", str(fresh), "--results-dir", "ser", cwd=tmp_path, threads="1")
    assert serial.returncode == 0, serial.stderr
    par, ser = scores(tmp_path / "par"), scores(tmp_path / "ser")
    assert set(par) == {"imagenet_probe", "davis"} and par == ser
    names = [line.split()[0] for line in parallel.stdout.splitlines() if line.strip()]
    order = [name for name in names if name in ("imagenet_probe", "davis")]
    assert order == ["imagenet_probe", "davis"]  # the summary keeps the order asked for, not the order of finishing


PLUGIN = """
import os, time
from dataclasses import dataclass
from toto_eval.harness.task import Task, TaskOutput, register


@register("sleepy", tags=("test",), main_metric="score")
class Sleepy(Task):
    @dataclass(frozen=True)
    class Config:
        pass

    def evaluate(self, backbone, ctx):
        return TaskOutput(metrics={"score": float(os.getpid() != int(os.environ["PARENT_PID"]))})


@register("stuck", tags=("test",), main_metric="score")
class Stuck(Task):
    @dataclass(frozen=True)
    class Config:
        pass

    def evaluate(self, backbone, ctx):
        time.sleep(600)


@register("crashing", tags=("test",), main_metric="score")
class Crashing(Task):
    @dataclass(frozen=True)
    class Config:
        pass

    def evaluate(self, backbone, ctx):
        time.sleep(3)  # after the other task has finished
        os._exit(3)  # as if killed (out of memory)
"""


def test_include_files_reach_workers_and_a_dead_worker_fails_only_its_task(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(PLUGIN)
    os.environ["PARENT_PID"] = "0"  # replaced below by the CLI process's own id
    cmd = f"import os, runpy, sys; os.environ['PARENT_PID'] = str(os.getpid()); sys.argv = {['toto-eval', 'run']!r}"
    argv = ["--backbone", "toto_test", "--random-init", "--tasks", "sleepy,crashing", "--include", str(plugin)]
    argv += ["--jobs", "2", "--cache-dir", str(tmp_path / "cache"), "--results-dir", "out", "--no-progress"]
    script = f"{cmd} + {argv!r}; runpy.run_module('toto_eval.harness.cli', run_name='__main__')"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 1, done.stderr  # a failed task
    found = scores(tmp_path / "out")
    assert found["sleepy"] == ("ok", {"score": 1.0}, [])  # ran in a worker process, not in the CLI's
    assert found["crashing"][0] == "failed"
    error = json.loads(next((tmp_path / "out").rglob("crashing.json")).read_text())["error"]
    assert "worker process died" in error


def test_ctrl_c_stops_every_worker_quietly_and_keeps_finished_results(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(PLUGIN)
    argv = ["--backbone", "toto_test", "--random-init", "--tasks", "sleepy,stuck", "--include", str(plugin)]
    argv += ["--jobs", "2", "--cache-dir", str(tmp_path / "cache"), "--results-dir", "out", "--no-progress"]
    cmd = [sys.executable, "-m", "toto_eval.harness.cli", "run", *argv]
    env = {**os.environ, "PARENT_PID": "0"}
    interactive = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731  (a background job ignores it)
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=interactive
    )
    deadline = time.monotonic() + 120
    while not list((tmp_path / "out").rglob("sleepy.json")) and time.monotonic() < deadline:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.count("interrupted") == 1
    assert json.loads(next((tmp_path / "out").rglob("sleepy.json")).read_text())["status"] == "ok"
