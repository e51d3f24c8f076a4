"""Floor baselines: `pixels`, the raw resized frames as a one-layer backbone.

Every table needs a floor: a probe on the pixels themselves says how much of a score the backbone earned.
`pixels` cuts each (already resized and normalised) frame into 16 x 16 patches and returns each patch's raw
values as a 768-dim token (channel-major inside a patch, like a patch-embedding convolution's input), one token
per patch per frame, so it drops into every task exactly like a ViT. It has no weights: it needs neither
`--checkpoint` nor `--random-init`, and refuses a checkpoint. The other floor, an untrained network, is any
backbone with `--random-init` (recorded as such in its results).
"""

from __future__ import annotations

import torch

from toto_eval.common.errors import CheckpointError
from toto_eval.harness.backbone import Backbone, Layers, Preprocess, resolve_layers
from toto_eval.harness.registry import BACKBONES


class Pixels(Backbone):
    """`(B, T, C, H, W)` -> `{0: (B, T, H/p, W/p, C*p*p)}`: patchified pixels, no parameters."""

    num_layers = 1

    def __init__(self, patch_size: int = 16, preprocess: Preprocess | None = None) -> None:
        super().__init__()
        self.name = "pixels"
        self.patch_size = patch_size
        self.embed_dim = 3 * patch_size * patch_size
        self.num_heads = 12 if self.embed_dim % 12 == 0 else 1
        self.preprocess = preprocess or Preprocess()

    @property
    def default_layer(self) -> int:
        return 0

    def forward_features(self, x: torch.Tensor, layers: Layers = None) -> dict[int, torch.Tensor]:
        resolve_layers(self.num_layers, layers)  # validates the request; there is only layer 0
        b, t, c, h, w = x.shape
        p = self.patch_size
        tokens = x.reshape(b, t, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4, 6)  # (B, T, H', W', C, p, p)
        return {0: tokens.flatten(4)}

    def config(self) -> dict:
        return {**super().config(), "patch_size": self.patch_size}


@BACKBONES.register("pixels")
def pixels(checkpoint: str | None = None, random_init: bool = False) -> Pixels:
    """Raw 224 px frames as 16 x 16 patch tokens (D = 768); 16 frames every 4th for video tasks."""
    if checkpoint is not None:
        raise CheckpointError(f"{checkpoint}: the 'pixels' baseline has no weights; drop --checkpoint")
    return Pixels()
