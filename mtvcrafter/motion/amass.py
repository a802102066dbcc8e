"""AMASS / SMPL(-H/-X) parameter files (``.npz``): joints by forward kinematics, seen by a default camera."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .bodymodel import RestSkeleton, find_body_model_file, load_body_model_skeleton, neutral_skeleton
from .camera import DEFAULT_FOV_DEG, DEFAULT_IMAGE_SIZE, frame_person_z_up
from .errors import MotionError
from .kinematics import forward_kinematics
from .motion import MAX_FRAMES, Motion
from .npz_archive import NpzArchive, ObjectArrayError
from .rotations import axis_angle_to_matrix, matrix_to_quaternion
from .skeleton import rest_offsets_from_joints

_POSE_WIDTHS = {72: "SMPL", 156: "SMPL-H", 165: "SMPL-X"}
_FAMILIES = {72: "smpl", 156: "smplh", 165: "smplx"}
#: Most values a per-frame field may hold (the widest pose, SMPL-X's 165, for every frame a motion may have);
#: shape and the other fields are small.
_PER_FRAME = MAX_FRAMES * 165
_LIMITS = {"betas": 10_000, "gender": 1, "mocap_framerate": 1, "mocap_frame_rate": 1}


def is_amass(keys: set[str]) -> bool:
    return "poses" in keys or "root_orient" in keys


def read_amass(path: str | Path, data: Any, body_model: str | Path | None = None, fps: float | None = None) -> Motion:
    """Joints of an AMASS-style parameter file.

    The body's 22 joints (and SMPL's hands, or the middle finger's first joint for SMPL-H/-X) come
    from forward kinematics of the rest skeleton: the exact shape-dependent one when ``body_model``
    (a model ``.npz`` or a folder of them) is given, otherwise the built-in neutral skeleton; the
    motion's ``notes`` say which. AMASS worlds are Z-up in metres; the performer is placed in front
    of a level camera facing them (:func:`~mtvcrafter.motion.camera.frame_person_z_up`). ``fps`` is
    used when the file stores no frame rate (30 otherwise).
    """
    source = str(path)

    def field(name: str) -> np.ndarray | None:
        if name not in data:
            return None
        if isinstance(data, NpzArchive):
            limit = _LIMITS.get(name, _PER_FRAME)
            try:  # text fields (gender) up to 256 characters, numbers up to 8 bytes each (16 when single)
                return data.read(name, max_elements=limit, max_bytes=1024 if limit == 1 else 8 * limit)
            except ObjectArrayError:  # some releases store extras as Python objects: never read, as if absent
                return None
        try:
            return np.asarray(data[name])
        except ValueError:  # object arrays under allow_pickle=False
            return None

    poses = field("poses")
    if poses is None:
        root, body = field("root_orient"), field("pose_body")
        if root is None or body is None:
            raise MotionError("needs 'poses', or 'root_orient' and 'pose_body'", source=source, field="poses")
        if root.ndim != 2 or body.ndim != 2 or root.shape[0] != body.shape[0]:
            raise MotionError(
                f"root_orient {root.shape} and pose_body {body.shape} must both be (frames, values) for the "
                "same frames",
                source=source,
                field="pose_body",
            )
        poses = np.concatenate([root, body], axis=-1)
    trans = field("trans")
    if poses.ndim != 2 or poses.shape[1] < 66:
        raise MotionError(f"expected (frames, 72 / 156 / 165), got {poses.shape}", source=source, field="poses")
    if trans is None:
        raise MotionError(
            "missing: AMASS files hold the root translation per frame, in metres", source=source, field="trans"
        )
    if trans.shape != (poses.shape[0], 3):
        raise MotionError(
            f"expected (frames, 3) matching {poses.shape[0]} pose frames, got {trans.shape}",
            source=source,
            field="trans",
        )
    if poses.shape[0] < 1:
        raise MotionError("the file has no frames", source=source, field="poses")
    for name, array in (("poses", poses), ("trans", trans)):
        if array.dtype.kind not in "fiu":
            raise MotionError(f"must be numbers, got dtype {array.dtype}", source=source, field=name)
        if not np.isfinite(array).all():
            raise MotionError("holds NaN or infinite values", source=source, field=name)

    notes: list[str] = []
    fps_field = field("mocap_framerate")
    if fps_field is None:
        fps_field = field("mocap_frame_rate")
    if fps_field is None:
        if fps is None:
            fps = 30.0
            notes.append("the file stores no frame rate; 30 fps assumed")
        else:
            notes.append(f"the file stores no frame rate; {fps:g} fps as given")
    elif fps_field.size != 1 or fps_field.dtype.kind not in "fiu":
        raise MotionError(f"expected one number, got {fps_field!r:.60}", source=source, field="mocap_framerate")
    else:
        fps = float(fps_field.reshape(-1)[0])
    betas = field("betas")
    if betas is not None and (betas.dtype.kind not in "fiu" or not np.isfinite(betas).all()):
        raise MotionError("must be finite numbers", source=source, field="betas")
    if betas is not None:
        betas = betas.reshape(-1)  # some releases store (1, n)
    gender_field = field("gender")
    gender = "neutral"
    if gender_field is not None and gender_field.size == 1:
        raw = gender_field.reshape(-1)[0]
        gender = (raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)).strip().lower()[:40] or "neutral"

    skeleton: RestSkeleton
    family = _FAMILIES.get(poses.shape[1])
    if body_model is not None:
        model_file = find_body_model_file(body_model, gender, family)
        skeleton = load_body_model_skeleton(model_file, betas)
        if family is not None and skeleton.family != family:
            raise MotionError(
                f"the clip holds {_POSE_WIDTHS[poses.shape[1]]} parameters but {model_file} is a "
                f"{skeleton.family.upper()} body model; point --body-model at the {family.upper()} model",
                source=source,
                field="body_model",
            )
    else:
        skeleton = neutral_skeleton()
    notes.append(f"joints computed with {skeleton.description}")
    kind = _POSE_WIDTHS.get(poses.shape[1], "SMPL-family")

    n = poses.shape[0]
    axis_angle = np.zeros((n, 24, 3))
    axis_angle[:, :22] = poses[:, :66].reshape(n, 22, 3)
    if poses.shape[1] == 72:
        axis_angle[:, 22:] = poses[:, 66:72].reshape(n, 2, 3)
    local = axis_angle_to_matrix(axis_angle)
    offsets = rest_offsets_from_joints(skeleton.joints_m)
    root = skeleton.joints_m[0] + trans.astype(np.float64)
    world, _ = forward_kinematics(offsets, local, root)

    rotation, position = frame_person_z_up(world, DEFAULT_IMAGE_SIZE, DEFAULT_FOV_DEG)
    joints_mm = (world - position) @ rotation.T * 1000.0
    local_cam = local.copy()
    local_cam[:, 0] = rotation @ local[:, 0]
    offsets_mm = offsets * 1000.0
    offsets_mm[0] = 0.0
    return Motion(
        joints=joints_mm,
        fps=fps,
        image_size=DEFAULT_IMAGE_SIZE,
        rotations=matrix_to_quaternion(local_cam),
        root_translation=(root - position) @ rotation.T * 1000.0,
        rest_offsets=offsets_mm,
        betas=betas.astype(np.float32) if betas is not None and betas.size else None,
        name=Path(path).stem,
        source=source,
        source_format="amass-npz",
        notes=(
            f"{kind} parameters ({poses.shape[1]} values per frame), gender {gender}",
            *notes,
            "placed in front of a default camera (level, facing the performer, whole clip in view)",
        ),
    )
