"""A BVH file as a :class:`~mtvcrafter.motion.Motion`: its joints mapped onto SMPL-24, in Blender's world,
seen by a camera. numpy only.

The way from a rig's joints to a Motion, which :func:`motion_from_bvh` takes for a BVH file:

1. :func:`~mtvcrafter.motion.bone_map_detection.detect_rig_map` picks the bone map that fits the rig's
   names, checked against (or, where no map names all 24 joints, replaced by) the mapping by the skeleton's
   structure (:mod:`~mtvcrafter.motion.structure_mapping`); or the user names one (``structure`` too);
2. :func:`~mtvcrafter.motion.skeleton_mapping.map_points` gives the 24 joints per frame, in the rig's
   unit and axes;
3. :func:`~mtvcrafter.motion.skeleton_mapping.rig_to_world` turns them into Blender's world (Z up,
   metres), the axes from :func:`~mtvcrafter.motion.skeleton_mapping.choose_axes` and the unit from
   :func:`~mtvcrafter.motion.units.choose_unit`;
4. a camera — the user's, or :func:`~mtvcrafter.motion.camera.default_camera` — gives camera-space
   millimetres (:func:`~mtvcrafter.motion.camera.world_to_camera_mm`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .bone_map_detection import detect_rig_map, fit_bone_map, missing_joints_message, structure_detection
from .bone_maps import BoneMap, get_bone_map, load_bone_maps, skipped_note
from .bvh import bvh_end_positions, bvh_forward_kinematics, read_bvh
from .camera import (
    DEFAULT_FOV_DEG,
    DEFAULT_IMAGE_SIZE,
    CameraFile,
    CameraPlacement,
    default_camera,
    project,
    read_camera,
    world_to_camera_mm,
)
from .errors import MotionError
from .motion import Motion
from .skeleton import JOINT_INDEX
from .skeleton_mapping import choose_axes, map_points, rig_to_world
from .structure_mapping import STRUCTURE_ID
from .units import choose_unit


def _file_fps(frame_time: float) -> float:
    """The frame rate of a ``Frame Time``; within 0.02 % of a whole number (a frame time written with six
    decimals, 0.033333 for 30 fps) it is that number."""
    fps = 1.0 / frame_time
    return float(round(fps)) if abs(fps - round(fps)) <= 2e-4 * fps else fps


#: World joints farther than this from where the clip starts are damaged values, not motion: the motion is
#: stored as float32 millimetres, which keep about a millimetre up to here.
MAX_TRAVEL_M = 10_000.0


def rest_points(skeleton: Any) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The rest pose of a BVH hierarchy (:class:`~mtvcrafter.motion.bvh.BvhSkeleton`): every joint at its
    ``OFFSET`` with no rotation — heads ``(1, J, 3)`` and End Sites ``(1, 3)`` by joint index."""
    heads = np.zeros((skeleton.num_joints, 3))
    for j, parent in enumerate(skeleton.parents):
        heads[j] = skeleton.offsets[j] + (heads[parent] if parent >= 0 else 0.0)
    ends = {j: (heads[j] + np.asarray(offset, dtype=np.float64))[None] for j, offset in skeleton.end_sites.items()}
    return heads[None], ends


def motion_from_bvh(
    path: str | Path,
    bone_map: str | BoneMap | Mapping[str, Any] | None = None,
    unit: str | float | None = None,
    camera: CameraPlacement | CameraFile | str | Path | None = None,
    fps: float | None = None,
    *,
    up: str | None = None,
    image_size: tuple[int, int] | None = None,
    fov_deg: float | None = None,
    maps: Mapping[str, BoneMap] | None = None,
) -> Motion:
    """A BVH file as a Motion: its joints mapped onto SMPL-24, in Blender's world, seen by a camera.

    Args:
        path: the ``.bvh`` file.
        bone_map: ``None``/``"auto"`` (detected from the names and the skeleton, :func:`detect_rig_map`),
            ``"structure"`` (from the skeleton alone, never the names), a map id, a BoneMap, its JSON form, or
            the path of a bone-map ``.json`` file.
        unit: the file's unit (a name of :data:`~mtvcrafter.motion.units.UNITS` or metres per unit); default:
            :func:`choose_unit`.
        camera: a placement in Blender's world, a :class:`CameraFile`, or a camera JSON file
            (:func:`read_camera`); default :func:`default_camera`.
        fps: overrides the file's frame rate (``1 / Frame Time``, rounded to a whole number within 0.02 %).
        up: the file's up axis (``"Y"``, ``"Z"``, ``"-Y"`` …); default (None or ``"auto"``): the bone
            map's, unless the skeleton clearly stands along another axis (:func:`choose_axes`).
        image_size, fov_deg: the camera's image ``(H, W)`` and view across its larger side (default:
            the camera file's, else 1024×1024 and 55°).
        maps: the bone maps to detect among (default :func:`load_bone_maps`; a broken bone-map file is
            left out, with a warning in the notes, and choosing it by id raises its error).

    The motion's ``notes`` say which bone map (and how sure; for a mapping by structure, what it inferred),
    the unit and why, the axes, the bones left out and the camera. A file with no frames, or with values that
    put a joint more than 10 km away, raises MotionError naming the line.
    """
    source = str(path)
    bvh = read_bvh(path)
    if bvh.num_frames == 0:
        raise MotionError(
            f"line {bvh.frames_line}: 'Frames: 0': the file holds a skeleton but no motion; export it with "
            "its animation (at least one frame)",
            source=source,
        )
    skipped: dict[str, MotionError] = {}
    if maps is None:
        maps = load_bone_maps(skipped=skipped)
    names = list(bvh.skeleton.names)
    end_names = [names[j] for j in bvh.skeleton.end_sites]
    positions, rotations = bvh_forward_kinematics(bvh)
    ends = bvh_end_positions(bvh, positions, rotations)
    rest_heads, rest_ends = rest_points(bvh.skeleton)
    rig = (names, bvh.skeleton.parents, rest_heads[0], {j: end[0] for j, end in rest_ends.items()})
    if bone_map is None or (isinstance(bone_map, str) and bone_map.lower() == "auto"):
        detection = detect_rig_map(*rig, maps, poses=(positions, ends), source=source)
        chosen = detection.bone_map
        how = f"detected, confidence {detection.confidence:.2f}"
    elif isinstance(bone_map, str) and bone_map.lower() == STRUCTURE_ID:
        detection = structure_detection(*rig, poses=(positions, ends), source=source)
        chosen = detection.bone_map
        how = f"as chosen, confidence {detection.confidence:.2f}"
    else:
        chosen = get_bone_map(bone_map, maps, source, skipped=skipped)
        detection = fit_bone_map(chosen, names, end_names)
        if detection.missing_joints:
            raise MotionError(missing_joints_message(chosen, detection.missing_joints), source=source, field="bone_map")
        how = "as chosen"
    rig_points = map_points(names, positions, chosen, ends=ends)
    rest = map_points(names, rest_heads, chosen, ends=rest_ends)
    rig_up, rig_forward, axes_note = choose_axes(chosen, rig_points, rest, up)
    scale, unit_note = choose_unit(rig_points, unit, chosen.unit)
    world = rig_to_world(rig_points, (rig_up, rig_forward), scale)
    _check_travel(world, bvh, source)

    camera_note = "seen by the camera given"
    given_camera = camera is not None
    if isinstance(camera, str | Path):
        camera = read_camera(camera)
    if isinstance(camera, CameraFile):
        image_size = image_size or camera.image_size
        fov_deg = fov_deg or camera.fov_deg
        camera = camera.placement
    image_size = tuple(image_size) if image_size else DEFAULT_IMAGE_SIZE  # type: ignore[assignment]
    fov_deg = float(fov_deg) if fov_deg else DEFAULT_FOV_DEG
    if camera is None:
        camera = default_camera(world, image_size, fov_deg)  # type: ignore[arg-type]
        camera_note = (
            "placed in front of a default camera (level, facing the performer, whole clip in view; "
            f"{image_size[1]}x{image_size[0]}, {fov_deg:g}°)"
        )
    joints = world_to_camera_mm(world, camera)
    unused = detection.unmapped_bones
    notes = [
        f"BVH: {len(names)} joints, {bvh.num_frames} frames, Frame Time {bvh.frame_time:.7g} s "
        f"({_file_fps(bvh.frame_time):.6g} fps)",
        f"bone map: {'by the skeleton' if chosen.id == STRUCTURE_ID else chosen.name} ({chosen.id}, {how})",
        *detection.notes,
        unit_note,
        f"{axes_note} → Blender's Z up, facing −Y",
        *bvh.notes,
        *(skipped_note(error) for error in skipped.values()),
    ]
    if unused:
        listed = ", ".join(unused[:12]) + (f" and {len(unused) - 12} more" if len(unused) > 12 else "")
        notes.append(f"{len(unused)} rig bone(s) not used: {listed}")
    notes.append(camera_note)
    if given_camera:
        distance = float(np.abs(joints).max())
        if not distance <= MAX_TRAVEL_M * 1000.0:
            raise MotionError(
                f"the camera given is {distance / 1000:.3g} m from the performer (more than {MAX_TRAVEL_M / 1000:g} "
                "km): check its position (metres, in Blender's world)",
                source=source,
                field="camera",
            )
        notes += _visibility_warning(joints, image_size, fov_deg)  # type: ignore[arg-type]
    return Motion(
        joints=joints,
        fps=float(fps) if fps else _file_fps(bvh.frame_time),
        image_size=image_size,  # type: ignore[arg-type]
        fov_deg=fov_deg,
        name=Path(path).stem,
        source=source,
        source_format="bvh",
        notes=tuple(notes),
    )


def _check_travel(world: np.ndarray, bvh: Any, source: str) -> None:
    """MotionError naming the frame and its line where a joint lies beyond :data:`MAX_TRAVEL_M` from the
    first frame's pelvis (or is not a number): damaged values, or a unit wildly wrong."""
    with np.errstate(invalid="ignore", over="ignore"):
        distance = np.linalg.norm(world - world[:1, JOINT_INDEX["pelvis"]][:, None], axis=-1).max(axis=-1)
    bad = np.flatnonzero(~(distance <= MAX_TRAVEL_M))
    if bad.size:
        frame = int(bad[0])
        far = f"{distance[frame]:.3g} m" if np.isfinite(distance[frame]) else "infinitely far (numbers overflow)"
        raise MotionError(
            f"{bvh.line_of_frame(frame)}: a joint lies {far} from where the clip starts (more than "
            f"{MAX_TRAVEL_M / 1000:g} km; {bad.size} frame(s) like this): the values are damaged, or the unit is "
            "wrong (--unit); export the file again",
            source=source,
        )


def _visibility_warning(joints_mm: np.ndarray, image_size: tuple[int, int], fov_deg: float) -> list[str]:
    """A warning note when a camera that was given does not see every joint of every frame."""
    height, width = image_size
    uv = project(joints_mm, image_size, fov_deg)
    with np.errstate(invalid="ignore"):
        inside = (uv[..., 0] >= 0) & (uv[..., 0] <= width) & (uv[..., 1] >= 0) & (uv[..., 1] <= height)
    if not inside.all():
        behind = float((joints_mm[..., 2] <= 1.0).mean())
        return [
            f"warning: the camera given sees {inside.mean():.0%} of the joint positions ({behind:.0%} are behind "
            f"it; {int((~inside.all(axis=1)).sum())} of {len(joints_mm)} frames are not fully in view); check the "
            "camera"
        ]
    tall = float(np.median(np.ptp(uv[..., 1], axis=1))) / height
    if tall < 0.05:
        return [
            f"warning: the performer is only {tall:.1%} of the image's height through the camera given (too far "
            "away for the model to see the pose); check the camera"
        ]
    return []
