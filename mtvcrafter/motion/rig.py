"""An SMPL-24 motion as an armature in a Z-up world (Blender's), and back — numpy only.

The Blender add-on builds bones from :func:`rest_bones`, reads back each bone's rest rotation
(``bone.matrix_local``), and keys what :func:`pose_channels` returns; exporting reads the posed bone
heads and maps them through the camera with :func:`~mtvcrafter.motion.camera.world_to_camera_mm`.

Frames and conventions:

- Motion joints are in an OpenCV camera frame (x right, y down, z forward), millimetres.
- The world is Z-up in metres. The camera placed by :func:`~mtvcrafter.motion.camera.camera_for_motion`
  is level and looks along +Y: camera ``x → X``, ``y (down) → −Z``, ``z (forward) → +Y``; it sits at
  the height that puts the lowest joint of the clip on the floor (Z = 0).
- The armature object sits at the world origin unrotated (armature space = world). Its rest pose is
  the fitted SMPL rest skeleton turned from the SMPL body frame (Y up, facing +Z, left +X) to
  Blender's (Z up, facing −Y, left +X).
- Blender poses a bone ``i`` with parent ``p`` as ``P_i = P_p · R_p⁻¹ · R_i · M_i`` (rest rotations
  ``R``, basis ``M``); so for a joint whose global rotation in armature terms is ``G'_i`` the basis
  rotation is ``M_i = R_iᵀ · G'_pᵀ · G'_i · R_i``, and the root's location ``R_0ᵀ (t − h_0)``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .camera import CameraPlacement, camera_to_world_m
from .kinematics import SkeletonFit, inverse_kinematics
from .motion import Motion
from .rotations import matrix_to_quaternion
from .skeleton import CHILDREN, JOINT_NAMES, NUM_JOINTS, PARENTS

#: SMPL body frame (Y up, facing +Z, left +X) → Blender's (Z up, facing −Y, left +X), as columns.
BODY_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
#: Length of bones that end the chain (head, hands, feet, …), metres.
LEAF_LENGTH_M = 0.08
#: The child whose joint a bone points at, where a joint has several (pelvis → spine, spine3 → neck).
MAIN_CHILD = {0: 3, 9: 12}


def rest_joints_m(rest_offsets_mm: np.ndarray) -> np.ndarray:
    """Rest joint positions in armature space (metres), pelvis at the origin."""
    offsets = np.asarray(rest_offsets_mm, dtype=np.float64) / 1000.0 @ BODY_TO_BLENDER.T
    joints = np.zeros((NUM_JOINTS, 3))
    for j in range(1, NUM_JOINTS):
        joints[j] = joints[PARENTS[j]] + offsets[j]
    return joints


def rest_bones(rest_offsets_mm: np.ndarray) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
    """``(name, parent index, head, tail)`` of the 24 bones, armature space, metres.

    A bone's head is its joint; its tail is its (main) child's joint, or for a chain's last joint a
    short extension of its parent bone's direction.
    """
    joints = rest_joints_m(rest_offsets_mm)
    bones = []
    for j in range(NUM_JOINTS):
        head = joints[j]
        children = CHILDREN[j]
        if children:
            child = MAIN_CHILD.get(j, children[0])
            tail = joints[child]
            if np.linalg.norm(tail - head) < 1e-4:
                tail = head + np.array([0.0, 0.0, LEAF_LENGTH_M])
        else:
            direction = head - joints[PARENTS[j]]
            direction /= max(np.linalg.norm(direction), 1e-9)
            tail = head + direction * LEAF_LENGTH_M
        bones.append((JOINT_NAMES[j], int(PARENTS[j]), head, tail))
    return bones


def with_skeleton(motion: Motion, fit: SkeletonFit) -> Motion:
    """``motion`` carrying the rotations of ``fit`` (local quaternions, root translation, rest skeleton):
    what ``motion convert --fit`` stores and :func:`skeleton_of` reads back."""
    return replace(
        motion,
        rotations=fit.local_quaternions,
        root_translation=fit.root_translation,
        rest_offsets=fit.rest_offsets,
    )


def carries_skeleton(motion: Motion) -> bool:
    """Whether ``motion`` carries its own rotations, rest skeleton and root translation (all three, as
    :func:`skeleton_of` needs them; rotations alone are fitted again)."""
    return motion.rotations is not None and motion.rest_offsets is not None and motion.root_translation is not None


def skeleton_of(motion: Motion) -> SkeletonFit:
    """The rotations that pose a motion: its own (``rotations``, ``rest_offsets``, ``root_translation``,
    e.g. from AMASS, BVH or a saved fit) when it carries them, else an inverse-kinematics fit."""

    if carries_skeleton(motion):
        return SkeletonFit(
            "fit",
            np.asarray(motion.rest_offsets, np.float64),
            np.asarray(motion.root_translation, np.float64),
            motion.joints,
            local_quaternions=motion.rotations,
        )
    return inverse_kinematics(motion.joints, mode="fit")


def _left_product(a: np.ndarray) -> np.ndarray:
    """``(..., 4, 4)`` matrices ``P`` with ``P q = a q`` (Hamilton product, w x y z)."""
    w, x, y, z = np.moveaxis(a, -1, 0)
    rows = [[w, -x, -y, -z], [x, w, -z, y], [y, z, w, -x], [z, -y, x, w]]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def _right_product(b: np.ndarray) -> np.ndarray:
    """``(..., 4, 4)`` matrices ``P`` with ``P q = q b``."""
    w, x, y, z = np.moveaxis(b, -1, 0)
    rows = [[w, -x, -y, -z], [x, w, z, -y], [y, -z, w, x], [z, y, -x, w]]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def pose_channels(
    fit: SkeletonFit,
    rest_rotations: np.ndarray,
    rest_heads: np.ndarray,
    camera: CameraPlacement,
) -> tuple[np.ndarray, np.ndarray]:
    """Basis quaternions ``(T, 24, 4)`` (w, x, y, z; sign-continuous over time) and the root bone's
    location ``(T, 3)`` that pose the armature as the fitted motion.

    ``rest_rotations``: ``(24, 3, 3)`` each bone's rest rotation in armature space (Blender's
    ``bone.matrix_local``); ``rest_heads``: ``(24, 3)`` rest head positions.

    A joint's basis depends only on its own local rotation ``L``: ``M_i = C_i L_i C_iᵀ`` with the
    constant ``C_i = R_iᵀ B`` (``B``: body frame → Blender), and for the root ``M_0 = R_0ᵀ A L_0 Bᵀ R_0``
    (``A``: camera → world); so no forward kinematics is needed, only quaternion products.
    """
    rest = np.asarray(rest_rotations, dtype=np.float64)
    # channel-major (24, 4, T): each channel one contiguous run over the frames, as the keys are written
    local = np.ascontiguousarray(np.asarray(fit.local_quaternions).transpose(1, 2, 0), dtype=np.float64)
    left = matrix_to_quaternion(np.swapaxes(rest, -1, -2) @ BODY_TO_BLENDER)  # C_i, (24, 4)
    right = left * np.array([1.0, -1.0, -1.0, -1.0])  # C_iᵀ
    left[0] = matrix_to_quaternion(rest[0].T @ camera.rotation)
    # C_i L C_iᵀ is linear in L: one constant 4×4 matrix per joint, applied to all frames at once (BLAS)
    sandwich = _left_product(left) @ _right_product(right)  # (24, 4, 4)
    quats = np.matmul(sandwich, local)  # (24, 4, T)
    root = camera_to_world_m(fit.root_translation, camera)
    # sign-continuous over time: a quaternion turning to the far side of its predecessor is flipped back
    flips = np.einsum("jct,jct->jt", quats[:, :, 1:], quats[:, :, :-1]) < 0
    if flips.any():
        signs = np.ones(flips.shape[:1] + (flips.shape[1] + 1,))
        signs[:, 1:] = np.cumprod(np.where(flips, -1.0, 1.0), axis=1)
        quats *= signs[:, None, :]
    location = (root - np.asarray(rest_heads, dtype=np.float64)[0]) @ rest[0]
    return quats.transpose(2, 0, 1), location  # (T, 24, 4): a view of the channel-major array
