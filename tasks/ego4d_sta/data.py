"""Readers for the official Ego4D STA files: `fho_sta_{train,val,test_unannotated}.json`, detections, frames.

The schema is the one the Ego4D docs publish: `info.video_metadata[video_uid]` gives frame size and fps,
`annotations[]` one query frame each (`uid`, `video_id` or `video_uid`, `frame`, `clip_uid`, `clip_frame`, and
`objects[]` with `box` [x1, y1, x2, y2] pixels, `noun_category_id`, `verb_category_id`, `time_to_contact` seconds),
and the noun and verb lists are embedded in every file, so class counts are read from the file, never hard-coded
(v1: 87 nouns / 74 verbs; v2: about 128 / 81). Detections use the baseline's `object_detections.json` format,
`{uid: [{box, score, noun_category_id}]}`. Frames come from the canonical videos (`<videos>/<video_uid>.mp4`) or
from pre-extracted images (a filename template such as the baseline's `{video_uid}_{frame:07d}.jpg`).

Everything malformed is a `DataError` naming the file and the entry; nothing is silently skipped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from toto_eval.common.errors import data_error

from .metrics import Boxes

BoxCheck = Literal["error", "clip"]


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
    num_clipped: int = 0  # boxes clipped to the frame under box_check="clip"

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
    path = Path(path)
    if not path.is_file():
        raise data_error(path, "file not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise data_error(path, f"not valid JSON ({err})") from None


def load_split(path: str | Path, require_objects: bool = False, box_check: BoxCheck = "error") -> STASplit:
    """Parse one STA annotation file; `require_objects` makes an annotation without `objects` an error."""
    path = Path(path)
    raw = read_json(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("annotations"), list):
        raise data_error(path, "expected an object with an 'annotations' list (an fho_sta_*.json file)")
    info = raw.get("info") or {}
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
    return split


def _video_metadata(path: Path, meta: Any) -> dict[str, VideoMeta]:
    if not isinstance(meta, dict):
        raise data_error(path, "missing 'info.video_metadata'")
    out = {}
    for uid, m in meta.items():
        try:
            out[uid] = VideoMeta(int(m["frame_width"]), int(m["frame_height"]), float(m["fps"]))
        except (KeyError, TypeError, ValueError):
            raise data_error(path, f"info.video_metadata[{uid!r}] needs frame_width, frame_height, fps") from None
        if out[uid].width <= 0 or out[uid].height <= 0 or out[uid].fps <= 0:
            raise data_error(path, f"info.video_metadata[{uid!r}] has a non-positive size or fps")
    return out


def _categories(path: Path, raw: dict, key: str) -> list[str]:
    cats = raw.get(key)
    if not isinstance(cats, list) or not cats:
        raise data_error(path, f"missing the embedded '{key}' list")
    try:
        by_id = {int(c["id"]): str(c["name"]) for c in cats}
    except (KeyError, TypeError, ValueError):
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
    clip_frame = entry.get("clip_frame")
    return STAAnnotation(
        uid=entry["uid"],
        video_uid=video,
        frame=frame,
        clip_uid=entry.get("clip_uid"),
        clip_frame=clip_frame if isinstance(clip_frame, int) else None,
        objects=objects,
    )


def _object(split: STASplit, where: str, j: int, obj: Any, meta: VideoMeta, box_check: BoxCheck) -> STAObject:
    where = f"{where} object {j}"
    try:
        box = [float(v) for v in obj["box"]]
        noun, verb, ttc = obj["noun_category_id"], obj["verb_category_id"], float(obj["time_to_contact"])
    except (KeyError, TypeError, ValueError):
        raise data_error(
            split.path, f"{where}: needs box, noun_category_id, verb_category_id, time_to_contact"
        ) from None
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise data_error(split.path, f"{where}: box must be 4 finite numbers, got {obj['box']!r}")
    if not (isinstance(noun, int) and 0 <= noun < len(split.nouns)):
        raise data_error(split.path, f"{where}: noun_category_id {noun!r} is not one of the {len(split.nouns)} nouns")
    if not (isinstance(verb, int) and 0 <= verb < len(split.verbs)):
        raise data_error(split.path, f"{where}: verb_category_id {verb!r} is not one of the {len(split.verbs)} verbs")
    if not math.isfinite(ttc) or ttc < 0:
        raise data_error(split.path, f"{where}: time_to_contact must be a non-negative number, got {ttc!r}")
    return STAObject(_checked_box(split, where, box, meta, box_check), noun, verb, ttc)


def _checked_box(split: STASplit, where: str, box: list[float], meta: VideoMeta, box_check: BoxCheck) -> tuple:
    x1, y1, x2, y2 = box
    if x2 < x1 or y2 < y1:
        raise data_error(split.path, f"{where}: box {box} has x2 < x1 or y2 < y1")
    inside = x1 >= 0 and y1 >= 0 and x2 <= meta.width and y2 <= meta.height
    if not inside:
        if box_check == "error":
            raise data_error(split.path, f"{where}: box {box} is outside the {meta.width}x{meta.height} frame")
        split.num_clipped += 1
        x1, x2 = (min(max(v, 0.0), float(meta.width)) for v in (x1, x2))
        y1, y2 = (min(max(v, 0.0), float(meta.height)) for v in (y1, y2))
    return (x1, y1, x2, y2)


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
        try:
            boxes = np.array([d["box"] for d in dets], dtype=np.float64).reshape(-1, 4)
            scores = np.array([float(d["score"]) for d in dets], dtype=np.float64)
            nouns = np.array([int(d["noun_category_id"]) for d in dets], dtype=np.int64)
        except (KeyError, TypeError, ValueError):
            raise data_error(path, f"uid {ann.uid!r}: each detection needs box[4], score, noun_category_id") from None
        if len(nouns) and (nouns.min() < 0 or nouns.max() >= len(split.nouns)):
            raise data_error(path, f"uid {ann.uid!r}: noun_category_id outside 0..{len(split.nouns) - 1}")
        keep = scores >= score_threshold  # the baseline's DETECTION_SCORE_THRESH (default 0: keep all)
        n = int(keep.sum())
        out[ann.uid] = Boxes(boxes[keep], nouns[keep], np.zeros(n, np.int64), np.zeros(n), scores[keep])
    return out


def clip_indices(frame: int, frames: int, stride: int) -> np.ndarray:
    """`frames` indices every `stride` frames ending at the query frame; indices before the start repeat frame 0."""
    return np.maximum(frame - stride * np.arange(frames)[::-1], 0)
