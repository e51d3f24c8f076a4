"""The wheel installs one top-level name, toto_eval, with every root folder mapped under it.

Run: python -m pytest tests/test_packaging.py -q
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_has_only_toto_eval(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("toto_eval-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"toto_eval"}
    for folder in ("harness", "tasks", "backbones", "pretrain", "leaderboard"):
        assert f"toto_eval/{folder}/__init__.py" in names
    assert "toto_eval/tasks/imagenet_probe/task.py" in names
    assert not any(n.startswith("toto_eval/tests") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "toto-eval = toto_eval.harness.cli:main" in text and "toto-pretrain = toto_eval.pretrain.cli:main" in text
