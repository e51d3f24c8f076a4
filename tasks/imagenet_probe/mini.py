"""Mini ImageNet: scikit-learn's 1,797 real handwritten digit scans, written in the ImageNet folder layout.

The scans ship inside scikit-learn's wheel (8x8 pixels, 17 grey levels, 10 classes). They are upsampled to 64x64
(bicubic), given a per-image tint and background so colour statistics are not constant, and split 80/20 by a
fixed seed into `train/<wnid>/` and `val/<wnid>/` as JPEG files, so the mini task goes through exactly the loader
real ImageNet goes through.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

VERSION = "1"  # bump when the generated data changes: a stale mini dataset is then regenerated

SIZE = 64
SEED = 0
VAL_FRACTION = 0.2


def wnid(digit: int) -> str:
    return f"n{9000000 + digit:08d}"  # ImageNet-shaped synset ids that no real class uses


def make_mini(root: Path) -> None:
    from sklearn.datasets import load_digits  # imported here: scikit-learn takes a second to import

    digits = load_digits()
    rng = np.random.default_rng(SEED)
    is_val = rng.random(len(digits.images)) < VAL_FRACTION
    for i, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        split = "val" if is_val[i] else "train"
        folder = root / split / wnid(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        _render(image, rng).save(folder / f"{wnid(int(label))}_{i:05d}.JPEG", quality=92)


def _render(image: np.ndarray, rng: np.random.Generator) -> Image.Image:
    ink = (image / 16.0).astype(np.float32)  # (8, 8) in [0, 1]
    big = np.asarray(Image.fromarray((ink * 255).astype(np.uint8)).resize((SIZE, SIZE), Image.BICUBIC)) / 255.0
    fg, bg = rng.uniform(0.5, 1.0, 3), rng.uniform(0.0, 0.35, 3)
    rgb = bg[None, None] * (1 - big[..., None]) + fg[None, None] * big[..., None]
    return Image.fromarray((rgb * 255).round().astype(np.uint8))
