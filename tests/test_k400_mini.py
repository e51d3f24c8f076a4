"""Mini Kinetics needs time: a probe that sees the clip beats, by far, one that sees a single frame.

Run: python -m pytest tests/test_k400_mini.py -q

The control uses no backbone (a backbone run is minutes; this is seconds): clips come straight from the mini
generator (48 frames instead of 80, to save time), and both probes are the same logistic regression.

- The single-frame probe sees the middle frame's pixels (8x8 RGB averages, 192 numbers): what a frame shows
  (colours, size, position, presence, coarse shape).
- The clip probe sees simple motion features of 16 frame pairs spread over the clip: a global affine optical
  flow fitted by least squares to brightness constancy (translation, rotation, divergence), and how much the
  frame differs from the clip's median (presence over time). Nothing about appearance.

If the generator leaked the class into single frames (a class-specific size, position or colour), the first
probe would catch up; if the motion did not carry it, the second would fall back.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from toto_eval.tasks.k400.mini import CLASSES, render_clip

FRAMES = 48
PAIRS = np.linspace(2, FRAMES - 3, 16).astype(int)  # frame t and t+1, spread over the clip


def _clips(per_class: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASSES)), per_class)
    return [render_clip(int(label), rng, frames=FRAMES) for label in labels], labels


def single_frame_features(clip: np.ndarray) -> np.ndarray:
    middle = clip[len(clip) // 2].astype(np.float32) / 255  # (64, 64, 3)
    return middle.reshape(8, 8, 8, 8, 3).mean(axis=(1, 3)).ravel()  # (192,)


def motion_features(clip: np.ndarray) -> np.ndarray:
    grey = gaussian_filter(clip.astype(np.float32).mean(-1) / 255, sigma=(0, 1.5, 1.5))  # (T, H, W), smoothed
    h, w = grey.shape[1:]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    xs, ys = (xs - w / 2) / w, (ys - h / 2) / h
    median = np.median(grey, axis=0)
    feats = []
    for t in PAIRS:
        gy, gx = np.gradient((grey[t] + grey[t + 1]) / 2)
        it = (grey[t + 1] - grey[t]).ravel()
        a = np.stack([gx, gx * xs, gx * ys, gy, gy * xs, gy * ys], -1).reshape(-1, 6)  # affine flow basis
        p = np.linalg.solve(a.T @ a + 1e-3 * np.eye(6), -a.T @ it)  # u = p0 + p1 x + p2 y, v = p3 + p4 x + p5 y
        presence = np.abs(grey[t] - median).mean()
        feats.append([p[0], p[3], p[4] - p[2], p[1] + p[5], presence])  # shift x, y, rotation, divergence
    return np.asarray(feats, dtype=np.float32).ravel()  # (16 * 5,)


def _probe_accuracy(train_x, train_y, test_x, test_y) -> float:
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000))
    probe.fit(train_x, train_y)
    return float((probe.predict(test_x) == test_y).mean())


def test_a_single_frame_scores_far_below_the_clip():
    train, train_y = _clips(per_class=12, seed=1)
    test, test_y = _clips(per_class=6, seed=2)
    frame_acc = _probe_accuracy(
        np.stack([single_frame_features(c) for c in train]), train_y,
        np.stack([single_frame_features(c) for c in test]), test_y,
    )  # fmt: skip
    clip_acc = _probe_accuracy(
        np.stack([motion_features(c) for c in train]), train_y, np.stack([motion_features(c) for c in test]), test_y
    )
    print(f"single frame top-1 {frame_acc:.3f}, clip top-1 {clip_acc:.3f}, chance {1 / len(CLASSES):.3f}")
    assert frame_acc < 0.25  # chance is 0.083; an empty frame narrows appear/vanish down to two classes
    assert clip_acc > 0.55 and clip_acc - frame_acc > 0.4
