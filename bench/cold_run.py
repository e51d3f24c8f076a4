"""The README's first command, cold and warm, with tasks one at a time and side by side (`--jobs`).

For each jobs value: a fresh cache folder (so the mini datasets are generated, features extracted and probes
trained: cold), then the same command again (warm), timed as wall clock around the whole process. Prints one
line per run and the cold and warm ratios of the serial run to each parallel one, and checks that every run
gave the same main scores.

Run (idle machine; 2 x cold + 2 x warm of the whole mini suite: about 20 minutes on 2 cores):

    python bench/cold_run.py --jobs 1 2 --work /tmp/cold-bench
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path


def timed_run(work: Path, jobs: int, backbone: str) -> tuple[float, dict[str, float]]:
    """Seconds of one `toto-eval run --tasks all` in `work`, and its main score per task."""
    cmd = [sys.executable, "-m", "toto_eval.harness.cli", "run", "--backbone", backbone, "--tasks", "all"]
    cmd += ["--jobs", str(jobs), "--cache-dir", str(work / "cache"), "--results-dir", str(work / "results")]
    start = time.perf_counter()
    done = subprocess.run([*cmd, "--no-progress"], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"jobs {jobs}: exit {done.returncode}\n{done.stderr[-2000:]}")
    scores = {}
    for path in (work / "results").glob("*/*/*.json"):  # results/<backbone>/<weights>/<task>.json, not artefacts
        result = json.loads(path.read_text())
        scores[result["task"]] = result["main_score"]
    return seconds, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--backbone", default="toto_tiny")
    parser.add_argument("--work", type=Path, default=Path("/tmp/cold-bench"))
    args = parser.parse_args()
    times, scores = {}, {}
    for jobs in args.jobs:
        work = args.work / f"jobs{jobs}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        cold, scores[jobs] = timed_run(work, jobs, args.backbone)
        warm, again = timed_run(work, jobs, args.backbone)
        assert again == scores[jobs], f"jobs {jobs}: the warm run's scores differ from the cold run's"
        times[jobs] = (cold, warm)
        print(f"jobs {jobs}: cold {cold:6.1f} s  warm {warm:6.1f} s  {json.dumps(scores[jobs], sort_keys=True)}")
    base = args.jobs[0]
    for jobs in args.jobs[1:]:
        same = "same scores" if scores[jobs] == scores[base] else "SCORES DIFFER"
        cold, warm = (times[base][i] / times[jobs][i] for i in range(2))
        print(f"jobs {base} / jobs {jobs}: cold x{cold:.2f}, warm x{warm:.2f} ({same})")


if __name__ == "__main__":
    main()
