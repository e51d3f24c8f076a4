"""Mini Kinetics: generated clips whose class can only be read from how things move over time.

Twelve classes (see `CLASSES`): direction of motion, rotation sense, approach or recede, appear or vanish, a
bounce (reversal halfway) and orbiting. Every clip draws its own shape, two-colour texture (stripes, checks or
halves, fixed in the object's frame so rotation shows), noise background, size and speed from the seed. The
classes are built so that a single frame says almost nothing: positions and angles are uniform (the frame wraps
around like a torus, so any frame of a moving object is anywhere), sizes at the middle frame are drawn from one
distribution for every class, and appear/vanish events fall at a random time, so an empty frame is as likely in
either. Only appear/vanish leave a single-frame cue (an empty frame narrows the class to those two). The
background is a random crop of a real photograph shipped in a required wheel (the mini ImageNet's photos), so
the clips are also varied material for pre-training `toto_tiny` on the train split.

The output is the official Kinetics layout, so the mini task runs exactly the code real Kinetics runs:

    annotations/train.csv, annotations/val.csv   label,youtube_id,time_start,time_end,split (labels quoted)
    train/<youtube_id>_<start:06d>_<end:06d>.mp4   64x64, 64 frames at 24 fps, H.264
    val/...

`make_mini(root)` is deterministic in `seed`; the default set (12 classes x 20 train + 12 val clips: version 1's
4 val clips per class gave intervals of +-14 points) is written in about 20 CPU seconds.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toto_eval.harness.video import write_video

VERSION = "3"  # bump when the generated data changes: a stale mini dataset is then regenerated
# (3: mp4s written with x264 mb-tree off, so that a regenerated set is bit-identical to the last one)

CLASSES = (
    "moving left",
    "moving right",
    "moving up",
    "moving down",
    "rotating clockwise",
    "rotating counterclockwise",
    "approaching",
    "receding",
    "appearing",
    "vanishing",
    "bouncing",
    "orbiting",
)
SHAPES = ("disk", "square", "diamond", "triangle", "cross", "ellipse")
TEXTURES = ("stripes", "checks", "halves")
ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


@dataclass(frozen=True)
class MiniSpec:
    """Size of the generated set; the defaults keep generation plus a toto_test run well under two minutes."""

    train_per_class: int = 20
    val_per_class: int = 12
    size: int = 64  # frame side in pixels
    frames: int = 64  # an 8x8 mini clip spans 57 of them, so test segments and random train clips differ
    fps: int = 24
    seed: int = 0


def make_mini(root: Path, spec: MiniSpec = MiniSpec()) -> None:
    """Write the mini set under `root` (official CSV + mp4 layout)."""
    rng = np.random.default_rng(spec.seed)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for split, per_class in (("train", spec.train_per_class), ("val", spec.val_per_class)):
        (root / split).mkdir(exist_ok=True)
        rows = []
        for label in range(len(CLASSES)):
            for _ in range(per_class):
                youtube_id = _new_id(rng, used)
                start = int(rng.integers(0, 300))
                name = f"{youtube_id}_{start:06d}_{start + 10:06d}.mp4"
                write_video(root / split / name, render_clip(label, rng, spec.size, spec.frames), fps=spec.fps)
                rows.append((CLASSES[label], youtube_id, start, start + 10, split))
        order = rng.permutation(len(rows))  # real CSVs are not grouped by class
        with open(root / "annotations" / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f, quoting=csv.QUOTE_MINIMAL)
            writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
            writer.writerows(rows[i] for i in order)


def render_clip(label: int, rng: np.random.Generator, size: int = 64, frames: int = 80) -> np.ndarray:
    """One clip of class `label` as uint8 `(frames, size, size, 3)`."""
    t = np.arange(frames, dtype=np.float32) - (frames - 1) / 2  # time relative to the middle frame
    motion = _motion(CLASSES[label], t, rng, size)
    background = _background(rng, size)  # (size, size, 3) float in [0, 1], a photo crop
    colours = rng.uniform(0.55, 1.0, (2, 3)) if rng.random() < 0.5 else rng.uniform(0.0, 0.45, (2, 3))
    # keep the object off the background's brightness: dark objects on a light background or the reverse
    background = 0.5 * background + (0.45 if colours.mean() < 0.5 else 0.0)
    shape, texture = SHAPES[rng.integers(len(SHAPES))], TEXTURES[rng.integers(len(TEXTURES))]
    frequency = rng.uniform(1.5, 3.0)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    x, y, angle, radius = (motion[k].astype(np.float32)[:, None, None] for k in ("x", "y", "angle", "radius"))
    # offsets to the object centre on the torus, then into the object's rotated, scaled frame: (T, size, size)
    dx = (xs - x + size / 2) % size - size / 2
    dy = (ys - y + size / 2) % size - size / 2
    u = (np.cos(angle) * dx + np.sin(angle) * dy) / radius
    v = (np.cos(angle) * dy - np.sin(angle) * dx) / radius
    inside = _inside(shape, u, v) & motion["visible"][:, None, None]
    tone = _texture(texture, u, v, frequency)  # (T, size, size) bool
    c0, c1, bg = (np.round(255 * a).astype(np.uint8) for a in (colours[0], colours[1], background))
    return np.where(inside[..., None], np.where(tone[..., None], c1, c0), bg)  # (T, size, size, 3) uint8


def _motion(name: str, t: np.ndarray, rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
    """Per-frame centre x, y (pixels), angle (radians), radius (pixels) and visibility of the object."""
    n = len(t)
    x0, y0, angle0 = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(0, 2 * np.pi)
    radius0 = rng.uniform(0.11, 0.2) * size  # the middle frame's size, the same distribution for every class
    speed, spin = rng.uniform(0.35, 0.8), rng.uniform(0.04, 0.12)  # px / frame, rad / frame
    x, y = np.full(n, x0), np.full(n, y0)
    angle, radius, visible = np.full(n, angle0), np.full(n, radius0), np.ones(n, dtype=bool)
    event = rng.uniform(-0.2, 0.2) * n  # appear / vanish / bounce time, relative to the middle
    direction = rng.uniform(0, 2 * np.pi)
    if name.startswith("moving"):
        dx, dy = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}[name.split()[1]]
        x, y = x0 + dx * speed * t, y0 + dy * speed * t
    elif name.startswith("rotating"):
        angle = angle0 + (spin if name == "rotating clockwise" else -spin) * t  # image y points down: +angle = cw
    elif name in ("approaching", "receding"):
        growth = np.log(rng.uniform(1.8, 2.6)) / n * (1 if name == "approaching" else -1)
        radius = radius0 * np.exp(growth * t)
    elif name in ("appearing", "vanishing"):
        visible = (t >= event) if name == "appearing" else (t < event)
    elif name == "bouncing":
        travel = speed * (event - np.abs(t - event))  # out along `direction`, back after the event
        x, y = x0 + np.cos(direction) * travel, y0 + np.sin(direction) * travel
    elif name == "orbiting":
        orbit, sense = rng.uniform(0.12, 0.22) * size, rng.choice([-1, 1])
        phase = direction + sense * speed / orbit * t
        x, y = x0 + orbit * np.cos(phase), y0 + orbit * np.sin(phase)
    return {"x": x, "y": y, "angle": angle, "radius": radius, "visible": visible}


def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Mask of the unit-size shape in object coordinates."""
    if shape == "disk":
        return u * u + v * v <= 1
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.85
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.1
    if shape == "triangle":
        return (v <= 0.6) & (v >= 1.7 * np.abs(u) - 1.0)
    if shape == "cross":
        return (np.minimum(np.abs(u), np.abs(v)) <= 0.35) & (np.maximum(np.abs(u), np.abs(v)) <= 1)
    return (u / 1.2) ** 2 + (v / 0.6) ** 2 <= 1  # ellipse


def _texture(kind: str, u: np.ndarray, v: np.ndarray, frequency: float) -> np.ndarray:
    """Which of the two colours each pixel of the object takes (bool), fixed in the object's frame."""
    if kind == "stripes":
        return np.floor(u * frequency) % 2 == 1
    if kind == "checks":
        return (np.floor(u * frequency) + np.floor(v * frequency)) % 2 == 1
    return u > 0  # halves


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random crop of a real photo (the mini ImageNet's wheel photos), mirrored half the time."""
    from toto_eval.tasks.imagenet_probe.mini import background, wheel_photos

    return background(wheel_photos(), rng, size)


def _new_id(rng: np.random.Generator, used: set[str]) -> str:
    while True:
        youtube_id = "".join(ID_CHARS[i] for i in rng.integers(0, len(ID_CHARS), 11))
        if youtube_id not in used:
            used.add(youtube_id)
            return youtube_id
