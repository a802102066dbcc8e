"""MDM's ``results.npy`` (what its ``sample/generate.py`` writes): every generated sample as a motion. numpy only.

The file is ``np.save`` of a dict — a pickle behind an ``.npy`` header — so it is read by the restricted
unpickler (numbers, text, lists, dicts and numpy arrays only; never ``np.load(allow_pickle=True)``). Its fields:
``motion (samples, 22 | 24, 3, frames)`` joint positions in metres, Y up (HumanML3D's 22 joints; SMPL's 24 for
action-to-motion), ``lengths`` (each sample's frames), ``text`` (each sample's prompt or action),
``num_samples`` and ``num_repetitions`` (samples are ordered repetition by repetition). Each sample becomes a
clip of its length, named by its text, at 20 fps (HumanML3D's), the way joint-position files are
(:func:`~mtvcrafter.motion.joint_positions.motion_from_joint_positions`).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from .amass import describe_value
from .errors import MotionError
from .joint_positions import BODY_JOINTS, NpyHeader, motion_from_joint_positions, read_npy_header
from .motion import Motion
from .npz_archive import list_names
from .safe_pickle import safe_load_pickle
from .skeleton import NUM_JOINTS

#: Longest name taken from a sample's text.
_NAME_CHARS = 80


def read_mdm_results(
    path: str | Path,
    header: NpyHeader | None = None,
    *,
    fps: float | None = None,
    unit: str | float | None = None,
    up: str | None = None,
) -> list[Motion]:
    """Every sample of an MDM ``results.npy``, trimmed to its length and named by its text.

    ``fps``, ``unit`` and ``up`` as for joint-position files (defaults: 20 fps, metres, Y up).
    """
    path = Path(path)
    source = str(path)
    header = header or read_npy_header(path)
    if header.shape != () or not header.dtype.hasobject:
        raise MotionError(
            f"expected a pickled dict (np.save of MDM's results), got an array of shape {header.shape}", source=source
        )
    results = safe_load_pickle(path, offset=header.offset, object_arrays=True)
    if not isinstance(results, dict) or "motion" not in results:
        found = list_names([str(k) for k in results]) if isinstance(results, dict) else f"a {type(results).__name__}"
        raise MotionError(
            f"an .npy of Python objects that is not MDM's results (no 'motion'; it holds: {found})", source=source
        )
    motion = results["motion"]
    if (
        not isinstance(motion, np.ndarray)
        or motion.ndim != 4
        or motion.shape[1:3]
        not in (
            (BODY_JOINTS, 3),
            (NUM_JOINTS, 3),
        )
    ):
        shape = motion.shape if isinstance(motion, np.ndarray) else type(motion).__name__
        raise MotionError(f"expected (samples, 22 or 24, 3, frames), got {shape}", source=source, field="motion")
    count, frames = motion.shape[0], motion.shape[3]
    if count < 1 or frames < 1:
        raise MotionError(f"holds no samples (shape {motion.shape})", source=source, field="motion")
    lengths = _lengths(results.get("lengths"), count, frames, source)
    texts = _texts(results.get("text"), count, source)
    samples = _whole_number(results.get("num_samples"), source, "num_samples") or count
    repeated = Counter(texts)
    seen: Counter[str] = Counter()
    clips = []
    for i in range(count):
        text = texts[i]
        seen[text] += 1
        name = text[:_NAME_CHARS] if text else f"sample{i}"
        if text and repeated[text] > 1:
            name = f"{name} ({seen[text]})"
        where = f"{source} (clip {i})"
        clips.append(
            motion_from_joint_positions(
                np.moveaxis(motion[i, :, :, : lengths[i]], -1, 0),
                fps=fps,
                unit=unit,
                up=up,
                name=name,
                source=where,
                source_format="mdm-npy",
                notes=(
                    f"MDM sample {i % samples}, repetition {i // samples}: {text!r:.120}"
                    if text
                    else f"MDM sample {i % samples}, repetition {i // samples}",
                ),
            )
        )
    return clips


def _whole_number(value: Any, source: str, field: str) -> int | None:
    if value is None:
        return None
    number = value.reshape(-1)[0].item() if isinstance(value, np.ndarray) and value.size == 1 else value
    if (
        isinstance(number, bool)
        or not isinstance(number, int | float)
        or not math.isfinite(number)
        or number != int(number)
        or number < 1
    ):
        raise MotionError(f"expected a whole number from 1, got {describe_value(value)}", source=source, field=field)
    return int(number)


def _lengths(value: Any, count: int, frames: int, source: str) -> list[int]:
    if value is None:
        return [frames] * count
    array = np.asarray(value) if isinstance(value, np.ndarray | list | tuple) else None
    if array is None or array.dtype.kind not in "iuf" or array.shape != (count,):
        shape = array.shape if array is not None else type(value).__name__
        raise MotionError(
            f"expected {count} frame counts (one per sample), got {shape}", source=source, field="lengths"
        )
    if not (
        np.isfinite(array).all() and (array == np.round(array)).all() and (array >= 1).all() and (array <= frames).all()
    ):
        raise MotionError(
            f"every sample's length must be a whole number of frames from 1 to {frames}", source=source, field="lengths"
        )
    return [int(n) for n in array]


def _texts(value: Any, count: int, source: str) -> list[str]:
    if value is None:
        return [""] * count
    if not isinstance(value, list | tuple) or len(value) != count:
        got = f"{len(value)} items" if isinstance(value, list | tuple) else f"a {type(value).__name__}"
        raise MotionError(f"expected {count} texts (one per sample), got {got}", source=source, field="text")
    return [" ".join(str(t).split()) if isinstance(t, str | int | float) else "" for t in value]
