"""The armature mapping of a motion (numpy side of the Blender add-on), checked by posing bones the way
Blender does — ``P_i = P_p · R_p⁻¹ · R_i · M_i`` with rest rotations R and basis M — and comparing the
posed heads, mapped back through the camera, with the source joints."""

from __future__ import annotations

import numpy as np
import pytest

from mtvcrafter.motion import inverse_kinematics
from mtvcrafter.motion.camera import camera_for_motion, world_to_camera_mm
from mtvcrafter.motion.rig import BODY_TO_BLENDER, pose_channels, rest_bones
from mtvcrafter.motion.rotations import quaternion_to_matrix
from mtvcrafter.motion.skeleton import NUM_JOINTS, PARENTS


def random_rotations(n, seed):
    q = np.random.default_rng(seed).normal(size=(n, 4))
    return quaternion_to_matrix(q / np.linalg.norm(q, axis=1, keepdims=True))


def pose_like_blender(rest_rot, rest_heads, quats, location):
    """Posed bone heads (T, 24, 3) in armature space, composed as Blender composes pose matrices."""
    frames = quats.shape[0]
    basis = quaternion_to_matrix(quats)
    rest = np.zeros((NUM_JOINTS, 4, 4))
    rest[:, :3, :3], rest[:, :3, 3], rest[:, 3, 3] = rest_rot, rest_heads, 1.0
    heads = np.zeros((frames, NUM_JOINTS, 3))
    for t in range(frames):
        pose = [None] * NUM_JOINTS
        for j in range(NUM_JOINTS):
            m = np.eye(4)
            m[:3, :3] = basis[t, j]
            if j == 0:
                m[:3, 3] = location[t]
                pose[j] = rest[j] @ m
            else:
                p = PARENTS[j]
                pose[j] = pose[p] @ np.linalg.inv(rest[p]) @ rest[j] @ m
            heads[t, j] = pose[j][:3, 3]
    return heads


@pytest.mark.parametrize("clip", [0, 4])
def test_posed_armature_reproduces_the_fitted_joints_through_the_camera(sample_motions, clip):
    motion = sample_motions[clip].slice(0, 40)
    fit = inverse_kinematics(motion.joints, mode="fit")
    camera = camera_for_motion(motion.joints)
    bones = rest_bones(fit.rest_offsets)
    heads = np.array([b[2] for b in bones])
    rest_rot = random_rotations(NUM_JOINTS, seed=clip)  # any roll: the channels must account for it
    quats, location = pose_channels(fit, rest_rot, heads, camera)
    posed = pose_like_blender(rest_rot, heads, quats, location)
    exported = world_to_camera_mm(posed, camera)
    np.testing.assert_allclose(exported, fit.joints(), atol=1e-6)
    error = np.linalg.norm(exported - motion.joints, axis=-1).mean()
    assert error < 15.0  # the fit's own error: the armature adds none
    assert np.all(np.sum(quats[1:] * quats[:-1], axis=-1) >= 0)  # no sign flips between frames


def test_rest_pose_stands_up_facing_minus_y_with_feet_below(sample_motions):
    fit = inverse_kinematics(sample_motions[0].joints, mode="fit")
    bones = {name: (head, tail) for name, _, head, tail in rest_bones(fit.rest_offsets)}
    assert bones["head"][0][2] > bones["pelvis"][0][2] > bones["left_ankle"][0][2]  # Z up
    assert bones["left_shoulder"][0][0] > bones["right_shoulder"][0][0]  # left is +X
    assert bones["left_foot"][1][1] < bones["left_foot"][0][1]  # toes point to −Y (forward)
    assert np.allclose(BODY_TO_BLENDER @ BODY_TO_BLENDER.T, np.eye(3)) and np.linalg.det(BODY_TO_BLENDER) == 1


def test_camera_puts_the_lowest_joint_on_the_floor(sample_motions):
    motion = sample_motions[1]
    camera = camera_for_motion(motion.joints)
    world = (motion.joints / 1000.0) @ camera.rotation.T + camera.position
    assert abs(world[..., 2].min()) < 1e-6
    assert np.all(world[..., 1] > 0)  # in front of the camera (it looks along +Y)
    np.testing.assert_allclose(world_to_camera_mm(world, camera), motion.joints, atol=1e-3)


def test_bvh_euler_angles_rebuild_the_rotations():
    from mtvcrafter.motion.bvh import matrix_to_euler_zxy

    rotations = random_rotations(200, seed=5)
    z, x, y = np.radians(matrix_to_euler_zxy(rotations)).T

    def axis(angle, i):
        c, s = np.cos(angle), np.sin(angle)
        m = np.zeros((len(angle), 3, 3))
        j, k = [(1, 2), (2, 0), (0, 1)][i]
        m[:, i, i] = 1
        m[:, j, j], m[:, j, k], m[:, k, j], m[:, k, k] = c, -s, s, c
        return m

    np.testing.assert_allclose(axis(z, 2) @ axis(x, 0) @ axis(y, 1), rotations, atol=1e-9)
