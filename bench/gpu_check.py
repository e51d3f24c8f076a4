"""One short check for a GPU machine: what only an accelerator can tell, in one run, as one table.

1. `toto_large` with random weights on 16-frame 128 px clips (4098 tokens): clips/s and peak memory of one
   forward pass of the default batch (32 clips) under bf16 autocast, and of one K400 test video (24 views) in
   chunks of that batch.
2. bf16 against fp32: `toto_test` on the mini `imagenet_probe` (cached probes, same seed, last layer), features
   extracted under bf16 autocast on the GPU and in fp32 on the CPU: both top-1s.
3. With two GPUs: a 2-rank DDP `torchrun` of the mini `k400_probe` online against 1 rank (selected head, top-1).

Run (21 s on one H200, 2026-11-30, mini data generated included; nothing is downloaded):
    python bench/gpu_check.py --out /tmp/gpu_check
Smoke test of the script itself on a CPU (small model, tiny clips): python bench/gpu_check.py --cpu-smoke
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from toto_eval.harness.evaluate import RunOptions, create_backbone, evaluate


def forward_speed(name: str, device: torch.device, frames: int, res: int, batch: int, views: int) -> dict:
    """clips/s and peak memory of one batch, and of one `views`-view video in chunks of `batch`."""
    backbone = create_backbone(name, random_init=True).eval().to(device)
    clip = torch.randint(0, 256, (batch, frames, 3, res, res), dtype=torch.uint8, device=device)

    def run(x: torch.Tensor) -> None:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            for chunk in x.split(batch):
                backbone.forward_features(backbone.preprocess.normalize(chunk))

    run(clip[:2])  # warm up kernels
    out = {}
    for label, x in (("batch", clip), ("video", clip[:1].expand(views, -1, -1, -1, -1))):
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        run(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
        out[label] = {"clips": len(x), "seconds": seconds, "clips_per_s": len(x) / seconds, "peak_gib": peak}
    out["tokens_per_clip"] = frames * (res // backbone.patch_size) ** 2 + 2
    return out


def bf16_vs_fp32(device: torch.device, cache: Path) -> dict:
    """The mini imagenet_probe with toto_test, features extracted in bf16 (CUDA autocast) and in fp32."""
    out = {}
    for label, dev in (("bf16", device), ("fp32", torch.device("cpu"))):
        options = RunOptions(cache_dir=cache, device=str(dev), probe_mode="cached", layers=[-1])
        (result,) = evaluate(create_backbone("toto_test"), "imagenet_probe", options)
        out[label] = result.metrics["top1"]
    return out


def ddp(out: Path, cache: Path) -> dict:
    """1 rank against 2 ranks, online k400_probe on the GPUs (tests/dist_worker.py does the run)."""
    worker = Path(__file__).resolve().parents[1] / "tests" / "dist_worker.py"
    results = {}
    for world in (1, 2):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}"]
        subprocess.run([*cmd, str(worker), "probe", str(out / f"ddp{world}"), "online", str(cache)], check=True)
        result = json.loads(next((out / f"ddp{world}/results").glob("*/*/k400_probe.json")).read_text())
        results[f"{world}_rank"] = {"top1": result["metrics"]["top1"], "selected": result["selected"]}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/gpu_check"))
    parser.add_argument("--cpu-smoke", action="store_true", help="run every step small on the CPU")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    smoke = args.cpu_smoke or not torch.cuda.is_available()
    device = torch.device("cpu" if smoke else "cuda")
    report = {"device": torch.cuda.get_device_name(0) if not smoke else "cpu (smoke test)"}
    name, frames, res = ("toto_test", 2, 64) if smoke else ("toto_large", 16, 128)
    report["forward"] = forward_speed(name, device, frames, res, batch=4 if smoke else 32, views=24)
    report["bf16_vs_fp32_top1"] = bf16_vs_fp32(device, args.out / "cache")
    if torch.cuda.device_count() >= 2:
        report["ddp"] = ddp(args.out, args.out / "cache")
    print(json.dumps(report, indent=1))
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
