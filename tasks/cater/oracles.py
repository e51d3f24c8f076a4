"""Information-limited reference predictors on the simulated state: how hard is the generated task?

They read the ground-truth scene, but only what a viewer of the sampled frames could see: which objects are
uncovered in each frame and where they are (object identity is assumed visible: every object has its own
shape/colour/size). They are the cheap stand-in for probes in the difficulty guardrails:

- `last_frame_guess` sees only the last frame. A visible snitch gives its cell; a covered one can only be under
  one of the uncovered cones, and the guess is uniform among them, so its expected accuracy is exact (1/k).
- `clip_tracker` sees the sampled frames in order. It follows the snitch; when the snitch disappears it
  follows the nearest uncovered cone, and when that cone is covered in turn, the cone that covered it.

If the last-frame guess gets close to the tracker on the hidden cases, the generator stopped measuring object
permanence (too few cones, snitch rarely covered, covers that never move).
"""

from __future__ import annotations

import numpy as np

from .generator import Scene, grid_label


def _cell(scene: Scene, f: int, k: int) -> int:
    x, y, _ = scene.positions[f, k]
    return grid_label(float(x), float(y))


def _uncovered_cones(scene: Scene, f: int) -> list[int]:
    return [k for k, o in enumerate(scene.objects) if o.shape == "cone" and scene.container[f, k] < 0]


def last_frame_guess(scene: Scene) -> tuple[float, bool]:
    """(expected top-1 of the best-informed last-frame guesser, snitch hidden at the end)."""
    last = scene.num_frames - 1
    label = _cell(scene, last, 0)
    if scene.container[last, 0] < 0:
        return 1.0, False
    cones = _uncovered_cones(scene, last)
    return float(np.mean([_cell(scene, last, k) == label for k in cones])), True


def clip_tracker(scene: Scene, frames: np.ndarray) -> int:
    """The predicted cell after tracking through the (sorted) sampled `frames`, the last frame included."""
    chain: list[int] = []  # the cones the snitch went under, innermost first
    seen = scene.positions[frames[0], 0, :2]  # where the outermost known carrier was last seen
    for f in frames:
        if scene.container[f, 0] < 0:
            chain = []
        else:
            # The innermost carrier seen uncovered again means every cone above it was lifted away.
            shown = [i for i, k in enumerate(chain) if scene.container[f, k] < 0]
            if shown:
                chain = chain[: shown[0] + 1]
            else:  # the snitch, or its outermost cone, went under a new cone: the nearest uncovered one
                cones = _uncovered_cones(scene, f)
                chain.append(min(cones, key=lambda k: float(np.linalg.norm(scene.positions[f, k, :2] - seen))))
        seen = scene.positions[f, chain[-1] if chain else 0, :2]
    return _cell(scene, frames[-1], chain[-1] if chain else 0)
