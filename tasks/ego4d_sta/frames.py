"""Frames of an STA clip, read from the canonical videos or from pre-extracted images.

The canonical layout is `<videos_dir>/<video_uid>.mp4` (what the Ego4D CLI downloads as `full_scale/`), decoded by
`harness.video.VideoReader` (only the needed frames; seeks across long gaps). The pre-extracted layout is a
filename template under a folder, e.g. the baseline's `{video_uid}_{frame:07d}.jpg` or `{video_uid}/{frame:07d}.jpg`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from toto_eval.common.errors import data_error
from toto_eval.harness.backbone import Preprocess
from toto_eval.harness.video import VideoReader

from .data import STASplit, clip_indices


class FrameReader:
    """`read(video_uid, indices) -> (T, 3, H, W) uint8` from videos (default) or pre-extracted frames."""

    def __init__(self, videos_dir: Path | None = None, frames_dir: Path | None = None, template: str = "") -> None:
        if (videos_dir is None) == (frames_dir is None):
            raise ValueError("give exactly one of videos_dir and frames_dir")
        self.videos_dir, self.frames_dir, self.template = videos_dir, frames_dir, template

    def files(self, video_uid: str, indices: np.ndarray) -> list[Path]:
        """The files a read touches (one video, or one image per index)."""
        if self.videos_dir is not None:
            return [self.videos_dir / f"{video_uid}.mp4"]
        return [self.frames_dir / self.template.format(video_uid=video_uid, frame=int(i)) for i in indices]

    def read(self, video_uid: str, indices: np.ndarray) -> torch.Tensor:
        if self.videos_dir is not None:
            path = self.videos_dir / f"{video_uid}.mp4"
            if not path.is_file():
                raise data_error(path, "video not found")
            with VideoReader(path) as video:
                return video.read(indices)
        out = []
        for path in self.files(video_uid, indices):
            if not path.is_file():
                raise data_error(path, "frame image not found")
            try:
                out.append(np.asarray(Image.open(path).convert("RGB")))
            except OSError as err:
                raise data_error(path, f"unreadable frame image ({err})") from None
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


class STAClips:
    """The cache's view of one STA split: one clip per annotation, ending at its query frame.

    `load(i)` -> `(1, T, 3, S, S)`: `frames` frames every `stride` ending at the query frame (frames before the
    video start repeat frame 0, as the baseline does), the whole frame resized to the backbone's square input
    (no crop, so every box stays inside it; the aspect ratio is not kept), normalised by the backbone.
    """

    def __init__(self, split: STASplit, reader: FrameReader, preprocess: Preprocess, frames: int, stride: int):
        self.split, self.reader, self.preprocess = split, reader, preprocess
        self.frames, self.stride = frames, stride
        self.ids = [a.uid for a in split.annotations]

    def __len__(self) -> int:
        return len(self.ids)

    def identity(self) -> dict:
        # Videos are fingerprinted by name and size; pre-extracted frames (millions of files) by folder and template.
        files = hashlib.sha256()
        for uid in sorted({a.video_uid for a in self.split.annotations}):
            if self.reader.videos_dir is not None:
                path = self.reader.videos_dir / f"{uid}.mp4"
                files.update(f"{path.name}:{path.stat().st_size if path.is_file() else -1};".encode())
            else:
                files.update(f"{self.reader.frames_dir}/{self.reader.template}:{uid};".encode())
        return {
            "dataset": "ego4d_sta",
            "split": self.split.split,
            "annotations": hashlib.sha256(self.split.path.read_bytes()).hexdigest()[:16],
            "files": files.hexdigest()[:16],
            "sampling": {
                "frames": self.frames,
                "stride": self.stride,
                "resolution": self.preprocess.resolution,
                "resize": "whole frame to square",
            },
        }

    def load(self, i: int) -> torch.Tensor:
        ann = self.split.annotations[i]
        frames = self.reader.read(ann.video_uid, clip_indices(ann.frame, self.frames, self.stride))  # (T, 3, H, W)
        size = self.preprocess.resolution
        x = F.interpolate(frames.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return x.clamp(0, 255).unsqueeze(0)  # (1, T, 3, S, S) float in [0, 255]: normalised on the device
