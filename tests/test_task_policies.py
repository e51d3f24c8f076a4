"""Policies every task shares, written once in harness/task.py and harness/evaluate.py: the unreadable-fraction
rule, the single-layer choice, the seeded --limit subset, the mini suite's config values under the user's, and
nested config overrides.

Run: python -m pytest tests/test_task_policies.py -q
"""

from __future__ import annotations

import pytest

from toto_eval.common.config import build_config, nest, parse_overrides
from toto_eval.common.errors import ConfigError, DataError
from toto_eval.harness.cache import FeatureCache, Features
from toto_eval.harness.evaluate import task_config
from toto_eval.harness.probes import ProbeConfig
from toto_eval.harness.task import RunContext, seeded_rows, unreadable_counts
from toto_eval.tasks.k400.task import K400Probe


def _feats(n: int, bad: dict[str, str]) -> Features:
    return Features([f"s{i}" for i in range(n)], {}, {}, (1, 1, 1), skipped=bad)


def test_unreadable_rule_counts_missing_and_scales_under_limit():
    ok = unreadable_counts("val", _feats(40, {"s1": "b.mp4: cannot decode"}), 0.05, ["a.mp4"], present=40)
    assert (ok["annotated"], ok["evaluated"], ok["skipped"]) == (41, 39, 2)
    assert ok["unreadable"] == {"s1": "b.mp4: cannot decode"} and ok["missing"] == ["a.mp4"]
    with pytest.raises(DataError, match=r"^3 of 41 val samples missing or unreadable \(> 5%\): a\.mp4; c\.mp4; b\.mp4"):
        unreadable_counts("val", _feats(39, {"s1": "b.mp4: cannot decode"}), 0.05, ["a.mp4", "c.mp4"], present=39)
    with pytest.raises(DataError, match=r"^2 of 101 val"):  # --limit 10: 1 unreadable in 10 stands for 10 in 100
        unreadable_counts("val", _feats(10, {"s1": "b.mp4: cannot decode"}), 0.05, ["a.mp4"], present=100)


class _Backbone:
    num_layers, default_layer = 6, 3


def _ctx(tmp_path, **kw) -> RunContext:
    return RunContext(cache=FeatureCache(tmp_path), data_root=None, mini_root=tmp_path, **kw)


def test_single_layer_choice(tmp_path):
    assert _ctx(tmp_path).single_layer(_Backbone()) == 3
    assert _ctx(tmp_path).single_layer(_Backbone(), -1) == 5
    assert _ctx(tmp_path, layers=[1]).single_layer(_Backbone()) == 1
    assert _ctx(tmp_path, layers=[1, 2]).single_layer(_Backbone()) == 3  # several: the default, with a warning
    assert _ctx(tmp_path, layers=[1]).single_layer(_Backbone(), 4) == 4  # the task's own setting wins


def test_limit_subset_is_seeded_by_the_limit_seed_alone_and_ordered(tmp_path):
    rows = seeded_rows(100, 7, seed=3)
    assert list(rows) == sorted(rows) and len(set(rows)) == 7
    assert _ctx(tmp_path, limit=7, limit_seed=3).limited(list(range(100))) == list(rows)
    # --seed does not move the subset: runs of different seeds read the same samples
    assert _ctx(tmp_path, limit=7, seed=3).limited(list(range(100))) == list(seeded_rows(100, 7, seed=0))
    assert _ctx(tmp_path).limited([1, 2]) == [1, 2]


def test_mini_values_apply_under_the_users():
    cfg, applied = task_config(K400Probe, mini=True, overrides=None)
    assert applied == {"max_frames": 8, "test_segments": 2, "test_crops": 1} and cfg.test_segments == 2
    cfg, applied = task_config(K400Probe, mini=True, overrides={"test_segments": "4", "probe.epochs": "3"})
    assert cfg.test_segments == 4 and "test_segments" not in applied and cfg.probe.epochs == 3
    assert cfg.probe.weight_decays == (1e-2,)  # the task's own nested default survives a nested override
    cfg, applied = task_config(K400Probe, mini=False, overrides=None)
    assert applied == {} and cfg.test_segments == 8


def test_nested_overrides_from_the_command_line():
    over = parse_overrides(["k400_probe.probe.lrs=[1e-3,3e-3]", "k400_probe.frames=8"])
    assert over == {"k400_probe": {"probe.lrs": "[1e-3,3e-3]", "frames": "8"}}
    cfg = build_config(K400Probe.Config, over["k400_probe"])
    assert cfg.probe.lrs == (1e-3, 3e-3) and cfg.frames == 8
    assert nest({"probe.lrs": 1, "probe.epochs": 2, "x": 3}) == {"probe": {"lrs": 1, "epochs": 2}, "x": 3}
    with pytest.raises(ConfigError, match=r"k400_probe\.probe: unknown key 'lr' \(known: "):
        build_config(K400Probe.Config, {"probe.lr": "1"}, where="k400_probe")
    with pytest.raises(ConfigError, match="unknown probe 'attentiv'; did you mean attentive"):
        build_config(ProbeConfig, {"probe": "attentiv"})
