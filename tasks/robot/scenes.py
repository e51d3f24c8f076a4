"""The two object scenes: a cube to lift, and a procedurally built cabinet with a drawer to open.

pybullet_data ships no articulated cabinet, so one is written as URDF text from a few dimensions (a fixed carcass,
a prismatic drawer with joint limits, a fin-shaped handle a parallel gripper can pinch and a suction tool can
grab from above) and loaded from a content-named temp file. Each scene randomises its pose from the episode's
generator and exposes the privileged state the scripted experts read (never a backbone's policy), plus the scalar
`progress` its success predicate thresholds. `state()` is the object's position in one 3-vector: what the state
control (`control.py`) feeds the behaviour-cloning head in place of image features.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

from ._pybullet import p


class PickScene:
    """`cube_small.urdf` (5 cm) on the floor; success = lifted above `lift_height`."""

    lift_height = 0.12
    half = 0.025

    def __init__(self, client: int, rng: np.random.Generator) -> None:
        self.client = client
        x = 0.5 + rng.uniform(-0.1, 0.1)
        y = rng.uniform(-0.15, 0.15)
        yaw = rng.uniform(-0.4, 0.4)
        orn = p.getQuaternionFromEuler([0.0, 0.0, yaw])
        self.uid = p.loadURDF("cube_small.urdf", [x, y, self.half], orn, physicsClientId=client)
        p.changeDynamics(self.uid, -1, lateralFriction=1.5, physicsClientId=client)
        p.changeVisualShape(self.uid, -1, rgbaColor=(0.9, 0.15, 0.1, 1.0), physicsClientId=client)

    def grip_targets(self) -> list[tuple[int, int]]:
        return [(self.uid, -1)]

    def object_pos(self) -> np.ndarray:
        return np.asarray(p.getBasePositionAndOrientation(self.uid, physicsClientId=self.client)[0])

    def state(self) -> np.ndarray:
        return self.object_pos()

    def progress(self) -> float:
        """Height of the cube's centre above its resting height, in metres."""
        return float(self.object_pos()[2] - self.half)

    def success(self) -> bool:
        return self.object_pos()[2] > self.lift_height


class CabinetScene:
    """A cabinet facing the robot (-x) with one drawer; success = drawer opened more than `open_distance`."""

    open_distance = 0.15
    size = (0.30, 0.40, 0.30)  # carcass depth (x), width (y), height (z)
    handle_z = 0.20
    handle_out = 0.08  # how far the fin sticks out of the drawer front
    grasp_out = 0.05  # where along the fin the expert grasps, from the front

    def __init__(self, client: int, rng: np.random.Generator) -> None:
        self.client = client
        x = 0.85 + rng.uniform(-0.05, 0.05)
        y = rng.uniform(-0.1, 0.1)
        self.base = np.array([x, y, 0.0])
        self.uid = p.loadURDF(
            str(cabinet_urdf(self.size, self.handle_z, self.handle_out)),
            self.base.tolist(),
            useFixedBase=True,
            physicsClientId=client,
        )
        # A weak velocity motor acts as joint friction, so the drawer stays where it was left.
        p.setJointMotorControl2(self.uid, 0, p.VELOCITY_CONTROL, targetVelocity=0.0, force=1.0, physicsClientId=client)
        p.changeDynamics(self.uid, 1, lateralFriction=2.0, physicsClientId=client)

    def grip_targets(self) -> list[tuple[int, int]]:
        return [(self.uid, 1), (self.uid, 0)]

    def handle_pos(self) -> np.ndarray:
        """The grasp point on the fin, in world coordinates (moves with the drawer)."""
        front = self.base[0] - self.size[0] / 2 - self.opening()
        return np.array([front - self.grasp_out, self.base[1], self.handle_z])

    def state(self) -> np.ndarray:
        return self.handle_pos()

    def opening(self) -> float:
        return float(p.getJointState(self.uid, 0, physicsClientId=self.client)[0])

    def progress(self) -> float:
        return self.opening()

    def success(self) -> bool:
        return self.opening() > self.open_distance


def _box(name: str, size: tuple[float, float, float], xyz: tuple[float, float, float], rgba: str, mass: float) -> str:
    s = " ".join(f"{v:.4f}" for v in size)
    o = " ".join(f"{v:.4f}" for v in xyz)
    geom = f'<origin xyz="{o}"/><geometry><box size="{s}"/></geometry>'
    return (
        f'<link name="{name}"><inertial><origin xyz="{o}"/><mass value="{mass}"/>'
        f'<inertia ixx="0.01" iyy="0.01" izz="0.01" ixy="0" ixz="0" iyz="0"/></inertial>'
        f'<visual>{geom}<material name="{name}_m"><color rgba="{rgba}"/></material></visual>'
        f"<collision>{geom}</collision></link>"
    )


def cabinet_urdf(size: tuple[float, float, float], handle_z: float, handle_out: float) -> Path:
    """Write (once) and return the cabinet URDF; the origin is the carcass's footprint centre on the floor."""
    dx, dy, dz = size
    front = -dx / 2
    panel_h = 0.12
    links = [
        _box("carcass", (dx, dy, dz), (0.0, 0.0, dz / 2), "0.55 0.4 0.25 1", 0.0),
        _box("drawer", (0.02, dy - 0.04, panel_h), (front - 0.01, 0.0, handle_z), "0.8 0.7 0.5 1", 1.0),
        _box(
            "handle", (handle_out, 0.012, 0.04), (front - 0.02 - handle_out / 2, 0.0, handle_z), "0.2 0.2 0.25 1", 0.1
        ),
    ]
    joints = (
        '<joint name="slide" type="prismatic"><parent link="carcass"/><child link="drawer"/>'
        '<axis xyz="-1 0 0"/><limit lower="0" upper="0.30" effort="100" velocity="1"/></joint>'
        '<joint name="grip" type="fixed"><parent link="drawer"/><child link="handle"/></joint>'
    )
    text = f'<?xml version="1.0"?><robot name="cabinet">{"".join(links)}{joints}</robot>\n'
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"toto_eval_cabinet_{digest}.urdf"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return path


SCENES: dict[str, type] = {"pick": PickScene, "cabinet": CabinetScene}
