"""The backbones a bench script compares, as its command line names them: `--backbones` and `--checkpoints`.

`--backbones NAME [NAME ...]` (`NAME:random` is the untrained twin) and `--checkpoints DIR [DIR ...]`, one folder
per backbone in order; fewer folders than backbones leave the rest on their default weights.
"""

from __future__ import annotations

import argparse


def add_backbone_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbones", nargs="+", required=True, help="registered names; NAME:random = untrained")
    parser.add_argument("--checkpoints", nargs="*", default=[], help="checkpoint folders, one per backbone")


def backbone_checkpoints(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[tuple[str, str | None]]:
    """(name, checkpoint folder or None) per backbone; more folders than backbones is a usage error."""
    if len(args.checkpoints) > len(args.backbones):
        parser.error(f"{len(args.checkpoints)} --checkpoints for {len(args.backbones)} --backbones")
    padded = args.checkpoints + [None] * (len(args.backbones) - len(args.checkpoints))
    return list(zip(args.backbones, padded, strict=True))
