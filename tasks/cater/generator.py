"""CATER-style scene and motion generator: objects on a table, the action grammar, containment, labels.

This module is pure simulation (numpy, no rendering): it turns a seed into a `Scene`, the per-frame 3-D state of
every object plus the action log, following CATER's generator (Girdhar & Ramanan, ICLR 2020) fact for fact:

- 5-10 objects; object 0 is the golden snitch (size 0.3), objects 1 and 2 a medium and a large cone, the rest
  random shapes {cube, sphere, cylinder, cone} x sizes {0.25, 0.5, 0.75} x 8 colours x 2 materials, placed
  uniformly on [-3, 3]^2 with a minimum gap of 0.25 between bounding spheres;
- time advances in segments while the segment start is <= last frame - 30; a segment is either "single" (every
  top-level group gets one action) or "multi" (try a contain, then single actions for the other groups); every
  action lasts 20-30 frames and starts 0-10 frames into the segment;
- slide (linear), pick-place (lift 2 in the first 20 %, move in the next 60 %, lower in the last 20 %), rotate
  (90 degrees about y; cubes, cylinders and the snitch only), contain (an empty cone pick-places onto a strictly
  smaller cone, sphere or snitch, which may itself hold others: nesting); a group either slides together (carry)
  or its top cone is pick-placed away and the contents stay (reveal);
- actions whose trajectory would bring two bounding spheres closer than the gap are resampled up to 100 times,
  then become a no-op.

Known differences from CATER: no CLEVR "margin along the cardinal directions" at placement (it exists for CLEVR's
left/right questions), straight-line rather than Bezier interpolation of rotations, and the renderer's own
snitch shape and shading (render.py).

Containment is kept as explicit state so the renderer can skip contained objects (they must be invisible, not
merely hidden inside a mesh) and the JSON can say, frame by frame, who covers whom. The label of CATER task 3 is the
snitch's (x, y) at the last frame (a contained snitch shares its cone's x, y), on a 6x6 grid of unit cells.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

SHAPES = ("cube", "sphere", "cylinder", "cone")
SIZES = (0.25, 0.5, 0.75)
COLORS = {  # CLEVR's palette, RGB 0-255
    "gray": (87, 87, 87),
    "red": (173, 35, 35),
    "blue": (42, 75, 215),
    "green": (29, 105, 20),
    "brown": (129, 74, 25),
    "purple": (129, 38, 192),
    "cyan": (41, 208, 208),
    "yellow": (255, 238, 51),
}
MATERIALS = ("rubber", "metal")
SNITCH_COLOR = (255, 215, 0)
PICK_HEIGHT = 2.0
MOVE_MIN, MOVE_MAX, START_JITTER = 20, 30, 10
MAX_TRIALS = 100
CAMERA = (7.3589, -6.9258, 4.9583)  # CLEVR's default camera location; it looks at the origin


@dataclass(frozen=True)
class SceneConfig:
    """Everything that shapes a generated scene; the CATER `all_actions` defaults."""

    num_frames: int = 301  # Blender frames 0..300
    min_objects: int = 5
    max_objects: int = 10
    max_motions: int = 999  # groups moved per segment: 999 = all_actions, 2 = max2action
    min_dist: float = 0.25  # minimum gap between bounding spheres
    camera_motion: bool = False  # the `_cameramotion` variant
    camera_jitter: float = 0.5  # uniform +- per axis on the fixed camera
    camera: tuple[float, float, float] = CAMERA  # the fixed camera's location (the mini suite looks from higher up)
    colors: tuple[str, ...] = tuple(COLORS)  # the palette of the other objects (the mini suite drops gold-like yellow)


@dataclass
class SceneObject:
    shape: str  # "spl" (the snitch), "cube", "sphere", "cylinder" or "cone"
    size: float
    color: str
    material: str

    @property
    def radius(self) -> float:
        """CATER's "sized": the bounding radius used for collisions and resting height (cubes are divided by √2)."""
        return self.size / math.sqrt(2) if self.shape == "cube" else self.size

    @property
    def name(self) -> str:
        return f"{self.shape}_{self.color}_{self.material}_{self.size}"


@dataclass
class Scene:
    """One generated video's full state; F = frames, N = objects."""

    objects: list[SceneObject]
    positions: np.ndarray  # (F, N, 3) float64 object centres
    rotations: np.ndarray  # (F, N, 3) float64 Euler angles (radians)
    container: np.ndarray  # (F, N) int16: the cone directly covering object n at frame f, -1 if none
    camera: np.ndarray  # (F, 3) camera location (it always looks at the origin)
    movements: dict[int, list[tuple[str, int | None, int, int]]] = field(default_factory=dict)  # obj -> actions

    @property
    def num_frames(self) -> int:
        return self.positions.shape[0]


def grid_label(x: float, y: float, side: int = 6) -> int:
    """CATER's localisation class: unit cells over [-3, 3)^2 (scaled for 4x4 / 8x8), `y_idx * side + x_idx`."""
    scale = side / 6.0
    xi = min(max(math.floor(x * scale) + side // 2, 0), side - 1)
    yi = min(max(math.floor(y * scale) + side // 2, 0), side - 1)
    return yi * side + xi


def snitch_label(scene: Scene, side: int = 6) -> int:
    x, y, _ = scene.positions[-1, 0]
    return grid_label(float(x), float(y), side)


def generate_scene(seed: int, cfg: SceneConfig = SceneConfig()) -> Scene:
    """A deterministic scene for `seed`: objects, their motion and containment, the camera path."""
    rng = np.random.default_rng(seed)
    objects = _sample_objects(rng, cfg)
    start = _place(rng, objects, cfg.min_dist)
    sim = _Simulation(rng, objects, start, cfg)
    sim.run()
    camera = _camera_path(rng, cfg)
    return Scene(objects, sim.pos, sim.rot, sim.container_per_frame(), camera, sim.movements)


def _sample_objects(rng: np.random.Generator, cfg: SceneConfig) -> list[SceneObject]:
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    color_names = list(cfg.colors)

    def random_look() -> tuple[str, str]:
        return color_names[rng.integers(len(color_names))], MATERIALS[rng.integers(2)]

    objects = [SceneObject("spl", 0.3, "gold", "metal")]
    objects += [SceneObject("cone", size, *random_look()) for size in (0.5, 0.75)]
    for _ in range(n - 3):
        shape, size = SHAPES[rng.integers(len(SHAPES))], SIZES[rng.integers(len(SIZES))]
        objects.append(SceneObject(shape, size, *random_look()))
    return objects


def _place(rng: np.random.Generator, objects: list[SceneObject], min_dist: float) -> np.ndarray:
    # Rejection sampling, restarting the whole layout when one object finds no room (as CLEVR does).
    for _ in range(1000):
        placed: list[tuple[float, float, float]] = []
        for obj in objects:
            for _ in range(100):
                x, y = rng.uniform(-3, 3, size=2)
                if all(math.hypot(x - px, y - py) - obj.radius - pr >= min_dist for px, py, pr in placed):
                    placed.append((x, y, obj.radius))
                    break
            else:
                break
        if len(placed) == len(objects):
            return np.array([(x, y, r) for x, y, r in placed])  # z = radius: resting on the table
    raise RuntimeError("could not place the objects")  # unreachable for <= 10 objects on a 6x6 table


class _Simulation:
    """CATER's segment loop over groups (lists of object ids, outermost cone first)."""

    def __init__(self, rng: np.random.Generator, objects: list[SceneObject], start: np.ndarray, cfg: SceneConfig):
        self.rng, self.objects, self.cfg = rng, objects, cfg
        self.last = cfg.num_frames - 1
        self.pos = np.repeat(start[None], cfg.num_frames, axis=0)  # (F, N, 3)
        self.rot = np.zeros_like(self.pos)
        self.radii = np.array([o.radius for o in objects])
        self.groups: list[list[int]] = [[i] for i in range(len(objects))]
        self.intervals: list[tuple[int, int, int, int]] = []  # (inner, cone, from frame, until frame exclusive)
        self.settled = 0  # every object rests from this frame on (the end of the latest action so far)
        self.open: dict[int, tuple[int, int]] = {}  # inner -> (cone, from frame) for containments still running
        self.movements: dict[int, list[tuple[str, int | None, int, int]]] = {i: [] for i in range(len(objects))}

    def run(self) -> None:
        cur = 0
        while cur <= self.last - MOVE_MAX:
            end = self._multi(cur) if self.rng.random() < 0.5 else self._single(cur, ignore=())
            cur = end + 1  # a failed contain returns cur - 1: the segment is drawn again

    def container_per_frame(self) -> np.ndarray:
        out = np.full(self.pos.shape[:2], -1, dtype=np.int16)
        closed = self.intervals + [(inner, cone, t0, self.last + 1) for inner, (cone, t0) in self.open.items()]
        for inner, cone, t0, t1 in closed:
            out[t0:t1, inner] = cone
        return out

    def _timing(self, start: int) -> tuple[int, int]:
        duration = int(self.rng.integers(MOVE_MIN, MOVE_MAX + 1))
        t0 = start + int(self.rng.integers(0, START_JITTER + 1))
        return t0, min(t0 + duration, self.last)

    def _multi(self, start: int) -> int:
        # Try random (container, content) pairs; on success the other groups get single actions.
        for _ in range(100):
            i1, i2 = int(self.rng.integers(len(self.groups))), int(self.rng.integers(len(self.groups) - 1))
            i2 += i2 >= i1  # two distinct groups
            t0, t1 = self._timing(start)
            if not self._can_contain(i1, i2, t1):
                continue
            cone, target = self.groups[i1][0], self.groups[i2][0]
            x, y = self.pos[t0, target, :2]
            self.pos[t0 : t1 + 1, cone] = _pick_place(self.pos[t0, cone], x, y, t1 - t0 + 1)
            self.pos[t1 + 1 :, cone] = self.pos[t1, cone]
            self.settled = max(self.settled, t1)
            self.movements[cone].append(("_contain", target, t0, t1))
            self.open[target] = (cone, t1)
            merged = self.groups[i1] + self.groups[i2]
            self.groups = [g for k, g in enumerate(self.groups) if k not in (i1, i2)] + [merged]
            end = self._single(start, ignore=(len(self.groups) - 1,))
            return max(t1, end)
        return start - 1

    def _can_contain(self, i1: int, i2: int, t1: int) -> bool:
        g1, g2 = self.groups[i1], self.groups[i2]
        cone, target = self.objects[g1[0]], self.objects[g2[0]]
        if len(g1) != 1 or cone.shape != "cone" or cone.radius <= target.radius:
            return False
        if target.shape not in ("cone", "sphere", "spl"):
            return False
        landing = np.array([*self.pos[t1, g2[0], :2], self.pos[t1, g1[0], 2]])
        others = [k for g in self.groups if g is not g1 and g is not g2 for k in g]
        gap = np.linalg.norm(self.pos[t1, others] - landing, axis=-1) - self.radii[others] - cone.radius
        return bool(np.all(gap >= self.cfg.min_dist))

    def _single(self, start: int, ignore: tuple[int, ...]) -> int:
        order = [int(k) for k in self.rng.permutation(len(self.groups)) if k not in ignore][: self.cfg.max_motions]
        last_end, splits = -1, []
        for k in order:
            t0, t1 = self._timing(start)
            last_end = max(last_end, t1)
            if self._act(self.groups[k], t0, t1):
                splits.append(k)
        for k in splits:  # the top cone left: its contents become a group of their own
            group = self.groups[k]
            self.groups[k] = group[:1]
            self.groups.append(group[1:])
        return last_end

    def _act(self, group: list[int], t0: int, t1: int) -> bool:
        """Give `group` one collision-free action over frames t0..t1; True when its top cone left its contents."""
        top = self.objects[group[0]]
        if len(group) > 1:
            choices = ("carry", "reveal")
        elif top.shape in ("cone", "sphere"):
            choices = ("slide", "pick_place")
        else:
            choices = ("slide", "pick_place", "rotate")
        others = [k for k in range(len(self.objects)) if k not in group]
        n = t1 - t0 + 1
        for _ in range(MAX_TRIALS + 1):
            action = choices[self.rng.integers(len(choices))]
            x, y = self.rng.uniform(-3, 3, size=2)
            paths = self._paths(group, action, x, y, t0, n)
            if self._clear(group, paths, others, t0) and (action != "reveal" or self._apart(group, paths)):
                break
        else:
            action, paths = "no_op", {k: np.repeat(self.pos[t0, k][None], n, axis=0) for k in group}
        for k, path in paths.items():
            self.pos[t0 : t1 + 1, k] = path
            self.pos[t1 + 1 :, k] = path[-1]
        self.settled = max(self.settled, t1)
        self._log(group, action, t0, t1)
        return action == "reveal"

    def _paths(self, group: list[int], action: str, x: float, y: float, t0: int, n: int) -> dict[int, np.ndarray]:
        here = {k: self.pos[t0, k] for k in group}
        if action in ("slide", "carry"):
            return {k: _slide(p, x, y, n) for k, p in here.items()}
        if action in ("pick_place", "reveal"):
            top = group[0]
            paths = {k: np.repeat(p[None], n, axis=0) for k, p in here.items()}  # contents stay: no-ops
            paths[top] = _pick_place(here[top], x, y, n)
            return paths
        return {k: np.repeat(p[None], n, axis=0) for k, p in here.items()}  # rotate: no translation

    def _clear(self, group: list[int], paths: dict[int, np.ndarray], others: list[int], t0: int) -> bool:
        # Every moved member, along its path and then resting at its end point, against every other object.
        track = np.stack([paths[k] for k in group])  # (M, n, 3)
        n = track.shape[1]
        reach = (self.radii[group][:, None] + self.radii[others][None] + self.cfg.min_dist) ** 2  # (M, O)
        during = ((track[:, :, None] - self.pos[None, t0 : t0 + n, others]) ** 2).sum(-1)  # (M, n, O)
        if np.any(during < reach[:, None]):
            return False
        # Nothing moves after the last scheduled action ends, so the frames up to then (and one more) suffice.
        stop = max(self.settled, t0 + n) + 1
        after = ((track[:, -1, None, None] - self.pos[None, t0 + n : stop, others]) ** 2).sum(-1)  # (M, <=F, O)
        return not np.any(after < reach[:, None])

    def _apart(self, group: list[int], paths: dict[int, np.ndarray]) -> bool:
        a, b = group[0], group[1]
        gap = np.linalg.norm(paths[a][-1] - paths[b][-1]) - self.radii[a] - self.radii[b]
        return bool(gap >= self.cfg.min_dist)

    def _log(self, group: list[int], action: str, t0: int, t1: int) -> None:
        top = group[0]
        if action == "rotate":
            angle = np.linspace(0.0, math.pi / 2, t1 - t0 + 1)
            self.rot[t0 : t1 + 1, top, 1] = self.rot[t0, top, 1] + angle
            self.rot[t1 + 1 :, top, 1] = self.rot[t1, top, 1]
        if action == "reveal":
            inner = group[1]
            cone, since = self.open.pop(inner)
            self.intervals.append((inner, cone, since, t0 + 1))  # visible once the cone starts lifting
        top_name = {"carry": "_slide", "reveal": "_pick_place"}.get(action, f"_{action}")
        for k in group:
            self.movements[k].append((top_name if k == top or action == "carry" else "_no_op", None, t0, t1))


@functools.cache
def _ramp(n: int) -> np.ndarray:
    """(n, 1) weights 0..1, both ends included (cached: the simulation asks for the same few lengths)."""
    w = np.linspace(0.0, 1.0, n)[:, None]
    w.flags.writeable = False
    return w


def _slide(p: np.ndarray, x: float, y: float, n: int) -> np.ndarray:
    """(n, 3) linear path from p to (x, y, p.z), both ends included."""
    return p + _ramp(n) * (np.array([x, y, p[2]]) - p)


def _pick_place(p: np.ndarray, x: float, y: float, n: int) -> np.ndarray:
    """(n, 3): lift by PICK_HEIGHT over the first 20 % of frames, move over the next 60 %, lower over the rest."""
    n1, n2 = int(0.2 * n) + 1, int(0.8 * n) - int(0.2 * n)
    up = p + np.array([0.0, 0.0, PICK_HEIGHT])
    over = np.array([x, y, up[2]])
    down = np.array([x, y, p[2]])
    lift = p + _ramp(n1) * (up - p)
    move = up + _ramp(n2) * (over - up)
    lower = over + _ramp(n - n1 - n2) * (down - over)
    return np.concatenate([lift, move, lower])


def _camera_path(rng: np.random.Generator, cfg: SceneConfig) -> np.ndarray:
    """(F, 3) camera locations: CLEVR's camera with jitter; with motion, a new key pose every 30 frames."""
    start = np.array(cfg.camera) + rng.uniform(-cfg.camera_jitter, cfg.camera_jitter, size=3)
    if not cfg.camera_motion:
        return np.repeat(start[None], cfg.num_frames, axis=0)
    last = cfg.num_frames - 1
    keys, poses = [0], [start]
    for t in [*range(30, last, 30), last]:
        pose = poses[-1].copy()
        if t != last:  # CATER moves along x or along y (never both: the path would cross the origin)
            pose[int(rng.integers(2))] = rng.choice([-10.0, 10.0])
            pose[2] = rng.choice([8.0, 10.0, 12.0])
        keys.append(t)
        poses.append(pose)
    out = np.empty((cfg.num_frames, 3))
    for (ta, pa), (tb, pb) in itertools.pairwise(zip(keys, poses, strict=True)):
        s = np.linspace(0.0, 1.0, tb - ta + 1)[:, None]
        s = s * s * (3 - 2 * s)  # ease in and out, like Blender's default Bezier keyframes
        out[ta : tb + 1] = pa * (1 - s) + pb * s
    return out
