"""The camera model of MTVCrafter motion: OpenCV axes, millimetres, 55° across the larger side.

Camera space: x to the right of the image, y down, z forward (depth). A pinhole with the principal
point at the image centre and ``f = max(H, W) / (2 tan(fov / 2))`` (NLF's default).
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_FOV_DEG = 55.0
#: Image size ``(H, W)`` assumed for motions that do not carry one (a square, like the model's input).
DEFAULT_IMAGE_SIZE = (1024, 1024)


def focal_length(image_size: tuple[int, int], fov_deg: float = DEFAULT_FOV_DEG) -> float:
    """Focal length in pixels for an ``(H, W)`` image whose larger side spans ``fov_deg``."""
    height, width = image_size
    return max(height, width) / (2.0 * math.tan(math.radians(fov_deg) / 2.0))


def project(points_mm: np.ndarray, image_size: tuple[int, int], fov_deg: float = DEFAULT_FOV_DEG) -> np.ndarray:
    """Pixel coordinates ``(..., 2)`` (u to the right, v down) of camera-space points ``(..., 3)``.

    Points at or behind the camera (z ≤ 1 mm) come out as NaN.
    """
    points = np.asarray(points_mm, dtype=np.float64)
    height, width = image_size
    f = focal_length(image_size, fov_deg)
    z = points[..., 2]
    safe_z = np.where(z > 1.0, z, np.nan)
    u = f * points[..., 0] / safe_z + width / 2.0
    v = f * points[..., 1] / safe_z + height / 2.0
    return np.stack([u, v], axis=-1)


def blender_camera_to_opencv(points_cam_m: np.ndarray) -> np.ndarray:
    """Points in a Blender camera's local frame (metres; looks down -Z, +Y up) → camera space in mm."""
    points = np.asarray(points_cam_m, dtype=np.float64)
    return np.stack([points[..., 0], -points[..., 1], -points[..., 2]], axis=-1) * 1000.0


def opencv_to_blender_camera(points_mm: np.ndarray) -> np.ndarray:
    """Camera space in mm → points in a Blender camera's local frame (metres)."""
    points = np.asarray(points_mm, dtype=np.float64) / 1000.0
    return np.stack([points[..., 0], -points[..., 1], -points[..., 2]], axis=-1)


def frame_person_z_up(
    joints_world: np.ndarray,
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    fov_deg: float = DEFAULT_FOV_DEG,
    margin: float = 0.85,
    left: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A level camera in front of a performer given in a Z-up world; how AMASS and BVH clips are shown.

    The camera looks horizontally at the performer from the side they face in the first frame
    (their hips' left-right axis — or ``left``, the performer's left in the world, if given — turned
    a quarter turn), at the height of the middle of the clip's joints, and far enough that every
    joint of every frame fits within ``margin`` of the image. Returns ``rotation (3, 3)`` (world →
    camera axes) and ``position (3,)`` in world units; camera-space points are
    ``(p - position) @ rotation.T``.
    """
    joints = np.asarray(joints_world, dtype=np.float64)
    left = joints[0, 1] - joints[0, 2] if left is None else np.asarray(left, dtype=np.float64)
    up = np.array([0.0, 0.0, 1.0])
    facing = np.cross(left, up)
    facing[2] = 0.0
    if np.linalg.norm(facing) < 1e-9:
        facing = np.array([0.0, -1.0, 0.0])
    facing /= np.linalg.norm(facing)
    z_axis = -facing  # the camera looks at the performer's front
    y_axis = -up
    x_axis = np.cross(y_axis, z_axis)
    rotation = np.stack([x_axis, y_axis, z_axis])
    flat = joints.reshape(-1, 3)
    lo, hi = flat.min(axis=0), flat.max(axis=0)
    centre = (lo + hi) / 2.0
    local = (flat - centre) @ rotation.T
    height, width = image_size
    f = focal_length(image_size, fov_deg)
    half_w = margin * width / 2.0 / f
    half_h = margin * height / 2.0 / f
    # Distance so that every point's |x| / z fits within half_w, and |y| / z within half_h.
    need = np.maximum(np.abs(local[:, 0]) / half_w, np.abs(local[:, 1]) / half_h) - local[:, 2]
    distance = max(float(need.max()), 1e-6)
    position = centre - z_axis * distance
    return rotation, position
