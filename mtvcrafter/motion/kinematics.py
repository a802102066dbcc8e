"""Forward and inverse kinematics of the SMPL-24 skeleton, batched over frames, in numpy.

Conventions (as in SMPL): every joint ``j`` has a rest offset ``o_j`` from its parent (the root's is
unused), a local rotation ``L_j`` relative to its parent, and a global rotation
``G_j = G_parent(j) @ L_j``. Posed joints are ``p_0 = root_translation`` and
``p_j = p_parent(j) + G_parent(j) @ o_j``. Rotations act on column vectors.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from .errors import MotionError
from .rotations import (
    axis_angle_to_quaternion_into,
    best_fit_rotation,
    frame_from_two,
    matrix_to_quaternion,
    quaternion_multiply_into,
    quaternion_to_matrix,
    rotation_between,
    unit_quaternion_to_matrix_into,
    vector_norm,
)
from .skeleton import (
    CHILDREN,
    NEUTRAL_REST_JOINTS_M,
    NUM_JOINTS,
    PARENTS,
    bone_lengths,
    rest_offsets_from_joints,
)

IKMode = Literal["fit", "exact"]


def forward_kinematics(
    rest_offsets: np.ndarray,
    local_rotations: np.ndarray,
    root_translation: np.ndarray,
    offset_residuals: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pose the skeleton.

    Args:
        rest_offsets: ``(24, 3)`` or ``(T, 24, 3)`` offsets of each joint from its parent at rest.
        local_rotations: ``(T, 24, 3, 3)`` rotation of each joint relative to its parent
            (the root's is global).
        root_translation: ``(T, 3)`` position of the root joint.
        offset_residuals: optional ``(T, 24, 3)`` extra offset of each joint, in its parent's
            frame, added to the rest offset (how an exact fit keeps every source length).

    Returns:
        ``joints (T, 24, 3)`` and ``global_rotations (T, 24, 3, 3)``.
    """
    local_rotations = np.asarray(local_rotations, dtype=np.float64)
    offsets = np.asarray(rest_offsets, dtype=np.float64)
    if offset_residuals is not None:
        offsets = offsets + offset_residuals
    # Entry-major copies: every matrix entry of a joint one contiguous run over the frames. The products are then
    # written out entry by entry (27 + 9 multiply-adds per joint on whole runs), several times faster than batched
    # 3×3 products over frame-major data.
    local = np.ascontiguousarray(local_rotations.transpose(2, 3, 1, 0))  # (3, 3, 24, T)
    offset = np.ascontiguousarray(offsets.T if offsets.ndim == 2 else offsets.transpose(2, 1, 0))  # (3, 24[, T])
    frames = local_rotations.shape[0]
    joints = np.empty((3, NUM_JOINTS, frames))
    global_rot = np.empty((3, 3, NUM_JOINTS, frames))
    joints[:, 0] = np.broadcast_to(np.asarray(root_translation, dtype=np.float64), (frames, 3)).T
    global_rot[:, :, 0] = local[:, :, 0]
    for j in range(1, NUM_JOINTS):
        p = PARENTS[j]
        for a in range(3):
            g0, g1, g2 = global_rot[a, 0, p], global_rot[a, 1, p], global_rot[a, 2, p]
            joints[a, j] = joints[a, p] + g0 * offset[0, j] + g1 * offset[1, j] + g2 * offset[2, j]
            for c in range(3):
                global_rot[a, c, j] = g0 * local[0, c, j] + g1 * local[1, c, j] + g2 * local[2, c, j]
    return np.ascontiguousarray(joints.transpose(2, 1, 0)), global_rot.transpose(3, 2, 0, 1)


#: Frames posed at once by :func:`forward_kinematics_axis_angle`.
_RUN = 8192


def forward_kinematics_axis_angle(
    rest_offsets: np.ndarray, axis_angle: np.ndarray, root_translation: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`forward_kinematics` of local rotations given as axis times angle ``(T, 24, 3)`` (as SMPL parameter files
    hold them), returning ``joints (T, 24, 3)`` and the local rotations as quaternions ``(T, 24, 4)`` (w, x, y, z;
    w ≥ 0: :func:`~mtvcrafter.motion.rotations.axis_angle_to_quaternion`).

    Joint by joint down the tree (a parent before its children), a few thousand frames at a time, on contiguous runs
    over the frames: each joint's local quaternion; its place from its parent's global rotation matrix; and, where it
    has children, its global quaternion (the parent's times its own) and that one's matrix. No ``(T, 24, 3, 3)``
    array is made, there is one sine and cosine per rotation, and every step writes into arrays made once per call
    (numpy's temporaries, freed and made again thousands of times, would cost as much again in fresh memory pages).
    """
    axis_angle = np.asarray(axis_angle, dtype=np.float64)
    frames = axis_angle.shape[0]
    offsets = np.asarray(rest_offsets, dtype=np.float64)
    root = np.broadcast_to(np.asarray(root_translation, dtype=np.float64), (frames, 3))
    # the results in their final layout, each value of a joint read and written as a (strided) run over the frames
    joints = np.empty((frames, NUM_JOINTS, 3))
    quaternions = np.empty((frames, NUM_JOINTS, 4))
    runs = max(1, -(-frames // _RUN))
    length = max(1, -(-frames // runs))  # runs of equal length
    turns = np.empty((NUM_JOINTS, 4, length))  # global quaternions of the joints with children
    matrices = np.empty((NUM_JOINTS, 3, 3, length))  # … and their matrices
    scratch = np.empty((6, length))
    for start in range(0, frames, length):
        n = min(length, frames - start)
        run = slice(start, start + n)
        work = scratch[:, :n]
        for j in range(NUM_JOINTS):
            local = quaternions[run, j].T  # (4, n)
            axis_angle_to_quaternion_into(axis_angle[run, j].T, local, work)
            if j == 0:
                joints[run, 0] = root[run]
                turns[0, :, :n] = local
            else:
                p = PARENTS[j]
                parent = matrices[p, :, :, :n]
                place, parent_place = joints[run, j].T, joints[run, p].T
                for a in range(3):  # the joint's place: its parent's, plus its offset turned by the parent
                    row = place[a]
                    np.multiply(parent[a, 0], offsets[j, 0], out=row)
                    row += parent_place[a]
                    for b in (1, 2):
                        np.multiply(parent[a, b], offsets[j, b], out=work[0])
                        row += work[0]
                if not CHILDREN[j]:  # a leaf's own rotation moves no joint
                    continue
                quaternion_multiply_into(turns[p, :, :n], local, turns[j, :, :n], work)
            unit_quaternion_to_matrix_into(turns[j, :, :n], matrices[j, :, :, :n], work)
    return joints, quaternions


# ---------------------------------------------------------------------------------------------
# Inverse kinematics from joint positions alone.
#
# Twist about a bone cannot be seen in that bone's own two joints. For limbs it is taken from the
# bend of the next joint: the knee and elbow are hinges, so the thigh's and upper arm's twist is
# the one that puts the knee's / elbow's bend plane where the data has it; the shin's twist follows
# the foot, the forearm's the hand. Where a limb is almost straight the bend plane is undefined and
# the bone instead turns by the smallest rotation from its parent's frame. The spine's twist is
# shared between the pelvis and the chest. The pelvis and the chest (three children each) are
# oriented by a least-squares fit of their children.
# ---------------------------------------------------------------------------------------------

_X, _Y, _Z = np.eye(3)

#: Rest-pose bend axis of the joint after each limb bone, in the body frame (Y up, facing +Z,
#: left +X), and whether that joint bends one way only (so the sign of the observed axis is
#: meaningful) — for joint j, the axis describes how j's child bends.
_HINGES: dict[int, tuple[np.ndarray, bool]] = {
    1: (_X, True),  # left knee bends backwards
    2: (_X, True),
    4: (-_X, False),  # ankle: the foot's direction sets the shin's twist
    5: (-_X, False),
    16: (-_Y, True),  # left elbow bends forwards
    17: (_Y, True),
    18: (-_Z, False),  # wrist bends both ways
    19: (_Z, False),
}
_SPINE_SHARE = {3: 1.0 / 3.0, 6: 2.0 / 3.0}  # chest-twist share of spine1, spine2
_CLUSTERS = (0, 9)  # joints with three children

# Bend sines below _BEND_LOW give no twist information, above _BEND_HIGH full information.
_BEND_LOW, _BEND_HIGH = 0.05, 0.35


class SkeletonFit:
    """A rotation-based description of a motion (the result of :func:`inverse_kinematics`, or a motion's own
    rotations).

    ``rest_offsets (24, 3)`` in the joints' unit in the body frame (Y up, facing +Z, left +X);
    ``local_rotations (T, 24, 3, 3)`` or equally ``local_quaternions (T, 24, 4)`` (w, x, y, z; give either,
    the other is derived when first asked for); ``root_translation (T, 3)``; ``offset_residuals``
    ``(T, 24, 3)`` only for ``mode == "exact"``; ``target (T, 24, 3)`` the joints it describes;
    ``error (T, 24)`` distance between the posed skeleton and ``target`` (computed when first asked for,
    unless given).
    """

    def __init__(
        self,
        mode: IKMode,
        rest_offsets: np.ndarray,
        root_translation: np.ndarray,
        target: np.ndarray,
        *,
        local_rotations: np.ndarray | None = None,
        local_quaternions: np.ndarray | None = None,
        offset_residuals: np.ndarray | None = None,
        error: np.ndarray | None = None,
    ) -> None:
        if local_rotations is None and local_quaternions is None:
            raise ValueError("SkeletonFit needs local_rotations or local_quaternions")
        self.mode = mode
        self.rest_offsets = rest_offsets
        self.root_translation = root_translation
        self.target = target
        self.offset_residuals = offset_residuals
        self._rotations = local_rotations
        self._quaternions = local_quaternions
        self._error = error

    @property
    def local_rotations(self) -> np.ndarray:
        if self._rotations is None:
            self._rotations = quaternion_to_matrix(self._quaternions)
        return self._rotations

    @property
    def local_quaternions(self) -> np.ndarray:
        if self._quaternions is None:
            self._quaternions = matrix_to_quaternion(self._rotations)
        return self._quaternions

    @property
    def error(self) -> np.ndarray:
        """Per-frame, per-joint distance ``(T, 24)`` between the posed skeleton and the target joints."""
        if self._error is None:
            self._error = vector_norm(self.joints() - self.target)
        return self._error

    @property
    def mean_error(self) -> float:
        """Mean per-joint position error over all frames and joints (the joints' unit)."""
        return float(self.error.mean())

    def joints(self) -> np.ndarray:
        """The posed joints ``(T, 24, 3)``."""
        return forward_kinematics(
            self.rest_offsets, self.local_rotations, self.root_translation, self.offset_residuals
        )[0]


def estimate_rest_offsets(joints: np.ndarray) -> np.ndarray:
    """A rigid rest skeleton for a joints-only clip, ``(24, 3)`` offsets in the body frame.

    Every bone gets the clip's median length. Limb and spine bones point as in the built-in neutral
    T-pose. The pelvis and the chest keep the shape their three children have in the data (median of
    their offsets in a frame attached to the cluster), turned to best match the neutral T-pose.
    """
    joints = np.asarray(joints, dtype=np.float64)
    lengths = np.median(bone_lengths(joints), axis=0)
    template = rest_offsets_from_joints(NEUTRAL_REST_JOINTS_M)
    directions = template / np.linalg.norm(template, axis=-1, keepdims=True)
    offsets = directions * lengths[:, None]
    offsets[0] = 0.0
    for j in _CLUSTERS:
        children = list(CHILDREN[j])
        rel = joints[:, children] - joints[:, j : j + 1]  # (T, 3, 3)
        # Frame attached to the cluster: from the right child to the left, and towards the middle one.
        lateral = rel[:, 0] - rel[:, 1] if j == 0 else rel[:, 1] - rel[:, 2]
        middle = rel[:, 2] if j == 0 else rel[:, 0]
        frames = frame_from_two(lateral, middle)  # (T, 3, 3), columns are the axes; NaN if degenerate
        local = np.einsum("tba,tcb->tca", frames, rel)  # offsets expressed in the cluster frame
        if np.isfinite(local).all(axis=(1, 2)).any():
            shape = np.nanmedian(local, axis=0)
            align = best_fit_rotation(shape, template[children])
            offsets[children] = shape @ align.T
    return offsets


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(vector_norm(v, keepdims=True), 1e-12)


def _bend_weight(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sine = vector_norm(np.cross(_normalize(a), _normalize(b)))
    return np.clip((sine - _BEND_LOW) / (_BEND_HIGH - _BEND_LOW), 0.0, 1.0)


def inverse_kinematics(
    joints: np.ndarray,
    rest_offsets: np.ndarray | None = None,
    mode: IKMode = "fit",
    sweeps: int = 6,
) -> SkeletonFit:
    """Local rotations and root translation that reproduce joint positions on a rigid skeleton.

    ``mode="fit"`` keeps every bone at its rest length and finds the pose whose joints are closest
    to the source in the least-squares sense, with the root free: block coordinate descent over
    the root position, each bone's direction and the rigid pelvis/chest clusters, each block solved
    in closed form and vectorised over frames. Rotations (with the twist rules above) are then read
    off the fitted positions. ``mode="exact"`` aims each bone from the source parent and stores the
    remaining difference as ``offset_residuals``, so forward kinematics gives the source exactly.

    Args:
        joints: ``(T, 24, 3)`` joint positions, any right-handed frame and unit.
        rest_offsets: ``(24, 3)`` rest skeleton; by default :func:`estimate_rest_offsets`.
        mode: ``"fit"`` or ``"exact"``.
        sweeps: passes of coordinate descent in fit mode.
    """
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3) or joints.shape[0] < 1:
        raise MotionError(f"expected joints of shape (T, 24, 3), got {joints.shape}", field="joints")
    if mode not in ("fit", "exact"):
        raise MotionError(f"unknown inverse kinematics mode {mode!r}; use 'fit' or 'exact'", field="mode")
    if rest_offsets is None:
        rest_offsets = estimate_rest_offsets(joints)
    rest_offsets = np.asarray(rest_offsets, dtype=np.float64)

    if mode == "exact":
        placed, local, residuals = _solve(joints, rest_offsets, joints[:, 0], exact=True)
    else:
        start, _, _ = _solve(joints, rest_offsets, joints[:, 0], exact=False)
        fitted = _fit_positions(joints, start, rest_offsets, sweeps)
        placed, local, residuals = _solve(fitted, rest_offsets, fitted[:, 0], exact=False)
    error = vector_norm(placed - joints)
    return SkeletonFit(
        mode,
        rest_offsets,
        placed[:, 0].copy(),
        joints,
        local_rotations=local,
        offset_residuals=residuals,
        error=error,
    )


def _preorder(j: int = 0) -> list[int]:
    out = [j]
    for c in CHILDREN[j]:
        out += _preorder(c)
    return out


#: Joints in depth-first order, so that every subtree is a contiguous run of it; each joint's place in it,
#: and its subtree's size.
_DFS = np.array(_preorder())
_DFS_PLACE = np.argsort(_DFS)
_SUBTREE_SIZE = tuple(len(_preorder(j)) for j in range(NUM_JOINTS))


def _fit_positions(targets: np.ndarray, placed: np.ndarray, rest: np.ndarray, sweeps: int) -> np.ndarray:
    """Least-squares joint positions on the rigid skeleton ``rest``, starting from ``placed``.

    Moving one block (the root position, one bone's direction, or a three-child cluster's
    rotation) moves the subtrees below it rigidly, so the best block given the others is the
    direction of the subtree's mean residual (bones) or a weighted Kabsch fit (clusters).

    Works on joint-major arrays in depth-first order: a subtree is a contiguous slice, its sums need
    no gathering, and its rigid moves are in-place adds.
    """
    x = np.ascontiguousarray(np.moveaxis(placed[:, _DFS], 1, 0))  # (24, T, 3)
    tgt = np.moveaxis(targets[:, _DFS], 1, 0)
    # Sums of the targets over every subtree (constant).
    target_sums = [tgt[_DFS_PLACE[j] : _DFS_PLACE[j] + _SUBTREE_SIZE[j]].sum(axis=0) for j in range(NUM_JOINTS)]
    lengths = np.linalg.norm(rest, axis=-1)

    def span(j: int) -> slice:
        return slice(_DFS_PLACE[j], _DFS_PLACE[j] + _SUBTREE_SIZE[j])

    def mean_residual(j: int) -> np.ndarray:
        return (target_sums[j] - x[span(j)].sum(axis=0)) / _SUBTREE_SIZE[j]

    for _ in range(sweeps):
        x += mean_residual(0)
        for j in range(NUM_JOINTS):
            children = CHILDREN[j]
            here = x[_DFS_PLACE[j]]
            if len(children) == 1:
                (c,) = children
                child = x[_DFS_PLACE[c]]
                new = here + lengths[c] * _normalize(child - here + mean_residual(c))
                x[span(c)] += new - child
            elif len(children) > 1:
                kids = list(children)
                weights = np.array([_SUBTREE_SIZE[c] for c in kids], dtype=np.float64)
                current = np.stack([x[_DFS_PLACE[c]] - here for c in kids], axis=1)  # (T, kids, 3)
                wanted = current + np.stack([mean_residual(c) for c in kids], axis=1)
                turn = best_fit_rotation(current, wanted, weights)
                moved = np.einsum("tab,tkb->tka", turn, current) - current
                for i, c in enumerate(kids):
                    x[span(c)] += moved[:, i]
    return np.moveaxis(x, 0, 1)[:, _DFS_PLACE]


def _solve(
    joints: np.ndarray, rest: np.ndarray, root: np.ndarray, exact: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Pose the skeleton joint by joint from the root position ``(T, 3)``, aiming each bone at
    ``joints`` from the placed parent (``exact``: from the source parent, keeping the difference
    as a residual offset)."""
    n = joints.shape[0]
    chest = list(CHILDREN[9])
    chest_rot = best_fit_rotation(rest[chest], joints[:, chest] - joints[:, 9:10])
    placed = np.empty_like(joints)
    global_rot = np.empty((n, NUM_JOINTS, 3, 3))
    residuals = np.zeros((n, NUM_JOINTS, 3)) if exact else None
    placed[:, 0] = root
    for j in range(NUM_JOINTS):
        children = CHILDREN[j]
        parent_rot = global_rot[:, PARENTS[j]] if j else np.broadcast_to(np.eye(3), (n, 3, 3))
        if not children:
            global_rot[:, j] = parent_rot
            continue
        if len(children) > 1:
            kids = list(children)
            global_rot[:, j] = best_fit_rotation(rest[kids], joints[:, kids] - placed[:, j : j + 1])
        else:
            global_rot[:, j] = _orient_single(j, joints, placed, rest, parent_rot, global_rot, chest_rot)
        for c in children:
            placed[:, c] = placed[:, j] + global_rot[:, j] @ rest[c]
            if exact:
                residuals[:, c] = np.einsum("tba,tb->ta", global_rot[:, j], joints[:, c] - placed[:, c])
                placed[:, c] = joints[:, c]
    local = np.empty_like(global_rot)
    local[:, 0] = global_rot[:, 0]
    for j in range(1, NUM_JOINTS):  # joint by joint: views, no gathered copies
        local[:, j] = np.swapaxes(global_rot[:, PARENTS[j]], -1, -2) @ global_rot[:, j]
    return placed, local, residuals


def _orient_single(
    j: int,
    joints: np.ndarray,
    placed: np.ndarray,
    rest: np.ndarray,
    parent_rot: np.ndarray,
    global_rot: np.ndarray,
    chest_rot: np.ndarray,
) -> np.ndarray:
    """Global rotation of a joint with one child: aim the bone, then choose the twist about it."""
    (c,) = CHILDREN[j]
    aim = joints[:, c] - placed[:, j]
    rest_dir = rest[c]
    # Smallest turn from where the parent's frame points the bone: the twist-free choice.
    swing = rotation_between(parent_rot @ rest_dir, aim)
    free = swing @ parent_rot
    if j in _SPINE_SHARE:
        # Reference axis: the pelvis's left-right axis turned part of the way to the chest's.
        share = _SPINE_SHARE[j]
        reference = _X - np.dot(_X, _normalize(rest_dir)) * _normalize(rest_dir)
        wanted = (1 - share) * (global_rot[:, 0] @ reference) + share * (chest_rot @ reference)
        return _twist_towards(rest_dir, reference, aim, wanted, free)
    if j in _HINGES and CHILDREN[c]:
        axis, one_way = _HINGES[j]
        g = CHILDREN[c][0]
        # Where the rest pose itself is bent (the ankle), its bend axis is the reference: a rest
        # pose then reads back as no rotation. Straight rest limbs use the anatomical axis.
        rest_bend = np.cross(_normalize(rest_dir), _normalize(rest[g]))
        if np.linalg.norm(rest_bend) > _BEND_HIGH:
            axis = rest_bend * np.sign(np.dot(rest_bend, axis))
        reference = _normalize(axis - np.dot(axis, _normalize(rest_dir)) * _normalize(rest_dir))
        default = free @ reference
        observed = np.cross(aim, joints[:, g] - joints[:, c])
        observed = _normalize(observed)
        if not one_way:
            observed *= np.where(np.sum(observed * default, axis=-1, keepdims=True) < 0, -1.0, 1.0)
        weight = _bend_weight(aim, joints[:, g] - joints[:, c])[:, None]
        wanted = weight * observed + (1 - weight) * default
        return _twist_towards(rest_dir, reference, aim, wanted, free)
    return free


def _twist_towards(
    rest_dir: np.ndarray, rest_ref: np.ndarray, aim: np.ndarray, wanted: np.ndarray, fallback: np.ndarray
) -> np.ndarray:
    """Rotation taking ``rest_dir`` onto ``aim`` and ``rest_ref`` as close as it can to ``wanted``;
    ``fallback`` where that is undefined (a bone of zero length, at rest or in the frame)."""
    wanted_perp = wanted - np.sum(wanted * _normalize(aim), axis=-1, keepdims=True) * _normalize(aim)
    ok = vector_norm(wanted_perp) > 1e-6
    safe_wanted = np.where(ok[:, None], wanted_perp, fallback @ rest_ref)
    rest_frame = frame_from_two(rest_dir, rest_ref)
    frames = frame_from_two(aim, safe_wanted)
    turned = frames @ rest_frame.T
    return np.where(np.isfinite(turned).all(axis=(-1, -2), keepdims=True), turned, fallback)


__all__ = [
    "SkeletonFit",
    "estimate_rest_offsets",
    "forward_kinematics",
    "inverse_kinematics",
]
