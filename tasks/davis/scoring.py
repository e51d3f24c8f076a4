"""Score a folder of predicted masks against a DAVIS-2017 root, as `evaluation_method.py --task semi-supervised`.

Predictions are laid out like the GT: `<predictions>/<seq>/<frame>.png`, palette or 8-bit grayscale, at the GT's
size; only frames 1..N-2 are read. The results are the official two tables, written into the predictions folder as
`global_results-<set>.csv` (`J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay`) and
`per-sequence_results-<set>.csv` (`Sequence,J-Mean,F-Mean`, one row per object `<seq>_<k>`). Unlike the official
script we write full precision (it rounds to 3 decimals) and always recompute (it silently reuses old CSVs).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toto_eval.common.errors import data_error

from .data import load_sequence, read_annotations, read_labels, read_sequence_list
from .metrics import VOID, ObjectScores, global_table, score_sequence

GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
SEQUENCE_COLUMNS = ("Sequence", "J-Mean", "F-Mean")


@dataclass
class DavisScores:
    """Per-object scores of one evaluated set, and the two official tables built from them."""

    split: str
    objects: list[ObjectScores]

    def global_row(self) -> dict[str, float]:
        return global_table(self.objects)

    def sequence_rows(self) -> list[dict[str, str | float]]:
        rows = []
        for obj in self.objects:
            stats = obj.stats()
            rows.append({"Sequence": obj.name, "J-Mean": stats["J-Mean"], "F-Mean": stats["F-Mean"]})
        return rows


def read_predictions(folder: Path, names: list[str], shape: tuple[int, int], num_objects: int = 255) -> np.ndarray:
    """`(len(names), H, W)` uint8 predicted ids of `folder/<name>.png`, checked against the GT size and id count."""
    out = np.zeros((len(names), *shape), dtype=np.uint8)
    for i, name in enumerate(names):
        path = folder / f"{name}.png"
        labels = read_labels(path, what="prediction")
        if labels.shape != shape:
            raise data_error(path, f"prediction is {labels.shape[1]}x{labels.shape[0]}, the GT {shape[1]}x{shape[0]}")
        if labels.max(initial=0) > num_objects:  # the official evaluator stops here too
            raise data_error(
                path, f"predicted id {labels.max()} but the sequence has {num_objects} object(s) in its first frame"
            )
        out[i] = labels
    return out


def score_folder(
    davis_root: Path, predictions: Path, split: str = "val", sequences: list[str] | None = None
) -> DavisScores:
    """Semi-supervised J and F of every sequence of `split` (or of `sequences`), in the split file's order."""
    davis_root, predictions = Path(davis_root), Path(predictions)
    if not predictions.is_dir():
        raise data_error(predictions, "predictions folder not found")
    names = sequences if sequences is not None else read_sequence_list(davis_root, split)
    objects: list[ObjectScores] = []
    for name in names:
        seq = load_sequence(davis_root, name)
        if len(seq) < 3:
            raise data_error(seq.frames[0].parent, f"{len(seq)} frame(s); scoring skips the first and last, so >= 3")
        gt = read_annotations(seq)
        pred_dir = predictions / name
        if not pred_dir.is_dir():
            raise data_error(pred_dir, "no predictions for this sequence")
        scored = seq.frame_names[1:-1]
        num_objects = int(np.where(gt[0] == VOID, 0, gt[0]).max())
        pred = read_predictions(pred_dir, scored, gt.shape[1:], num_objects)
        objects += score_sequence(name, gt, pred, seq.frame_names)
    if not objects:
        raise data_error(davis_root / "Annotations", f"no object ids in the first frames of {len(names)} sequence(s)")
    return DavisScores(split, objects)


def write_csvs(scores: DavisScores, folder: Path) -> tuple[Path, Path]:
    """Write both official tables into `folder` at full precision; returns (global, per-sequence) paths."""
    folder = Path(folder)
    global_path = folder / f"global_results-{scores.split}.csv"
    sequence_path = folder / f"per-sequence_results-{scores.split}.csv"
    _write_csv(global_path, GLOBAL_COLUMNS, [scores.global_row()])
    _write_csv(sequence_path, SEQUENCE_COLUMNS, scores.sequence_rows())
    return global_path, sequence_path


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row[c]) for c in columns])
    tmp.replace(path)


def _cell(value: object) -> str:
    return repr(float(value)) if isinstance(value, (float, np.floating)) else str(value)


def format_tables(scores: DavisScores, digits: int = 6) -> str:
    """The two tables as fixed-width text, the way the official script prints them."""
    lines = [f"--------------------------- Global results for {scores.split} ---------------------------"]
    row = scores.global_row()
    width = max(len(c) for c in GLOBAL_COLUMNS) + 1
    lines.append("".join(f"{c:>{width}}" for c in GLOBAL_COLUMNS))
    lines.append("".join(f"{row[c]:>{width}.{digits}f}" for c in GLOBAL_COLUMNS))
    lines.append(f"\n---------- Per sequence results for {scores.split} ----------")
    rows = scores.sequence_rows()
    name_width = max([len("Sequence"), *(len(str(r["Sequence"])) for r in rows)])
    lines.append(f"{'Sequence':<{name_width}} {'J-Mean':>{digits + 4}} {'F-Mean':>{digits + 4}}")
    for r in rows:
        lines.append(
            f"{r['Sequence']:<{name_width}} {r['J-Mean']:>{digits + 4}.{digits}f} {r['F-Mean']:>{digits + 4}.{digits}f}"
        )
    return "\n".join(lines)
