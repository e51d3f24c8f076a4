"""Closed-loop evaluation: run a policy (or the expert) on held-out seeds and count successes.

Episodes run in lockstep across `parallel` environments (one physics client each) so the backbone encodes all
their frames in one batch per control step. A simulator error (a pybullet exception, or a state that turns NaN)
ends only that episode, as a failure with its reason; the environment is rebuilt for the next seed. Success
rates come with a Wilson score interval, which behaves at 0/n and n/n where the normal interval does not.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from toto_eval.common.log import progress
from toto_eval.harness.intervals import wilson

from ._pybullet import p
from .envs import EnvConfig, ManipEnv, Obs
from .experts import ScriptedExpert
from .policy import MVPHead


def _sim_errors() -> tuple[type[BaseException], ...]:
    """What a diverging simulation raises (pybullet's own error class is read once a rollout runs)."""
    return (p.error, RuntimeError, ValueError, FloatingPointError)


@dataclass
class Episode:
    seed: int
    success: bool
    steps: int
    error: str | None = None  # why the simulator stopped the episode, if it did


def summarize(episodes: list[Episode]) -> dict:
    """Success rate, its Wilson interval, counts and the simulator errors of a list of episodes."""
    k, n = sum(e.success for e in episodes), len(episodes)
    ci = wilson(k, n)
    errors = [{"seed": e.seed, "error": e.error} for e in episodes if e.error]
    return {
        "success": k / n if n else 0.0,
        "ci95": [ci["low"], ci["high"]],
        "successes": k,
        "episodes": n,
        "errors": errors,
    }


def evaluate_policy(
    task: str,
    env_cfg: EnvConfig,
    seeds: list[int],
    head: MVPHead,
    encoder: Callable[[np.ndarray], np.ndarray] | None,
    parallel: int = 8,
) -> tuple[list[Episode], dict]:
    """Roll `head` out on every seed (images encoded by `encoder`, or proprio only when it is None)."""

    def policy(obs: list[Obs], envs: list[ManipEnv]) -> np.ndarray:
        feats = None if encoder is None else encoder(np.stack([o.image for o in obs]))
        return head.act(feats, np.stack([o.proprio for o in obs]))

    return run_lockstep(task, env_cfg, seeds, policy, render=encoder is not None, parallel=parallel)


def evaluate_expert(task: str, env_cfg: EnvConfig, seeds: list[int]) -> tuple[list[Episode], dict]:
    """The scripted expert's own success on the same seeds: the upper bound of behaviour cloning."""
    experts: dict[int, ScriptedExpert] = {}

    def policy(obs: list[Obs], envs: list[ManipEnv]) -> np.ndarray:
        for env in envs:
            if env.steps == 0:  # a fresh episode: the expert plans from its initial state
                experts[id(env)] = ScriptedExpert(env)
        return np.stack([experts[id(env)].act() for env in envs])

    return run_lockstep(task, env_cfg, seeds, policy, render=False, parallel=1)


def run_lockstep(
    task: str,
    env_cfg: EnvConfig,
    seeds: list[int],
    policy: Callable,
    render: bool,
    parallel: int,
) -> tuple[list[Episode], dict]:
    """Episodes in chunks of `parallel` lockstepped envs; `policy(observations, envs) -> (B, 4)` actions.

    Returns the episodes in seed order and the timings (wall seconds, env steps, seconds spent rendering).
    """
    t0 = time.perf_counter()
    envs = [ManipEnv(task, env_cfg, render=render) for _ in range(min(parallel, len(seeds)))]
    episodes: list[Episode] = []
    steps = render_s = 0.0
    bar = progress(total=len(seeds), desc=f"{task} rollouts", unit="episode", leave=False)
    try:
        for start in range(0, len(seeds), len(envs)):
            chunk = seeds[start : start + len(envs)]
            done, n_steps = _run_chunk(envs, chunk, policy)
            episodes += done
            steps += n_steps
            bar.update(len(chunk))
        render_s = sum(env.render_seconds for env in envs)
    finally:
        bar.close()
        for env in envs:
            env.close()
    wall = time.perf_counter() - t0
    return episodes, {"seconds": wall, "steps": int(steps), "render_seconds": render_s}


def _run_chunk(envs: list[ManipEnv], seeds: list[int], policy: Callable) -> tuple[list, int]:
    results: dict[int, Episode] = {}
    obs: dict[int, Obs] = {}
    for k, seed in enumerate(seeds):
        try:
            obs[k] = envs[k].reset(seed)
        except _sim_errors() as err:
            results[k] = _failed(envs, k, seed, 0, err)
    n_steps = 0
    while obs:
        keys = sorted(obs)
        batch = [obs[k] for k in keys]
        actions = policy(batch, [envs[k] for k in keys])  # (B, 4)
        n_steps += len(keys)
        for k, action in zip(keys, actions, strict=True):
            env, seed = envs[k], seeds[k]
            try:
                obs[k], success, finished = env.step(action)
                if not np.isfinite(obs[k].proprio).all():
                    raise FloatingPointError("robot state became NaN")
            except _sim_errors() as err:
                results[k] = _failed(envs, k, seed, env.steps, err)
                del obs[k]
                continue
            if finished:
                results[k] = Episode(seed, bool(success), env.steps)
                del obs[k]
    return [results[k] for k in range(len(seeds))], n_steps


def _failed(envs: list[ManipEnv], k: int, seed: int, steps: int, err: Exception) -> Episode:
    # The client may be unusable after an error: replace the env (keeping its render time for the timings).
    old = envs[k]
    envs[k] = ManipEnv(old.task, old.cfg, render=old.render_images)
    envs[k].render_seconds = old.render_seconds
    with contextlib.suppress(p.error):  # disconnecting a crashed server may fail too
        old.close()
    return Episode(seed, False, steps, f"{type(err).__name__}: {err}")


def episodes_json(episodes: list[Episode]) -> list[dict]:
    return [asdict(e) for e in episodes]
