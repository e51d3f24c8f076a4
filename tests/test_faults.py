"""Fault injection: SIGKILL at seeded points of every long job, then a restart; the restarted job's results equal an
uninterrupted run's, and no temporary file is left behind.

"Temporary file" is `common.files.temporary_files`: any hidden name (atomic-write temporaries `.x.tmp-<host>-<pid>`,
generation folders `.<dataset>-XXXXXXXX`, `.ep_00003.<pid>.npz`) except lock files and the `.complete` /
`.manifest.json` of a finished mini dataset, and any name ending in `.tmp` or holding `.tmp.`/`.tmp-`.

Kill points come two ways:
- hooks (`common.faults.point`) in the code this suite guards: the feature cache (`cache.create`, `cache.batch`,
  `cache.flush`, `cache.finish`), every atomic write between its temporary and the rename (`files.atomic_write`),
  probe checkpoints and the finished grid (`probe.epoch`, `probe.save`), mini generation (`mini.generated`,
  `mini.replace`). A clean run with TOTO_EVAL_FAULT_LOG lists every (point, n-th hit) it reaches; a seeded sample
  is tried, one kill each;
- seeded random delays from outside, where the work is in code owned elsewhere (a mini generator's loop, robot
  demo recording, pre-training) and to land between hooks: SIGKILL after a seeded uniform time between the
  command's start-up and the clean run's wall time.

The default suite runs a quick seeded sample in forked children (no interpreter start-up): extraction, cached
probe training and mini generation (through the real atomic generation, with a small stand-in generator).
`-m slow` drills every kind through its command line: extraction, `toto-eval run --probe-mode cached|online`,
the imagenet mini generator, `toto-eval robot demos`, `toto-pretrain train`. Each test prints its counts (points
tried, survived, results identical, temporary files left; `-s` shows them) and appends them as a JSON line to
$TOTO_EVAL_FAULT_REPORT when set.

Run: python -m pytest tests/test_faults.py -q            (quick sample)
     python -m pytest tests/test_faults.py -q -m slow -s  (every kind)
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytest

from toto_eval.common import faults
from toto_eval.common.checksums import file_digest, folder_manifest
from toto_eval.common.files import temporary_files
from toto_eval.harness.cache_entry import Entry

SEED = 1717
KILLED = -signal.SIGKILL


@dataclass
class Tally:
    kind: str
    method: str
    tried: int = 0  # kills that landed in a running job
    survived: int = 0  # restarts that finished (exit 0)
    identical: int = 0  # restarts whose results equal the uninterrupted run's
    temporaries: int = 0  # temporary files left after the restart
    missed: int = 0  # hook not reached, or the job finished before the delay ran out

    def report(self) -> None:
        line = json.dumps(asdict(self))
        print(line)
        if os.environ.get("TOTO_EVAL_FAULT_REPORT"):
            with open(os.environ["TOTO_EVAL_FAULT_REPORT"], "a") as f:
                f.write(line + "\n")

    def check(self, left: list[Path]) -> None:
        assert self.tried > 0 and self.survived == self.tried and self.identical == self.tried, asdict(self)
        assert self.temporaries == 0, left


def hook_points(log: Path) -> list[tuple[str, int]]:
    """Every (point, n-th hit) a clean run reached."""
    counts = Counter(log.read_text().split()) if log.exists() else Counter()
    return sorted((name, n) for name, count in counts.items() for n in range(1, count + 1))


def sample(points: list, k: int, seed: int = SEED) -> list:
    return sorted(random.Random(seed).sample(points, min(k, len(points))))


def tensors(path: Path) -> dict[str, str]:
    """name -> digest of each tensor of a safetensors file (its bytes are not comparable: safetensors writes the
    metadata map in an order that changes from one process to the next)."""
    from safetensors.numpy import load_file

    from toto_eval.common.checksums import digest

    return {name: f"{a.dtype}{a.shape}:{digest(np.ascontiguousarray(a))}" for name, a in load_file(str(path)).items()}


def _safe(outcome: Callable[[Path], object], folder: Path) -> object:
    try:
        return outcome(folder)
    except Exception as err:  # a restart that left no readable result: counted as not identical
        return f"unreadable: {err}"


def _after_restart(tally: Tally, folder: Path, code: int, outcome, expected, left: list[Path]) -> None:
    tally.survived += code == 0
    same = _safe(outcome, folder) == expected
    tally.identical += same
    if not same:
        print(f"{tally.kind}: the restarted run in {folder} differs from the uninterrupted one")
    temps = temporary_files(folder)
    tally.temporaries += len(temps)
    left += temps


# --- quick: forked children ------------------------------------------------------------------------------------


def fork(work: Callable[[], None], spec: str = "", log: Path | None = None) -> int:
    """Run `work()` in a forked child with the fault points armed; its exit code (-9 when killed)."""
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        code = 1
        try:
            faults.arm(spec, str(log) if log else None)
            work()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def drill_forked(kind: str, tmp_path: Path, work: Callable[[Path], None], outcome, k: int) -> tuple[Tally, list]:
    log = tmp_path / "hits.txt"
    assert fork(lambda: work(tmp_path / "clean"), log=log) == 0
    expected = outcome(tmp_path / "clean")
    tally, left = Tally(kind, "hooks, forked"), []
    for i, (name, n) in enumerate(sample(hook_points(log), k)):
        folder = tmp_path / f"kill{i}"
        if fork(lambda folder=folder: work(folder), f"{name}:{n}") != KILLED:
            tally.missed += 1
            continue
        tally.tried += 1
        _after_restart(tally, folder, fork(lambda folder=folder: work(folder)), outcome, expected, left)
    return tally, left


def _entry_outcome(features: Path) -> dict:
    """Every array, the fill state and the skipped record of the one entry under `features`; it verifies clean."""
    (entry,) = [p for p in features.iterdir() if p.is_dir()]
    assert Entry(entry, {}, []).verify() == []
    record = json.loads((entry / "COMPLETE").read_text())
    files = {p.name: file_digest(p) for p in sorted(entry.glob("*.npy"))}
    return {"files": files, "skipped": json.loads((entry / "skipped.json").read_text()), "sums": record["arrays"]}


def test_quick_extraction(tmp_path, monkeypatch):
    import toto_eval.harness.cache as cache_module
    from toto_eval.harness.cache import FeatureCache

    from .conftest import ArraySource, CountingBackbone

    monkeypatch.setattr(cache_module, "FLUSH_SECONDS", 0)  # flush every batch: kills find partial progress
    rng = np.random.default_rng(0)
    source = ArraySource(rng.normal(size=(22, 1, 1, 3, 8, 8)).astype(np.float32), np.zeros(22), bad=(5,))
    backbone = CountingBackbone()

    def work(folder: Path) -> None:
        FeatureCache(folder / "features").extract(backbone, source, layers=[0, 2], token_layers=[2], batch_size=4)

    tally, left = drill_forked("extraction", tmp_path, work, lambda f: _entry_outcome(f / "features"), k=6)
    check_all([tally], left)


def _probe_outcome(folder: Path) -> dict:
    state = folder / "probes" / "grid"
    with np.load(state / "grid.npz") as z:
        probs = {k: z[k].tolist() for k in z.files}
    assert not (state / "epoch.pt").exists()
    return {"grid": json.loads((state / "grid.json").read_text()), "heads": tensors(state / "heads.safetensors"),
            "probs": probs}  # fmt: skip


def test_quick_cached_probe_training(tmp_path):
    from toto_eval.harness.probe_grid import CachedFeed, fit_probe_grid
    from toto_eval.harness.probes import ProbeConfig

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 90)
    tokens = (rng.normal(size=(90, 1, 4, 8)) + labels[:, None, None, None]).astype(np.float16)
    cfg = ProbeConfig(lrs=(1e-3, 1e-2), epochs=4, batch_size=16)

    def work(folder: Path) -> None:
        train = CachedFeed({0: tokens[:60], 1: tokens[:60] * 2}, np.arange(60), labels[:60], 2**30)
        test = CachedFeed({0: tokens[60:], 1: tokens[60:] * 2}, np.arange(30), labels[60:], 2**30)
        fit_probe_grid(train, test, 3, cfg, num_heads=2, state_dir=folder / "probes" / "grid")

    tally, left = drill_forked("cached probe training", tmp_path, work, _probe_outcome, k=5)
    check_all([tally], left)


def test_quick_mini_generation(tmp_path):
    from toto_eval.harness.cache import FeatureCache
    from toto_eval.harness.task import RunContext

    def generator(root: Path) -> None:  # a stand-in: ten files, a fault point after each
        for i in range(10):
            (root / f"class{i % 3}").mkdir(exist_ok=True)
            (root / f"class{i % 3}" / f"{i}.bin").write_bytes(bytes([i]) * (100 + i))
            faults.point("test.generator")

    def work(folder: Path) -> None:
        ctx = RunContext(cache=FeatureCache(folder / "features"), data_root=None, mini_root=folder / "mini")
        ctx.dataset_root("toy", generator, "1")

    def outcome(folder: Path) -> dict:
        return folder_manifest(folder / "mini" / "toy")

    tally, left = drill_forked("mini generation (stand-in generator)", tmp_path, work, outcome, k=5)
    check_all([tally], left)


# --- slow: every kind through its command line ----------------------------------------------------------------

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
TOTO_EVAL = [sys.executable, "-m", "toto_eval.harness.cli"]


def launch(cmd: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(cmd, env={**ENV, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip


def finish(proc: subprocess.Popen, timeout: float = 900) -> int:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    if proc.returncode not in (0, KILLED):
        print(err[-2000:], file=sys.stderr)
    return proc.returncode


@dataclass
class Job:
    """One kind of long job as the slow drills run it."""

    kind: str
    command: Callable[[Path], list[str]]
    outcome: Callable[[Path], object]
    prepare: Callable[[Path], None] = lambda folder: folder.mkdir(parents=True)
    startup: str = "import toto_eval.harness.cli"  # what a run imports before it does any work


def drill(job: Job, tmp_path: Path, hooks: int, delays: int) -> tuple[list[Tally], list]:
    """`hooks` seeded hook points and `delays` seeded random-time kills, each followed by a restart; one tally per
    method."""
    clean, log = tmp_path / "clean", tmp_path / "hits.txt"
    job.prepare(clean)
    t0 = time.monotonic()
    assert finish(launch(job.command(clean), {faults.LOG_ENV: str(log)})) == 0
    wall = time.monotonic() - t0
    expected = job.outcome(clean)
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", job.startup], env=ENV, check=True, capture_output=True)
    startup = min(time.monotonic() - t0, 0.8 * wall)
    by_hook, by_delay, left, rng = Tally(job.kind, "hooks"), Tally(job.kind, "random delays"), [], random.Random(SEED)
    for i, (name, n) in enumerate(sample(hook_points(log), hooks)):
        folder = tmp_path / f"hook{i}"
        job.prepare(folder)
        if finish(launch(job.command(folder), {faults.ENV: f"{name}:{n}"})) != KILLED:
            by_hook.missed += 1
            continue
        by_hook.tried += 1
        _after_restart(by_hook, folder, finish(launch(job.command(folder))), job.outcome, expected, left)
    for i in range(delays):
        folder = tmp_path / f"delay{i}"
        job.prepare(folder)
        proc = launch(job.command(folder))
        time.sleep(rng.uniform(startup, wall))
        if proc.poll() is not None:
            finish(proc)
            by_delay.missed += 1
            continue
        os.killpg(proc.pid, signal.SIGKILL)
        finish(proc)
        by_delay.tried += 1
        _after_restart(by_delay, folder, finish(launch(job.command(folder))), job.outcome, expected, left)
    return [t for t in (by_hook, by_delay) if t.tried or t.missed], left


def check_all(tallies: list[Tally], left: list[Path]) -> None:
    for tally in tallies:
        tally.report()
    for tally in tallies:
        tally.check(left)


@pytest.mark.slow
def test_slow_extraction(tmp_path):
    worker = Path(__file__).with_name("dist_worker.py")
    job = Job(
        "extraction",
        lambda folder: [sys.executable, str(worker), "extract", str(folder), "0.1"],  # 0.1 s per sample
        lambda folder: _entry_outcome(folder / "cache"),
        startup="import toto_eval.harness.evaluate as e; e.create_backbone('toto_test')",
    )
    check_all(*drill(job, tmp_path, hooks=12, delays=4))


PROBE_RUN = ["run", "--backbone", "toto_test", "--tasks", "imagenet_probe", "--limit", "150", "--layers", "1,3",
             "--set", "imagenet_probe.probe.epochs=3", "--set", "imagenet_probe.probe.lrs=[1e-3,1e-2]",
             "--no-progress"]  # fmt: skip


def _probe_job(mode: str, tmp_path: Path, session: Path) -> Job:
    """`toto-eval run` whose features are already cached (copied in): what is left is probe training."""
    (session / "mini").mkdir(exist_ok=True)

    def command(folder: Path) -> list[str]:
        return [*TOTO_EVAL, *PROBE_RUN, "--probe-mode", mode, "--cache-dir", str(folder / "cache"),
                "--results-dir", str(folder / "results")]  # fmt: skip

    warm = tmp_path / "warm"
    (warm / "cache").mkdir(parents=True)
    (warm / "cache" / "mini").symlink_to(session / "mini", target_is_directory=True)
    assert finish(launch(command(warm))) == 0
    shutil.rmtree(warm / "cache" / "probes")

    def prepare(folder: Path) -> None:
        (folder / "cache").mkdir(parents=True)
        (folder / "cache" / "mini").symlink_to(session / "mini", target_is_directory=True)
        shutil.copytree(warm / "cache" / "features", folder / "cache" / "features")

    def outcome(folder: Path) -> dict:
        (path,) = (folder / "results").glob("*/*/imagenet_probe.json")
        result = json.loads(path.read_text())
        (heads,) = (folder / "cache" / "probes").glob("*/heads.safetensors")
        keep = ("status", "metrics", "per_layer", "selected", "intervals", "main_score")
        return {**{k: result[k] for k in keep}, "heads": tensors(heads)}

    return Job(f"{mode} probe training", command, outcome, prepare)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["cached", "online"])
def test_slow_probe_training(tmp_path, mini_cache, mode):
    check_all(*drill(_probe_job(mode, tmp_path, mini_cache), tmp_path, hooks=6, delays=3))


GENERATE = """
import sys
from pathlib import Path
from toto_eval.harness.cache import FeatureCache
from toto_eval.harness.task import RunContext
from toto_eval.tasks.imagenet_probe.mini import VERSION, make_mini
root = Path(sys.argv[1])
RunContext(cache=FeatureCache(root / "features"), data_root=None, mini_root=root / "mini").dataset_root(
    "imagenet", make_mini, VERSION)
"""


@pytest.mark.slow
def test_slow_mini_generation(tmp_path):
    job = Job(
        "mini generation (imagenet)",
        lambda folder: [sys.executable, "-c", GENERATE, str(folder)],
        lambda folder: folder_manifest(folder / "mini" / "imagenet"),
        startup="import toto_eval.harness.task, toto_eval.tasks.imagenet_probe.mini",
    )
    check_all(*drill(job, tmp_path, hooks=3, delays=4))


def _demos_outcome(folder: Path) -> dict:
    (demo,) = [p for p in (folder / "demos").iterdir() if p.is_dir()]
    arrays = {}
    for path in sorted(demo.glob("ep_*.npz")):
        with np.load(path) as z:
            arrays[path.name] = {k: file_digest_of(z[k]) for k in z.files}
    return {"manifest": json.loads((demo / "manifest.json").read_text()), "arrays": arrays}


def file_digest_of(array: np.ndarray) -> str:
    from toto_eval.common.checksums import digest

    return f"{array.dtype}{array.shape}:{digest(np.ascontiguousarray(array))}"


@pytest.mark.slow
def test_slow_robot_demos(tmp_path):
    demos = ["robot", "demos", "--tasks", "franka_pick", "--demos", "3", "--image-size", "64"]
    job = Job(
        "robot demo recording",
        lambda folder: [*TOTO_EVAL, *demos, "--out", str(folder / "demos")],
        _demos_outcome,
        startup="import toto_eval.harness.cli, toto_eval.tasks.robot.demos",
    )
    check_all(*drill(job, tmp_path, hooks=0, delays=6))


def test_robot_demos_remove_a_killed_recordings_temporaries(tmp_path):
    from toto_eval.tasks.robot.demos import demo_dir, record_demos
    from toto_eval.tasks.robot.envs import EnvConfig

    cfg = EnvConfig(image_size=64)
    folder = demo_dir(tmp_path, "franka_pick", cfg)
    folder.mkdir(parents=True)
    gone = subprocess.Popen(["true"])
    gone.wait()  # a process id that no longer runs: what a killed recorder leaves
    host = socket.gethostname()  # common.files' temporaries: `.<name>.tmp-<host>-<pid>`
    (folder / f".ep_00000.npz.tmp-{host}-{gone.pid}").write_bytes(b"half an episode")
    (folder / f".manifest.json.tmp-{host}-{gone.pid}").write_text("{")
    record_demos(tmp_path, "franka_pick", cfg, 0)
    assert temporary_files(tmp_path) == []


@pytest.mark.slow
def test_slow_pretraining(tmp_path):
    from toto_eval.pretrain import train

    from .test_pretrain import golden_config, make_shards

    shards = make_shards(tmp_path / "data")

    def command(folder: Path) -> list[str]:
        cfg = golden_config(shards, folder / "run")
        cmd = [sys.executable, "-m", "toto_eval.pretrain.cli", "train"]
        for key, value in cfg.__dict__.items():
            cmd += [f"--{key.replace('_', '-')}", str(value)]
        return cmd

    def outcome(folder: Path) -> dict:
        last = folder / "run" / "checkpoints" / (folder / "run" / "latest").read_text().strip()
        return {"losses": train.read_losses(folder / "run"), "weights": tensors(last / "model.safetensors")}

    job = Job("pre-training", command, outcome, startup="import toto_eval.pretrain.cli, toto_eval.pretrain.train")
    check_all(*drill(job, tmp_path, hooks=0, delays=6))
