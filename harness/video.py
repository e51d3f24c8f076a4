"""Video I/O on PyAV (FFmpeg bundled in its wheel): write clips, decode only the frames a clip needs."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def write_video(path: str | Path, frames: np.ndarray, fps: float = 24.0, crf: int = 18) -> None:
    """Write uint8 frames `(T, H, W, 3)` as an H.264 mp4 (yuv420p, so H and W must be even)."""
    frames = np.asarray(frames, dtype=np.uint8)
    t, h, w, _ = frames.shape
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=int(round(fps)))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
