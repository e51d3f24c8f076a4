"""CATER task: label formula, action grammar, rendering visibility, list reading, clip source, metrics, guardrails.

    python -m pytest tests/test_cater.py -q

The guardrails run on the simulation only (no rendering), over 80 seeded scenes: the snitch must be covered at
the end in >= 30 % of videos, the 36 classes must be spread out, and a guesser that sees only the last frame must
stay far below a tracker that sees the sampled clip on the hidden cases (see tasks/cater/oracles.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from toto_eval.backbones.baselines import Pixels
from toto_eval.common.config import build_config
from toto_eval.common.errors import ConfigError, DataError
from toto_eval.harness.backbone import Preprocess
from toto_eval.harness.cache import FeatureCache
from toto_eval.harness.task import RunContext
from toto_eval.tasks.cater import generate_cli
from toto_eval.tasks.cater.data import CaterClips, clip_indices, read_list, snitch_contained_at_end, variant_dir
from toto_eval.tasks.cater.generator import SceneConfig, generate_scene, grid_label, snitch_label
from toto_eval.tasks.cater.metrics import by_final_state, l1_distance, localization_metrics
from toto_eval.tasks.cater.mini import MINI, frame_indices, write_dataset
from toto_eval.tasks.cater.oracles import clip_tracker, last_frame_guess
from toto_eval.tasks.cater.render import SceneRenderer
from toto_eval.tasks.cater.task import Cater

GUARD_SCENES = 80


@pytest.fixture(scope="module")
def scenes():
    return [generate_scene(seed) for seed in range(GUARD_SCENES)]


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "cater" / "all_actions"
    cfg = dataclasses.replace(MINI, videos=6, width=32, height=32, video_frames=12)
    write_dataset(root, cfg)
    return root


def test_label_formula_matches_cater():
    # x_idx = floor(x) + 3, y_idx = floor(y) + 3, class = 6 * y_idx + x_idx
    assert grid_label(-3.0, -3.0) == 0
    assert grid_label(2.99, -3.0) == 5
    assert grid_label(-3.0, 2.5) == 30
    assert grid_label(0.0, 0.0) == 21
    assert grid_label(-0.01, 0.01) == 20
    assert grid_label(2.99, 2.99) == 35
    assert grid_label(2.9, 2.9, side=4) == 15  # 4x4: positions scaled by 2/3
    assert grid_label(-3.0, -3.0, side=8) == 0
    assert grid_label(-0.1, 0.1, side=8) == 4 * 8 + 3


def test_scene_is_a_pure_function_of_the_seed():
    a, b, c = generate_scene(11), generate_scene(11), generate_scene(12)
    assert np.array_equal(a.positions, b.positions) and np.array_equal(a.container, b.container)
    assert a.movements == b.movements and np.array_equal(a.camera, b.camera)
    assert not np.array_equal(a.positions[-1], c.positions[-1]) or len(a.objects) != len(c.objects)


def test_object_set_and_action_grammar(scenes):
    for scene in scenes[:30]:
        shapes = [o.shape for o in scene.objects]
        assert 5 <= len(shapes) <= 10 and shapes[0] == "spl" and shapes[1:3] == ["cone", "cone"]
        assert [o.size for o in scene.objects[:3]] == [0.3, 0.5, 0.75]
        for k, moves in scene.movements.items():
            for action, _, t0, t1 in moves:
                assert 20 <= t1 - t0 <= 30 or t1 == scene.num_frames - 1
                if action == "_rotate":
                    assert shapes[k] in ("cube", "cylinder", "spl")
                if action == "_contain":
                    assert shapes[k] == "cone"


def test_containment_rules_and_carry(scenes):
    for scene in scenes[:30]:
        f, inner = np.nonzero(scene.container >= 0)
        cone = scene.container[f, inner]
        for k, c in zip(inner, cone, strict=True):
            assert scene.objects[c].shape == "cone" and scene.objects[c].radius > scene.objects[k].radius
            assert scene.objects[k].shape in ("cone", "sphere", "spl")
        # covered objects travel with their cone: same (x, y) in every covered frame
        assert np.allclose(scene.positions[f, inner, :2], scene.positions[f, cone, :2])


def test_unrelated_objects_never_collide(scenes):
    for scene in scenes[:20]:
        related = set()
        for f, k in zip(*np.nonzero(scene.container >= 0), strict=True):
            c = int(scene.container[f, k])
            related |= {(int(k), c), (c, int(k))}
        # a nested cover also relates the outer cone and the innermost object
        related |= {(a, d) for a, b in related for c, d in related if b == c and a != d}
        n = len(scene.objects)
        radii = np.array([o.radius for o in scene.objects])
        for i in range(n):
            for j in range(i + 1, n):
                if (i, j) in related:
                    continue
                gap = np.linalg.norm(scene.positions[:, i] - scene.positions[:, j], axis=-1) - radii[i] - radii[j]
                assert gap.min() >= 0.25 - 1e-9, (i, j)


def test_camera_motion_variant_moves_the_camera():
    fixed = generate_scene(3)
    moving = generate_scene(3, SceneConfig(camera_motion=True))
    assert np.allclose(fixed.camera, fixed.camera[0])
    assert np.abs(np.diff(moving.camera, axis=0)).max() > 0.01
    assert np.array_equal(fixed.positions, moving.positions)  # the camera path draws after the motion


def test_guardrail_snitch_hidden_often(scenes):
    hidden = np.mean([s.container[-1, 0] >= 0 for s in scenes])
    assert hidden >= 0.30, f"snitch covered at the end in only {hidden:.0%} of videos"


def test_guardrail_class_histogram_not_degenerate(scenes):
    counts = np.bincount([snitch_label(s) for s in scenes], minlength=36)
    p = counts / counts.sum()
    entropy = -(p[p > 0] * np.log(p[p > 0])).sum() / math.log(36)
    assert (counts > 0).sum() >= 28 and counts.max() <= 0.1 * len(scenes) and entropy > 0.9


def test_guardrail_last_frame_far_below_clip_on_hidden(scenes):
    frames = clip_indices(scenes[0].num_frames, 16)
    labels = np.array([snitch_label(s) for s in scenes])
    guess, hidden = map(np.array, zip(*(last_frame_guess(s) for s in scenes), strict=True))
    tracked = np.array([clip_tracker(s, frames) for s in scenes]) == labels
    assert hidden.sum() >= 20
    assert guess[hidden].mean() <= 0.6, "a last-frame guess finds the hidden snitch too often"
    assert tracked[hidden].mean() - guess[hidden].mean() >= 0.3
    assert guess.mean() <= 0.85


def test_rendered_visibility_and_scene_json(tiny_set):
    for path in sorted((tiny_set / "scenes").glob("*.json")):
        record = json.loads(path.read_text())
        pixels, container = np.array(record["visible_pixels"]), np.array(record["container"])
        assert pixels.shape == container.shape == (12, len(record["objects"]))
        assert (pixels[container >= 0] == 0).all()  # covered objects are never drawn
        assert record["frame_indices"][0] == 0 and record["frame_indices"][-1] == 300
        state = record["snitch"]["final_state"]
        assert (state in ("contained", "carried")) == (container[-1, 0] >= 0)
        assert (state == "visible") == (pixels[-1, 0] > 0 and container[-1, 0] < 0)
        assert snitch_contained_at_end(record["movements"]) == (container[-1, 0] >= 0)


def test_lists_follow_the_official_layout(tiny_set):
    train = read_list(tiny_set / "lists/localize/train.txt", tiny_set)
    val = read_list(tiny_set / "lists/localize/val.txt", tiny_set)
    assert len(train) + len(val) == 6 and {e.name for e in train}.isdisjoint(e.name for e in val)
    for e in train + val:
        record = json.loads((tiny_set / "scenes" / f"{e.video.stem}.json").read_text())
        assert e.label == record["snitch"]["localize"] and e.final_state == record["snitch"]["final_state"]
    assert variant_dir(tiny_set.parent, "all_actions") == tiny_set
    assert variant_dir(tiny_set, "all_actions") == tiny_set  # pointing straight at the variant works too


def test_task_end_to_end_on_pixels(tiny_set, tmp_path):
    backbone = Pixels(patch_size=8, preprocess=Preprocess(resolution=16))
    ctx = RunContext(
        FeatureCache(tmp_path / "features"), data_root=tiny_set.parents[1], mini_root=tmp_path, progress=False
    )
    probe = {"epochs": 2, "lrs": "0.001", "batch_size": 4, "holdout": 0.3}
    cfg = build_config(Cater.Config, {"frames": 4, "probe": probe})
    out = Cater(cfg).evaluate(backbone, ctx)
    m = out.metrics
    assert {"top1", "top5", "l1", "n_visible", "n_hidden"} <= set(m) and 0 <= m["top1"] <= m["top5"] <= 1
    assert m["n_visible"] + m["n_hidden"] == out.data["val"]["evaluated"] == 2
    assert set(out.intervals) == {"top1", "top5", "l1"} and out.intervals["l1"]["low"] <= m["l1"]
    assert out.selected["layer"] == 0 and out.data["num_classes"] == 36
    again = Cater(cfg).evaluate(backbone, ctx)  # warm: read back from the cache, same numbers
    assert again.metrics == m and again.extra["cache"]["train"]["cached"] == out.data["train"]["evaluated"]
    bad = tmp_path / "bad" / "cater" / "all_actions"
    (bad / "lists/localize").mkdir(parents=True)
    (bad / "videos").symlink_to(tiny_set / "videos")
    (bad / "lists/localize/train.txt").write_text((tiny_set / "lists/localize/train.txt").read_text())
    (bad / "lists/localize/val.txt").write_text("CATER_new_000099.mp4 3\n")
    ctx.data_root = bad.parents[1]
    with pytest.raises(DataError, match=r"val\.txt:1: video CATER_new_000099\.mp4 not found"):
        Cater(cfg).evaluate(backbone, ctx)


@pytest.mark.parametrize(
    ("line", "problem"),
    [("missing.mp4 3", "video missing.mp4 not found"), ("{video} 36", "label 36 is outside 0..35"),
     ("{video} -1", "label -1 is outside"), ("{video}", "expected '<video> <label>'"),
     ("{video} x", "is not an integer")],
)  # fmt: skip
def test_bad_list_lines_name_file_and_line(tiny_set, tmp_path, line, problem):
    video = sorted((tiny_set / "videos").iterdir())[0].name
    bad = tmp_path / "train.txt"
    bad.write_text(f"{video} 1\n{line.format(video=video)}\n")
    with pytest.raises(DataError, match=f"train.txt:2: .*{problem}"):
        read_list(bad, tiny_set)


def test_clip_source_samples_uniformly_as_uint8(tiny_set):
    assert clip_indices(301, 16).tolist()[:3] == [0, 20, 40] and clip_indices(301, 16)[-1] == 300
    assert np.array_equal(frame_indices(301, 48)[[0, -1]], [0, 300])
    lst = tiny_set / "lists/localize/train.txt"
    pre = Preprocess(resolution=24)
    clips = CaterClips(read_list(lst, tiny_set), lst, pre, frames=8)
    x = clips.load(0)
    assert x.shape == (1, 8, 3, 24, 24) and x.dtype == torch.uint8  # the cache normalises on the device
    assert torch.equal(x, clips.load(0))
    last = CaterClips(read_list(lst, tiny_set), lst, pre, frames=8, sampling="last").load(0)
    assert last.shape == (1, 1, 3, 24, 24) and torch.equal(last[0, 0], x[0, -1])
    assert clips.identity()["frames"] == 8 and clips.identity()["variant"] == "all_actions"


def test_metrics_on_a_hand_checked_example():
    probs = np.zeros((3, 36))
    probs[0, 21] = 1.0  # right
    probs[1, [0, 7, 14, 3, 4, 5]] = [0.9, 0.5, 0.4, 0.3, 0.2, 0.1]  # argmax 0; label 5 is 6th: outside top-5
    probs[2, [35, 29]] = [0.6, 0.4]  # argmax 35 (x 5, y 5), label 29 (x 5, y 4): top-5 hit, L1 1
    labels = np.array([21, 5, 29])
    m = localization_metrics(probs, labels, [True, False, None])
    assert m["top1"] == pytest.approx(1 / 3) and m["top5"] == pytest.approx(2 / 3)
    assert m["l1"] == pytest.approx((0 + 5 + 1) / 3)  # cell 0 vs 5: |0 - 5| + 0
    assert m["top1_visible"] == 1.0 and m["top1_hidden"] == 0.0 and m["l1_hidden"] == 5.0
    assert m["n_visible"] == 1 and m["n_hidden"] == 1
    assert l1_distance(np.eye(16)[[0]], np.array([15])) == 6.0  # 4x4 grid: corner to corner
    assert by_final_state(probs, labels, ["visible", "carried", None])["carried"] == {"n": 1, "top1": 0.0}


def test_containment_replay_of_a_released_movement_log():
    # medium cone covers the snitch, the large cone covers both, then lifts away: the snitch stays covered
    moves = {
        "Spl_0": [["_no_op", None, 0, 30]],
        "Cone_1": [["_contain", "Spl_0", 10, 30], ["_no_op", None, 40, 60]],
        "Cone_2": [["_contain", "Cone_1", 40, 60], ["_pick_place", None, 70, 95]],
    }
    assert snitch_contained_at_end(moves)
    moves["Cone_1"].append(["_pick_place", None, 100, 125])  # now the medium cone leaves too
    assert not snitch_contained_at_end(moves)


def test_rendering_is_deterministic_and_hides_covered_objects():
    scene = generate_scene(5)
    covered = np.nonzero((scene.container >= 0).any(1))[0]
    frames = [0, int(covered[0]) if len(covered) else 150, 300]
    with SceneRenderer(32, 24) as renderer:
        renderer.load(scene, seed=5)
        first = [renderer.render(f) for f in frames]
        renderer.load(scene, seed=5)
        second = [renderer.render(f) for f in frames]
    for (rgb_a, px_a), (rgb_b, px_b), f in zip(first, second, frames, strict=True):
        assert rgb_a.shape == (24, 32, 3) and np.array_equal(rgb_a, rgb_b) and np.array_equal(px_a, px_b)
        assert (px_a[scene.container[f] >= 0] == 0).all()
    assert first[0][1].sum() > 0  # something is drawn


def test_generate_cli_writes_the_layout_and_refuses_to_overwrite(tmp_path):
    parser = argparse.ArgumentParser()
    generate_cli.add_parser(parser.add_subparsers())
    out = tmp_path / "cater" / "all_actions_cameramotion"
    argv = ["cater-generate", "--out", str(out), "--videos", "3", "--width", "32", "--height", "24", "--frames", "6"]
    args = parser.parse_args([*argv, "--camera-motion", "--no-shadows"])
    assert generate_cli.run(args) == 0
    entries = read_list(out / "lists/localize/train.txt", out) + read_list(out / "lists/localize/val.txt", out)
    assert len(entries) == 3 and all(e.final_state is not None for e in entries)
    record = json.loads((out / "scenes" / f"{entries[0].video.stem}.json").read_text())
    assert len(record["frame_indices"]) == 6 and np.ptp(np.array(record["camera"])[:, :2]) > 0.01
    with pytest.raises(ConfigError, match="not empty"):
        generate_cli.run(args)


def test_mini_camera_frames_the_table_and_shows_the_snitch():
    """The mini set's camera (higher, zoomed) keeps the whole 6x6 table in a 64 px frame, and a visible snitch is
    drawn large enough to find (version 1: 2-4 px in a band of the frame, and every probe at chance)."""
    import pybullet as pb

    from toto_eval.tasks.cater.mini import render_video

    with SceneRenderer(MINI.width, MINI.height, shadows=False, lens_mm=MINI.lens_mm) as renderer:
        view = pb.computeViewMatrix(list(MINI.scene.camera), [0, 0, 0], [0, 0, 1], physicsClientId=renderer.client)
        clip = np.array(renderer.projection).reshape(4, 4).T @ np.array(view).reshape(4, 4).T
        for x, y in ((-3, -3), (3, -3), (3, 3), (-3, 3)):
            u, v, _, w = clip @ np.array([x, y, 0.0, 1.0])
            px, py = (u / w + 1) / 2 * MINI.width, (1 - v / w) / 2 * MINI.height
            assert 1 <= px <= MINI.width - 1 and 4 <= py <= MINI.height - 4  # corners inside, with a margin
    visible = []
    with SceneRenderer(64, 64, shadows=False, lens_mm=MINI.lens_mm, snitch_scale=MINI.snitch_scale) as renderer:
        for seed in range(6):
            _, record = render_video(renderer, generate_scene(seed, MINI.scene), 4, seed)
            if record["snitch"]["final_state"] == "visible":
                visible.append(record["visible_pixels"][-1][0])
            colours = {o["color"] for o in record["objects"][1:]}
            assert "yellow" not in colours  # nothing else is gold-like
    assert len(visible) >= 2 and min(visible) >= 8


def test_mini_generation_is_byte_identical(tmp_path):
    """Two generations of the mini set write the same bytes (mp4s included), so every machine that generates it
    evaluates on the same pixels (version 2's encoder made 148 of 400 videos differ between two generations)."""
    cfg = dataclasses.replace(MINI, videos=30)
    write_dataset(tmp_path / "a", cfg, bars=False)
    write_dataset(tmp_path / "b", cfg, bars=False)
    files = sorted(f.relative_to(tmp_path / "a") for f in (tmp_path / "a").rglob("*") if f.is_file())
    assert len([f for f in files if f.suffix == ".mp4"]) == 30
    assert [f for f in files if (tmp_path / "a" / f).read_bytes() != (tmp_path / "b" / f).read_bytes()] == []


def test_mini_suite_protocol_and_user_overrides():
    """The mini suite's CATER is the 4x4 grid at 8 frames in batches of 16; a user's value wins over a mini one."""
    from toto_eval.harness.evaluate import task_config

    cfg, applied = task_config(Cater, True, None)
    assert (cfg.list_task, cfg.frames, cfg.probe.batch_size) == ("localize_4x4", 8, 16)
    assert applied == Cater.mini
    cfg, applied = task_config(Cater, True, {"probe.batch_size": 64, "frames": 16})
    assert (cfg.list_task, cfg.frames, cfg.probe.batch_size) == ("localize_4x4", 16, 64)
    assert task_config(Cater, False, None)[0] == Cater.Config()  # real data: the paper's protocol
