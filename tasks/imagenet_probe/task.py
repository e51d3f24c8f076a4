"""`imagenet_probe`: a probe grid over layers on frozen image features; top-1 per layer and at the selected head.

Protocol (the paper's Table 7, with the DINOv2/V-JEPA probe mechanics): every probed layer's tokens are cached
once; an attentive probe per (layer x learning rate) is trained in one pass; the head is selected on a seeded
10% of train and reported on val. On the mini suite (scikit-learn's digit scans in the same folder layout) the
same code runs with the same defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from toto_eval.harness.backbone import Backbone
from toto_eval.harness.display import probe_display
from toto_eval.harness.probe_task import ProbeSplits, ProbeTask
from toto_eval.harness.probes import ProbeConfig
from toto_eval.harness.task import RunContext, register

from .data import ImageFolderSource, list_classes
from .mini import VERSION as MINI_VERSION
from .mini import make_mini


@dataclass(frozen=True)
class Config:
    # lrs: the mini suite selects at 1e-2..3e-2, so the grid is wide enough both ways
    probe: ProbeConfig = ProbeConfig(lrs=(1e-3, 3e-3, 1e-2, 3e-2))
    resize_ratio: float = 256 / 224
    max_skipped: float = 0.05  # fail when more than this fraction of images cannot be read


@register("imagenet_probe", tags=("image", "probe", "classification"), main_metric="top1")
class ImageNetProbe(ProbeTask):
    Config = Config
    display = probe_display("ImageNet probe (Table 7)", table=7)

    paper_sizes: ClassVar[dict[str, int]] = {"train": 1_281_167, "val": 50_000}

    def layout(self, backbone: Backbone) -> dict[str, tuple[int, tuple[int, int, int]]]:
        r = backbone.preprocess.resolution
        return {"train": (1, (1, r, r)), "val": (1, (1, r, r))}

    def splits(self, backbone: Backbone, ctx: RunContext) -> ProbeSplits:
        root = ctx.dataset_root("imagenet", make_mini, MINI_VERSION)
        classes = list_classes(root)
        pre, ratio = backbone.preprocess, self.config.resize_ratio
        sources = {s: ImageFolderSource(root, s, classes, pre, ratio) for s in ("train", "val")}
        return ProbeSplits(sources, len(classes))
