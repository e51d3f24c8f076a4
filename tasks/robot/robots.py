"""The two arms (Franka Panda with its parallel gripper, Kuka iiwa with a suction tool) behind one interface.

Both are driven the same way so that one 4-d action space serves every task: a Cartesian target for the tool
point (gripper pointing down, fixed yaw) solved by pybullet's damped-least-squares IK with null-space rest poses,
plus a binary grip command. The Kuka in pybullet_data has no hand (PixMC's Kuka carries a 23-DoF Allegro hand);
a hand-rolled two-finger grasp was unreliable, so the Kuka grips by "suction": a fixed constraint to whatever the
tool tip touches when the grip command is on. That is a deliberate, named simplification.

The Franka is drawn with its collision meshes (about 3k triangles) instead of its visual meshes (about 100k): the
software renderer's cost is per triangle, so a 64 px frame costs 4 ms of CPU instead of 31 ms, and at the
camera's 64-112 px the two look the same (physics always used the collision meshes).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from ._pybullet import data_path, p

# Tool-down orientations, as pybullet's getQuaternionFromEuler gives them (bit for bit), written out so that
# importing this module does not load pybullet.
DOWN_FRANKA = (1.0, 0.0, 0.0, math.cos(math.pi / 2))  # Euler (pi, 0, 0): fingers close along world y
DOWN_KUKA = (0.0, 1.0, 0.0, math.cos(math.pi / 2))  # Euler (0, pi, 0)


class Arm:
    """A fixed-base arm with a tool point, IK position control and a grip command."""

    urdf: str
    ee_link: int
    arm_joints: tuple[int, ...]
    rest: tuple[float, ...]
    orientation: tuple[float, ...]
    max_force: float = 240.0

    base: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __init__(self, client: int) -> None:
        self.client = client
        self.uid = p.loadURDF(self.urdf_path(), self.base, useFixedBase=True, physicsClientId=client)
        info = [p.getJointInfo(self.uid, j, physicsClientId=client) for j in self.arm_joints]
        self.lower = [i[8] for i in info]
        self.upper = [i[9] for i in info]
        self.ranges = [u - lo for lo, u in zip(self.lower, self.upper, strict=True)]
        self.closed = False

    def reset(self, rng: np.random.Generator, noise: float = 0.05) -> None:
        """Rest pose with seeded joint noise (PixMC randomises initial joints too)."""
        q = np.asarray(self.rest) + rng.uniform(-noise, noise, len(self.rest))
        for j, v in zip(self.arm_joints, q, strict=True):
            p.resetJointState(self.uid, j, float(v), physicsClientId=self.client)
        self.closed = False

    def urdf_path(self) -> str:
        return self.urdf

    def tool_pos(self) -> np.ndarray:
        state = p.getLinkState(self.uid, self.ee_link, computeForwardKinematics=True, physicsClientId=self.client)
        return np.asarray(state[4]) - self.tool_offset()

    def tool_offset(self) -> np.ndarray:
        """Tool point relative to the IK link frame, in world axes (the tool always points down)."""
        return np.zeros(3)

    def move_tool(self, target: np.ndarray) -> None:
        """Position targets for the joints that put the tool point at `target`."""
        q = p.calculateInverseKinematics(
            self.uid,
            self.ee_link,
            (np.asarray(target) + self.tool_offset()).tolist(),
            self.orientation,
            lowerLimits=self.lower,
            upperLimits=self.upper,
            jointRanges=self.ranges,
            restPoses=list(self.rest),
            maxNumIterations=50,
            physicsClientId=self.client,
        )
        p.setJointMotorControlArray(
            self.uid,
            list(self.arm_joints),
            p.POSITION_CONTROL,
            targetPositions=list(q[: len(self.arm_joints)]),
            forces=[self.max_force] * len(self.arm_joints),
            physicsClientId=self.client,
        )

    def joint_state(self) -> np.ndarray:
        """(2 * n_joints,) positions then velocities."""
        states = p.getJointStates(self.uid, list(self.arm_joints), physicsClientId=self.client)
        return np.asarray([s[0] for s in states] + [s[1] for s in states], dtype=np.float32)

    def proprio(self) -> np.ndarray:
        """Joint positions and velocities, tool position, gripper state: what the policy may see."""
        return np.concatenate([self.joint_state(), self.tool_pos(), self.gripper_state()]).astype(np.float32)

    def gripper_state(self) -> np.ndarray:
        raise NotImplementedError

    def grip(self, close: bool, objects: list[tuple[int, int]]) -> None:
        """Apply the grip command; `objects` lists the (body, link) pairs a suction tool may stick to."""
        raise NotImplementedError


def light_franka_urdf() -> str:
    """pybullet_data's Panda URDF with every visual mesh replaced by its collision mesh (written once, by content)."""
    folder = Path(data_path()) / "franka_panda"
    text = (folder / "panda.urdf").read_text()
    text = re.sub(r"package://meshes/visual/(\w+)\.obj", r"package://meshes/collision/\1.obj", text)
    text = text.replace("package://meshes/", f"{folder.as_posix()}/meshes/")  # absolute: the copy lives elsewhere
    path = Path(tempfile.gettempdir()) / f"toto_eval_panda_{hashlib.sha256(text.encode()).hexdigest()[:12]}.urdf"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return str(path)


class Franka(Arm):
    """Franka Panda; tool point = between the fingertips (link 11, panda_grasptarget)."""

    urdf = "franka_panda/panda.urdf"
    ee_link = 11
    arm_joints = (0, 1, 2, 3, 4, 5, 6)
    fingers = (9, 10)
    rest = (0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.785)
    orientation = DOWN_FRANKA
    finger_force = 150.0  # enough to pinch a drawer handle without slipping

    def urdf_path(self) -> str:
        return light_franka_urdf()  # the same links and joints, lighter visual meshes

    def reset(self, rng: np.random.Generator, noise: float = 0.05) -> None:
        super().reset(rng, noise)
        for j in self.fingers:
            p.resetJointState(self.uid, j, 0.04, physicsClientId=self.client)
        self.grip(False, [])

    def gripper_state(self) -> np.ndarray:
        states = p.getJointStates(self.uid, list(self.fingers), physicsClientId=self.client)
        return np.asarray([s[0] for s in states], dtype=np.float32)

    def grip(self, close: bool, objects: list[tuple[int, int]]) -> None:
        self.closed = close
        p.setJointMotorControlArray(
            self.uid,
            list(self.fingers),
            p.POSITION_CONTROL,
            targetPositions=[0.0 if close else 0.04] * 2,
            forces=[self.finger_force] * 2,
            physicsClientId=self.client,
        )


class Kuka(Arm):
    """Kuka iiwa (no hand in pybullet_data) with a suction tool 5 cm below the flange (link 6)."""

    urdf = "kuka_iiwa/model.urdf"
    ee_link = 6
    arm_joints = (0, 1, 2, 3, 4, 5, 6)
    rest = (0.0, 0.5, 0.0, -1.6, 0.0, 1.0, 0.0)
    base = (-0.15, 0.0, 0.0)  # the iiwa cannot bring a downward tool closer than ~0.4 m to its base
    orientation = DOWN_KUKA
    tool_length = 0.05
    reach = 0.015  # suction engages on anything this close to the tool tip

    def __init__(self, client: int) -> None:
        super().__init__(client)
        self.constraint: int | None = None

    def reset(self, rng: np.random.Generator, noise: float = 0.05) -> None:
        self._release()
        super().reset(rng, noise)

    def tool_offset(self) -> np.ndarray:
        return np.array([0.0, 0.0, self.tool_length])

    def gripper_state(self) -> np.ndarray:
        return np.asarray([float(self.closed), float(self.constraint is not None)], dtype=np.float32)

    def grip(self, close: bool, objects: list[tuple[int, int]]) -> None:
        self.closed = close
        if not close:
            self._release()
        elif self.constraint is None:
            self._attach(objects)

    def _attach(self, objects: list[tuple[int, int]]) -> None:
        for body, link in objects:
            hits = p.getClosestPoints(self.uid, body, self.reach, self.ee_link, link, physicsClientId=self.client)
            if not hits:
                continue
            # Freeze the current relative pose. Constraint frames are relative to each link's centre of mass,
            # which is what getLinkState[0:2] and getBasePositionAndOrientation return.
            ee = p.getLinkState(self.uid, self.ee_link, physicsClientId=self.client)
            if link < 0:
                pos, orn = p.getBasePositionAndOrientation(body, physicsClientId=self.client)
            else:
                pos, orn = p.getLinkState(body, link, physicsClientId=self.client)[0:2]
            inv_pos, inv_orn = p.invertTransform(ee[0], ee[1])
            rel_pos, rel_orn = p.multiplyTransforms(inv_pos, inv_orn, pos, orn)
            self.constraint = p.createConstraint(
                self.uid,
                self.ee_link,
                body,
                link,
                p.JOINT_FIXED,
                (0, 0, 0),
                rel_pos,
                (0, 0, 0),
                parentFrameOrientation=rel_orn,
                physicsClientId=self.client,
            )
            p.changeConstraint(self.constraint, maxForce=200.0, physicsClientId=self.client)
            return

    def _release(self) -> None:
        if self.constraint is not None:
            p.removeConstraint(self.constraint, physicsClientId=self.client)
            self.constraint = None


ARMS: dict[str, type[Arm]] = {"franka": Franka, "kuka": Kuka}
