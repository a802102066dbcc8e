"""AIST++ / SMPL parameter pickles, joint-position .npy files (HumanML3D) and MDM's results.npy, as a user loads
them: real files written by others where there are some, and files these tools' layouts describe."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mtvcrafter.cli import main
from mtvcrafter.motion import (
    MotionError,
    bone_lengths,
    forward_kinematics,
    load_motion,
    load_motions,
    project,
    save_motion,
)
from mtvcrafter.motion.rotations import quaternion_to_matrix
from mtvcrafter.motion.skeleton import JOINT_INDEX, NEUTRAL_REST_JOINTS_M

ROOT = Path(__file__).resolve().parents[1]
REALWORLD = ROOT.parent / "shared" / "data" / "realworld"
AISTPP = REALWORLD / "aistpp_gBR_sBM_cAll_d04_mBR0_ch01.pkl"
AISTPP_BVH = REALWORLD / "smpl2bvh_aistpp_gBR_sBM_cAll_d04_mBR0_ch01.bvh"
HUMANML3D = REALWORLD / "humanml3d_new_joints_012314.npy"
J = JOINT_INDEX
#: The chain from an ankle to the head: a body measure independent of pose and axes.
ANKLE_TO_HEAD = (("left_ankle", "left_knee"), ("left_knee", "left_hip"), ("left_hip", "pelvis"),
                 ("pelvis", "spine1"), ("spine1", "spine2"), ("spine2", "spine3"), ("spine3", "neck"),
                 ("neck", "head"))  # fmt: skip

needs_realworld = pytest.mark.skipif(
    not (AISTPP.is_file() and HUMANML3D.is_file() and AISTPP_BVH.is_file()),
    reason="the real-world motion files are not beside the checkout",
)


class Call:
    """Pickles as the call ``func(*args)``: what a hostile file makes a plain unpickler run."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def ankle_to_head_m(joints_mm: np.ndarray) -> np.ndarray:
    """Per frame, metres."""
    return sum(np.linalg.norm(joints_mm[:, J[a]] - joints_mm[:, J[b]], axis=-1) for a, b in ANKLE_TO_HEAD) / 1000.0


def pairwise(joints: np.ndarray) -> np.ndarray:
    """All joint-to-joint distances per frame, ``(T, J, J)``."""
    joints = joints.astype(np.float64)
    return np.linalg.norm(joints[:, :, None, :] - joints[:, None, :, :], axis=-1)


def assert_in_view_and_upright(motion) -> None:
    """In front of the camera, inside the image in every frame, head above the ankles, facing the camera."""
    assert (motion.joints[..., 2] > 0).all()
    height, width = motion.camera_image_size
    uv = project(motion.joints, motion.camera_image_size, motion.fov_deg)
    inside = (uv[..., 0] >= 0) & (uv[..., 0] <= width) & (uv[..., 1] >= 0) & (uv[..., 1] <= height)
    assert inside.all(axis=1).mean() > 0.95
    # image v grows downwards: head above pelvis above ankles, the body mostly along the image's vertical
    ankles = (uv[:, J["left_ankle"], 1] + uv[:, J["right_ankle"], 1]) / 2
    assert ((uv[:, J["head"], 1] < uv[:, J["pelvis"], 1]) & (uv[:, J["pelvis"], 1] < ankles)).mean() > 0.95
    body = motion.joints[:, J["head"]] - (motion.joints[:, J["left_ankle"]] + motion.joints[:, J["right_ankle"]]) / 2
    tilt = np.degrees(np.arccos(-body[:, 1] / np.linalg.norm(body, axis=-1)))
    assert np.median(tilt) < 20
    # facing the camera in the first frame: the performer's left hip is on the image's right
    assert uv[0, J["left_hip"], 0] > uv[0, J["right_hip"], 0]
    # a person, not a speck: the body spans a good part of the image
    assert np.median(np.ptp(uv[..., 1], axis=1)) > 0.2 * height


def assert_rotations_pose_the_joints(motion, tolerance_mm: float) -> None:
    assert motion.rotations is not None and motion.rest_offsets is not None and motion.root_translation is not None
    posed, _ = forward_kinematics(
        motion.rest_offsets, quaternion_to_matrix(motion.rotations.astype(np.float64)), motion.root_translation
    )
    error = np.linalg.norm(posed - motion.joints, axis=-1)
    assert error.max() < tolerance_mm, error.max()


def assert_round_trip(motion, path: Path) -> None:
    save_motion(motion, path)
    again = load_motion(path)
    assert again.num_frames == motion.num_frames and again.fps == motion.fps and again.name == motion.name
    for field in ("joints", "rotations", "rest_offsets", "root_translation"):
        np.testing.assert_array_equal(getattr(again, field), getattr(motion, field), err_msg=field)


# ---------------------------------------------------------------------------------------------
# AIST++ and other SMPL parameter files
# ---------------------------------------------------------------------------------------------


@needs_realworld
def test_the_real_aistpp_pickle_loads_in_metres_in_front_of_the_camera_with_its_rotations(tmp_path):
    motion = load_motion(AISTPP)
    raw = pickle.loads(AISTPP.read_bytes())  # the file's own numbers, for comparison (a file we trust)

    assert motion.num_frames == len(raw["smpl_poses"]) == 720
    assert motion.fps == 60.0
    assert motion.source_format == "aistpp-pkl" and motion.name == AISTPP.stem
    stature = ankle_to_head_m(motion.joints)
    assert 1.4 < np.median(stature) < 2.0
    assert_in_view_and_upright(motion)
    # metres: the pelvis travels as far as smpl_trans / smpl_scaling says (a rigid camera keeps distances)
    travelled = np.linalg.norm(motion.joints[:, J["pelvis"]] - motion.joints[:1, J["pelvis"]], axis=-1) / 1000.0
    trans_m = raw["smpl_trans"] / raw["smpl_scaling"]
    np.testing.assert_allclose(travelled, np.linalg.norm(trans_m - trans_m[:1], axis=-1), atol=1e-4)
    assert 0.1 < travelled.max() < 5.0
    # the rotations are kept: forward kinematics of them is the motion
    assert_rotations_pose_the_joints(motion, tolerance_mm=0.5)
    assert_round_trip(motion, tmp_path / "dance.npz")


@needs_realworld
def test_aistpp_matches_the_same_dance_converted_to_bvh_by_another_tool():
    """smpl2bvh wrote this dance as a BVH in cm with its own skeleton: the two motions must be one pose sequence
    up to the camera (a rigid transform) and body size. Joint-to-joint distances per frame carry exactly that."""
    ours, theirs = load_motion(AISTPP), load_motion(AISTPP_BVH)
    assert ours.num_frames == theirs.num_frames and ours.fps == theirs.fps
    a, b = pairwise(ours.joints), pairwise(theirs.joints)
    scale = np.median(b) / np.median(a)  # the two skeletons' sizes
    assert 0.9 < scale < 1.1
    difference = np.abs(a * scale - b)
    # Within 15 mm on average in every frame, and 50 mm for 99 % of the pairs: what differing bone proportions
    # leave; a wrong joint order, mirror, axis or frame rate shows as hundreds of millimetres.
    assert difference.mean(axis=(1, 2)).max() < 15.0
    assert np.percentile(difference, 99) < 50.0
    # The pelvis travels the same path (the translation's unit and the frame rate agree).
    path_a = np.linalg.norm(ours.joints[:, 0] - ours.joints[:1, 0], axis=-1)
    path_b = np.linalg.norm(theirs.joints[:, 0] - theirs.joints[:1, 0], axis=-1)
    np.testing.assert_allclose(path_a, path_b, atol=5.0)


def aistpp_fields() -> dict:
    return pickle.loads(AISTPP.read_bytes())


@needs_realworld
@pytest.mark.parametrize("layout", ["axis-angle .pkl", "matrices .npz", "camera axes .pkl"])
def test_smpl_fitting_outputs_give_the_same_motion_as_the_aistpp_file(tmp_path, layout):
    """The same parameters as a fitting tool writes them (smplx names: global_orient, body_pose, transl, betas)."""
    fields = aistpp_fields()
    poses = fields["smpl_poses"][:120].astype(np.float64)
    transl = fields["smpl_trans"][:120] / fields["smpl_scaling"]
    orient, body = poses[:, :3], poses[:, 3:]
    if layout == "camera axes .pkl":
        # the world seen from a camera (Y down): the whole body turned half a turn about X; SMPL turns about the
        # pelvis's rest position, so the translation turns with it
        flip = Rotation.from_rotvec([np.pi, 0.0, 0.0])
        orient = (flip * Rotation.from_rotvec(orient)).as_rotvec()
        pelvis = NEUTRAL_REST_JOINTS_M[0]
        transl = flip.apply(pelvis + transl) - pelvis
    out = {"global_orient": orient, "body_pose": body, "transl": transl, "betas": np.zeros((1, 10))}
    if layout == "matrices .npz":
        out["global_orient"] = Rotation.from_rotvec(orient).as_matrix()[:, None]
        out["body_pose"] = Rotation.from_rotvec(body.reshape(-1, 3)).as_matrix().reshape(120, 23, 3, 3)
        path = tmp_path / "fit.npz"
        np.savez(path, **out)
    else:
        path = tmp_path / "fit.pkl"
        path.write_bytes(pickle.dumps(out))

    motion = load_motion(path, fps=60)
    # the reference: the same 120 frames as an AIST++ file (the camera sees the whole clip, so the same frames)
    short = tmp_path / "short_aistpp.pkl"
    short.write_bytes(
        pickle.dumps({**fields, "smpl_poses": fields["smpl_poses"][:120], "smpl_trans": fields["smpl_trans"][:120]})
    )
    reference = load_motion(short)
    assert motion.source_format == "smpl-params" and motion.fps == 60.0
    np.testing.assert_allclose(motion.joints, reference.joints, atol=0.5)
    assert_rotations_pose_the_joints(motion, tolerance_mm=0.5)
    notes = "\n".join(motion.notes)
    if layout == "camera axes .pkl":
        assert "axes: -Y up (detected" in notes
        # told the world is Y up, the performer hangs upside down: the option is obeyed
        told = load_motion(path, fps=60, up="Y")
        assert (told.joints[:, J["head"], 1] > told.joints[:, J["pelvis"], 1]).mean() > 0.9
    else:
        assert "axes: Y up (the format's)" in notes


# ---------------------------------------------------------------------------------------------
# Joint positions (.npy): HumanML3D
# ---------------------------------------------------------------------------------------------


@needs_realworld
def test_the_real_humanml3d_file_loads_with_hands_and_a_fitted_skeleton(tmp_path):
    source = np.load(HUMANML3D)  # a plain float array: safe to load
    motion = load_motion(HUMANML3D)

    assert motion.num_frames == len(source) == 170 and motion.joints.shape == (170, 24, 3)
    assert motion.fps == 20.0 and motion.source_format == "joints-npy"
    assert_in_view_and_upright(motion)
    # the 22 joints are the file's, up to the camera: every joint-to-joint distance, in mm
    np.testing.assert_allclose(pairwise(motion.joints[:, :22]), pairwise(source) * 1000.0, atol=0.1)
    # the hands continue the forearms beyond the wrists, by a hand's length (a third of the forearm or so)
    for elbow, wrist, hand in (("left_elbow", "left_wrist", "left_hand"), ("right_elbow", "right_wrist", "right_hand")):
        forearm = motion.joints[:, J[wrist]] - motion.joints[:, J[elbow]]
        palm = motion.joints[:, J[hand]] - motion.joints[:, J[wrist]]
        cosine = np.sum(forearm * palm, axis=-1) / np.linalg.norm(forearm, axis=-1) / np.linalg.norm(palm, axis=-1)
        assert cosine.min() > 0.9999
        ratio = np.linalg.norm(palm, axis=-1) / np.linalg.norm(forearm, axis=-1)
        assert 0.25 < ratio.min() and ratio.max() < 0.45
    # keyable: rotations of a rigid skeleton that pose the joints (HumanML3D's bones are rigid: a close fit)
    assert_rotations_pose_the_joints(motion, tolerance_mm=1.0)
    lengths = bone_lengths(motion.joints.astype(np.float64))[:, 1:]
    assert np.ptp(lengths, axis=0).max() < 1.0  # mm: the bones keep their lengths over the clip
    assert any("hands placed along the forearms" in note for note in motion.notes)
    assert_round_trip(motion, tmp_path / "walk.npz")


@needs_realworld
def test_unit_up_and_fps_options_read_a_converted_copy_as_the_same_motion(tmp_path, capsys):
    source = np.load(HUMANML3D).astype(np.float64)
    # the same clip in centimetres in a Z-up world (x, y, z) → (z, x, y), as another tool might store it
    copy = tmp_path / "clip_cm_zup.npy"
    np.save(copy, (source @ np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).T * 100.0).astype(np.float32))
    reference = load_motion(HUMANML3D)

    told = load_motion(copy, unit="cm", up="Z", fps=30)
    np.testing.assert_allclose(told.joints, reference.joints, atol=0.5)
    assert told.fps == 30.0 and told.duration == pytest.approx(170 / 30)
    assert "unit: cm (as given)" in told.notes and "axes: Z up (as given)" in told.notes
    # without options the size and the standing axis give them away
    detected = load_motion(copy)
    np.testing.assert_allclose(detected.joints, reference.joints, atol=0.5)
    assert detected.fps == 20.0
    # a wrong axis is obeyed: the performer lies in the image
    lying = load_motion(copy, unit="cm", up="X")
    body = lying.joints[:, J["head"]] - lying.joints[:, J["pelvis"]]
    assert np.median(np.abs(body[:, 1]) / np.linalg.norm(body, axis=-1)) < 0.5
    # and a wrong unit too: metres make the copy a giant, refused as a motion
    with pytest.raises(MotionError, match="median bone length"):
        load_motion(copy, unit="m", up="Z")

    assert main(["motion", "info", str(copy), "--unit", "cm", "--up", "Z", "--fps", "30"]) == 0
    out = capsys.readouterr().out
    assert "170 frames x 24 joints, 30 fps" in out and "note: unit: cm (as given)" in out


def test_joint_arrays_that_are_not_smpl_joints_are_refused_in_one_line(tmp_path):
    keypoints = tmp_path / "h36m.npy"
    np.save(keypoints, np.zeros((50, 17, 3), dtype=np.float32))
    with pytest.raises(MotionError) as info:
        load_motion(keypoints)
    message = str(info.value)
    assert "\n" not in message and str(keypoints) in message
    assert "(50, 17, 3)" in message and "22 or 24" in message

    mdm_layout = tmp_path / "sample.npy"
    np.save(mdm_layout, np.zeros((22, 3, 60), dtype=np.float32))
    with pytest.raises(MotionError, match=r"transpose it to \(60, 22, 3\)"):
        load_motion(mdm_layout)

    text = tmp_path / "notes.npy"
    text.write_text("frame,x,y,z\n")
    with pytest.raises(MotionError, match="not an .npy array"):
        load_motion(text)


# ---------------------------------------------------------------------------------------------
# MDM's results.npy
# ---------------------------------------------------------------------------------------------


def mdm_results(source: np.ndarray, lengths: list[int], texts: list[str], repetitions: int = 1) -> dict:
    """MDM's results dict: ``motion (samples × repetitions, 22, 3, frames)`` padded past each length, repetition
    by repetition."""
    frames = max(lengths)
    motion = np.zeros((len(lengths), 22, 3, frames), dtype=np.float32)
    for i, n in enumerate(lengths):
        start = (7 * i) % (len(source) - n + 1)
        motion[i, :, :, :n] = np.moveaxis(source[start : start + n], 0, -1)
        motion[i, :, :, n:] = motion[i, :, :, n - 1 : n]  # MDM pads with its last pose
    return {
        "motion": motion,
        "text": texts,
        "lengths": np.array(lengths),
        "num_samples": len(lengths) // repetitions,
        "num_repetitions": repetitions,
    }


@needs_realworld
def test_mdm_results_give_every_sample_as_a_clip_of_its_length_named_by_its_text(tmp_path, capsys):
    source = np.load(HUMANML3D)
    texts = ["a person walks forward", "a person jumps", "a person walks forward", "a person jumps"]
    results = mdm_results(source, [120, 60, 90, 45], texts, repetitions=2)
    path = tmp_path / "results.npy"
    np.save(path, results, allow_pickle=True)

    clips = load_motions(path)
    assert [c.num_frames for c in clips] == [120, 60, 90, 45]
    assert [c.name for c in clips] == [
        "a person walks forward (1)",
        "a person jumps (1)",
        "a person walks forward (2)",
        "a person jumps (2)",
    ]
    assert all(c.fps == 20.0 and c.source_format == "mdm-npy" and c.rotations is not None for c in clips)
    assert "repetition 1" in clips[2].notes[0]
    # each clip is its sample's joints, as the same joints in a plain .npy give them
    single = tmp_path / "sample1.npy"
    np.save(single, np.moveaxis(results["motion"][1, :, :, :60], -1, 0))
    np.testing.assert_allclose(clips[1].joints, load_motion(single).joints, atol=1e-3)
    for clip in clips:
        assert_in_view_and_upright(clip)
    assert load_motion(path, clip=3, fps=30).fps == 30.0

    assert main(["motion", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "4 clip(s)" in out and "a person jumps (2): 45 frames x 24 joints, 20 fps" in out


def test_a_hostile_pickle_in_place_of_results_npy_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "results.npy"
    np.save(path, {"motion": Call(os.system, f"touch {marker}"), "text": ["x"]}, allow_pickle=True)
    with pytest.raises(MotionError, match=r"refused to load: the pickle asks for '(posix|os)\.system'") as info:
        load_motions(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()
    np.load(path, allow_pickle=True)  # control: numpy's own loader runs it
    assert marker.exists()


def test_pickled_npy_and_pickles_that_are_neither_format_name_what_they_hold(tmp_path):
    other = tmp_path / "other.npy"
    np.save(other, {"poses_6d": np.zeros((3, 6)), "fps": 20}, allow_pickle=True)
    with pytest.raises(MotionError, match=r"not MDM's results \(no 'motion'; it holds: fps, poses_6d\)"):
        load_motion(other)

    strange = tmp_path / "params.pkl"
    strange.write_bytes(pickle.dumps({"vertices": np.zeros((4, 3)), "faces": np.zeros((2, 3), np.int64)}))
    with pytest.raises(MotionError) as info:
        load_motion(strange)
    message = str(info.value)
    assert "\n" not in message and "it has: faces, vertices" in message and "MDM results.npy" in message


def test_options_for_other_formats_are_refused_naming_the_formats_they_serve(tmp_path):
    clip = tmp_path / "clip.npy"
    np.save(clip, np.zeros((4, 22, 3)))
    with pytest.raises(MotionError, match="applies to BVH files only"):
        load_motion(clip, bone_map="smpl")
    params = tmp_path / "fit.pkl"
    params.write_bytes(pickle.dumps({"global_orient": np.zeros((2, 3)), "body_pose": np.zeros((2, 63))}))
    with pytest.raises(MotionError, match=r"unit.*applies to BVH and joint-position \.npy files only"):
        load_motion(params, unit="cm")


def test_a_body_model_is_refused_for_files_that_hold_their_joints(tmp_path, capsys, sample_pkl):
    """--body-model gives exact joints of SMPL parameters; for a BVH, joint positions, an official pickle or our
    .npz it would change nothing, so it is refused in one line naming the option, rather than silently ignored."""
    clip = tmp_path / "clip.npy"
    np.save(clip, np.zeros((4, 22, 3)))
    ours = tmp_path / "ours.npz"
    save_motion(load_motion(sample_pkl), ours)
    from mtvcrafter.motion import inverse_kinematics
    from mtvcrafter.motion.bvh import write_bvh
    from mtvcrafter.motion.rig import with_skeleton

    motion = load_motion(sample_pkl)
    bvh = write_bvh(with_skeleton(motion, inverse_kinematics(motion.joints, mode="fit")), tmp_path / "clip.bvh")
    cases = [
        (clip, "a joint-position .npy file"),
        (sample_pkl, "an official motion pickle"),
        (ours, "our motion .npz"),
        (bvh, "a BVH file"),
    ]
    for path, what in cases:
        with pytest.raises(MotionError, match="applies to SMPL parameter files only") as info:
            load_motion(path, body_model=tmp_path)
        assert info.value.field == "body_model" and what in str(info.value)
        assert main(["motion", "info", str(path), "--body-model", str(tmp_path)]) != 0
        err = capsys.readouterr().err
        assert "body_model" in err.replace("-", "_") and len(err.strip().splitlines()) == 1


@needs_realworld
@pytest.mark.parametrize(
    ("path", "frames", "fps"), [(AISTPP, 720, 60), (HUMANML3D, 170, 20)], ids=["aist++", "humanml3d"]
)
def test_motion_info_reads_the_real_files_without_options(capsys, path, frames, fps):
    assert main(["motion", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{path.stem}: {frames} frames x 24 joints, {fps} fps" in out
