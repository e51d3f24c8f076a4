"""The mini DAVIS generator, the layout reader's one-line errors, and the `davis` task end to end on toto_test.

Run: python -m pytest tests/test_davis_task.py -q
"""

from __future__ import annotations

import hashlib
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toto_eval.common.errors import DataError
from toto_eval.harness.evaluate import RunOptions, create_backbone, evaluate
from toto_eval.tasks.davis import task as davis_task  # noqa: F401  (registers the task)
from toto_eval.tasks.davis.data import load_sequence, read_annotations, read_labels, read_sequence_list
from toto_eval.tasks.davis.mini import SEQUENCES, make_mini, render_sequence
from toto_eval.tasks.davis.scoring import score_folder


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mini") / "DAVIS"
    make_mini(root)
    return root


def tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_mini_is_deterministic_and_official(mini, tmp_path):
    make_mini(tmp_path / "again")
    assert tree_hash(tmp_path / "again") == tree_hash(mini)
    assert read_sequence_list(mini, "val") == [s.name for s in SEQUENCES]
    vanished = 0
    for spec in SEQUENCES:
        seq = load_sequence(mini, spec.name)
        assert len(seq) == spec.frames and 12 <= len(seq) <= 20
        with Image.open(seq.annotations[0]) as img:
            assert img.mode == "P" and img.getpalette()[3:6] == [128, 0, 0]  # VOC colour of id 1
        gt = read_annotations(seq)
        assert gt.shape[1:] == spec.size and np.asarray(Image.open(seq.frames[0])).shape == (*spec.size, 3)
        assert sorted(np.unique(gt[0])) == list(range(spec.objects + 1))  # every object present in frame 0
        vanished += any(not (gt[t] == 1).any() for t in range(len(seq)))
    assert vanished == sum(s.exit for s in SEQUENCES) >= 1


def corrupt_copy(mini: Path, tmp_path: Path) -> Path:
    root = tmp_path / "DAVIS"
    shutil.copytree(mini, root)
    return root


def test_missing_frame_names_the_file(mini, tmp_path):
    root = corrupt_copy(mini, tmp_path)
    (root / "JPEGImages" / "480p" / "mini-blob" / "00005.jpg").unlink()
    with pytest.raises(DataError, match=r"mini-blob/00005\.jpg: missing \(found 00006\.jpg"):
        load_sequence(root, "mini-blob")


def test_rgb_annotation_names_the_file(mini, tmp_path):
    root = corrupt_copy(mini, tmp_path)
    path = root / "Annotations" / "480p" / "mini-cross" / "00000.png"
    Image.open(path).convert("RGB").save(path)
    with pytest.raises(DataError, match=r"mini-cross/00000\.png: annotation is a mode-RGB image"):
        read_labels(path)


ASSETS = Path(__file__).parent / "assets" / "davis" / "tree"


def _save(path: Path, img: Image.Image, fmt: str = "PNG") -> None:
    img.save(path, format=fmt)  # the official evaluator opens by content, whatever the extension says


def test_label_images_are_read_as_the_official_evaluator_reads_them(tmp_path):
    """Any single-channel image of whole ids 0..255 scores as its palette PNG; the rest fails in one line."""
    shutil.copytree(ASSETS, tmp_path / "tree")
    davis, pred = tmp_path / "tree" / "DAVIS", tmp_path / "tree" / "predictions"
    expected = score_folder(davis, pred, sequences=["void-ids", "border"]).global_row()
    files = sorted((pred / "void-ids").glob("*.png")) + sorted((pred / "border").glob("*.png"))
    for i, path in enumerate(files):
        ids = np.array(Image.open(path))
        kind = i % 4
        if kind == 0:
            _save(path, Image.fromarray(ids.astype(np.uint16)))  # 16-bit grayscale PNG
        elif kind == 1:
            _save(path, Image.fromarray(ids, mode="L"))
        elif kind == 2:
            _save(path, Image.fromarray(ids.astype(np.float32)), "TIFF")  # float, whole values
        else:
            _save(path, Image.fromarray(ids.astype(np.int32)), "TIFF")
    assert score_folder(davis, pred, sequences=["void-ids", "border"]).global_row() == expected
    target = pred / "border" / "00002.png"
    ids = np.array(Image.open(target)).astype(np.uint8)  # whatever the loop above saved it as
    refusals = [
        (Image.fromarray(ids.astype(np.float32) + 0.5), "TIFF", "with fractional values"),
        (Image.fromarray(ids.astype(np.uint16) + 256), "PNG", "holds id 25[0-9]"),
        (Image.fromarray(ids[:1, :1]), "PNG", "prediction is 1x1, the GT 96x64"),  # the official code broadcasts it
        (Image.fromarray(np.where(ids == 1, 3, ids).astype(np.uint8), mode="L"), "PNG", "predicted id 3 but"),
    ]
    for img, fmt, message in refusals:
        _save(target, img, fmt)
        with pytest.raises(DataError, match=rf"^{target}: .*{message}"):
            score_folder(davis, pred, sequences=["border"])


def test_listed_but_absent_sequence_names_the_folder(mini, tmp_path):
    root = corrupt_copy(mini, tmp_path)
    (root / "ImageSets" / "2017" / "val.txt").write_text("mini-blob\nghost\n")
    with pytest.raises(DataError, match=r"JPEGImages/480p/ghost: sequence listed in ImageSets"):
        score_folder(root, mini / "Annotations" / "480p")


def test_missing_and_rgb_predictions_name_the_file(mini, tmp_path):
    pred = tmp_path / "pred"
    shutil.copytree(mini / "Annotations" / "480p", pred)
    assert score_folder(mini, pred).global_row()["J&F-Mean"] == 1.0  # the GT scores itself perfectly
    Image.open(pred / "mini-trio" / "00004.png").convert("RGB").save(pred / "mini-trio" / "00004.png")
    with pytest.raises(DataError, match=r"mini-trio/00004\.png: prediction is a mode-RGB image"):
        score_folder(mini, pred)
    (pred / "mini-trio" / "00004.png").unlink()
    with pytest.raises(DataError, match=r"mini-trio/00004\.png: prediction not found"):
        score_folder(mini, pred)


def test_task_failure_is_one_line_naming_the_file(mini, tmp_path):
    data = tmp_path / "data"
    root = corrupt_copy(mini, data)
    Image.open(root / "Annotations/480p/mini-exit/00000.png").convert("RGB").save(
        root / "Annotations/480p/mini-exit/00000.png"
    )
    options = RunOptions(data_root=data, cache_dir=tmp_path / "cache", results_dir=tmp_path / "res", progress=False)
    (result,) = evaluate(create_backbone("toto_test"), "davis", options)
    assert result.status == "failed" and "\n" not in result.error
    assert result.error.endswith(
        "mini-exit/00000.png: annotation is a mode-RGB image; DAVIS annotations are single-channel (palette) PNGs of "
        "object ids"
    )


def test_davis_task_on_mini_end_to_end(tmp_path):
    options = RunOptions(cache_dir=tmp_path / "cache", results_dir=tmp_path / "res", limit=2, progress=False)
    backbone = create_backbone("toto_test")
    (first,) = evaluate(backbone, "davis", options)
    assert first.status == "ok", first.error
    m = first.metrics
    ci = first.intervals["J&F-Mean"]
    assert ci["low"] <= m["J&F-Mean"] <= ci["high"] and ci["n"] > 0
    assert set(m) == {"J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"}
    assert 0.0 < m["J-Mean"] < 1.0 and m["J&F-Mean"] == (m["J-Mean"] + m["F-Mean"]) / 2
    assert first.extra["settings"]["resolution"] == "backbone" and first.extra["settings"]["side"] == 64
    assert first.selected["layer"] == backbone.default_layer
    folder = Path(first.per_layer[0]["predictions"])
    names = first.data["sequences"]
    for name in names:
        for gt_path in sorted((tmp_path / "cache/mini/DAVIS/Annotations/480p" / name).iterdir()):
            with Image.open(folder / name / gt_path.name) as pred, Image.open(gt_path) as gt:
                assert pred.mode == "P" and pred.size == gt.size
    # The written folder rescored from disk gives the same numbers; a rerun reads every feature from the cache.
    assert score_folder(tmp_path / "cache/mini/DAVIS", folder, sequences=names).global_row() == m
    assert (folder / "global_results-val.csv").exists() and (folder / "per-sequence_results-val.csv").exists()
    (second,) = evaluate(backbone, "davis", options)
    assert second.metrics == m and second.extra["timing"]["computed_frames"] == 0


def test_mini_light_changes_so_colour_alone_cannot_match():
    """Mini DAVIS v3: the light swings from frame to frame in every val sequence (raw pixel patches matched the
    flat colours of v2 better than any learned feature)."""
    for spec in SEQUENCES:
        frames, _ = render_sequence(spec, np.random.default_rng([0, zlib.crc32(spec.name.encode())]))
        levels = frames.reshape(len(frames), -1, 3).mean(1)  # (T, 3): each frame's mean level per channel
        assert (levels.max(0) - levels.min(0)).max() > 30, spec.name
