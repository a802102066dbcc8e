"""The official motion pickle (``sampled_data.pkl``, and what the NLF extraction script writes)."""

from __future__ import annotations

import pickle
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from .errors import MotionError
from .motion import Motion
from .npz_archive import list_names
from .safe_pickle import safe_load_pickle
from .skeleton import NUM_JOINTS

#: The official pickle does not store a frame rate; its sample clips are 30 fps video frames.
OFFICIAL_PICKLE_FPS = 30.0
_FIELD_ORDER = ("file_path", "video_path", "pose", "video_length", "video_height", "video_width")


def read_official_pickle(path: str | Path, fps: float | None = None, *, data: Any = None) -> list[Motion]:
    """Every clip of an official motion pickle, as motions (joints in mm, camera space).

    ``pose`` may be a ``(T, 24, 3)`` array, or ``{'joints3d_nonparam': [per-frame (people, 24, 3)]}``
    of which the first person is used. ``fps`` overrides the assumed 30 fps. ``data``: the file's content
    where it was already unpickled (by :func:`~mtvcrafter.motion.safe_pickle.safe_load_pickle`).
    """
    source = str(path)
    if data is None:
        data = safe_load_pickle(path)
    clips = [data] if isinstance(data, dict) else data
    if not isinstance(clips, list) or not clips:
        raise MotionError(f"expected a dict or a non-empty list of dicts, found {type(data).__name__}", source=source)
    return [_read_clip(clip, i, source, len(clips), fps) for i, clip in enumerate(clips)]


def _read_clip(clip: Any, index: int, source: str, count: int, fps: float | None) -> Motion:
    where = f"{source} (clip {index})" if count > 1 else source
    if not isinstance(clip, dict):
        raise MotionError(f"expected a dict per clip, found {type(clip).__name__}", source=where)
    if "pose" not in clip:
        raise MotionError(
            f"no 'pose' in the clip (keys: {list_names([str(k) for k in clip])})", source=where, field="pose"
        )
    joints = _pose_to_joints(clip["pose"], where)
    notes = []
    if fps is None:
        fps = OFFICIAL_PICKLE_FPS
        notes.append(f"the file stores no frame rate; {OFFICIAL_PICKLE_FPS:g} fps assumed")
    length = _int_field(clip, "video_length", where)
    if length is not None and length != joints.shape[0]:
        notes.append(f"video_length says {length} frames but the pose has {joints.shape[0]}")
    height, width = _int_field(clip, "video_height", where), _int_field(clip, "video_width", where)
    image_size = (height, width) if height is not None and width is not None else None
    metadata = {k: v for k, v in clip.items() if k != "pose"}
    # the name from the first of the paths that is text (any other value is kept in metadata, unused)
    video = next((v for v in (clip.get("video_path"), clip.get("file_path")) if isinstance(v, str) and v), None)
    name = _stem(video) if video else f"clip{index}"
    return Motion(
        joints=joints,
        fps=fps,
        image_size=image_size,
        name=name,
        source=where,
        source_format="official-pkl",
        notes=tuple(notes),
        metadata=metadata,
    )


def _stem(path: str) -> str:
    """File name without extension, for paths written on Windows too."""
    return (PureWindowsPath(path) if "\\" in path else PurePosixPath(path)).stem


def _int_field(clip: dict, name: str, where: str) -> int | None:
    value = clip.get(name)
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    raise MotionError(f"expected a whole number, got {value!r:.40}", source=where, field=name)


def _pose_to_joints(pose: Any, where: str) -> np.ndarray:
    if isinstance(pose, dict):
        if "joints3d_nonparam" not in pose:
            raise MotionError(
                f"the pose dict has no 'joints3d_nonparam' (keys: {list_names([str(k) for k in pose])})",
                source=where,
                field="pose",
            )
        frames = pose["joints3d_nonparam"]
        if not isinstance(frames, (list, tuple)) or not frames:
            raise MotionError(
                "'joints3d_nonparam' must be a non-empty list of per-frame arrays",
                source=where,
                field="pose.joints3d_nonparam",
            )
        not_arrays = [i for i, f in enumerate(frames) if not isinstance(f, np.ndarray)]
        if not_arrays:
            raise MotionError(
                f"frame {not_arrays[0]} is a {type(frames[not_arrays[0]]).__name__}, expected an array or tensor "
                "of shape (people, 24, 3)",
                source=where,
                field="pose.joints3d_nonparam",
            )
        people = list(frames)
        wrong = [i for i, f in enumerate(people) if f.ndim != 3 or f.shape[1:] != (NUM_JOINTS, 3)]
        if wrong:
            raise MotionError(
                f"frame {wrong[0]} has shape {people[wrong[0]].shape}, expected (people, 24, 3)",
                source=where,
                field="pose.joints3d_nonparam",
            )
        empty = [i for i, f in enumerate(people) if f.shape[0] == 0]
        if empty:
            listed = ", ".join(map(str, empty[:10])) + (" …" if len(empty) > 10 else "")
            raise MotionError(
                f"no person was detected in {len(empty)} frame(s) ({listed}); trim them or re-run the extraction",
                source=where,
                field="pose.joints3d_nonparam",
            )
        return np.stack([f[0] for f in people]).astype(np.float32)
    if not isinstance(pose, np.ndarray):
        raise MotionError(f"expected a (frames, 24, 3) array, got a {type(pose).__name__}", source=where, field="pose")
    array = pose
    if array.ndim == 4 and array.shape[2:] == (NUM_JOINTS, 3) and array.shape[1] >= 1:
        array = array[:, 0]
    if array.ndim != 3 or array.shape[1:] != (NUM_JOINTS, 3):
        raise MotionError(f"expected a (frames, 24, 3) array, got shape {array.shape}", source=where, field="pose")
    return array


#: How ``pose`` is stored: ``"array"`` one float32 ``(T, 24, 3)`` array (the released ``sampled_data.pkl``),
#: ``"per-frame"`` ``{'joints3d_nonparam': [float32 (1, 24, 3) per frame]}`` (what the official NLF extraction
#: script writes).
PICKLE_LAYOUTS = ("array", "per-frame")


def _pose(motion: Motion, layout: str) -> np.ndarray | dict[str, list[np.ndarray]]:
    if layout == "array":
        return motion.joints
    return {"joints3d_nonparam": [np.ascontiguousarray(frame[None]) for frame in motion.joints]}


def write_official_pickle(motions: list[Motion], path: str | Path, layout: str = "array") -> None:
    """Write motions in the official layout: a list of dicts with ``pose``, ``video_path``,
    ``video_length``, ``video_height`` and ``video_width``.

    ``layout="array"``: ``pose`` is a float32 ``(T, 24, 3)`` array, as in the released sample file. Fields read
    from an official file are written back unchanged and in the official order, so a file this writes, read
    and written again, has the same bytes (the released file itself was pickled differently).

    ``layout="per-frame"``: ``pose`` is ``{'joints3d_nonparam': [float32 (1, 24, 3) array per frame]}``, as the
    official extraction script writes it (one person per frame) — plain numpy arrays that load without torch.
    """
    if layout not in PICKLE_LAYOUTS:
        raise MotionError(f"unknown layout {layout!r}; choose {' or '.join(PICKLE_LAYOUTS)}", field="layout")
    clips = []
    for motion in motions:
        height, width = motion.camera_image_size
        fields = dict(motion.metadata)
        fields.update(
            pose=_pose(motion, layout),
            video_length=motion.num_frames,
            video_height=height,
            video_width=width,
        )
        fields.setdefault("video_path", f"./data/videos/{motion.name or 'motion'}.mp4")
        ordered = {k: fields[k] for k in _FIELD_ORDER if k in fields}
        ordered.update((k, v) for k, v in fields.items() if k not in ordered)
        clips.append(ordered)
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    try:
        with open(tmp, "wb") as handle:
            pickle.dump(clips, handle, protocol=4)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
