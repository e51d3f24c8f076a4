"""The backbone contract every model is evaluated through.

A backbone is an `nn.Module` that maps a clip `(B, T, C, H, W)` (float, already in its own normalisation; an
image is `T = 1`) to per-layer token grids `{layer: (B, T', H', W', D)}`. Layer selection follows timm's
`forward_intermediates` rule, resolved once by `resolve_layers`: None = every layer, an int n = the last n, a
list = those layers, negative indices count from the end. Implementations stop after the deepest requested
layer. Metadata (`num_layers`, `embed_dim`, `num_heads`, `default_layer`, `preprocess`) lets tasks build their
inputs without hard-coding anything, and `fingerprint()` names the exact weights in every cache key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..common.errors import ConfigError

Layers = int | Sequence[int] | None


@dataclass(frozen=True)
class Preprocess:
    """How a backbone wants its frames: tasks read this instead of hard-coding resolutions and statistics."""

    resolution: int = 224  # square side in pixels after resize + crop
    frames: int = 16  # frames per clip for video tasks
    frame_stride: int = 4  # sample every `frame_stride`-th frame
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    tokenizer: str = "none"  # recorded in results and cache keys

    def normalize(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (or float in [0, 255]) `(..., C, H, W)` frames -> float in this backbone's normalisation, on the
        frames' device (so uint8 crosses to the GPU and becomes float there)."""
        mean = torch.tensor(self.mean, dtype=torch.float32, device=frames.device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=frames.device).view(3, 1, 1)
        return (frames.float() / 255.0 - mean) / std


def resolve_layers(num_layers: int, layers: Layers) -> list[int]:
    """timm's `feature_take_indices` rule: None = all, int n = last n, negatives count from the end."""
    if layers is None:
        return list(range(num_layers))
    if isinstance(layers, int):
        if not 0 < layers <= num_layers:
            raise ConfigError(f"asked for the last {layers} layers of a {num_layers}-layer backbone")
        return list(range(num_layers - layers, num_layers))
    out = []
    for i in layers:
        j = i + num_layers if i < 0 else i
        if not 0 <= j < num_layers:
            raise ConfigError(f"layer {i} does not exist in a {num_layers}-layer backbone (0..{num_layers - 1})")
        out.append(j)
    return sorted(set(out))


class Backbone(nn.Module, ABC):
    """Base class of every evaluated model. Subclasses set the metadata and implement `forward_features`."""

    name: str = "backbone"
    num_layers: int
    embed_dim: int
    num_heads: int
    patch_size: int = 16  # spatial pixels per token side
    preprocess: Preprocess = Preprocess()
    random_init: bool = False  # weights are an untrained initialisation, recorded in results
    checkpoint: str | None = None  # path of the loaded weights, if any

    @property
    def default_layer(self) -> int:
        """The layer a task uses when it probes one layer only (Toto: the middle of the network)."""
        return self.num_layers // 2

    @abstractmethod
    def forward_features(self, x: torch.Tensor, layers: Layers = None) -> dict[int, torch.Tensor]:
        """`(B, T, C, H, W)` -> `{layer: (B, T', H', W', D)}` for the resolved layers, special tokens removed."""

    def token_grid(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """`(T', H', W')` of the grid for an input of that size; the default is one token per patch per frame."""
        return frames, height // self.patch_size, width // self.patch_size

    def flops_per_view(self, frames: int, height: int, width: int) -> float:
        """Forward FLOPs of one clip of that size, for the planner: by default 2 per parameter per token (a
        transformer's matmuls; families that know their attention or convolution cost say so themselves)."""
        t, h, w = self.token_grid(frames, height, width)
        return 2.0 * self.num_params() * t * h * w

    def config(self) -> dict:
        """Everything (besides weights) that changes the features; part of the fingerprint."""
        return {"name": self.name, "preprocess": dataclasses.asdict(self.preprocess)}

    def fingerprint(self) -> str:
        """A stable hash of name, config and the exact parameter and buffer bytes.

        Hashing every weight is the expensive part, so the hash is kept until a tensor changes: the key is each
        tensor's storage and in-place version counter (`load_state_dict`, an optimiser step or `+=` bump it).
        """
        state = self.state_dict()
        key = (json.dumps(self.config(), sort_keys=True, default=str),)
        key += tuple((name, t.data_ptr(), t._version, tuple(t.shape), t.dtype) for name, t in state.items())
        memo = self.__dict__.get("_fingerprint_memo")
        if memo is None or memo[0] != key:
            h = hashlib.sha256(key[0].encode())
            for name, tensor in sorted(state.items()):
                h.update(name.encode())
                h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
            memo = (key, h.hexdigest()[:16])
            self.__dict__["_fingerprint_memo"] = memo
        return memo[1]

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
