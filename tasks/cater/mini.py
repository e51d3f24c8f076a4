"""Write a generated CATER-style dataset in the official task-3 layout, and the mini suite's small version of it.

The layout is the one the released `all_actions` / `all_actions_cameramotion` folders use, so `data.py` reads the
generated set and the real one with the same code:

    videos/CATER_new_000000.mp4          one video per scene (the real set has .avi; both decode the same way)
    scenes/CATER_new_000000.json         objects, per-frame locations, movements, and our diagnostics
    lists/localize/{train,val}.txt       `<video> <label>`, 36 classes; also localize_4x4 and localize_8x8

The motion is simulated on CATER's full timeline (301 frames) and only `video_frames` frames, evenly spaced and
always including the last, are rendered: the label is defined at the last frame, and rendering is the cost.
The 70/30 split is a permutation seeded with 42, as in CATER's list generator.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from toto_eval.common.log import progress

from .generator import COLORS, Scene, SceneConfig, generate_scene, grid_label

if TYPE_CHECKING:
    from .render import SceneRenderer

VERSION = "3"  # bump when the generated data changes: a stale mini dataset is then regenerated
# (3: mp4s written with x264 mb-tree off, so that a regenerated set is bit-identical to the last one)

GRIDS = {"localize": 6, "localize_4x4": 4, "localize_8x8": 8}
FPS = 24.0


@dataclass(frozen=True)
class DatasetConfig:
    """A generated dataset: how many videos, how they are rendered, and the scene rules."""

    videos: int = 5500  # CATER keeps 5500 renders: 3850 train, 1650 val
    width: int = 320
    height: int = 240
    video_frames: int = 301  # frames rendered per video, evenly spaced over the 301-frame timeline
    shadows: bool = True  # TinyRenderer's shadow pass doubles the cost of a frame
    lens_mm: float = 35.0  # CLEVR's lens on a 32 mm sensor; longer zooms in
    snitch_scale: float = 1.0  # drawn size of the snitch relative to CATER's (the label does not change)
    train_fraction: float = 0.7
    seed: int = 0  # video i uses scene seed `seed * 1_000_003 + i`
    scene: SceneConfig = field(default_factory=SceneConfig)


# The mini set. Version 1 (200 videos, CATER's oblique camera) left the snitch 2-4 px wide in a band of the frame
# and every probe at chance, so nothing could be ranked. Here the camera looks down from higher up and zooms in
# (the 6x6 table fills most of the 64 px frame, so one grid cell is about 8 px: one token of an 8 px patch
# model), the snitch is drawn 1.6x larger, yellow (gold-like) objects are left out, and there are twice as many
# videos, each rendered at 16 frames (the task samples 16, or fewer, uniformly; the label is at the last one).
MINI = DatasetConfig(
    videos=400,
    width=64,
    height=64,
    video_frames=16,
    shadows=False,
    lens_mm=45.0,
    snitch_scale=1.6,
    scene=SceneConfig(camera=(0.0, -4.5, 10.5), colors=tuple(c for c in COLORS if c != "yellow")),
)


def mini_dirname(variant: str) -> str:
    """The mini set's folder: named by a hash of its config, so a changed generator never reuses a stale set."""
    digest = hashlib.sha256(repr((MINI, variant)).encode()).hexdigest()[:8]
    return f"cater/{variant}-{digest}"


def make_mini(root: Path, camera_motion: bool = False) -> None:
    """The mini suite's CATER set: 400 videos of 16 frames at 64x64 (280 train, 120 val), no shadows."""
    write_dataset(root, dataclasses.replace(MINI, scene=dataclasses.replace(MINI.scene, camera_motion=camera_motion)))


def write_dataset(root: Path, cfg: DatasetConfig, bars: bool | None = None) -> dict:
    """Generate, render and write every video, its scene JSON and the list files; returns timing stats."""
    root = Path(root)
    for sub in ("videos", "scenes", *(f"lists/{task}" for task in GRIDS)):
        (root / sub).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    names, labels = [], {task: [] for task in GRIDS}
    from toto_eval.harness.video import write_video  # torch and PyAV: not for `toto-eval --help`

    from .render import SceneRenderer  # pybullet prints a banner on import: load it only to generate

    renderer = SceneRenderer(
        cfg.width, cfg.height, shadows=cfg.shadows, lens_mm=cfg.lens_mm, snitch_scale=cfg.snitch_scale
    )
    for i in progress(range(cfg.videos), enabled=bars, desc="cater videos", unit="video"):
        name, seed = f"CATER_new_{i:06d}", cfg.seed * 1_000_003 + i
        frames, record = render_video(renderer, generate_scene(seed, cfg.scene), cfg.video_frames, seed)
        write_video(root / "videos" / f"{name}.mp4", frames, fps=FPS * len(frames) / record["num_frames"])
        (root / "scenes" / f"{name}.json").write_text(json.dumps(record, separators=(",", ":")))
        names.append(f"{name}.mp4")
        for task in GRIDS:
            labels[task].append(record["snitch"][task])
    renderer.close()
    order = np.random.default_rng(42).permutation(cfg.videos)
    cut = round(cfg.train_fraction * cfg.videos)
    for task in GRIDS:
        for split, rows in (("train", order[:cut]), ("val", order[cut:])):
            lines = [f"{names[r]} {labels[task][r]}\n" for r in sorted(rows)]
            (root / "lists" / task / f"{split}.txt").write_text("".join(lines))
    seconds = time.perf_counter() - start
    return {"videos": cfg.videos, "seconds": seconds, "videos_per_minute": 60 * cfg.videos / max(seconds, 1e-9)}


def frame_indices(num_frames: int, video_frames: int) -> np.ndarray:
    """Timeline frames rendered into the video: evenly spaced, first and last included."""
    return np.unique(np.round(np.linspace(0, num_frames - 1, min(video_frames, num_frames))).astype(np.int64))


def render_video(renderer: SceneRenderer, scene: Scene, video_frames: int, seed: int) -> tuple[np.ndarray, dict]:
    """Render the video frames of `scene`: (T, H, W, 3) uint8 frames and the JSON record with diagnostics."""
    index = frame_indices(scene.num_frames, video_frames)
    renderer.load(scene, seed)
    drawn = [renderer.render(int(f)) for f in index]
    frames = np.stack([rgb for rgb, _ in drawn])
    pixels = np.stack([counts for _, counts in drawn])  # (T, N) visible pixels per object
    return frames, scene_record(scene, index, pixels, seed)


def scene_record(scene: Scene, index: np.ndarray, pixels: np.ndarray, seed: int) -> dict:
    """CATER's scene JSON (objects, `locations` keyed by frame, `movements`) plus per-video-frame diagnostics."""
    instances = [f"{o.shape.capitalize()}_{k}" for k, o in enumerate(scene.objects)]
    objects = []
    for k, obj in enumerate(scene.objects):
        locations = {str(int(f)): np.round(scene.positions[f, k], 4).tolist() for f in index}
        objects.append({**obj.__dict__, "instance": instances[k], "sized": obj.radius, "locations": locations})
    movements = {
        instances[k]: [[a, instances[o] if o is not None else None, t0, t1] for a, o, t0, t1 in moves]
        for k, moves in scene.movements.items()
    }
    x, y, _ = scene.positions[-1, 0]
    snitch = {task: grid_label(float(x), float(y), side) for task, side in GRIDS.items()}
    snitch["final_state"] = final_state(scene, int(pixels[-1, 0]))
    snitch["visible_last_frame"] = snitch["final_state"] == "visible"
    return {
        "seed": seed,
        "num_frames": scene.num_frames,
        "frame_indices": index.tolist(),
        "objects": objects,
        "movements": movements,
        "camera": np.round(scene.camera[index], 4).tolist(),
        "visible_pixels": pixels.tolist(),  # (T, N): 0 = hidden (contained or occluded) in that video frame
        "container": scene.container[index].tolist(),  # (T, N): index of the covering cone, -1 = none
        "snitch": snitch,
    }


def final_state(scene: Scene, last_pixels: int) -> str:
    """Shamsian et al.'s four cases: visible, occluded, contained, or carried (moved while contained)."""
    cover = scene.container[:, 0]
    if cover[-1] < 0:
        return "visible" if last_pixels > 0 else "occluded"
    since = len(cover) - int(np.argmax((cover < 0)[::-1])) if np.any(cover < 0) else 0
    moved = np.linalg.norm(scene.positions[-1, 0, :2] - scene.positions[since, 0, :2]) > 1e-6
    return "carried" if moved else "contained"
