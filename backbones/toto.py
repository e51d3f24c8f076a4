"""Toto as a backbone: the pre-training transformer (`pretrain/model.py`) behind the evaluation contract.

A clip `(B, T, C, H, W)` is tokenised frame by frame (each frame on its own, as in pre-training), laid out in
raster order, frames in time order, between the start token (1 for video, 3 for an image) and the end token (2).
`forward_features` runs the decoder only up to the deepest requested block and returns each requested block's
output on the `(T, H/p, W/p)` token grid, special tokens removed. There is no second transformer here: the
weights and the code are exactly those `toto-pretrain` trains and exports.

Names: `toto_test` (seeded random init, for tests), `toto_tiny` (the checkpoint shipped in
`pretrain/weights/toto_tiny`), `toto_base`, `toto_large`, `toto_1b` (need a checkpoint or an explicit
`--random-init`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from ..common.errors import CheckpointError, ConfigError
from ..harness.backbone import Backbone, Layers, Preprocess, resolve_layers
from ..harness.registry import BACKBONES
from ..pretrain.model import TOTO_CONFIGS, Toto, TotoConfig
from ..pretrain.tokenizers import IMAGENET_MEAN, IMAGENET_STD, patchify

START_VIDEO, END, START_IMAGE = 1, 2, 3
SHIPPED = Path(__file__).resolve().parent.parent / "pretrain" / "weights"


class DecoderBackbone(Backbone):
    """Any decoder with the Toto model interface (Toto, and the GPT-2 / Mamba ablations) on patch tokens."""

    def __init__(self, name: str, model: nn.Module, preprocess: Preprocess, patch_size: int) -> None:
        super().__init__()
        if preprocess.tokenizer != "patch":
            raise ConfigError(f"{name}: tokenizer {preprocess.tokenizer!r} is not supported yet (only 'patch')")
        config = model.config
        self.name = name
        self.model = model
        self.patch_size = patch_size
        self.preprocess = preprocess
        self.num_layers, self.embed_dim, self.num_heads = config.n_layers, config.dim, config.n_heads

    def config(self) -> dict:
        return {**super().config(), "model": self.model.config.to_dict(), "patch_size": self.patch_size}

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """(B, T, C, H, W) -> the full sequence (B, 1 + T*h*w + 1, D) and the grid (T, h, w)."""
        b, t = x.shape[:2]
        patches = patchify(x, self.patch_size)  # (B, T, h, w, p*p*C)
        grid = tuple(patches.shape[1:4])
        tokens = self.model.embed_patches(patches.flatten(1, 3))  # (B, T*h*w, D), raster order per frame
        ids = torch.tensor([START_VIDEO if t > 1 else START_IMAGE, END], device=x.device)
        start, end = self.model.embed_tokens(ids).to(tokens.dtype).unbind(0)
        seq = torch.cat([start.expand(b, 1, -1), tokens, end.expand(b, 1, -1)], dim=1)
        return seq, grid

    def forward_features(self, x: torch.Tensor, layers: Layers = None) -> dict[int, torch.Tensor]:
        wanted = resolve_layers(self.num_layers, layers)
        seq, (t, h, w) = self.embed(x)
        hidden = self.model.hidden_states(seq, wanted)
        return {i: out[:, 1:-1].reshape(out.shape[0], t, h, w, -1) for i, out in hidden.items()}


class TotoBackbone(DecoderBackbone):
    """A Toto decoder on continuous patch tokens (the paper's "patch" tokeniser variant)."""

    def __init__(self, name: str, config: TotoConfig, preprocess: Preprocess, patch_size: int) -> None:
        super().__init__(name, Toto(config), preprocess, patch_size)


def _preprocess(resolution: int, frames: int = 16) -> Preprocess:
    return Preprocess(
        resolution=resolution, frames=frames, frame_stride=4, mean=IMAGENET_MEAN, std=IMAGENET_STD, tokenizer="patch"
    )


def _build(name: str, size: str, resolution: int, patch_size: int, frames: int = 16) -> TotoBackbone:
    # RoPE has no learned length; the limit only guards against runaway inputs. Allow 4x the default frames
    # (CATER probes 32-frame clips).
    tokens = 4 * frames * (resolution // patch_size) ** 2 + 2
    config = dataclasses.replace(
        TOTO_CONFIGS[size], patch_dim=3 * patch_size**2, max_seq_len=max(tokens, TOTO_CONFIGS[size].max_seq_len)
    )
    return TotoBackbone(name, config, _preprocess(resolution, frames), patch_size)


def _load(backbone: TotoBackbone, checkpoint: str) -> TotoBackbone:
    from ..pretrain.checkpoint import load_state_into

    path = Path(checkpoint)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    load_state_into(backbone.model, path)
    backbone.checkpoint = str(path)
    return backbone


def _from_checkpoint_dir(name: str, directory: Path) -> TotoBackbone:
    """A backbone whose architecture and preprocessing come from a checkpoint's config.json."""
    from ..pretrain.checkpoint import read_config

    config, extra = read_config(directory)
    data = extra.get("data", extra)  # the pre-training data recipe records the token layout it used
    patch_size = int(data.get("patch_size", 8))
    preprocess = _preprocess(int(data.get("resolution", 64)), int(data.get("frames", 16)))
    return _load(TotoBackbone(name, config, preprocess, patch_size), str(directory))


@BACKBONES.register("toto_test")
def toto_test(checkpoint: str | None = None, random_init: bool = False) -> TotoBackbone:
    """Test size, seeded random init (deterministic); 64 px frames, 8 px patches: an 8x8 grid per frame."""
    backbone = _build("toto_test", "test", resolution=64, patch_size=8)
    if checkpoint:
        return _load(backbone, checkpoint)
    backbone.random_init = True  # seeded, but untrained: results are flagged as such
    return backbone


@BACKBONES.register("toto_tiny")
def toto_tiny(checkpoint: str | None = None, random_init: bool = False) -> TotoBackbone:
    """The tiny model pre-trained on CPU by toto-pretrain and shipped with the package."""
    directory = Path(checkpoint) if checkpoint else SHIPPED / "toto_tiny"
    if directory.is_file():
        directory = directory.parent
    backbone = _from_checkpoint_dir("toto_tiny", directory)
    if random_init:  # the same architecture and preprocessing, untrained: the floor toto_tiny is compared with
        backbone.model.init_weights(seed=0)
        backbone.checkpoint, backbone.random_init = None, True
    return backbone


def _paper_size(name: str, size: str):
    def factory(checkpoint: str | None = None, random_init: bool = False) -> TotoBackbone:
        if checkpoint:
            path = Path(checkpoint)
            return _from_checkpoint_dir(name, path if path.is_dir() else path.parent)
        if not random_init:
            raise CheckpointError(
                f"{name} has no built-in weights: pass --checkpoint PATH (a toto-pretrain "
                "checkpoint directory) or --random-init to evaluate an untrained network"
            )
        backbone = _build(name, size, resolution=128, patch_size=8)
        backbone.random_init = True
        return backbone

    factory.__doc__ = f"Toto-{size} (paper size); 128 px frames, 8 px patches: 16x16 tokens per frame."
    return factory


for _size in ("base", "large", "1b"):
    BACKBONES.add(f"toto_{_size}", _paper_size(f"toto_{_size}", _size))
