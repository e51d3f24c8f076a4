"""CATER task 3 (snitch localisation) in its official layout, and the clip source the feature cache reads.

A CATER variant folder (`all_actions`, `all_actions_cameramotion`, or a generated one from `mini.py`) holds

    videos/<name>.avi|.mp4      301 frames at 320x240 in the release
    scenes/<name>.json          optional: per-object locations and movements (ours add snitch visibility; for the
                                released files the snitch's cover is replayed from `movements`: occlusion by
                                other objects is unknown there, so "visible" means "not under a cone")
    lists/localize/{train,val}.txt   one `<video> <label>` per line, label = 6 * y_cell + x_cell in 0..35

The list path may be a bare file name, a path relative to the variant folder, or any path whose file name is in
`videos/`; all three occur in copies of the release. Every line is checked up front: a missing video or a label
outside 0..C-1 is a `DataError` naming the list file and line, before any feature is computed.

Clips are 16 or 32 frames spread uniformly over the whole video, first and last frame included (the label is the
snitch's cell at the last frame). The full frame is resized to the backbone's square input ("square": CATER's
4:3 frames are squeezed, never cropped, so no grid cell leaves the picture); "short_side_crop" centre-crops instead.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from toto_eval.common.errors import DataError, data_error
from toto_eval.harness.backbone import Preprocess
from toto_eval.harness.video import VideoReader, make_views

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".webm")


@dataclass(frozen=True)
class Entry:
    """One list line: the video it names, its label and, when a scene JSON says so, the snitch's final state."""

    name: str  # as written in the list
    video: Path
    label: int
    final_state: str | None = None  # visible / occluded / contained / carried; "uncovered" (released JSON); None

    @property
    def visible(self) -> bool | None:
        """Is the snitch visible in the last frame? None without a scene JSON; "uncovered" counts as visible."""
        return None if self.final_state is None else self.final_state in ("visible", "uncovered")


def variant_dir(root: Path, variant: str) -> Path:
    """`root/variant` when it exists, else `root` itself when it already is a variant folder (has `lists/`)."""
    if (root / variant).is_dir():
        return root / variant
    if (root / "lists").is_dir():
        return root
    raise DataError(f"{root}: no CATER variant folder {variant!r} (expected {root / variant}/lists and videos)")


def read_list(path: Path, variant: Path, num_classes: int = 36) -> list[Entry]:
    """Parse `<video> <label>` lines; DataError `<list>:<line>: <problem>` on a bad line or missing video."""
    if not path.is_file():
        raise data_error(path, "list file not found")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (UnicodeDecodeError, OSError) as err:
        raise data_error(path, f"unreadable list file ({type(err).__name__}: {str(err)[:100]})") from None
    entries = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split()
        where = f"{path}:{lineno}"
        if len(parts) != 2:
            raise DataError(f"{where}: expected '<video> <label>', got {line.strip()[:200]!r}")
        name, text = parts
        try:
            label = int(text) if text.isascii() else int("x")  # int() would also take other scripts' digits
        except ValueError:
            raise DataError(f"{where}: label {text[:40]!r} is not an integer") from None
        if not 0 <= label < num_classes:
            raise DataError(f"{where}: label {label} is outside 0..{num_classes - 1}")
        video = _find_video(variant, name)
        if video is None:
            raise DataError(f"{where}: video {name[:200]} not found under {variant / 'videos'}")
        entries.append(Entry(name, video, label, _final_state(variant, video, where)))
    if not entries:
        raise data_error(path, "list file has no entries")
    return entries


def _find_video(variant: Path, name: str) -> Path | None:
    for candidate in (variant / "videos" / name, variant / name, variant / "videos" / Path(name).name):
        try:
            if candidate.is_file():
                return candidate
        except (OSError, ValueError):  # a NUL byte, or a name too long for the file system: not on disk
            continue
    return None


def _final_state(variant: Path, video: Path, where: str) -> str | None:
    scene = variant / "scenes" / f"{video.stem}.json"
    if not scene.is_file():
        return None
    try:
        record = json.loads(scene.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise data_error(scene, f"not valid JSON ({type(err).__name__}: {str(err)[:100]}); listed at {where}") from None
    snitch = record.get("snitch") if isinstance(record, dict) else None
    if not isinstance(record, dict) or not isinstance(snitch, (dict, type(None))):
        raise data_error(scene, f"expected an object with 'snitch' and/or 'movements'; listed at {where}")
    state = (snitch or {}).get("final_state")
    if state is not None:
        return str(state)
    if "movements" in record:  # the released scene files: replay containment; occlusion is unknown there
        if not _valid_movements(record["movements"]):
            raise data_error(scene, f"'movements' is not {{object: [[action, other, start, end], ...]}}; at {where}")
        return "contained" if snitch_contained_at_end(record["movements"]) else "uncovered"
    return None


def _valid_movements(movements: object) -> bool:
    """The released schema: object name -> list of [action (str), other object (str or null), start, end]."""
    if not isinstance(movements, dict):
        return False
    for moves in movements.values():
        if not isinstance(moves, list):
            return False
        for move in moves:
            if not (isinstance(move, list) and len(move) == 4 and isinstance(move[0], str)):
                return False
            if not (isinstance(move[1], (str, type(None))) and all(_is_number(t) for t in move[2:])):
                return False
    return True


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def snitch_contained_at_end(movements: dict[str, list]) -> bool:
    """Replay CATER's movement log: a `_contain` covers its target when it ends, a cone's `_pick_place` uncovers."""
    events = []
    for obj, moves in movements.items():
        for action, other, start, end in moves:
            if action == "_contain":
                events.append((end, 1, obj, other))
            elif action == "_pick_place":
                events.append((start, 0, obj, None))
    covered_by: dict[str, str] = {}  # inner -> the cone directly over it
    for _, kind, obj, other in sorted(events, key=lambda e: (e[0], e[1])):
        if kind == 1:
            covered_by[other] = obj
        else:
            covered_by = {inner: cone for inner, cone in covered_by.items() if cone != obj}
    snitch = next((name for name in movements if name.lower().startswith("spl")), None)
    return snitch is not None and snitch in covered_by


def clip_indices(num_frames: int, frames: int, sampling: str = "uniform") -> np.ndarray:
    """`frames` indices spread evenly over [0, num_frames - 1] (both ends), or just the last frame ("last")."""
    if sampling == "last":
        return np.array([num_frames - 1])
    return np.round(np.linspace(0, num_frames - 1, frames)).astype(np.int64)


class CaterClips:
    """A ClipSource over list entries: `load(i)` is `(1, T, C, S, S)` uint8 (the cache normalises on the device)."""

    def __init__(
        self,
        entries: list[Entry],
        list_file: Path,
        preprocess: Preprocess,
        frames: int,
        sampling: str = "uniform",
        resize: str = "square",
    ) -> None:
        self.entries, self.preprocess = entries, preprocess
        self.frames, self.sampling, self.resize = frames, sampling, resize
        self.ids = [e.name for e in entries]
        self.labels = np.array([e.label for e in entries], dtype=np.int64)
        self._identity = {
            "dataset": "cater",
            "variant": list_file.parents[2].name,
            "list": str(list_file.relative_to(list_file.parents[2])),
            "list_sha": hashlib.sha256(list_file.read_bytes()).hexdigest()[:16],
            "files_sha": _files_sha(entries),
            "frames": frames,
            "sampling": sampling,
            "resize": resize,
            "resolution": preprocess.resolution,
        }

    def identity(self) -> dict:
        return dict(self._identity)

    def __len__(self) -> int:
        return len(self.entries)

    def load(self, i: int) -> torch.Tensor:
        path = self.entries[i].video
        with VideoReader(path) as video:
            frames = video.read(clip_indices(video.info.num_frames, self.frames, self.sampling))  # (T, 3, H, W)
        size = self.preprocess.resolution
        if self.resize == "square":
            clip = F.interpolate(frames, size=(size, size), mode="bilinear", antialias=True)
        else:
            clip = make_views(frames[None], size, crops=1)[0]
        return clip[None]  # (1, T, 3, S, S) uint8: the cache normalises on the device


def _files_sha(entries: list[Entry]) -> str:
    h = hashlib.sha256()
    for e in entries:
        h.update(f"{e.name}\t{e.video.stat().st_size}\n".encode())
    return h.hexdigest()[:16]
