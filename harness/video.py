"""Video I/O on PyAV (FFmpeg bundled in its wheel): metadata, decoding only the frames a clip needs, resize, crops.

Every video task (Kinetics, CATER, Ego4D, DAVIS) reads video through this module, so the rules live here once:

- **Frame indices are times.** Frame `i` is the frame on screen at `start + i / fps` (fps = the stream's average
  rate). For the usual constant-rate file that is simply the i-th decoded frame; for a variable-rate file it is
  what a viewer sees at that time (a missing slot shows the previous frame). This is what makes seeking exact:
  any index maps to a timestamp, so a clip deep into an hour-long video costs one seek, not an hour of decoding.
- **Each needed frame is decoded once, in order.** Indices may repeat and come in any order (a short clip
  repeats its last frame; 8 test segments overlap); the reader decodes the sorted unique set, runs of nearby
  indices in one pass, and seeks (to the keyframe before) only across gaps larger than `SEEK_GAP` frames.
- **Frame counts are exact**: from the header (mp4, mov, avi), else by counting packets without decoding
  (Matroska/WebM headers have none; this reads the file once). An estimate from duration x fps would be wrong
  whenever the container's duration includes a longer audio track.
- **Bad input is a `DataError` with one line `<path>: <problem>`**: missing, empty, not a video, no video
  stream, undecodable or truncated. A stream that ends a little early (at most `max(2, 2%)` frames short of the
  count its header promised, common in real datasets) repeats its last frame instead.
- Resizing (short side, bilinear with antialiasing) and cropping work on uint8 torch tensors `(..., C, H, W)`,
  the layout `Preprocess.normalize` takes.

Typical use::

    with VideoReader(path) as video:                 # or: info = metadata(path)
        idx = segment_clip_indices(video.info.num_frames, frames=16, stride=4, segments=8)   # (8, 16)
        clip = video.read(idx.ravel())               # (128, 3, H, W) uint8
    views = read_views(path, idx, resolution=224, crops=3)  # (24, 16, 3, 224, 224) uint8: decode + make_views
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

from ..common.errors import DataError, data_error

SEEK_GAP = 90  # frames: a larger gap between needed frames is crossed by seeking instead of decoding through it


@dataclass(frozen=True)
class VideoInfo:
    """What a clip sampler needs to know about a file."""

    num_frames: int  # frames in the stream: from the header, or counted (see `counted`)
    fps: float  # average frame rate
    duration: float  # seconds
    width: int
    height: int
    codec: str
    counted: bool  # True when the header had no frame count and the stream's packets were counted


def write_video(path: str | Path, frames: np.ndarray, fps: float = 24.0, crf: int = 18) -> None:
    """Write uint8 frames `(T, H, W, 3)` as an H.264 mp4 (yuv420p, so H and W must be even)."""
    frames = np.asarray(frames, dtype=np.uint8)
    _, h, w, _ = frames.shape
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        # x264's macroblock-tree rate control made the file depend on more than the frames: the same mini CATER
        # clip encoded 25 times gave 3 to 5 different files (and decoded pixels), so two generations of a mini
        # set differed. With mb-tree off, 25 of 25 encodes are identical; crf still sets the quality.
        stream.options = {"crf": str(crf), "preset": "veryfast", "x264-params": "mbtree=0"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


class VideoReader:
    """An open video file: `info`, and `read(indices)` decoding only those frames. Use as a context manager."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        self.path = Path(path)
        self._container = _open(self.path)
        try:
            streams = self._container.streams.video
            if not streams:
                raise data_error(self.path, "no video stream in the file")
            self._stream = streams[0]
            # Frame threads pay off on large frames; 1 keeps parallel data-loader workers from oversubscribing.
            self._stream.thread_count = threads
            if threads != 1:
                self._stream.thread_type = "AUTO"
            self.info = _probe(self.path, self._container, self._stream)
        except BaseException:
            self._container.close()
            raise
        tb = self._stream.time_base
        self._t0 = float(self._stream.start_time * tb) if self._stream.start_time is not None else 0.0
        self._used = False  # whether decoding has moved the container away from its start

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def read(self, indices: Sequence[int] | np.ndarray) -> torch.Tensor:
        """Frames at `indices` (any order, repeats allowed) as uint8 `(len(indices), 3, H, W)`."""
        wanted = np.asarray(indices, dtype=np.int64).ravel()
        if wanted.size == 0:
            return torch.empty(0, 3, self.info.height, self.info.width, dtype=torch.uint8)
        if wanted.min() < 0:
            raise ValueError(f"negative frame index {int(wanted.min())}")
        unique = np.unique(wanted)  # sorted
        decoded: dict[int, np.ndarray] = {}
        try:
            for run in _split_runs(unique.tolist(), SEEK_GAP):
                decoded.update(self._decode_run(run, seek_back=0.0 if run[0] >= SEEK_GAP else None))
        except av.FFmpegError as err:
            raise _decode_error(self.path, err) from err
        frames = np.stack([decoded[int(i)] for i in wanted])  # (K, H, W, 3)
        return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()

    def _decode_run(self, run: list[int], seek_back: float | None) -> dict[int, np.ndarray]:
        """Decode the sorted indices `run` in one pass; frame k fills every wanted index in (previous k, k].

        `seek_back`: None decodes from the first frame; a number seeks to the keyframe before the first wanted
        frame's time minus that many seconds (a seek that lands too late is retried 10 s earlier, then from 0).
        """
        seek = seek_back is not None
        if seek:
            target = self._t0 + run[0] / self.info.fps - seek_back
            self._container.seek(int(max(target, 0) / self._stream.time_base), stream=self._stream, backward=True)
        elif self._used:  # the decoder has moved on: rewind
            self._container.seek(0, stream=self._stream, backward=True)
        self._used = True
        out: dict[int, np.ndarray] = {}
        pos, prev, last_k, converted, image = 0, None, -1, None, None
        for count, frame in enumerate(self._container.decode(self._stream)):
            if frame.time is None:
                if seek:  # no timestamps: only counting from the first frame can name the frames
                    return self._decode_run(run, seek_back=None)
                k = count
            else:
                k = round((frame.time - self._t0) * self.info.fps)
            if seek and prev is None and k > run[0]:  # landed past the target (inexact index)
                return self._decode_run(run, seek_back=10.0 if seek_back == 0 else None)
            while pos < len(run) and run[pos] <= k:
                shown = frame if run[pos] == k or prev is None else prev
                if shown is not converted:  # several indices can show one frame (gaps in a variable-rate file)
                    converted, image = shown, shown.to_ndarray(format="rgb24")
                out[run[pos]] = image
                pos += 1
            prev, last_k = frame, k
            if pos == len(run):
                return out
        return self._pad_tail(run, pos, prev, last_k, out)

    def _pad_tail(self, run: list[int], pos: int, prev: av.VideoFrame | None, last_k: int, out: dict) -> dict:
        # The stream ended before the last wanted index: repeat the last frame if the shortfall is small.
        slack = max(2, round(0.02 * self.info.num_frames))
        if prev is None or run[-1] - last_k > slack:
            got = f"decoded frames up to {last_k}" if prev is not None else "no frame could be decoded"
            raise data_error(self.path, f"{got}, but frame {run[-1]} was needed (truncated or corrupt file?)")
        image = prev.to_ndarray(format="rgb24")
        out.update((i, image) for i in run[pos:])
        return out


def metadata(path: str | Path) -> VideoInfo:
    """Frame count, fps, duration and size of a video file (header only; nothing is decoded)."""
    with VideoReader(path) as video:
        return video.info


def read_clip(path: str | Path, indices: Sequence[int] | np.ndarray, short_side: int | None = None) -> torch.Tensor:
    """Frames `indices` of the video at `path` as uint8 `(K, 3, H, W)`, short side resized when given."""
    with VideoReader(path) as video:
        frames = video.read(indices)
    return frames if short_side is None else resize_short_side(frames, short_side)


def read_views(
    path: str | Path, clip_indices: np.ndarray, resolution: int, crops: int = 1, short_side: int | None = None
) -> torch.Tensor:
    """Test views of one video: `clip_indices` `(N, T)` x `crops` spatial crops -> uint8 `(N*crops, T, 3, S, S)`.

    All segments' frames are decoded in one pass; see `make_views` for the resize and crops.
    """
    clip_indices = np.asarray(clip_indices)
    with VideoReader(path) as video:
        frames = video.read(clip_indices.ravel())  # (N*T, 3, H, W)
    return make_views(frames.view(*clip_indices.shape, *frames.shape[1:]), resolution, crops, short_side)


def make_views(clips: torch.Tensor, resolution: int, crops: int = 1, short_side: int | None = None) -> torch.Tensor:
    """uint8 clips `(N, T, 3, H, W)` -> `(N*crops, T, 3, S, S)`, ordered segment-major (view = n * crops + c).

    The short side is resized to `short_side` (default: `resolution`), then each clip is cut at `crops`
    positions along the long side (`spatial_crops`); the same crop boxes are used for every frame of a clip.
    """
    n, t = clips.shape[:2]
    clips = resize_short_side(clips, short_side or resolution)
    views = spatial_crops(clips, resolution, crops)  # (crops, N, T, 3, S, S)
    return views.transpose(0, 1).reshape(n * crops, t, 3, resolution, resolution)


def resize_short_side(frames: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 `(..., C, H, W)` -> uint8 with min(H, W) == size, aspect kept, bilinear with antialiasing."""
    *lead, c, h, w = frames.shape
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    if (new_h, new_w) == (h, w):
        return frames
    # torch resizes uint8 directly (its fast path, about 6x quicker than going through float32)
    x = F.interpolate(frames.reshape(-1, c, h, w), size=(new_h, new_w), mode="bilinear", antialias=True)
    return x.reshape(*lead, c, new_h, new_w)


def spatial_crops(frames: torch.Tensor, size: int, num_crops: int = 1) -> torch.Tensor:
    """`(..., C, H, W)` -> `(num_crops, ..., C, size, size)`: crops evenly spaced along the long side.

    One crop is the centre crop; three are the usual start / centre / end (left-centre-right on landscape
    frames, top-centre-bottom on portrait ones); the short side is always centred.
    """
    h, w = frames.shape[-2:]
    if min(h, w) < size:
        raise ValueError(f"cannot crop {size}x{size} from {h}x{w} frames")
    top, left = (h - size) // 2, (w - size) // 2
    slide = (w - size) if w >= h else (h - size)
    starts = [slide // 2] if num_crops == 1 else [round(i * slide / (num_crops - 1)) for i in range(num_crops)]
    crops = []
    for s in starts:
        y, x = (top, s) if w >= h else (s, left)
        crops.append(frames[..., y : y + size, x : x + size])
    return torch.stack(crops)


def _open(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise data_error(path, "file not found")
    if path.stat().st_size == 0:
        raise data_error(path, "empty file (0 bytes)")
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as err:
        raise data_error(path, f"not a readable video ({_reason(err)})") from err


def _probe(path: Path, container: av.container.InputContainer, stream: av.video.VideoStream) -> VideoInfo:
    count, counted = stream.frames, False
    if count <= 0:  # Matroska/WebM headers carry no frame count: count packets (reads, does not decode)
        count, counted = _count_packets(path, container, stream), True
    duration = None
    if stream.duration is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate and count and duration:
        rate = Fraction(count / duration)
    if not rate:
        raise data_error(path, "the video stream has no frame rate")
    if count <= 0 or stream.width <= 0:
        raise data_error(path, "the video stream has no frames")
    fps = float(rate)
    return VideoInfo(
        count, fps, duration or count / fps, stream.width, stream.height, stream.codec_context.name, counted
    )


def _count_packets(path: Path, container: av.container.InputContainer, stream: av.video.VideoStream) -> int:
    try:
        n = sum(1 for packet in container.demux(stream) if packet.size)
        container.seek(0, stream=stream, backward=True)
    except av.FFmpegError as err:
        raise _decode_error(path, err) from err
    return n


def _split_runs(indices: list[int], gap: int) -> list[list[int]]:
    """Sorted indices -> runs whose consecutive members are at most `gap` apart."""
    runs = [[indices[0]]]
    for i in indices[1:]:
        if i - runs[-1][-1] > gap:
            runs.append([])
        runs[-1].append(i)
    return runs


def _reason(err: Exception) -> str:
    text = getattr(err, "strerror", None) or str(err)
    return " ".join(str(text).split())


def _decode_error(path: Path, err: Exception) -> DataError:
    return data_error(path, f"cannot decode ({_reason(err)}; truncated or corrupt file?)")
