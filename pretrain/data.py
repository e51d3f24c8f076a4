"""Pre-training data: image and video sources, clip sampling, and the weighted mixture.

A source is a folder (searched recursively) or a manifest: a Kinetics CSV (`label,youtube_id,time_start,
time_end,split`, files named `<youtube_id>_<start:06d>_<end:06d>.mp4` somewhere under the CSV's folder), a
`path label` list, or a plain list of paths (relative paths are relative to the list). A video gives a clip of
T frames taken every `stride` frames, each resized so its short side is R, then one random R x R crop for the
whole clip; an image source gives a stack of T random images treated the same way. Sources are mixed by weight
(`PAPER_RECIPE` is the paper's mixture).

Everything is a pure function of (seed, sample index): `Mixture.sample(i)` draws its source, file, start frame
and crop from `np.random.default_rng([seed, i])`, so token shards can be rebuilt bit for bit and resumed.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import numpy as np
from PIL import Image

from ..common.errors import ConfigError, DataError, data_error

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".JPEG")
VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".webm", ".mov")

# The paper's mixture (Section 3): 20% images (ImageNet), 10% Ego4D, 10% Kinetics-600, 60% HowTo100M.
PAPER_RECIPE = {"imagenet": 0.2, "ego4d": 0.1, "kinetics": 0.1, "howto100m": 0.6}

Kind = Literal["video", "image"]


@dataclass(frozen=True)
class SourceSpec:
    """One data source as the user names it: `kind`, a folder or manifest `path`, and its mixture `weight`."""

    kind: Kind
    path: str
    weight: float = 1.0

    @classmethod
    def parse(cls, kind: Kind, text: str) -> SourceSpec:
        """`PATH` or `PATH@WEIGHT` (the CLI's --videos / --images values)."""
        path, _, weight = text.rpartition("@") if "@" in text else (text, "", "1")
        try:
            value = float(weight)
        except ValueError:
            raise ConfigError(f"--{kind}s {text!r}: weight {weight!r} is not a number") from None
        if value <= 0:
            raise ConfigError(f"--{kind}s {text!r}: weight must be positive")
        return cls(kind, path, value)


@dataclass
class Clip:
    frames: np.ndarray  # (T, R, R, 3) uint8
    kind: Kind
    origin: str  # file (and start frame) it came from, for error messages and provenance


def list_files(spec: SourceSpec) -> list[Path]:
    """The files of a source, sorted so the list (and so every sample) is reproducible."""
    root = Path(spec.path)
    exts = VIDEO_EXTS if spec.kind == "video" else IMAGE_EXTS
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.suffix in exts and p.is_file())
    elif root.is_file() and root.suffix in exts:  # a single file is a source of one
        files = [root]
    elif root.is_file() and root.suffix == ".csv":
        files = _kinetics_csv(root)
    elif root.is_file():
        files = _path_list(root)
    else:
        raise data_error(root, f"{spec.kind} source not found")
    if not files:
        raise data_error(root, f"no {spec.kind} files ({', '.join(exts)}) found")
    return files


def _kinetics_csv(path: Path) -> list[Path]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    need = {"youtube_id", "time_start", "time_end"}
    if not rows or not need <= set(rows[0]):
        raise data_error(path, f"not a Kinetics CSV (needs columns {sorted(need)})")
    on_disk = {p.name: p for p in path.parent.rglob("*.mp4")}
    names = [f"{r['youtube_id']}_{int(float(r['time_start'])):06d}_{int(float(r['time_end'])):06d}.mp4" for r in rows]
    # Kinetics always misses some videos (taken down from YouTube): keep the ones present.
    return [on_disk[n] for n in names if n in on_disk]


def _path_list(path: Path) -> list[Path]:
    files = []
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise data_error(path, "not a text list of files") from None
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name = line.split()[0]  # `path label` lists: the label is not used for pre-training
        file = Path(name) if Path(name).is_absolute() else path.parent / name
        if not file.is_file():
            raise data_error(path, f"line {number}: {file} does not exist")
        files.append(file)
    return files


def resize_crop(image: Image.Image, resolution: int, offset: tuple[float, float]) -> np.ndarray:
    """Resize the short side to `resolution`, crop `resolution` square at relative `offset` -> (R, R, 3) uint8."""
    image = image.convert("RGB")
    w, h = image.size
    scale = resolution / min(w, h)
    size = (max(resolution, round(w * scale)), max(resolution, round(h * scale)))
    image = image.resize(size, Image.BILINEAR)
    x = int(offset[0] * (size[0] - resolution))
    y = int(offset[1] * (size[1] - resolution))
    return np.asarray(image.crop((x, y, x + resolution, y + resolution)))


def read_video_frames(path: Path, indices: list[int]) -> list[Image.Image]:
    """Decode the frames at `indices` (sorted) of a video; repeats the last frame if the video is shorter.

    Frame numbers come from timestamps (pts x time base x frame rate), so seeking to the keyframe before a late
    start (long HowTo100M videos) gives the same frames as decoding from the beginning.
    """
    wanted, found = set(indices), {}
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate, base, start = stream.average_rate, stream.time_base, stream.start_time or 0
            if rate and base and indices[0] > 2 * rate:
                container.seek(int(indices[0] / rate / base) + start, stream=stream, backward=True)
            for count, frame in enumerate(container.decode(stream)):
                i = round(float((frame.pts - start) * base * rate)) if frame.pts is not None and rate else count
                if i in wanted:
                    found[i] = frame.to_image()
                if i >= indices[-1]:
                    break
    except (av.error.FFmpegError, OSError, IndexError) as err:
        raise data_error(path, f"cannot decode video ({err})") from None
    if not found:
        raise data_error(path, "video has no decodable frames")
    last = found[max(found)]
    return [found.get(i, last) for i in indices]


def count_frames(path: Path) -> int:
    """Frame count from the container, or by decoding when the container does not say."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            return sum(1 for _ in container.decode(video=0))
    except (av.error.FFmpegError, OSError, IndexError) as err:
        raise data_error(path, f"cannot read video ({err})") from None


class Source:
    """A listed source that samples clips; frame counts are read once per file and remembered."""

    def __init__(self, spec: SourceSpec, frames: int, stride: int, resolution: int):
        self.spec, self.frames, self.stride, self.resolution = spec, frames, stride, resolution
        self.files = list_files(spec)
        self._lengths: dict[int, int] = {}

    def sample(self, rng: np.random.Generator) -> Clip:
        offset = (float(rng.random()), float(rng.random()))
        if self.spec.kind == "image":
            picks = rng.integers(len(self.files), size=self.frames)
            stack = [resize_crop(self._open_image(self.files[j]), self.resolution, offset) for j in picks]
            return Clip(np.stack(stack), "image", f"{self.spec.path}#{','.join(map(str, picks))}")
        j = int(rng.integers(len(self.files)))
        path = self.files[j]
        if j not in self._lengths:
            self._lengths[j] = count_frames(path)
        stride = self.fitting_stride(self._lengths[j])
        span = (self.frames - 1) * stride + 1
        start = int(rng.integers(max(1, self._lengths[j] - span + 1)))
        indices = [start + k * stride for k in range(self.frames)]
        stack = [resize_crop(im, self.resolution, offset) for im in read_video_frames(path, indices)]
        return Clip(np.stack(stack), "video", f"{path}@{start}")

    def fitting_stride(self, length: int) -> int:
        """`stride`, or for a video too short for the clip's span the largest stride that fits in it.

        Short videos (mini CATER's 16 frames, DAVIS's 12-20) would otherwise end in copies of their last frame.
        """
        if (self.frames - 1) * self.stride + 1 <= length or self.frames < 2:
            return self.stride
        return max(1, (length - 1) // (self.frames - 1))

    @staticmethod
    def _open_image(path: Path) -> Image.Image:
        try:
            with Image.open(path) as image:
                image.load()
                return image
        except OSError as err:
            raise data_error(path, f"cannot read image ({err})") from None


class Mixture:
    """Weighted mixture of sources; `sample(i)` is a pure function of (seed, i)."""

    def __init__(self, specs: list[SourceSpec], frames: int, stride: int, resolution: int, seed: int = 0):
        if not specs:
            raise ConfigError("no data sources given (use --videos and/or --images)")
        self.sources = [Source(s, frames, stride, resolution) for s in specs]
        weights = np.array([s.weight for s in specs], dtype=np.float64)
        self.probs = weights / weights.sum()
        self.frames, self.stride, self.resolution, self.seed = frames, stride, resolution, seed

    def sample(self, i: int) -> Clip:
        rng = np.random.default_rng([self.seed, i])
        k = int(rng.choice(len(self.sources), p=self.probs))
        return self.sources[k].sample(rng)

    def identity(self) -> dict:
        """What the samples depend on: file lists (names + sizes), weights and sampling; stored in shards."""
        return {
            "sources": [
                {
                    "kind": s.spec.kind,
                    "path": s.spec.path,
                    "weight": s.spec.weight,
                    "files": len(s.files),
                    "bytes": sum(f.stat().st_size for f in s.files),
                }
                for s in self.sources
            ],
            "frames": self.frames,
            "stride": self.stride,
            "resolution": self.resolution,
            "seed": self.seed,
        }


def check_readable(specs: list[SourceSpec]) -> None:
    """Fail early, with the file's name, on a source whose path is missing (before any output is written)."""
    for spec in specs:
        if not Path(spec.path).exists():
            raise DataError(f"{spec.path}: {spec.kind} source not found")
