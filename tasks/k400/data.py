"""Kinetics-400 manifests (the official CSV and the `path label` list) and the clip source the cache reads.

Two annotation formats are accepted, told apart by their first line:

- the official CSV, header `label,youtube_id,time_start,time_end,split[,is_cc]` (labels with spaces quoted), with
  videos named `<youtube_id>_<start:06d>_<end:06d>.<ext>` in `<root>/<split>/` or in class subfolders of it (the
  CVDF mirror, before or after `arrange_by_classes.py`);
- a PySlowFast / V-JEPA list, one `path label` per line (space separated, no header), paths relative to the
  dataset root or absolute; integer labels are class ids as given, other labels are class names.

Class ids are the sorted class names of the train annotations, so they are the same on every machine. Rows whose
video is not on disk are kept in `missing` (real mirrors lack some clips) and the task reports them; a val class
absent from train, or a malformed row, is a `DataError` naming the file and line.
"""

from __future__ import annotations

import csv
import hashlib
import os
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from toto_eval.common.errors import data_error
from toto_eval.harness.backbone import Preprocess
from toto_eval.harness.sampling import random_clip_indices, seeded_rng, segment_clip_indices
from toto_eval.harness.video import VideoReader, make_views

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov")
OFFICIAL_HEADER = ["label", "youtube_id", "time_start", "time_end", "split"]
MAX_INT_LABEL = 100_000  # integer labels are class ids; a larger one is a corrupt line, not a class count


@dataclass(frozen=True)
class Entry:
    """One annotated clip: where its video should be and its class name (or id, for integer lists)."""

    path: Path
    label: str
    where: str  # "<annotation file>:<line>" for error messages


@dataclass
class Split:
    """One split, normalised: present clips with class ids, and the annotated clips whose video is missing."""

    paths: list[Path]
    labels: np.ndarray  # (N,) int64
    missing: list[str]  # annotated videos not found on disk
    annotation: Path


def find_annotation(root: Path, split: str, override: str = "") -> Path:
    """`override` (relative to root or absolute), else `annotations/<split>.csv`, `<split>.csv`, `<split>.txt`."""
    candidates = [root / override] if override else [root / "annotations" / f"{split}.csv", root / f"{split}.csv"]
    candidates += [] if override else [root / f"{split}.txt"]
    for path in candidates:
        if path.is_file():
            return path
    names = ", ".join(str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in candidates)
    raise data_error(root, f"no {split} annotations (looked for {names})")


def read_entries(annotation: Path, root: Path, split: str) -> list[Entry]:
    """Entries of an official CSV or a `path label` list (detected from the first line); DataError if none."""
    try:
        with open(annotation, newline="", encoding="utf-8-sig") as f:
            first = f.readline()
        if first.strip().lower().startswith("label,youtube_id"):
            entries = _read_official(annotation, root, split)
        else:
            entries = _read_path_label(annotation, root)
    except (UnicodeDecodeError, csv.Error) as err:
        raise data_error(annotation, f"unreadable annotation file ({type(err).__name__}: {str(err)[:100]})") from None
    if not entries:
        raise data_error(annotation, "has no entries")
    return entries


def _read_official(annotation: Path, root: Path, split: str) -> list[Entry]:
    videos = _index_videos(root / split)
    entries = []
    with open(annotation, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader)]
        if header[:5] != OFFICIAL_HEADER:
            raise data_error(annotation, f"header {header} is not {','.join(OFFICIAL_HEADER)}[,is_cc]")
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            where = f"{annotation}:{line}"
            try:
                label, youtube_id, start, end = row[0], row[1], int(row[2]), int(row[3])
            except (IndexError, ValueError):
                raise data_error(where, f"malformed row {str(row)[:200]}") from None
            if not label.strip() or not _clean(youtube_id) or start < 0 or end < start:
                raise data_error(where, f"malformed row {str(row)[:200]} (empty label or id, or bad times)")
            stem = f"{youtube_id}_{start:06d}_{end:06d}"
            entries.append(Entry(videos.get(stem, root / split / f"{stem}.mp4"), label, where))
    return entries


def _read_path_label(annotation: Path, root: Path) -> list[Entry]:
    entries = []
    with open(annotation, encoding="utf-8-sig") as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            parts = text.rstrip("\n").rsplit(maxsplit=1)  # paths may contain spaces; the label never does
            if len(parts) != 2 or not _clean(parts[0]):
                raise data_error(f"{annotation}:{line}", f"expected 'path label', got {text.strip()[:200]!r}")
            path = Path(parts[0])
            entries.append(Entry(path if path.is_absolute() else root / path, parts[1], f"{annotation}:{line}"))
    return entries


def _clean(text: str) -> bool:
    """Usable as (part of) a file name: non-empty, no NUL or other control characters."""
    return bool(text.strip()) and not any(unicodedata.category(c) == "Cc" for c in text)


def _index_videos(folder: Path) -> dict[str, Path]:
    """File stem -> path for the videos in `folder` and its class subfolders (one directory scan, no stats)."""
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for entry in os.scandir(folder):
        if entry.is_dir():
            for sub in os.scandir(entry.path):
                if sub.name.lower().endswith(VIDEO_EXTENSIONS):
                    found.setdefault(Path(sub.name).stem, Path(sub.path))
        elif entry.name.lower().endswith(VIDEO_EXTENSIONS):
            found.setdefault(Path(entry.name).stem, Path(entry.path))
    return found


def class_names(train: Sequence[Entry]) -> list[str]:
    """Sorted class names of train; integer labels (list files) sort numerically and stay the ids they are."""
    names = {e.label for e in train}
    if names and all(n.isascii() and n.isdecimal() for n in names):
        big = max(train, key=lambda e: int(e.label))
        if int(big.label) >= MAX_INT_LABEL:
            raise data_error(big.where, f"class id {big.label[:30]} is not below {MAX_INT_LABEL}")
        return [str(i) for i in range(int(big.label) + 1)]
    return sorted(names)


def build_split(entries: Sequence[Entry], classes: list[str], annotation: Path) -> Split:
    """Class ids from `classes`; videos not on disk go to `missing`."""
    index = {name: i for i, name in enumerate(classes)}
    paths, labels, missing = [], [], []
    for e in entries:
        if e.label not in index:
            raise data_error(e.where, f"class {e.label[:100]!r} does not occur in the train annotations")
        if _is_file(e.path):
            paths.append(e.path)
            labels.append(index[e.label])
        else:
            missing.append(str(e.path))
    return Split(paths, np.array(labels, dtype=np.int64), missing, annotation)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long for the file system cannot be on disk
        return False


@dataclass(frozen=True)
class Sampling:
    """How clips are cut from one video: `segments` x `crops` views of `frames` frames every `stride`."""

    frames: int
    stride: int
    resolution: int
    segments: int = 1
    crops: int = 1
    short_side: int = 0  # resize target before cropping; 0 = resolution
    random_start: bool = False  # one seeded random clip (train) instead of centred segments (test)
    seed: int = 0


class KineticsSource:
    """One split as a cache `ClipSource`: `load(i)` gives `(segments * crops, T, C, S, S)` normalised floats."""

    def __init__(self, root: Path, name: str, split: Split, sampling: Sampling, preprocess: Preprocess) -> None:
        self.root, self.name, self.split = root, name, split
        self.sampling, self.preprocess = sampling, preprocess
        self.labels = split.labels
        self.ids = [_sample_id(root, p) for p in split.paths]
        self.views = sampling.segments * sampling.crops

    def __len__(self) -> int:
        return len(self.ids)

    def identity(self) -> dict:
        listing = hashlib.sha256()
        for sid, path in zip(self.ids, self.split.paths, strict=True):
            listing.update(f"{sid}:{path.stat().st_size}\n".encode())
        return {
            "dataset": "kinetics",
            "split": self.name,
            "files": listing.hexdigest()[:16],
            "annotation": hashlib.sha256(self.split.annotation.read_bytes()).hexdigest()[:16],
            "n": len(self.ids),
            "sampling": vars(self.sampling),
            "mean": self.preprocess.mean,
            "std": self.preprocess.std,
        }

    def load(self, i: int) -> torch.Tensor:
        s = self.sampling
        with VideoReader(self.split.paths[i]) as video:
            n = video.info.num_frames
            if s.random_start:  # `segments` independent random clips, a pure function of (seed, sample id)
                rng = seeded_rng(s.seed, self.ids[i])
                idx = np.stack([random_clip_indices(n, s.frames, s.stride, rng) for _ in range(s.segments)])
            else:
                idx = segment_clip_indices(n, s.frames, s.stride, s.segments)  # (N, T)
            frames = video.read(idx.ravel())  # (N*T, 3, H, W) uint8
        clips = frames.view(*idx.shape, *frames.shape[1:])  # (N, T, 3, H, W)
        return make_views(clips, s.resolution, s.crops, s.short_side or None)  # (N*M, T, 3, S, S) uint8


def _sample_id(root: Path, path: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
