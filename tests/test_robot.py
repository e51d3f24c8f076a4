"""Robot manipulation: environments, experts, demos, BC head, rollouts, Wilson intervals.

Run: python -m pytest tests/test_robot.py -q            (fast, ~1 min on 2 loaded cores)
     python -m pytest tests/test_robot.py -q -m slow    (expert success over 20 seeds per task; BC from oracle
                                                         features reaches the expert, proprio alone does not)
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from toto_eval.common.errors import DataError
from toto_eval.tasks.robot._pybullet import p
from toto_eval.tasks.robot.control import demo_states
from toto_eval.tasks.robot.demos import EVAL_SEED0, Demo, expert_rate, load_demos, record_demos
from toto_eval.tasks.robot.envs import TASK_NAMES, EnvConfig, ManipEnv
from toto_eval.tasks.robot.experts import ScriptedExpert, run_expert
from toto_eval.tasks.robot.policy import BCConfig, train_bc
from toto_eval.tasks.robot.rollout import Episode, evaluate_expert, evaluate_policy, run_lockstep, summarize

SMALL = EnvConfig(image_size=32, max_steps=40)


def test_summary_carries_the_wilson_interval():
    # k=5, n=10, z=1.96: symmetric around 0.5, half = 1.96 * sqrt(0.025 + 0.009604) / 1.38416 = 0.26341
    episodes = [Episode(seed=i, success=i % 2 == 0, steps=3) for i in range(10)]
    assert summarize(episodes)["ci95"] == pytest.approx([0.2366, 0.7634], abs=1e-4)


def test_tasks_register_without_pybullet():
    """Registering the tasks does not import pybullet (a source build on some platforms): without it every other
    task runs, and the robot task's first simulator call says what is missing in one line."""
    script = """
import sys
sys.modules["pybullet"] = None  # any import of pybullet now fails
from toto_eval.common.errors import ConfigError
from toto_eval.harness.evaluate import load_builtins
from toto_eval.harness.registry import TASKS
load_builtins()
assert "robot" in TASKS.names() and TASKS.get("robot").name == "robot"
from toto_eval.tasks.robot.envs import ManipEnv, EnvConfig
try:
    ManipEnv("franka_pick", EnvConfig())
except ConfigError as err:
    print(err)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.startswith("the robot task needs pybullet (pip install pybullet)")


def test_written_out_orientations_equal_pybullets():
    from toto_eval.tasks.robot.robots import DOWN_FRANKA, DOWN_KUKA

    assert p.getQuaternionFromEuler([np.pi, 0.0, 0.0]) == DOWN_FRANKA
    assert p.getQuaternionFromEuler([0.0, np.pi, 0.0]) == DOWN_KUKA


def test_reset_is_a_pure_function_of_the_seed():
    with ManipEnv("franka_pick", SMALL) as a, ManipEnv("franka_pick", SMALL) as b:
        oa, ob = a.reset(7), b.reset(7)
        np.testing.assert_array_equal(oa.proprio, ob.proprio)
        np.testing.assert_array_equal(oa.image, ob.image)
        assert oa.image.shape == (32, 32, 3) and oa.image.dtype == np.uint8
        cube7 = a.scene.object_pos()
        a.reset(8)
        assert np.abs(a.scene.object_pos() - cube7).max() > 1e-3


@pytest.mark.parametrize("task", TASK_NAMES)
def test_expert_succeeds_on_two_seeds(task):
    with ManipEnv(task, EnvConfig(), render=False) as env:
        for seed in (0, 1):
            observations, actions, success = run_expert(env, seed)
            assert success, f"{task} expert failed on seed {seed} (progress {env.scene.progress():.3f})"
            assert len(observations) == len(actions) <= env.cfg.max_steps
            assert np.abs(np.stack(actions)).max() <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("task", TASK_NAMES)
def test_expert_success_rate_at_least_90_percent(task):
    episodes, _ = evaluate_expert(task, EnvConfig(), [EVAL_SEED0 + i for i in range(20)])
    assert sum(e.success for e in episodes) >= 18


def test_demos_are_recorded_once_and_reused(tmp_path):
    folder = record_demos(tmp_path, "kuka_pick", SMALL, 2)
    demos = load_demos(folder, 2)
    assert [d.seed for d in demos] == [0, 1]
    d = demos[0]
    assert d.images.shape[1:] == (32, 32, 3) and len(d.images) == len(d.proprio) == len(d.actions)
    manifest = (folder / "manifest.json").read_text()
    mtimes = {f.name: f.stat().st_mtime_ns for f in folder.iterdir()}
    assert record_demos(tmp_path, "kuka_pick", SMALL, 2) == folder
    assert (folder / "manifest.json").read_text() == manifest
    assert {f.name: f.stat().st_mtime_ns for f in folder.iterdir()} == mtimes
    assert expert_rate(folder) == (2, 2)
    with pytest.raises(DataError, match="holds 2 demos, 3 needed"):
        load_demos(folder, 3)


def test_state_control_reads_the_objects_position_by_replaying_each_demo(tmp_path):
    demos = load_demos(record_demos(tmp_path, "kuka_pick", SMALL, 2), 2)
    states = demo_states("kuka_pick", SMALL, demos)
    first = len(demos[0].actions)
    assert states.shape == (first + len(demos[1].actions), 3)
    with ManipEnv("kuka_pick", SMALL, render=False) as env:
        env.reset(demos[1].seed)
        np.testing.assert_allclose(states[first], env.scene.state(), atol=1e-6)  # the second demo's first frame
    assert states[0][2] < 0.03 < 0.1 < states[first - 1][2]  # the cube rests on the floor, then is lifted
    proprio = demos[1].proprio.copy()
    proprio[5] += 0.01  # a recording the simulator does not reproduce
    moved = Demo(demos[1].seed, demos[1].images, proprio, demos[1].actions)
    with pytest.raises(DataError, match=r"^kuka_pick demo seed 1: its replay leaves the recording at step 5$"):
        demo_states("kuka_pick", SMALL, [demos[0], moved])


def test_bad_demo_files_are_one_line_data_errors(tmp_path):
    folder = record_demos(tmp_path, "franka_pick", SMALL, 1)
    (folder / "ep_00000.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"ep_00000\.npz: corrupt demo file"):
        load_demos(folder, 1)
    (folder / "manifest.json").write_text("{")
    with pytest.raises(DataError, match="malformed demo manifest"):
        load_demos(folder, 1)
    with pytest.raises(DataError, match="not found"):
        load_demos(tmp_path / "nothing", 1)


def test_bc_head_fits_and_is_deterministic():
    rng = np.random.default_rng(0)
    feats, proprio = rng.normal(size=(256, 16)), rng.normal(size=(256, 5))
    actions = np.tanh(feats[:, :4] + proprio[:, :4]).astype(np.float32)
    cfg = BCConfig(epochs=40, warmup_epochs=4, batch_size=128)
    head, losses = train_bc(feats, proprio, actions, cfg, seed=3)
    assert losses[-1] < 0.1 * losses[0]
    again, losses2 = train_bc(feats, proprio, actions, cfg, seed=3)
    assert losses == losses2
    for a, b in zip(head.state_dict().values(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    blind, _ = train_bc(None, proprio, actions, cfg, seed=3)
    assert blind.image is None and blind.act(None, proprio[:2]).shape == (2, 4)


def test_simulator_error_fails_only_that_episode(monkeypatch):
    real_step = ManipEnv.step

    def flaky(self, action):
        if self.seed_for_test == 11 and self.steps == 2:
            raise p.error("Not connected to physics server.")
        return real_step(self, action)

    real_reset = ManipEnv.reset

    def reset(self, seed):
        self.seed_for_test = seed
        return real_reset(self, seed)

    monkeypatch.setattr(ManipEnv, "step", flaky)
    monkeypatch.setattr(ManipEnv, "reset", reset)
    rng = np.random.default_rng(0)
    cfg = BCConfig(epochs=2, warmup_epochs=1)
    head, _ = train_bc(None, rng.normal(size=(8, 19)), rng.normal(size=(8, 4)), cfg, seed=0)
    episodes, timing = evaluate_policy("franka_pick", EnvConfig(max_steps=5), [10, 11, 12], head, None, parallel=2)
    assert [e.seed for e in episodes] == [10, 11, 12]
    assert episodes[1].error == "error: Not connected to physics server." and not episodes[1].success
    assert episodes[1].steps == 2
    assert episodes[0].error is None and episodes[2].error is None and episodes[2].steps == 5
    assert timing["steps"] == 5 + 3 + 5  # actions issued: the failing third one counts


def test_manifest_records_failed_expert_seeds(tmp_path, monkeypatch):
    import toto_eval.tasks.robot.demos as demos_mod

    real = demos_mod.run_expert

    def sometimes(env, seed):
        observations, actions, success = real(env, seed)
        return observations, actions, success and seed != 0

    monkeypatch.setattr(demos_mod, "run_expert", sometimes)
    folder = record_demos(tmp_path, "franka_pick", SMALL, 1)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [(e["seed"], e["success"]) for e in manifest["episodes"]] == [(0, False), (1, True)]
    assert [d.seed for d in load_demos(folder, 1)] == [1]


def _oracle(env: ManipEnv) -> np.ndarray:
    # The privileged object position, made zero-mean so the head's LayerNorm keeps it: (8,).
    key = env.scene.object_pos() if env.scene_name == "pick" else env.scene.handle_pos()
    return np.concatenate([key, -key, [1.0, -1.0]]).astype(np.float32)


@pytest.mark.slow
def test_bc_recovers_the_expert_when_features_carry_the_object_position():
    """The BC pipeline is able to learn: oracle features -> near-expert success, proprio alone -> near zero."""
    cfg, bc = EnvConfig(max_steps=50), BCConfig(epochs=200, warmup_epochs=20)
    feats, proprio, actions = [], [], []
    with ManipEnv("franka_pick", cfg, render=False) as env:
        for seed in range(20):
            obs, done = env.reset(seed), False
            expert = ScriptedExpert(env)
            while not done:
                action = expert.act()
                feats.append(_oracle(env))
                proprio.append(obs.proprio)
                actions.append(action)
                obs, _, done = env.step(action)
    head, _ = train_bc(np.stack(feats), np.stack(proprio), np.stack(actions), bc, seed=0)
    blind, _ = train_bc(None, np.stack(proprio), np.stack(actions), bc, seed=0)
    seeds = [EVAL_SEED0 + i for i in range(20)]

    def oracle_policy(obs, envs):
        return head.act(np.stack([_oracle(e) for e in envs]), np.stack([o.proprio for o in obs]))

    def blind_policy(obs, envs):
        return blind.act(None, np.stack([o.proprio for o in obs]))

    oracle = summarize(run_lockstep("franka_pick", cfg, seeds, oracle_policy, render=False, parallel=4)[0])
    floor = summarize(run_lockstep("franka_pick", cfg, seeds, blind_policy, render=False, parallel=4)[0])
    assert oracle["successes"] >= 17 and floor["successes"] <= 5
