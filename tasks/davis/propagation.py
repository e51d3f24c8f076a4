"""Nearest-neighbour label propagation of a first-frame mask through a video, from frozen patch features.

For each target frame t, every target patch attends to patches of a set of context frames (the first frame, with
its GT labels, plus a queue of recent frames with their *soft* predicted labels): cosine similarity of
L2-normalised features, a spatial window around the target position, the top-k sources over all context frames
together, a softmax of those k similarities at a temperature, and the weighted sum of the sources' label
vectors. Two presets follow the two reference implementations:

- `dino` (facebookresearch/dino `eval_video_segmentation.py`): frame 0 plus the last 7 frames, square window of
  radius 12 patches (also on frame 0), top-5, temperature 0.1, nearest-downsampled first-frame labels, per-channel
  min-max before the argmax. DINO keeps every source tied with the k-th value; we keep exactly k, which differs
  only on exact ties between sources with different labels.
- `crw` (ajabri/videowalk, the STC protocol Toto says it followed): frame 0 as unrestricted long memory plus the
  last 20 frames, padded before frame 1 with copies of frame 0; circular window (distance < 12) on the short-term
  context only; top-10, temperature 0.05; bilinear-downsampled labels; no min-max.

The affinity of a whole 480p frame against 8-21 context frames is gigabytes, so targets are processed in square
tiles, and a tile only compares against the source rectangle its window can reach.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from toto_eval.common.errors import ConfigError


@dataclass(frozen=True)
class PropagationConfig:
    """Every knob of the propagation; `PRESETS` holds the two reference settings."""

    context: int = 7  # recent frames in the queue, besides the first frame
    radius: int = 12  # spatial window, in patches
    window: Literal["square", "circle"] = "square"  # Chebyshev <= radius, or Euclidean < radius
    window_on_first: bool = True  # whether the first frame is windowed too
    pad_with_first: bool = False  # short-term context before frame 1 is copies of frame 0 (CRW)
    topk: int = 5
    temperature: float = 0.1
    label_downsample: Literal["nearest", "bilinear"] = "nearest"
    norm_mask: bool = True  # per-channel min-max of the upsampled soft labels before the argmax
    memory_mb: int = 256  # budget for one band's (targets x sources) affinity block

    def __post_init__(self) -> None:
        if self.topk < 1 or self.context < 0 or self.radius < 1 or self.temperature <= 0:
            raise ConfigError(f"propagation: need topk >= 1, context >= 0, radius >= 1, temperature > 0: {self}")


PRESETS: dict[str, PropagationConfig] = {
    "dino": PropagationConfig(),
    "crw": PropagationConfig(
        context=20,
        window="circle",
        window_on_first=False,
        pad_with_first=True,
        topk=10,
        temperature=0.05,
        label_downsample="bilinear",
        norm_mask=False,
    ),
}


def preset(name: str, **overrides: object) -> PropagationConfig:
    """A named preset with some fields replaced (None values are ignored)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown propagation preset {name!r} (known: {', '.join(PRESETS)})")
    return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})


def context_frames(t: int, cfg: PropagationConfig) -> list[tuple[int, bool]]:
    """(frame index, windowed) of every context frame of target t >= 1; the first entry is frame 0."""
    out = [(0, cfg.window_on_first)]
    if cfg.pad_with_first:
        out += [(max(tau, 0), True) for tau in range(t - cfg.context, t)]
    else:
        out += [(tau, True) for tau in range(max(1, t - cfg.context), t)]
    return out


def first_frame_labels(labels: np.ndarray, grid: tuple[int, int], mode: str) -> torch.Tensor:
    """`(H, W)` uint8 ids (void already 0) -> `(h, w, C)` float label vectors on the token grid, C = max id + 1."""
    h, w = grid
    num = int(labels.max()) + 1
    if mode == "nearest":
        small = np.asarray(Image.fromarray(labels).resize((w, h), Image.Resampling.NEAREST))
        return F.one_hot(torch.from_numpy(small.astype(np.int64)), num).float()
    onehot = F.one_hot(torch.from_numpy(labels.astype(np.int64)), num).float().permute(2, 0, 1)[None]
    small = F.interpolate(onehot, size=(h, w), mode="bilinear", align_corners=False)  # (1, C, h, w)
    return small[0].permute(1, 2, 0).contiguous()


def propagate(features: torch.Tensor | np.ndarray, first: torch.Tensor, cfg: PropagationConfig) -> torch.Tensor:
    """Soft labels of every frame, computed on `first`'s device.

    Args:
        features: `(N, h, w, D)` patch features of the N frames, a tensor or a (memory-mapped) array; only the
            frames of one step's context are read and converted to fp32 at a time, so a long 480p sequence
            never has to be in memory at full precision.
        first: `(h, w, C)` label vectors of frame 0.
    Returns:
        `(N, h, w, C)` soft labels; frame 0 is `first`.
    """
    soft = first.new_zeros((features.shape[0], *first.shape))
    soft[0] = first
    for t in range(1, features.shape[0]):
        frames = context_frames(t, cfg)
        idx = [f for f, _ in frames]
        windowed = torch.tensor([w for _, w in frames], device=first.device)
        query = F.normalize(_take(features, [t], first.device)[0], dim=-1)
        keys = F.normalize(_take(features, idx, first.device), dim=-1)
        soft[t] = _propagate_frame(query, keys, soft[idx], windowed, cfg)
    return soft


def _take(features: torch.Tensor | np.ndarray, idx: list[int], device: torch.device) -> torch.Tensor:
    """Frames `idx` of `features` as fp32 on `device`; each distinct frame is read once."""
    unique, inverse = np.unique(idx, return_inverse=True)
    if isinstance(features, np.ndarray):
        frames = torch.from_numpy(np.array(features[unique]))
    else:
        frames = features[torch.from_numpy(unique).to(features.device)]
    return frames.to(device).float()[torch.from_numpy(inverse).to(device)]


def _window(dy: torch.Tensor, dx: torch.Tensor, cfg: PropagationConfig) -> torch.Tensor:
    if cfg.window == "square":
        return (dy.abs() <= cfg.radius) & (dx.abs() <= cfg.radius)
    return dy * dy + dx * dx < cfg.radius * cfg.radius


def _tile_side(h: int, w: int, m_win: int, m_free: int, cfg: PropagationConfig) -> int:
    # Square target tiles of twice the window's radius keep the compared sources near the window's own size
    # while the matmuls stay large enough to be efficient (measured fastest of 6/12/24/60 at 480p, radius 12);
    # halve the side while one tile's affinity block (targets x sources, fp32 + a bool mask) exceeds the budget.
    side = max(1, min(max(h, w), 2 * cfg.radius))
    while side > 1:
        sources = m_win * min(h, side + 2 * cfg.radius) * min(w, side + 2 * cfg.radius) + m_free * h * w
        if side * side * sources * 5 <= cfg.memory_mb * 2**20:
            break
        side //= 2
    return side


def _propagate_frame(
    query: torch.Tensor, keys: torch.Tensor, labels: torch.Tensor, windowed: torch.Tensor, cfg: PropagationConfig
) -> torch.Tensor:
    """query `(h, w, D)`, keys `(m, h, w, D)`, labels `(m, h, w, C)`, windowed `(m,)` -> `(h, w, C)`."""
    h, w, d = query.shape
    c = labels.shape[-1]
    keys_win, labels_win = keys[windowed], labels[windowed]  # (m_win, h, w, D), (m_win, h, w, C)
    keys_free = keys[~windowed].reshape(-1, d)  # every position of unrestricted frames
    labels_free = labels[~windowed].reshape(-1, c)
    m_win = keys_win.shape[0]
    side = _tile_side(h, w, m_win, int((~windowed).sum()), cfg)
    ys, xs = torch.meshgrid(torch.arange(h, device=query.device), torch.arange(w, device=query.device), indexing="ij")
    out = query.new_empty(h, w, c)
    for r0 in range(0, h, side):
        for c0 in range(0, w, side):
            r1, c1 = min(h, r0 + side), min(w, c0 + side)
            # Only the source rectangle the window can reach around this tile is compared.
            rows = slice(max(0, r0 - cfg.radius), min(h, r1 + cfg.radius))
            cols = slice(max(0, c0 - cfg.radius), min(w, c1 + cfg.radius))
            q = query[r0:r1, c0:c1].reshape(-1, d)  # (n_q, D)
            src = torch.cat([keys_win[:, rows, cols].reshape(-1, d), keys_free])  # (n_s, D)
            src_labels = torch.cat([labels_win[:, rows, cols].reshape(-1, c), labels_free])  # (n_s, C)
            sims = q @ src.T  # (n_q, n_s)
            if m_win:
                dy = ys[r0:r1, c0:c1].reshape(-1, 1) - ys[rows, cols].reshape(1, -1)
                dx = xs[r0:r1, c0:c1].reshape(-1, 1) - xs[rows, cols].reshape(1, -1)
                allowed = _window(dy, dx, cfg)  # (n_q, n_rect), the same for every windowed frame
                n_rect = allowed.shape[1]
                sims[:, : m_win * n_rect].view(-1, m_win, n_rect).masked_fill_(~allowed[:, None, :], -math.inf)
            top, idx = sims.topk(min(cfg.topk, sims.shape[1]), dim=1)  # (n_q, k)
            weights = torch.softmax(top / cfg.temperature, dim=1)  # masked sources (-inf) get weight 0
            pred = torch.einsum("qk,qkc->qc", weights, src_labels[idx])
            out[r0:r1, c0:c1] = pred.reshape(r1 - r0, c1 - c0, c)
    return out


def soft_to_labels(
    soft: torch.Tensor, input_size: tuple[int, int], output_size: tuple[int, int], norm_mask: bool
) -> np.ndarray:
    """`(h, w, C)` soft labels -> `(H, W)` uint8 ids: bilinear to the model input size, optional per-channel
    min-max, argmax, then nearest resize to the annotation size."""
    x = soft.permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=input_size, mode="bilinear", align_corners=False)[0]  # (C, H_in, W_in)
    if norm_mask:
        lo = x.amin(dim=(1, 2), keepdim=True)
        hi = x.amax(dim=(1, 2), keepdim=True)
        scaled = torch.where(hi > lo, (x - lo) / (hi - lo).clamp_min(1e-12), torch.ones_like(x))
        x = torch.where(hi > 0, scaled, x)  # channels that are zero everywhere stay zero
    ids = x.argmax(dim=0).to(torch.uint8).cpu().numpy()
    height, width = output_size
    if ids.shape == (height, width):
        return ids
    return np.asarray(Image.fromarray(ids).resize((width, height), Image.Resampling.NEAREST))


RESOLUTIONS: dict[str, tuple[int, str]] = {
    "480p": (480, "short_side"),
    "toto256": (256, "square"),
    "toto512": (512, "square"),
}


def input_size(height: int, width: int, side: int, mode: str, multiple: int = 64) -> tuple[int, int]:
    """Model input size for a frame: a `side` x `side` warp, or DINO's rule (short side = `side`, long side
    scaled and floored to a multiple of 64: 854 -> 832 at 480p)."""
    if mode == "square":
        return side, side
    if mode != "short_side":
        raise ConfigError(f"resize_mode {mode!r} is not 'square' or 'short_side'")
    if height <= width:
        return side, max(multiple, int((side * width / height) // multiple * multiple))
    return max(multiple, int((side * height / width) // multiple * multiple)), side
