"""Two models, task by task: each main score with its 95% interval, and the paired difference's interval.

Reads result files (as the leaderboard does) and, for every task both models ran on the same test samples,
prints the marginal intervals and the 95% interval of A - B from the stored bootstrap replicates
(`leaderboard/intervals.paired_difference`). "beyond" says whether the marginal intervals are disjoint, "paired"
whether the paired interval excludes 0.

    python bench/paired.py RESULTS_DIR [RESULTS_DIR ...] --a toto_tiny/toto_tiny --b toto_tiny/random-init

With `--each`, every results folder is one run of both models (say one per `--seed`: the bootstrap counts only
the val samples, not the probe's initialisation and holdout, which the seed draws): a row per folder and task,
then per task how many runs' paired intervals exclude 0 on each side, the spread of A - B over the runs, and the
95% interval of the mean A - B over the runs from a bootstrap over both the runs and the val samples
(`leaderboard/intervals.pooled_difference`): the interval that also counts what the seed moves.

    python bench/paired.py seed0 seed1 seed2 --a toto_tiny/toto_tiny --b toto_tiny/random-init --each
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from toto_eval.leaderboard.collect import Entry, collect
from toto_eval.leaderboard.intervals import Interval, paired_difference, pooled_difference
from toto_eval.leaderboard.specs import scaled, spec_for

HEADER = f"{'task':<16}{'A':>22}{'B':>22}{'A - B paired':>24}  beyond  paired"


@dataclass(frozen=True)
class Comparison:
    task: str
    a: tuple[float, float, float]  # value, low, high (display units)
    b: tuple[float, float, float]
    diff: tuple[float, float] | None  # the paired interval of A - B; None when the samples differ
    intervals: tuple[Interval, Interval] | None = field(default=None, compare=False, repr=False)  # A's, B's

    @property
    def beyond(self) -> bool:
        return self.a[1] > self.b[2] or self.b[1] > self.a[2]

    @property
    def sign(self) -> int:
        """+1 / -1 where the paired interval lies above / below 0, else 0."""
        if self.diff is None:
            return 0
        return 1 if self.diff[0] > 0 else -1 if self.diff[1] < 0 else 0

    def row(self) -> str:
        (va, la, ha), (vb, lb, hb) = self.a, self.b
        paired = "n/a" if self.diff is None else "yes" if self.sign else "no"
        shown = "not paired" if self.diff is None else f"{va - vb:+.1f} [{self.diff[0]:+.1f}, {self.diff[1]:+.1f}]"
        return (
            f"{self.task:<16}{f'{va:.1f} [{la:.1f}, {ha:.1f}]':>22}{f'{vb:.1f} [{lb:.1f}, {hb:.1f}]':>22}"
            f"{shown:>24}  {'yes' if self.beyond else 'no':<6}  {paired:<6}"
        )


def pick(entries: list[Entry], who: str) -> dict[str, Entry]:
    backbone, _, checkpoint = who.partition("/")
    return {
        e.result.task: e
        for e in entries
        if e.result.backbone == backbone and (not checkpoint or e.checkpoint == checkpoint)
    }


def compare(task: str, ea: Entry, eb: Entry) -> Comparison | str:
    """The two results' main scores and paired difference, or why they cannot be compared."""
    metric = next((m for m in spec_for(task).metrics if m.key == ea.result.main_metric), None)
    if metric is None:
        return f"main metric {ea.result.main_metric!r} not in the task's display"
    factor = 100.0 if metric.percent else 1.0
    ia, ib = ea.interval(metric.key), eb.interval(metric.key)
    if ia is None or ib is None:
        return "no interval"
    ia, ib = ia.scaled(factor), ib.scaled(factor)
    va, vb = scaled(metric, ea.result.main_score), scaled(metric, eb.result.main_score)
    return Comparison(task, (va, ia.low, ia.high), (vb, ib.low, ib.high), paired_difference(ia, ib), (ia, ib))


def comparisons(results: list[Path], a_who: str, b_who: str) -> list[Comparison | tuple[str, str]]:
    entries = collect(results).entries
    a, b = pick(entries, a_who), pick(entries, b_who)
    out: list[Comparison | tuple[str, str]] = []
    for task in sorted(set(a) & set(b)):
        c = compare(task, a[task], b[task])
        out.append(c if isinstance(c, Comparison) else (task, c))
    return out


def show(items: list[Comparison | tuple[str, str]], label: str = "") -> None:
    for item in items:
        line = item.row() if isinstance(item, Comparison) else f"{item[0]:<16} {item[1]}"
        print(f"{line}{label}".rstrip())


def summary(runs: dict[str, list[Comparison]]) -> None:
    """Per task over the runs: how many paired intervals lie above / below 0, A - B's mean and range, and the
    interval of the mean over runs and val samples both."""
    head = f"{'A - B mean':>12}{'min':>8}{'max':>8}{'over runs and samples':>24}"
    print(f"\n{'task':<16}{'runs':>5}{'A > B':>7}{'A < B':>7}{head}")
    for task, items in sorted(runs.items()):
        diffs = [c.a[0] - c.b[0] for c in items]
        up, down = sum(c.sign > 0 for c in items), sum(c.sign < 0 for c in items)
        pooled = pooled_difference([c.intervals for c in items if c.intervals is not None])
        shown = "not paired" if pooled is None else f"[{pooled[0]:+.1f}, {pooled[1]:+.1f}]"
        print(
            f"{task:<16}{len(items):>5}{up:>7}{down:>7}{sum(diffs) / len(diffs):>+12.1f}"
            f"{min(diffs):>+8.1f}{max(diffs):>+8.1f}{shown:>24}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--a", required=True, help="BACKBONE[/CHECKPOINT TAG]")
    parser.add_argument("--b", required=True, help="BACKBONE[/CHECKPOINT TAG]")
    parser.add_argument("--each", action="store_true", help="compare within each results folder, then summarise")
    args = parser.parse_args()
    print(HEADER)
    if not args.each:
        show(comparisons(args.results, args.a, args.b))
        return
    runs: dict[str, list[Comparison]] = {}
    for folder in args.results:
        items = comparisons([folder], args.a, args.b)
        show(items, str(folder))
        for item in items:
            if isinstance(item, Comparison):
                runs.setdefault(item.task, []).append(item)
    summary(runs)


if __name__ == "__main__":
    main()
