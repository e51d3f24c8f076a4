"""The four manipulation tasks of Toto's Figure 6 (Franka/Kuka x pick/cabinet) as pybullet environments.

One class, `ManipEnv`, combines an arm (`robots`) with a scene (`scenes`): each instance owns its own DIRECT
physics client, so several episodes can run side by side and have their frames encoded in one backbone batch.
Control runs at 10 Hz (24 physics substeps of 1/240 s). The action is 4-d in [-1, 1]: a Cartesian step of the
tool point (scaled by `max_step` metres) and a grip command (> 0 closes). Observations are a camera image
(fixed third-person view, TinyRenderer, no display needed) and proprioception. Success is the scene's predicate
held for `hold_steps` consecutive control steps, as PixMC holds it for several steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ._pybullet import data_path, p
from .robots import ARMS, Arm
from .scenes import SCENES

TASK_NAMES = ("franka_pick", "franka_cabinet", "kuka_pick", "kuka_cabinet")
ACTION_DIM = 4


@dataclass(frozen=True)
class EnvConfig:
    """Simulation and camera settings shared by every task."""

    image_size: int = 112  # square camera images, pixels
    max_steps: int = 60  # control steps per episode
    hold_steps: int = 3  # consecutive steps the success predicate must hold
    substeps: int = 24  # physics steps of 1/240 s per control step (10 Hz control)
    max_step: float = 0.04  # metres the tool may move per control step at |action| = 1
    joint_noise: float = 0.05  # radians of seeded noise on the initial joints


@dataclass
class Obs:
    proprio: np.ndarray  # (P,) float32
    image: np.ndarray | None  # (H, W, 3) uint8, None when rendering is off


class ManipEnv:
    """One task instance: `reset(seed)`, then `step(action)` until `done`."""

    # Tool workspace the commanded target is clipped to (robot base at the origin).
    low = np.array([0.2, -0.45, 0.01])
    high = np.array([0.85, 0.45, 0.5])

    def __init__(self, task: str, cfg: EnvConfig = EnvConfig(), render: bool = True) -> None:
        if task not in TASK_NAMES:
            raise ValueError(f"unknown robot task {task!r} (known: {', '.join(TASK_NAMES)})")
        self.task, self.cfg, self.render_images = task, cfg, render
        self.arm_name, self.scene_name = task.split("_")
        self.client = p.connect(p.DIRECT)
        p.setAdditionalSearchPath(data_path(), physicsClientId=self.client)
        self.view = p.computeViewMatrix([0.35, -1.15, 0.95], [0.5, 0.0, 0.15], [0, 0, 1], physicsClientId=self.client)
        self.proj = p.computeProjectionMatrixFOV(50.0, 1.0, 0.05, 5.0, physicsClientId=self.client)
        self.render_seconds = 0.0
        self.arm: Arm
        self.scene: object

    def reset(self, seed: int) -> Obs:
        """Rebuild the world for this seed: the same seed always gives the same initial state."""
        rng = np.random.default_rng(seed)
        c = self.client
        p.resetSimulation(physicsClientId=c)
        p.setGravity(0, 0, -9.81, physicsClientId=c)
        p.setTimeStep(1.0 / 240.0, physicsClientId=c)
        p.loadURDF("plane.urdf", physicsClientId=c)
        self.arm = ARMS[self.arm_name](c)
        self.arm.reset(rng, self.cfg.joint_noise)
        self.scene = SCENES[self.scene_name](c, rng)
        for _ in range(10):  # let the objects settle before the first observation
            p.stepSimulation(physicsClientId=c)
        self.target = np.clip(self.arm.tool_pos(), self.low, self.high)
        self.steps, self.streak = 0, 0
        return self.observe()

    def step(self, action: np.ndarray) -> tuple[Obs, bool, bool]:
        """Apply one control step; returns (observation, success, done)."""
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self.target = np.clip(self.target + a[:3] * self.cfg.max_step, self.low, self.high)
        self.arm.move_tool(self.target)
        self.arm.grip(bool(a[3] > 0), self.scene.grip_targets())
        for _ in range(self.cfg.substeps):
            p.stepSimulation(physicsClientId=self.client)
        self.steps += 1
        self.streak = self.streak + 1 if self.scene.success() else 0
        success = self.streak >= self.cfg.hold_steps
        done = success or self.steps >= self.cfg.max_steps
        return self.observe(), success, done

    def observe(self) -> Obs:
        return Obs(proprio=self.arm.proprio(), image=self.render() if self.render_images else None)

    def render(self) -> np.ndarray:
        """(H, W, 3) uint8 from the fixed camera, CPU TinyRenderer."""
        t0 = time.perf_counter()
        size = self.cfg.image_size
        _, _, rgba, _, _ = p.getCameraImage(
            size, size, self.view, self.proj, renderer=p.ER_TINY_RENDERER, physicsClientId=self.client
        )
        self.render_seconds += time.perf_counter() - t0
        return np.asarray(rgba, dtype=np.uint8).reshape(size, size, 4)[:, :, :3].copy()

    def close(self) -> None:
        if self.client >= 0:
            p.disconnect(physicsClientId=self.client)
            self.client = -1

    def __enter__(self) -> ManipEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
