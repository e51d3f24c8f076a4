"""Kinetics manifests (official CSV, `path label` lists), the clip source, the skip policy and the mini layout.

Run: python -m pytest tests/test_k400_data.py -q
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from toto_eval.common.errors import DataError
from toto_eval.harness.backbone import Preprocess
from toto_eval.harness.evaluate import task_config
from toto_eval.harness.probes import ProbeConfig
from toto_eval.harness.video import metadata, write_video
from toto_eval.tasks.k400.data import (
    KineticsSource,
    Sampling,
    build_split,
    class_names,
    find_annotation,
    read_entries,
)
from toto_eval.tasks.k400.mini import CLASSES, MiniSpec, make_mini, render_clip
from toto_eval.tasks.k400.task import K400Probe

CSV = """label,youtube_id,time_start,time_end,split,is_cc
"air drumming",aaaaaaaaaaa,10,20,train,0
abseiling,bbbbbbbbbbb,0,10,train,0
"air drumming",ccccccccccc,5,15,train,1
"making a cake, with icing",ddddddddddd,100,110,train,0
"""


def _tiny_video(path: Path, frames: int = 12) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, np.full((frames, 16, 16, 3), 100, np.uint8), fps=12)


def test_official_csv_flat_and_class_folders(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "train.csv").write_text(CSV)
    _tiny_video(tmp_path / "train" / "aaaaaaaaaaa_000010_000020.mp4")  # flat (CVDF tarballs)
    _tiny_video(tmp_path / "train" / "abseiling" / "bbbbbbbbbbb_000000_000010.mp4")  # arranged by class
    _tiny_video(tmp_path / "train" / "ddddddddddd_000100_000110.mp4")
    annotation = find_annotation(tmp_path, "train")
    entries = read_entries(annotation, tmp_path, "train")
    assert [e.label for e in entries] == ["air drumming", "abseiling", "air drumming", "making a cake, with icing"]
    classes = class_names(entries)
    assert classes == ["abseiling", "air drumming", "making a cake, with icing"]  # sorted names -> ids
    split = build_split(entries, classes, annotation)
    assert [p.name for p in split.paths] == [
        "aaaaaaaaaaa_000010_000020.mp4",
        "bbbbbbbbbbb_000000_000010.mp4",
        "ddddddddddd_000100_000110.mp4",
    ]
    assert split.labels.tolist() == [1, 0, 2]
    assert split.missing == [str(tmp_path / "train" / "ccccccccccc_000005_000015.mp4")]


def test_path_label_list(tmp_path):
    _tiny_video(tmp_path / "videos" / "a clip.mp4")
    _tiny_video(tmp_path / "b.mp4")
    (tmp_path / "train.csv").write_text(f"videos/a clip.mp4 3\n{tmp_path / 'b.mp4'} 0\n\n")
    annotation = find_annotation(tmp_path, "train")
    entries = read_entries(annotation, tmp_path, "train")
    classes = class_names(entries)
    assert classes == ["0", "1", "2", "3"]  # integer labels are the ids themselves
    split = build_split(entries, classes, annotation)
    assert split.labels.tolist() == [3, 0] and split.paths[0] == tmp_path / "videos" / "a clip.mp4"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("label,youtube_id,time_start,time_end,split\nx,abc,notanumber,10,train\n", r"train\.csv:2: malformed row"),
        ("label,youtube_id,start,end,split\n", r"train\.csv: header"),
        ("just-one-field\n", r"train\.csv:1: expected 'path label'"),
    ],
)
def test_malformed_annotations_name_the_line(tmp_path, text, message):
    (tmp_path / "train.csv").write_text(text)
    with pytest.raises(DataError, match=message):
        read_entries(tmp_path / "train.csv", tmp_path, "train")


def test_unknown_val_class_and_missing_annotations(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "train.csv").write_text(CSV)
    (tmp_path / "annotations" / "val.csv").write_text(CSV.splitlines()[0] + "\nbowling,eeeeeeeeeee,0,10,val,0\n")
    train = read_entries(tmp_path / "annotations" / "train.csv", tmp_path, "train")
    val = read_entries(tmp_path / "annotations" / "val.csv", tmp_path, "val")
    with pytest.raises(DataError, match=r"val\.csv:2: class 'bowling' does not occur"):
        build_split(val, class_names(train), tmp_path / "annotations" / "val.csv")
    with pytest.raises(DataError, match=r"no test annotations \(looked for annotations/test\.csv, test\.csv"):
        find_annotation(tmp_path, "test")


def test_source_views_and_seeded_train_clips(tmp_path):
    frames = np.stack([np.full((24, 32, 3), 10 * i, np.uint8) for i in range(20)])  # frame i is grey 10*i
    write_video(tmp_path / "v.mp4", frames, fps=10)
    split = build_split(read_entries(_list(tmp_path, "v.mp4 0"), tmp_path, "val"), ["0"], tmp_path / "val.txt")
    pre = Preprocess(resolution=16, frames=4, frame_stride=2, mean=(0, 0, 0), std=(1, 1, 1))
    test = KineticsSource(tmp_path, "val", split, Sampling(4, 2, 16, segments=2, crops=3, short_side=18), pre)
    x = test.load(0)
    assert x.shape == (6, 4, 3, 16, 16) and x.dtype == torch.uint8 and test.views == 6
    grey = x.float().mean(dim=(2, 3, 4)).round()  # (views, T)
    # segments centred in halves of 20 frames, span 7: starts 1 and 11; 3 crops per segment, segment-major
    assert grey[0].tolist() == pytest.approx([10, 30, 50, 70], abs=3)
    assert grey[3].tolist() == pytest.approx([110, 130, 150, 170], abs=3)
    assert torch.allclose(grey[0], grey[2])
    train = KineticsSource(tmp_path, "val", split, Sampling(4, 2, 16, segments=3, random_start=True, seed=5), pre)
    assert torch.equal(train.load(0), train.load(0)) and train.load(0).shape == (3, 4, 3, 16, 16)
    assert test.identity() != train.identity() and test.ids == ["v.mp4"]


def _list(root: Path, text: str) -> Path:
    (root / "val.txt").write_text(text + "\n")
    return root / "val.txt"


def test_protocol_from_backbone_and_config():
    class Fake:
        preprocess = Preprocess(resolution=64, frames=16, frame_stride=4)

    full = K400Probe().protocol(Fake(), seed=0)
    assert (full["val"].segments, full["val"].crops, full["val"].frames, full["val"].stride) == (8, 3, 16, 4)
    assert full["val"].short_side == 73 and full["train"].random_start and full["train"].segments == 1
    task = K400Probe(task_config(K400Probe, mini=True, overrides=None)[0])
    mini = task.protocol(Fake(), seed=0)
    assert (mini["val"].segments, mini["val"].crops, mini["val"].frames, mini["val"].stride) == (2, 1, 8, 8)
    Fake.preprocess = Preprocess(resolution=64, frames=8, frame_stride=4)  # already short: kept on the mini suite
    assert (task.protocol(Fake(), seed=0)["train"].frames, task.protocol(Fake(), 0)["train"].stride) == (8, 4)
    custom = K400Probe(K400Probe.Config(frames=8, stride=2, resolution=32)).protocol(Fake(), seed=1)
    assert (custom["val"].frames, custom["val"].stride, custom["val"].resolution) == (8, 2, 32)


def test_mini_is_deterministic_and_in_the_official_layout(tmp_path):
    a, b = render_clip(4, np.random.default_rng(7)), render_clip(4, np.random.default_rng(7))
    assert a.shape == (80, 64, 64, 3) and np.array_equal(a, b)
    spec = MiniSpec(train_per_class=1, val_per_class=1, frames=20)
    make_mini(tmp_path / "a", spec)
    make_mini(tmp_path / "b", spec)
    files = sorted(f.relative_to(tmp_path / "a") for f in (tmp_path / "a").rglob("*") if f.is_file())
    assert {"annotations/train.csv", "annotations/val.csv"} <= {str(f) for f in files}
    assert [f for f in files if (tmp_path / "a" / f).read_bytes() != (tmp_path / "b" / f).read_bytes()] == []
    entries = read_entries(tmp_path / "a" / "annotations" / "val.csv", tmp_path / "a", "val")
    assert sorted(e.label for e in entries) == sorted(CLASSES) and all(e.path.is_file() for e in entries)
    assert metadata(entries[0].path).num_frames == 20


def test_task_runs_and_counts_bad_clips(tmp_path, caplog):
    from toto_eval.backbones.toto import toto_test
    from toto_eval.harness.cache import FeatureCache
    from toto_eval.harness.task import RunContext

    data = tmp_path / "data" / "kinetics400"
    make_mini(data, MiniSpec(train_per_class=2, val_per_class=1, frames=24))
    val = sorted((data / "val").glob("*.mp4"))
    val[0].write_bytes(b"not a video at all")  # unreadable
    val[1].unlink()  # missing
    probe = ProbeConfig(epochs=1, lrs=(1e-3,))
    cfg = K400Probe.Config(frames=4, stride=4, test_segments=2, test_crops=1, probe=probe, max_skipped=0.2)
    ctx = RunContext(cache=FeatureCache(tmp_path / "cache"), data_root=tmp_path / "data", mini_root=tmp_path / "m")
    ctx.progress, ctx.layers = False, [1, 2]
    with caplog.at_level(logging.INFO, logger="toto_eval"):
        out = K400Probe(cfg).evaluate(toto_test(), ctx)
    assert f"skipped: {val[0]}: not a readable video" in caplog.text
    assert "1 annotated val videos are not on disk" in caplog.text
    v = out.data["val"]
    assert (v["annotated"], v["evaluated"], v["skipped"]) == (12, 10, 2) and v["missing"] == [str(val[1])]
    assert out.data["train"]["skipped"] == 0 and out.data["num_classes"] == 12
    assert {r["layer"] for r in out.per_layer} == {1, 2} and 0 <= out.metrics["top1"] <= 1
    assert out.extra["protocol"]["val"]["segments"] == 2
    strict = K400Probe(K400Probe.Config(frames=4, stride=4, test_segments=2, test_crops=1, probe=probe))
    with pytest.raises(DataError, match=r"^2 of 12 val samples missing or unreadable \(> 5%\)"):
        strict.evaluate(toto_test(), ctx)


def test_malformed_manifests_are_one_line_errors(tmp_path):
    cases = {
        "empty.txt": (b"", r"empty\.txt: has no entries"),
        "latin1.csv": ("label,youtube_id,time_start,time_end,split\ncaf\u00e9,a,0,10,train\n".encode("latin-1"),
                       r"latin1\.csv: unreadable annotation file \(UnicodeDecodeError"),
        "huge.txt": (b"a.mp4 0\nb.mp4 99999999999999999999\n", r"huge\.txt:2: class id 9+ is not below 100000"),
        "nul.txt": (b"a\x00b.mp4 0\n", r"nul\.txt:1: expected 'path label'"),
        "digits.txt": ("a.mp4 \u00b2\nb.mp4 1\n".encode(), None),  # '²' is not a class id: labels are names
    }  # fmt: skip
    for name, (data, error) in cases.items():
        (tmp_path / name).write_bytes(data)
        if error is None:
            entries = read_entries(tmp_path / name, tmp_path, "train")
            assert class_names(entries) == ["1", "\u00b2"]
            continue
        with pytest.raises(DataError, match=error):
            entries = read_entries(tmp_path / name, tmp_path, "train")
            class_names(entries)
    bom = tmp_path / "bom.csv"  # Excel's UTF-8 export starts with a byte-order mark
    bom.write_bytes(b"\xef\xbb\xbf" + CSV.encode())
    assert [e.label for e in read_entries(bom, tmp_path, "train")][:2] == ["air drumming", "abseiling"]
    long = tmp_path / "long.txt"  # a name longer than the file system allows is a missing video, not a crash
    long.write_text(f"{'x' * 5000}.mp4 0\n")
    entries = read_entries(long, tmp_path, "train")
    assert len(build_split(entries, class_names(entries), long).missing) == 1
