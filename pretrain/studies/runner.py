"""The shared machinery of a study: sizes, one cached corpus and shard set, cached pre-training runs, evaluation.

A study is a small recipe (`pretrain/studies/<name>.py`) that asks a `Workspace` for trained variants and scores
them. Everything expensive is cached under `$TOTO_EVAL_CACHE_DIR/studies` (else `~/.cache/toto-eval/studies`) and
keyed by what changes it: the corpus is written once, a shard set per (tokeniser, clips), a VQ tokeniser per
(steps, batch), and a run per full `TrainConfig`. So `probe`, `depth` and `frames` reuse the LLaMA/patch run that
`tokenizers` and `arch` trained, and a rerun of a finished study only re-scores. A study's README says which
steps it reused, so its wall time is read honestly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...common.errors import ConfigError
from ...common.files import default_cache_dir
from ..configs import TrainConfig, VQConfig

log = logging.getLogger(__name__)

BUILD_RECORD = "study_build_seconds.txt"  # in each cached folder: what building it cost
# The toto_tiny recipe's mixture (pretrain/weights/toto_tiny/README.md), at 64 px, 8 frames every 4.
FRAMES, STRIDE, RESOLUTION = 8, 4, 64


@dataclass(frozen=True)
class StudySize:
    """How big every variant of a study is: model size, training budget, data and evaluation subset."""

    name: str
    model: str  # the trainer's size name for every variant (the scaling study varies it)
    steps: int
    clips: int  # clips sampled into the shared shard set
    warmup_steps: int
    vq_steps: int  # training steps of the VQ tokeniser (tokenizers study)
    vq_batch: int
    log_every: int
    limit: int | None = None  # evaluation subset per split (None: the whole mini split)
    probe_epochs: int | None = None  # None: the task's default
    batch_sequences: int = 4  # x the shards' sequence length (513 patch8, 514 VQ): the same tokens per step
    micro_batch: int = 4
    lr: float = 1e-3  # the toto_tiny recipe's: a small model and a short run


SIZES: dict[str, StudySize] = {
    # seconds: the unit test; the numbers mean nothing
    "test": StudySize(
        "test",
        "test",
        steps=6,
        clips=16,
        warmup_steps=2,
        vq_steps=3,
        vq_batch=4,
        log_every=2,
        limit=48,
        probe_epochs=2,
        batch_sequences=2,
        micro_batch=2,
    ),
    # minutes on one CPU thread: the outputs committed in docs/studies/
    "mini": StudySize("mini", "test", steps=300, clips=512, warmup_steps=30, vq_steps=150, vq_batch=32, log_every=5),
}


def cache_root() -> Path:
    """Where corpus, shards, tokenisers and runs are kept between studies."""
    return default_cache_dir() / "studies"


def digest(values: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:10]


@dataclass
class Workspace:
    """One study's view of the cache: builds what is missing, records what it built and what it reused."""

    size: StudySize
    threads: int = 1
    root: Path = field(default_factory=cache_root)
    events: list[str] = field(default_factory=list)  # "built ..." / "reused ...", for the README
    cold_seconds: float = 0.0  # what the cached steps this study used cost when they were built
    _corpus_noted: bool = False

    def _note(self, built: bool, what: str, began: float, folder: Path) -> None:
        """Log a step; a built one records its seconds in its folder, a reused one reads them back."""
        record = folder / BUILD_RECORD
        if built:
            seconds: float | None = time.perf_counter() - began
            record.write_text(f"{seconds:.1f}\n")
        else:
            seconds = float(record.read_text()) if record.exists() else None
        self.cold_seconds += seconds or 0.0
        took = "build time not recorded" if seconds is None else f"{'' if built else 'built in '}{seconds:.0f} s"
        line = f"{'built' if built else 'reused'} {what} ({took})"
        self.events.append(line)
        log.info(line)

    def corpus(self) -> list:
        """The version-1 toto_tiny corpus (wheel videos and photos, mini ImageNet and Kinetics train) as sources."""
        from ..corpus import VERSION_1, write_corpus

        out, began = self.root / "corpus", time.perf_counter()
        built = not (out / BUILD_RECORD).exists()
        # Version 1 (wheel files, mini ImageNet and Kinetics): what the studies' published tables were measured on.
        specs = write_corpus(out, VERSION_1)  # idempotent: the parts already written are kept
        if built or not self._corpus_noted:
            self._note(built, "corpus", began, out)
            self._corpus_noted = True
        return specs

    def mixture(self, frames: int = FRAMES):
        from ..data import Mixture

        return Mixture(self.corpus(), frames, STRIDE, RESOLUTION, seed=0)

    def vq(self) -> Path:
        """A VQ-VAE tokeniser trained on single frames of the corpus (`toto-pretrain tokenizer`)."""
        from ..tokenizers import train_vq

        cfg = VQConfig(steps=self.size.vq_steps, batch_size=self.size.vq_batch)
        out = self.root / f"vq-{digest(dataclasses.asdict(cfg))}"
        built, mixture, began = not (out / "vq.json").exists(), self.mixture(frames=1), time.perf_counter()
        if built:
            train_vq(mixture, out, cfg)
        what = f"VQ tokeniser {out.name} ({cfg.codes} codes, {cfg.steps} steps x {cfg.batch_size})"
        self._note(built, what, began, out)
        return out

    def shards(self, tokenizer: str = "patch8") -> Path:
        """The shared shard set of `clips` clips, tokenised by `tokenizer` (same clips for every tokeniser)."""
        from ..shards import build_shards
        from ..tokenizers import load_tokenizer

        tag = tokenizer if tokenizer.startswith("patch") else Path(tokenizer.partition(":")[2]).name
        out, meta = (
            self.root / f"shards-{tag}-{self.size.clips}",
            self.root / f"shards-{tag}-{self.size.clips}/meta.json",
        )
        built = not (meta.exists() and json.loads(meta.read_text()).get("complete"))
        mixture, began = self.mixture(), time.perf_counter()  # the corpus is timed on its own
        if built:
            build_shards(mixture, load_tokenizer(tokenizer), out, self.size.clips, shard_size=256)
        self._note(built, f"shards {out.name}", began, out)
        return out

    def train(self, label: str, shards: Path, **changes: Any) -> Path:
        """A finished pre-training run (cached by its config); returns its final checkpoint directory."""
        from ..shards import ShardSet, seq_len
        from ..train import train

        s = self.size
        batch_tokens = s.batch_sequences * seq_len(ShardSet(shards))
        values = dict(model=s.model, steps=s.steps, batch_tokens=batch_tokens, micro_batch=s.micro_batch, lr=s.lr,
                      warmup_steps=s.warmup_steps, weight_decay=0.05, log_every=s.log_every)  # fmt: skip
        values |= changes
        key = digest({**values, "shards": str(shards)})
        run = self.root / "runs" / f"{label}-{key}"
        ckpt = run / "checkpoints" / f"step_{values['steps']:07d}"
        began, built = time.perf_counter(), not ckpt.is_dir()
        if built:  # a killed run resumes exactly (train.py)
            cfg = TrainConfig(shards=str(shards), out=str(run), ckpt_every=values["steps"], threads=self.threads,
                              **values)  # fmt: skip
            train(cfg)
        what = f"run {run.name} ({values['model']} {values.get('arch', 'toto')}, {values['steps']} steps)"
        self._note(built, what, began, run)
        return ckpt

    def evaluate(
        self, backbone: str, checkpoint: Path, task: str, probe: dict[str, Any] | None = None, random_init: bool = False
    ):
        """One task on a trained checkpoint (or its untrained twin), every layer probed; the harness's TaskResult."""
        from ...harness.evaluate import RunOptions, create_backbone, evaluate

        settings = dict(probe or {})
        if self.size.probe_epochs is not None:
            settings.setdefault("epochs", self.size.probe_epochs)
        options = RunOptions(
            cache_dir=default_cache_dir(),
            limit=self.size.limit,
            task_config={task: {f"probe.{k}": v for k, v in settings.items()}},
        )
        began = time.perf_counter()
        result = evaluate(create_backbone(backbone, checkpoint=checkpoint, random_init=random_init), task, options)[0]
        if result.status != "ok":
            raise ConfigError(f"{task} on {checkpoint}: {result.status} ({getattr(result, 'error', '')})")
        what = f"{checkpoint.parent.parent.name}{' (random init)' if random_init else ''}"
        self.events.append(f"evaluated {task} on {what} ({time.perf_counter() - began:.0f} s)")
        return result


def best_per_layer(result, key: str = "top1") -> dict[int, float]:
    """Each layer's test score at the learning rate its holdout picked (the harness's own selection rule)."""
    best: dict[int, tuple[float, float]] = {}
    for row in result.per_layer:
        pick = (row[f"holdout_{key}"], row[f"test_{key}"])
        if row["layer"] not in best or pick[0] > best[row["layer"]][0]:
            best[row["layer"]] = pick
    return {layer: test for layer, (_, test) in sorted(best.items())}


def full_train_command(arch: str = "toto", model: str = "large", tokenizer: str = "dvae:DALLE_ENCODER.pkl") -> str:
    """The paper-scale run of one variant, as `toto-pretrain` spells it under torchrun (Section 3.2 settings).

    The summary gives the sources (Table 2) but not their mixture weights, so the weights are left at 1."""
    tag = tokenizer.split(":")[0]
    return (
        f"toto-pretrain shards /data/shards-{tag} --videos /data/kinetics600 --videos /data/ego4d "
        f"--videos /data/howto100m --images /data/imagenet/train --tokenizer {tokenizer} --frames 16 --stride 4 "
        f"--resolution 128 --clips N\n"
        f"torchrun --nproc-per-node 8 -m toto_eval.pretrain.cli train --shards /data/shards-{tag} "
        f"--out runs/{arch}-{model}-{tag} --arch {arch} --model {model} --batch-tokens 1048576 --lr 3e-4 "
        f"--warmup-steps 2000 --steps STEPS"
    )


def run_log(checkpoint: Path, name: str = "metrics.csv") -> list[dict[str, float]]:
    """A CSV the trainer wrote next to a checkpoint's run (metrics.csv, frame_loss.csv), as numbers."""
    import csv

    with open(checkpoint.parent.parent / name, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def final_loss(checkpoint: Path, last: int = 5) -> float:
    """Mean training loss of the last `last` logged steps of the run a checkpoint belongs to."""
    losses = [row["loss"] for row in run_log(checkpoint)][-last:]
    return sum(losses) / len(losses)
