"""One JSON record per (backbone, checkpoint, task): the only thing leaderboards read.

A `TaskResult` holds the numbers (main metric, all metrics, per-layer table, selected head) and everything needed
to trust or reject them later (task version and config, backbone fingerprint, package version and git revision,
seeds, data fingerprint, hardware, wall time, and the flags `limited`, `random_init`, `mini`). Files are written
by atomic rename, so a crash never leaves half a result, and a failed task is a result too (status "failed"
with its reason), so a table can say why a cell is empty.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import subprocess
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from ..common.errors import DataError

SCHEMA_VERSION = 2  # 2: mini_overrides, intervals


@dataclass
class TaskResult:
    backbone: str
    checkpoint: str  # path or tag of the weights; "random-init" or "builtin" when there is no file
    task: str
    task_version: str
    status: str  # "ok" or "failed"
    main_metric: str
    main_score: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    per_layer: list[dict[str, Any]] = field(default_factory=list)
    selected: dict[str, Any] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    num_layers: int | None = None
    num_params: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    flags: dict[str, bool] = field(default_factory=dict)  # limited, random_init, mini
    mini_overrides: dict[str, Any] = field(default_factory=dict)  # config values the mini suite changed
    intervals: dict[str, dict[str, Any]] = field(default_factory=dict)  # metric -> 95% interval (low, high, ...)
    seed: int = 0
    run: dict[str, Any] = field(default_factory=dict)  # the run options that shape the numbers (`--config` reads it)
    error: str | None = None
    wall_seconds: float = 0.0
    provenance: dict[str, Any] = field(default_factory=dict)  # package version, git revision, hardware, time
    schema_version: int = SCHEMA_VERSION

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def result_path(results_dir: Path, backbone: str, checkpoint: str, task: str) -> Path:
    """`<results>/<backbone>/<checkpoint tag>/<task>.json` (MTEB's layout: easy to merge and to browse)."""
    return results_dir / _slug(backbone) / _slug(checkpoint_tag(checkpoint)) / f"{task}.json"


def checkpoint_tag(checkpoint: str) -> str:
    """A short, filesystem-safe name for a checkpoint: the file or folder name, or the given tag."""
    path = Path(checkpoint)
    if path.name in ("model.safetensors", "config.json"):
        path = path.parent
    return path.stem if path.suffix else path.name or checkpoint


def write_result(result: TaskResult, results_dir: Path) -> Path:
    path = result_path(results_dir, result.backbone, result.checkpoint, result.task)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(dataclasses.asdict(result), indent=1, default=_json_default, allow_nan=False))
    os.replace(tmp, path)
    return path


def read_result(path: Path) -> TaskResult:
    """Parse one result file; a malformed file is a DataError naming it."""
    try:
        raw = json.loads(Path(path).read_text())
        known = {f.name for f in dataclasses.fields(TaskResult)}
        return TaskResult(**{k: v for k, v in raw.items() if k in known})
    except (OSError, ValueError, TypeError, AttributeError) as err:
        raise DataError(f"{path}: not a toto-eval result file ({err})") from None


def provenance() -> dict[str, Any]:
    try:
        pkg = version("toto-eval")
    except PackageNotFoundError:
        pkg = "unknown"
    return {
        "package_version": pkg,
        "git_revision": _git_revision(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "hardware": {
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a result")
