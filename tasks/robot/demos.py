"""Expert demonstrations on disk: recorded once per (task, env settings), read back by every later run.

Layout of one demonstration set (the folder name carries the task, the image size and a hash of the settings,
so changing a setting never reuses stale demos):

    <root>/<task>_<size>px_<hash>/
        manifest.json        settings, and every attempted seed in order: {"seed", "success", "steps", "file"}
        ep_00003.npz         images (T, H, W, 3) uint8, proprio (T, P) float32, actions (T, 4) float32

Only successful expert episodes become demonstrations (behaviour cloning copies the expert, not its failures).
Seeds are tried in order from 0, so demo n always comes from the same seed; recording resumes where it stopped
(each episode file and the manifest are written by atomic rename). Evaluation seeds start at `EVAL_SEED0`,
far from every demo seed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toto_eval.common.errors import DataError, data_error, describe
from toto_eval.common.files import atomic_write_bytes, atomic_write_text, remove_stale_temporaries
from toto_eval.common.log import progress

from .envs import EnvConfig, ManipEnv
from .experts import run_expert

DEMO_FORMAT = 2  # 2: the Franka is drawn with its light meshes (robots.light_franka_urdf)
EVAL_SEED0 = 1_000_000  # evaluation seeds are EVAL_SEED0 + i: disjoint from every demo seed


@dataclass
class Demo:
    seed: int
    images: np.ndarray  # (T, H, W, 3) uint8
    proprio: np.ndarray  # (T, P) float32
    actions: np.ndarray  # (T, 4) float32


def demo_dir(root: Path, task: str, env_cfg: EnvConfig) -> Path:
    """The folder of one demonstration set."""
    return root / f"{task}_{env_cfg.image_size}px_{_settings_hash(task, env_cfg)}"


def _settings(task: str, env_cfg: EnvConfig) -> dict:
    return {"format": DEMO_FORMAT, "task": task, "env": dataclasses.asdict(env_cfg)}


def _settings_hash(task: str, env_cfg: EnvConfig) -> str:
    return hashlib.sha256(json.dumps(_settings(task, env_cfg), sort_keys=True).encode()).hexdigest()[:8]


def record_demos(root: Path, task: str, env_cfg: EnvConfig, n: int, max_attempts: int | None = None) -> Path:
    """Make sure `n` successful demos exist under `root`; records only the missing ones. Returns the folder."""
    folder = demo_dir(root, task, env_cfg)
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder)  # what a killed recording left behind
    manifest = _read_manifest(folder) if (folder / "manifest.json").exists() else _new_manifest(task, env_cfg)
    episodes = manifest["episodes"]
    limit = max_attempts if max_attempts is not None else 3 * n + 10
    env = None
    have = min(n, sum(e["success"] for e in episodes))
    bar = progress(total=n, initial=have, desc=f"{task} demos", unit="demo", leave=False)
    try:
        while sum(e["success"] for e in episodes) < n:
            if len(episodes) >= limit:
                raise DataError(f"{folder}: the {task} expert succeeded on fewer than {n} of {limit} seeds")
            env = env or ManipEnv(task, env_cfg, render=True)
            seed = len(episodes)
            observations, actions, success = run_expert(env, seed)
            entry = {"seed": seed, "success": bool(success), "steps": len(actions), "file": None}
            if success:
                entry["file"] = f"ep_{seed:05d}.npz"
                _save_episode(folder / entry["file"], observations, actions)
                bar.update()
            episodes.append(entry)
            _write_json(folder / "manifest.json", manifest)
    finally:
        bar.close()
        if env is not None:
            env.close()
    return folder


def load_demos(folder: Path, n: int) -> list[Demo]:
    """The first `n` successful demos of a set; a missing or corrupt file is a one-line DataError."""
    manifest = _read_manifest(folder)
    entries = [e for e in manifest["episodes"] if e["success"]][:n]
    if len(entries) < n:
        raise data_error(folder, f"holds {len(entries)} demos, {n} needed (run `toto-eval robot demos`)")
    return [_load_episode(folder / e["file"], e["seed"]) for e in entries]


def expert_rate(folder: Path) -> tuple[int, int]:
    """(successes, attempts) of the expert over the demo seeds tried so far."""
    episodes = _read_manifest(folder)["episodes"]
    return sum(e["success"] for e in episodes), len(episodes)


def _new_manifest(task: str, env_cfg: EnvConfig) -> dict:
    return {**_settings(task, env_cfg), "episodes": []}


def _read_manifest(folder: Path) -> dict:
    path = folder / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        episodes = manifest["episodes"]
        fmt = manifest["format"]
    except FileNotFoundError:
        raise data_error(path, "not found (record demos with `toto-eval robot demos`)") from None
    except (ValueError, KeyError, TypeError, OSError, RecursionError) as err:  # ValueError: JSON or UTF-8
        raise data_error(path, f"malformed demo manifest ({type(err).__name__}: {str(err)[:100]})") from None
    if fmt != DEMO_FORMAT or not isinstance(episodes, list):
        raise data_error(path, f"demo format {fmt!r} is not {DEMO_FORMAT}; record the demos again")
    for i, e in enumerate(episodes):
        ok = isinstance(e, dict) and isinstance(e.get("success"), bool) and isinstance(e.get("seed"), int)
        if not ok or (e["success"] and not (isinstance(e.get("file"), str) and Path(e["file"]).name == e["file"])):
            raise data_error(path, f"malformed episode {i}: needs seed, success and (if successful) a file name")
    return manifest


def _save_episode(path: Path, observations: list, actions: list[np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        images=np.stack([o.image for o in observations]),
        proprio=np.stack([o.proprio for o in observations]),
        actions=np.stack(actions).astype(np.float32),
    )
    atomic_write_bytes(path, buffer.getvalue())


def _load_episode(path: Path, seed: int) -> Demo:
    """Arrays only: `allow_pickle=False`, so an object array (a pickle inside the .npz) is refused, never run."""
    if not path.is_file():
        raise data_error(path, "demo file listed in manifest.json is missing")
    try:
        with np.load(path, allow_pickle=False) as z:
            demo = Demo(seed, z["images"], z["proprio"].astype(np.float32), z["actions"].astype(np.float32))
    except Exception as err:  # BadZipFile, EOFError, ValueError (pickled data), KeyError, a bare .npy (no `with`)...
        raise data_error(path, f"corrupt demo file ({describe(err)})") from None
    if demo.images.ndim != 4 or demo.proprio.ndim != 2 or demo.actions.ndim != 2:
        raise data_error(path, f"bad shapes: images {demo.images.shape}, proprio {demo.proprio.shape}")
    t = len(demo.actions)
    if demo.images.shape[0] != t or demo.proprio.shape[0] != t:
        raise data_error(path, f"inconsistent lengths: images {demo.images.shape}, proprio {demo.proprio.shape}")
    return demo


def _write_json(path: Path, obj: dict) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1))
