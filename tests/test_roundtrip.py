"""Round trip at the paper's layout: tokenise -> pre-train -> `toto-eval run`, for every tokeniser (issue 15).

For patch8, a VQ-VAE trained briefly by `toto-pretrain tokenizer`, and a DALL-E-architecture dVAE with random
weights: shards of 16-frame 128 px clips (every 4th frame), two steps of the `test` size (4097-token sequences
for patches, 4098 for codes), then `toto-eval run --backbone toto_base --checkpoint ...` on `imagenet_probe` and
`k400_probe` through `--data-root` (a small ImageNet-layout and a small Kinetics-layout tree built here), with
16-frame clips: 4098 tokens per clip with the start and end tokens. Only the public command lines are used.

Run: python -m pytest tests/test_roundtrip.py -q -m slow     (about 2 minutes per tokeniser on 2 CPU cores)
Print the table of a run: python tests/test_roundtrip.py RESULTS_ROOT
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

TASKS = ("imagenet_probe", "k400_probe")
LIMIT = "4"  # samples per split: a seeded subset, flagged `limited` in the results


def command(name: str, *args: str) -> subprocess.CompletedProcess:
    """`toto-pretrain ...` / `toto-eval ...` as installed (or as modules, if the scripts are not next to python)."""
    script = Path(sys.executable).parent / name
    module = {"toto-pretrain": "toto_eval.pretrain.cli", "toto-eval": "toto_eval.harness.cli"}[name]
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", module]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    done = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=1200, env=env)
    assert done.returncode == 0, f"{name} {' '.join(args)}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def write_imagenet(root: Path, classes: int = 3, train: int = 6, val: int = 3) -> None:
    """`root/{train,val}/<wnid>/*.JPEG`: each class a colour and an orientation of stripes, with noise."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    for c in range(classes):
        stripes = np.sin((xx if c % 2 else yy) * (0.3 + 0.2 * c))[..., None]  # (64, 64, 1)
        colour = np.array([200 if c == k else 60 for k in range(3)], dtype=np.float64)
        for split, n in (("train", train), ("val", val)):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                image = colour * (0.6 + 0.4 * stripes) + rng.normal(0, 20, (64, 64, 3))
                Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(folder / f"n{c:08d}_{i}.JPEG")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from toto_eval.tasks.k400.mini import MiniSpec, make_mini

    root = tmp_path_factory.mktemp("roundtrip") / "data"
    write_imagenet(root / "imagenet")
    make_mini(root / "kinetics400", MiniSpec(train_per_class=1, val_per_class=1, frames=72))  # 61 frames: 16 x 4
    return root


def tokenizer_spec(kind: str, work: Path, data_root: Path) -> str:
    if kind == "patch8":
        return "patch8"
    if kind == "dvae":  # the DALL-E encoder's architecture (narrow, 512 codes) with random weights
        from toto_eval.pretrain.tokenizers import DVAEEncoder

        torch.manual_seed(0)
        save_file(DVAEEncoder(n_hid=8, vocab_size=512).state_dict(), str(work / "dvae.safetensors"))
        return f"dvae:{work / 'dvae.safetensors'}"
    images = ["--images", str(data_root / "imagenet" / "train"), "--resolution", "128"]
    vq = ["--codes", "64", "--code-dim", "8", "--hidden", "16", "--steps", "3", "--batch-size", "4"]
    command("toto-pretrain", "tokenizer", str(work / "vq"), *images, *vq, "-q")
    return f"vq:{work / 'vq'}"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["patch8", "vq", "dvae"])
def test_pretrain_then_evaluate_at_the_paper_layout(kind, data_root, tmp_path):
    spec = tokenizer_spec(kind, tmp_path, data_root)
    videos = ["--videos", str(data_root / "kinetics400" / "train")]
    layout = ["--frames", "16", "--stride", "4", "--resolution", "128"]
    command("toto-pretrain", "shards", str(tmp_path / "s"), *videos, *layout, "--tokenizer", spec, "--clips", "2", "-q")
    tokens = 4097 if kind == "patch8" else 4098  # patch training leaves the end token out (it predicts nothing)
    train = ["--shards", str(tmp_path / "s"), "--out", str(tmp_path / "run"), "--model", "test", "--steps", "2"]
    command("toto-pretrain", "train", *train, "--batch-tokens", str(tokens), "--micro-batch", "1", "-q")
    ckpt = tmp_path / "run" / "checkpoints" / "step_0000002"
    record = json.loads((ckpt / "config.json").read_text())["extra"]["tokenizer"]
    assert record["kind"] == ("patch" if kind == "patch8" else kind) and record["resolution"] == 128

    from toto_eval.harness.evaluate import create_backbone

    backbone = create_backbone("toto_base", checkpoint=ckpt)
    clip = torch.zeros(1, 16, 3, 128, 128)
    assert backbone.embed(clip)[0].shape[1] == 4098  # start + 16 x 16 x 16 + end
    views = ["--set", "k400_probe.test_segments=2", "--set", "k400_probe.test_crops=1"]  # 2 views per val clip
    run = ["run", "--backbone", "toto_base", "--checkpoint", str(ckpt), "--tasks", ",".join(TASKS), "--limit", LIMIT]
    where = ["--data-root", str(data_root), "--cache-dir", str(tmp_path / "cache"), "--results-dir", str(tmp_path)]
    command("toto-eval", *run, *where, *views, "--no-progress")
    for task in TASKS:
        result = json.loads(next((tmp_path / "toto_base").rglob(f"{task}.json")).read_text())
        assert result["status"] == "ok", result.get("error")
        assert 0.0 <= result["metrics"]["top1"] <= 1.0
    print(table_rows(tmp_path))


def table_rows(results: Path) -> str:
    """`tokenizer | task | top-1 | tokens per clip` rows of one run's result files."""
    rows = []
    for task in TASKS:
        result = json.loads(next((results / "toto_base").rglob(f"{task}.json")).read_text())
        kind = json.loads((Path(result["checkpoint"]) / "config.json").read_text())["extra"]["tokenizer"]["kind"]
        tokens = 4098 if task == "k400_probe" else 258  # 16 frames or one image of 16 x 16 tokens, + start, end
        rows.append(f"| {kind} | {task} | {result['metrics']['top1']:.4f} | {tokens} |")
    return "\n".join(rows)


if __name__ == "__main__":
    for folder in sorted(Path(sys.argv[1]).iterdir()):
        if (folder / "toto_base").is_dir():
            print(table_rows(folder))
