"""Benchmark of the robot task's pieces: expert success, time per rollout step, rendering vs backbone share.

    python bench/bench_robot.py [--backbone toto_test] [--image-size 112] [--episodes 20] [--parallel 8] [--threads 2]

For each task: the scripted expert's success over `--episodes` held-out seeds (no rendering), then one batch of
`--parallel` lockstepped expert episodes with rendering on and the backbone encoding every frame (as a policy
rollout would), split into physics+control, rendering and backbone time per env step. Not a test: numbers
depend on the machine and its load, so print them with `uptime`.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from toto_eval.harness.evaluate import create_backbone
from toto_eval.tasks.robot.demos import EVAL_SEED0
from toto_eval.tasks.robot.encode import LiveEncoder
from toto_eval.tasks.robot.envs import TASK_NAMES, EnvConfig, ManipEnv
from toto_eval.tasks.robot.experts import ScriptedExpert
from toto_eval.tasks.robot.rollout import evaluate_expert, summarize


def timed_rollout(task: str, env_cfg: EnvConfig, encoder: LiveEncoder, parallel: int) -> dict:
    """Lockstepped expert episodes with rendering and live encoding; seconds per env step by component."""
    envs = [ManipEnv(task, env_cfg) for _ in range(parallel)]
    obs = [env.reset(EVAL_SEED0 + k) for k, env in enumerate(envs)]
    experts = [ScriptedExpert(env) for env in envs]
    encoder.seconds, steps, t0 = 0.0, 0, time.perf_counter()
    active = list(range(parallel))
    while active:
        encoder(np.stack([obs[k].image for k in active]))  # what a policy would pay per step
        for k in list(active):
            obs[k], _, done = envs[k].step(experts[k].act())
            steps += 1
            if done:
                active.remove(k)
    wall = time.perf_counter() - t0
    render = sum(env.render_seconds for env in envs)
    for env in envs:
        env.close()
    return {
        "ms_per_step": 1000 * wall / steps,
        "render_share": render / wall,
        "backbone_share": encoder.seconds / wall,
        "steps": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="toto_test")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--tasks", default=",".join(TASK_NAMES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 is faster on a loaded machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load average: {os.getloadavg()}, torch threads: {args.threads}")
    backbone = create_backbone(args.backbone)
    encoder = LiveEncoder(backbone, backbone.default_layer, torch.device(args.device))
    env_cfg = EnvConfig(image_size=args.image_size)
    for task in args.tasks.split(","):
        t0 = time.perf_counter()
        episodes, _ = evaluate_expert(task, env_cfg, [EVAL_SEED0 + i for i in range(args.episodes)])
        s = summarize(episodes)
        expert_s = time.perf_counter() - t0
        t = timed_rollout(task, env_cfg, encoder, args.parallel)
        print(
            f"{task:15s} expert {s['successes']}/{s['episodes']} (95% CI {s['ci95'][0]:.2f}-{s['ci95'][1]:.2f}, "
            f"{expert_s:.1f}s)  rollout {t['ms_per_step']:.1f} ms/step at {args.image_size}px: "
            f"render {t['render_share']:.0%}, backbone {t['backbone_share']:.0%} ({t['steps']} steps)"
        )


if __name__ == "__main__":
    main()
