"""Our motion file: a plain ``.npz`` (no pickles), format ``"mtvcrafter-motion"`` version 1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MotionError
from .motion import MAX_FRAMES, Motion
from .npz_archive import NpzArchive

FORMAT = "mtvcrafter-motion"
VERSION = 1
_OPTIONAL_ARRAYS = ("rotations", "root_translation", "rest_offsets", "betas", "joint_uncertainty")
#: Most elements each field may hold, checked from the file's headers before anything is read.
_MAX_ELEMENTS = {
    "format": 1,
    "version": 1,
    "fps": 1,
    "fov_deg": 1,
    "frame_start": 1,
    "image_size": 2,
    "joints": MAX_FRAMES * 72,
    "rotations": MAX_FRAMES * 96,
    "root_translation": MAX_FRAMES * 3,
    "rest_offsets": 72,
    "betas": 1000,
    "frame_valid": MAX_FRAMES,
    "joint_uncertainty": MAX_FRAMES * 24,
}
_MAX_INFO_CHARS = 1 << 20
#: Longest ``format`` string read (the right one has 17 characters).
_MAX_FORMAT_CHARS = 64


def _max_bytes(name: str) -> int:
    """Most bytes a field may hold: numbers of up to 8 bytes each (16 for the single numbers); text for
    ``format`` and ``info`` (4 bytes a character, as numpy stores it)."""
    if name == "info":
        return 4 * _MAX_INFO_CHARS
    if name == "format":
        return 4 * _MAX_FORMAT_CHARS
    return 16 * _MAX_ELEMENTS[name] if _MAX_ELEMENTS[name] == 1 else 8 * _MAX_ELEMENTS[name]


def is_our_npz(keys: set[str]) -> bool:
    return "format" in keys and "joints" in keys


def motion_to_arrays(motion: Motion) -> dict[str, np.ndarray]:
    """The arrays of our ``.npz`` layout for a motion (also what the server accepts as upload)."""
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT),
        "version": np.array(VERSION, dtype=np.int32),
        "joints": motion.joints.astype(np.float32),
        "fps": np.array(motion.fps, dtype=np.float64),
        "fov_deg": np.array(motion.fov_deg, dtype=np.float64),
    }
    if motion.image_size is not None:
        arrays["image_size"] = np.array(motion.image_size, dtype=np.int32)
    if motion.frame_start is not None:
        arrays["frame_start"] = np.array(motion.frame_start, dtype=np.int64)
    for name in _OPTIONAL_ARRAYS:
        value = getattr(motion, name)
        if value is not None:
            arrays[name] = value.astype(np.float32)
    if motion.frame_valid is not None:
        arrays["frame_valid"] = motion.frame_valid.astype(np.uint8)
    info = {
        "name": motion.name,
        "source_format": motion.source_format,
        "notes": [str(n) for n in motion.notes],
        # Keys of a source file's fields may be any pickled value; JSON keys are strings.
        "metadata": {str(k): v for k, v in motion.metadata.items()},
    }
    arrays["info"] = np.array(json.dumps(info, ensure_ascii=False, default=str))
    return arrays


def write_npz(motion: Motion, path: str | Path) -> None:
    """Write our ``.npz`` atomically (a partial file never replaces a good one)."""
    path = Path(path)
    arrays = motion_to_arrays(motion)
    tmp = path.with_name(path.name + ".part")
    try:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)  # stored, not deflated: floats shrink ~20 % and load 3x slower
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _origin(source_format: Any) -> str:
    """Where the notes of a converted motion come from, in words ("from the video it was extracted from")."""
    if source_format == "nlf-video":
        return "from the video it was extracted from"
    return f"from the {source_format or 'source'} file it was converted from"


def read_npz(path: str | Path, arrays: Any = None) -> Motion:
    """Read our ``.npz`` (never a pickle: arrays of Python objects are refused).

    ``arrays``: the file already opened (an :class:`NpzArchive` or a mapping of arrays); ``path`` then only
    names it in messages."""
    if arrays is not None:
        return motion_from_arrays(arrays, str(path))
    with NpzArchive(path) as archive:
        return motion_from_arrays(archive, archive.source)


def motion_from_arrays(data: Any, source: str) -> Motion:
    """Build a motion from the arrays of our ``.npz`` layout, checking every field.

    ``data``: an :class:`~mtvcrafter.motion.npz_archive.NpzArchive` (each field read only up to the size it
    may have, checked from its header) or a mapping of arrays."""

    def get(name: str) -> np.ndarray | None:
        if name not in data:
            return None
        if isinstance(data, NpzArchive):
            limit = 1 if name == "info" else _MAX_ELEMENTS[name]
            return data.read(name, max_elements=limit, max_bytes=_max_bytes(name))
        try:
            return np.asarray(data[name])
        except ValueError:
            raise MotionError("holds Python objects, which are not allowed", source=source, field=name) from None

    fmt = get("format")
    if fmt is None or str(fmt) != FORMAT:
        raise MotionError(
            f"expected format '{FORMAT}', found {None if fmt is None else str(fmt)!r}", source=source, field="format"
        )
    version = get("version")
    if version is None or version.shape != () or version.dtype.kind not in "iu" or int(version) < 1:
        raise MotionError("missing, or not a whole number from 1", source=source, field="version")
    if int(version) > VERSION:
        raise MotionError(
            f"version {int(version)} was written by a newer mtvcrafter (this one reads up to {VERSION}); upgrade",
            source=source,
            field="version",
        )
    joints = get("joints")
    if joints is None:
        raise MotionError("missing", source=source, field="joints")
    fps = get("fps")
    if fps is None or fps.shape != ():
        raise MotionError("missing or not a single number", source=source, field="fps")
    kwargs: dict[str, Any] = {}
    for name in ("image_size", "frame_valid", *_OPTIONAL_ARRAYS):
        value = get(name)
        if value is not None:
            kwargs[name] = value
    for name in ("fov_deg", "frame_start"):
        value = get(name)
        if value is not None:
            if value.shape != ():
                raise MotionError("must be a single number", source=source, field=name)
            kwargs[name] = value.item()
    info: dict[str, Any] = {}
    raw_info = get("info")
    if raw_info is not None:
        if raw_info.shape != () or raw_info.dtype.kind not in "US":
            raise MotionError("must be one JSON text", source=source, field="info")
        try:
            text = raw_info.item()
            info = json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise MotionError("is not valid JSON", source=source, field="info") from None
        except RecursionError:
            raise MotionError("is JSON nested too deeply", source=source, field="info") from None
        if (
            not isinstance(info, dict)
            or not isinstance(info.get("notes", []), list)
            or not isinstance(info.get("metadata", {}), dict)
        ):
            raise MotionError(
                "must be a JSON object with a list of notes and a metadata object", source=source, field="info"
            )
    return Motion(
        joints=joints,
        fps=fps.item(),
        name=str(info.get("name", "")),
        source=source,
        source_format="mtvcrafter-npz",
        # the notes are about the file this motion was converted from (this one stores its frame rate)
        notes=tuple(
            n if n.startswith("from the ") else f"{_origin(info.get('source_format'))}: {n}"
            for n in map(str, info.get("notes", []))
        ),
        metadata=dict(info.get("metadata", {})),
        **kwargs,
    )
