"""One JSON record per (backbone, checkpoint, task): the only thing leaderboards read.

A `TaskResult` holds the numbers (main metric, all metrics, per-layer table, selected head) and everything needed
to trust or reject them later (task version and config, backbone fingerprint, package version and git revision,
seeds, data fingerprint, hardware, wall time, and the flags `limited`, `random_init`, `mini`). A failed task is a
result too (status "failed" with its reason), so a table can say why a cell is empty.

Writing is safe against crashes, full disks and a second writer: atomic rename under a lock beside the file
(`.<task>.json.lock`), and a failure caused by a full disk is never written (it says nothing about the backbone,
and it would replace an earlier good result): `write_result` raises it instead, which stops the run. Every file
carries `checksum`, a SHA-256 over the rest of its content (canonical JSON); `read_result` refuses a file whose
content no longer matches it (edited or corrupted after it was written) in one line naming the file, so a
leaderboard skips it with a note. Files from before checksums (schema 2) are read as they are.
"""

from __future__ import annotations

import dataclasses
import hashlib
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
from ..common.files import DiskFullError, atomic_write_text, disk_error, file_lock, is_disk_full

SCHEMA_VERSION = 3  # 2: mini_overrides, intervals; 3: checksum


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
    checksum: str = ""  # "sha256:<hex>" of every other field (canonical JSON); set by write_result

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
    """Write `result` (with its checksum) atomically under the file's lock; returns the path. A failure caused by a
    full disk is raised as DiskFullError instead of being written."""
    if result.status == "failed" and is_disk_full(result.error):
        raise DiskFullError(result.error)
    path = result_path(results_dir, result.backbone, result.checkpoint, result.task)
    # the record as it will read back (numpy scalars made plain, int keys made strings): what the checksum covers
    record = json.loads(json.dumps(dataclasses.asdict(result), default=_json_default, allow_nan=False))
    record["checksum"] = result_checksum(record)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise disk_error(path.parent, err) from err
    with file_lock(path.with_name(f".{path.name}.lock")):
        atomic_write_text(path, json.dumps(record, indent=1, allow_nan=False))
    return path


def read_result(path: Path) -> TaskResult:
    """Parse one result file; a malformed file, or one whose checksum no longer matches, is a DataError naming it."""
    try:
        raw = json.loads(Path(path).read_text())
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        stored = raw.get("checksum")
        if stored and stored != result_checksum(raw):
            raise DataError(f"{path}: content does not match its checksum (edited or corrupted after it was written)")
        known = {f.name for f in dataclasses.fields(TaskResult)}
        return TaskResult(**{k: v for k, v in raw.items() if k in known})
    except (OSError, ValueError, TypeError, AttributeError) as err:
        raise DataError(f"{path}: not a toto-eval result file ({err})") from None


def result_checksum(record: dict[str, Any]) -> str:
    """SHA-256 of a result record without its `checksum` field, as canonical JSON (sorted keys, no spaces)."""
    body = {k: v for k, v in record.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


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
