"""Mini DAVIS: small generated sequences in the official DAVIS-2017 layout (val and train), for CPU runs and tests.

Each sequence is a textured background seen through a slowly panning camera, with 1-3 textured objects (ellipses
and rounded boxes carrying stripes, checks or blotches that move with them) on straight or gently curving paths,
drawn in a fixed depth order so they occlude one another; in some sequences an object leaves the frame. The files
are exactly DAVIS's: `JPEGImages/480p/<seq>/%05d.jpg`, `Annotations/480p/<seq>/%05d.png` (VOC-palette PNGs with
ids 1..K, every object present in frame 0) and `ImageSets/2017/{val,train}.txt`. Everything is a pure function of
the seed. Version 1 had 5 val sequences (11 objects): J&F's interval was wider than any difference between models.
Version 2 has 16 val sequences (sizes, lengths, object counts and exits drawn from the seed) and 24 train sequences
(the DAVIS layout has a train split too): what a positive control may learn correspondence from, and material for
pre-training; the task itself reads val only. Version 3 keeps those layouts but makes colour useless for
correspondence: every texture of a sequence (background and objects) mixes colours drawn from one small palette,
and the light changes from frame to frame (a global brightness swing, a slow colour cast and an offset), so that
raw pixel patches, which matched the flat-coloured objects of version 2 better than any learned feature (J&F
71.6 against 46.7 for the correspondence-trained control), no longer can; and it has 64 train sequences, from
which the control learns correspondence that carries over to val (it memorised 24). Version 4 has 48 val
sequences, the first 16 those of version 3 unchanged: with 16, the bootstrap interval of J&F was about +-5 points
wide and the paired difference of two backbones about +-3, as large as what pre-training changes.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from .data import write_labels

VERSION = "4"  # bump when the generated data changes: a stale mini dataset is then regenerated


@dataclass(frozen=True)
class SequenceSpec:
    name: str
    size: tuple[int, int]  # (H, W)
    frames: int
    objects: int
    exit: bool  # the first object leaves the frame before the end


NAMED: tuple[SequenceSpec, ...] = (  # version 1's five, kept first in val
    SequenceSpec("mini-blob", (72, 128), 14, 1, False),
    SequenceSpec("mini-cross", (64, 112), 16, 2, False),
    SequenceSpec("mini-exit", (80, 128), 18, 2, True),
    SequenceSpec("mini-trio", (72, 96), 20, 3, False),
    SequenceSpec("mini-pan", (64, 128), 12, 3, True),
)
SIZES = ((72, 128), (64, 112), (80, 128), (72, 96), (64, 128))
SPLITS = {"val": 48, "train": 64}  # sequences per split


def sequence_specs(split: str, seed: int = 0) -> list[SequenceSpec]:
    """The sequences of one split: size, length (12-20 frames), 1-3 objects, an exit in about a third."""
    rng = np.random.default_rng([seed, zlib.crc32(split.encode())])
    specs = list(NAMED) if split == "val" else []
    for i in range(len(specs), SPLITS[split]):
        size = SIZES[int(rng.integers(len(SIZES)))]
        frames, objects, exit_ = int(rng.integers(12, 21)), int(rng.integers(1, 4)), bool(rng.random() < 0.35)
        specs.append(SequenceSpec(f"mini-{split}-{i:02d}", size, frames, objects, exit_))
    return specs


SEQUENCES: tuple[SequenceSpec, ...] = tuple(sequence_specs("val"))  # the val split of the default seed


def make_mini(root: Path, seed: int = 0) -> None:
    """Write the mini DAVIS under `root` (the folder that will hold JPEGImages/, Annotations/, ImageSets/)."""
    root = Path(root)
    sets = root / "ImageSets" / "2017"
    sets.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        specs = sequence_specs(split, seed)
        for spec in specs:
            write_sequence(root, spec, np.random.default_rng([seed, zlib.crc32(spec.name.encode())]))
        (sets / f"{split}.txt").write_text("".join(f"{s.name}\n" for s in specs))


def write_sequence(root: Path, spec: SequenceSpec, rng: np.random.Generator) -> None:
    """One sequence's JPEG frames and palette PNG annotations (every frame annotated, as in DAVIS val)."""
    frames, labels = render_sequence(spec, rng)
    for t, (frame, label) in enumerate(zip(frames, labels, strict=True)):
        path = root / "JPEGImages" / "480p" / spec.name / f"{t:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame).save(path, quality=92)
        write_labels(root / "Annotations" / "480p" / spec.name / f"{t:05d}.png", label)


def _texture(rng: np.random.Generator, shape: tuple[int, int], palette: np.ndarray) -> np.ndarray:
    """`(H, W, 3)` float in [0, 255]: two of the palette's colours mixed by stripes, checks or smooth blotches,
    plus grain."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    kind = rng.integers(3)
    if kind == 0:
        angle, period = rng.uniform(0, np.pi), rng.uniform(4, 10)
        mix = 0.5 + 0.5 * np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period)
    elif kind == 1:
        cell = rng.integers(3, 7)
        mix = ((x // cell + y // cell) % 2).astype(np.float64)
    else:
        noise = ndimage.gaussian_filter(rng.standard_normal((h, w)), rng.uniform(2, 5))
        mix = (noise > 0).astype(np.float64) * 0.8 + 0.2 * (noise - noise.min()) / (np.ptp(noise) + 1e-9)
    a, b = palette[rng.choice(len(palette), size=2, replace=False)] + rng.normal(0, 8, size=(2, 3))
    image = a * mix[..., None] + b * (1 - mix[..., None])
    return image + rng.normal(0, 6, size=(h, w, 3))


def _shape_mask(rng: np.random.Generator, ry: float, rx: float) -> np.ndarray:
    """A boolean ellipse or rounded box of half-sizes (ry, rx), in its own `(2ry+1, 2rx+1)` frame."""
    y, x = np.mgrid[-int(ry) : int(ry) + 1, -int(rx) : int(rx) + 1].astype(np.float64)
    if rng.random() < 0.5:
        return (y / ry) ** 2 + (x / rx) ** 2 <= 1.0
    return (np.abs(y / ry) ** 4 + np.abs(x / rx) ** 4) <= 1.0


@dataclass
class _Object:
    mask: np.ndarray  # (h, w) bool, the object's silhouette
    texture: np.ndarray  # (h, w, 3) float, moves with the object
    start: np.ndarray  # (y, x) centre at frame 0
    velocity: np.ndarray  # (dy, dx) pixels per frame
    wobble: float  # amplitude of a sideways sine on the path


def _objects(spec: SequenceSpec, rng: np.random.Generator, palette: np.ndarray) -> list[_Object]:
    h, w = spec.size
    slots = np.linspace(0, w, spec.objects + 2)[1:-1]  # distinct columns at frame 0, so all ids are visible
    out = []
    for k in range(spec.objects):
        ry, rx = rng.uniform(0.14, 0.24) * h, rng.uniform(0.08, 0.14) * w
        mask = _shape_mask(rng, ry, rx)
        start = np.array([rng.uniform(0.35, 0.65) * h, slots[k] + rng.uniform(-0.03, 0.03) * w])
        speed = rng.uniform(0.6, 1.6)
        velocity = np.array([rng.uniform(-0.4, 0.4), speed * (1 if k % 2 == 0 else -1)])
        if spec.exit and k == 0:
            velocity[1] = 1.6 * (w - start[1] + rx) / spec.frames  # off the right edge about 60 % of the way
        out.append(_Object(mask, _texture(rng, mask.shape, palette), start, velocity, rng.uniform(0, 3)))
    return out


def _paste(canvas: np.ndarray, labels: np.ndarray, obj: _Object, centre: np.ndarray, obj_id: int) -> None:
    # Clip the object's box to the frame; objects pasted later are in front.
    h, w = labels.shape
    oh, ow = obj.mask.shape
    top, left = round(centre[0]) - oh // 2, round(centre[1]) - ow // 2
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + oh, h), min(left + ow, w)
    if y0 >= y1 or x0 >= x1:
        return
    sub = obj.mask[y0 - top : y1 - top, x0 - left : x1 - left]
    canvas[y0:y1, x0:x1][sub] = obj.texture[y0 - top : y1 - top, x0 - left : x1 - left][sub]
    labels[y0:y1, x0:x1][sub] = obj_id


def render_sequence(spec: SequenceSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`(T, H, W, 3)` uint8 frames and `(T, H, W)` uint8 ids of one sequence."""
    h, w = spec.size
    pan = rng.uniform(-0.8, 0.8, size=2)  # camera drift in pixels per frame
    margin = int(np.ceil(np.abs(pan).max() * spec.frames)) + 1
    palette = rng.uniform(30, 225, size=(3, 3))  # every texture of the sequence mixes two of these colours
    background = _texture(rng, (h + 2 * margin, w + 2 * margin), palette)
    objects = _objects(spec, rng, palette)
    gain, offset = _lighting(rng, spec.frames)
    depth = rng.permutation(len(objects))  # drawing order: the last is in front
    frames = np.zeros((spec.frames, h, w, 3), dtype=np.uint8)
    labels = np.zeros((spec.frames, h, w), dtype=np.uint8)
    for t in range(spec.frames):
        oy, ox = (margin + np.round(pan * t)).astype(int)
        canvas = background[oy : oy + h, ox : ox + w].copy()
        for k in depth:
            obj = objects[k]
            sway = np.array([obj.wobble * np.sin(0.5 * t), 0.0])
            _paste(canvas, labels[t], obj, obj.start + obj.velocity * t + sway, int(k) + 1)
        frames[t] = np.clip(canvas * gain[t] + offset[t], 0, 255).astype(np.uint8)
    return frames, labels


def _lighting(rng: np.random.Generator, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, `(T, 3)` channel gains and `(T, 1)` offsets: a brightness swing of 25-45% over 5-10 frames,
    a slower colour cast of up to 15% per channel, and an offset of up to 25 levels."""
    t = np.arange(frames)[:, None]
    swing = 1 + rng.uniform(0.25, 0.45) * np.sin(2 * np.pi * t / rng.uniform(5, 10) + rng.uniform(0, 2 * np.pi))
    cast = 1 + 0.15 * np.sin(2 * np.pi * t / rng.uniform(12, 24) + rng.uniform(0, 2 * np.pi, size=3))
    offset = rng.uniform(-25, 25) * np.sin(2 * np.pi * t / rng.uniform(6, 12) + rng.uniform(0, 2 * np.pi))
    return swing * cast, offset
