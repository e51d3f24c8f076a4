"""The state control: behaviour cloning from the object's true position instead of image features.

A backbone's policy sees the scene only through its pooled features, and the proprioception-only head is the
floor it must beat. The state control trains the same head, on the same demonstrations and seeds, with the
object's position read from the simulator at every step (the cube's centre, the grasp point on a drawer's
handle) where the image features would go: what a representation that located the object perfectly would reach
with this many demonstrations. With the floor it measures a setting's dynamic range. Where the two meet, the
setting cannot rank representations: at the mini suite's first setting (4 demonstrations per task) this control
reached 37.5% against proprioception's 29.7%, at 16 demonstrations 75.0% against 39.1%.
"""

from __future__ import annotations

import numpy as np

from toto_eval.common.errors import DataError

from .demos import Demo
from .envs import EnvConfig, ManipEnv
from .policy import BCConfig, train_bc
from .rollout import run_lockstep, summarize

REPLAY_ATOL = 1e-4  # proprioception drift a replay may show before it no longer follows its recording


def demo_states(task: str, env_cfg: EnvConfig, demos: list[Demo]) -> np.ndarray:
    """(N_frames, 3): the object's position at every demo frame, in the order the demos' frames are stacked.

    Demos store images, not the scene, so each is replayed from its seed with its recorded actions (pybullet
    is deterministic); a replay whose proprioception leaves the recording is a one-line DataError.
    """
    rows = []
    with ManipEnv(task, env_cfg, render=False) as env:
        for demo in demos:
            obs = env.reset(demo.seed)
            for t, action in enumerate(demo.actions):
                if not np.allclose(obs.proprio, demo.proprio[t], atol=REPLAY_ATOL):
                    raise DataError(f"{task} demo seed {demo.seed}: its replay leaves the recording at step {t}")
                rows.append(env.scene.state())
                obs, _, _ = env.step(action)
    return np.asarray(rows, dtype=np.float32)


def state_control(
    task: str, env_cfg: EnvConfig, bc: BCConfig, demos: list[Demo], seeds: list[int], bc_seed: int, parallel: int
) -> dict:
    """Train the head on (object position, proprioception) and roll it out on `seeds`: success, interval, loss."""
    proprio = np.concatenate([d.proprio for d in demos])
    actions = np.concatenate([d.actions for d in demos])
    head, losses = train_bc(demo_states(task, env_cfg, demos), proprio, actions, bc, seed=bc_seed)

    def policy(obs: list, envs: list[ManipEnv]) -> np.ndarray:
        states = np.stack([env.scene.state() for env in envs]).astype(np.float32)
        return head.act(states, np.stack([o.proprio for o in obs]))

    episodes, _ = run_lockstep(task, env_cfg, seeds, policy, render=False, parallel=parallel)
    return summarize(episodes) | {"train_loss": float(losses[-1])}
