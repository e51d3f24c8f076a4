"""The table printed at the end of a run: one line per task, with the selected layer and the wall time; after a
run over several seeds, one line per task with the mean, the range and the score of every seed."""

from __future__ import annotations

from statistics import fmean

from .results import TaskResult


def print_summary(results: list[TaskResult]) -> None:
    rows = [("task", "status", "metric", "score", "layer", "seconds")]
    for r in results:
        score = f"{r.main_score:.4f}" if r.main_score is not None else "-"
        layer = str(r.selected.get("layer", "-")) if r.selected else "-"
        rows.append((r.task, r.status, r.main_metric, score, layer, f"{r.wall_seconds:.1f}"))
    _print_table(rows)
    for r in results:
        if not r.ok:
            print(f"{r.task}: {r.error}")


def print_seed_summary(by_seed: dict[int, list[TaskResult]]) -> None:
    """Per task over the seeds that ran it well: mean, min-max and each seed's score (a failed seed shows '-')."""
    tasks = list(dict.fromkeys(r.task for results in by_seed.values() for r in results))
    rows = [("task", "metric", "mean", "min-max", *(f"seed {s}" for s in by_seed))]
    for task in tasks:
        found = [next((r for r in results if r.task == task), None) for results in by_seed.values()]
        metric = next(r.main_metric for r in found if r is not None)
        good = [r.main_score if r is not None and r.ok and r.main_score is not None else None for r in found]
        scores = [score for score in good if score is not None]
        each = ["-" if score is None else f"{score:.4f}" for score in good]
        spread = f"{min(scores):.4f}-{max(scores):.4f}" if scores else "-"
        rows.append((task, metric, f"{fmean(scores):.4f}" if scores else "-", spread, *each))
    _print_table(rows)
    for seed, results in by_seed.items():
        for r in results:
            if not r.ok:
                print(f"seed {seed}, {r.task}: {r.error}")


def _print_table(rows: list[tuple[str, ...]]) -> None:
    """Left-aligned columns under a ruled header row, after a blank line."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print()
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
