"""The SMPL 24-joint skeleton: names, hierarchy and a built-in neutral rest pose.

Defined once here and used by every other part (tokenizer, models, server, Blender add-on).
"""

from __future__ import annotations

import numpy as np

from .rotations import vector_norm

JOINT_NAMES: tuple[str, ...] = (
    "pelvis",
    "left_hip",
    "right_hip",
    "spine1",
    "left_knee",
    "right_knee",
    "spine2",
    "left_ankle",
    "right_ankle",
    "spine3",
    "left_foot",
    "right_foot",
    "neck",
    "left_collar",
    "right_collar",
    "head",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hand",
    "right_hand",
)
NUM_JOINTS = 24
#: Joint name → index in :data:`JOINT_NAMES`.
JOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(JOINT_NAMES)}

#: Parent of each joint (-1 for the pelvis, the root). Every parent index is smaller than its child's.
PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)

#: Parent of each joint with the root mapped to itself: for gathering parent positions in one step.
PARENT_INDEX: tuple[int, ...] = (0, *PARENTS[1:])

#: Children of each joint, in index order.
CHILDREN: tuple[tuple[int, ...], ...] = tuple(
    tuple(c for c in range(NUM_JOINTS) if PARENTS[c] == j) for j in range(NUM_JOINTS)
)

#: The 23 bones as (parent, child) joint pairs, in child order.
BONES: tuple[tuple[int, int], ...] = tuple((PARENTS[c], c) for c in range(1, NUM_JOINTS))


def _side(name: str) -> int:
    return 1 if name.startswith("left_") else -1 if name.startswith("right_") else 0


#: +1 for joints on the person's left, -1 on the right, 0 on the midline.
SIDES: tuple[int, ...] = tuple(_side(n) for n in JOINT_NAMES)


#: Built-in neutral rest skeleton: joint positions in metres in SMPL's body frame (Y up, the person
#: facing +Z, their left towards +X), in a T-pose. The proportions are those of an average adult
#: (close to the SMPL neutral body with zero shape); it stands in for the licensed body model when
#: its files are not available, so joints computed with it are approximate in bone lengths only.
NEUTRAL_REST_JOINTS_M = np.array(
    [
        [-0.0018, -0.2233, 0.0282],
        [0.0695, -0.3142, 0.0214],
        [-0.0677, -0.3141, 0.0239],
        [-0.0025, -0.1089, 0.0017],
        [0.1040, -0.6961, 0.0150],
        [-0.1055, -0.6975, 0.0154],
        [0.0051, 0.0290, 0.0278],
        [0.0880, -1.0989, -0.0261],
        [-0.0917, -1.0954, -0.0264],
        [0.0022, 0.0828, 0.0267],
        [0.1185, -1.1552, 0.0948],
        [-0.1201, -1.1544, 0.1014],
        [-0.0002, 0.2889, -0.0145],
        [0.0788, 0.1956, -0.0093],
        [-0.0810, 0.1940, -0.0120],
        [0.0052, 0.3536, 0.0390],
        [0.1722, 0.2256, -0.0193],
        [-0.1752, 0.2257, -0.0155],
        [0.4322, 0.2138, -0.0399],
        [-0.4284, 0.2115, -0.0421],
        [0.6887, 0.2233, -0.0462],
        [-0.6896, 0.2246, -0.0459],
        [0.7724, 0.2136, -0.0579],
        [-0.7751, 0.2158, -0.0586],
    ],
    dtype=np.float64,
)
NEUTRAL_REST_JOINTS_M.setflags(write=False)


def rest_offsets_from_joints(rest_joints: np.ndarray) -> np.ndarray:
    """Offsets of each joint from its parent, ``(..., 24, 3)``; the root's offset is its position."""
    rest_joints = np.asarray(rest_joints)
    offsets = rest_joints - rest_joints[..., list(PARENT_INDEX), :]
    offsets[..., 0, :] = rest_joints[..., 0, :]
    return offsets


def bone_lengths(joints: np.ndarray) -> np.ndarray:
    """Length of each joint's bone to its parent, ``(..., 24)``, in the joints' unit (0 for the root)."""
    joints = np.asarray(joints)
    return vector_norm(joints - joints[..., list(PARENT_INDEX), :])
