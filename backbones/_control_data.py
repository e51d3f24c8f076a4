"""Training sets of the positive controls: a mini task's own TRAIN split, read by that task's own data code.

Each function generates the mini dataset where the task will look for it (`<cache>/mini/...`, through
`RunContext.dataset_root`, so the task finds it already there) and returns every train sample exactly as the task
will feed it to a backbone: `(N, V, T, C, H, W)` uint8 clips, as the loaders give them (V views per sample, one
drawn per training step; the trainer normalises each batch, as the cache does before a forward pass) and `(N,)`
int64 labels; for DAVIS, the frames and token labels of each train sequence. The val split is never read here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..harness.backbone import Backbone
from ..harness.task import RunContext

if TYPE_CHECKING:
    from ..tasks.cater.task import Config as CaterConfig

TrainSet = tuple[torch.Tensor, np.ndarray]
K400_VIEWS = 4  # random training clips per video: the control's only augmentation


def _context(cache_dir: Path) -> RunContext:
    return RunContext(cache=None, data_root=None, mini_root=cache_dir / "mini")  # type: ignore[arg-type]


def _stack(source, views: int | None = None) -> torch.Tensor:
    clips = [source.load(i) for i in range(len(source))]  # each (V, T, C, H, W) uint8
    return torch.stack(clips if views is None else [c[:views] for c in clips])


def imagenet_train(cache_dir: Path, backbone: Backbone) -> TrainSet:
    from ..tasks.imagenet_probe.data import ImageFolderSource, list_classes
    from ..tasks.imagenet_probe.mini import VERSION, make_mini
    from ..tasks.imagenet_probe.task import Config

    root = _context(cache_dir).dataset_root("imagenet", make_mini, VERSION)
    source = ImageFolderSource(root, "train", list_classes(root), backbone.preprocess, Config().resize_ratio)
    return _stack(source), source.labels


def k400_train(cache_dir: Path, backbone: Backbone) -> TrainSet:
    from ..tasks.k400.mini import VERSION, make_mini
    from ..tasks.k400.task import Config, K400Probe, load_sources

    root = _context(cache_dir).dataset_root("kinetics400", make_mini, VERSION)
    task = K400Probe(Config(**K400Probe.mini))  # the clip sampling the task uses on the mini suite
    protocol = task.protocol(backbone, seed=0)
    protocol["train"] = dataclasses.replace(protocol["train"], segments=K400_VIEWS)  # K random clips per video
    sources, _, _ = load_sources(root, task.config, protocol, backbone)
    return _stack(sources["train"]), sources["train"].labels


def cater_train(cache_dir: Path, backbone: Backbone) -> TrainSet:
    """CATER train videos as `frames`-frame clips (the control's spec) with the spec's label list; with
    `spec.per_frame`, `(N, T)` labels: the snitch's grid cell at every sampled frame, from the train videos' scene
    annotations (the last frame's is the list's label)."""
    from ..tasks.cater.task import Config, _root, _source

    spec = backbone.spec
    cfg = Config(frames=spec.frames, list_task=spec.labels or Config.list_task)
    root = _root(_context(cache_dir), cfg.variant)
    source = _source(root, "train", cfg, backbone)
    if not spec.per_frame:
        return _stack(source), source.labels
    return _stack(source), np.stack([_snitch_cells(root, e.video, cfg) for e in source.entries])


def _snitch_cells(root: Path, video: Path, cfg: CaterConfig) -> np.ndarray:
    """The snitch's grid cell (in `cfg.list_task`'s grid) at each of the `cfg.frames` frames the task samples."""
    import json

    from ..tasks.cater.data import clip_indices
    from ..tasks.cater.generator import grid_label
    from ..tasks.cater.mini import GRIDS

    scene = json.loads((root / "scenes" / f"{video.stem}.json").read_text())
    timeline = np.asarray(scene["frame_indices"])[clip_indices(len(scene["frame_indices"]), cfg.frames, cfg.sampling)]
    track = scene["objects"][0]["locations"]  # object 0 is the snitch
    return np.array([grid_label(*track[str(f)][:2], GRIDS[cfg.list_task]) for f in timeline], dtype=np.int64)


def davis_train(cache_dir: Path, backbone: Backbone) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The mini DAVIS TRAIN sequences: `(F, 3, S, S)` uint8 frames warped as the task warps them on the mini suite, and
    `(F, h, w, C)` one-hot token labels (nearest-downsampled annotations; C = the most objects of any sequence + 1,
    so sequences batch together: a sequence with fewer objects has all-zero extra channels)."""
    import torch.nn.functional as F
    from PIL import Image

    from ..tasks.davis.data import load_sequence, read_labels, read_sequence_list
    from ..tasks.davis.mini import VERSION, make_mini
    from ..tasks.davis.task import FrameSource

    root = _context(cache_dir).dataset_root("DAVIS", make_mini, VERSION)
    side = backbone.preprocess.resolution
    h, w = backbone.token_grid(1, side, side)[1:]
    frames, labels = [], []
    for name in read_sequence_list(root, "train"):
        sequence = load_sequence(root, name)
        source = FrameSource(sequence, (side, side), backbone.preprocess)
        frames.append(torch.cat([source.load(i)[0] for i in range(len(source))]))  # (F, 3, S, S) uint8
        ids = [np.asarray(Image.fromarray(read_labels(p)).resize((w, h), Image.NEAREST)) for p in sequence.annotations]
        ids = torch.from_numpy(np.stack(ids).astype(np.int64))  # (F, h, w)
        labels.append(ids)
    classes = max(int(ids.max()) for ids in labels) + 1
    return frames, [F.one_hot(ids, classes).float() for ids in labels]


def mini_version(task: str) -> str:
    """The generator version of a task's mini dataset: part of the control's weights key."""
    module = {"imagenet_probe": "imagenet_probe", "k400_probe": "k400", "cater": "cater", "davis": "davis"}[task]
    return __import__(f"toto_eval.tasks.{module}.mini", fromlist=["VERSION"]).VERSION


TRAIN_SETS: dict[str, Callable[[Path, Backbone], tuple]] = {
    "imagenet_probe": imagenet_train,
    "k400_probe": k400_train,
    "cater": cater_train,
    "davis": davis_train,
}
