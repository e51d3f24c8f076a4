"""`toto-eval plan`: the cost of a run, before running it (`run`'s options, plus the planner's own).

    toto-eval plan --backbone toto_large --random-init --tasks all --sizes paper --probe-mode auto \\
        --cache-budget 1T --gpus 8 --gpu-tflops 989

prints, per task and split: samples, views, tokens per view, bytes cached (pooled, tokens, per layer), backbone
FLOPs, the probe mode, and a time estimate; exits 1 when the plan is over `--cache-budget`. It writes nothing.
"""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    from .run_cli import add_run_options

    p = sub.add_parser(
        "plan", help="what a run will cost (bytes, FLOPs, time), before any compute", description=__doc__
    )
    add_run_options(p)
    p.add_argument("--sizes", choices=("data", "paper"), default="data",
                   help="count samples on the data, or use the real datasets' sizes (no data needed)")  # fmt: skip
    p.add_argument("--gpus", type=int, default=0, help="estimate time for this many GPUs (with --gpu-tflops)")
    p.add_argument("--gpu-tflops", type=float, default=0.0, help="peak TFLOP/s of one GPU (H100 bf16: 989)")
    p.add_argument("--mfu", type=float, default=0.4, help="fraction of the peak the backbone reaches")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .evaluate import run_context
    from .plan import plan_run
    from .run_cli import prepare

    if args.sizes == "paper":  # the real datasets' protocol: no mini-suite reductions
        args.full_protocol = True
    backbone, names, options = prepare(args)
    ctx = run_context(options)
    plan = plan_run(backbone, names, options, ctx, counts=args.sizes, cluster=(args.gpus, args.gpu_tflops, args.mfu))
    print(plan.table())
    return 1 if plan.over_budget else 0
