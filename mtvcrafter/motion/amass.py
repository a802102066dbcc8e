"""AMASS / SMPL(-H/-X) parameter files (``.npz``): joints by forward kinematics, seen by a default camera.

The forward kinematics, the choice of the rest skeleton and the placement before the camera
(:func:`motion_from_smpl_parameters`) serve every SMPL parameter file (AIST++, SMPL fitting outputs:
:mod:`~mtvcrafter.motion.smpl_params`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .bodymodel import RestSkeleton, find_body_model_file, load_body_model_skeleton, neutral_skeleton
from .camera import DEFAULT_IMAGE_SIZE
from .errors import MotionError
from .kinematics import forward_kinematics, forward_kinematics_axis_angle
from .motion import MAX_FRAMES, Motion
from .npz_archive import NpzArchive, ObjectArrayError
from .placement import PLACEMENT_NOTE, choose_up, place_in_front_of_camera, up_to_z
from .rotations import matrix_to_quaternion, quaternion_multiply
from .skeleton import rest_offsets_from_joints

_POSE_WIDTHS = {72: "SMPL", 156: "SMPL-H", 165: "SMPL-X"}
_FAMILIES = {72: "smpl", 156: "smplh", 165: "smplx"}
#: Most values a per-frame field may hold (the widest pose, SMPL-X's 165, for every frame a motion may have);
#: shape and the other fields are small.
_PER_FRAME = MAX_FRAMES * 165
_LIMITS = {"betas": 10_000, "gender": 1, "mocap_framerate": 1, "mocap_frame_rate": 1}


def is_amass(keys: set[str]) -> bool:
    return "poses" in keys or "root_orient" in keys


def read_parameter_field(data: Any, name: str, limit: int | None = None) -> np.ndarray | None:
    """Field ``name`` of a parameter file as an array (None when absent or not an array of plain values).

    ``data``: an :class:`NpzArchive` (each field read only up to ``limit`` values, by default the
    per-frame bound, or :data:`_LIMITS`' for the small fields) or a mapping (an unpickled dict).
    """
    if name not in data:
        return None
    if isinstance(data, NpzArchive):
        limit = limit or _LIMITS.get(name, _PER_FRAME)
        try:  # text fields (gender) up to 256 characters, numbers up to 8 bytes each (16 when single)
            return data.read(name, max_elements=limit, max_bytes=1024 if limit == 1 else 8 * limit)
        except ObjectArrayError:  # some releases store extras as Python objects: never read, as if absent
            return None
    try:
        array = np.asarray(data[name])
    except (ValueError, TypeError):  # object arrays under allow_pickle=False; ragged lists
        return None
    return None if array.dtype.hasobject else array


def describe_value(value: Any) -> str:
    """A field's value for a one-line message: a single number or short text as itself, else its kind and shape."""
    array = value if isinstance(value, np.ndarray) else None
    if array is not None and array.size == 1 and array.dtype.kind in "fiubSU":
        value = array.reshape(-1)[0].item()
    elif array is not None:
        return f"an array of shape {array.shape} ({array.dtype})"
    if isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, str | bytes):
        return f"{' '.join(repr(value).split())!s:.40}"
    return f"a {type(value).__name__}"


def check_parameters(arrays: dict[str, np.ndarray], source: str) -> None:
    """MotionError naming the field where a per-frame parameter array is not finite numbers."""
    for name, array in arrays.items():
        if array.dtype.kind not in "fiu":
            raise MotionError(f"must be numbers, got dtype {array.dtype}", source=source, field=name)
        if not np.isfinite(array).all():
            raise MotionError("holds NaN or infinite values", source=source, field=name)


def smpl_local_axis_angle(poses: np.ndarray) -> np.ndarray:
    """Local rotations ``(T, 24, 3)`` (axis times angle) of SMPL-24 from axis-angle poses ``(T, ≥66)``: the root and
    21 body joints, and SMPL's two hand joints where the pose is SMPL's 72 values (a leaf's own rotation moves no
    joint, so SMPL-H/-X's finger chains are left at rest)."""
    n = poses.shape[0]
    axis_angle = np.zeros((n, 24, 3))
    axis_angle[:, :22] = poses[:, :66].reshape(n, 22, 3)
    if poses.shape[1] == 72:
        axis_angle[:, 22:] = poses[:, 66:72].reshape(n, 2, 3)
    return axis_angle


def smpl_rest_skeleton(
    body_model: str | Path | None,
    gender: str,
    betas: np.ndarray | None,
    source: str,
    pose_width: int | None = None,
) -> RestSkeleton:
    """The rest skeleton a clip's joints are computed with: the body model's for ``gender`` and ``betas``
    (``body_model``: a model ``.npz`` or a folder of them), preferring the family the ``pose_width`` says
    (72 SMPL, 156 SMPL-H, 165 SMPL-X) and refusing another; or the built-in neutral one."""
    if body_model is None:
        return neutral_skeleton()
    family = _FAMILIES.get(pose_width or 0)
    model_file = find_body_model_file(body_model, gender, family)
    skeleton = load_body_model_skeleton(model_file, betas)
    if family is not None and skeleton.family != family:
        raise MotionError(
            f"the clip holds {_POSE_WIDTHS[pose_width or 0]} parameters but {model_file} is a "
            f"{skeleton.family.upper()} body model; point --body-model at the {family.upper()} model",
            source=source,
            field="body_model",
        )
    return skeleton


def motion_from_smpl_parameters(
    local_rotations: np.ndarray,
    trans_m: np.ndarray,
    skeleton: RestSkeleton,
    *,
    up: str | None,
    default_up: str,
    detect_up: bool,
    fps: float,
    name: str,
    source: str,
    source_format: str,
    notes: tuple[str, ...] = (),
    betas: np.ndarray | None = None,
) -> Motion:
    """A Motion from SMPL parameters: joints by forward kinematics of ``skeleton``, rotations kept.

    Args:
        local_rotations: each joint's rotation relative to its parent (the root's in the file's world), as
            ``(T, 24, 3, 3)`` matrices or ``(T, 24, 3)`` axis-angle (:func:`smpl_local_axis_angle`: its quaternions
            are then computed directly, without matrices).
        trans_m: ``(T, 3)`` SMPL's translation in metres (the pelvis is at its rest position plus it).
        up: the world's up axis (``"Y"``, ``"Z"``, ``"-Y"`` …) where given; else ``default_up``, unless
            ``detect_up`` and the body clearly stands along another axis (:func:`choose_up`).

    The world is turned Z up and the performer placed in front of a level default camera facing them in
    the first frame, the whole clip in view (:func:`place_in_front_of_camera`); ``rotations``,
    ``root_translation`` and ``rest_offsets`` (mm, the skeleton's) pose the joints exactly.
    """
    local_rotations = np.asarray(local_rotations, dtype=np.float64)
    offsets = rest_offsets_from_joints(skeleton.joints_m)
    root = skeleton.joints_m[0] + trans_m.astype(np.float64)
    if local_rotations.shape[1:] == (24, 3):  # axis-angle (matrices are (T, 24, 3, 3))
        world, quaternions = forward_kinematics_axis_angle(offsets, local_rotations, root)
    else:
        world, _ = forward_kinematics(offsets, local_rotations, root)
        quaternions = matrix_to_quaternion(local_rotations)
    axis, up_note = choose_up(world, up, default_up, detect_up)
    turn = up_to_z(axis)
    if not np.array_equal(turn, np.eye(3)):  # AMASS's own Z up needs no turn
        world = world @ turn.T
    rotation, position, joints_mm = place_in_front_of_camera(world)
    # the root's rotation seen from the camera: turned up, then into the camera's axes
    quaternions[:, 0] = quaternion_multiply(matrix_to_quaternion(rotation @ turn), quaternions[:, 0])
    quaternions[:, 0] *= np.where(quaternions[:, :1, 0] < 0.0, -1.0, 1.0)  # w ≥ 0, as everywhere
    offsets_mm = offsets * 1000.0
    offsets_mm[0] = 0.0
    return Motion(
        joints=joints_mm,
        fps=fps,
        image_size=DEFAULT_IMAGE_SIZE,
        rotations=quaternions,
        root_translation=(root @ turn.T - position) @ rotation.T * 1000.0,
        rest_offsets=offsets_mm,
        betas=betas.astype(np.float32) if betas is not None and betas.size else None,
        name=name,
        source=source,
        source_format=source_format,
        notes=(
            *notes,
            f"joints computed with {skeleton.description}",
            up_note,
            PLACEMENT_NOTE,
        ),
    )


def read_amass(
    path: str | Path,
    data: Any,
    body_model: str | Path | None = None,
    fps: float | None = None,
    up: str | None = None,
    *,
    default_up: str = "Z",
    detect_up: bool = False,
    source_format: str = "amass-npz",
) -> Motion:
    """Joints of an AMASS-style parameter file.

    The body's 22 joints (and SMPL's hands, or the middle finger's first joint for SMPL-H/-X) come
    from forward kinematics of the rest skeleton: the exact shape-dependent one when ``body_model``
    (a model ``.npz`` or a folder of them) is given, otherwise the built-in neutral skeleton; the
    motion's ``notes`` say which. AMASS worlds are Z-up in metres (``up`` names another up axis; other
    ``poses`` files pass their ``default_up``, ``detect_up`` and ``source_format``: see
    :func:`motion_from_smpl_parameters`); the performer is placed in front of a level camera facing them
    (:func:`~mtvcrafter.motion.camera.frame_person_z_up`). ``fps`` is used when the file stores no
    frame rate (30 otherwise).
    """
    source = str(path)

    def field(name: str) -> np.ndarray | None:
        return read_parameter_field(data, name)

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
    check_parameters({"poses": poses, "trans": trans}, source)

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
        raise MotionError(
            f"expected one number, got {describe_value(fps_field)}", source=source, field="mocap_framerate"
        )
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

    skeleton = smpl_rest_skeleton(body_model, gender, betas, source, poses.shape[1])
    kind = _POSE_WIDTHS.get(poses.shape[1], "SMPL-family")
    return motion_from_smpl_parameters(
        smpl_local_axis_angle(poses),
        trans,
        skeleton,
        up=up,
        default_up=default_up,
        detect_up=detect_up,
        fps=fps,
        name=Path(path).stem,
        source=source,
        source_format=source_format,
        notes=(f"{kind} parameters ({poses.shape[1]} values per frame), gender {gender}", *notes),
        betas=betas,
    )
