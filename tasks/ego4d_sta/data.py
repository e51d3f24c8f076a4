"""Readers for the official Ego4D STA files: `fho_sta_{train,val,test_unannotated}.json`, detections, frames.

The schema is the one the Ego4D docs publish: `info.video_metadata[video_uid]` gives frame size and fps,
`annotations[]` one query frame each (`uid`, `video_id` or `video_uid`, `frame`, `clip_uid`, `clip_frame`, and
`objects[]` with `box` [x1, y1, x2, y2] pixels, `noun_category_id`, `verb_category_id`, `time_to_contact` seconds),
and the noun and verb lists are embedded in every file, so class counts are read from the file, never hard-coded
(v1: 87 nouns / 74 verbs; v2: about 128 / 81). Detections use the baseline's `object_detections.json` format,
`{uid: [{box, score, noun_category_id}]}`. Frames come from the canonical videos (`<videos>/<video_uid>.mp4`) or
from pre-extracted images (a filename template such as the baseline's `{video_uid}_{frame:07d}.jpg`).

Two readers of the annotation file. `load_split` is the task's: it checks everything the task relies on (video
metadata, category lists, boxes inside the frame unless `box_check` says otherwise). `load_ground_truth` is
`ego4d-score`'s and reads exactly what the official evaluator reads (`uid` and `objects`): whatever that evaluator
scores, it scores too, with the same number. Boxes past the frame, inverted or non-finite boxes, ids outside the
embedded lists and repeated uids are kept as the official code keeps them, and each kind is counted in one logged
warning that names the file. What it refuses although the official code would run on it is listed on the function.

Everything malformed is a `DataError` naming the file and the entry; nothing is silently skipped.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from toto_eval.common.errors import DataError, data_error

from .metrics import Boxes

log = logging.getLogger(__name__)

BoxCheck = Literal["error", "clip", "keep"]
INT64 = 2**63


@dataclass(frozen=True)
class VideoMeta:
    width: int
    height: int
    fps: float


@dataclass(frozen=True)
class STAObject:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the original frame
    noun: int
    verb: int
    ttc: float  # seconds from the query frame to contact


@dataclass(frozen=True)
class STAAnnotation:
    uid: str
    video_uid: str
    frame: int  # query frame, index in the canonical video
    clip_uid: str | None
    clip_frame: int | None
    objects: tuple[STAObject, ...] | None  # None in the unannotated test file


@dataclass
class STASplit:
    """One `fho_sta_<split>.json`, parsed and checked."""

    path: Path
    split: str
    version: str
    annotations: list[STAAnnotation]
    videos: dict[str, VideoMeta]
    nouns: list[str]  # index = noun_category_id
    verbs: list[str]
    num_clipped: int = 0  # boxes outside their frame, clipped (box_check="clip") or kept as they are ("keep")

    @property
    def annotated(self) -> bool:
        return all(a.objects is not None for a in self.annotations)

    def ground_truth(self, ann: STAAnnotation) -> Boxes:
        objs = ann.objects or ()
        return Boxes(
            boxes=np.array([o.box for o in objs], dtype=np.float64).reshape(-1, 4),
            nouns=np.array([o.noun for o in objs], dtype=np.int64),
            verbs=np.array([o.verb for o in objs], dtype=np.int64),
            ttcs=np.array([o.ttc for o in objs], dtype=np.float64),
        )


def read_json(path: str | Path) -> Any:
    """The parsed file (NaN and Infinity literals allowed, as Python's `json` allows them); DataError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise data_error(path, "file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise data_error(path, f"not valid JSON ({type(err).__name__}: {str(err)[:120]})") from None


def load_split(path: str | Path, require_objects: bool = False, box_check: BoxCheck = "error") -> STASplit:
    """Parse one STA annotation file; `require_objects` makes an annotation without `objects` an error."""
    path = Path(path)
    raw = read_json(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("annotations"), list):
        raise data_error(path, "expected an object with an 'annotations' list (an fho_sta_*.json file)")
    info = raw.get("info") or {}
    if not isinstance(info, dict):
        raise data_error(path, "'info' must be an object")
    videos = _video_metadata(path, info.get("video_metadata"))
    nouns = _categories(path, raw, "noun_categories")
    verbs = _categories(path, raw, "verb_categories")
    split = STASplit(path, str(info.get("split", path.stem)), str(info.get("version", "")), [], videos, nouns, verbs)
    seen: set[str] = set()
    for i, entry in enumerate(raw["annotations"]):
        ann = _annotation(split, i, entry, require_objects, box_check)
        if ann.uid in seen:
            raise data_error(path, f"annotation {ann.uid!r} (entry {i}) appears twice")
        seen.add(ann.uid)
        split.annotations.append(ann)
    if split.num_clipped:
        done = "clipped to the frame" if box_check == "clip" else "kept as they are, as the official evaluator does"
        log.warning("%s: %d box(es) extend past their video's frame; %s", path, split.num_clipped, done)
    return split


def _video_metadata(path: Path, meta: Any) -> dict[str, VideoMeta]:
    if not isinstance(meta, dict):
        raise data_error(path, "missing 'info.video_metadata'")
    out = {}
    for uid, m in meta.items():
        try:
            out[uid] = VideoMeta(int(m["frame_width"]), int(m["frame_height"]), float(m["fps"]))
        except (KeyError, TypeError, ValueError, OverflowError):
            raise data_error(path, f"info.video_metadata[{uid!r}] needs frame_width, frame_height, fps") from None
        if not (out[uid].width > 0 and out[uid].height > 0 and 0 < out[uid].fps < math.inf):
            raise data_error(path, f"info.video_metadata[{uid!r}] has a non-positive or infinite size or fps")
    return out


def _categories(path: Path, raw: dict, key: str) -> list[str]:
    cats = raw.get(key)
    if not isinstance(cats, list) or not cats:
        raise data_error(path, f"missing the embedded '{key}' list")
    try:
        by_id = {int(c["id"]): str(c["name"]) for c in cats}
    except (KeyError, TypeError, ValueError, OverflowError):
        raise data_error(path, f"'{key}' entries need 'id' and 'name'") from None
    if sorted(by_id) != list(range(len(by_id))):
        raise data_error(path, f"'{key}' ids are not 0..{len(by_id) - 1}")
    return [by_id[i] for i in range(len(by_id))]


def _annotation(split: STASplit, i: int, entry: Any, require_objects: bool, box_check: BoxCheck) -> STAAnnotation:
    where = f"annotation {entry.get('uid')!r} (entry {i})" if isinstance(entry, dict) else f"annotation entry {i}"
    if not isinstance(entry, dict) or not isinstance(entry.get("uid"), str):
        raise data_error(split.path, f"{where}: missing a string 'uid'")
    video = entry.get("video_uid", entry.get("video_id"))  # the v1 code reads video_uid, the schema video_id
    if not isinstance(video, str):
        raise data_error(split.path, f"{where}: missing 'video_id' / 'video_uid'")
    if video not in split.videos:
        raise data_error(split.path, f"{where}: video {video!r} is not in info.video_metadata")
    frame = entry.get("frame")
    if not isinstance(frame, int) or isinstance(frame, bool) or frame < 0:
        raise data_error(split.path, f"{where}: 'frame' must be a non-negative integer, got {frame!r}")
    objects = None
    if "objects" in entry:
        if not isinstance(entry["objects"], list) or not entry["objects"]:
            raise data_error(split.path, f"{where}: 'objects' must be a non-empty list")
        objects = tuple(
            _object(split, where, j, o, split.videos[video], box_check) for j, o in enumerate(entry["objects"])
        )
    elif require_objects:
        raise data_error(split.path, f"{where}: has no 'objects' (an annotated split needs them)")
    return _entry(entry, video, frame, objects)


def _entry(entry: dict, video: str, frame: int, objects: tuple[STAObject, ...] | None) -> STAAnnotation:
    clip_uid, clip_frame = entry.get("clip_uid"), entry.get("clip_frame")
    return STAAnnotation(
        uid=entry["uid"],
        video_uid=video,
        frame=frame,
        clip_uid=clip_uid if isinstance(clip_uid, str) else None,
        clip_frame=clip_frame if isinstance(clip_frame, int) and not isinstance(clip_frame, bool) else None,
        objects=objects,
    )


def _object(split: STASplit, where: str, j: int, obj: Any, meta: VideoMeta, box_check: BoxCheck) -> STAObject:
    where = f"{where} object {j}"
    box, noun, verb, ttc = _object_fields(split.path, where, obj)
    if not all(math.isfinite(v) for v in box):
        raise data_error(split.path, f"{where}: box must be 4 finite numbers, got {obj['box']!r}")
    if not 0 <= noun < len(split.nouns):
        raise data_error(split.path, f"{where}: noun_category_id {noun!r} is not one of the {len(split.nouns)} nouns")
    if not 0 <= verb < len(split.verbs):
        raise data_error(split.path, f"{where}: verb_category_id {verb!r} is not one of the {len(split.verbs)} verbs")
    if not math.isfinite(ttc) or ttc < 0:
        raise data_error(split.path, f"{where}: time_to_contact must be a non-negative number, got {ttc!r}")
    return STAObject(_checked_box(split, where, box, meta, box_check), noun, verb, ttc)


def _object_fields(path: Path, where: str, obj: Any) -> tuple[list[float], int, int, float]:
    """(box, noun, verb, ttc) of one ground-truth object, typed as the official evaluator's numpy arrays need."""
    fields = ("box", "noun_category_id", "verb_category_id", "time_to_contact")
    if not isinstance(obj, dict) or any(k not in obj for k in fields):
        raise data_error(path, f"{where}: needs box, noun_category_id, verb_category_id, time_to_contact")
    box = obj["box"]
    if not (isinstance(box, list) and len(box) == 4 and all(is_real(v) for v in box)):
        raise data_error(path, f"{where}: box must be a list of 4 numbers, got {str(box)[:80]}")
    for key in ("noun_category_id", "verb_category_id"):  # 3.0 is 3 to numpy, and so to the official code
        value = obj[key]
        if not (is_int64(value) or (is_real(value) and float(value).is_integer() and is_int64(int(value)))):
            raise data_error(path, f"{where}: {key} must be an integer, got {str(value)[:40]}")
    if not is_real(obj["time_to_contact"]):
        raise data_error(path, f"{where}: time_to_contact must be a number, got {str(obj['time_to_contact'])[:40]}")
    return [float(v) for v in box], int(obj[fields[1]]), int(obj[fields[2]]), float(obj["time_to_contact"])


def is_real(v: Any) -> bool:
    """A JSON number that numpy reads as a float64 (bools count, as numpy counts them; NaN and inf included)."""
    if not isinstance(v, (int, float)):
        return False
    try:
        float(v)
    except OverflowError:  # an integer literal beyond float64
        return False
    return True


def is_int64(v: Any) -> bool:
    """A JSON integer numpy reads as int64 (bools count as 0/1, as they do for the official `isinstance(v, int)`)."""
    return isinstance(v, int) and -INT64 <= v < INT64


def _checked_box(split: STASplit, where: str, box: list[float], meta: VideoMeta, box_check: BoxCheck) -> tuple:
    x1, y1, x2, y2 = box
    if x2 < x1 or y2 < y1:
        raise data_error(split.path, f"{where}: box {box} has x2 < x1 or y2 < y1")
    if not _inside(box, meta):
        if box_check == "error":
            raise data_error(
                split.path,
                f"{where}: box {box} is outside the {meta.width}x{meta.height} frame "
                "(box_check='keep' scores it as the official evaluator does, 'clip' clips it)",
            )
        split.num_clipped += 1
        if box_check == "keep":
            return (x1, y1, x2, y2)
        x1, x2 = (min(max(v, 0.0), float(meta.width)) for v in (x1, x2))
        y1, y2 = (min(max(v, 0.0), float(meta.height)) for v in (y1, y2))
    return (x1, y1, x2, y2)


def _inside(box: list[float], meta: VideoMeta) -> bool:
    x1, y1, x2, y2 = box
    return x1 >= 0 and y1 >= 0 and x2 <= meta.width and y2 <= meta.height


def load_ground_truth(path: str | Path) -> STASplit:
    """An annotated split as the official evaluator reads it, for `ego4d-score`; anomalies are logged warnings.

    Only `annotations[].uid` and `objects[]` (box, noun, verb, TTC) are needed; video metadata and category lists
    are used when present to count boxes past the frame and ids outside the lists. Refused although the official
    code would run on them: a box that is not 4 numbers (it uses the first 4 of longer ones) and ids that are not
    64-bit integers (it compares floats and huge ints as Python objects); both are corrupt files, not conventions.
    """
    path = Path(path)
    raw = read_json(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("annotations"), list):
        raise data_error(path, "expected an object with an 'annotations' list (an fho_sta_*.json file)")
    info = raw.get("info") if isinstance(raw.get("info"), dict) else {}
    videos = _optional(lambda: _video_metadata(path, info.get("video_metadata")), {})
    nouns = _optional(lambda: _categories(path, raw, "noun_categories"), [])
    verbs = _optional(lambda: _categories(path, raw, "verb_categories"), [])
    if not raw["annotations"]:
        raise data_error(path, "has no annotations to score")
    split = STASplit(path, str(info.get("split", path.stem)), str(info.get("version", "")), [], videos, nouns, verbs)
    anomalies: Counter[str] = Counter()
    seen: set[str] = set()
    for i, entry in enumerate(raw["annotations"]):
        where = f"annotation {entry.get('uid')!r} (entry {i})" if isinstance(entry, dict) else f"annotation entry {i}"
        if not isinstance(entry, dict) or not isinstance(entry.get("uid"), str):
            raise data_error(path, f"{where}: missing a string 'uid'")
        objects = entry.get("objects")
        if not isinstance(objects, list) or not objects:
            raise data_error(path, f"{where}: 'objects' must be a non-empty list (an annotated split needs boxes)")
        video = entry.get("video_uid", entry.get("video_id"))
        video = video if isinstance(video, str) else ""
        objs = tuple(_scored_object(split, f"{where} object {j}", o, video, anomalies) for j, o in enumerate(objects))
        anomalies["annotation(s) repeat an earlier uid"] += entry["uid"] in seen
        seen.add(entry["uid"])
        frame = entry.get("frame")
        frame = frame if isinstance(frame, int) and not isinstance(frame, bool) else -1
        split.annotations.append(_entry(entry, video, frame, objs))
    split.num_clipped = anomalies["box(es) extend past their video's frame"]
    for what, count in anomalies.items():
        if count:
            log.warning("%s: %d %s; scored as the official evaluator scores them", path, count, what)
    return split


def _optional(read: Any, default: Any) -> Any:
    try:
        return read()
    except DataError:
        return default


def _scored_object(split: STASplit, where: str, obj: Any, video: str, anomalies: Counter) -> STAObject:
    box, noun, verb, ttc = _object_fields(split.path, where, obj)
    x1, y1, x2, y2 = box
    if not all(math.isfinite(v) for v in (*box, ttc)):
        anomalies["object(s) have a non-finite box or time_to_contact"] += 1
    elif x2 < x1 or y2 < y1:
        anomalies["box(es) have x2 < x1 or y2 < y1"] += 1
    elif video in split.videos and not _inside(box, split.videos[video]):
        anomalies["box(es) extend past their video's frame"] += 1
    if (split.nouns and not 0 <= noun < len(split.nouns)) or (split.verbs and not 0 <= verb < len(split.verbs)):
        anomalies["object(s) have a noun or verb id outside the file's category lists"] += 1
    if ttc < 0:
        anomalies["object(s) have a negative time_to_contact"] += 1
    return STAObject((x1, y1, x2, y2), noun, verb, ttc)


def load_detections(path: str | Path, split: STASplit, score_threshold: float = 0.0) -> dict[str, Boxes]:
    """Baseline detections `{uid: [{box, score, noun_category_id}]}` for every uid of `split` (verbs/TTC zero)."""
    path = Path(path)
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise data_error(path, "expected an object mapping uid -> list of detections")
    out = {}
    for ann in split.annotations:
        dets = raw.get(ann.uid)
        if not isinstance(dets, list):
            raise data_error(path, f"no detection list for uid {ann.uid!r} of {split.path.name}")
        for k, d in enumerate(dets):
            ok = isinstance(d, dict) and all(key in d for key in ("box", "score", "noun_category_id"))
            box = d.get("box") if ok else None
            ok = ok and isinstance(box, list) and len(box) == 4 and all(is_real(v) for v in box)
            ok = ok and is_real(d["score"]) and is_int64(d["noun_category_id"])
            if not ok or not all(math.isfinite(float(v)) for v in (*box, d["score"])):
                raise data_error(path, f"uid {ann.uid!r} detection {k}: needs box (4 finite numbers), score, noun id")
        boxes = np.array([d["box"] for d in dets], dtype=np.float64).reshape(-1, 4)
        scores = np.array([float(d["score"]) for d in dets], dtype=np.float64)
        nouns = np.array([int(d["noun_category_id"]) for d in dets], dtype=np.int64)
        if len(nouns) and (nouns.min() < 0 or nouns.max() >= len(split.nouns)):
            raise data_error(path, f"uid {ann.uid!r}: noun_category_id outside 0..{len(split.nouns) - 1}")
        keep = scores >= score_threshold  # the baseline's DETECTION_SCORE_THRESH (default 0: keep all)
        n = int(keep.sum())
        out[ann.uid] = Boxes(boxes[keep], nouns[keep], np.zeros(n, np.int64), np.zeros(n), scores[keep])
    return out


def clip_indices(frame: int, frames: int, stride: int) -> np.ndarray:
    """`frames` indices every `stride` frames ending at the query frame; indices before the start repeat frame 0."""
    return np.maximum(frame - stride * np.arange(frames)[::-1], 0)
