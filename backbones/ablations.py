"""The paper's Table 6 ablations as backbones: GPT-2-style and Mamba-style decoders on Toto's patch tokens.

They go through exactly the wrapper and factory path of `toto_*` (`backbones/toto.py`: `DecoderBackbone`,
`register`): the same patch tokens and sequence layout (start token 1 for video or 3 for an image, raster-order
patch tokens per frame, frames in time order, end token 2), the same checkpoint reading. Only the trunk differs
between `toto_test`, `gpt2_test` and `mamba_test`, which is what an ablation needs.

Names: `gpt2_test`, `mamba_test` (seeded random init, test size, 64 px frames, 8 px patches); `gpt2_tiny`,
`mamba_tiny` (a `toto-pretrain train --arch gpt2|mamba` checkpoint via --checkpoint, or --random-init).
"""

from __future__ import annotations

from .toto import DecoderBackbone, DecoderSpec, register

__all__ = ["DecoderBackbone"]

for _arch in ("gpt2", "mamba"):
    register(
        DecoderSpec(f"{_arch}_test", _arch, "test", weights="seeded"),
        f"{_arch} at test size, seeded random init; 64 px frames, 8 px patches: an 8x8 grid per frame.",
    )
    register(
        DecoderSpec(f"{_arch}_tiny", _arch, "tiny"),
        f"{_arch} at tiny size (Table 6 ablation); needs a checkpoint or --random-init.",
    )
