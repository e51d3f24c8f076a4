"""The paper's Table 6 ablations as backbones: GPT-2-style and Mamba-style decoders on Toto's patch tokens.

`DecoderBackbone` wraps any model with the `Toto` model interface (`pretrain/archs.py` names them): a clip
`(B, T, C, H, W)` is patchified frame by frame and laid out exactly as `toto_*` lays it out (start token 1 for
video or 3 for an image, raster-order patch tokens per frame, frames in time order, end token 2), and
`forward_features` returns the requested blocks' outputs on the `(T, H/p, W/p)` grid, special tokens removed.
Only the trunk differs between `toto_test`, `gpt2_test` and `mamba_test`, which is what an ablation needs.
(`DecoderBackbone` lives in `toto.py`; `TotoBackbone` is the same wrapper with a Toto inside.)

Names: `gpt2_test`, `mamba_test` (seeded random init, test size, 64 px frames, 8 px patches); `gpt2_tiny`,
`mamba_tiny` (a `toto-pretrain --arch gpt2|mamba` checkpoint via --checkpoint, or --random-init).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..common.errors import CheckpointError
from ..harness.registry import BACKBONES
from ..pretrain.archs import get_arch, load_state_into, read_config
from .toto import DecoderBackbone, _preprocess


def _build(name: str, arch: str, size: str, resolution: int = 64, patch_size: int = 8, frames: int = 16):
    """A seeded random-init backbone of a named size, its positions sized for a full clip."""
    tokens = frames * (resolution // patch_size) ** 2 + 2
    base = get_arch(arch).sizes[size]
    model = get_arch(arch).build(size, patch_dim=3 * patch_size**2, max_seq_len=max(tokens, base.max_seq_len))
    return DecoderBackbone(name, model, _preprocess(resolution, frames), patch_size)


def _checkpoint_dir(checkpoint: str) -> Path:
    path = Path(checkpoint)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    return path if path.is_dir() else path.parent


def _from_checkpoint(name: str, arch: str, checkpoint: str) -> DecoderBackbone:
    """Architecture and preprocessing from the checkpoint's config.json, weights from its safetensors."""
    directory = _checkpoint_dir(checkpoint)
    found, config, extra = read_config(directory, expect=arch)
    data = extra.get("data", extra)  # the pre-training data recipe records the token layout it used
    preprocess = _preprocess(int(data.get("resolution", 64)), int(data.get("frames", 16)))
    with torch.device("meta"):
        model = found.model(config)
    backbone = DecoderBackbone(name, model, preprocess, int(data.get("patch_size", 8)))
    load_state_into(backbone.model, directory)
    backbone.checkpoint = str(directory)
    return backbone


def _test_size(name: str, arch: str):
    def factory(checkpoint: str | None = None, random_init: bool = False) -> DecoderBackbone:
        backbone = _build(name, arch, "test")
        if checkpoint:
            load_state_into(backbone.model, _checkpoint_dir(checkpoint))
            backbone.checkpoint = checkpoint
        else:
            backbone.random_init = True  # seeded, so deterministic, but untrained: results must say so
        return backbone

    factory.__doc__ = f"{arch} at test size, seeded random init; 64 px frames, 8 px patches: an 8x8 grid per frame."
    return factory


def _tiny_size(name: str, arch: str):
    def factory(checkpoint: str | None = None, random_init: bool = False) -> DecoderBackbone:
        if checkpoint:
            return _from_checkpoint(name, arch, checkpoint)
        if not random_init:
            raise CheckpointError(
                f"{name} has no built-in weights: pass --checkpoint PATH (a `toto-pretrain train --arch {arch}` "
                "checkpoint directory) or --random-init to evaluate an untrained network"
            )
        backbone = _build(name, arch, "tiny")
        backbone.random_init = True
        return backbone

    factory.__doc__ = f"{arch} at tiny size (Table 6 ablation); needs a checkpoint or --random-init."
    return factory


for _arch in ("gpt2", "mamba"):
    BACKBONES.add(f"{_arch}_test", _test_size(f"{_arch}_test", _arch))
    BACKBONES.add(f"{_arch}_tiny", _tiny_size(f"{_arch}_tiny", _arch))
