"""Benchmark: Toto's forward against `transformers.LlamaModel` with the same weights, and against the matmul peak.

Both models run the same input in the same process, interleaved, so drifting load hits both alike and the ratio
is the robust number (on an oversubscribed CPU, use --threads 1: contending OpenMP threads make both erratic).
The peak is a measured fp32 (or --dtype) square matmul, so "% of peak" is the fraction of what this machine's
BLAS actually delivers, not of a datasheet number. Model FLOPs for the trunk: 2 per weight of every block matrix
per token, plus causal attention (2 * L * dim per token per layer).

Run: python bench/bench_model.py                      # base size, 256 tokens, CPU (~1 min)
     python bench/bench_model.py --threads 1 --seq-len 128    # a loaded, shared CPU: threads only contend
     python bench/bench_model.py --size large --seq-len 1024 --device cuda --dtype bfloat16

`--clip FRAMES` instead times one backbone forward (`forward_features`, every layer) on one clip of FRAMES frames
at the backbone's resolution, e.g. `--clip 16 --backbone toto_large` (4098 tokens at 128 px) or `--clip 32`
(8194), and reports the process's peak resident memory (`resource.getrusage`, which sees torch's allocations;
tracemalloc would not) before and after: run one clip length per process so the peaks are its own.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable

import torch

from toto_eval.pretrain.hf import llama_state_dict, to_llama_config
from toto_eval.pretrain.model import TOTO_CONFIGS, Toto


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, repeats: int) -> float:
    """Best GFLOP/s of an n x n x n matmul."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    a @ b  # warm-up
    best = min(_time(lambda: a @ b, device) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def trunk_flops(model: Toto, seq_len: int) -> float:
    """Forward FLOPs per token of embeddings -> final norm (no output head): what both models compute."""
    block_matrices = sum(p.numel() for p in model.layers.parameters() if p.ndim == 2)
    return 2.0 * block_matrices + 2.0 * model.config.n_layers * seq_len * model.config.dim


def build(size: str, device: torch.device, dtype: torch.dtype) -> tuple[Toto, torch.nn.Module]:
    from transformers import LlamaModel

    toto = Toto(TOTO_CONFIGS[size]).to(device=device, dtype=dtype).eval()
    llama = LlamaModel(to_llama_config(toto.config)).eval()  # HF's default attention (SDPA)
    state = llama_state_dict(toto.state_dict())
    llama.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    return toto, llama.to(device=device, dtype=dtype)


def peak_rss_gib() -> float:
    """The process's peak resident set so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


@torch.no_grad()
def clip_forward(backbone_name: str, frames: int, repeats: int) -> None:
    """One random-init backbone forward over every layer on one clip: seconds and peak memory."""
    from toto_eval.harness.evaluate import create_backbone

    backbone = create_backbone(backbone_name, random_init=True).eval()
    size = backbone.preprocess.resolution
    clip = torch.randn(1, frames, 3, size, size)
    tokens = backbone.embed(clip)[0].shape[1]
    before = peak_rss_gib()
    seconds = [_time(lambda: backbone.forward_features(clip), torch.device("cpu")) for _ in range(repeats)]
    print(
        f"{backbone_name} random init, {backbone.num_params() / 1e6:.1f}M params, {frames} frames at {size} px = "
        f"{tokens} tokens, {torch.get_num_threads()} threads: {min(seconds):.2f} s/forward (best of {repeats}, all "
        f"{backbone.num_layers} layers); peak RSS {before:.2f} GiB after building, {peak_rss_gib():.2f} GiB after"
    )


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="base", choices=sorted(TOTO_CONFIGS))
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--matmul-n", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    parser.add_argument("--clip", type=int, default=0, help="> 0: time one backbone forward on a clip of N frames")
    parser.add_argument("--backbone", default="toto_large", help="registered backbone for --clip (random init)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clip:
        return clip_forward(args.backbone, args.clip, args.repeats)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)

    peak = matmul_peak(device, dtype, args.matmul_n, args.repeats)
    toto, llama = build(args.size, device, dtype)
    ids = torch.randint(0, toto.config.vocab_size, (args.batch, args.seq_len), device=device)
    h = toto.embed_tokens(ids)
    runs = {"toto": lambda: toto(h), "hf_llama": lambda: llama(inputs_embeds=h).last_hidden_state}
    assert (runs["toto"]() - runs["hf_llama"]()).abs().max().item() < 1e-2  # same function, also a warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):  # interleaved, so load changes hit both alike
        for name, fn in runs.items():
            times[name].append(_time(fn, device))

    tokens = args.batch * args.seq_len
    flops = trunk_flops(toto, args.seq_len) * tokens
    print(
        f"{args.size}: {toto.num_params() / 1e6:.1f}M params, {tokens} tokens, {args.device} {args.dtype}, "
        f"{torch.get_num_threads()} threads; {args.dtype} matmul peak (n={args.matmul_n}): {peak:.1f} GFLOP/s"
    )
    print(f"{'model':<10} {'ms/forward':>11} {'tokens/s':>10} {'GFLOP/s':>9} {'% of peak':>10}")
    for name, samples in times.items():
        seconds = statistics.median(samples)
        gflops = flops / seconds / 1e9
        print(
            f"{name:<10} {seconds * 1e3:>11.1f} {tokens / seconds:>10.0f} {gflops:>9.1f} {100 * gflops / peak:>9.1f}%"
        )
    ratio = statistics.median(times["toto"]) / statistics.median(times["hf_llama"])
    print(f"toto / hf_llama time ratio: {ratio:.3f} (median of {args.repeats})")


if __name__ == "__main__":
    main()
