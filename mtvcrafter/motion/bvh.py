"""Writing an SMPL-24 motion with rotations as BVH (numpy only).

The hierarchy is the SMPL skeleton (offsets from ``rest_offsets``, body frame: Y up), in
centimetres; the root has position and rotation channels, the other joints rotation channels, all
Euler angles in ZXY order (``R = Rz · Rx · Ry``), degrees. Root positions are the motion's
``root_translation`` (its camera frame) in centimetres.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import MotionError
from .motion import Motion
from .rotations import quaternion_to_matrix
from .skeleton import CHILDREN, JOINT_NAMES

LEAF_END_CM = 8.0


def matrix_to_euler_zxy(matrix: np.ndarray) -> np.ndarray:
    """``(..., 3, 3)`` rotations → ``(..., 3)`` angles (z, x, y) in degrees with ``R = Rz · Rx · Ry``."""
    m = np.asarray(matrix, dtype=np.float64)
    x = np.arcsin(np.clip(m[..., 2, 1], -1.0, 1.0))
    z = np.arctan2(-m[..., 0, 1], m[..., 1, 1])
    y = np.arctan2(-m[..., 2, 0], m[..., 2, 2])
    return np.degrees(np.stack([z, x, y], axis=-1))


def write_bvh(motion: Motion, path: str | Path) -> Path:
    """Write ``motion`` (which must carry rotations, e.g. from ``motion convert --fit``) as BVH."""
    if motion.rotations is None or motion.rest_offsets is None or motion.root_translation is None:
        raise MotionError("BVH needs rotations: fit the motion first (motion convert --fit)", field="rotations")
    offsets_cm = np.asarray(motion.rest_offsets, dtype=np.float64) / 10.0
    lines: list[str] = ["HIERARCHY"]
    order: list[int] = []

    def joint(j: int, depth: int) -> None:
        pad = "  " * depth
        order.append(j)
        keyword = "ROOT" if j == 0 else "JOINT"
        offset = np.zeros(3) if j == 0 else offsets_cm[j]
        lines.append(f"{pad}{keyword} {JOINT_NAMES[j]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {offset[0]:.4f} {offset[1]:.4f} {offset[2]:.4f}")
        if j == 0:
            lines.append(f"{pad}  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation")
        else:
            lines.append(f"{pad}  CHANNELS 3 Zrotation Xrotation Yrotation")
        for c in CHILDREN[j]:
            joint(c, depth + 1)
        if not CHILDREN[j]:
            end = offsets_cm[j] / max(np.linalg.norm(offsets_cm[j]), 1e-9) * LEAF_END_CM
            lines.append(f"{pad}  End Site")
            lines.append(f"{pad}  {{")
            lines.append(f"{pad}    OFFSET {end[0]:.4f} {end[1]:.4f} {end[2]:.4f}")
            lines.append(f"{pad}  }}")
        lines.append(f"{pad}}}")

    joint(0, 0)
    angles = matrix_to_euler_zxy(quaternion_to_matrix(motion.rotations))[:, order]  # (T, 24, 3)
    root = np.asarray(motion.root_translation, dtype=np.float64) / 10.0
    values = np.concatenate([root, angles.reshape(len(root), -1)], axis=1)
    lines += ["MOTION", f"Frames: {motion.num_frames}", f"Frame Time: {1.0 / motion.fps:.6f}"]
    path = Path(path)
    with open(path, "w", encoding="ascii") as f:
        f.write("\n".join(lines) + "\n")
        np.savetxt(f, values, fmt="%.4f")
    return path
