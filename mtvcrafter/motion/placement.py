"""A mocap clip with no camera of its own, in front of the default camera: its world turned Z up (the up axis
given, the format's, or the one the body clearly stands along), then the level camera of
:func:`~mtvcrafter.motion.camera.frame_person_z_up` — the placement AMASS, SMPL parameter and joint-position
files share. numpy only.
"""

from __future__ import annotations

import numpy as np

from .bone_maps import AXES
from .camera import DEFAULT_FOV_DEG, DEFAULT_IMAGE_SIZE, frame_person_z_up
from .errors import MotionError
from .skeleton_mapping import axes_matrix, body_up

PLACEMENT_NOTE = "placed in front of a default camera (level, facing the performer, whole clip in view)"


def up_to_z(up: str) -> np.ndarray:
    """``(3, 3)`` rotation taking the axis ``up`` (``"Y"``, ``"-Z"`` …) to +Z (for ``"Y"``: ``(x, y, z) → (x, −z,
    y)``, as Blender's BVH importer turns a Y-up file)."""
    up = up.upper()
    forward = "-Y" if up[-1] == "Z" else "Z"
    return axes_matrix(up, forward)


def choose_up(joints: np.ndarray, up: str | None, default: str, detect: bool) -> tuple[str, str]:
    """The up axis of SMPL joints ``(F, 24, 3)`` in a file's world, and a note saying why.

    Rule: an explicit ``up`` wins; otherwise ``default`` (the format's), unless ``detect`` and the body
    clearly stands along another axis both over the clip and in its first frame
    (:func:`~mtvcrafter.motion.skeleton_mapping.body_up`) — data saved in a camera's axes (Y down), or a
    Z-up world.
    """
    if up is not None and up.lower() != "auto":
        if up.upper() not in AXES:
            raise MotionError(f"an axis is one of {', '.join(AXES)} or auto, got {up!r}", field="up")
        return up.upper(), f"axes: {up.upper()} up (as given)"
    if detect:
        standing = body_up(joints)
        if standing is not None and standing != default and body_up(joints[:1]) == standing:
            return standing, (
                f"axes: {standing} up (detected: the body stands along {standing}, not the format's {default}; "
                "--up chooses)"
            )
    return default, f"axes: {default} up (the format's)"


def place_in_front_of_camera(
    world_m: np.ndarray,
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    fov_deg: float = DEFAULT_FOV_DEG,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Joints ``(F, 24, 3)`` of a Z-up world in metres seen by the default camera: ``rotation (3, 3)`` (world →
    camera axes), ``position (3,)`` (metres) and the camera-space joints in millimetres."""
    rotation, position = frame_person_z_up(world_m, image_size, fov_deg)
    # (p − position) @ rotation.T in mm, as one product and one subtraction
    joints_mm = np.einsum("...j,kj->...k", world_m, rotation * 1000.0)
    joints_mm -= rotation @ position * 1000.0
    return rotation, position, joints_mm
