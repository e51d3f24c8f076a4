"""Which frames a clip takes: the training-clip and test-clip samplers, as pure index arithmetic.

A clip is `frames` indices `stride` apart, so it spans `(frames - 1) * stride + 1` source frames. Samplers only
compute indices (numpy int64); `harness.video` decodes them. Keeping the two apart makes the sampling testable
without video and lets every task (Kinetics, CATER, Ego4D) share one definition.

Short videos: when a video has fewer frames than a clip spans, the clip starts at 0 and every index past the end
is clamped to the last frame, i.e. **the last frame is repeated** (as PySlowFast and V-JEPA do by padding). Nothing
is interpolated or looped, so the real frames keep their true spacing.

Test clips (`segment_clip_indices`) follow the multi-view protocol: `segments` temporal clips, one centred in each
of `segments` equal parts of the video (a single segment is the centred clip), each later cut into spatial crops
by `harness.video.spatial_crops`. Names avoid a `test_` prefix on purpose: pytest would collect an imported
`test_*` function.
"""

from __future__ import annotations

import hashlib

import numpy as np


def clip_span(frames: int, stride: int) -> int:
    """Source frames covered by a clip of `frames` frames taken every `stride`."""
    if frames < 1 or stride < 1:
        raise ValueError(f"frames and stride must be >= 1, got {frames} and {stride}")
    return (frames - 1) * stride + 1


def clip_indices(start: int, frames: int, stride: int, num_frames: int) -> np.ndarray:
    """`(frames,)` indices `start, start + stride, ...`, clamped to the last frame (short videos repeat it)."""
    if num_frames < 1:
        raise ValueError("a video needs at least one frame")
    return np.minimum(start + stride * np.arange(frames, dtype=np.int64), num_frames - 1)


def random_clip_indices(num_frames: int, frames: int, stride: int, rng: np.random.Generator) -> np.ndarray:
    """One training clip `(frames,)` at a uniformly random start drawn from the seeded `rng`."""
    last_start = max(num_frames - clip_span(frames, stride), 0)
    start = int(rng.integers(0, last_start + 1))
    return clip_indices(start, frames, stride, num_frames)


def segment_clip_indices(num_frames: int, frames: int, stride: int, segments: int) -> np.ndarray:
    """`(segments, frames)` indices: clip i is centred in the i-th of `segments` equal parts of the video.

    Starts are clamped so every clip lies inside the video when it is long enough; shorter videos give
    `segments` copies of the clip from frame 0 (with its last frame repeated).
    """
    if segments < 1:
        raise ValueError(f"segments must be >= 1, got {segments}")
    span = clip_span(frames, stride)
    centres = (np.arange(segments) + 0.5) * num_frames / segments
    starts = np.clip(np.floor(centres - span / 2), 0, max(num_frames - span, 0)).astype(np.int64)
    return np.stack([clip_indices(int(s), frames, stride, num_frames) for s in starts])


def seeded_rng(seed: int, key: str) -> np.random.Generator:
    """A generator that depends only on `seed` and a sample's stable id, so sampling is order-independent."""
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, digest])
