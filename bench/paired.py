"""Two models, task by task: each main score with its 95% interval, and the paired difference's interval.

Reads result files (as the leaderboard does) and, for every task both models ran on the same test samples,
prints the marginal intervals and the 95% interval of A - B from the stored bootstrap replicates
(`leaderboard/intervals.paired_difference`). "beyond" says whether the marginal intervals are disjoint, "paired"
whether the paired interval excludes 0.

    python bench/paired.py RESULTS_DIR [RESULTS_DIR ...] --a toto_tiny/toto_tiny --b toto_tiny/random-init
"""

from __future__ import annotations

import argparse
from pathlib import Path

from toto_eval.leaderboard.collect import Entry, collect
from toto_eval.leaderboard.intervals import paired_difference
from toto_eval.leaderboard.specs import scaled, spec_for


def pick(entries: list[Entry], who: str) -> dict[str, Entry]:
    backbone, _, checkpoint = who.partition("/")
    return {
        e.result.task: e
        for e in entries
        if e.result.backbone == backbone and (not checkpoint or e.checkpoint == checkpoint)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--a", required=True, help="BACKBONE[/CHECKPOINT TAG]")
    parser.add_argument("--b", required=True, help="BACKBONE[/CHECKPOINT TAG]")
    args = parser.parse_args()
    entries = collect(args.results).entries
    a, b = pick(entries, args.a), pick(entries, args.b)
    print(f"{'task':<16}{'A':>22}{'B':>22}{'A - B paired':>24}  beyond  paired")
    for task in sorted(set(a) & set(b)):
        ea, eb = a[task], b[task]
        metric = next((m for m in spec_for(task).metrics if m.key == ea.result.main_metric), None)
        if metric is None:
            print(f"{task:<16} main metric {ea.result.main_metric!r} not in the task's display")
            continue
        factor = 100.0 if metric.percent else 1.0
        ia, ib = ea.interval(metric.key), eb.interval(metric.key)
        if ia is None or ib is None:
            print(f"{task:<16} no interval")
            continue
        ia, ib = ia.scaled(factor), ib.scaled(factor)
        va, vb = scaled(metric, ea.result.main_score), scaled(metric, eb.result.main_score)
        diff = paired_difference(ia, ib)
        beyond = ia.low > ib.high or ib.low > ia.high
        paired = "n/a" if diff is None else "yes" if diff[0] > 0 or diff[1] < 0 else "no"
        shown = "not paired" if diff is None else f"{va - vb:+.1f} [{diff[0]:+.1f}, {diff[1]:+.1f}]"
        print(
            f"{task:<16}{f'{va:.1f} [{ia.low:.1f}, {ia.high:.1f}]':>22}{f'{vb:.1f} [{ib.low:.1f}, {ib.high:.1f}]':>22}"
            f"{shown:>24}  {'yes' if beyond else 'no':<6}  {paired}"
        )


if __name__ == "__main__":
    main()
