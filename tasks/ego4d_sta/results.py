"""The official STA challenge results file: writing it, checking it, and scoring it against an annotation file.

Format (what the reference evaluator accepts): `{"version": "1.0", "challenge":
"ego4d_short_term_object_interaction_anticipation", "results": {uid: [{box, noun_category_id, verb_category_id,
time_to_contact, score}]}}` with the same strict types (ints for ids, floats for TTC and score), and every uid of
the annotation file present (an empty list is allowed). What the reference accepts, we accept and score the same
way; what would be a silent surprise is logged as a warning naming the file and the count: uids that are not in
the annotation file (ignored, as the reference ignores them; usually the wrong split) and NaN or infinite boxes,
TTCs and scores, and ids beyond 64-bit integers (they can match no ground truth, so they are scored as an id no
ground-truth object has). Refused although the reference would run on them: a per-uid value that is not a list
(it takes `{}` and `""` for no predictions).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

from toto_eval.common.errors import data_error

from .data import INT64, STASplit, is_int64, is_real, read_json
from .metrics import AGNOSTIC_VARIANTS, STA_VARIANTS, Boxes, STAMeanAP

CHALLENGE = "ego4d_short_term_object_interaction_anticipation"
VERSION = "1.0"
FIELDS = ("box", "noun_category_id", "verb_category_id", "time_to_contact", "score")

log = logging.getLogger(__name__)


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
    odd = Counter()
    for uid, preds in results.items():
        odd += _check_predictions(path, uid, preds)
    known = {a.uid for a in split.annotations}
    missing = [a.uid for a in split.annotations if a.uid not in results]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise data_error(path, f"uids missing from the results: {', '.join(missing[:3])}{more}")
    extra = [uid for uid in results if uid not in known]
    if extra:
        log.warning(
            "%s: %d prediction uid(s) are not in %s (first: %r); ignored, as the official evaluator ignores them",
            path, len(extra), split.path.name, extra[0],
        )  # fmt: skip
    for what, count in odd.items():
        log.warning("%s: %d prediction(s) have %s; scored as the official evaluator scores them", path, count, what)
    free = {key: _free_id(split, key) for key in ("noun_category_id", "verb_category_id")}
    fixed = {uid: [p | {k: v for k, v in free.items() if not is_int64(p[k])} for p in results[uid]] for uid in known}
    return {uid: Boxes.from_dicts(preds, with_scores=True) for uid, preds in fixed.items()}


def _free_id(split: STASplit, key: str) -> int:
    """An int64 id that no ground-truth object has: scored in place of an id beyond int64, it matches nothing."""
    used = {o.noun if key == "noun_category_id" else o.verb for a in split.annotations for o in a.objects or ()}
    free = -INT64
    while free in used:
        free += 1
    return free


def _check_predictions(path: Path, uid: str, preds: Any) -> Counter:
    """Check the reference's types; returns the counts of legal oddities (NaN or infinite numbers, huge ids)."""
    if not isinstance(preds, list):
        raise data_error(path, f"uid {uid!r}: predictions must be a list")
    odd = Counter()
    for k, p in enumerate(preds):
        where = f"uid {uid!r} prediction {k}"
        if not isinstance(p, dict):
            raise data_error(path, f"{where}: must be an object")
        for field in FIELDS:
            if field not in p:
                raise data_error(path, f"{where}: missing '{field}'")
        box = p["box"]
        if not (isinstance(box, list) and len(box) == 4 and all(is_real(v) for v in box)):
            raise data_error(path, f"{where}: box must be a list of 4 numbers, got {str(box)[:80]}")
        for field in ("noun_category_id", "verb_category_id"):
            if not isinstance(p[field], int):  # bools pass, as they pass the reference's isinstance
                raise data_error(path, f"{where}: {field} must be an integer, got {str(p[field])[:40]}")
        for field in ("time_to_contact", "score"):
            if not isinstance(p[field], float):
                raise data_error(path, f"{where}: {field} must be a float (e.g. 1.0, not 1), got {str(p[field])[:40]}")
        odd["a NaN or infinite box, TTC or score"] += not all(
            math.isfinite(float(v)) for v in (*box, p["time_to_contact"], p["score"])
        )
        odd["an id beyond 64-bit integers (it matches no ground truth)"] += not (
            is_int64(p["noun_category_id"]) and is_int64(p["verb_category_id"])
        )
    return +odd


def matched(
    split: STASplit, predictions: dict[str, Boxes], official_quirks: bool = True, agnostic: bool = False
) -> STAMeanAP:
    """Every annotated example's predictions matched to its ground truth, ready to `compute` (or resample)."""
    if not split.annotated:
        raise data_error(split.path, "has no ground truth (an unannotated split cannot be scored)")
    metric = STAMeanAP(STA_VARIANTS + (AGNOSTIC_VARIANTS if agnostic else ()), official_quirks=official_quirks)
    for ann in split.annotations:
        metric.add(predictions[ann.uid], split.ground_truth(ann))
    return metric


def score(
    split: STASplit, predictions: dict[str, Boxes], official_quirks: bool = True, agnostic: bool = False
) -> dict[str, float]:
    """The four STA mAPs (percent; plus the class-agnostic APs with `agnostic`) and the empty-prediction count."""
    metric = matched(split, predictions, official_quirks, agnostic)
    out = metric.compute()
    out["num_examples"] = float(metric.num_examples)
    out["num_empty_predictions"] = float(metric.num_empty)
    return out
