"""Third-party backbones: the entry-point plugin package and the `--include file.py` route.

Run: python -m pytest tests/test_zoo_plugin.py -q

A copy of the example plugin (examples/plugin_backbone) is pip-installed offline into a temporary directory (no network:
`--no-index --no-deps --no-build-isolation`), and a fresh interpreter with that directory on its path must find
`plugin_tiny_cnn` by name through the `toto_eval.backbones` entry point and run it under the contract.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from toto_eval.harness.cli import main
from toto_eval.harness.registry import BACKBONES

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
from toto_eval.harness.registry import BACKBONES
import torch
assert "plugin_tiny_cnn" in BACKBONES.names("plugin_*")
bb = BACKBONES.get("plugin_tiny_cnn")(random_init=True)
out = bb.forward_features(torch.zeros(2, 3, 3, 64, 64), layers=[-1])
print(type(bb).__module__, sorted(out), tuple(out[1].shape), bb.token_grid(3, 64, 64))
"""


def test_entry_point_plugin_installs_and_resolves(tmp_path: Path) -> None:
    target, source = tmp_path / "site", tmp_path / "plugin_backbone"
    shutil.copytree(ROOT / "examples" / "plugin_backbone", source)  # the build writes next to its sources
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, "--target", str(target), str(source)], check=True,
                   cwd=tmp_path, capture_output=True)  # fmt: skip
    assert list(target.glob("toto_plugin_example-*.dist-info/entry_points.txt"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "toto_plugin_example [1] (2, 3, 8, 8, 32) (3, 8, 8)"


def test_include_file_registers_a_backbone(tmp_path: Path, capsys) -> None:
    plugin = tmp_path / "my_backbone.py"
    plugin.write_text(textwrap.dedent('''
        """A user's backbone in a single file, loaded with --include."""
        from toto_eval.backbones.baselines import Pixels
        from toto_eval.harness.registry import BACKBONES


        @BACKBONES.register("included_pixels8")
        def included_pixels8(checkpoint=None, random_init=False):
            """8 px pixel patches."""
            return Pixels(patch_size=8)
    '''))  # fmt: skip
    assert main(["ls", "backbones", "--include", str(plugin)]) == 0
    assert "included_pixels8         8 px pixel patches." in capsys.readouterr().out
    bb = BACKBONES.get("included_pixels8")()
    assert bb.forward_features(torch.zeros(1, 1, 3, 16, 16))[0].shape == (1, 1, 2, 2, 192)
    assert main(["ls", "backbones", "--include", str(tmp_path / "nope.py")]) == 2
    assert "nope.py: --include file not found" in capsys.readouterr().err
