"""Pre-training throughput: tokens/s and model FLOPs utilisation (MFU) of one Toto size on this machine.

    python bench/bench_pretrain.py --model base --seq-len 257 --micro-batch 1 --steps 3 --threads 2

MFU = tokens/s x FLOPs per token / peak FLOP/s, with the trainer's formula (`Toto.flops_per_token`, times 3 for
forward + backward): FLOPs per token = 3 x (2 x N_matmul + 2 x n_layers x L x D), where N_matmul counts every
weight of a matrix multiply (input embedding tables are lookups, norm gains are not matmuls) and the second
term is causal attention (QK^T and AV, halved by the mask). The peak is `--peak-tflops` if given, else the
measured fp32 matmul throughput of this machine (a 2048^3 sgemm), so on a CPU the number says how close the
training step gets to the best this CPU does on dense matmuls. The step is the trainer's own: `SequenceLoss`
(patch tokens), backward, gradient clipping and AdamW.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from toto_eval.pretrain.model import TOTO_CONFIGS, Toto
from toto_eval.pretrain.train import SequenceLoss


def matmul_peak(threads: int, size: int = 2048, repeats: int = 5) -> float:
    """Best observed fp32 FLOP/s of a size^3 matmul."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = max(best, 2 * size**3 / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base", choices=list(TOTO_CONFIGS))
    parser.add_argument("--seq-len", type=int, default=257, help="1 start token + frames x tokens per frame")
    parser.add_argument("--micro-batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--peak-tflops", type=float, default=0.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frames = (args.seq_len - 1) // 64
    arch = dataclasses.replace(TOTO_CONFIGS[args.model], patch_dim=192, vocab_size=4)
    toto = Toto(arch)
    toto.output.requires_grad_(False)
    model = SequenceLoss(toto)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-4, betas=(0.9, 0.95))
    tokens = torch.randint(0, 256, (args.micro_batch, frames, 8, 8, 192), dtype=torch.uint8)
    starts = torch.ones(args.micro_batch, dtype=torch.long)
    seq_len = 1 + frames * 64
    times = []
    for _ in range(args.steps + 1):  # the first step warms up allocators and is not counted
        start = time.perf_counter()
        loss, _ = model(tokens, starts)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    step = sum(times[1:]) / args.steps
    tokens_per_s = args.micro_batch * seq_len / step
    flops_per_token = 3 * toto.flops_per_token(seq_len)
    peak = args.peak_tflops * 1e12 if args.peak_tflops else matmul_peak(args.threads)
    print(
        f"model {args.model}: {toto.num_params() / 1e6:.1f}M params, sequence {seq_len} tokens, "
        f"micro-batch {args.micro_batch}, {args.threads} thread(s)"
    )
    print(f"step {step:.2f} s, {tokens_per_s:.1f} tokens/s")
    print(
        f"FLOPs/token (fwd+bwd) {flops_per_token / 1e9:.3f} GFLOP -> {tokens_per_s * flops_per_token / 1e9:.1f} GFLOP/s"
    )
    print(
        f"peak {peak / 1e9:.1f} GFLOP/s ({'given' if args.peak_tflops else 'measured sgemm'}) -> "
        f"MFU {tokens_per_s * flops_per_token / peak:.3f}"
    )


if __name__ == "__main__":
    main()
