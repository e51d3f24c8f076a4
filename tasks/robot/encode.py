"""Camera frames -> one pooled feature vector per frame, two ways that must agree.

Demo frames go through the feature cache (`DemoFrames` is a `ClipSource`: each frame is a one-frame clip), so
a backbone sees each demo frame once across runs. Rollout frames are new every step, so `LiveEncoder` runs the
backbone online on the batch of frames of all parallel episodes, pooling exactly like the cache does (token-grid
mean, stored through float16), so a policy trained on cached features sees the same numbers during rollouts.
Frames are resized from the simulator's size to the backbone's own `preprocess.resolution`.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np
import torch
import torch.nn.functional as F

from toto_eval.harness.backbone import Backbone, Preprocess

from .demos import Demo

FP16_MAX = 65504.0


def prepare(images: np.ndarray, pre: Preprocess, normalize: bool = True) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 1, 3, R, R) float in the backbone's normalisation (or, with `normalize=False`,
    in [0, 255] on the uint8 grid, as the feature cache takes frames), R = pre.resolution."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()  # (N, 3, H, W)
    r = pre.resolution
    if x.shape[-2:] != (r, r):
        x = F.interpolate(x, size=(r, r), mode="bilinear", antialias=True, align_corners=False)
        x = x.round().clamp(0, 255)  # back on the uint8 grid, as a decoded frame would be
    return (pre.normalize(x) if normalize else x)[:, None]


class DemoFrames:
    """Every frame of a list of demos, as the feature cache's ClipSource (V = T = 1)."""

    def __init__(self, task: str, set_name: str, demos: list[Demo], pre: Preprocess) -> None:
        self.task, self.set_name, self.pre = task, set_name, pre
        self.frames = np.concatenate([d.images for d in demos])  # (N, H, W, 3) uint8
        self.ids = [f"{task}/seed{d.seed:05d}/t{t:03d}" for d in demos for t in range(len(d.images))]

    def identity(self) -> dict:
        digest = hashlib.sha256(self.frames.tobytes()).hexdigest()[:16]
        return {
            "dataset": "robot_demos",
            "task": self.task,
            "set": self.set_name,
            "frames": len(self.ids),
            "images_sha": digest,
            "resolution": self.pre.resolution,
        }

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, i: int) -> torch.Tensor:
        return prepare(self.frames[i : i + 1], self.pre, normalize=False)[0][None]  # (V=1, T=1, C, H, W)


class LiveEncoder:
    """`encoder(images (B, H, W, 3) uint8) -> (B, D) float32` pooled features of one layer, cache-identical."""

    def __init__(self, backbone: Backbone, layer: int, device: torch.device) -> None:
        self.backbone, self.layer, self.device = backbone.eval().to(device), layer, device
        self.seconds = 0.0
        self.frames = 0

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        x = prepare(images, self.backbone.preprocess).to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            out = self.backbone.forward_features(x, [self.layer])[self.layer]  # (B, T', H', W', D)
        pooled = out.float().mean(dim=(1, 2, 3)).clamp(-FP16_MAX, FP16_MAX)
        feats = pooled.cpu().numpy().astype(np.float16).astype(np.float32)
        self.seconds += time.perf_counter() - t0
        self.frames += len(images)
        return feats
