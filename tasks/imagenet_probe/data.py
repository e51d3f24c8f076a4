"""The ImageNet class-folder layout (`<split>/<wnid>/*.JPEG`) as a cache source.

Class ids are the sorted class-folder names of `train/`, so the same folders give the same ids everywhere. An
image is resized (short side to `resolution * resize_ratio`, bicubic) and centre-cropped to the backbone's
resolution: the standard evaluation transform (256/224). Every problem names the file or folder.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from toto_eval.common.errors import data_error
from toto_eval.harness.backbone import Preprocess

EXTENSIONS = {".jpeg", ".jpg", ".png"}


def list_classes(root: Path) -> list[str]:
    """Sorted class folders of `root/train`; a missing or empty layout is a one-line error."""
    train = root / "train"
    if not train.is_dir():
        raise data_error(train, "missing; expected the ImageNet layout <root>/train/<wnid>/*.JPEG")
    classes = sorted(p.name for p in train.iterdir() if p.is_dir())
    if not classes:
        raise data_error(train, "has no class folders")
    return classes


class ImageFolderSource:
    """One split: sample ids are paths relative to the dataset root; `load` gives `(1, 1, C, H, W)`."""

    def __init__(
        self, root: Path, split: str, classes: list[str], preprocess: Preprocess, resize_ratio: float = 256 / 224
    ) -> None:
        self.root, self.split, self.preprocess, self.resize_ratio = root, split, preprocess, resize_ratio
        folder = root / split
        if not folder.is_dir():
            raise data_error(folder, f"missing split folder {split!r}")
        index = {name: i for i, name in enumerate(classes)}
        files, labels = [], []
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            if class_dir.name not in index:
                raise data_error(class_dir, "class folder is not among the train classes")
            images = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in EXTENSIONS)
            if not images:
                raise data_error(class_dir, "empty class folder (no .JPEG/.jpg/.png files)")
            files += images
            labels += [index[class_dir.name]] * len(images)
        if not files:
            raise data_error(folder, "no images found")
        self.files = files
        self.labels = np.array(labels, dtype=np.int64)
        self.ids = [str(p.relative_to(root)) for p in files]

    def __len__(self) -> int:
        return len(self.files)

    def identity(self) -> dict:
        listing = hashlib.sha256()
        for sid, path in zip(self.ids, self.files, strict=True):
            listing.update(f"{sid}:{path.stat().st_size}\n".encode())
        return {
            "dataset": "imagenet-folder",
            "split": self.split,
            "files": listing.hexdigest()[:16],
            "n": len(self.files),
            "resolution": self.preprocess.resolution,
            "resize_ratio": self.resize_ratio,
            "mean": self.preprocess.mean,
            "std": self.preprocess.std,
            "interpolation": "bicubic",
        }

    def load(self, i: int) -> torch.Tensor:
        path = self.files[i]
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                img = _resize_center_crop(img, self.preprocess.resolution, self.resize_ratio)
        except (OSError, UnidentifiedImageError, SyntaxError) as err:
            raise data_error(path, f"cannot decode image ({err})") from None
        frame = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)  # (C, H, W) uint8
        return frame[None, None]  # (V=1, T=1, C, H, W) uint8: the cache normalises on the device


def _resize_center_crop(img: Image.Image, size: int, ratio: float) -> Image.Image:
    short = round(size * ratio)
    w, h = img.size
    scale = short / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))
