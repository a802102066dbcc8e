"""Forward and inverse kinematics, checked against independent float64 references."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import report
from scipy.spatial.transform import Rotation

from mtvcrafter.motion import (
    JOINT_NAMES,
    PARENTS,
    MotionError,
    bone_lengths,
    forward_kinematics,
    inverse_kinematics,
)
from mtvcrafter.motion.rotations import (
    axis_angle_to_matrix,
    axis_angle_to_quaternion,
    best_fit_rotation,
    matrix_to_quaternion,
    quaternion_multiply,
    quaternion_to_matrix,
    rotation_between,
)
from mtvcrafter.motion.skeleton import NEUTRAL_REST_JOINTS_M, rest_offsets_from_joints

RNG = np.random.default_rng(7)


def reference_fk(offsets: np.ndarray, rotvecs: np.ndarray, root: np.ndarray) -> np.ndarray:
    """Plain per-frame, per-joint forward kinematics with scipy rotations (``offsets``: ``(24, 3)`` or per frame)."""
    out = np.zeros((rotvecs.shape[0], 24, 3))
    for t in range(rotvecs.shape[0]):
        frame_offsets = offsets[t] if offsets.ndim == 3 else offsets
        glob = [None] * 24
        for j in range(24):
            local = Rotation.from_rotvec(rotvecs[t, j])
            if j == 0:
                glob[0] = local
                out[t, 0] = root[t]
            else:
                p = PARENTS[j]
                glob[j] = glob[p] * local
                out[t, j] = out[t, p] + glob[p].apply(frame_offsets[j])
    return out


def test_rotation_conversions_match_scipy():
    rotvecs = RNG.normal(size=(500, 3)) * 1.5
    rotvecs[:3] = [[np.pi, 0, 0], [0, np.pi - 1e-9, 0], [0, 0, 0]]  # 180° and identity edge cases
    expected = Rotation.from_rotvec(rotvecs).as_matrix()
    np.testing.assert_allclose(axis_angle_to_matrix(rotvecs), expected, atol=1e-12)
    quats = matrix_to_quaternion(expected)
    xyzw = Rotation.from_matrix(expected).as_quat()
    wxyz = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=1)
    wxyz *= np.where(wxyz[:, :1] < 0, -1, 1)
    np.testing.assert_allclose(np.abs(np.sum(quats * wxyz, axis=1)), 1.0, atol=1e-9)
    np.testing.assert_allclose(quaternion_to_matrix(quats), expected, atol=1e-9)


def test_rotation_between_and_kabsch():
    a, b = RNG.normal(size=(200, 3)), RNG.normal(size=(200, 3))
    b[0] = -a[0]  # opposite directions
    r = rotation_between(a, b)
    turned = np.einsum("nij,nj->ni", r, a)
    np.testing.assert_allclose(
        turned / np.linalg.norm(turned, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True), atol=1e-9
    )
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-9)
    truth = Rotation.random(50, random_state=3).as_matrix()
    points = RNG.normal(size=(50, 5, 3))
    moved = np.einsum("nij,nkj->nki", truth, points)
    np.testing.assert_allclose(best_fit_rotation(points, moved), truth, atol=1e-9)


def test_rotation_between_is_the_smallest_turn_even_near_opposite_and_zero():
    a = RNG.normal(size=(300, 3))
    b = RNG.normal(size=(300, 3))
    b[:3] = -a[:3] * [[1.0], [2.0], [0.5]]  # exactly opposite
    b[3:6] = -a[3:6] + RNG.normal(size=(3, 3)) * 1e-5  # almost opposite
    b[6] = a[6] * 3.0  # same direction
    r = rotation_between(a, b)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-9)
    np.testing.assert_allclose(np.einsum("nij,nkj->nik", r, r), np.broadcast_to(np.eye(3), r.shape), atol=1e-9)
    turned = np.einsum("nij,nj->ni", r, a)
    unit_b = b / np.linalg.norm(b, axis=1, keepdims=True)
    np.testing.assert_allclose(turned / np.linalg.norm(turned, axis=1, keepdims=True), unit_b, atol=1e-9)
    # the smallest turn: its angle is the angle between the directions (scipy's rotation angle, independently)
    angles = Rotation.from_matrix(r).magnitude()
    unit_a = a / np.linalg.norm(a, axis=1, keepdims=True)
    np.testing.assert_allclose(angles, np.arccos(np.clip(np.sum(unit_a * unit_b, axis=1), -1, 1)), atol=1e-6)
    np.testing.assert_allclose(rotation_between(np.zeros((2, 3)), b[:2]), np.broadcast_to(np.eye(3), (2, 3, 3)))


def test_kabsch_matches_scipy_on_noisy_weighted_and_degenerate_points():
    """The eigenvalue (QCP) solver against scipy's SVD-based align_vectors, which minimises the same sum."""
    n = 400
    source = RNG.normal(size=(n, 4, 3))
    truth = Rotation.random(n, random_state=5).as_matrix()
    target = np.einsum("nij,nkj->nki", truth, source) + RNG.normal(size=(n, 4, 3)) * 0.4
    target[:50] = RNG.normal(size=(50, 4, 3))  # no relation at all (a poor fit, far from the start bound)
    weights = np.array([3.0, 1.0, 0.5, 2.0])
    ours = best_fit_rotation(source, target, weights)
    for i in range(n):
        expected, _ = Rotation.align_vectors(target[i], source[i], weights=weights)
        np.testing.assert_allclose(ours[i], expected.as_matrix(), atol=1e-8, err_msg=f"batch item {i}")
    np.testing.assert_allclose(np.linalg.det(ours), 1.0, atol=1e-12)
    # a reflection is never returned: mirrored points give the best proper rotation
    mirrored = source[:20] * [-1.0, 1.0, 1.0]
    best = best_fit_rotation(source[:20], mirrored)
    np.testing.assert_allclose(np.linalg.det(best), 1.0, atol=1e-12)
    for i in range(20):
        expected, _ = Rotation.align_vectors(mirrored[i], source[i])
        cost = np.sum((source[i] @ best[i].T - mirrored[i]) ** 2)
        np.testing.assert_allclose(cost, np.sum((expected.apply(source[i]) - mirrored[i]) ** 2), rtol=1e-9)
    # collinear points leave the spin about their line free: any rotation aligning the line is right
    line = np.array([[[1.0, 2.0, 0.5], [-2.0, -4.0, -1.0], [0.5, 1.0, 0.25]]])
    turn = Rotation.from_rotvec([0.3, -1.1, 0.7]).as_matrix()
    aligned = best_fit_rotation(line, line @ turn.T)
    np.testing.assert_allclose(line @ aligned[0].T, line @ turn.T, atol=1e-9)
    # all zero: the identity-like answer is still a rotation, never NaN
    zero = best_fit_rotation(np.zeros((1, 3, 3)), np.zeros((1, 3, 3)))
    assert np.isfinite(zero).all() and abs(np.linalg.det(zero[0]) - 1.0) < 1e-12
    # scale does not matter
    for scale in (1e-6, 1e6):
        np.testing.assert_allclose(
            best_fit_rotation(source[50:60] * scale, target[50:60] * scale),
            best_fit_rotation(source[50:60], target[50:60]),
            atol=1e-8,
        )


def test_kabsch_aligns_one_point_or_a_line_exactly_whatever_the_spin_and_scale():
    """One point, or points on a line, that a rotation aligns exactly: the largest eigenvalue of K is repeated and
    is the Newton start itself, where the polynomial's value and slope are both rounding noise (their ratio once
    threw λ far below it, and about one pair in five came back turned away, some exactly reversed)."""
    rng = np.random.default_rng(11)
    n = 2000
    source, target = rng.normal(size=(n, 1, 3)), rng.normal(size=(n, 1, 3))
    turned = np.einsum("nij,nj->ni", best_fit_rotation(source, target), source[:, 0])
    cosine = np.sum(turned * target[:, 0], axis=1) / np.linalg.norm(source[:, 0], axis=1)
    np.testing.assert_allclose(cosine / np.linalg.norm(target[:, 0], axis=1), 1.0, atol=1e-12)
    line = source * np.array([1.0, -2.0, 0.5])[None, :, None]  # (n, 3, 3): three points on a line through 0
    moved = np.einsum("nij,nkj->nki", Rotation.random(n, random_state=12).as_matrix(), line)
    aligned = best_fit_rotation(line, moved)
    np.testing.assert_allclose(np.einsum("nij,nkj->nki", aligned, line), moved, atol=1e-9)
    # the rotation does not depend on the scale, however far from 1 (no overflow into NaN)
    noisy = np.einsum("nij,nkj->nki", Rotation.random(20, random_state=13).as_matrix(), rng.normal(size=(20, 5, 3)))
    points = rng.normal(size=(20, 5, 3))
    expected = best_fit_rotation(points, noisy)
    for scale in (1e-100, 1e100):
        np.testing.assert_allclose(best_fit_rotation(points * scale, noisy * scale), expected, atol=1e-9)


def test_forward_kinematics_matches_reference():
    offsets = rest_offsets_from_joints(NEUTRAL_REST_JOINTS_M)
    rotvecs = RNG.normal(size=(6, 24, 3)) * 0.6
    root = RNG.normal(size=(6, 3))
    joints, glob = forward_kinematics(offsets, axis_angle_to_matrix(rotvecs), root)
    np.testing.assert_allclose(joints, reference_fk(offsets, rotvecs, root), atol=1e-12)
    np.testing.assert_allclose(glob[:, 0], Rotation.from_rotvec(rotvecs[:, 0]).as_matrix(), atol=1e-12)
    hand = Rotation.from_rotvec(rotvecs[:, 0])
    for j in (3, 6, 9, 13, 16, 18, 20, 22):  # down the chain to the left hand
        hand = hand * Rotation.from_rotvec(rotvecs[:, j])
    np.testing.assert_allclose(glob[:, 22], hand.as_matrix(), atol=1e-12)
    # one root position for every frame
    still, _ = forward_kinematics(offsets, axis_angle_to_matrix(rotvecs[:1]), root[0])
    np.testing.assert_allclose(still, reference_fk(offsets, rotvecs[:1], root[:1]), atol=1e-12)
    # per-frame offsets, and an exact fit's residuals added to them
    stretched = offsets * RNG.uniform(0.8, 1.2, size=(6, 24, 1))
    residuals = RNG.normal(size=(6, 24, 3)) * 0.01
    joints, _ = forward_kinematics(stretched, axis_angle_to_matrix(rotvecs), root, offset_residuals=residuals)
    np.testing.assert_allclose(joints, reference_fk(stretched + residuals, rotvecs, root), atol=1e-12)


@pytest.mark.parametrize("run", [5, 8192])
def test_forward_kinematics_of_axis_angle_matches_reference(monkeypatch, run):
    """SMPL parameters' path: joints and local quaternions straight from axis-angle, a run of frames at a time
    (runs of 5 over 13 frames: the last one short)."""
    import mtvcrafter.motion.kinematics as kinematics

    monkeypatch.setattr(kinematics, "_RUN", run)
    offsets = rest_offsets_from_joints(NEUTRAL_REST_JOINTS_M)
    rotvecs = RNG.normal(size=(13, 24, 3)) * 1.2
    rotvecs[0, :4] = 0.0
    rotvecs[1, 0] = [0.0, 0.0, 1.5 * np.pi]  # past half a turn
    rotvecs[2, :3] = [[1e-9, -2e-9, 3e-10], [1e-7, 0.0, 0.0], [0.0, 4e-7, -3e-7]]  # below the series' threshold
    root = RNG.normal(size=(13, 3))
    joints, quats = kinematics.forward_kinematics_axis_angle(offsets, rotvecs, root)
    np.testing.assert_allclose(joints, reference_fk(offsets, rotvecs, root), atol=1e-12)
    np.testing.assert_allclose(quats[2, :3, 1:], rotvecs[2, :3] / 2, rtol=1e-9)  # tiny turns: sin(θ/2)/θ ≈ 1/2
    xyzw = Rotation.from_rotvec(rotvecs.reshape(-1, 3)).as_quat().reshape(13, 24, 4)
    expected = np.concatenate([xyzw[..., 3:], xyzw[..., :3]], axis=-1)
    expected *= np.where(expected[..., :1] < 0, -1, 1)
    np.testing.assert_allclose(quats, expected, atol=1e-12)


def test_axis_angle_to_quaternion_and_quaternion_products_match_scipy():
    rotvecs = RNG.normal(size=(400, 3)) * 2.5  # angles past half a turn too
    rotvecs[:4] = [[0, 0, 0], [1e-9, -2e-9, 0], [0, 0, 1.5 * np.pi], [0.3, -0.2, 2 * np.pi + 0.1]]
    xyzw = Rotation.from_rotvec(rotvecs).as_quat()
    expected = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=1)
    expected *= np.where(expected[:, :1] < 0, -1, 1)  # the w >= 0 convention of matrix_to_quaternion
    quats = axis_angle_to_quaternion(rotvecs)
    np.testing.assert_allclose(quats, expected, atol=1e-12)
    np.testing.assert_allclose(quats, matrix_to_quaternion(axis_angle_to_matrix(rotvecs)), atol=1e-12)
    # the reference tells apart the plausible misreadings ((x, y, z, w) order, the full angle for the half), and
    # the data reach past half a turn often, where a missing sign rule would show
    assert not np.allclose(np.roll(quats, -1, axis=-1), expected, atol=1e-3)
    assert not np.allclose(Rotation.from_rotvec(rotvecs * 2).as_quat()[:, [3, 0, 1, 2]], expected, atol=1e-3)
    assert (np.cos(np.linalg.norm(rotvecs, axis=-1) / 2) < 0).sum() > 50
    # Hamilton's table (i² = j² = k² = ijk = −1) and bilinearity define the product, sign included
    basis = np.eye(4)
    table = {(0, q): (1, q) for q in range(4)} | {(p, 0): (1, p) for p in range(1, 4)}
    table |= {(1, 1): (-1, 0), (2, 2): (-1, 0), (3, 3): (-1, 0), (1, 2): (1, 3), (2, 1): (-1, 3)}
    table |= {(2, 3): (1, 1), (3, 2): (-1, 1), (3, 1): (1, 2), (1, 3): (-1, 2)}
    for (p, q), (sign, r) in table.items():
        np.testing.assert_array_equal(quaternion_multiply(basis[p], basis[q]), sign * basis[r])
    a, b = RNG.normal(size=(2, 300, 4))
    product = quaternion_multiply(a, b)
    by_table = sum(sign * a[:, [p]] * b[:, [q]] * basis[r] for (p, q), (sign, r) in table.items())
    np.testing.assert_allclose(product, by_table, atol=1e-12)
    ra = Rotation.from_quat(a[:, [1, 2, 3, 0]])
    rb = Rotation.from_quat(b[:, [1, 2, 3, 0]])
    composed = (ra * rb).as_matrix()  # b first, then a
    np.testing.assert_allclose(quaternion_to_matrix(product), composed, atol=1e-12)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    np.testing.assert_allclose(np.linalg.norm(product, axis=-1), norms, rtol=1e-12)  # the product, not normalised
    assert not np.allclose(quaternion_to_matrix(quaternion_multiply(b, a)), composed, atol=1e-3)


def planar_skeleton() -> np.ndarray:
    """The neutral skeleton with limbs snapped to the body axes (thighs and shins straight down,
    feet forward-down in the sagittal plane, arms along ±X), so that hinge joints bend about
    exactly the body's X (knees, ankles) and Y (elbows) axes."""
    offsets = rest_offsets_from_joints(NEUTRAL_REST_JOINTS_M) * 1000.0
    for j in (4, 5, 7, 8):  # knees, ankles: straight down
        offsets[j] = [0.0, -np.linalg.norm(offsets[j]), 0.0]
    for j in (10, 11):  # feet: forward and down
        offsets[j] = np.array([0.0, -0.4, 1.0]) / np.hypot(0.4, 1.0) * np.linalg.norm(offsets[j])
    for j in (18, 20, 22):
        offsets[j] = [np.linalg.norm(offsets[j]), 0.0, 0.0]
    for j in (19, 21, 23):
        offsets[j] = [-np.linalg.norm(offsets[j]), 0.0, 0.0]
    offsets[0] = 0.0
    return offsets


def hinge_motion(n: int):
    """Rotations of a rigid skeleton: free hips and shoulders, knees and elbows bent 25–100° about
    their hinge axes, everything else moderately random."""
    rotvecs = RNG.normal(size=(n, 24, 3)) * 0.15
    rotvecs[:, 0] = Rotation.from_euler("x", 180, degrees=True).as_rotvec() + RNG.normal(size=(n, 3)) * 0.3
    rotvecs[:, [1, 2, 16, 17]] = RNG.normal(size=(n, 4, 3)) * 0.5
    bend = np.radians(RNG.uniform(25, 100, size=(n, 4)))
    rotvecs[:, 4] = bend[:, :1] * [1, 0, 0]  # knees backwards about +X
    rotvecs[:, 5] = bend[:, 1:2] * [1, 0, 0]
    rotvecs[:, 18] = bend[:, 2:3] * [0, -1, 0]  # left elbow forwards about -Y, right about +Y
    rotvecs[:, 19] = bend[:, 3:4] * [0, 1, 0]
    rotvecs[:, [7, 8]] = RNG.uniform(-0.4, 0.4, size=(n, 2, 1)) * [1, 0, 0]  # ankles: pure flexion
    rotvecs[:, [10, 11, 15, 22, 23]] = 0.0  # leaf joints carry no position information
    root = RNG.normal(size=(n, 3)) * 200 + [0, 0, 3000]
    return rotvecs, root


def test_ik_recovers_a_rigid_motion_and_its_hinge_twists():
    rest = planar_skeleton()
    rotvecs, root = hinge_motion(300)
    truth = axis_angle_to_matrix(rotvecs)
    joints, _ = forward_kinematics(rest, truth, root)
    fit = inverse_kinematics(joints)
    assert fit.mean_error < 1e-6
    fit_given = inverse_kinematics(joints, rest_offsets=rest)
    assert fit_given.mean_error < 1e-6
    # Twist is not in the positions; it comes from the bend planes: thighs from the knees,
    # upper arms from the elbows, shins from the feet. With the true skeleton those rotations
    # come back exactly (the collars' twist is unobservable, so compare the arms globally).
    _, truth_global = forward_kinematics(rest, truth, root)
    _, fit_global = forward_kinematics(rest, fit_given.local_rotations, fit_given.root_translation)
    for j in (1, 2, 4, 5):
        np.testing.assert_allclose(fit_given.local_rotations[:, j], truth[:, j], atol=1e-6, err_msg=JOINT_NAMES[j])
    for j in (16, 17):
        np.testing.assert_allclose(fit_global[:, j], truth_global[:, j], atol=1e-6, err_msg=JOINT_NAMES[j])
    # The knees' recovered rotations are pure flexion about the body's X axis.
    knee_axis = Rotation.from_matrix(fit_given.local_rotations[:, 4]).as_rotvec()
    assert np.abs(knee_axis[:, 1:]).max() < 1e-6


def test_ik_on_every_sample_clip_holds_bone_lengths_and_stays_under_15_mm(sample_motions):
    for index, motion in enumerate(sample_motions):
        joints = motion.joints.astype(np.float64)
        fit = inverse_kinematics(joints)
        posed = fit.joints()
        np.testing.assert_allclose(np.linalg.norm(posed - joints, axis=-1), fit.error, atol=1e-9)
        lengths = bone_lengths(posed)[:, 1:]
        rest_lengths = np.linalg.norm(fit.rest_offsets[1:], axis=-1)
        assert np.abs(lengths - rest_lengths).max() < 1e-6  # one rigid skeleton for every frame
        source_lengths = bone_lengths(joints)[:, 1:]
        assert source_lengths.std(axis=0).max() > 1.0  # the source itself is not rigid
        assert fit.mean_error < 15.0, f"clip {index}: {fit.mean_error:.2f} mm"
        exact = inverse_kinematics(joints, mode="exact")
        assert exact.mean_error < 1e-6
        np.testing.assert_allclose(exact.joints(), joints, atol=1e-6)
        report(
            "IK round trip on the official sample clips (fit mode: rigid skeleton, median bone lengths)",
            f"clip {index} ({motion.num_frames:>3} frames): mean per-joint error {fit.mean_error:5.2f} mm, "
            f"max {fit.error.max():6.1f} mm; exact mode {exact.mean_error:.1e} mm",
        )


def test_ik_rejects_wrong_shapes_and_modes():
    with pytest.raises(MotionError, match="joints"):
        inverse_kinematics(np.zeros((10, 23, 3)))
    with pytest.raises(MotionError, match="mode"):
        inverse_kinematics(np.ones((2, 24, 3)), mode="approximately")


def test_ik_handles_zero_length_bones_single_frames_and_still_poses(sample_motions):
    joints = sample_motions[0].joints.astype(np.float64)
    no_hands = joints.copy()
    no_hands[:, 22:24] = no_hands[:, 20:22]  # 22-joint data padded to 24: hands on the wrists
    slipped = joints.copy()
    slipped[10, 1] = slipped[10, 0]  # the estimator put a hip on the pelvis in one frame
    for name, clip in {
        "hands on wrists": no_hands,
        "hip on pelvis once": slipped,
        "one frame": joints[:1],
        "still pose": np.repeat(joints[:1], 20, axis=0),
    }.items():
        for mode in ("fit", "exact"):
            fit = inverse_kinematics(clip, mode=mode)
            posed = fit.joints()
            assert np.isfinite(fit.local_rotations).all() and np.isfinite(posed).all(), (name, mode)
            assert fit.mean_error < (1e-6 if mode == "exact" else 15.0), (name, mode, fit.mean_error)
    still = inverse_kinematics(np.repeat(joints[:1], 20, axis=0))
    drift = np.abs(still.local_rotations - still.local_rotations[:1]).max()
    assert drift < 1e-9  # a still pose gives the same rotations every frame
