"""Label propagation without a model: position codes copy the mask, shift codes move it, tiles equal a slow loop.

Run: python -m pytest tests/test_davis_propagation.py -q
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from toto_eval.tasks.davis import propagation as P


def first_mask(h, w):
    labels = np.zeros((h, w), np.uint8)
    labels[1 : h // 2, 2 : w - 2] = 1
    labels[h - 2 :, : w // 3] = 2
    labels[h // 2 + 1, w - 1] = 3  # a single patch touching the right border
    return labels


def run(features, labels, cfg):
    h, w = labels.shape
    first = P.first_frame_labels(labels, (h, w), "nearest")
    soft = P.propagate(features, first, cfg)
    return np.stack([P.soft_to_labels(s, (h * 8, w * 8), (h, w), cfg.norm_mask) for s in soft])


@pytest.mark.parametrize("name", ["dino", "crw"])
def test_position_codes_copy_the_first_mask(name):
    h, w, n = 9, 11, 12
    codes = torch.eye(h * w).reshape(h, w, h * w)  # one-hot position: each patch matches only itself
    labels = first_mask(h, w)
    out = run(codes[None].repeat(n, 1, 1, 1), labels, P.preset(name, label_downsample="nearest"))
    np.testing.assert_array_equal(out, np.broadcast_to(labels, out.shape))


@pytest.mark.parametrize(("name", "shift"), [("dino", (0, 1)), ("dino", (1, -1)), ("crw", (-1, 2))])
def test_shift_codes_move_the_mask_by_the_shift(name, shift):
    # Frame t's patch p carries the code of world position p - t*shift (on a torus), so content moves by `shift`
    # per frame and the propagated mask must be the first mask rolled by t*shift.
    h, w, n = 8, 10, 7
    dy, dx = shift
    world = torch.eye(h * w).reshape(h, w, h * w)
    features = torch.stack([torch.roll(world, (t * dy, t * dx), dims=(0, 1)) for t in range(n)])
    labels = first_mask(h, w)
    out = run(features, labels, P.preset(name, radius=max(h, w), label_downsample="nearest"))
    for t in range(n):
        np.testing.assert_array_equal(out[t], np.roll(labels, (t * dy, t * dx), axis=(0, 1)), err_msg=f"frame {t}")


def reference(features, first, cfg):
    """The protocol written as loops over targets, context frames and sources (tiny grids only)."""
    n, h, w, _ = features.shape
    feats = torch.nn.functional.normalize(features.double(), dim=-1).numpy()
    soft = [first.double().numpy()]
    for t in range(1, n):
        out = np.zeros_like(soft[0])
        for y in range(h):
            for x in range(w):
                cands = []
                for j, windowed in P.context_frames(t, cfg):
                    for yy in range(h):
                        for xx in range(w):
                            if windowed:
                                ok = (
                                    max(abs(y - yy), abs(x - xx)) <= cfg.radius
                                    if cfg.window == "square"
                                    else (y - yy) ** 2 + (x - xx) ** 2 < cfg.radius**2
                                )
                                if not ok:
                                    continue
                            cands.append((float(feats[t, y, x] @ feats[j, yy, xx]), soft[j][yy, xx]))
                cands.sort(key=lambda c: -c[0])
                top = cands[: cfg.topk]
                weights = [math.exp((s - top[0][0]) / cfg.temperature) for s, _ in top]
                out[y, x] = sum(wt * lab for wt, (_, lab) in zip(weights, top, strict=True)) / sum(weights)
        soft.append(out)
    return torch.from_numpy(np.stack(soft))


@pytest.mark.parametrize(
    "cfg",
    [
        P.preset("dino", radius=1, context=2),
        P.preset("dino", radius=2, topk=3, memory_mb=0),  # memory_mb=0: the smallest tiles
        P.preset("crw", radius=2, context=3),
        P.preset("crw", radius=3, topk=4, temperature=0.2),
    ],
)
def test_vectorised_equals_reference_loop(cfg):
    g = torch.Generator().manual_seed(0)
    n, h, w, d = 6, 4, 5, 8
    features = torch.randn(n, h, w, d, generator=g)
    first = torch.softmax(torch.randn(h, w, 3, generator=g), dim=-1)
    fast = P.propagate(features, first, cfg)
    torch.testing.assert_close(fast.double(), reference(features, first, cfg), rtol=1e-5, atol=1e-6)


def test_context_frames_of_the_presets():
    dino, crw = P.PRESETS["dino"], P.PRESETS["crw"]
    assert P.context_frames(1, dino) == [(0, True)]
    assert P.context_frames(10, dino) == [(0, True)] + [(t, True) for t in range(3, 10)]
    assert P.context_frames(1, crw) == [(0, False)] + [(0, True)] * 20  # CRW pads with copies of frame 0
    assert P.context_frames(25, crw) == [(0, False)] + [(t, True) for t in range(5, 25)]


def test_input_sizes_of_the_resolution_presets():
    assert P.input_size(480, 854, 480, "short_side") == (480, 832)  # DINO: long side floored to x64
    assert P.input_size(480, 910, 480, "short_side") == (480, 896)
    assert P.input_size(480, 1152, 480, "short_side") == (480, 1152)
    assert P.input_size(854, 480, 480, "short_side") == (832, 480)
    assert P.input_size(480, 854, 256, "square") == (256, 256)
    assert P.RESOLUTIONS == {"480p": (480, "short_side"), "toto256": (256, "square"), "toto512": (512, "square")}


def test_first_frame_label_downsampling():
    labels = np.zeros((16, 16), np.uint8)
    labels[:8, :8] = 2
    near = P.first_frame_labels(labels, (4, 4), "nearest")
    assert near.shape == (4, 4, 3) and near[:2, :2, 2].eq(1).all() and near[2:, 2:, 0].eq(1).all()
    soft = P.first_frame_labels(labels, (4, 4), "bilinear")
    torch.testing.assert_close(soft.sum(-1), torch.ones(4, 4))  # still a distribution per patch


def test_soft_to_labels_min_max_per_channel_changes_the_argmax():
    # background 0.6 everywhere vs object rising to 0.5: raw argmax is all background; after per-channel
    # min-max (DINO's norm_mask) the object wins where it peaks.
    soft = torch.zeros(2, 2, 2)
    soft[..., 0] = torch.tensor([[0.6, 0.6], [0.6, 0.7]])
    soft[..., 1] = torch.tensor([[0.5, 0.0], [0.0, 0.0]])
    assert P.soft_to_labels(soft, (2, 2), (2, 2), norm_mask=False).sum() == 0
    np.testing.assert_array_equal(P.soft_to_labels(soft, (2, 2), (2, 2), norm_mask=True), [[1, 0], [0, 0]])
    assert P.soft_to_labels(soft, (2, 2), (6, 4), norm_mask=True).shape == (6, 4)  # nearest to annotation size
