"""A full disk during extraction, mini-dataset generation or result writing: one line on stderr, exit code 2, no
completion marker on partial data, nothing half-written left, and earlier results kept.

ENOSPC is injected in-process (the preallocation, the generator's writes, `fsync` of a result), and met for real on
a 1 MiB tmpfs mounted in a private mount namespace (`unshare -Urm`; skipped where that is not allowed), which also
shows why arrays are preallocated: without it, writing into a memory map on a full disk kills with SIGBUS.

Run: python -m pytest tests/test_disk_full.py -q
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from toto_eval.common import files
from toto_eval.common.files import DiskFullError, temporary_files
from toto_eval.harness.cache import FeatureCache
from toto_eval.harness.cli import main
from toto_eval.harness.task import RunContext

RUN = ["run", "--backbone", "toto_test", "--tasks", "imagenet_probe", "--limit", "60", "--layers", "-1",
       "--set", "imagenet_probe.probe.epochs=1", "--no-progress", "--probe-mode", "cached"]  # fmt: skip


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _cache(tmp_path: Path, name: str, session: Path, share_mini: bool = True) -> Path:
    cache = tmp_path / name
    cache.mkdir()
    if share_mini:  # the session's mini datasets, generated once
        (session / "mini").mkdir(exist_ok=True)
        (cache / "mini").symlink_to(session / "mini", target_is_directory=True)
    return cache


def _run(cache: Path, results: Path) -> int:
    return main([*RUN, "--cache-dir", str(cache), "--results-dir", str(results)])


@pytest.fixture
def earlier(tmp_path, mini_cache) -> tuple[Path, Path, bytes]:
    """A finished run: (its cache, the result file, the result's bytes)."""
    cache = _cache(tmp_path, "warm", mini_cache)
    assert _run(cache, tmp_path / "results") == 0
    (path,) = (tmp_path / "results").glob("*/*/imagenet_probe.json")
    return cache, path, path.read_bytes()


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("toto-eval: error:")]
    assert len(lines) == 1, err
    assert files.DISK_FULL in lines[0], lines[0]
    return lines[0]


def test_extraction_on_a_full_disk(tmp_path, mini_cache, earlier, monkeypatch, capsys):
    _, result, before = earlier
    capsys.readouterr()
    cache = _cache(tmp_path, "full", mini_cache)
    monkeypatch.setattr(files, "preallocate", _enospc)
    assert _run(cache, tmp_path / "results") == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(cache / "features") in line
    assert result.read_bytes() == before  # the earlier result is kept, not replaced by a failure
    entries = [p for p in (cache / "features").iterdir() if p.is_dir()]
    assert entries and not any((p / "COMPLETE").exists() or list(p.glob("*.npy")) for p in entries)
    assert temporary_files(cache / "features") == [] and temporary_files(tmp_path / "results") == []


def test_generation_on_a_full_disk(tmp_path, earlier, monkeypatch, capsys):
    from toto_eval.tasks.imagenet_probe import task as imagenet

    _, result, before = earlier
    capsys.readouterr()

    def half_then_full(root: Path) -> None:
        (root / "train").mkdir()
        (root / "train" / "part.bin").write_bytes(b"x" * 1000)
        _enospc()

    monkeypatch.setattr(imagenet, "make_mini", half_then_full)
    cache = tmp_path / "fresh"
    assert _run(cache, tmp_path / "results") == 2
    _one_error_line(capsys.readouterr().err)
    assert result.read_bytes() == before
    assert not (cache / "mini" / "imagenet").exists() and temporary_files(cache / "mini") == []


def test_generation_error_unit(tmp_path):
    ctx = RunContext(cache=FeatureCache(tmp_path / "features"), data_root=None, mini_root=tmp_path / "mini")
    with pytest.raises(DiskFullError) as info:
        ctx.dataset_root("toy", lambda root: _enospc(), "1")
    assert str(tmp_path / "mini" / "toy") in str(info.value) and "\n" not in str(info.value)
    assert [p.name for p in (tmp_path / "mini").iterdir()] == [".toy.lock"]


def test_result_writing_on_a_full_disk(tmp_path, earlier, monkeypatch, capsys):
    cache, result, before = earlier
    capsys.readouterr()
    monkeypatch.setattr(files.os, "fsync", _enospc)  # the warm rerun writes nothing but its result
    assert _run(cache, tmp_path / "results") == 2
    assert str(result) in _one_error_line(capsys.readouterr().err)
    assert result.read_bytes() == before and temporary_files(tmp_path / "results") == []


# --- a real full disk: a 1 MiB tmpfs in a private mount namespace ---------------------------------------------

WORKER = textwrap.dedent(
    """
    import shutil, sys
    import numpy as np
    from pathlib import Path
    from toto_eval.common import files
    from toto_eval.common.files import DiskFullError
    from toto_eval.harness.cache_entry import Entry

    root, mode = Path(sys.argv[1]), sys.argv[2]
    if mode == "results":
        from toto_eval.harness.results import TaskResult, write_result

        result = TaskResult("b", "builtin", "t", "1", "ok", "top1", 0.5, metrics={"top1": 0.5})
        path = write_result(result, root / "results")
        with open(root / "filler", "ab", buffering=0) as f:  # fill the disk
            try:
                while True:
                    f.write(b"x" * 4096)
            except OSError:
                pass
        try:
            newer = TaskResult("b", "builtin", "t", "1", "ok", "top1", 0.9, metrics={"top1": 0.9})
            write_result(newer, root / "results")
        except DiskFullError as err:
            print("DiskFullError:", err)
        print("kept:", '"main_score": 0.5' in path.read_text())
        print("temporaries:", files.temporary_files(root / "results"))
        sys.exit(0)
    # 4 MiB of features on a 1 MiB disk; the free-space check is told there is room (another process filled it)
    shutil.disk_usage = lambda p: shutil._ntuple_diskusage(2**40, 0, 2**40)
    if mode == "no_preallocation":
        files.preallocate = lambda path: False
    ids = [f"s{i}" for i in range(64)]
    entry = Entry(root / "features" / "key", {"format": 2}, ids)
    try:
        entry.allocate({"tokens_L000": (1, 512, 64)}, (1, 8, 64))
    except DiskFullError as err:
        print("DiskFullError:", err)
        print("left:", sorted(p.name for p in (root / "features" / "key").iterdir()))
        sys.exit(0)
    entry.write(np.arange(64), {"tokens_L000": np.ones((64, 1, 512, 64), np.float16)})
    entry.flush(list(range(64)))
    print("written")
    """
)


def _on_tmpfs(tmp_path: Path, mode: str) -> subprocess.CompletedProcess:
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1) to mount a private tmpfs")
    probe = subprocess.run(["unshare", "-Urm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a private mount namespace here: {probe.stderr.decode().strip()}")
    disk = tmp_path / "disk"
    disk.mkdir()
    script = f'mount -t tmpfs -o size=1m tmpfs "{disk}" && exec "{sys.executable}" -c "$0" "{disk}" {mode}'
    done = subprocess.run(["unshare", "-Urm", "sh", "-c", script, WORKER], capture_output=True, text=True, timeout=120)
    if "mount:" in done.stderr and done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    return done


def test_real_full_disk_preallocation_refuses_in_one_line(tmp_path):
    done = _on_tmpfs(tmp_path, "preallocate")
    assert done.returncode == 0, done.stderr
    assert "DiskFullError:" in done.stdout and files.DISK_FULL in done.stdout
    assert "left: ['index.json']" in done.stdout  # the arrays are removed again; no meta.json: not allocated


def test_real_full_disk_without_preallocation_dies_of_sigbus(tmp_path):
    done = _on_tmpfs(tmp_path, "no_preallocation")
    assert done.returncode == -7 and "written" not in done.stdout  # SIGBUS: why arrays are preallocated


def test_real_full_disk_keeps_the_earlier_result(tmp_path):
    done = _on_tmpfs(tmp_path, "results")
    assert done.returncode == 0, done.stderr
    assert "DiskFullError:" in done.stdout and "kept: True" in done.stdout and "temporaries: []" in done.stdout
