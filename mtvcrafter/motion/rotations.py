"""Batched rotation conversions in numpy (matrices act on column vectors; quaternions are w, x, y, z)."""

from __future__ import annotations

import numpy as np


def axis_angle_to_matrix(axis_angle: np.ndarray) -> np.ndarray:
    """Rodrigues' formula: ``(..., 3)`` axis times angle (radians) → ``(..., 3, 3)``."""
    aa = np.asarray(axis_angle, dtype=np.float64)
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)
    safe = np.where(angle > 1e-12, angle, 1.0)
    axis = aa / safe
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(*aa.shape[:-1], 3, 3)
    s = np.sin(angle)[..., None]
    c = np.cos(angle)[..., None]
    eye = np.broadcast_to(np.eye(3), k.shape)
    return eye + s * k + (1.0 - c) * (k @ k)


def quaternion_to_matrix(quaternion: np.ndarray) -> np.ndarray:
    """``(..., 4)`` quaternions (w, x, y, z), normalised first → ``(..., 3, 3)``."""
    q = np.asarray(quaternion, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    m = np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        axis=-1,
    )  # fmt: skip
    return m.reshape(*q.shape[:-1], 3, 3)


def matrix_to_quaternion(matrix: np.ndarray) -> np.ndarray:
    """``(..., 3, 3)`` rotation matrices → ``(..., 4)`` unit quaternions (w, x, y, z) with w ≥ 0.

    Uses the largest of the four candidate denominators, so it is stable for every rotation.
    """
    m = np.asarray(matrix, dtype=np.float64)
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    candidates = np.stack(
        [
            1.0 + m00 + m11 + m22,
            1.0 + m00 - m11 - m22,
            1.0 - m00 + m11 - m22,
            1.0 - m00 - m11 + m22,
        ],
        axis=-1,
    )
    best = np.argmax(candidates, axis=-1)
    r = np.sqrt(np.maximum(np.take_along_axis(candidates, best[..., None], axis=-1)[..., 0], 1e-300))
    d21, d12 = m[..., 2, 1], m[..., 1, 2]
    d02, d20 = m[..., 0, 2], m[..., 2, 0]
    d10, d01 = m[..., 1, 0], m[..., 0, 1]
    options = np.stack(
        [
            np.stack([r, (d21 - d12) / r, (d02 - d20) / r, (d10 - d01) / r], axis=-1),
            np.stack([(d21 - d12) / r, r, (d01 + d10) / r, (d02 + d20) / r], axis=-1),
            np.stack([(d02 - d20) / r, (d01 + d10) / r, r, (d12 + d21) / r], axis=-1),
            np.stack([(d10 - d01) / r, (d02 + d20) / r, (d12 + d21) / r, r], axis=-1),
        ],
        axis=-2,
    )
    q = np.take_along_axis(options, best[..., None, None], axis=-2)[..., 0, :] * 0.5
    q = np.where(q[..., :1] < 0, -q, q)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking direction ``a`` onto direction ``b``; ``(..., 3)`` each → ``(..., 3, 3)``.

    For opposite directions it turns 180° about an axis perpendicular to ``a``; where either
    vector is zero there is no direction to turn to, and it gives the identity.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a_norm = np.linalg.norm(a, axis=-1, keepdims=True)
    b_norm = np.linalg.norm(b, axis=-1, keepdims=True)
    defined = (a_norm > 1e-12) & (b_norm > 1e-12)
    a = np.where(defined, a / np.maximum(a_norm, 1e-300), [1.0, 0.0, 0.0])
    b = np.where(defined, b / np.maximum(b_norm, 1e-300), [1.0, 0.0, 0.0])
    axis = np.cross(a, b)
    sin = np.linalg.norm(axis, axis=-1, keepdims=True)
    cos = np.sum(a * b, axis=-1, keepdims=True)
    # Near 180° the cross product vanishes: pick any axis perpendicular to a.
    helper = np.where(np.abs(a[..., :1]) < 0.9, np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))
    perp = np.cross(a, helper)
    perp /= np.linalg.norm(perp, axis=-1, keepdims=True)
    axis = np.where(sin > 1e-9, axis / np.where(sin > 1e-9, sin, 1.0), perp)
    angle = np.arctan2(sin, cos)
    return axis_angle_to_matrix(axis * angle)


def frame_from_two(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """Orthonormal frames ``(..., 3, 3)`` whose columns are ``primary``, the part of ``secondary``
    perpendicular to it, and their cross product.

    Where ``primary`` is zero or ``secondary`` parallel to it the frame is undefined: it is NaN there
    (silently), for the caller to replace.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        e1 = primary / np.linalg.norm(primary, axis=-1, keepdims=True)
        e2 = secondary - np.sum(secondary * e1, axis=-1, keepdims=True) * e1
        e2 = e2 / np.linalg.norm(e2, axis=-1, keepdims=True)
        e3 = np.cross(e1, e2)
    frames = np.stack([e1, e2, e3], axis=-1)
    small = (np.linalg.norm(primary, axis=-1) < 1e-12) | ~np.isfinite(frames).all(axis=(-1, -2))
    return np.where(small[..., None, None], np.nan, frames)


def best_fit_rotation(source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Rotation ``R`` minimising ``sum_i w_i |R source_i - target_i|^2`` (Kabsch, no translation).

    ``source``, ``target``: ``(..., N, 3)``; returns ``(..., 3, 3)`` with determinant +1.
    """
    if weights is not None:
        source = source * np.asarray(weights)[..., None]
    h = np.swapaxes(source, -1, -2) @ target  # (..., 3, 3): sum_i s_i t_i^T
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(np.swapaxes(vt, -1, -2) @ np.swapaxes(u, -1, -2)))
    correction = np.ones(h.shape[:-1])
    correction[..., -1] = d
    return np.swapaxes(vt, -1, -2) @ (correction[..., None] * np.swapaxes(u, -1, -2))
