"""The ego4d_sta task: box pooling on the token grid, the per-box heads, and the whole protocol on mini Ego4D.

Run: python -m pytest tests/test_ego4d_task.py -q
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from toto_eval.backbones.baselines import Pixels
from toto_eval.common.config import build_config
from toto_eval.harness.backbone import Preprocess
from toto_eval.harness.cache import FeatureCache, last_and_mean
from toto_eval.harness.task import RunContext
from toto_eval.tasks.ego4d_sta import mini
from toto_eval.tasks.ego4d_sta.data import load_detections, load_split
from toto_eval.tasks.ego4d_sta.heads import BoxSet, HeadConfig, box_features, fit_heads, split_by_group
from toto_eval.tasks.ego4d_sta.results import score
from toto_eval.tasks.ego4d_sta.score_cli import main as score_main
from toto_eval.tasks.ego4d_sta.task import MINI_VERSION, Config, Ego4DSTA


def test_box_features_pool_inside_the_box():
    t, h, w, d = 2, 4, 4, 3
    grid = np.zeros((t, h, w, d), np.float32)
    grid[-1, :2, :2] = 1.0  # a "hot" top-left quarter on the last frame only
    maps = last_and_mean(torch.from_numpy(grid)[None])[0].reshape(2 * h * w, d).numpy()  # as the cache keeps them
    boxes = np.array([[0, 0, 20, 20], [20, 20, 40, 40]], float)  # pixels of a 40 x 40 frame
    x = box_features(maps, (h, w), boxes, (40, 40))
    assert x.shape == (2, 4 * d)
    last, mean, around, context = x[:, :d], x[:, d : 2 * d], x[:, 2 * d : 3 * d], x[:, 3 * d :]
    assert last[0, 0] > 0.8 and last[1, 0] < 0.01  # the box over the hot cells sees them (bilinear: a little leaks)
    assert mean[0, 0] == pytest.approx(last[0, 0] / 2)  # half the frames are hot
    assert around[1, 0] > 0.05 > last[1, 0]  # the enlarged bottom-right box reaches the hot cells
    assert torch.allclose(context, torch.full_like(context, 4 / 32))  # clip mean: 4 hot cells of 32
    const = box_features(np.full((2 * h * w, d), 0.5, np.float32), (h, w), boxes, (40, 40))
    assert torch.allclose(const, torch.full_like(const, 0.5))


def test_holdout_takes_whole_videos():
    groups = np.repeat(np.array(["a", "b", "c", "d", "e"]), 4)
    fit, hold = split_by_group(groups, 0.2, seed=0)
    assert len(hold) == 4 and len(set(groups[hold])) == 1 and not set(groups[hold]) & set(groups[fit])
    assert sorted(np.concatenate([fit, hold]).tolist()) == list(range(20))


@pytest.fixture
def one_thread():
    # Tiny matrices: with 2 threads on a loaded 2-core machine, thread hand-offs cost more than the arithmetic.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_heads_learn_verbs_and_ttc_deterministically(one_thread):
    rng = np.random.default_rng(0)
    n = 200
    verbs = rng.integers(0, 3, n)
    ttcs = rng.uniform(0.2, 2.0, n)
    x = np.concatenate([np.eye(3)[verbs], ttcs[:, None], rng.normal(0, 0.1, (n, 4))], 1)
    data = BoxSet(
        torch.tensor(x, dtype=torch.float32),
        torch.tensor(verbs),
        torch.tensor(ttcs, dtype=torch.float32),
        np.array([f"v{i % 20}" for i in range(n)]),
    )
    cfg = HeadConfig(hidden=32, dropout=0.0, lrs=(3e-2,), epochs=80, min_steps=0, batch_size=200)
    head, rows = fit_heads(data, 3, cfg, torch.device("cpu"))
    assert rows[0]["holdout_verb_acc"] == 1.0 and rows[0]["holdout_ttc_mae"] < 0.15
    head2, rows2 = fit_heads(data, 3, cfg, torch.device("cpu"))
    assert rows == rows2 and all(
        torch.equal(a, b) for a, b in zip(head.state_dict().values(), head2.state_dict().values(), strict=True)
    )


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> RunContext:
    base = tmp_path_factory.mktemp("sta")
    ctx = RunContext(cache=FeatureCache(base / "features"), data_root=None, mini_root=base / "mini", progress=False)
    small = functools.partial(mini.make_mini, seed=0, videos=(3, 2, 1), episodes=2)  # a smaller mini, made as runs do
    ctx.dataset_root("ego4d", small, MINI_VERSION)
    return ctx


@pytest.fixture(scope="module")
def backbone() -> Pixels:
    return Pixels(patch_size=8, preprocess=Preprocess(resolution=32, frames=4, frame_stride=3))


FAST = {"epochs": 8, "min_steps": 50, "lrs": [3e-3], "hidden": 32}


def run(ctx, backbone, **overrides):
    return Ego4DSTA(build_config(Config, FAST | overrides)).evaluate(backbone, ctx)


def test_oracle_boxes_give_perfect_noun_map(ctx, backbone):
    out = run(ctx, backbone, boxes="oracle")
    assert out.metrics["noun"] == 100.0
    assert 0.0 <= out.metrics["overall"] <= out.metrics["noun_verb"] <= 100.0
    assert out.extra["variant"]["boxes"] == "oracle" and out.extra["comparable_to_table9"] is False
    assert "not comparable to Toto Table 9" in out.extra["note"]
    assert out.selected["layer"] == 0 and out.data["eval"]["n"] == 12 and out.data["train"]["n"] == 18
    assert out.intervals["overall"]["low"] <= out.metrics["overall"] <= out.intervals["overall"]["high"]


def test_detections_keep_the_detector_ranking_and_the_file_scores_the_same(ctx, backbone, tmp_path, capsys):
    out = run(ctx, backbone, boxes="detections", score="detector")
    root = ctx.mini_root / "ego4d"
    val = load_split(root / "annotations" / "fho_sta_val.json", require_objects=True)
    raw = score(val, load_detections(root / "sta_models" / "object_detections.json", val))
    assert out.metrics["noun"] == raw["noun"]  # same boxes, nouns and scores: the Noun mAP cannot move
    argv = ["--annotations", str(root / "annotations" / "fho_sta_val.json"), "--predictions", out.extra["predictions"]]
    assert score_main([*argv, "--output", str(tmp_path / "m.json")]) == 0
    written = json.loads((tmp_path / "m.json").read_text())["metrics"]
    assert {k: written[k] for k in ("noun", "noun_verb", "noun_ttc", "overall")} == {
        k: out.metrics[k] for k in ("noun", "noun_verb", "noun_ttc", "overall")
    }
    again = run(ctx, backbone, boxes="detections", score="detector")  # features now come from the cache
    assert again.metrics == out.metrics and again.extra["cache"]["eval"]["computed"] == 0


def test_verb_topk_expands_each_box(ctx, backbone):
    out = run(ctx, backbone, boxes="oracle", verb_topk=2, predictions_path=str(ctx.mini_root.parent / "p.json"))
    preds = json.loads(Path(out.extra["predictions"]).read_text())["results"]
    for items in preds.values():
        assert len(items) == 2 and items[0]["box"] == items[1]["box"]
        assert items[0]["score"] >= items[1]["score"] and items[0]["verb_category_id"] != items[1]["verb_category_id"]


def test_predict_test_writes_every_unannotated_uid(ctx, backbone):
    out = run(ctx, backbone, boxes="detections", predict_test=True)
    root = ctx.mini_root / "ego4d"
    test = load_split(root / "annotations" / "fho_sta_test_unannotated.json")
    written = json.loads(Path(out.extra["test_predictions"]).read_text())["results"]
    assert set(written) == {a.uid for a in test.annotations} and all(written.values())
    assert "oracle" in run(ctx, backbone, boxes="oracle", predict_test=True).extra["test_predictions"]
