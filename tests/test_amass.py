"""AMASS / SMPL(-H/-X) parameter files as a user loads them, checked against an independent reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mtvcrafter.cli import main
from mtvcrafter.motion import MotionError, bone_lengths, load_motion, project
from mtvcrafter.motion.skeleton import NEUTRAL_REST_JOINTS_M

#: SMPL's parents of the 22 body joints; SMPL-H adds 15 finger joints per hand.
BODY_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19]
SMPLH_PARENTS = BODY_PARENTS + [20] * 15 + [21] * 15
#: SMPL-24's hand joints taken from SMPL-H's 52: the first joint of each middle finger.
SMPLH_TO_SMPL24 = list(range(22)) + [25, 40]
SMPL24_PARENTS = BODY_PARENTS + [20, 21]


def synth_poses(frames: int, width: int, seed: int) -> np.ndarray:
    """Axis-angle poses ``(frames, width)``: small smooth joint angles, the body turned upright in a Z-up world."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None] / 120.0
    amplitude = rng.uniform(-0.35, 0.35, size=(1, width))
    frequency = rng.uniform(0.5, 2.0, size=(1, width))
    phase = rng.uniform(0.0, 2 * np.pi, size=(1, width))
    poses = amplitude * np.sin(2 * np.pi * frequency * t + phase)
    # Root: +90° about X takes SMPL's Y-up body upright in AMASS's Z-up world, plus a little sway.
    poses[:, 0:3] = [np.pi / 2, 0.0, 0.0] + 0.05 * poses[:, 0:3]
    return poses


def walking_trans(frames: int, fps: float = 120.0) -> np.ndarray:
    """A walk forwards (the upright body faces -Y) with a little bounce, in metres."""
    t = np.arange(frames) / fps
    return np.stack([0.05 * np.sin(2 * np.pi * t), -1.2 * t, 0.95 + 0.02 * np.sin(4 * np.pi * t)], axis=-1)


def write_amass(path: Path, frames: int = 48, width: int = 156, seed: int = 0, **overrides: object) -> Path:
    """An AMASS-style ``.npz`` (SMPL-H layout by default); ``overrides`` replace or add fields (None drops one)."""
    rng = np.random.default_rng(seed + 1000)
    fields: dict[str, object] = {
        "poses": synth_poses(frames, width, seed),
        "trans": walking_trans(frames),
        "betas": rng.normal(size=16),
        "gender": np.array("male"),
        "mocap_framerate": np.array(120.0),
        "dmpls": np.zeros((frames, 8)),
    }
    for key, value in overrides.items():
        if value is None:
            fields.pop(key, None)
        else:
            fields[key] = value
    np.savez(path, **fields)
    return path


def write_body_model(path: Path, seed: int = 0, vertices: int = 300) -> Path:
    """A small synthetic SMPL-H body model: vertices clustered around plausible joint positions."""
    rng = np.random.default_rng(seed)
    centres = np.empty((52, 3))
    centres[:22] = NEUTRAL_REST_JOINTS_M[:22]
    centres[22:37] = NEUTRAL_REST_JOINTS_M[22] + rng.normal(scale=0.02, size=(15, 3))
    centres[37:52] = NEUTRAL_REST_JOINTS_M[23] + rng.normal(scale=0.02, size=(15, 3))
    per_joint = 5
    template = rng.normal(scale=0.3, size=(vertices, 3))  # the rest: scattered over the body
    regressor = np.zeros((52, vertices))
    for j in range(52):
        cluster = np.arange(j * per_joint, (j + 1) * per_joint)
        template[cluster] = centres[j] + rng.normal(scale=0.02, size=(per_joint, 3))
        regressor[j, cluster] = rng.uniform(0.2, 1.0, size=per_joint)
    regressor += rng.uniform(0.0, 1e-4, size=regressor.shape) * (rng.random(regressor.shape) < 0.3)
    regressor /= regressor.sum(axis=1, keepdims=True)
    shapedirs = rng.normal(scale=0.01, size=(vertices, 3, 16))
    kintree = np.array([[(p if p >= 0 else 2**32 - 1) for p in SMPLH_PARENTS], list(range(52))], dtype=np.int64)
    np.savez(
        path,
        J_regressor=regressor,
        v_template=template,
        shapedirs=shapedirs,
        kintree_table=kintree,
        f=np.zeros((1, 3), dtype=np.int64),
    )
    return path


def reference_joints(model_path: Path, amass_path: Path) -> np.ndarray:
    """SMPL-24 joints ``(T, 24, 3)``, metres, world space: plain float64 FK of the whole SMPL-H tree, frame by frame."""
    model = np.load(model_path)
    data = np.load(amass_path)
    betas = data["betas"].astype(np.float64)
    shaped = model["v_template"] + np.einsum("vcb,b->vc", model["shapedirs"][:, :, : len(betas)], betas)
    rest = model["J_regressor"] @ shaped  # (52, 3)
    parents = [int(p) if p < 2**31 else -1 for p in model["kintree_table"][0]]
    poses, trans = data["poses"], data["trans"]
    out = np.empty((len(poses), 24, 3))
    for t in range(len(poses)):
        local = Rotation.from_rotvec(poses[t, :156].reshape(52, 3)).as_matrix()
        world_rot = [np.eye(3)] * 52
        posed = np.empty((52, 3))
        for j in range(52):
            p = parents[j]
            if p < 0:
                world_rot[j] = local[j]
                posed[j] = rest[j] + trans[t]
            else:
                world_rot[j] = world_rot[p] @ local[j]
                posed[j] = posed[p] + world_rot[p] @ (rest[j] - rest[p])
        out[t] = posed[SMPLH_TO_SMPL24]
    return out


def pairwise(joints: np.ndarray) -> np.ndarray:
    """All joint-to-joint distances per frame, ``(T, J, J)``."""
    return np.linalg.norm(joints[:, :, None, :] - joints[:, None, :, :], axis=-1)


def rigid_fit(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation and translation best taking ``source (N, 3)`` onto ``target (N, 3)`` (Kabsch, proper or not)."""
    mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
    u, _, vt = np.linalg.svd((source - mu_s).T @ (target - mu_t))
    rotation = vt.T @ u.T
    return rotation, mu_t - rotation @ mu_s


def neutral_bone_lengths_mm() -> np.ndarray:
    return bone_lengths(NEUTRAL_REST_JOINTS_M) * 1000.0


# ---------------------------------------------------------------------------------------------
# 1. The built-in neutral skeleton
# ---------------------------------------------------------------------------------------------


def test_smplh_file_loads_with_the_neutral_skeleton_upright_in_front_of_the_camera(tmp_path):
    path = write_amass(tmp_path / "walk_poses.npz", frames=60)
    motion = load_motion(path)

    assert motion.num_frames == 60
    assert motion.fps == 120.0
    assert motion.joints.shape == (60, 24, 3) and motion.joints.dtype == np.float32
    assert motion.source_format == "amass-npz"
    assert motion.name == "walk_poses"
    notes = " ".join(motion.notes)
    assert "built-in neutral skeleton" in notes
    assert "SMPL-H" in motion.notes[0] and "156" in motion.notes[0] and "male" in motion.notes[0]

    # Rigid bones: every frame has the neutral skeleton's lengths, in millimetres.
    lengths = bone_lengths(motion.joints.astype(np.float64))
    np.testing.assert_allclose(lengths, np.broadcast_to(neutral_bone_lengths_mm(), lengths.shape), rtol=0, atol=1e-3)

    # In front of the camera and inside its image.
    assert (motion.joints[..., 2] > 0).all()
    assert motion.warnings() == []
    height, width = motion.camera_image_size
    uv = project(motion.joints, motion.camera_image_size, motion.fov_deg)
    assert np.isfinite(uv).all()
    assert (uv[..., 0] >= 0).all() and (uv[..., 0] <= width).all()
    assert (uv[..., 1] >= 0).all() and (uv[..., 1] <= height).all()

    # Upright (image v grows downwards): head above both ankles, and the person spans a good part of the image.
    head, left_ankle, right_ankle = uv[:, 15, 1], uv[:, 7, 1], uv[:, 8, 1]
    assert (head < left_ankle).all() and (head < right_ankle).all()
    assert (np.minimum(left_ankle, right_ankle) - head).min() > 0.3 * height
    # Facing the camera: the person's left hip is on the image's right.
    assert (uv[:, 1, 0] > uv[:, 2, 0]).all()


def test_the_walk_is_seen_as_the_translation(tmp_path):
    """With the neutral skeleton the result is the reference FK up to one rigid camera transform."""
    path = write_amass(tmp_path / "walk.npz", frames=30)
    motion = load_motion(path)
    data = np.load(path)
    # Reference with the neutral rest skeleton (no body model): same FK, built-in rest joints.
    rest = NEUTRAL_REST_JOINTS_M
    expected = np.empty((30, 24, 3))
    for t in range(30):
        local = Rotation.from_rotvec(data["poses"][t, :66].reshape(22, 3)).as_matrix()
        rot = [np.eye(3)] * 24
        for j in range(24):
            p = SMPL24_PARENTS[j]
            if p < 0:
                rot[j] = local[0]
                expected[t, j] = rest[0] + data["trans"][t]
            else:
                rot[j] = rot[p] @ (local[j] if j < 22 else np.eye(3))
                expected[t, j] = expected[t, p] + rot[p] @ (rest[j] - rest[p])
    expected_mm = expected * 1000.0
    rotation, shift = rigid_fit(expected_mm.reshape(-1, 3), motion.joints.reshape(-1, 3).astype(np.float64))
    assert np.linalg.det(rotation) > 0  # a proper rotation: left stays left
    moved = expected_mm @ rotation.T + shift
    np.testing.assert_allclose(motion.joints, moved, rtol=0, atol=1e-3)


# ---------------------------------------------------------------------------------------------
# 2. Exact joints from a body model, against an independent reference
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("as_folder", [False, True], ids=["model-file", "model-folder"])
def test_body_model_joints_match_an_independent_forward_kinematics(tmp_path, as_folder):
    models = tmp_path / "models"
    models.mkdir()
    model = write_body_model(models / "SMPLH_male.npz", seed=3)
    if as_folder:
        # A decoy with another body shape that must not be picked for a 'male' clip.
        write_body_model(models / "SMPLH_NEUTRAL.npz", seed=99)
    clip = write_amass(tmp_path / "clip.npz", frames=24, seed=5)

    motion = load_motion(clip, body_model=models if as_folder else model)
    assert any("SMPLH body model SMPLH_male.npz with 16 shape coefficients" in note for note in motion.notes)
    assert not any("built-in" in note for note in motion.notes)
    np.testing.assert_allclose(motion.betas, np.load(clip)["betas"], rtol=1e-6)

    expected_mm = reference_joints(model, clip) * 1000.0
    got = motion.joints.astype(np.float64)
    # The camera is an unknown rigid transform: compare every joint-to-joint distance of every frame.
    np.testing.assert_allclose(pairwise(got), pairwise(expected_mm), rtol=0, atol=1e-3)
    # Stronger: one rigid transform (the camera) maps the whole reference clip onto the library's.
    rotation, shift = rigid_fit(expected_mm.reshape(-1, 3), got.reshape(-1, 3))
    assert np.linalg.det(rotation) > 0
    np.testing.assert_allclose(got, expected_mm @ rotation.T + shift, rtol=0, atol=1e-3)
    # The rest skeleton stored with the motion is the model's for these betas, in millimetres.
    data, body = np.load(clip), np.load(model)
    shaped = body["v_template"] + np.einsum("vcb,b->vc", body["shapedirs"], data["betas"])
    rest = (body["J_regressor"] @ shaped)[SMPLH_TO_SMPL24]
    offsets = (rest - rest[[0, *SMPL24_PARENTS[1:]]]) * 1000.0
    offsets[0] = 0.0
    np.testing.assert_allclose(motion.rest_offsets, offsets, rtol=0, atol=1e-3)
    assert (motion.joints[..., 2] > 0).all()


def test_bone_lengths_follow_betas(tmp_path):
    model = write_body_model(tmp_path / "SMPLH_male.npz", seed=3)
    betas_a = np.random.default_rng(1).normal(size=16)
    betas_b = betas_a + np.random.default_rng(2).normal(scale=1.5, size=16)
    a = load_motion(write_amass(tmp_path / "a.npz", frames=6, betas=betas_a), body_model=model)
    b = load_motion(write_amass(tmp_path / "b.npz", frames=6, betas=betas_b), body_model=model)
    lengths_a = bone_lengths(a.joints.astype(np.float64))
    lengths_b = bone_lengths(b.joints.astype(np.float64))
    # Constant over frames, as the model's rest skeleton for those betas says.
    for lengths, clip in ((lengths_a, tmp_path / "a.npz"), (lengths_b, tmp_path / "b.npz")):
        expected = bone_lengths(reference_joints(model, clip)[0]) * 1000.0
        np.testing.assert_allclose(lengths, np.broadcast_to(expected, lengths.shape), rtol=0, atol=1e-3)
    difference = np.abs(lengths_a[0, 1:] - lengths_b[0, 1:])
    assert difference.max() > 5.0  # millimetres: a visibly different body
    # And not the built-in skeleton either.
    assert np.abs(lengths_a[0, 1:] - neutral_bone_lengths_mm()[1:]).max() > 1.0


def test_folder_without_the_clips_gender_or_a_neutral_model_is_an_error(tmp_path):
    models = tmp_path / "bodies"
    models.mkdir()
    write_body_model(models / "SMPLH_male.npz")
    clip = write_amass(tmp_path / "clip.npz", frames=4, gender=np.array("female"))
    with pytest.raises(MotionError) as info:
        load_motion(clip, body_model=models)
    message = str(info.value)
    assert str(models) in message
    assert "female" in message and "SMPLH_male.npz" in message
    assert info.value.field == "body_model"


def test_missing_body_model_path_is_an_error(tmp_path):
    clip = write_amass(tmp_path / "clip.npz", frames=4)
    with pytest.raises(MotionError, match="no such file or folder") as info:
        load_motion(clip, body_model=tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)


def test_folder_with_both_genders_picks_the_clips_gender(tmp_path):
    # The layout of the SMPL+H release used by AMASS: smplh/{female,male,neutral}/model.npz.
    root = tmp_path / "smplh"
    for gender, seed in (("female", 11), ("male", 12), ("neutral", 13)):
        (root / gender).mkdir(parents=True)
        write_body_model(root / gender / "model.npz", seed=seed)
    clip = write_amass(tmp_path / "clip.npz", frames=4)  # gender 'male'
    motion = load_motion(clip, body_model=root)
    expected = bone_lengths(reference_joints(root / "male" / "model.npz", clip)[0]) * 1000.0
    np.testing.assert_allclose(bone_lengths(motion.joints[0].astype(np.float64)), expected, rtol=0, atol=1e-3)


# ---------------------------------------------------------------------------------------------
# 3. SMPL-X and SMPL layouts
# ---------------------------------------------------------------------------------------------


def test_smplx_layout_with_mocap_frame_rate(tmp_path):
    path = write_amass(
        tmp_path / "smplx.npz",
        frames=20,
        width=165,
        mocap_framerate=None,
        mocap_frame_rate=np.array(60.0),
        gender=np.array("neutral"),
    )
    motion = load_motion(path)
    assert motion.num_frames == 20 and motion.fps == 60.0
    assert motion.joints.shape == (20, 24, 3) and motion.joints.dtype == np.float32
    assert "SMPL-X" in motion.notes[0] and "165" in motion.notes[0]
    lengths = bone_lengths(motion.joints.astype(np.float64))
    np.testing.assert_allclose(lengths, np.broadcast_to(neutral_bone_lengths_mm(), lengths.shape), rtol=0, atol=1e-3)


def test_smpl_layout(tmp_path):
    path = write_amass(tmp_path / "smpl.npz", frames=10, width=72, betas=np.zeros(10), mocap_framerate=np.array(30.0))
    motion = load_motion(path)
    assert motion.num_frames == 10 and motion.fps == 30.0
    assert motion.notes[0].startswith("SMPL parameters (72 values")
    assert (motion.joints[..., 2] > 0).all()


def test_missing_frame_rate_assumes_30(tmp_path):
    path = write_amass(tmp_path / "nofps.npz", frames=5, mocap_framerate=None)
    motion = load_motion(path)
    assert motion.fps == 30.0
    assert any("30 fps assumed" in note for note in motion.notes)


# ---------------------------------------------------------------------------------------------
# 4. Bad inputs
# ---------------------------------------------------------------------------------------------


def test_missing_trans_names_the_file_and_the_field(tmp_path):
    path = write_amass(tmp_path / "notrans.npz", frames=5, trans=None)
    with pytest.raises(MotionError) as info:
        load_motion(path)
    message = str(info.value)
    assert str(path) in message and "field 'trans': missing" in message
    assert info.value.field == "trans"


def test_trans_with_the_wrong_number_of_frames(tmp_path):
    path = write_amass(tmp_path / "short.npz", frames=8, trans=walking_trans(5))
    with pytest.raises(MotionError) as info:
        load_motion(path)
    message = str(info.value)
    assert str(path) in message and "field 'trans'" in message
    assert "8" in message and "(5, 3)" in message
    assert info.value.field == "trans"


def test_nan_in_poses(tmp_path):
    poses = synth_poses(6, 156, seed=0)
    poses[3, 10] = np.nan
    path = write_amass(tmp_path / "nan.npz", frames=6, poses=poses)
    with pytest.raises(MotionError) as info:
        load_motion(path)
    message = str(info.value)
    assert str(path) in message and "field 'poses'" in message and "NaN" in message


def test_poses_of_the_wrong_shape(tmp_path):
    path = write_amass(tmp_path / "flat.npz", frames=6, poses=np.zeros(156))
    with pytest.raises(MotionError) as info:
        load_motion(path)
    assert str(path) in str(info.value) and "field 'poses'" in str(info.value)


def test_npz_with_neither_our_nor_amass_fields_lists_its_keys(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, vertices=np.zeros((3, 3)), faces=np.zeros((1, 3), dtype=np.int64))
    with pytest.raises(MotionError) as info:
        load_motion(path)
    message = str(info.value)
    assert str(path) in message
    assert "faces, vertices" in message
    assert "poses" in message and "trans" in message  # what it looked for


# ---------------------------------------------------------------------------------------------
# 5. The command line
# ---------------------------------------------------------------------------------------------


def test_cli_motion_info_json(tmp_path, capsys):
    path = write_amass(tmp_path / "walk.npz", frames=36)
    assert main(["motion", "info", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["file"] == str(path)
    (clip,) = report["clips"]
    assert clip["source_format"] == "amass-npz"
    assert clip["frames"] == 36 and clip["fps"] == 120.0 and clip["joints"] == 24
    assert clip["duration_s"] == pytest.approx(0.3)
    assert clip["has_rotations"] is True
    assert clip["warnings"] == []
    assert any("built-in neutral skeleton" in note for note in clip["notes"])


def test_cli_motion_info_json_with_a_body_model(tmp_path, capsys):
    path = write_amass(tmp_path / "walk.npz", frames=12)
    model = write_body_model(tmp_path / "SMPLH_male.npz")
    assert main(["motion", "info", str(path), "--json", "--body-model", str(model)]) == 0
    (clip,) = json.loads(capsys.readouterr().out)["clips"]
    assert clip["source_format"] == "amass-npz" and clip["frames"] == 12 and clip["fps"] == 120.0
    assert any("SMPLH body model SMPLH_male.npz" in note for note in clip["notes"])


def test_cli_reports_a_bad_file_in_one_line(tmp_path, capsys):
    path = write_amass(tmp_path / "short.npz", frames=8, trans=walking_trans(5))
    assert main(["motion", "info", str(path), "--json"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(path) in err and "trans" in err


def test_a_folder_of_model_families_serves_each_clip_its_own(tmp_path):
    """A folder holding SMPL-H and SMPL-X models: each clip gets the family its pose width says;
    a single model file of the wrong family is refused rather than silently used."""
    models = tmp_path / "models"
    (models / "smplh").mkdir(parents=True)
    smplh = write_body_model(models / "smplh" / "SMPLH_MALE.npz", seed=3)
    # A stand-in SMPL-X file: the same arrays with the 55-joint layout (jaw, eyes, then the hands).
    data = dict(np.load(smplh))
    regressor = np.concatenate([data["J_regressor"][:22], data["J_regressor"][:3], data["J_regressor"][22:]])
    parents = np.concatenate([data["kintree_table"][0][:22], [15, 15, 15], data["kintree_table"][0][22:]])
    data.update(J_regressor=regressor, kintree_table=np.stack([parents, np.arange(55)]))
    (models / "aa_smplx").mkdir()
    np.savez(models / "aa_smplx" / "SMPLX_MALE.npz", **data)  # sorts first: family, not order, must decide
    h_clip = write_amass(tmp_path / "h.npz", frames=4, width=156)
    x_clip = write_amass(tmp_path / "x.npz", frames=4, width=165)
    assert "SMPLH body model SMPLH_MALE.npz" in " ".join(load_motion(h_clip, body_model=models).notes)
    assert "SMPLX body model SMPLX_MALE.npz" in " ".join(load_motion(x_clip, body_model=models).notes)
    with pytest.raises(MotionError, match=r"SMPL-X parameters but .*SMPLH_MALE\.npz is a SMPLH body model"):
        load_motion(x_clip, body_model=smplh)


def test_given_fps_serves_files_without_a_frame_rate(tmp_path):
    path = write_amass(tmp_path / "clip.npz", frames=6, mocap_framerate=None)
    motion = load_motion(path, fps=60)
    assert motion.fps == 60 and any("60 fps as given" in n for n in motion.notes)
    assert load_motion(write_amass(tmp_path / "rate.npz", frames=6), fps=60).fps == 120  # the file's own wins


def test_split_pose_fields_must_cover_the_same_frames(tmp_path):
    path = write_amass(
        tmp_path / "split.npz", frames=6, poses=None, root_orient=np.zeros((6, 3)), pose_body=np.zeros((5, 63))
    )
    with pytest.raises(MotionError, match=r"split\.npz: field 'pose_body'"):
        load_motion(path)


@pytest.mark.parametrize("up", ["Z", "Y"])
def test_the_rotations_read_pose_the_joints_whatever_the_turn(tmp_path, up):
    """The rotations kept from an AMASS file (quaternions computed from the axis-angle poses, the root's turned
    upright and into the camera's axes) are the motion: forward kinematics of them gives its joints, upright, with
    w >= 0 throughout, for a root that turns past half a turn and joints at rest; in AMASS's own Z-up world and in a
    Y-up one (``up="Y"``), whose turn to Z up is not the identity."""
    from mtvcrafter.motion.kinematics import forward_kinematics
    from mtvcrafter.motion.rotations import quaternion_to_matrix
    from mtvcrafter.motion.skeleton import JOINT_INDEX

    frames = 90
    poses = synth_poses(frames, 156, seed=4)
    poses[:, 3:6] = 0.0  # a joint exactly at rest
    spin = np.linspace(0.0, 2.2 * np.pi, frames)  # the performer spins about the vertical past a full turn
    vertical, upright = ([0.0, 0.0, 1.0], [np.pi / 2, 0, 0]) if up == "Z" else ([0.0, 1.0, 0.0], [0.0, 0.0, 0.0])
    poses[:, 0:3] = (Rotation.from_rotvec(spin[:, None] * vertical) * Rotation.from_rotvec(upright)).as_rotvec()
    trans = walking_trans(frames) if up == "Z" else walking_trans(frames)[:, [0, 2, 1]] * [1, 1, -1]
    path = write_amass(tmp_path / "spin.npz", frames=frames, poses=poses, trans=trans)
    motion = load_motion(path, up=up)
    head_above = motion.joints[:, JOINT_INDEX["head"], 1] < motion.joints[:, JOINT_INDEX["pelvis"], 1]  # y down
    assert head_above.all()
    rotations = motion.rotations.astype(np.float64)
    assert rotations.shape == (frames, 24, 4) and (rotations[..., 0] >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(rotations, axis=-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(rotations[:, 1], [[1.0, 0.0, 0.0, 0.0]] * frames, atol=1e-7)
    posed, _ = forward_kinematics(motion.rest_offsets, quaternion_to_matrix(rotations), motion.root_translation)
    assert np.abs(posed - motion.joints).max() < 0.05  # mm
    # the local rotations below the root are the file's own: knee angles equal the pose's
    knee = np.linalg.norm(poses[:, 12:15], axis=-1)
    np.testing.assert_allclose(2 * np.arccos(np.clip(rotations[:, 4, 0], -1, 1)), knee, atol=1e-5)
