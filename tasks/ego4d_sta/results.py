"""The official STA challenge results file: writing it, checking it, and scoring it against an annotation file.

Format (what the reference evaluator accepts): `{"version": "1.0", "challenge":
"ego4d_short_term_object_interaction_anticipation", "results": {uid: [{box, noun_category_id, verb_category_id,
time_to_contact, score}]}}` with the same strict types (ints for ids, floats for TTC and score), and every uid of
the annotation file present (an empty list is allowed). One check is stricter than the reference: a uid that is
not in the annotation file is an error rather than ignored, because it almost always means the wrong split.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from toto_eval.common.errors import data_error

from .data import STASplit, read_json
from .metrics import AGNOSTIC_VARIANTS, STA_VARIANTS, Boxes, STAMeanAP

CHALLENGE = "ego4d_short_term_object_interaction_anticipation"
VERSION = "1.0"
FIELDS = ("box", "noun_category_id", "verb_category_id", "time_to_contact", "score")


def prediction(box: Any, noun: int, verb: int, ttc: float, score: float) -> dict:
    """One prediction with the exact Python types the challenge requires."""
    return {
        "box": [float(v) for v in box],
        "noun_category_id": int(noun),
        "verb_category_id": int(verb),
        "time_to_contact": float(ttc),
        "score": float(score),
    }


def write_results(path: str | Path, results: dict[str, list[dict]]) -> None:
    """Write the challenge JSON atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"version": VERSION, "challenge": CHALLENGE, "results": results}))
    os.replace(tmp, path)


def load_results(path: str | Path, split: STASplit) -> dict[str, Boxes]:
    """Read and check a results file against `split`; returns `{uid: predictions}` for every annotated uid."""
    path = Path(path)
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise data_error(path, "expected a JSON object with version, challenge and results")
    for key in ("results", "version", "challenge"):
        if key not in raw:
            raise data_error(path, f"missing the '{key}' field")
    if raw["challenge"] != CHALLENGE:
        raise data_error(path, f"challenge {raw['challenge']!r} is not {CHALLENGE!r}")
    if raw["version"] != VERSION:
        raise data_error(path, f"version {raw['version']!r} is not {VERSION!r}")
    results = raw["results"]
    if not isinstance(results, dict):
        raise data_error(path, "'results' must map uid -> list of predictions")
    known = {a.uid for a in split.annotations}
    for uid, preds in results.items():
        if uid not in known:
            raise data_error(path, f"prediction uid {uid!r} is not in {split.path.name}")
        _check_predictions(path, uid, preds)
    missing = [a.uid for a in split.annotations if a.uid not in results]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise data_error(path, f"uids missing from the results: {', '.join(missing[:3])}{more}")
    return {uid: Boxes.from_dicts(preds, with_scores=True) for uid, preds in results.items()}


def _check_predictions(path: Path, uid: str, preds: Any) -> None:
    if not isinstance(preds, list):
        raise data_error(path, f"uid {uid!r}: predictions must be a list")
    for k, p in enumerate(preds):
        where = f"uid {uid!r} prediction {k}"
        if not isinstance(p, dict):
            raise data_error(path, f"{where}: must be an object")
        for field in FIELDS:
            if field not in p:
                raise data_error(path, f"{where}: missing '{field}'")
        box = p["box"]
        if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)):
            raise data_error(path, f"{where}: box must be a list of 4 numbers, got {box!r}")
        for field in ("noun_category_id", "verb_category_id"):
            if not isinstance(p[field], int) or isinstance(p[field], bool):
                raise data_error(path, f"{where}: {field} must be an integer, got {p[field]!r}")
        for field in ("time_to_contact", "score"):
            if not isinstance(p[field], float) or not math.isfinite(p[field]):
                raise data_error(path, f"{where}: {field} must be a finite float (e.g. 1.0, not 1), got {p[field]!r}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def score(
    split: STASplit, predictions: dict[str, Boxes], official_quirks: bool = True, agnostic: bool = False
) -> dict[str, float]:
    """The four STA mAPs (percent; plus the class-agnostic APs with `agnostic`) and the empty-prediction count."""
    if not split.annotated:
        raise data_error(split.path, "has no ground truth (an unannotated split cannot be scored)")
    metric = STAMeanAP(STA_VARIANTS + (AGNOSTIC_VARIANTS if agnostic else ()), official_quirks=official_quirks)
    for ann in split.annotations:
        metric.add(predictions[ann.uid], split.ground_truth(ann))
    out = metric.compute()
    out["num_examples"] = float(metric.num_examples)
    out["num_empty_predictions"] = float(metric.num_empty)
    return out
