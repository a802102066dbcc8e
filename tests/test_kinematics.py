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
    best_fit_rotation,
    matrix_to_quaternion,
    quaternion_to_matrix,
    rotation_between,
)
from mtvcrafter.motion.skeleton import NEUTRAL_REST_JOINTS_M, rest_offsets_from_joints

RNG = np.random.default_rng(7)


def reference_fk(offsets: np.ndarray, rotvecs: np.ndarray, root: np.ndarray) -> np.ndarray:
    """Plain per-frame, per-joint forward kinematics with scipy rotations."""
    out = np.zeros((rotvecs.shape[0], 24, 3))
    for t in range(rotvecs.shape[0]):
        glob = [None] * 24
        for j in range(24):
            local = Rotation.from_rotvec(rotvecs[t, j])
            if j == 0:
                glob[0] = local
                out[t, 0] = root[t]
            else:
                p = PARENTS[j]
                glob[j] = glob[p] * local
                out[t, j] = out[t, p] + glob[p].apply(offsets[j])
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


def test_forward_kinematics_matches_reference():
    offsets = rest_offsets_from_joints(NEUTRAL_REST_JOINTS_M)
    rotvecs = RNG.normal(size=(6, 24, 3)) * 0.6
    root = RNG.normal(size=(6, 3))
    joints, glob = forward_kinematics(offsets, axis_angle_to_matrix(rotvecs), root)
    np.testing.assert_allclose(joints, reference_fk(offsets, rotvecs, root), atol=1e-12)
    np.testing.assert_allclose(glob[:, 0], Rotation.from_rotvec(rotvecs[:, 0]).as_matrix(), atol=1e-12)


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
