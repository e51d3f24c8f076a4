"""Ego4D STA files: the mini generator, the annotation / detection / results readers, frames, and the score CLI.

Run: python -m pytest tests/test_ego4d_data.py -q
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from toto_eval.common.errors import DataError
from toto_eval.harness.backbone import Preprocess
from toto_eval.tasks.ego4d_sta import mini
from toto_eval.tasks.ego4d_sta.data import clip_indices, load_detections, load_ground_truth, load_split
from toto_eval.tasks.ego4d_sta.frames import FrameReader, STAClips
from toto_eval.tasks.ego4d_sta.results import CHALLENGE, load_results, prediction, score, write_results
from toto_eval.tasks.ego4d_sta.score_cli import main as score_main
from toto_eval.tasks.ego4d_sta.score_cli import score_files


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ego4d")
    mini.make_mini(path, seed=0, videos=(2, 1, 1), episodes=2)
    return path


@pytest.fixture
def caplog(caplog):
    """pytest's caplog, also attached to the `toto_eval` logger (a CLI run earlier may have stopped propagation)."""
    logger = logging.getLogger("toto_eval")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


def ann_path(root: Path, split: str) -> Path:
    return root / "annotations" / f"fho_sta_{split}.json"


def rewrite(src: Path, dst: Path, edit) -> Path:
    raw = json.loads(src.read_text())
    edit(raw)
    dst.write_text(json.dumps(raw))
    return dst


def test_mini_layout_schema_and_labels(root):
    train = load_split(ann_path(root, "train"), require_objects=True)
    val = load_split(ann_path(root, "val"), require_objects=True)
    test = load_split(ann_path(root, "test_unannotated"))
    assert (len(train.annotations), len(val.annotations), len(test.annotations)) == (12, 6, 6)
    assert train.nouns == list(mini.NOUNS) and train.verbs == list(mini.VERBS)  # read from the file
    assert train.annotated and val.annotated and not test.annotated
    for ann in train.annotations:
        assert ann.uid == f"{ann.video_uid}_{ann.frame}" and ann.clip_frame == ann.frame
        (obj,) = ann.objects
        assert 0.2 - 1e-9 <= obj.ttc <= 2.0 + 1e-9
        assert round(obj.ttc * mini.FPS) == pytest.approx(obj.ttc * mini.FPS, abs=1e-4)  # a whole number of frames
        assert obj.verb in mini.AFFORDS[obj.noun]
    assert sorted(p.name for p in (root / "full_scale").iterdir()) == sorted(
        f"{v}.mp4" for v in train.videos | val.videos | test.videos
    )
    dets = load_detections(root / "sta_models" / "object_detections.json", val)
    assert set(dets) == {a.uid for a in val.annotations} and all(len(d) >= 3 for d in dets.values())


def test_mini_is_a_pure_function_of_the_seed(tmp_path):
    mini.make_mini(tmp_path / "a", seed=3, videos=(1, 1, 1), episodes=1)
    mini.make_mini(tmp_path / "b", seed=3, videos=(1, 1, 1), episodes=1)
    for name in ("annotations/fho_sta_train.json", "annotations/fho_sta_val.json", "sta_models/object_detections.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_missing_objects_in_a_train_file_names_the_entry(root, tmp_path):
    def drop(raw):
        del raw["annotations"][3]["objects"]

    bad = rewrite(ann_path(root, "train"), tmp_path / "fho_sta_train.json", drop)
    uid = json.loads(bad.read_text())["annotations"][3]["uid"]
    with pytest.raises(DataError, match=rf"fho_sta_train.json: annotation '{uid}' \(entry 3\): has no 'objects'"):
        load_split(bad, require_objects=True)
    assert load_split(bad).annotations[3].objects is None  # fine where objects are optional


def test_box_outside_the_frame_is_an_error_clipped_or_kept(root, tmp_path, caplog):
    def push(raw):
        raw["annotations"][1]["objects"][0]["box"] = [150.0, 10.0, 170.0, 30.0]  # the frame is 160 wide

    bad = rewrite(ann_path(root, "val"), tmp_path / "fho_sta_val.json", push)
    uid = json.loads(bad.read_text())["annotations"][1]["uid"]
    with pytest.raises(DataError, match=rf"annotation '{uid}' \(entry 1\) object 0: box .* outside the 160x120 frame"):
        load_split(bad)
    clipped = load_split(bad, box_check="clip")
    assert clipped.num_clipped == 1 and clipped.annotations[1].objects[0].box == (150.0, 10.0, 160.0, 30.0)
    kept = load_split(bad, box_check="keep")
    assert kept.num_clipped == 1 and kept.annotations[1].objects[0].box == (150.0, 10.0, 170.0, 30.0)
    assert f"{bad}: 1 box(es) extend past their video's frame" in caplog.text


# Hand-checked, and measured with the official evaluator (EGO4D/forecasting, tools/short_term_anticipation/
# evaluate_short_term_anticipation_results.py, run once outside the repository): noun 100, N+V 50, N+TTC 100,
# overall 50. Example 1's GT extends 25 px right of and 11 px below its 160x120 frame; the prediction, shifted 3 px,
# has IoU 43/49 with it as it is (a match) but 378/1535 with the clipped box (a miss: every AP of noun 0 would be 0).
def _obj(box: list[float], noun: int, verb: int, ttc: float) -> dict:
    return {"box": box, "noun_category_id": noun, "verb_category_id": verb, "time_to_contact": ttc}


OUT_OF_FRAME = {
    "info": {"video_metadata": {"v": {"frame_width": 160, "frame_height": 120, "fps": 30.0}}},
    "noun_categories": [{"id": 0, "name": "door"}, {"id": 1, "name": "cup"}],
    "verb_categories": [{"id": 0, "name": "open"}, {"id": 1, "name": "take"}],
    "annotations": [
        {"uid": "v_10", "video_id": "v", "frame": 10, "objects": [_obj([140.0, 100.0, 185.0, 131.0], 0, 0, 1.0)]},
        {"uid": "v_20", "video_id": "v", "frame": 20, "objects": [_obj([10.0, 10.0, 29.0, 29.0], 1, 1, 0.5)]},
    ],
}
OUT_OF_FRAME_RESULTS = {
    "v_10": [prediction([143.0, 100.0, 188.0, 131.0], 0, 0, 1.0, 0.9)],
    "v_20": [prediction([10.0, 10.0, 29.0, 29.0], 1, 0, 0.5, 0.8)],
}


def test_score_keeps_out_of_frame_boxes_as_the_official_evaluator_does(tmp_path, caplog, capsys):
    ann = tmp_path / "fho_sta_val.json"
    ann.write_text(json.dumps(OUT_OF_FRAME))
    write_results(tmp_path / "r.json", OUT_OF_FRAME_RESULTS)
    metrics = score_files(ann, tmp_path / "r.json")
    assert {k: metrics[k] for k in ("noun", "noun_verb", "noun_ttc", "overall")} == {
        "noun": 100.0, "noun_verb": 50.0, "noun_ttc": 100.0, "overall": 50.0,
    }  # fmt: skip
    assert f"{ann}: 1 box(es) extend past their video's frame; scored as the official evaluator" in caplog.text
    gt = load_ground_truth(ann)
    assert gt.num_clipped == 1 and gt.annotations[0].objects[0].box == (140.0, 100.0, 185.0, 131.0)
    clipped = load_split(ann, require_objects=True, box_check="clip")
    assert score(clipped, load_results(tmp_path / "r.json", clipped))["noun"] == 50.0  # why clipping is not offered
    assert score_main(["--annotations", str(ann), "--predictions", str(tmp_path / "r.json")]) == 0
    assert "Box + Noun + Verb + TTC mAP (Overall): 50.00" in capsys.readouterr().out


def test_ground_truth_reader_takes_what_the_official_evaluator_takes(tmp_path, caplog):
    raw = json.loads(json.dumps(OUT_OF_FRAME))
    del raw["info"], raw["noun_categories"], raw["verb_categories"]  # the official code reads none of them
    first = raw["annotations"][0]["objects"][0]
    first["box"] = [185.0, 131.0, 140.0, 100.0]  # inverted: kept (its +1-pixel area is clipped at zero)
    first["noun_category_id"] = 7.0  # an integral float is 7 to numpy
    raw["annotations"].append(raw["annotations"][1])  # a repeated uid is scored twice, as the official loop does
    (tmp_path / "a.json").write_text(json.dumps(raw))
    gt = load_ground_truth(tmp_path / "a.json")
    assert [a.uid for a in gt.annotations] == ["v_10", "v_20", "v_20"] and gt.annotations[0].objects[0].noun == 7
    assert "1 box(es) have x2 < x1 or y2 < y1" in caplog.text and "1 annotation(s) repeat an earlier uid" in caplog.text
    raw["annotations"][1]["objects"][0]["verb_category_id"] = "take"  # the reference would turn all ids into str
    (tmp_path / "b.json").write_text(json.dumps(raw))
    with pytest.raises(DataError, match=r"b\.json: annotation 'v_20' \(entry 1\) object 0: verb_category_id must be"):
        load_ground_truth(tmp_path / "b.json")


def test_video_uid_key_and_unknown_noun(root, tmp_path):
    def rename(raw):
        for a in raw["annotations"]:
            a["video_uid"] = a.pop("video_id")

    assert len(load_split(rewrite(ann_path(root, "val"), tmp_path / "v.json", rename)).annotations) == 6

    def noun(raw):
        raw["annotations"][0]["objects"][0]["noun_category_id"] = 9

    with pytest.raises(DataError, match="noun_category_id 9 is not one of the 5 nouns"):
        load_split(rewrite(ann_path(root, "val"), tmp_path / "n.json", noun))


def perfect_results(split) -> dict:
    return {a.uid: [prediction(o.box, o.noun, o.verb, o.ttc, 0.9) for o in a.objects] for a in split.annotations}


def test_results_round_trip_and_checks(root, tmp_path, caplog):
    val = load_split(ann_path(root, "val"), require_objects=True)
    results = perfect_results(val)
    write_results(tmp_path / "r.json", results)
    raw = json.loads((tmp_path / "r.json").read_text())
    assert raw["challenge"] == CHALLENGE and raw["version"] == "1.0"
    assert score(val, load_results(tmp_path / "r.json", val)) == {
        "noun": 100.0,
        "noun_verb": 100.0,
        "noun_ttc": 100.0,
        "overall": 100.0,
        "num_examples": 6.0,
        "num_empty_predictions": 0.0,
    }
    write_results(tmp_path / "x.json", results | {"not-a-uid_1": []})  # ignored, as the reference ignores it
    assert set(load_results(tmp_path / "x.json", val)) == {a.uid for a in val.annotations}
    assert "1 prediction uid(s) are not in fho_sta_val.json (first: 'not-a-uid_1'); ignored" in caplog.text
    missing = dict(list(results.items())[1:])
    write_results(tmp_path / "m.json", missing)
    with pytest.raises(DataError, match=f"uids missing from the results: {val.annotations[0].uid}"):
        load_results(tmp_path / "m.json", val)
    first = val.annotations[0].uid
    raw["results"][first][0]["score"] = 1  # an int: the reference rejects it too
    (tmp_path / "i.json").write_text(json.dumps(raw))
    with pytest.raises(DataError, match=f"uid '{first}' prediction 0: score must be a float"):
        load_results(tmp_path / "i.json", val)
    raw["results"][first][0]["score"] = float("nan")  # a float: the reference scores it, and so do we, warning
    (tmp_path / "n.json").write_text(json.dumps(raw))
    assert np.isnan(load_results(tmp_path / "n.json", val)[first].scores[0])
    assert "n.json: 1 prediction(s) have a NaN or infinite box, TTC or score" in caplog.text


def test_score_cli_prints_and_writes_full_precision(root, tmp_path, capsys):
    val = load_split(ann_path(root, "val"), require_objects=True)
    results = perfect_results(val)
    first = val.annotations[0]
    results[first.uid][0]["verb_category_id"] = (first.objects[0].verb + 1) % len(val.verbs)
    write_results(tmp_path / "r.json", results)
    argv = ["--annotations", str(ann_path(root, "val")), "--predictions", str(tmp_path / "r.json")]
    assert score_main([*argv, "--output", str(tmp_path / "o.json")]) == 0
    out = capsys.readouterr().out
    assert "Box + Noun mAP: 100.00" in out and "Overall" in out
    metrics = json.loads((tmp_path / "o.json").read_text())["metrics"]
    assert metrics["noun"] == 100.0 and metrics["noun_verb"] < 100.0
    assert metrics["noun_verb"] == score(val, load_results(tmp_path / "r.json", val))["noun_verb"]
    write_results(tmp_path / "bad.json", {})
    assert score_main([*argv[:2], "--predictions", str(tmp_path / "bad.json")]) == 2
    assert "bad.json: uids missing from the results" in capsys.readouterr().err


def test_clip_indices_end_at_the_query_frame_and_repeat_frame_zero():
    assert clip_indices(20, 4, 4).tolist() == [8, 12, 16, 20]
    assert clip_indices(5, 4, 4).tolist() == [0, 0, 1, 5]


def test_frames_from_videos_and_from_extracted_images_agree(root, tmp_path):
    val = load_split(ann_path(root, "val"), require_objects=True)
    ann = val.annotations[2]
    idx = clip_indices(ann.frame, 3, 2)
    from_video = FrameReader(videos_dir=root / "full_scale").read(ann.video_uid, idx)
    folder = tmp_path / "frames"
    for k, i in enumerate(idx):
        from PIL import Image

        (folder / ann.video_uid).mkdir(parents=True, exist_ok=True)
        Image.fromarray(from_video[k].permute(1, 2, 0).numpy()).save(folder / ann.video_uid / f"{i:07d}.png")
    from_images = FrameReader(frames_dir=folder, template="{video_uid}/{frame:07d}.png").read(ann.video_uid, idx)
    assert from_video.shape == (3, 3, mini.HEIGHT, mini.WIDTH) and torch.equal(from_video, from_images)
    with pytest.raises(DataError, match="frame image not found"):
        FrameReader(frames_dir=folder, template="{video_uid}/{frame:07d}.png").read(ann.video_uid, np.array([999]))


def test_clip_source_shapes_and_missing_video(root, tmp_path):
    val = load_split(ann_path(root, "val"), require_objects=True)
    pre = Preprocess(resolution=32, frames=4, frame_stride=2)
    src = STAClips(val, FrameReader(videos_dir=root / "full_scale"), pre, 4, 2)
    assert len(src) == 6 and src.ids[0] == val.annotations[0].uid
    x = src.load(0)
    assert x.shape == (1, 4, 3, 32, 32) and x.dtype == torch.float32
    assert src.identity() == STAClips(val, FrameReader(videos_dir=root / "full_scale"), pre, 4, 2).identity()
    assert src.identity() != STAClips(val, FrameReader(videos_dir=root / "full_scale"), pre, 4, 4).identity()
    empty = STAClips(val, FrameReader(videos_dir=tmp_path), pre, 4, 2)
    with pytest.raises(DataError, match=rf"{val.annotations[0].video_uid}.mp4: video not found"):
        empty.load(0)


def test_toto_eval_cli_wires_the_command(root, tmp_path, capsys):
    from toto_eval.harness import cli

    val = load_split(ann_path(root, "val"), require_objects=True)
    write_results(tmp_path / "r.json", perfect_results(val))
    argv = ["ego4d-score", "--annotations", str(ann_path(root, "val")), "--predictions", str(tmp_path / "r.json")]
    assert cli.main(argv) == 0
    assert "Box + Noun + Verb + TTC mAP (Overall): 100.00" in capsys.readouterr().out
    write_results(tmp_path / "r.json", {})
    assert cli.main(argv) == 2
    assert f"toto-eval: error: {tmp_path / 'r.json'}: uids missing from the results" in capsys.readouterr().err


def test_detections_must_cover_every_uid(root, tmp_path):
    val = load_split(ann_path(root, "val"), require_objects=True)
    raw = json.loads((root / "sta_models" / "object_detections.json").read_text())
    first = val.annotations[0].uid
    del raw[first]
    (tmp_path / "d.json").write_text(json.dumps(raw))
    with pytest.raises(DataError, match=f"d.json: no detection list for uid '{first}' of fho_sta_val.json"):
        load_detections(tmp_path / "d.json", val)
    kept = load_detections(root / "sta_models" / "object_detections.json", val, score_threshold=0.5)
    assert all((d.scores >= 0.5).all() for d in kept.values())
