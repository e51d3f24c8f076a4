"""torchvision ResNets behind the backbone contract: the four residual stages are the layers.

A CNN has no tokens, so each stage's feature map plays the role of the token grid. The contract wants one
grid for all layers (the cache stores one `(T', H', W')` per entry), so the earlier, finer stages are
average-pooled onto the last stage's stride-32 grid: layer i keeps its own channel count (256, 512, 1024, 2048
for ResNet-50; `layer_dims` lists them, `embed_dim` is the last) and every layer's grid is `(T, H/32, W/32)`.
Average pooling keeps the pooled-mean features of a stage exactly equal to the mean of its full map. Frames of
a video are run as a batch of images, like the timm ViTs. Weights come from a local torchvision (or timm, same
keys) state dict; the classifier `fc` is ignored.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from toto_eval.harness.backbone import Backbone, Layers, Preprocess, resolve_layers
from toto_eval.harness.registry import BACKBONES

from ._weights import load_checked, require_weights, seeded

STRIDES = (4, 8, 16, 32)  # output stride of layer1..layer4


class TorchvisionResNet(Backbone):
    """ResNet stages as layers, each `(B, T, H/32, W/32, C_stage)`."""

    patch_size = 32
    num_heads = 8  # for attentive probes; divides every stage width (64 .. 2048)

    def __init__(self, name: str, arch: str, model: nn.Module) -> None:
        super().__init__()
        self.name, self.arch = name, arch
        self.model = model.eval()
        self.stages = [model.layer1, model.layer2, model.layer3, model.layer4]
        self.num_layers = len(self.stages)
        self.layer_dims = tuple(_out_channels(stage) for stage in self.stages)
        self.embed_dim = self.layer_dims[-1]
        self.preprocess = Preprocess(resolution=224, frames=16, frame_stride=4)

    def forward_features(self, x: torch.Tensor, layers: Layers = None) -> dict[int, torch.Tensor]:
        take = resolve_layers(self.num_layers, layers)
        b, t = x.shape[:2]
        m = self.model
        h = m.maxpool(m.relu(m.bn1(m.conv1(x.flatten(0, 1)))))  # (B*T, 64, H/4, W/4)
        out = {}
        for i, stage in enumerate(self.stages[: take[-1] + 1]):
            h = stage(h)  # (B*T, C_i, H/s_i, W/s_i)
            if i in take:
                k = STRIDES[-1] // STRIDES[i]
                pooled = F.avg_pool2d(h, k) if k > 1 else h  # onto the stride-32 grid
                out[i] = pooled.permute(0, 2, 3, 1).unflatten(0, (b, t))
        return out

    def config(self) -> dict:
        return {**super().config(), "arch": self.arch, "grid_stride": STRIDES[-1]}


def _out_channels(stage: nn.Sequential) -> int:
    last = stage[-1]
    bn = getattr(last, "bn3", None) or last.bn2  # Bottleneck ends in bn3, BasicBlock in bn2
    return int(bn.num_features)


def _factory(name: str, arch: str) -> Callable[..., TorchvisionResNet]:
    def build(checkpoint: str | None = None, random_init: bool = False) -> TorchvisionResNet:
        require_weights(name, checkpoint, random_init)
        import torchvision

        with seeded():
            model = getattr(torchvision.models, arch)(weights=None)
        model.fc = nn.Identity()  # the classifier is never used; a checkpoint's fc.* is ignored
        if checkpoint is not None:
            load_checked(model, checkpoint, f"torchvision {arch}", ignore=("fc.",))
        backbone = TorchvisionResNet(name, arch, model)
        backbone.random_init, backbone.checkpoint = random_init, checkpoint
        return backbone

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"torchvision {arch}: 4 stages on a stride-32 grid, 224 px, 16 frames every 4th."
    return build


for _name in ("resnet18", "resnet34", "resnet50", "resnet101"):
    BACKBONES.add(_name, _factory(_name, _name))
