"""Clean Motion on an SMPL armature: its motion read as Export reads it (over the frames its action keys, through its
camera), cleaned by :func:`mtvcrafter.motion.clean.clean_motion` (joints smoothed, feet planted while they touch the
ground), and keyed again as an import keys it (rotations fitted to the cleaned joints on the armature's own
skeleton), on the same frames. A plain function (:func:`clean_armature`); the operator only reads its properties."""

from __future__ import annotations

import numpy as np

from mtvcrafter.motion import MotionError
from mtvcrafter.motion.camera import BLENDER_CAMERA_AXES, CameraPlacement
from mtvcrafter.motion.clean import CleanReport, clean_motion
from mtvcrafter.motion.kinematics import inverse_kinematics

from .armature import key_pose, keyed_range, rest_offsets_mm
from .import_export import Report, armature_or_active, motion_camera, motion_from_scene, print_report


def placement_in_armature(armature, camera) -> CameraPlacement:
    """``camera``'s placement (OpenCV axes, as :func:`~mtvcrafter.motion.rig.pose_channels` takes it) in
    ``armature``'s space: the keys pose the armature as seen by the camera wherever the armature object stands."""
    matrix = armature.matrix_world.inverted() @ camera.matrix_world
    world = np.array(matrix.normalized())
    return CameraPlacement(world[:3, :3] @ BLENDER_CAMERA_AXES, np.array(matrix.translation))


def clean_armature(
    context,
    armature=None,
    *,
    smooth: float = 0.5,
    feet: bool = True,
    report: Report = print_report,
) -> CleanReport:
    """Clean ``armature``'s motion (default: the active SMPL armature): its joints over the frames its action keys
    (constraints and drivers included, as Export reads them), smoothed by ``smooth`` (0: not at all … 1: strongly)
    and with ``feet`` planted while they touch the ground; then its rotation and root keys are written again on
    every one of those frames. Reports how far the joints moved. Returns the clean-up's report."""
    armature = armature_or_active(context, armature)
    keyed = keyed_range(armature)
    if keyed is None:
        raise MotionError(f"{armature.name} has no keys: there is no motion to clean")
    camera = motion_camera(context.scene, armature)
    if camera is None:
        raise MotionError("the scene has no camera: the motion is read through the scene camera")
    motion = motion_from_scene(context, armature, frames=keyed)
    cleaned, result = clean_motion(motion, smooth=smooth, feet=feet)
    fit = inverse_kinematics(cleaned.joints, rest_offsets=rest_offsets_mm(armature), mode="fit")
    key_pose(armature, fit, placement_in_armature(armature, camera), keyed[0])
    context.scene.frame_set(context.scene.frame_current)  # the pose shown is the new one
    report({"INFO"}, f"{armature.name}, frames {keyed[0]}–{keyed[1]}: {result.summary()}")
    return result
