"""A seeded fuzzer for every reader of a user's file: each mutated file is accepted or refused in one line.

Formats: the Ego4D STA annotation JSON (read by `ego4d-score` and by the task), the challenge results JSON, the
baseline detections JSON, DAVIS palette PNGs (annotations, and predictions for `davis-score`), the Kinetics CSV
and `path label` list, and CATER list files and scene JSONs. A case takes a small valid fixture, mutates one file
(JSON trees: deleted keys, wrong types, NaN/inf, negative or huge numbers, truncated or duplicated lists; text:
truncation, encoding garbage, byte flips, empty files, duplicated or broken lines; PNGs: other modes, sizes,
formats and ids, truncation, a decompression bomb, a missing file or a folder in its place) and runs the reader
or scorer. The outcome is one of

- `accepted`: it returned, and what it returned passes the format's sanity check (scores in range...);
- `rejected`: a `TotoEvalError` whose message is one line naming the file (or its folder);
- `bad_error`: a `TotoEvalError` of several lines, or one that names no input file;
- `crashed`: any other exception (a traceback for the user), or an accepted result that fails the sanity check.

The default suite runs a quick sample per format; `-m slow` runs the long campaign. Counts per format:
`python tests/test_fuzz_inputs.py [cases per format] [seed]`.

Run: python -m pytest tests/test_fuzz_inputs.py -q          (quick sample)
     python -m pytest tests/test_fuzz_inputs.py -q -m slow  (long run)
"""

from __future__ import annotations

import copy
import io
import json
import logging
import math
import shutil
import struct
import sys
import tempfile
import traceback
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toto_eval.common.errors import TotoEvalError

DAVIS_TREE = Path(__file__).parent / "assets" / "davis" / "tree"
DAVIS_SEQUENCES = ["void-ids", "vanish", "border"]  # small ones: a case scores in milliseconds


# --- mutations of a JSON tree --------------------------------------------------------------------------------------

JUNK = [None, True, False, 0, -1, 1, 2.5, -0.0, 1e308, -1e308, 10**30, -(10**30), math.nan, math.inf, -math.inf,
        "", "x", "0", "1.0", "\u00ff\u0000", "\u0663", [], [1, 2, 3, 4], [0.5] * 5, {}, {"a": 1}]  # fmt: skip


def _nodes(obj, path=()):
    yield path
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _nodes(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _nodes(v, (*path, i))


def _parent(obj, path):
    for key in path[:-1]:
        obj = obj[key]
    return obj


def _number_variants(v) -> list:
    out = [-v, v * 1e9, v + 0.5, math.nan, math.inf, -1, 0, 10**30, 1e-300]
    out.append(float(v) if isinstance(v, int) else int(v) if math.isfinite(v) else 0)
    return out


def _tree_op(obj, rng: np.random.Generator) -> tuple[object, str]:
    paths = list(_nodes(obj))
    path = paths[int(rng.integers(len(paths)))]
    node = _parent(obj, path)[path[-1]] if path else obj
    op = str(rng.choice(["junk", "number", "delete", "duplicate", "truncate", "empty", "wrap", "add_key"]))
    if op == "number" and isinstance(node, (int, float)) and not isinstance(node, bool):
        new = _number_variants(node)[int(rng.integers(10))]
    elif op == "delete" and path:
        parent = _parent(obj, path)
        del parent[path[-1]]
        return obj, f"delete {path}"
    elif op == "duplicate" and path and isinstance(_parent(obj, path), list):
        _parent(obj, path).insert(path[-1], copy.deepcopy(node))
        return obj, f"duplicate {path}"
    elif op == "truncate" and isinstance(node, list):
        new = node[: int(rng.integers(len(node) + 1))]
    elif op == "empty" and isinstance(node, (list, dict, str)):
        new = type(node)()
    elif op == "wrap":
        new = [node]
    elif op == "add_key" and isinstance(node, dict):
        node["junk"] = JUNK[int(rng.integers(len(JUNK)))]
        return obj, f"add_key {path}"
    else:
        op, new = "junk", copy.deepcopy(JUNK[int(rng.integers(len(JUNK)))])
    if not path:
        return new, f"{op} root"
    _parent(obj, path)[path[-1]] = new
    return obj, f"{op} {path} -> {str(new)[:40]}"


def mutate_json(raw: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    if rng.random() < 0.25:
        return mutate_bytes(raw, rng)
    obj, done = json.loads(raw), []
    for _ in range(int(rng.integers(1, 4))):
        obj, what = _tree_op(obj, rng)
        done.append(what)
    return json.dumps(obj).encode(), "; ".join(done)


# --- mutations of bytes and of text lines ------------------------------------------------------------------------

FIELD_JUNK = ["", " ", "-1", "1e999", "nan", "inf", "\u0663", "\u00b2", "9" * 25, "1.5", "0x10", '"', '""', "a,b",
              "\t", "\x00", "\u00e9", "../../x.mp4", "/abs/x.mp4", "label with spaces", "36", "35", "0"]  # fmt: skip


def mutate_bytes(raw: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    op = str(rng.choice(["truncate", "empty", "flip", "invalid_utf8", "bom", "nul", "garbage", "twice", "crlf"]))
    pos = int(rng.integers(len(raw) + 1))
    if op == "truncate":
        return raw[:pos], f"truncate at {pos}"
    if op == "empty":
        return b"", "empty"
    if op == "flip":
        data = bytearray(raw)
        for _ in range(int(rng.integers(1, 5))):
            if data:
                data[int(rng.integers(len(data)))] = int(rng.integers(256))
        return bytes(data), "flip bytes"
    if op == "invalid_utf8":
        return raw[:pos] + b"\xff\xfe\xc3" + raw[pos:], f"invalid utf-8 at {pos}"
    if op == "bom":
        return b"\xef\xbb\xbf" + raw, "utf-8 bom"
    if op == "nul":
        return raw[:pos] + b"\x00" + raw[pos:], f"nul at {pos}"
    if op == "garbage":
        return rng.integers(0, 256, 64, dtype=np.uint8).tobytes(), "random bytes"
    if op == "twice":
        return raw + raw, "content twice"
    return raw.replace(b"\n", b"\r\n"), "crlf"


def mutate_lines(raw: bytes, rng: np.random.Generator, sep: str) -> tuple[bytes, str]:
    if rng.random() < 0.3:
        return mutate_bytes(raw, rng)
    lines = raw.decode().splitlines()
    i = int(rng.integers(len(lines)))
    fields = lines[i].split(sep) if sep != " " else lines[i].split()
    op = str(rng.choice(["delete", "duplicate", "cut", "junk_field", "add_field", "drop_field", "blank", "swap",
                         "long", "delimiter"]))  # fmt: skip
    junk = FIELD_JUNK[int(rng.integers(len(FIELD_JUNK)))]
    if op == "delete":
        del lines[i]
    elif op == "duplicate":
        lines.insert(i, lines[i])
    elif op == "cut":
        lines[i] = lines[i][: int(rng.integers(len(lines[i]) + 1))]
    elif op in ("junk_field", "add_field", "drop_field", "swap"):
        j = int(rng.integers(len(fields)))
        if op == "junk_field":
            fields[j] = junk
        elif op == "add_field":
            fields.insert(j, junk)
        elif op == "drop_field":
            del fields[j]
        else:
            fields.reverse()
        lines[i] = sep.join(fields)
    elif op == "blank":
        lines.insert(i, str(rng.choice(["", "   ", "\t"])))
    elif op == "long":
        lines[i] = lines[i] + "x" * 20000
    else:
        lines[i] = lines[i].replace(sep, "\t" if sep != "\t" else ",")
    return ("\n".join(lines) + "\n").encode(), f"{op} line {i + 1} ({junk!r})"


# --- mutations of a palette PNG -----------------------------------------------------------------------------------

MISSING, FOLDER = "missing", "folder"


def _png(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _palette(labels: np.ndarray) -> Image.Image:
    from toto_eval.tasks.davis.data import voc_palette

    img = Image.fromarray(labels.astype(np.uint8), mode="P")
    img.putpalette(voc_palette())
    return img


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bomb() -> bytes:
    """A valid-looking PNG whose header claims 100000 x 100000 pixels (PIL refuses it as a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0)
    body = _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def mutate_png(raw: bytes, rng: np.random.Generator) -> tuple[bytes | str, str]:
    labels = np.array(Image.open(io.BytesIO(raw)))
    w = labels.shape[1]
    k = int(labels[labels != 255].max(initial=0))
    ops = {
        "rgb": lambda: _png(_palette(labels).convert("RGB")),
        "rgba": lambda: _png(_palette(labels).convert("RGBA")),
        "la": lambda: _png(Image.fromarray(labels).convert("LA")),
        "grey_L": lambda: _png(Image.fromarray(labels, mode="L")),
        "bilevel_1": lambda: _png(Image.fromarray(labels > 0)),
        "uint16": lambda: _png(Image.fromarray(labels.astype(np.uint16))),
        "uint16_over_255": lambda: _png(Image.fromarray((labels + 256 * (labels > 0)).astype(np.uint16))),
        "int32_tiff": lambda: _png(Image.fromarray(labels.astype(np.int32)), "TIFF"),
        "float_tiff": lambda: _png(Image.fromarray(labels.astype(np.float32)), "TIFF"),
        "float_tiff_fraction": lambda: _png(Image.fromarray(labels.astype(np.float32) + 0.5), "TIFF"),
        "gif": lambda: _png(_palette(labels), "GIF"),
        "bmp": lambda: _png(_palette(labels), "BMP"),
        "jpeg": lambda: _png(Image.fromarray(labels, mode="L"), "JPEG"),
        "id_k_plus_1": lambda: _png(_palette(np.where(labels == labels.flat[0], k + 1, labels))),
        "id_255": lambda: _png(_palette(np.where(np.arange(w)[None, :] < w // 3, 255, labels))),
        "all_zero": lambda: _png(_palette(np.zeros_like(labels))),
        "one_row_less": lambda: _png(_palette(labels[:-1])),
        "one_col_more": lambda: _png(_palette(np.pad(labels, ((0, 0), (0, 1))))),
        "transposed": lambda: _png(_palette(labels.T.copy())),
        "one_pixel": lambda: _png(_palette(labels[:1, :1])),
        "truncated": lambda: raw[: int(rng.integers(8, len(raw)))],
        "flipped_bytes": lambda: mutate_bytes(raw, rng)[0],
        "not_an_image": lambda: b"hello, I am a text file\n",
        "empty": lambda: b"",
        "bomb": _bomb,
        "missing": lambda: MISSING,
        "folder": lambda: FOLDER,
    }
    name = str(rng.choice(list(ops)))
    return ops[name](), name


# --- the formats ----------------------------------------------------------------------------------------------------


@dataclass
class Format:
    """A valid fixture, the files a case may mutate, how to mutate them, and the reader that must cope."""

    name: str
    files: list[Path]
    mutate: Callable[[bytes, np.random.Generator], tuple[bytes | str, str]]
    run: Callable[[], object]
    check: Callable[[object], None] = lambda out: None
    names: list[str] = field(default_factory=list)  # strings an error message may use to name the input


def _ego4d_files(root: Path) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(0)
    videos = {"vid_a": (160, 120), "vid_b": (320, 240)}
    annotations, results, detections = [], {}, {}
    for i in range(6):
        video = "vid_a" if i < 4 else "vid_b"
        width, height = videos[video]
        objects = []
        for _ in range(int(rng.integers(1, 4))):
            x, y = rng.uniform(0, width - 40), rng.uniform(0, height - 40)
            box = [x, y, x + rng.uniform(5, 40), y + rng.uniform(5, 40)]
            noun, verb, ttc = int(rng.integers(4)), int(rng.integers(3)), float(rng.uniform(0.2, 2))
            objects.append({"box": box, "noun_category_id": noun, "verb_category_id": verb, "time_to_contact": ttc})
        uid = f"{video}_{30 * i + 7}"
        annotations.append({"uid": uid, "video_id": video, "frame": 30 * i + 7, "clip_uid": f"clip_{i}",
                            "clip_frame": 30 * i + 7, "objects": objects})  # fmt: skip
        preds, dets = [], []
        for o in objects + objects[:1]:
            box = [v + rng.normal(0, 3) for v in o["box"]]
            preds.append({"box": box, "noun_category_id": o["noun_category_id"],
                          "verb_category_id": int(rng.integers(3)), "time_to_contact": float(rng.uniform(0.2, 2)),
                          "score": float(rng.random())})  # fmt: skip
            dets.append({"box": box, "score": float(rng.random()), "noun_category_id": o["noun_category_id"]})
        results[uid], detections[uid] = preds, dets
    ann = {
        "info": {"version": "v1", "split": "val", "video_metadata": {
            v: {"frame_width": w, "frame_height": h, "fps": 30.0} for v, (w, h) in videos.items()}},
        "noun_categories": [{"id": i, "name": n} for i, n in enumerate(["cup", "knife", "door", "pan"])],
        "verb_categories": [{"id": i, "name": n} for i, n in enumerate(["take", "open", "cut"])],
        "annotations": annotations,
    }  # fmt: skip
    challenge = {"version": "1.0", "challenge": "ego4d_short_term_object_interaction_anticipation", "results": results}
    paths = root / "fho_sta_val.json", root / "results.json", root / "object_detections.json"
    for path, obj in zip(paths, (ann, challenge, detections), strict=True):
        path.write_text(json.dumps(obj))
    return paths


def _check_sta(metrics: dict) -> None:
    for key in ("noun", "noun_verb", "noun_ttc", "overall"):
        assert math.isnan(metrics[key]) or 0.0 <= metrics[key] <= 100.0, (key, metrics[key])


def ego4d_formats(root: Path) -> list[Format]:
    from toto_eval.tasks.ego4d_sta.data import load_detections, load_split
    from toto_eval.tasks.ego4d_sta.score_cli import score_files

    ann, res, det = _ego4d_files(root)
    names = [ann.name, res.name, det.name]

    def task_reader():
        split = load_split(ann, require_objects=True)
        return [split.ground_truth(a) for a in split.annotations]

    def detections():
        return load_detections(det, load_split(ann, require_objects=True))

    return [
        Format("ego4d_annotations", [ann], mutate_json, lambda: score_files(ann, res), _check_sta, names),
        Format("ego4d_annotations_task", [ann], mutate_json, task_reader, names=names),
        Format("ego4d_predictions", [res], mutate_json, lambda: score_files(ann, res), _check_sta, names),
        Format("ego4d_detections", [det], mutate_json, detections, names=names),
    ]


def _check_davis(scores) -> None:
    row = scores.global_row()
    for key, value in row.items():
        low = -1.0 if key.endswith("Decay") else 0.0
        assert low <= value <= 1.0, (key, value)


def davis_formats(root: Path) -> list[Format]:
    from toto_eval.tasks.davis.scoring import score_folder

    shutil.copytree(DAVIS_TREE, root / "tree")
    davis, preds = root / "tree" / "DAVIS", root / "tree" / "predictions"

    def run():
        return score_folder(davis, preds, sequences=DAVIS_SEQUENCES)

    gt = [p for s in DAVIS_SEQUENCES for p in sorted((davis / "Annotations" / "480p" / s).glob("*.png"))]
    pred = [p for s in DAVIS_SEQUENCES for p in sorted((preds / s).glob("*.png"))[1:-1]]  # the scored frames
    return [
        Format("davis_annotations", gt, mutate_png, run, _check_davis, [str(davis), str(preds)]),
        Format("davis_predictions", pred, mutate_png, run, _check_davis, [str(davis), str(preds)]),
    ]


K400_CSV = """label,youtube_id,time_start,time_end,split,is_cc
"air drumming",aaaaaaaaaaa,10,20,train,0
abseiling,bbbbbbbbbbb,0,10,train,0
"air drumming",ccccccccccc,5,15,train,1
"making a cake, with icing",ddddddddddd,100,110,train,0
"""
K400_LIST = "train/a.mp4 0\ntrain/b c.mp4 3\n/data/k400/train/d.mp4 1\ntrain/e.mp4 3\n"


def _check_k400(out) -> None:
    entries, classes, split = out
    assert len(split.paths) + len(split.missing) == len(entries) and len(split.labels) == len(split.paths)
    assert all(0 <= label < len(classes) for label in split.labels)


def k400_formats(root: Path) -> list[Format]:
    from toto_eval.tasks.k400.data import build_split, class_names, read_entries

    (root / "annotations").mkdir(parents=True)
    csv_path, list_path = root / "annotations" / "train.csv", root / "train.txt"
    csv_path.write_text(K400_CSV)
    list_path.write_text(K400_LIST)
    (root / "train").mkdir()
    (root / "train" / "aaaaaaaaaaa_000010_000020.mp4").write_bytes(b"")
    (root / "train" / "a.mp4").write_bytes(b"")

    def read(path: Path):
        entries = read_entries(path, root, "train")
        classes = class_names(entries)
        return entries, classes, build_split(entries, classes, path)

    return [
        Format("k400_csv", [csv_path], lambda r, g: mutate_lines(r, g, ","), lambda: read(csv_path), _check_k400,
               [csv_path.name]),
        Format("k400_list", [list_path], lambda r, g: mutate_lines(r, g, " "), lambda: read(list_path), _check_k400,
               [list_path.name]),
    ]  # fmt: skip


def cater_formats(root: Path) -> list[Format]:
    from toto_eval.tasks.cater.data import read_list

    variant = root / "all_actions"
    (variant / "videos").mkdir(parents=True)
    (variant / "scenes").mkdir()
    (variant / "lists" / "localize").mkdir(parents=True)
    for i in range(4):
        (variant / "videos" / f"CATER_new_{i:06d}.avi").write_bytes(b"")
    movements = {"Spl_0": [["_slide", None, 0, 30]], "Cone_0": [["_contain", "Spl_0", 40, 70]],
                 "Cone_1": [["_pick_place", None, 80, 110]]}  # fmt: skip
    (variant / "scenes" / "CATER_new_000000.json").write_text(json.dumps({"movements": movements}))
    (variant / "scenes" / "CATER_new_000001.json").write_text(json.dumps({"snitch": {"final_state": "visible"}}))
    list_path = variant / "lists" / "localize" / "train.txt"
    list_path.write_text("CATER_new_000000.avi 5\nvideos/CATER_new_000001.avi 35\n/x/CATER_new_000002.avi 0\n")

    def check(entries) -> None:
        assert entries and all(0 <= e.label < 36 for e in entries)

    scenes = sorted((variant / "scenes").glob("*.json"))
    names = [list_path.name, "scenes"]
    return [
        Format("cater_list", [list_path], lambda r, g: mutate_lines(r, g, " "), lambda: read_list(list_path, variant),
               check, names),
        Format("cater_scene", scenes, mutate_json, lambda: read_list(list_path, variant), check, names),
    ]  # fmt: skip


BUILDERS = (ego4d_formats, davis_formats, k400_formats, cater_formats)


# --- the campaign ---------------------------------------------------------------------------------------------------


def _apply(path: Path, mutated: bytes | str) -> None:
    if mutated == MISSING:
        path.unlink()
    elif mutated == FOLDER:
        path.unlink()
        path.mkdir()
    else:
        path.write_bytes(mutated)


def _restore(path: Path, original: bytes) -> None:
    if path.is_dir():
        path.rmdir()
    path.write_bytes(original)


def outcome(fmt: Format) -> tuple[str, str]:
    """Run the format's reader once: (accepted | rejected | bad_error | crashed, detail)."""
    try:
        out = fmt.run()
    except TotoEvalError as err:
        message = str(err)
        if "\n" in message or not any(name in message for name in fmt.names):
            return "bad_error", message[:300]
        return "rejected", message[:300]
    except Exception as err:  # the point of the fuzzer: anything else is a traceback the user would see
        frame = traceback.extract_tb(err.__traceback__)[-1]
        return "crashed", f"{type(err).__name__}: {str(err)[:150]} at {Path(frame.filename).name}:{frame.lineno}"
    try:
        fmt.check(out)
    except AssertionError as err:
        return "crashed", f"accepted but insane: {err}"
    return "accepted", ""


def campaign(fmt: Format, n: int, seed: int) -> tuple[Counter, list[tuple[str, str, str]]]:
    """`n` seeded cases of one format: outcome counts, and (mutation, outcome, detail) of every case."""
    rng = np.random.default_rng([seed, zlib.crc32(fmt.name.encode())])
    counts, log = Counter(), []
    assert outcome(fmt)[0] == "accepted", f"{fmt.name}: the unmutated fixture must be accepted"
    for _ in range(n):
        path = fmt.files[int(rng.integers(len(fmt.files)))]
        original = path.read_bytes()
        mutated, what = fmt.mutate(original, rng)
        _apply(path, mutated)
        try:
            result, detail = outcome(fmt)
        finally:
            _restore(path, original)
        counts[result] += 1
        log.append((f"{path.name}: {what}", result, detail))
    return counts, log


def all_formats(root: Path) -> list[Format]:
    out = []
    for i, builder in enumerate(BUILDERS):
        (root / str(i)).mkdir(parents=True, exist_ok=True)
        out += builder(root / str(i))
    return out


def _run_all(root: Path, n: int, seed: int) -> dict[str, tuple[Counter, list]]:
    logging.getLogger("toto_eval").setLevel(logging.ERROR)  # accepted-with-warning cases would flood the output
    try:
        return {fmt.name: campaign(fmt, n, seed) for fmt in all_formats(root)}
    finally:
        logging.getLogger("toto_eval").setLevel(logging.NOTSET)


def _failures(results: dict) -> list[str]:
    return [f"{name}: {what} -> {res}: {detail}" for name, (_, log) in results.items()
            for what, res, detail in log if res in ("crashed", "bad_error")]  # fmt: skip


def test_quick_seeded_sample_never_crashes(tmp_path):
    results = _run_all(tmp_path, n=12, seed=0)
    assert set(results) == {"ego4d_annotations", "ego4d_annotations_task", "ego4d_predictions", "ego4d_detections",
                            "davis_annotations", "davis_predictions", "k400_csv", "k400_list", "cater_list",
                            "cater_scene"}  # fmt: skip
    failures = _failures(results)
    assert not failures, "\n".join(failures[:20])
    assert all(c["rejected"] > 0 or c["accepted"] > 0 for c, _ in results.values())


@pytest.mark.slow
def test_long_campaign_never_crashes(tmp_path):
    results = _run_all(tmp_path, n=400, seed=1)
    for name, (counts, _) in results.items():
        print(f"{name}: {dict(counts)}")
    failures = _failures(results)
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:40])


if __name__ == "__main__":
    cases = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    with tempfile.TemporaryDirectory(prefix="toto-fuzz-") as tmp:
        results = _run_all(Path(tmp), cases, seed)
    print(f"{'format':<24}{'tried':>7}{'accepted':>10}{'rejected':>10}{'bad_error':>11}{'crashed':>9}")
    for name, (c, _) in results.items():
        tried = sum(c.values())
        print(f"{name:<24}{tried:>7}{c['accepted']:>10}{c['rejected']:>10}{c['bad_error']:>11}{c['crashed']:>9}")
    for line in _failures(results):
        print(line)
