"""An example third-party backbone: a two-layer strided CNN, registered through an entry point.

It lives outside toto-eval and is found by name once installed, because pyproject.toml lists it under the
`toto_eval.backbones` entry-point group. It exists to show (and test) the plugin route end to end.
"""

from __future__ import annotations

import torch
from torch import nn

from toto_eval.common.errors import CheckpointError
from toto_eval.harness.backbone import Backbone, Layers, Preprocess, resolve_layers


class TinyCNN(Backbone):
    """Two 8x8 / stride-8 then 1x1 convolutions: each layer is a `(B, T, H/8, W/8, 32)` grid."""

    num_layers, embed_dim, num_heads, patch_size = 2, 32, 4, 8
    preprocess = Preprocess(resolution=64, frames=4, frame_stride=2)

    def __init__(self) -> None:
        super().__init__()
        self.name = "plugin_tiny_cnn"
        self.convs = nn.ModuleList([nn.Conv2d(3, 32, 8, stride=8), nn.Conv2d(32, 32, 1)])

    def forward_features(self, x: torch.Tensor, layers: Layers = None) -> dict[int, torch.Tensor]:
        take = resolve_layers(self.num_layers, layers)
        b, t = x.shape[:2]
        h, out = x.flatten(0, 1), {}
        for i, conv in enumerate(self.convs[: take[-1] + 1]):  # stop after the deepest requested layer
            h = torch.relu(conv(h))  # (B*T, 32, H/8, W/8)
            if i in take:
                out[i] = h.permute(0, 2, 3, 1).unflatten(0, (b, t))
        return out


def tiny_cnn(checkpoint: str | None = None, random_init: bool = False) -> TinyCNN:
    """The factory toto-eval calls: weights from a state-dict file, or a seeded random init."""
    if checkpoint is None and not random_init:
        raise CheckpointError("plugin_tiny_cnn needs weights: pass --checkpoint PATH or --random-init")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = TinyCNN()
    if checkpoint is not None:
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    model.random_init, model.checkpoint = random_init, checkpoint
    return model.eval()
