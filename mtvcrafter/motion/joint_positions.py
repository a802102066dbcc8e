"""Joint positions written by other tools, as motions: ``(T, 22 | 24, 3)`` arrays in an ``.npy`` (HumanML3D's
``new_joints``, what text-to-motion models such as MDM, MoMask and T2M-GPT write); MDM's ``results.npy`` goes
the same way, sample by sample (:mod:`~mtvcrafter.motion.mdm`). numpy only.

A joints-only clip becomes a Motion in four steps (:func:`motion_from_joint_positions`):

1. SMPL's hand joints, where the array has only the first 22, are placed along the forearms
   (:func:`hands_along_forearms`);
2. the unit and the up axis — given, or HumanML3D's (metres, Y up) unless the skeleton's size or the axis
   it clearly stands along says otherwise — turn it into a Z-up world in metres;
3. the performer is placed in front of the default camera as AMASS clips are
   (:func:`~mtvcrafter.motion.placement.place_in_front_of_camera`);
4. a rigid skeleton is fitted by inverse kinematics and kept on the motion (rotations, rest offsets, root
   translation), as ``motion convert --fit`` stores it, so that the clip can be keyed on a rig.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .camera import DEFAULT_IMAGE_SIZE
from .errors import MotionError
from .kinematics import inverse_kinematics
from .motion import MAX_FRAMES, Motion
from .npz_archive import one_line
from .placement import PLACEMENT_NOTE, choose_up, place_in_front_of_camera, up_to_z
from .rig import with_skeleton
from .skeleton import JOINT_INDEX, NEUTRAL_REST_JOINTS_M, NUM_JOINTS
from .units import choose_unit

#: HumanML3D's frame rate (its joints are resampled to 20 fps; the files store none).
HUMANML3D_FPS = 20.0
#: Joints of HumanML3D and the text-to-motion models: SMPL's first 22 (no hand joints).
BODY_JOINTS = 22
_ARMS = (("left_elbow", "left_wrist", "left_hand"), ("right_elbow", "right_wrist", "right_hand"))


def _hand_to_forearm() -> float:
    """The hand joint's distance from the wrist over the forearm's length in the built-in neutral SMPL
    skeleton, both sides averaged (0.33)."""
    joints = NEUTRAL_REST_JOINTS_M
    ratios = [
        np.linalg.norm(joints[JOINT_INDEX[h]] - joints[JOINT_INDEX[w]])
        / np.linalg.norm(joints[JOINT_INDEX[w]] - joints[JOINT_INDEX[e]])
        for e, w, h in _ARMS
    ]
    return float(np.mean(ratios))


#: Where a missing hand joint goes: ``wrist + HAND_TO_FOREARM · (wrist − elbow)`` — the neutral SMPL body's
#: hand-to-forearm length ratio (0.33), along the forearm as in a flat hand.
HAND_TO_FOREARM = _hand_to_forearm()


def hands_along_forearms(joints: np.ndarray) -> np.ndarray:
    """SMPL-24 joints ``(T, 24, 3)`` from its first 22 ``(T, 22, 3)``: each hand joint on the line from the
    elbow through the wrist, :data:`HAND_TO_FOREARM` of the forearm's length beyond the wrist."""
    joints = np.asarray(joints, dtype=np.float64)
    hands = [
        joints[:, JOINT_INDEX[w]] + HAND_TO_FOREARM * (joints[:, JOINT_INDEX[w]] - joints[:, JOINT_INDEX[e]])
        for e, w, _ in _ARMS
    ]
    return np.concatenate([joints, np.stack(hands, axis=1)], axis=1)


def check_joint_array(array: np.ndarray, source: str, field: str | None = None) -> None:
    """MotionError (one line) unless ``array`` is ``(T, 22 | 24, 3)`` finite numbers."""
    shape = array.shape
    if array.dtype.kind not in "fiu":
        raise MotionError(f"expected joint positions (numbers), got dtype {array.dtype}", source=source, field=field)
    if array.ndim != 3 or shape[1] not in (BODY_JOINTS, NUM_JOINTS) or shape[2] != 3 or shape[0] < 1:
        hint = ""
        if array.ndim == 3 and shape[0] in (BODY_JOINTS, NUM_JOINTS) and shape[1] == 3:
            hint = f"; an MDM sample's layout (joints, 3, frames): transpose it to ({shape[2]}, {shape[0]}, 3)"
        raise MotionError(
            f"expected joint positions (frames, 22 or 24, 3) — SMPL's first 22 joints (HumanML3D) or all 24 — "
            f"got {shape}{hint}",
            source=source,
            field=field,
        )
    bad = ~np.isfinite(array).all(axis=(1, 2))
    if bad.any():
        raise MotionError(
            f"{int(bad.sum())} frame(s) hold NaN or infinite values (first: frame {int(np.argmax(bad))})",
            source=source,
            field=field,
        )


def motion_from_joint_positions(
    joints: np.ndarray,
    *,
    fps: float | None = None,
    unit: str | float | None = None,
    up: str | None = None,
    name: str,
    source: str,
    source_format: str = "joints-npy",
    notes: tuple[str, ...] = (),
) -> Motion:
    """A motion from joint positions ``(T, 22 | 24, 3)`` in SMPL's order, with a fitted skeleton.

    Args:
        joints: the positions; 22 joints get their hands along the forearms (:func:`hands_along_forearms`).
        fps: the frame rate (default HumanML3D's 20).
        unit: their unit (a name of :data:`~mtvcrafter.motion.units.UNITS` or metres per unit); default
            (None or ``"auto"``): detected from the skeleton's size (metres for HumanML3D).
        up: their up axis (``"Y"``, ``"Z"``, ``"-Y"`` …); default (None or ``"auto"``): Y, unless the body
            clearly stands along another axis (:func:`~mtvcrafter.motion.placement.choose_up`).
    """
    array = np.asarray(joints)
    check_joint_array(array, source)
    points = array.astype(np.float64)
    notes = list(notes)
    if points.shape[1] == BODY_JOINTS:
        points = hands_along_forearms(points)
        notes.append(
            f"SMPL's first 22 joints; the hands placed along the forearms (wrist + {HAND_TO_FOREARM:.2f} × "
            "elbow→wrist, the neutral SMPL body's hand-to-forearm ratio)"
        )
    scale, unit_note = choose_unit(points, unit, "auto")
    axis, up_note = choose_up(points, up, "Y", detect=True)
    world = points * scale @ up_to_z(axis).T
    _, _, joints_mm = place_in_front_of_camera(world)
    if fps is None:
        fps = HUMANML3D_FPS
        notes.append(f"the file stores no frame rate; {HUMANML3D_FPS:g} fps assumed (HumanML3D's)")
    else:
        notes.append(f"the file stores no frame rate; {fps:g} fps as given")
    motion = Motion(
        joints=joints_mm,
        fps=fps,
        image_size=DEFAULT_IMAGE_SIZE,
        name=name,
        source=source,
        source_format=source_format,
        notes=(*notes, unit_note, up_note, PLACEMENT_NOTE),
    )
    fit = inverse_kinematics(motion.joints, mode="fit")
    return replace(
        with_skeleton(motion, fit),
        notes=(
            *motion.notes,
            f"rigid skeleton fitted by inverse kinematics (mean per-joint error {fit.mean_error:.2f} mm)",
        ),
    )


class NpyHeader(NamedTuple):
    """What an ``.npy`` file's header says: the array's shape, Fortran order and element type, and where its
    data (or, for Python objects, its pickle) starts."""

    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype
    offset: int


def read_npy_header(path: str | Path) -> NpyHeader:
    """The header of an ``.npy`` file (nothing after it is read); MotionError for anything else."""
    source = str(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(6)
            if head != b"\x93NUMPY":
                what = "the file is empty" if not head else f"it starts with {head!r}"
                raise MotionError(f"not an .npy array ({what})", source=source)
            handle.seek(0)
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                raise MotionError(f"an .npy array of format version {version[0]}.{version[1]}", source=source)
            return NpyHeader(tuple(shape), bool(fortran), dtype, handle.tell())
    except MotionError:
        raise
    except OSError as exc:
        raise MotionError(f"cannot read the file ({exc.strerror or one_line(exc)})", source=source) from None
    except Exception as exc:  # numpy's header parser on damaged text: ValueError, SyntaxError, TypeError …
        raise MotionError(f"not a readable .npy header ({one_line(exc)})", source=source) from None


def read_joints_npy(
    path: str | Path,
    header: NpyHeader | None = None,
    *,
    fps: float | None = None,
    unit: str | float | None = None,
    up: str | None = None,
) -> Motion:
    """A clip of joint positions ``(T, 22 | 24, 3)`` from an ``.npy`` of numbers (HumanML3D's ``new_joints``),
    checked from its header before its data is read; see :func:`motion_from_joint_positions` for the options."""
    path = Path(path)
    source = str(path)
    shape, fortran, dtype, offset = header or read_npy_header(path)
    if dtype.hasobject or dtype.names is not None or dtype.subdtype is not None or dtype.kind not in "fiu":
        raise MotionError(f"expected joint positions (numbers), got element type {dtype.str}", source=source)
    if len(shape) == 3 and shape[1:] in ((BODY_JOINTS, 3), (NUM_JOINTS, 3)) and shape[0] > MAX_FRAMES:
        raise MotionError(
            f"{shape[0]:,} frames is more than the {MAX_FRAMES:,} accepted; split the motion", source=source
        )
    count = math.prod(shape)
    if count > MAX_FRAMES * NUM_JOINTS * 3:
        raise MotionError(f"an array of shape {shape} is far larger than a motion", source=source)
    nbytes = count * dtype.itemsize
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            raw = handle.read(nbytes)
    except OSError as exc:
        raise MotionError(f"cannot read the file ({exc.strerror or one_line(exc)})", source=source) from None
    if len(raw) < nbytes:
        raise MotionError(f"the file is truncated ({len(raw):,} of {nbytes:,} bytes)", source=source)
    array = np.frombuffer(raw, dtype=dtype, count=count).reshape(shape, order="F" if fortran else "C")
    return motion_from_joint_positions(array, fps=fps, unit=unit, up=up, name=path.stem, source=source)
