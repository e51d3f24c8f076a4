"""Positive controls: small networks TRAINED WITH LABELS on a mini task's own train split, then probed as backbones.

A benchmark can only rank representations when its tasks can tell a good one from noise. The floors are an
untrained network (`--random-init`) and `pixels`; these controls are the other end: `control_imagenet`,
`control_k400` and `control_cater` are each trained, supervised, on the TRAIN split of that one mini task (never
val), and then evaluated exactly like any backbone (`toto-eval run --backbone control_k400 --tasks k400_probe`):
their features are cached and a fresh probe is trained on them. A task whose control does not clearly beat its
floors cannot rank anything and must be redesigned. A control's score on any other task means nothing; it is not
a pre-trained model, and its results say so (`supervised_control` in its config, hence in its fingerprint).

The network (`ControlNet`) is a small shift-MLP video network: a patch embedding of 8 x 8 pixels per token (RGB,
the frame's difference from the previous one, so motion smaller than a token is visible, and two coordinate
channels, so tokens know where they are: CATER's label is a position), then `blocks` residual blocks
that shift channel groups one token along time, height and width and apply a pointwise MLP, on the
`(T, H/8, W/8)` grid. Layer i is block i's output. Training: attention-pooled last layer (one learned query, as
the probe pools) -> linear classifier (CATER: per-token classes pooled by log-sum-exp over each frame, against the
snitch's cell in that frame), cross-entropy with label smoothing, AdamW, warm-up and cosine decay, a fixed seed,
and augmentation where the task allows it (ImageNet: random shifts; CATER: mirrored clips with mirrored cells).
Weights are trained on normalised frames, exactly as the cache feeds them, on first use, and cached in
`<cache>/controls/<name>-mini<version>-<recipe hash>.safetensors` (`<cache>` is `$TOTO_EVAL_CACHE_DIR`, else
`~/.cache/toto-eval`), so a changed mini dataset (its generator version) or recipe retrains. `--checkpoint FILE`
loads given weights; `--random-init` gives the untrained twin (another floor). `control_davis` is trained for
correspondence instead (see `_control_train.train_correspondence`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..common.errors import CheckpointError
from ..common.files import default_cache_dir
from ..harness.backbone import Backbone, Layers, Preprocess, resolve_layers
from ..harness.registry import BACKBONES
from ._control_data import TRAIN_SETS, mini_version
from ._control_train import OBJECTIVES, train_classifier
from ._weights import seeded

log = logging.getLogger(__name__)

CONTROL_FORMAT = 4  # bump when the architecture or the training loop changes: cached weights are then retrained
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ControlSpec:
    """What a control learns from and how: the task, its input protocol, the network and the training recipe."""

    task: str  # the task whose mini train split it is trained on
    num_classes: int
    frames: int = 1  # preprocess.frames; CATER's control is trained on clips of this many frames
    frame_stride: int = 1
    labels: str = ""  # which label list of the task (CATER: "localize_4x4"); "" = the task's default
    per_frame: bool = False  # CATER: a label per sampled frame (the snitch's cell then), not one per clip
    head: str = "attention"  # training head: "attention" (pool, then classify) or "mil" (classify tokens, then pool)
    resolution: int = 64
    width: int = 64
    blocks: int = 4
    epochs: int = 30
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 2
    label_smoothing: float = 0.1
    mirror_grid: int = 0  # augmentation (CATER): mirror half the clips left-right, and their cell labels on this grid
    translate: int = 0  # augmentation: random whole-pixel shifts of each training clip, up to this many pixels
    seed: int = 0


SPECS = {
    # ImageNet: digits anywhere in photos, 1,437 train images. Without shifts the control memorises the backgrounds
    # (36% val top-1 after 60 epochs); shifts of up to 8 px give 69% (its own head, measured on the mini val).
    "control_imagenet": ControlSpec("imagenet_probe", num_classes=10, batch_size=64, lr=3e-3, epochs=100, translate=8),
    "control_k400": ControlSpec("k400_probe", num_classes=12, frames=8, frame_stride=8),
    # CATER: per-token class evidence pooled by a smooth max (multiple-instance learning) finds a 5 px snitch among
    # the tokens of a frame. 280 train videos with one label each were memorised (val top-1 2.5% on the 4x4 grid,
    # its own head); the snitch's cell at every sampled frame (from the train scenes) and mirrored clips teach
    # "where is the snitch" instead: 51.7% (a colour-threshold snitch finder with 3-NN gets 49%).
    "control_cater": ControlSpec(
        "cater",
        num_classes=16,
        frames=8,
        frame_stride=2,
        labels="localize_4x4",
        per_frame=True,
        head="mil",
        mirror_grid=4,
        width=96,
        epochs=80,
    ),
    "control_davis": ControlSpec("davis", num_classes=0, epochs=10, lr=1e-3),  # correspondence, no classes
}


def shift(x: torch.Tensor) -> torch.Tensor:
    """Token mixing for free: six groups of D/8 channels move one token along +t, -t, +y, -y, +x, -x (zero filled).

    x: (B, T, H, W, D). The other channels stay. Stacked blocks see further, like stacked 3x3x3 convolutions, at
    the cost of a copy (a depthwise Conv3d's backward is many times slower on CPU). Split, roll and an in-place
    zeroed edge keep the backward as cheap as the forward (slicing would allocate a zero gradient per group).
    """
    g = x.shape[-1] // 8
    keep, *groups = torch.split(x, [x.shape[-1] - 6 * g] + [g] * 6, dim=-1)
    moved = [keep]
    for k, part in enumerate(groups):
        dim, step = 1 + k // 2, 1 if k % 2 == 0 else -1
        rolled = torch.roll(part, step, dims=dim)
        rolled.narrow(dim, 0 if step == 1 else part.shape[dim] - 1, 1).zero_()  # what wrapped around
        moved.append(rolled)
    return torch.cat(moved, dim=-1)


class Block(nn.Module):
    """x + MLP(LN(shift(x))) on a `(B, T, H, W, D)` token grid."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(F.gelu(self.fc1(self.norm(shift(x)))))


class ControlNet(Backbone):
    """`(B, T, 3, H, W)` -> `{i: (B, T, H/8, W/8, width)}`; `logits` is the training head on the last layer."""

    patch_size = 8
    supervised_control = True  # trained with labels on one mini task's train split: a positive control

    def __init__(self, name: str, spec: ControlSpec) -> None:
        super().__init__()
        self.name, self.spec = name, spec
        self.num_layers, self.embed_dim, self.num_heads = spec.blocks, spec.width, 8
        self.preprocess = Preprocess(spec.resolution, spec.frames, spec.frame_stride, IMAGENET_MEAN, IMAGENET_STD)
        # RGB, its change since the previous frame (motion, sub-token displacements), and (x, y) coordinates
        self.embed = nn.Conv2d(8, spec.width, self.patch_size, stride=self.patch_size)
        self.embed_norm = nn.LayerNorm(spec.width)
        self.blocks = nn.ModuleList(Block(spec.width) for _ in range(spec.blocks))
        self.head_norm = nn.LayerNorm(spec.width)
        self.head_query = nn.Parameter(torch.zeros(spec.width))  # attention pooling; zeros: starts as the mean
        self.head = nn.Linear(spec.width, spec.num_classes) if spec.num_classes else None

    @property
    def default_layer(self) -> int:
        return self.num_layers - 1  # the layer the labels trained

    def config(self) -> dict:
        return {**super().config(), "supervised_control": dataclasses.asdict(self.spec), "format": CONTROL_FORMAT}

    def forward_features(self, x: torch.Tensor, layers: Layers = None) -> dict[int, torch.Tensor]:
        take = resolve_layers(self.num_layers, layers)
        b, t, _, h, w = x.shape
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        coords = torch.stack([xs, ys]).to(x).expand(b * t, 2, h, w)
        change = torch.cat([torch.zeros_like(x[:, :1]), x[:, 1:] - x[:, :-1]], 1)  # (B, T, C, H, W); 0 at t = 0
        z = self.embed(torch.cat([x.flatten(0, 1), change.flatten(0, 1), coords], 1))  # (B*T, D, H/8, W/8)
        z = self.embed_norm(z.permute(0, 2, 3, 1).unflatten(0, (b, t)))  # (B, T, H/8, W/8, D)
        out = {}
        for i, block in enumerate(self.blocks[: take[-1] + 1]):
            z = block(z)
            if i in take:
                out[i] = z
        return out

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The training head on the last layer's tokens: attention pooling (what the probe does) then linear, or
        ("mil") linear class evidence per token, pooled by log-sum-exp, so the few tokens that show the answer
        get the gradient."""
        last = self.num_layers - 1
        tokens = self.head_norm(self.forward_features(x, [last])[last])  # (B, T, h, w, D)
        if self.spec.head == "mil":  # per frame (B, T, C) or per clip (B, C)
            tokens = tokens.flatten(2, 3) if self.spec.per_frame else tokens.flatten(1, 3)
            return torch.logsumexp(self.head(tokens), dim=-2) - math.log(tokens.shape[-2])
        tokens = tokens.flatten(1, 3)  # (B, N, D)
        weights = torch.softmax(tokens @ self.head_query / tokens.shape[-1] ** 0.5, dim=1)  # (B, N)
        return self.head(torch.einsum("bn,bnd->bd", weights, tokens))


def cache_root() -> Path:
    """Where trained control weights live: the default cache folder (`$TOTO_EVAL_CACHE_DIR`, else ~/.cache)."""
    return default_cache_dir()


def weights_path(name: str, spec: ControlSpec, root: Path) -> Path:
    """`<root>/controls/<name>-mini<version>-<hash of the recipe and format>.safetensors`."""
    recipe = json.dumps({"spec": dataclasses.asdict(spec), "format": CONTROL_FORMAT}, sort_keys=True)
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:10]
    return root / "controls" / f"{name}-mini{mini_version(spec.task)}-{digest}.safetensors"


def trained(name: str, spec: ControlSpec, root: Path | None = None) -> ControlNet:
    """The control with its cached weights, training (and caching) them first when they are not there yet."""
    from safetensors.torch import load_file, save_file

    root = root or cache_root()
    path = weights_path(name, spec, root)
    with seeded(spec.seed):
        net = ControlNet(name, spec)
    if not path.exists():
        t0 = time.perf_counter()
        log.info("%s: first use, training on the %s mini train split (cached in %s)", name, spec.task, path)
        data = TRAIN_SETS[spec.task](root, net)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.seed)
            losses = OBJECTIVES.get(spec.task, train_classifier)(net, *data)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        meta = {
            "losses": json.dumps(losses),
            "train_samples": str(len(data[1])),
            "seconds": f"{time.perf_counter() - t0:.1f}",
        }
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp), metadata=meta)
        os.replace(tmp, path)
    net.load_state_dict(load_file(str(path)))
    net.checkpoint = str(path)  # trained weights cached on disk: the backbone has a checkpoint, it is not untrained
    return net.eval()


def _factory(name: str, spec: ControlSpec):
    def factory(checkpoint: str | None = None, random_init: bool = False) -> ControlNet:
        if checkpoint is not None and random_init:
            raise CheckpointError(f"backbone {name!r}: pass either --checkpoint PATH or --random-init, not both")
        if random_init:
            with seeded(spec.seed):
                net = ControlNet(name, spec)
            net.random_init = True
            return net.eval()
        if checkpoint is not None:
            from ._weights import load_checked

            with seeded(spec.seed):
                net = ControlNet(name, spec)
            load_checked(net, checkpoint, name)
            net.checkpoint = checkpoint
            return net.eval()
        return trained(name, spec)

    factory.__doc__ = (
        f"POSITIVE CONTROL, not a pre-trained model: a small shift-MLP network trained with labels on the "
        f"{spec.task} mini train split on first use (weights cached); meaningful on {spec.task} only."
    )
    return factory


for _name, _spec in SPECS.items():
    BACKBONES.add(_name, _factory(_name, _spec))
