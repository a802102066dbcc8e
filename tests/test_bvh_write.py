"""The BVH writer: files are written Y up, so our reader (and Blender's importer, tests/blender) reads the body
back upright, with no quality warning, and in the same pose as the motion it was written from."""

from __future__ import annotations

import numpy as np
import pytest
from reporting import report

from mtvcrafter.motion import JOINT_NAMES, bvh_forward_kinematics, inverse_kinematics, load_motions, read_bvh
from mtvcrafter.motion.bvh import write_bvh
from mtvcrafter.motion.rig import with_skeleton

HEADING = "BVH writer"
J = {name: i for i, name in enumerate(JOINT_NAMES)}


@pytest.fixture(scope="module")
def written(sample_motions, tmp_path_factory):
    """Each sample clip fitted with a skeleton and written as BVH: clip → (path, fitted joints (T, 24, 3), mm,
    camera frame)."""
    folder = tmp_path_factory.mktemp("bvh_write")
    out = {}
    for clip, motion in enumerate(sample_motions):
        fit = inverse_kinematics(motion.joints, mode="fit")
        out[clip] = (write_bvh(with_skeleton(motion, fit), folder / f"clip{clip}.bvh"), fit.joints())
    return out


def rigid_fit(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The proper rotation ``R`` and translation ``t`` (one for the whole clip) that best map the points of
    ``source`` onto ``target`` (Kabsch, no reflection), and the residual per point."""
    a, b = source.reshape(-1, 3), target.reshape(-1, 3)
    ca, cb = a.mean(axis=0), b.mean(axis=0)
    u, _, vt = np.linalg.svd((a - ca).T @ (b - cb))
    d = np.sign(np.linalg.det(u @ vt))
    rotation = (u @ np.diag([1.0, 1.0, d]) @ vt).T
    residual = np.linalg.norm((a - ca) @ rotation.T + cb - b, axis=-1)
    return rotation, residual


@pytest.mark.parametrize("clip", range(5))
def test_a_written_bvh_reads_back_upright_without_warnings_in_the_same_pose(sample_motions, written, clip):
    path, fitted = written[clip]
    (motion,) = load_motions(path)
    assert motion.source_format == "bvh" and motion.num_frames == sample_motions[clip].num_frames
    assert motion.warnings() == [], motion.warnings()
    assert "upright" in motion.quality().summary()
    joints = motion.joints.astype(np.float64)
    # upright in the camera's image (y down): the head above the pelvis, the feet below it, in every frame
    assert (joints[:, J["head"], 1] < joints[:, J["pelvis"], 1]).all()
    for foot in ("left_ankle", "right_ankle"):
        assert (joints[:, J[foot], 1] > joints[:, J["pelvis"], 1]).all()
    # the same body in the same pose: after the one rigid placement our reader applies (the default camera), every
    # joint of every frame is where the fitted motion has it — a proper rotation, so not mirrored either
    rotation, residual = rigid_fit(fitted, joints)
    report(HEADING, f"clip {clip}: written → read back, after the camera placement: max {residual.max():.3f} mm")
    assert residual.max() < 0.05  # 4 decimals of cm and degrees
    assert np.linalg.det(rotation) > 0
    # the placement keeps up up: the fitted motion's up (−y, image y is down) stays near the camera's up
    assert (rotation @ [0.0, -1.0, 0.0])[1] < -0.7


def test_the_file_itself_is_y_up_facing_plus_z(written):
    """In the file's own axes (as Blender's importer reads them): Y up, the performer facing +Z (left at +X)."""
    path, _ = written[0]
    bvh = read_bvh(path)
    positions, _ = bvh_forward_kinematics(bvh)
    order = [bvh.skeleton.names.index(name) for name in JOINT_NAMES]
    p = positions[:, order]
    assert (p[:, J["head"], 1] > p[:, J["pelvis"], 1]).all()
    assert (p[:, J["left_ankle"], 1] < p[:, J["pelvis"], 1]).all()
    left = p[:, J["left_hip"]] - p[:, J["right_hip"]]
    up = p[:, J["neck"]] - p[:, J["pelvis"]]
    forward = np.cross(left, up)  # left × up: the way the body faces
    assert np.median(forward[:, 2] / np.linalg.norm(forward, axis=-1)) > 0.5
