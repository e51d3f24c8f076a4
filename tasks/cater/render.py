"""Render a generated CATER-style scene with pybullet's CPU renderer (TinyRenderer), frame by frame.

pybullet's `ER_TINY_RENDERER` is a small software rasteriser with Lambert + specular shading and shadows; it
needs no GPU or display and returns, with each RGB image, a per-pixel body-id buffer. That buffer gives exact
visibility: an object is visible in a frame when at least one pixel shows it. Contained objects are moved far
below the table for the frames they are covered, so they are skipped rather than relying on the cone mesh to hide
them (the snitch would poke through a cone's tip otherwise). Only the frames that go into the video are drawn.

Geometry follows CLEVR/CATER: the "size" is the bounding radius r; spheres have radius r, cylinders radius r and
half-height r, cubes half-side r/√2, cones base radius r and height 2r; every object rests with its centre at
z = r. The snitch is a gold metal sphere with two thin wings, so it stays distinguishable from yellow spheres.
"""

from __future__ import annotations

import math

import numpy as np
import pybullet as pb

from .generator import COLORS, SNITCH_COLOR, Scene

FLOOR_RGB = (0.55, 0.55, 0.55)
SKY = 1e3  # where hidden objects are parked (below the table, outside every view)
CONE_SEGMENTS = 24


class SceneRenderer:
    """One pybullet DIRECT client; `load(scene)` builds a scene's bodies, `render(f)` draws its frame f.

    The client is reused across scenes (connecting costs more than drawing a 64x64 frame); use it as a context
    manager, or call `close`.
    """

    def __init__(
        self,
        width: int,
        height: int,
        shadows: bool = True,
        light_jitter: float = 1.0,
        lens_mm: float = 35.0,
        snitch_scale: float = 1.0,
    ) -> None:
        self.width, self.height, self.shadows, self.light_jitter = width, height, shadows, light_jitter
        self.snitch_scale = snitch_scale  # drawn size of the snitch relative to CATER's (labels are unaffected)
        self.client = pb.connect(pb.DIRECT)
        hfov = 2 * math.degrees(math.atan(16 / lens_mm))  # CLEVR camera: 35 mm lens, 32 mm sensor
        aspect = width / height
        vfov = 2 * math.degrees(math.atan(math.tan(math.radians(hfov / 2)) / aspect))
        self.projection = pb.computeProjectionMatrixFOV(vfov, aspect, 0.1, 100.0, physicsClientId=self.client)
        self.scene: Scene | None = None
        self.bodies: list[int] = []
        self.light: list[float] = []

    def close(self) -> None:
        pb.disconnect(self.client)

    def __enter__(self) -> SceneRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def load(self, scene: Scene, seed: int = 0) -> None:
        """Replace the bodies with `scene`'s; `seed` draws the light jitter."""
        pb.resetSimulation(physicsClientId=self.client)
        rng = np.random.default_rng(seed)
        # CLEVR's key light with +-1 jitter, expressed as a direction towards the light.
        light = np.array([-1.0, -3.0, 6.0]) + rng.uniform(-self.light_jitter, self.light_jitter, size=3)
        self.light = (light / np.linalg.norm(light)).tolist()
        self._floor()
        self.bodies = [self._body(obj.shape, obj.size, obj.color, obj.material) for obj in scene.objects]
        self.scene = scene

    def render(self, f: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame f -> (rgb (H, W, 3) uint8, visible pixel count per object (N,) int64)."""
        scene = self.scene
        assert scene is not None, "load() a scene first"
        for k, body in enumerate(self.bodies):
            hidden = scene.container[f, k] >= 0
            pos = [0.0, 0.0, -SKY] if hidden else scene.positions[f, k].tolist()
            orn = pb.getQuaternionFromEuler(scene.rotations[f, k].tolist())
            pb.resetBasePositionAndOrientation(body, pos, orn, physicsClientId=self.client)
        view = pb.computeViewMatrix(scene.camera[f].tolist(), [0, 0, 0], [0, 0, 1], physicsClientId=self.client)
        _, _, rgba, _, seg = pb.getCameraImage(
            self.width,
            self.height,
            view,
            self.projection,
            lightDirection=self.light,
            shadow=int(self.shadows),
            renderer=pb.ER_TINY_RENDERER,
            physicsClientId=self.client,
        )
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(self.height, self.width, 4)[..., :3]
        seg = np.asarray(seg, dtype=np.int64).reshape(-1)
        counts = np.bincount(seg[seg >= 0], minlength=max(self.bodies) + 1)
        return rgb.copy(), counts[self.bodies]

    def _floor(self) -> None:
        shape = pb.createVisualShape(
            pb.GEOM_BOX,
            halfExtents=[30, 30, 0.05],
            rgbaColor=[*FLOOR_RGB, 1],
            specularColor=[0, 0, 0],  # a specular floor shows TinyRenderer's per-vertex shading seams
            physicsClientId=self.client,
        )
        pb.createMultiBody(0, -1, shape, [0, 0, -0.05], physicsClientId=self.client)

    def _body(self, shape: str, size: float, color: str, material: str) -> int:
        rgb = SNITCH_COLOR if shape == "spl" else COLORS[color]
        rgba = [c / 255 for c in rgb] + [1.0]
        specular = [0.9, 0.9, 0.9] if material == "metal" else [0.1, 0.1, 0.1]
        kw = {"rgbaColor": rgba, "specularColor": specular, "physicsClientId": self.client}
        if shape == "sphere":
            visual = pb.createVisualShape(pb.GEOM_SPHERE, radius=size, **kw)
        elif shape == "cube":
            half = size / math.sqrt(2)
            visual = pb.createVisualShape(pb.GEOM_BOX, halfExtents=[half] * 3, **kw)
        elif shape == "cylinder":
            visual = pb.createVisualShape(pb.GEOM_CYLINDER, radius=size, length=2 * size, **kw)
        elif shape == "cone":
            vertices, indices = _cone_mesh(size)
            visual = pb.createVisualShape(pb.GEOM_MESH, vertices=vertices, indices=indices, **kw)
        else:  # the snitch: a ball with two wings
            size *= self.snitch_scale
            visual = pb.createVisualShapeArray(
                [pb.GEOM_SPHERE, pb.GEOM_BOX],
                radii=[0.6 * size, 0],
                halfExtents=[[0, 0, 0], [size, 0.15 * size, 0.03]],
                rgbaColors=[rgba, rgba],
                visualFramePositions=[[0, 0, 0], [0, 0, 0.1 * size]],
                physicsClientId=self.client,
            )
        return pb.createMultiBody(0, -1, visual, [0, 0, -SKY], physicsClientId=self.client)


def _cone_mesh(r: float) -> tuple[list[list[float]], list[int]]:
    """A closed cone of base radius r and height 2r, centred (like every object) at half its height."""
    angles = np.linspace(0, 2 * math.pi, CONE_SEGMENTS, endpoint=False)
    ring = [[r * math.cos(a), r * math.sin(a), -r] for a in angles]
    vertices = [[0.0, 0.0, r], [0.0, 0.0, -r], *ring]  # apex, base centre, rim
    indices: list[int] = []
    for i in range(CONE_SEGMENTS):
        a, b = 2 + i, 2 + (i + 1) % CONE_SEGMENTS
        indices += [0, a, b, 1, b, a]  # side (counter-clockwise from outside), base
    return vertices, indices
