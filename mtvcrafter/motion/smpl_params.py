"""SMPL parameter files besides AMASS's ``.npz``, as pickles (``.pkl``) or ``.npz``: AIST++ (``smpl_poses``,
``smpl_trans``, ``smpl_scaling``), SMPL fitting outputs as smplx names them (``global_orient``, ``body_pose``,
``transl``, ``betas``) and other ``poses`` / ``trans`` pickles. numpy only.

Joints by the SMPL forward kinematics AMASS files get
(:func:`~mtvcrafter.motion.amass.motion_from_smpl_parameters`): the built-in neutral skeleton, or the body
model given; rotations kept; the performer placed in front of the default camera.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .amass import (
    check_parameters,
    describe_value,
    is_amass,
    motion_from_smpl_parameters,
    read_amass,
    read_parameter_field,
    smpl_local_axis_angle,
    smpl_rest_skeleton,
)
from .errors import MotionError
from .motion import Motion
from .rotations import axis_angle_to_matrix

#: AIST++'s frame rate (its videos and SMPL fits are 60 fps; the files store none).
AISTPP_FPS = 60.0
#: The frame rate assumed for fitting outputs and pickles that store none.
DEFAULT_FPS = 30.0
_FPS_FIELDS = ("fps", "mocap_framerate", "mocap_frame_rate", "frame_rate")
_SINGLE = {"smpl_scaling": 1, "gender": 1, "betas": 10_000, **dict.fromkeys(_FPS_FIELDS, 1)}


def smpl_parameter_kind(keys: set[str] | Any) -> str | None:
    """Which SMPL parameter layout a file's fields are: ``"aistpp"``, ``"smplx"`` (fitting outputs),
    ``"poses"`` (``poses`` / ``trans``, or AMASS's ``root_orient`` / ``pose_body``), or None."""
    keys = {str(k) for k in keys}
    if "smpl_poses" in keys:
        return "aistpp"
    if "global_orient" in keys and "body_pose" in keys:
        return "smplx"
    if is_amass(keys):
        return "poses"
    return None


def read_smpl_parameters(
    path: str | Path,
    data: Mapping[str, Any] | Any,
    *,
    body_model: str | Path | None = None,
    fps: float | None = None,
    up: str | None = None,
) -> Motion:
    """A motion from SMPL parameters (the fields of an unpickled dict, or an opened ``.npz``).

    - AIST++: ``smpl_poses (T, 72)`` axis-angle, ``smpl_trans (T, 3)`` and ``smpl_scaling`` (``trans / scaling``
      is metres, as AIST++'s own tools compute it); Y up; 60 fps (``fps`` overrides); its fits used the male
      SMPL model (what ``body_model`` picks in a folder).
    - Fitting outputs: ``global_orient`` ``(T, 3)`` and ``body_pose`` ``(T, 63 | 69)`` — axis-angle, or ``(T, 1 |
      21 | 23, 3)`` per joint, or rotation matrices ``(T, …, 3, 3)`` — ``transl (T, 3)`` metres (none: the pelvis
      stays in place), ``betas``, ``gender``; Y up unless the body clearly stands along another axis (fits in a
      camera's axes stand along −Y); 30 fps unless the file or ``fps`` says.
    - ``poses`` / ``trans`` pickles: read as AMASS files are, but Y up unless the body clearly stands along
      another axis.

    ``up`` names the world's up axis instead.
    """
    source = str(path)
    kind = smpl_parameter_kind(set(data.keys()) if isinstance(data, Mapping) else set(data.files))
    if kind == "poses":
        return read_amass(
            path,
            data,
            body_model=body_model,
            fps=fps,
            up=up,
            default_up="Y",
            detect_up=True,
            source_format="smpl-params",
        )
    if kind == "aistpp":
        return _read_aistpp(path, data, body_model, fps, up)
    if kind == "smplx":
        return _read_fitting_output(path, data, body_model, fps, up)
    raise MotionError("holds no SMPL parameters (smpl_poses, global_orient + body_pose, or poses)", source=source)


def _field(data: Any, name: str) -> np.ndarray | None:
    return read_parameter_field(data, name, _SINGLE.get(name))


def _frame_rate(data: Any, fps: float | None, default: float, whose: str, source: str) -> tuple[float, str | None]:
    """The frame rate (the file's, else ``fps``, else ``default``) and a note when the file stores none."""
    for name in _FPS_FIELDS:
        value = _field(data, name)
        if value is None:
            continue
        if value.size != 1 or value.dtype.kind not in "fiu" or not 0 < float(value.reshape(-1)[0]) <= 1000:
            raise MotionError(f"expected one frame rate, got {describe_value(value)}", source=source, field=name)
        return float(value.reshape(-1)[0]), None
    if fps is not None:
        return float(fps), f"the file stores no frame rate; {fps:g} fps as given"
    return default, f"the file stores no frame rate; {default:g} fps assumed ({whose})"


def _betas(data: Any, source: str) -> np.ndarray | None:
    betas = _field(data, "betas")
    if betas is None or betas.size == 0:
        return None
    if betas.dtype.kind not in "fiu" or not np.isfinite(betas).all():
        raise MotionError("must be finite numbers", source=source, field="betas")
    # per-frame betas (T, n) of one person: the first frame's
    return (betas[0] if betas.ndim == 2 else betas.reshape(-1)).astype(np.float64)


def _gender(data: Any) -> str | None:
    value = _field(data, "gender")
    if value is None or value.size != 1 or value.dtype.kind not in "SU":
        return None
    raw = value.reshape(-1)[0]
    return (raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)).strip().lower()[:40] or None


def _translation(data: Any, name: str, frames: int, source: str) -> np.ndarray:
    trans = _field(data, name)
    if trans is None:
        raise MotionError("missing: the root translation per frame", source=source, field=name)
    if trans.shape != (frames, 3):
        raise MotionError(
            f"expected (frames, 3) matching {frames} pose frames, got {trans.shape}", source=source, field=name
        )
    return trans


def _read_aistpp(path: str | Path, data: Any, body_model: Any, fps: float | None, up: str | None) -> Motion:
    source = str(path)
    poses = _field(data, "smpl_poses")
    if poses is None:
        raise MotionError("must be an array of (frames, 72) axis-angle values", source=source, field="smpl_poses")
    if poses.ndim == 3 and poses.shape[1:] == (24, 3):
        poses = poses.reshape(len(poses), 72)
    if poses.ndim != 2 or poses.shape[1] != 72 or poses.shape[0] < 1:
        raise MotionError(f"expected (frames, 72), got {poses.shape}", source=source, field="smpl_poses")
    trans = _translation(data, "smpl_trans", poses.shape[0], source)
    check_parameters({"smpl_poses": poses, "smpl_trans": trans}, source)
    notes = ["AIST++ SMPL parameters (72 values per frame)"]
    scaling = _field(data, "smpl_scaling")
    if scaling is None:
        notes.append("no smpl_scaling: smpl_trans taken as metres")
        scale = 1.0
    else:
        if scaling.size != 1 or scaling.dtype.kind not in "fiu" or not 0 < float(scaling.reshape(-1)[0]) < 1e6:
            raise MotionError(
                f"expected one positive number, got {describe_value(scaling)}", source=source, field="smpl_scaling"
            )
        scale = float(scaling.reshape(-1)[0])
        notes.append(f"smpl_trans / smpl_scaling ({scale:g}) = metres")
    rate, rate_note = _frame_rate(data, fps, AISTPP_FPS, "AIST++'s", source)
    if rate_note:
        notes.append(rate_note)
    skeleton = smpl_rest_skeleton(body_model, "male", None, source, 72)
    return motion_from_smpl_parameters(
        smpl_local_axis_angle(poses.astype(np.float64)),
        trans.astype(np.float64) / scale,
        skeleton,
        up=up,
        default_up="Y",
        detect_up=False,
        fps=rate,
        name=Path(path).stem,
        source=source,
        source_format="aistpp-pkl",
        notes=tuple(notes),
    )


def _rotations(value: np.ndarray, frames: int, joints: tuple[int, ...], source: str, name: str) -> np.ndarray:
    """``(frames, k, 3, 3)`` rotation matrices from axis-angle ``(frames, 3k)`` / ``(frames, k, 3)`` or matrices
    ``(frames, k, 3, 3)`` / ``(frames, 3, 3)``, for a joint count ``k`` among ``joints``."""
    if value.shape[:1] == (frames,):
        rest = value.shape[1:]
        if len(rest) == 1 and rest[0] % 3 == 0 and rest[0] // 3 in joints:
            return axis_angle_to_matrix(value.reshape(frames, -1, 3))
        if len(rest) == 2 and rest[1] == 3 and rest[0] in joints:
            return axis_angle_to_matrix(value)
        if len(rest) == 2 and rest == (3, 3) and 1 in joints:
            return value[:, None]
        if len(rest) == 3 and rest[1:] == (3, 3) and rest[0] in joints:
            return value
    counts = " or ".join(str(k) for k in joints)
    raise MotionError(
        f"expected {frames} frames of {counts} joint rotation(s) (axis-angle or 3×3 matrices), got {value.shape}",
        source=source,
        field=name,
    )


def _read_fitting_output(path: str | Path, data: Any, body_model: Any, fps: float | None, up: str | None) -> Motion:
    source = str(path)
    orient, body = _field(data, "global_orient"), _field(data, "body_pose")
    if orient is None or body is None:
        raise MotionError(
            "must be arrays of rotations", source=source, field="global_orient" if orient is None else "body_pose"
        )
    if orient.ndim == 1 and body.ndim == 1:  # one frame, unbatched
        orient, body = orient[None], body[None]
    frames = orient.shape[0] if orient.ndim else 0
    if frames < 1:
        raise MotionError(f"expected (frames, 3), got {orient.shape}", source=source, field="global_orient")
    transl = _field(data, "transl")
    arrays = {"global_orient": orient, "body_pose": body}
    if transl is not None:
        arrays["transl"] = _translation(data, "transl", frames, source)
    check_parameters(arrays, source)
    root = _rotations(orient.astype(np.float64), frames, (1,), source, "global_orient")
    joints = _rotations(body.astype(np.float64), frames, (21, 23), source, "body_pose")
    local = np.broadcast_to(np.eye(3), (frames, 24, 3, 3)).copy()
    local[:, :1] = root
    local[:, 1 : 1 + joints.shape[1]] = joints
    if not (np.isfinite(local).all() and np.allclose(local @ np.swapaxes(local, -1, -2), np.eye(3), atol=1e-3)):
        raise MotionError("holds matrices that are not rotations", source=source, field="body_pose")
    notes = [f"SMPL fitting output ({joints.shape[1]} body joint rotations per frame)"]
    if transl is None:
        trans = np.zeros((frames, 3))
        notes.append("no transl: the pelvis stays in place")
    else:
        trans = transl.astype(np.float64)
    rate, rate_note = _frame_rate(data, fps, DEFAULT_FPS, "none is known for this layout", source)
    if rate_note:
        notes.append(rate_note)
    betas = _betas(data, source)
    gender = _gender(data) or "neutral"
    width = 72 if joints.shape[1] == 23 else None
    skeleton = smpl_rest_skeleton(body_model, gender, betas, source, width)
    return motion_from_smpl_parameters(
        local,
        trans,
        skeleton,
        up=up,
        default_up="Y",
        detect_up=True,
        fps=rate,
        name=Path(path).stem,
        source=source,
        source_format="smpl-params",
        notes=tuple(notes),
        betas=betas,
    )
