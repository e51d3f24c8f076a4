"""Reader and writer for the official DAVIS-2017 on-disk layout.

```
<root>/ImageSets/2017/{train,val}.txt        one sequence name per line
<root>/JPEGImages/480p/<seq>/00000.jpg ...   frames, numbered from 0 without gaps
<root>/Annotations/480p/<seq>/00000.png ...  palette PNGs: 0 background, 1..K objects, 255 void
```

The same code reads the real dataset, the generated mini DAVIS and a folder of predictions (laid out like
`Annotations/480p`), so every check a user can trip (a missing frame, an RGB annotation, a listed sequence that
is absent) raises one `DataError` line that names the file. Label images are read as davis2017-evaluation reads
them, `np.array(Image.open(path))`: any single-channel image whose values are whole numbers 0..255 is accepted
(palette, grayscale, bilevel, 16- or 32-bit, float), whatever its format; colour images, fractional values and
ids above 255 (which no uint8 DAVIS mask can hold) are refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from toto_eval.common.errors import data_error

log = logging.getLogger(__name__)


def voc_palette() -> list[int]:
    """The PASCAL-VOC colour map DAVIS uses (1 = (128,0,0), 2 = (0,128,0), ...), flattened for `putpalette`."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    return palette


_PALETTE = voc_palette()


@dataclass(frozen=True)
class Sequence:
    """One video: its frame files and (where present) the annotation file of each frame."""

    name: str
    frames: tuple[Path, ...]
    annotations: tuple[Path, ...]  # same length as frames; a path that does not exist is an unannotated frame

    @property
    def frame_names(self) -> list[str]:
        return [p.stem for p in self.frames]

    def __len__(self) -> int:
        return len(self.frames)


def read_sequence_list(root: Path, split: str) -> list[str]:
    """The names listed in `ImageSets/2017/<split>.txt`, in file order."""
    path = Path(root) / "ImageSets" / "2017" / f"{split}.txt"
    if not path.is_file():
        raise data_error(path, f"split file not found (is {root} a DAVIS-2017 root?)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (UnicodeDecodeError, OSError) as err:
        raise data_error(path, f"unreadable split file ({type(err).__name__}: {str(err)[:100]})") from None
    names = [line.strip() for line in lines if line.strip()]
    if not names:
        raise data_error(path, "lists no sequences")
    unique = list(dict.fromkeys(names))  # the official evaluator keeps a dict of sequences: a repeat counts once
    if len(unique) != len(names):
        log.warning("%s: %d repeated sequence name(s); each sequence is scored once", path, len(names) - len(unique))
    return unique


def _numbered(folder: Path, suffix: str) -> list[Path]:
    # DAVIS frames are 00000, 00001, ...: a gap is a missing file, reported by the name it should have had.
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == suffix and not p.name.startswith("."))
    for i, path in enumerate(files):
        if path.stem != f"{i:05d}":
            expected = folder / f"{i:05d}{suffix}"
            raise data_error(expected, f"missing (found {path.name} instead; frames must be numbered without gaps)")
    return files


def load_sequence(root: Path, name: str, resolution: str = "480p") -> Sequence:
    """The frames and annotation paths of sequence `name`; the first frame must be annotated."""
    frames_dir = Path(root) / "JPEGImages" / resolution / name
    annotations_dir = Path(root) / "Annotations" / resolution / name
    if not frames_dir.is_dir():
        raise data_error(frames_dir, "sequence listed in ImageSets but its frame folder does not exist")
    frames = _numbered(frames_dir, ".jpg")
    if not frames:
        raise data_error(frames_dir, "no .jpg frames")
    annotations = tuple(annotations_dir / f"{p.stem}.png" for p in frames)
    if not annotations[0].is_file():
        raise data_error(annotations[0], "first-frame annotation not found")
    return Sequence(name, tuple(frames), annotations)


def read_frame(path: Path) -> np.ndarray:
    """`(H, W, 3)` uint8 RGB."""
    try:
        with Image.open(path) as img:
            return np.array(img.convert("RGB"))
    except FileNotFoundError:
        raise data_error(path, "frame not found") from None
    except OSError as err:
        raise data_error(path, f"unreadable image ({err})") from None


def read_labels(path: Path, what: str = "annotation") -> np.ndarray:
    """`(H, W)` uint8 ids of a single-channel image with whole values 0..255 (see the module docstring)."""
    try:
        with Image.open(path) as img:
            mode, ids = img.mode, np.array(img)
    except FileNotFoundError:
        raise data_error(path, f"{what} not found") from None
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, zlib/struct errors, bomb errors...
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise data_error(path, f"unreadable {what} ({type(err).__name__}: {first[:150]})") from None
    if ids.ndim != 2:
        raise data_error(
            path, f"{what} is a mode-{mode} image; DAVIS {what}s are single-channel (palette) PNGs of object ids"
        )
    if ids.dtype.kind == "f" and not np.all(np.isfinite(ids) & (ids == np.round(ids))):
        raise data_error(path, f"{what} is a mode-{mode} image with fractional values; object ids are whole numbers")
    if ids.size and (ids.min() < 0 or ids.max() > 255):
        raise data_error(path, f"{what} holds id {ids.max() if ids.max() > 255 else ids.min()}; DAVIS ids are 0..255")
    return ids.astype(np.uint8)


def read_annotations(sequence: Sequence) -> np.ndarray:
    """`(N, H, W)` uint8 GT of every frame (scoring needs them all); all frames must share one size."""
    stack = [read_labels(p) for p in sequence.annotations]
    for path, labels in zip(sequence.annotations, stack, strict=True):
        if labels.shape != stack[0].shape:
            raise data_error(path, f"size {labels.shape[::-1]} differs from the first frame's {stack[0].shape[::-1]}")
    return np.stack(stack)


def write_labels(path: Path, labels: np.ndarray) -> None:
    """Save `(H, W)` ids as a VOC-palette PNG, the form the official evaluator reads."""
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    img = Image.frombytes("P", (labels.shape[1], labels.shape[0]), labels.tobytes())
    img.putpalette(_PALETTE)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
