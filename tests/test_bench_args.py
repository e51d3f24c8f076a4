"""`bench/backbone_args.py`: the bench scripts' `--backbones` and `--checkpoints`, paired in order.

Run: python -m pytest tests/test_bench_args.py -q
"""

from __future__ import annotations

import argparse

import pytest


def test_checkpoints_pair_in_order_and_the_rest_keep_default_weights(bench_script) -> None:
    args = bench_script("backbone_args")
    parser = argparse.ArgumentParser(prog="bench")
    args.add_backbone_args(parser)
    parsed = parser.parse_args(["--backbones", "a", "b:random", "c", "--checkpoints", "/run/one"])
    assert args.backbone_checkpoints(parser, parsed) == [("a", "/run/one"), ("b:random", None), ("c", None)]


def test_more_checkpoints_than_backbones_is_a_usage_error(bench_script, capsys) -> None:
    args = bench_script("backbone_args")
    parser = argparse.ArgumentParser(prog="bench")
    args.add_backbone_args(parser)
    with pytest.raises(SystemExit) as stop:
        args.backbone_checkpoints(parser, parser.parse_args(["--backbones", "a", "--checkpoints", "x", "y"]))
    assert stop.value.code == 2 and "2 --checkpoints for 1 --backbones" in capsys.readouterr().err
