"""Toto, and every decoder `toto-pretrain` trains, as a backbone: one wrapper and one factory path.

`DecoderBackbone` puts any `Decoder` (`pretrain/decoder.py`: Toto, or the Table 6 GPT-2 / Mamba ablations) behind
the evaluation contract. A clip `(B, T, C, H, W)` is tokenised frame by frame (each frame on its own, as in
pre-training), laid out in raster order, frames in time order, between the start token (1 for video, 3 for an
image) and the end token (2). `forward_features` runs the decoder only up to the deepest requested block and
returns each requested block's output on the `(T, H/p, W/p)` token grid, special tokens removed. There is no
second transformer here: the weights and the code are exactly those `toto-pretrain` trains and exports.

Every registered name is a `DecoderSpec` (architecture, size, default resolution, where weights come from) and
is built by `create`:
- with `--checkpoint DIR` (any name): architecture, preprocessing and tokeniser come from the checkpoint's
  config.json (`pretrain/checkpoint.py`), weights from its safetensors; the name fixes the architecture family;
- without one: `*_test` are seeded random inits (deterministic, flagged `random_init`), `toto_tiny` reads the
  checkpoint shipped in `pretrain/weights/toto_tiny`, the others need `--checkpoint` or `--random-init`;
- `--random-init` with weights: the same architecture and preprocessing, re-initialised (an untrained twin).

Names here: `toto_test`, `toto_tiny`, `toto_base`, `toto_large`, `toto_1b`; `backbones/ablations.py` registers
`gpt2_*` and `mamba_*` through the same `register`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from ..common.errors import CheckpointError
from ..harness.backbone import Backbone, Layers, Preprocess, resolve_layers
from ..harness.registry import BACKBONES
from ..pretrain.archs import get_arch
from ..pretrain.checkpoint import load_state_into, read_config
from ..pretrain.decoder import Decoder
from ..pretrain.shards import CODE_OFFSET, END, START_IMAGE, START_VIDEO
from ..pretrain.tokenizers import IMAGENET_MEAN, IMAGENET_STD, DiscreteTokenizer, from_record, patchify, to_uint8

__all__ = ["END", "START_IMAGE", "START_VIDEO", "DecoderBackbone", "DecoderSpec", "create", "register"]

log = logging.getLogger(__name__)
SHIPPED = Path(__file__).resolve().parent.parent / "pretrain" / "weights"


class DecoderBackbone(Backbone):
    """A decoder on the tokens it was pre-trained on (patch, dVAE or VQ), in the pre-training layout."""

    def __init__(
        self,
        name: str,
        model: Decoder,
        preprocess: Preprocess,
        patch_size: int,
        tokenizer: DiscreteTokenizer | None = None,
        code_offset: int = CODE_OFFSET,
    ) -> None:
        super().__init__()
        config = model.config
        self.name = name
        self.model = model
        self.patch_size = tokenizer.patch_size if tokenizer is not None else patch_size
        self.preprocess = preprocess
        self.num_layers, self.embed_dim, self.num_heads = config.n_layers, config.dim, config.n_heads
        self.tokenizer = tokenizer  # None: continuous patch tokens; not a submodule, so not in the state dict
        self.code_offset = code_offset

    def config(self) -> dict:
        out = {**super().config(), "model": self.model.config.to_dict(), "patch_size": self.patch_size}
        if self.tokenizer is not None:  # the tokeniser's weights change the features: its sha256 names them
            out["tokenizer"] = {**self.tokenizer.identity(), "code_offset": self.code_offset}
        return out

    def flops_per_view(self, frames: int, height: int, width: int) -> float:
        """The decoder's own count over the whole sequence (start, frame tokens, end), attention included; the
        output heads are not run when features are taken, so they are left out."""
        t, h, w = self.token_grid(frames, height, width)
        length = t * h * w + 2
        heads = sum(
            p.numel() for m in (self.model.output, self.model.patch_head) if m is not None for p in m.parameters()
        )
        return (self.model.flops_per_token(length) - 2.0 * heads) * length

    def embed_frames(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """(B, T, C, H, W) -> frame tokens embedded (B, T*h*w, D), raster order per frame, and the grid (T, h, w)."""
        b, t = x.shape[:2]
        if self.tokenizer is None:
            patches = patchify(x, self.patch_size)  # (B, T, h, w, p*p*C)
            return self.model.embed_patches(patches.flatten(1, 3)), tuple(patches.shape[1:4])
        pixels = to_uint8(x.flatten(0, 1), self.preprocess.mean, self.preprocess.std)  # (B*T, C, H, W)
        codes = self.tokenizer.codes(pixels)  # (B*T, h, w), each frame on its own as in pre-training
        grid = (t, codes.shape[1], codes.shape[2])
        return self.model.embed_tokens(codes.reshape(b, -1) + self.code_offset), grid  # ids as pre-training's

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """(B, T, C, H, W) -> the full sequence (B, 1 + T*h*w + 1, D) and the grid (T, h, w)."""
        b, t = x.shape[:2]
        tokens, grid = self.embed_frames(x)
        ids = torch.tensor([START_VIDEO if t > 1 else START_IMAGE, END], device=x.device)
        start, end = self.model.embed_tokens(ids).to(tokens.dtype).unbind(0)
        seq = torch.cat([start.expand(b, 1, -1), tokens, end.expand(b, 1, -1)], dim=1)
        return seq, grid

    def forward_features(self, x: torch.Tensor, layers: Layers = None) -> dict[int, torch.Tensor]:
        wanted = resolve_layers(self.num_layers, layers)
        seq, (t, h, w) = self.embed(x)
        hidden = self.model.hidden_states(seq, wanted)
        return {i: out[:, 1:-1].reshape(out.shape[0], t, h, w, -1) for i, out in hidden.items()}


@dataclass(frozen=True)
class DecoderSpec:
    """What a registered name means: an architecture and size, and the inputs of its random-init build."""

    name: str
    arch: str  # toto, gpt2, mamba (pretrain/archs.py)
    size: str
    resolution: int = 64  # of the random-init build, and of a checkpoint that records no data recipe
    patch_size: int = 8
    frames: int = 16
    weights: Literal["seeded", "shipped", "required"] = "required"  # without --checkpoint: see the module doc


def _preprocess(resolution: int, frames=16, stride=4, mean=IMAGENET_MEAN, std=IMAGENET_STD, tokenizer="patch"):
    return Preprocess(
        resolution=resolution, frames=frames, frame_stride=stride, mean=tuple(mean), std=tuple(std), tokenizer=tokenizer
    )


def build(spec: DecoderSpec) -> DecoderBackbone:
    """The seeded random-init backbone of a spec.

    Positions for 4x the default frames: CATER probes 32-frame clips, and GPT-2's learned table is a hard limit
    (RoPE and Mamba have none; for them max_seq_len is only recorded).
    """
    arch = get_arch(spec.arch)
    tokens = 4 * spec.frames * (spec.resolution // spec.patch_size) ** 2 + 2
    max_seq_len = max(tokens, arch.sizes[spec.size].max_seq_len)
    model = arch.build(spec.size, patch_dim=3 * spec.patch_size**2, max_seq_len=max_seq_len)
    return DecoderBackbone(spec.name, model, _preprocess(spec.resolution, spec.frames), spec.patch_size)


def from_checkpoint(spec: DecoderSpec, path: str | Path) -> DecoderBackbone:
    """Architecture, preprocessing and weights from a checkpoint directory (or its model.safetensors)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    directory = path if path.is_dir() else path.parent
    arch, config, extra = read_config(directory, expect=spec.arch)
    size = arch.sizes[spec.size]
    if (config.dim, config.n_layers) != (size.dim, size.n_layers):
        log.warning(
            "%s: %s holds a %d-wide, %d-block %s, not the %s size; results are labelled %s",
            spec.name, directory, config.dim, config.n_layers, spec.arch, spec.size, spec.name,
        )  # fmt: skip
    data = extra.get("data", extra)  # the data recipe records the token layout pre-training used
    record = extra.get("tokenizer") or {"kind": "patch", "patch_size": int(data.get("patch_size", spec.patch_size))}
    tokenizer = from_record(record, directory)
    preprocess = _preprocess(
        int(data.get("resolution", spec.resolution)),
        int(data.get("frames", spec.frames)),
        int(data.get("frame_stride", 4)),
        data.get("mean", IMAGENET_MEAN),
        data.get("std", IMAGENET_STD),
        tokenizer=record["kind"],
    )
    with torch.device("meta"):
        model = arch.model(config)
    load_state_into(model, path)
    model.float()  # evaluation runs in fp32 whatever the stored dtype (`toto-pretrain export --dtype`)
    discrete = tokenizer if isinstance(tokenizer, DiscreteTokenizer) else None
    offset = int(record.get("code_offset", CODE_OFFSET))
    backbone = DecoderBackbone(spec.name, model, preprocess, tokenizer.patch_size, discrete, offset)
    backbone.checkpoint = str(directory)
    return backbone


def create(spec: DecoderSpec, checkpoint: str | Path | None = None, random_init: bool = False) -> DecoderBackbone:
    """The one factory path of every decoder backbone (see the module docstring)."""
    if checkpoint is None and spec.weights == "shipped":
        checkpoint = SHIPPED / spec.name
    if checkpoint is not None:
        backbone = from_checkpoint(spec, checkpoint)
        if random_init:  # the same architecture and preprocessing, untrained: the floor it is compared with
            backbone.model.init_weights(seed=0)
            backbone.checkpoint, backbone.random_init = None, True
        return backbone
    if spec.weights == "required" and not random_init:
        raise CheckpointError(
            f"{spec.name} has no built-in weights: pass --checkpoint PATH (a `toto-pretrain train --arch "
            f"{spec.arch}` checkpoint directory) or --random-init to evaluate an untrained network"
        )
    backbone = build(spec)
    backbone.random_init = True  # seeded, so deterministic, but untrained: results must say so
    return backbone


def register(spec: DecoderSpec, doc: str) -> Callable[..., DecoderBackbone]:
    """Register `spec.name` in BACKBONES; `doc`'s first line is what `toto-eval ls backbones` shows."""

    def factory(checkpoint: str | None = None, random_init: bool = False) -> DecoderBackbone:
        return create(spec, checkpoint, random_init)

    factory.__name__ = factory.__qualname__ = spec.name
    factory.__doc__ = doc
    BACKBONES.add(spec.name, factory)
    return factory


toto_test = register(
    DecoderSpec("toto_test", "toto", "test", weights="seeded"),
    "Test size, seeded random init (deterministic); 64 px frames, 8 px patches: an 8x8 grid per frame.",
)
toto_tiny = register(
    DecoderSpec("toto_tiny", "toto", "tiny", weights="shipped"),
    "The tiny model pre-trained on CPU by toto-pretrain and shipped with the package.",
)
for _size in ("base", "large", "1b"):
    register(
        DecoderSpec(f"toto_{_size}", "toto", _size, resolution=128),
        f"Toto-{_size} (paper size); 128 px frames, 8 px patches: 16x16 tokens per frame.",
    )
