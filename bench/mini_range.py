"""The dynamic range of a mini-suite task: floors, positive control and a model, each with a 95% interval.

Runs one task (through `evaluate`, exactly as `toto-eval run` does) on several backbones, each with the same cache
folder, and prints one JSON line per backbone: the main score, its 95% interval, the number of val samples, the
wall time and the time spent extracting features. Intervals are the ones every result stores for its main metric
(`harness/intervals.py`: bootstrap over val samples with a fixed seed; Wilson for success rates); for robot the
Wilson intervals of the BC, proprioception-only, state-control and expert success counts pooled over the four
tasks are added.

`ceiling` is, for davis, perfect correspondence at an 8 px token grid of a 64 px input (the resolution's limit) and,
for ego4d_sta, perfect verb and time-to-contact heads on the task's own detections (what the heads, all a backbone
contributes, can reach with those boxes and nouns).

Run (one task, a few backbones; `name:random` is `--random-init`):

    python bench/mini_range.py --task k400_probe --backbones toto_tiny:random pixels control_k400 toto_tiny \
        --cache-dir /tmp/minisuite-cache --out /tmp/minisuite-range.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from toto_eval.common.log import setup_logging
from toto_eval.harness.evaluate import RunOptions, create_backbone, evaluate
from toto_eval.harness.intervals import bootstrap_mean
from toto_eval.harness.intervals import wilson as wilson_interval

PROBE_TASKS = {"imagenet_probe": "imagenet_probe", "k400_probe": "k400", "cater": "cater"}
MODULES = {**PROBE_TASKS, "davis": "davis", "ego4d_sta": "ego4d_sta", "robot": "robot"}
RESAMPLES = 2000


def bootstrap(values: np.ndarray) -> tuple[float, float]:
    """Percentile 95% interval of the mean of `values` (one entry per val sample)."""
    ci = bootstrap_mean(values, resamples=RESAMPLES)
    return ci["low"], ci["high"]


def wilson(k: int, n: int) -> tuple[float, float]:
    ci = wilson_interval(k, n)
    return ci["low"], ci["high"]


def result_interval(result) -> dict:
    """The main metric and the 95% interval the task itself stored in its result (see harness/intervals.py)."""
    from toto_eval.harness.registry import TASKS

    main = TASKS.get(result.task).main_metric
    ci = result.intervals[main]
    return {"score": float(result.metrics[main]), "ci95": (ci["low"], ci["high"]), "n_val": ci["n"]}


def robot_interval(result) -> dict:
    out = {"score": float(result.main_score)}
    tasks = result.extra["tasks"]
    runs_of = {
        "bc": lambda res: res["bc"],
        "proprio": lambda res: (res["proprio"] or {}).get("runs", []),  # the floor
        "state": lambda res: (res.get("state") or {}).get("runs", []),  # the head on the object's true position
        "expert": lambda res: [res["expert"]],
    }
    for kind, runs in runs_of.items():
        k = sum(r["successes"] for res in tasks.values() for r in runs(res))
        n = sum(r["episodes"] for res in tasks.values() for r in runs(res))
        out[kind] = {"success": k / max(n, 1), "ci95": wilson(k, n), "k": k, "n": n}
    out["ci95"], out["n_val"] = out["bc"]["ci95"], out["bc"]["n"]
    return out


def davis_ceiling(cache_dir: Path, out: Path, side: int = 64, patch: int = 8) -> dict:
    """J&F of perfect correspondence on the token grid: every frame's true labels, nearest-downsampled to the grid
    of a `side` px input with `patch` px tokens, brought back exactly as the task brings soft labels back. What no
    backbone at that grid can beat (the mini suite warps frames to the backbone's resolution)."""
    from toto_eval.harness.task import RunContext
    from toto_eval.tasks.davis.data import load_sequence, read_labels, read_sequence_list, write_labels
    from toto_eval.tasks.davis.mini import VERSION, make_mini
    from toto_eval.tasks.davis.propagation import first_frame_labels, soft_to_labels
    from toto_eval.tasks.davis.scoring import score_folder

    ctx = RunContext(cache=None, data_root=None, mini_root=cache_dir / "mini")
    root = ctx.dataset_root("DAVIS", make_mini, VERSION)
    names = read_sequence_list(root, "val")
    for name in names:
        sequence = load_sequence(root, name)
        num = int(read_labels(sequence.annotations[0]).max()) + 1
        for frame, path in zip(sequence.frame_names, sequence.annotations, strict=True):
            gt = read_labels(path)
            soft = first_frame_labels(gt, (side // patch, side // patch), "nearest")
            soft = torch.nn.functional.pad(soft, (0, num - soft.shape[-1]))  # ids absent from this frame
            write_labels(out / name / f"{frame}.png", soft_to_labels(soft, (side, side), gt.shape, True))
    scores = score_folder(root, out, "val", names)
    values = np.array([(r["J-Mean"] + r["F-Mean"]) / 2 for r in scores.sequence_rows()])
    return {"score": scores.global_row()["J&F-Mean"], "ci95": bootstrap(values), "n_val": len(values)}


def ego4d_ceiling(cache_dir: Path) -> dict:
    """Overall mAP of perfect verb and time-to-contact heads on the task's own detections: each detected box gets
    the verb and TTC of the ground-truth box it overlaps most (none overlapping: the train split's most common
    verb and median TTC) and, as `score="detector_x_verb"` gives a sure verb, the detector's score. What no
    backbone can beat with these boxes and nouns: the heads are all a backbone contributes."""
    from toto_eval.harness.task import RunContext
    from toto_eval.tasks.ego4d_sta.metrics import Boxes, box_iou
    from toto_eval.tasks.ego4d_sta.mini import VERSION, make_mini
    from toto_eval.tasks.ego4d_sta.results import score
    from toto_eval.tasks.ego4d_sta.task import Config, Ego4DSTA

    task = Ego4DSTA(Config())
    ctx = RunContext(cache=None, data_root=None, mini_root=cache_dir / "mini")
    root = ctx.dataset_root("ego4d", make_mini, VERSION)
    train, evals = task._split(root, "train", True), task._split(root, "val", True)
    known = [train.ground_truth(a) for a in train.annotations]
    verb = int(np.bincount(np.concatenate([g.verbs for g in known])).argmax())
    ttc = float(np.median(np.concatenate([g.ttcs for g in known])))
    detections = task._test_boxes(root, evals)
    predicted = {}
    for ann in evals.annotations:
        det, gt = detections[ann.uid], evals.ground_truth(ann)
        verbs, ttcs = np.full(len(det), verb), np.full(len(det), ttc)
        if len(det) and len(gt):
            iou = box_iou(det.boxes, gt.boxes)
            hit, best = iou.max(1) > 0, iou.argmax(1)
            verbs[hit], ttcs[hit] = gt.verbs[best[hit]], gt.ttcs[best[hit]]
        predicted[ann.uid] = Boxes(det.boxes, det.nouns, verbs, ttcs, det.scores)
    interval = task._interval(evals, predicted, "overall")
    value = score(evals, predicted, task.config.official_quirks)["overall"]
    return {"score": value, "ci95": (interval["low"], interval["high"]), "n_val": len(evals.annotations)}


def feature_seconds(result) -> float:
    cache = result.extra.get("cache") or {}
    if result.task == "robot":
        return sum(t["cache"]["seconds"] for t in result.extra["tasks"].values())
    if result.task == "davis":
        return result.extra["timing"]["features_s"]
    return float(sum(s.get("seconds", 0.0) for s in cache.values()))


def use_old_generator(task: str, commit: str) -> None:
    """Swap in a task's mini generator as it was at `commit` (the "before" numbers of a redesign)."""
    import importlib
    import subprocess
    import types

    package = f"toto_eval.tasks.{MODULES[task]}"
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(
        ["git", "show", f"{commit}:tasks/{MODULES[task]}/mini.py"], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    old = types.ModuleType(f"{package}.mini_old")
    old.__package__ = package
    sys.modules[old.__name__] = old  # dataclasses look their module up there
    exec(compile(source, f"{commit}:mini.py", "exec"), old.__dict__)
    mini, task_module = importlib.import_module(f"{package}.mini"), importlib.import_module(f"{package}.task")
    for name in ("make_mini", "VERSION", "mini_dirname", "MINI"):
        if hasattr(old, name):
            setattr(mini, name, getattr(old, name))
    task_module.make_mini, task_module.MINI_VERSION = old.make_mini, old.VERSION
    if hasattr(old, "mini_dirname"):
        task_module.mini_dirname = old.mini_dirname


def measure(
    task: str, spec: str, cache_dir: Path, results_dir: Path, overrides: dict, data_root: Path | None = None
) -> dict:
    name, _, flag = spec.partition(":")
    if task == "davis" and name == "ceiling":  # "ceiling" or "ceiling:SIDE" (input side in pixels, 8 px tokens)
        side = int(flag or 64)
        return {"task": task, "backbone": spec, **davis_ceiling(cache_dir, results_dir / f"davis-ceiling{side}", side)}
    if task == "ego4d_sta" and name == "ceiling":
        return {"task": task, "backbone": spec, **ego4d_ceiling(cache_dir)}
    os.environ["TOTO_EVAL_CACHE_DIR"] = str(cache_dir)  # where a control trains and caches its weights
    t0, c0 = time.perf_counter(), time.process_time()
    backbone = create_backbone(name, random_init=flag == "random")
    build_s = time.perf_counter() - t0
    c1 = time.process_time()
    options = RunOptions(
        data_root=data_root,
        cache_dir=cache_dir,
        results_dir=results_dir,
        progress=False,
        task_config={task: overrides} if overrides else {},
    )
    (result,) = evaluate(backbone, task, options)
    if not result.ok:
        return {"task": task, "backbone": spec, "error": result.error}
    interval = robot_interval(result) if task == "robot" else result_interval(result)
    return {
        "task": task,
        "backbone": spec,
        **interval,
        "selected": {k: result.selected.get(k) for k in ("layer", "lr") if result.selected},
        "wall_s": round(result.wall_seconds, 1),
        "features_s": round(feature_seconds(result), 1),
        "cpu_s": round(time.process_time() - c1, 1),
        "backbone_build_s": round(build_s, 1),
        "backbone_build_cpu_s": round(c1 - c0, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--backbones", nargs="+", required=True)
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/minisuite-cache"))
    parser.add_argument("--results-dir", type=Path, default=Path("/tmp/minisuite-results"))
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE task config override (JSON value)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--old", metavar="COMMIT", help="use the task's mini generator as it was at COMMIT")
    parser.add_argument(
        "--data-root", type=Path, help="run as on real data (e.g. a mini folder, to lift mini overrides)"
    )
    parser.add_argument("--davis-side", type=int, help="register a square davis resolution 'sideN' (with --data-root)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    setup_logging(0, prog="mini_range")
    if args.old:
        use_old_generator(args.task, args.old)
    if args.davis_side:  # e.g. 128: the mini frames at 128 px (16 x 16 tokens of 8 px) instead of the backbone's 64
        from toto_eval.tasks.davis.propagation import RESOLUTIONS

        RESOLUTIONS[f"side{args.davis_side}"] = (args.davis_side, "square")
    overrides = {k: json.loads(v) for k, _, v in (s.partition("=") for s in args.set)}
    for spec in args.backbones:
        row = measure(args.task, spec, args.cache_dir, args.results_dir, overrides, args.data_root)
        line = json.dumps(row)
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main()
