"""Integrity: a silently changed byte never reaches a result. Cache entries carry a SHA-256 per chunk of rows and
per small file: `cache verify` names a flipped value, a run recomputes exactly the damaged rows (or the whole entry
when a small file or a header is wrong) and refuses an entry still corrupt after that; mini datasets carry a
manifest and are regenerated when a file differs; result files carry a checksum that `read_result` and the
leaderboard check.

Run: python -m pytest tests/test_integrity.py -q
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest

from toto_eval.common import checksums
from toto_eval.common.errors import DataError
from toto_eval.harness import cache_entry, task
from toto_eval.harness.cache import TODO, FeatureCache
from toto_eval.harness.cli import main
from toto_eval.harness.results import TaskResult, read_result, write_result
from toto_eval.harness.task import RunContext


def main_verify(cache_dir, *flags: str) -> int:
    return main(["cache", "verify", "--cache-dir", str(cache_dir), *flags])


def _extract(cache: FeatureCache, backbone, source):
    return cache.extract(backbone, source, layers=[0, 2], token_layers=[2], batch_size=4)


def _flip(path, index=(3, 0, 1, 5)) -> None:
    """Change one fp16 value on disk, as a bad sector or a stray write would (mtime kept: no hint)."""
    stat = os.stat(path)
    array = np.load(path, mmap_mode="r+")
    array[index] = array[index] + np.float16(0.5)
    array.flush()
    del array
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_flipped_value_is_named_by_verify_and_recomputed_by_the_next_run(tmp_path, counting, array_source, capsys):
    cache = FeatureCache(tmp_path / "features")
    first = np.array(_extract(cache, counting, array_source).tokens[2])
    (entry,) = cache.entries()
    _flip(entry / "tokens_L002.npy")
    assert main_verify(tmp_path) == 1
    out = capsys.readouterr().out
    assert f"{entry.name}: BAD: {entry / 'tokens_L002.npy'}: rows 0-9 do not match their checksums" in out
    assert "1 bad entries" in out
    seen = counting.seen
    again = _extract(FeatureCache(tmp_path / "features"), counting, array_source)  # a new run: checks on open
    assert counting.seen - seen == 10 and again.stats["computed"] == 10  # the damaged chunk's rows, recomputed
    np.testing.assert_array_equal(again.tokens[2], first)
    assert main_verify(tmp_path) == 0


def test_only_the_damaged_chunk_is_recomputed(tmp_path, counting, array_source, monkeypatch, caplog):
    monkeypatch.setattr(checksums, "CHUNK_BYTES", 4 * 1 * 4 * 8 * 2)  # 4 rows of tokens_L002 per chunk
    cache = FeatureCache(tmp_path / "features")
    first = np.array(_extract(cache, counting, array_source).tokens[2])
    (entry,) = cache.entries()
    _flip(entry / "tokens_L002.npy", (5, 0, 1, 5))  # chunk 1: rows 4-7
    seen = counting.seen
    again = _extract(FeatureCache(tmp_path / "features"), counting, array_source)
    assert counting.seen - seen == 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "rows 4-7 do not match" in warnings[0] and "recomputing those rows" in warnings[0]
    np.testing.assert_array_equal(again.tokens[2], first)


@pytest.mark.parametrize("damage", ["index", "header", "object_array", "record"])
def test_damaged_small_file_or_header_recomputes_the_whole_entry(tmp_path, counting, array_source, damage):
    cache = FeatureCache(tmp_path / "features")
    first = np.array(_extract(cache, counting, array_source).pooled[0])
    (entry,) = cache.entries()
    if damage == "index":
        ids = json.loads((entry / "index.json").read_text())
        (entry / "index.json").write_text(json.dumps(ids[::-1]))  # rows would belong to other samples
    elif damage == "header":
        (entry / "pooled_L000.npy").write_bytes(b"garbage")
    elif damage == "object_array":
        np.save(entry / "pooled_L000.npy", np.array([None, 1.0], dtype=object), allow_pickle=True)
    else:
        (entry / "COMPLETE").write_text("ok\n")  # a marker without a checksum record
    problems = cache_entry.Entry(entry, {}, []).verify()
    assert len(problems) == 1 and problems[0].rows is None and "\n" not in problems[0].text
    seen = counting.seen
    again = _extract(FeatureCache(tmp_path / "features"), counting, array_source)
    assert counting.seen - seen == 10
    np.testing.assert_array_equal(again.pooled[0], first)


def test_sampled_check_and_verify_repair(tmp_path, counting, array_source, monkeypatch, capsys):
    monkeypatch.setattr(checksums, "CHUNK_BYTES", 4 * 1 * 4 * 8 * 2)
    cache = FeatureCache(tmp_path / "features")
    _extract(cache, counting, array_source)
    (entry,) = cache.entries()
    _flip(entry / "tokens_L002.npy", (9, 0, 0, 0))  # chunk 2: rows 8-9
    sample = cache_entry.Entry(entry, {}, []).verify(budget=1)  # one chunk per array: may or may not see it
    assert all(d.rows.tolist() == [8, 9] for d in sample)
    assert main_verify(tmp_path, "--repair") == 1
    assert "marked for recomputation" in capsys.readouterr().out
    filled = np.load(entry / "filled.npy")
    assert (np.flatnonzero(filled == TODO) == [8, 9]).all() and not (entry / "COMPLETE").exists()
    seen = counting.seen
    _extract(FeatureCache(tmp_path / "features"), counting, array_source)
    assert counting.seen - seen == 2 and main_verify(tmp_path) == 0


def test_entry_still_corrupt_after_recomputing_is_refused(tmp_path, counting, array_source, monkeypatch):
    cache = FeatureCache(tmp_path / "features")
    _extract(cache, counting, array_source)
    broken = cache_entry.Damage("x.npy: rows 0-9 do not match their checksums", np.arange(10))
    monkeypatch.setattr(cache_entry.Entry, "verify", lambda self, budget=None: [broken])
    with pytest.raises(DataError, match="corrupt again after recomputing it") as info:
        _extract(FeatureCache(tmp_path / "features"), counting, array_source)
    assert "\n" not in str(info.value)


# --- mini datasets --------------------------------------------------------------------------------------------


class Generator:
    """A stand-in mini generator: a few files; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, root):
        self.calls += 1
        (root / "train").mkdir()
        for i in range(3):
            (root / "train" / f"{i}.bin").write_bytes(bytes([i]) * 100)


def _ctx(tmp_path) -> RunContext:
    return RunContext(cache=FeatureCache(tmp_path / "features"), data_root=None, mini_root=tmp_path / "mini")


@pytest.mark.parametrize("change", ["same_size", "truncated", "extra_file", "no_manifest"])
def test_mini_dataset_that_no_longer_matches_its_manifest_is_regenerated(tmp_path, change, caplog, monkeypatch):
    gen = Generator()
    root = _ctx(tmp_path).dataset_root("toy", gen, "1")
    manifest = json.loads((root / ".manifest.json").read_text())
    assert manifest["files"]["train/1.bin"][0] == 100 and gen.calls == 1
    target = root / "train" / "1.bin"
    if change == "same_size":
        target.write_bytes(bytes([9]) * 100)
    elif change == "truncated":
        target.write_bytes(b"\x01")
    elif change == "extra_file":
        (root / "train" / "3.bin").write_bytes(b"x")
    else:
        (root / ".manifest.json").unlink()
    monkeypatch.setattr(task, "_SOUND_DATASETS", set())  # a new process
    again = _ctx(tmp_path).dataset_root("toy", gen, "1")
    assert again == root and gen.calls == 2
    assert target.read_bytes() == bytes([1]) * 100 and not (root / "train" / "3.bin").exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "regenerating the mini toy dataset" in warnings[0]
    _ctx(tmp_path).dataset_root("toy", gen, "1")
    assert gen.calls == 2  # sound now: used as it is


def test_stale_generation_folders_are_removed(tmp_path):
    gen = Generator()
    (tmp_path / "mini" / ".toy-abcd1234").mkdir(parents=True)  # what a killed generation leaves
    (tmp_path / "mini" / ".toy-abcd1234" / "half.bin").write_bytes(b"x")
    (tmp_path / "mini" / ".other-abcd1234").mkdir()  # another dataset's: not ours to remove
    root = _ctx(tmp_path).dataset_root("toy", gen, "1")
    assert not (tmp_path / "mini" / ".toy-abcd1234").exists() and (tmp_path / "mini" / ".other-abcd1234").exists()
    (tmp_path / "mini" / ".toy-wxyz5678").mkdir()  # beside a finished dataset (killed while replacing it)
    _ctx(tmp_path).dataset_root("toy", gen, "1")
    assert not (tmp_path / "mini" / ".toy-wxyz5678").exists() and gen.calls == 1 and root.is_dir()


# --- result files ---------------------------------------------------------------------------------------------


def _result(**kw) -> TaskResult:
    return TaskResult(backbone="toto_test", checkpoint="builtin", task="imagenet_probe", task_version="1",
                      status="ok", main_metric="top1", main_score=0.5, metrics={"top1": 0.5},
                      extra={"per_layer_top1": {0: 0.25, 10: 0.5, 2: 0.75}, "n": np.int64(3)}, **kw)  # fmt: skip


def test_result_checksum_round_trips_and_catches_an_edit(tmp_path):
    from toto_eval.leaderboard.collect import collect

    path = write_result(_result(), tmp_path)
    raw = json.loads(path.read_text())
    assert raw["checksum"].startswith("sha256:") and raw["schema_version"] == 3
    assert read_result(path).metrics == {"top1": 0.5}
    raw["metrics"]["top1"] = 0.9
    path.write_text(json.dumps(raw, indent=1))
    with pytest.raises(DataError, match="does not match its checksum") as info:
        read_result(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    coll = collect([tmp_path])
    assert coll.entries == [] and len(coll.skipped) == 1 and "does not match its checksum" in coll.skipped[0]


def test_result_without_checksum_is_read_as_before(tmp_path):
    path = write_result(_result(), tmp_path)
    raw = json.loads(path.read_text())
    del raw["checksum"]
    raw["schema_version"] = 2
    path.write_text(json.dumps(raw))
    assert read_result(path).main_score == 0.5
