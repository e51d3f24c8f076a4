"""The table printed at the end of a run: one line per task, with the selected layer and the wall time."""

from __future__ import annotations

from .results import TaskResult


def print_summary(results: list[TaskResult]) -> None:
    rows = [("task", "status", "metric", "score", "layer", "seconds")]
    for r in results:
        score = f"{r.main_score:.4f}" if r.main_score is not None else "-"
        layer = str(r.selected.get("layer", "-")) if r.selected else "-"
        rows.append((r.task, r.status, r.main_metric, score, layer, f"{r.wall_seconds:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print()
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for r in results:
        if not r.ok:
            print(f"{r.task}: {r.error}")
