"""`toto-pretrain` as a user calls it: every subcommand as a subprocess, its --help, and one real small call.

Run: python -m pytest tests/test_pretrain_cli.py -q            (help, errors, scaling-fit: no torch import)
     python -m pytest tests/test_pretrain_cli.py -q -m slow    (a real call of every other subcommand)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toto_eval.pretrain.cli import build_parser

COMMANDS = ("corpus", "shards", "tokenizer", "train", "verify", "export", "export-hf", "scaling-fit", "study")


def toto_pretrain(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The installed entry point (or the module, when the scripts folder is not next to this python)."""
    script = Path(sys.executable).parent / "toto-pretrain"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "toto_eval.pretrain.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=600, cwd=cwd, env=env)


def subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_the_parser_knows_every_subcommand():
    assert tuple(subparsers()) == COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_help_exits_0_and_every_option_has_help_and_its_default(command):
    done = toto_pretrain(command, "--help")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())  # help text wraps anywhere
    for action in subparsers()[command]._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help and action.help.strip(), f"{command} {action.dest}: no help text"
        if action.option_strings and action.default not in (None, argparse.SUPPRESS):
            assert f"(default: {action.default})" in text, f"{command} {action.option_strings[0]}: default not shown"
        assert all(flag in text for flag in action.option_strings)
    for flag in ("-v, --verbose", "-q, --quiet"):
        assert flag in text


def test_errors_are_one_line_on_stderr_with_exit_2(tmp_path):
    done = toto_pretrain("train", "--shards", "s", "--out", "o", "--no-such-flag")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines()[-1] == "toto-pretrain: error: unrecognized arguments: --no-such-flag"
    done = toto_pretrain("scaling-fit", str(tmp_path / "missing.csv"))
    assert done.returncode == 2 and done.stderr.startswith("toto-pretrain: error: ")
    assert done.stderr.count("\n") == 1 and "missing.csv" in done.stderr


def test_scaling_fit_prints_the_fit(tmp_path):
    compute = 10 ** np.linspace(15, 17, 30)
    table = np.stack([compute, 7.32 * compute**-0.0378], 1)
    np.savetxt(tmp_path / "r.csv", table, delimiter=",", header="flops,loss", comments="")
    done = toto_pretrain("scaling-fit", str(tmp_path / "r.csv"))
    assert done.returncode == 0, done.stderr
    assert "a = 7.32" in done.stdout and "b = -0.0378" in done.stdout


@pytest.mark.slow
def test_a_real_call_of_every_subcommand(tmp_path):
    """shards -> tokenizer -> train -> verify -> export -> export-hf, each once, small; -q silences the logs."""
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(images / f"{i}.png")
    common = ["--images", str(images), "--frames", "2", "--resolution", "32"]
    done = toto_pretrain("shards", str(tmp_path / "s"), *common, "--clips", "4")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "s") and "eta" in done.stderr
    done = toto_pretrain("tokenizer", str(tmp_path / "vq"), *common, "--steps", "2", "--restart-every", "1")
    assert done.returncode == 0 and "vq step 2/2" in done.stderr and "eta" in done.stderr, done.stderr
    assert json.loads((tmp_path / "vq" / "vq.json").read_text())["steps"] == 2
    run = ["train", "--shards", str(tmp_path / "s"), "--out", str(tmp_path / "run"), "--steps", "2"]
    done = toto_pretrain(*run, "--batch-tokens", "66", "--micro-batch", "2", "--log-every", "1")
    assert done.returncode == 0, done.stderr
    assert "step 2/2: loss" in done.stderr and "eta 0:00:00" in done.stderr and done.stdout == ""
    quiet = toto_pretrain(
        *run[:4], str(tmp_path / "run2"), "--steps", "1", "--batch-tokens", "33", "--micro-batch", "1", "-q"
    )
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    assert toto_pretrain("verify", str(tmp_path / "s")).stdout.strip() == f"{tmp_path / 's'}: ok"
    ckpt = tmp_path / "run" / "checkpoints" / "step_0000002"
    done = toto_pretrain("export", str(ckpt), str(tmp_path / "model"), "--dtype", "bfloat16")
    assert done.returncode == 0 and json.loads((tmp_path / "model" / "config.json").read_text())["extra"]["step"] == 2
    pytest.importorskip("transformers")
    done = toto_pretrain("export-hf", str(tmp_path / "model"), str(tmp_path / "hf"))
    assert done.returncode == 0 and (tmp_path / "hf" / "config.json").is_file(), done.stderr


@pytest.mark.slow
def test_corpus_writes_the_sources_it_prints(tmp_path):
    done = toto_pretrain("corpus", str(tmp_path / "corpus"))
    assert done.returncode == 0, done.stderr
    flags = done.stdout.split()
    assert flags[0::2] == ["--images", "--images", "--videos", "--videos", "--videos", "--videos", "--videos"]
    for value in flags[1::2]:
        assert Path(value.rpartition("@")[0]).is_dir()
