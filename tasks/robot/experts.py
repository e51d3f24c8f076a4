"""Scripted experts: a few Cartesian waypoints solved by the arm's IK, walked through as phases.

An expert reads privileged state (cube pose, handle position) that the policy never sees, and emits actions in
the same 4-d space the policy uses, so its demonstrations can be cloned directly. Each phase moves the tool to
a waypoint with a fixed grip command and ends when the tool is within `tol` of it (or after `patience` steps,
so a blocked arm never stalls an episode); the grip phases wait a few steps for the fingers or the suction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .envs import ManipEnv


@dataclass
class Phase:
    goal: np.ndarray  # (3,) tool target, metres
    close: bool  # grip command during the phase
    tol: float = 0.015  # metres: the phase ends when the tool is this close to `goal`
    wait: int = 0  # if > 0: hold still this many steps instead of checking `tol`
    patience: int = 30  # steps before moving on regardless


class ScriptedExpert:
    """Phase machine over the current env; `act()` returns the next 4-d action."""

    def __init__(self, env: ManipEnv) -> None:
        self.env = env
        self.phases = plan(env)
        self.index, self.count = 0, 0

    def act(self) -> np.ndarray:
        phase = self.phases[min(self.index, len(self.phases) - 1)]
        tool = self.env.arm.tool_pos()
        if self.index < len(self.phases) - 1 and self._finished(phase, tool):
            self.index, self.count = self.index + 1, 0
            phase = self.phases[self.index]
        self.count += 1
        delta = (phase.goal - self.env.target) / self.env.cfg.max_step
        return np.concatenate([np.clip(delta, -1.0, 1.0), [1.0 if phase.close else -1.0]]).astype(np.float32)

    def _finished(self, phase: Phase, tool: np.ndarray) -> bool:
        if phase.wait:
            return self.count >= phase.wait
        return bool(np.linalg.norm(tool - phase.goal) < phase.tol or self.count >= phase.patience)


def plan(env: ManipEnv) -> list[Phase]:
    """Waypoints for this episode, computed once from the scene's initial state."""
    scene, suction = env.scene, env.arm_name == "kuka"
    if env.scene_name == "pick":
        obj = scene.object_pos()
        # Fingers grasp the cube around its centre; the suction tool presses onto its top face.
        grasp = obj + np.array([0.0, 0.0, scene.half - 0.008 if suction else -0.005])
        lift = np.array([obj[0], obj[1], 0.30])
        return [
            Phase(grasp + np.array([0.0, 0.0, 0.12]), close=False),
            Phase(grasp, close=False, tol=0.008),
            Phase(grasp, close=True, wait=4),
            Phase(lift, close=True, patience=1000),
        ]
    handle = scene.handle_pos()
    # Pinch the fin around its middle, or stick the suction tool onto the top edge near its tip (the wide Kuka
    # flange would otherwise touch the drawer front before the tool reaches the fin).
    grasp = handle + (np.array([-0.035, 0.0, 0.012]) if suction else np.zeros(3))
    pulled = grasp - np.array([0.26, 0.0, 0.0])
    return [
        Phase(grasp + np.array([0.0, 0.0, 0.12]), close=False),
        Phase(grasp, close=False, tol=0.008),
        Phase(grasp, close=True, wait=4),
        Phase(pulled, close=True, patience=1000),
    ]


def run_expert(env: ManipEnv, seed: int) -> tuple[list, list[np.ndarray], bool]:
    """One expert episode: (observations, actions, success). observations[t] is seen before actions[t]."""
    obs = env.reset(seed)
    expert = ScriptedExpert(env)
    observations, actions = [obs], []
    done = success = False
    while not done:
        action = expert.act()
        obs, success, done = env.step(action)
        actions.append(action)
        observations.append(obs)
    return observations[:-1], actions, success
