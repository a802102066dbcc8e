"""The camera model of MTVCrafter motion: OpenCV axes, millimetres, 55° across the larger side — and where
cameras stand in Blender's world. numpy only.

Camera space: x to the right of the image, y down, z forward (depth). A pinhole with the principal
point at the image centre and ``f = max(H, W) / (2 tan(fov / 2))`` (NLF's default).

The world is Blender's: Z up, metres. A :class:`CameraPlacement` holds a camera's OpenCV axes and
position in it (:func:`world_to_camera_mm` and :func:`camera_to_world_m` map points between the two);
a Blender camera object's own axes (x right, y up, looking down −z) are OpenCV's with y and z negated
(:data:`BLENDER_CAMERA_AXES`). The cameras a motion gets: :func:`camera_for_motion` (importing a motion
into Blender), :func:`default_camera` / :func:`frame_person_z_up` (a mocap clip with no camera of its
own), or a camera JSON file (:func:`read_camera`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MotionError
from .skeleton import JOINT_INDEX

DEFAULT_FOV_DEG = 55.0
#: Image size ``(H, W)`` assumed for motions that do not carry one (a square, like the model's input).
DEFAULT_IMAGE_SIZE = (1024, 1024)
#: OpenCV camera axes → world, for the level camera looking along +Y.
CAMERA_TO_WORLD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
#: The Blender camera object's own axes (x right, y up, looking down −z) relative to OpenCV's.
BLENDER_CAMERA_AXES = np.diag([1.0, -1.0, -1.0])


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


@dataclass(frozen=True)
class CameraPlacement:
    """``rotation`` maps OpenCV camera axes to the world; ``position`` in metres."""

    rotation: np.ndarray
    position: np.ndarray

    @property
    def blender_rotation(self) -> np.ndarray:
        """The Blender camera object's rotation matrix (its local −Z looks where OpenCV's +z does)."""
        return self.rotation @ BLENDER_CAMERA_AXES


def camera_to_world_m(points_mm: np.ndarray, camera: CameraPlacement) -> np.ndarray:
    """OpenCV camera-space points (millimetres) → world points in metres (the import direction)."""
    return np.asarray(points_mm, dtype=np.float64) / 1000.0 @ camera.rotation.T + camera.position


def world_to_camera_mm(points_m: np.ndarray, camera: CameraPlacement) -> np.ndarray:
    """World points (metres) → OpenCV camera space in millimetres (the export direction)."""
    return (np.asarray(points_m, dtype=np.float64) - camera.position) @ camera.rotation * 1000.0


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
    # one coordinate at a time, as contiguous runs: a reduction across the rows of an (N, 3) array is far slower
    x, y, z = np.moveaxis(joints.reshape(-1, 3), -1, 0).copy()
    centre = np.array([(axis.min() + axis.max()) / 2.0 for axis in (x, y, z)])
    x -= centre[0]
    y -= centre[1]
    z -= centre[2]
    height, width = image_size
    f = focal_length(image_size, fov_deg)
    half_w = margin * width / 2.0 / f
    half_h = margin * height / 2.0 / f
    # Distance so that every point's |x| / z fits within half_w, and |y| / z within half_h (in the camera's axes).
    across, down, along = (x * axis[0] + y * axis[1] + z * axis[2] for axis in rotation)
    need = np.maximum(np.abs(across) / half_w, np.abs(down) / half_h) - along
    distance = max(float(need.max()), 1e-6)
    position = centre - z_axis * distance
    return rotation, position


def default_camera(
    world_joints_m: np.ndarray,
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    fov_deg: float = DEFAULT_FOV_DEG,
) -> CameraPlacement:
    """A level camera in front of the performer that keeps the whole clip in view.

    Placement: it looks horizontally at the side the performer faces in the first frame (the mean of
    their hips' and shoulders' left-to-right directions, turned a quarter turn about Z), aimed at the
    middle of the box around every joint of every frame, and far enough back that all of them fall
    within 85 % of a ``fov_deg`` view (55° across the larger side) of an ``image_size`` image
    (default 1024×1024) — the camera AMASS clips get. ``world_joints_m``: ``(F, 24, 3)``, Z up, metres.
    """
    joints = np.asarray(world_joints_m, dtype=np.float64)
    if joints.ndim == 2:
        joints = joints[None]
    left = np.zeros(3)
    for a, b in (("left_hip", "right_hip"), ("left_shoulder", "right_shoulder")):
        d = joints[0, JOINT_INDEX[a]] - joints[0, JOINT_INDEX[b]]
        d[2] = 0.0
        n = np.linalg.norm(d)
        if n > 1e-9:
            left += d / n
    rotation, position = frame_person_z_up(joints, image_size, fov_deg, left=left)
    return CameraPlacement(rotation.T.copy(), position)


def camera_for_motion(joints_mm: np.ndarray) -> CameraPlacement:
    """A level camera looking along +Y, raised so that the clip's lowest joint touches the floor."""
    joints = np.asarray(joints_mm, dtype=np.float64) / 1000.0
    world = joints.reshape(-1, 3) @ CAMERA_TO_WORLD.T
    height = -float(world[:, 2].min())
    return CameraPlacement(CAMERA_TO_WORLD.copy(), np.array([0.0, 0.0, height]))


def _vector(value: Any, src: str, key: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64) if isinstance(value, list) else None
    if array is None or array.shape != (3,) or not np.isfinite(array).all():
        raise MotionError(f"expected [x, y, z] in metres, got {json.dumps(value)[:60]}", source=src, field=key)
    return array


@dataclass(frozen=True)
class CameraFile:
    """A camera read by :func:`read_camera`: its placement, and the field of view and image size if given."""

    placement: CameraPlacement
    fov_deg: float | None = None
    image_size: tuple[int, int] | None = None


def read_camera(path: str | Path) -> CameraFile:
    """A camera from a JSON file, in Blender's world (Z up, metres)::

        {"position": [0, -4, 1], "look_at": [0, 0, 1]}                 # level unless "up" says otherwise
        {"position": [0, -4, 1], "look_at": [0, 0, 1], "up": [0, 0, 1], "fov_deg": 40, "width": 1280, "height": 720}
        {"matrix_world": [[...], [...], [...], [...]]}                  # a Blender camera's 4×4 matrix_world

    ``fov_deg`` is the view across the larger image side (55 if absent); ``width``/``height`` the image
    in pixels (1024×1024 if absent).
    """
    src = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise MotionError(f"cannot read the camera file ({exc.strerror or exc})", source=src) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MotionError(f"not valid JSON ({exc})", source=src) from None
    if not isinstance(data, dict):
        raise MotionError('expected an object such as {"position": [x, y, z], "look_at": [x, y, z]}', source=src)
    known = {"position", "look_at", "up", "matrix_world", "fov_deg", "width", "height"}
    unknown = sorted(k for k in data if k not in known and not str(k).startswith("_"))
    if unknown:
        raise MotionError(f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}", source=src)
    if "matrix_world" in data:
        matrix = np.asarray(data["matrix_world"], dtype=np.float64) if isinstance(data["matrix_world"], list) else None
        if matrix is None or matrix.shape != (4, 4) or not np.isfinite(matrix).all():
            raise MotionError("expected a 4×4 list of rows (Blender's matrix_world)", source=src, field="matrix_world")
        axes = matrix[:3, :3]
        lengths = np.linalg.norm(axes, axis=0)
        if (lengths < 1e-9).any() or np.linalg.det(axes) <= 0:
            raise MotionError("its rotation part is degenerate or mirrored", source=src, field="matrix_world")
        blender = axes / lengths
        u, _, vt = np.linalg.svd(blender)  # the nearest rotation (tolerates rounding in the file)
        blender = u @ vt
        rotation = blender @ BLENDER_CAMERA_AXES  # Blender camera axes → OpenCV's
        position = matrix[:3, 3].copy()
    else:
        for key in ("position", "look_at"):
            if key not in data:
                raise MotionError('missing (or give "matrix_world")', source=src, field=key)
        position = _vector(data["position"], src, "position")
        target = _vector(data["look_at"], src, "look_at")
        up = _vector(data["up"], src, "up") if "up" in data else np.array([0.0, 0.0, 1.0])
        z = target - position
        if np.linalg.norm(z) < 1e-9:
            raise MotionError("the camera looks at its own position", source=src, field="look_at")
        z /= np.linalg.norm(z)
        x = np.cross(z, up)
        if np.linalg.norm(x) < 1e-6:
            raise MotionError("'up' is parallel to the viewing direction", source=src, field="up")
        x /= np.linalg.norm(x)
        rotation = np.stack([x, np.cross(z, x), z], axis=1)  # columns: OpenCV x (right), y (down), z (forward)
    fov = data.get("fov_deg")
    if fov is not None and (isinstance(fov, bool) or not isinstance(fov, int | float) or not 1 <= fov <= 179):
        raise MotionError(f"must be between 1 and 179 degrees, got {fov!r}", source=src, field="fov_deg")
    size = None
    if "width" in data or "height" in data:
        w, h = data.get("width"), data.get("height")
        if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 65536 for v in (w, h)):
            raise MotionError(f"width and height must both be whole pixels, got {w!r} × {h!r}", source=src)
        size = (int(h), int(w))
    return CameraFile(CameraPlacement(rotation, position), None if fov is None else float(fov), size)
