"""The Motion type, our .npz, the official pickle layout, and normalisation statistics."""

from __future__ import annotations

import json
import pickle
import zipfile

import numpy as np
import pytest

from mtvcrafter.motion import (
    Motion,
    MotionError,
    NormStats,
    load_motion,
    load_motions,
    save_motion,
    save_motions,
)
from mtvcrafter.motion.camera import focal_length, project
from mtvcrafter.motion.npz import motion_to_arrays


def person(frames: int = 5) -> np.ndarray:
    """A plausible standing person 2 m in front of the camera, in mm (y down)."""
    from mtvcrafter.motion.skeleton import NEUTRAL_REST_JOINTS_M

    body = NEUTRAL_REST_JOINTS_M * [1000.0, -1000.0, -1000.0] + [0.0, 0.0, 2000.0]
    return np.repeat(body[None], frames, axis=0).astype(np.float32)


def test_official_sample_clips(sample_motions, sample_pkl):
    assert [m.num_frames for m in sample_motions] == [127, 299, 584, 653, 179]
    with open(sample_pkl, "rb") as handle:
        raw = pickle.load(handle)
    for motion, clip in zip(sample_motions, raw, strict=True):
        assert motion.joints.shape[1:] == (24, 3) and motion.joints.dtype == np.float32
        np.testing.assert_array_equal(motion.joints, clip["pose"])
        assert motion.image_size == (clip["video_height"], clip["video_width"])
        assert motion.fps == 30.0 and "no frame rate" in motion.notes[0]
        assert motion.source_format == "official-pkl"
        assert motion.warnings() == []


@pytest.mark.parametrize("clip", [0, 1])
def test_pkl_npz_pkl_round_trip_is_bit_exact(tmp_path, sample_pkl, clip):
    motion = load_motion(sample_pkl, clip=clip)
    save_motion(motion, tmp_path / "m.npz")
    again = load_motion(tmp_path / "m.npz")
    np.testing.assert_array_equal(again.joints, motion.joints)
    assert (again.fps, again.image_size, again.name) == (motion.fps, motion.image_size, motion.name)
    save_motion(again, tmp_path / "m.pkl")
    # The official layout, byte for byte: what the official scripts would have written for that clip.
    with open(sample_pkl, "rb") as handle:
        original = pickle.load(handle)[clip]
    assert (tmp_path / "m.pkl").read_bytes() == pickle.dumps([original], protocol=4)
    with open(tmp_path / "m.pkl", "rb") as handle:
        written = pickle.load(handle)
    assert written[0]["pose"].dtype == np.float32 and written[0]["video_length"] == motion.num_frames


def test_our_npz_is_plain_arrays_with_every_field(tmp_path):
    rng = np.random.default_rng(0)
    quats = rng.normal(size=(5, 24, 4))
    quats /= np.linalg.norm(quats, axis=-1, keepdims=True)
    motion = Motion(
        person(),
        fps=24,
        image_size=(720, 1280),
        fov_deg=40,
        frame_start=101,
        rotations=quats,
        root_translation=person()[:, 0],
        betas=np.arange(10),
        name="walk",
    )
    save_motion(motion, tmp_path / "walk.npz")
    data = np.load(tmp_path / "walk.npz", allow_pickle=False)
    assert str(data["format"]) == "mtvcrafter-motion" and int(data["version"]) == 1
    assert data["joints"].dtype == np.float32 and data["joints"].shape == (5, 24, 3)
    assert list(data["image_size"]) == [720, 1280] and int(data["frame_start"]) == 101
    back = load_motion(tmp_path / "walk.npz")
    assert (back.fps, back.image_size, back.fov_deg, back.frame_start, back.name) == (24, (720, 1280), 40, 101, "walk")
    np.testing.assert_allclose(back.rotations, quats, atol=1e-7)
    np.testing.assert_array_equal(back.betas, np.arange(10))
    # written stored (not deflated) now; the compressed files earlier versions wrote still load the same
    with zipfile.ZipFile(tmp_path / "walk.npz") as archive:
        assert {m.compress_type for m in archive.infolist()} == {zipfile.ZIP_STORED}
    np.savez_compressed(tmp_path / "old.npz", **motion_to_arrays(motion))
    old = load_motion(tmp_path / "old.npz")
    for name in ("joints", "rotations", "root_translation", "betas"):
        np.testing.assert_array_equal(getattr(old, name), getattr(back, name))
    assert (old.fps, old.image_size, old.fov_deg, old.frame_start, old.name) == (24, (720, 1280), 40, 101, "walk")


def test_npz_errors_name_the_file_and_the_field(tmp_path):
    base = {"format": np.array("mtvcrafter-motion"), "version": np.array(1), "joints": person(), "fps": np.array(30.0)}

    def write(name, **changes):
        arrays = {**base, **changes}
        arrays = {k: v for k, v in arrays.items() if v is not None}
        np.savez(tmp_path / name, **arrays)
        return tmp_path / name

    with pytest.raises(MotionError, match=r"newer\.npz.*version.*newer mtvcrafter"):
        load_motion(write("newer.npz", version=np.array(2)))
    with pytest.raises(MotionError, match=r"nofps\.npz.*'fps'"):
        load_motion(write("nofps.npz", fps=None))
    with pytest.raises(MotionError, match=r"nan\.npz.*'joints'.*frames 3"):
        joints = person()
        joints[3, 5, 1] = np.nan
        load_motion(write("nan.npz", joints=joints))
    with pytest.raises(MotionError, match=r"'joints'.*frames 2"):  # beyond float32: as bad as infinite
        joints = person().astype(np.float64)
        joints[2, 0, 0] = 1e300
        Motion(joints, fps=30)
    with pytest.raises(MotionError, match=r"ver\.npz.*'version'"):
        load_motion(write("ver.npz", version=np.array("one")))
    with pytest.raises(MotionError, match=r"info\.npz.*'info'"):
        load_motion(write("info.npz", info=np.array(json.dumps({"notes": 5}))))
    with pytest.raises(MotionError, match=r"fov\.npz.*'fov_deg': must be a finite number"):
        load_motion(write("fov.npz", fov_deg=np.array("wide")))
    # Compressed zeros declaring a huge field are refused from the header, before being read.
    np.savez_compressed(tmp_path / "bomb.npz", **base, betas=np.zeros(1 << 24, dtype=np.float32))
    assert (tmp_path / "bomb.npz").stat().st_size < 200_000
    with pytest.raises(MotionError, match=r"bomb\.npz.*'betas': holds 16,777,216 values"):
        load_motion(tmp_path / "bomb.npz")
    obj = tmp_path / "object.npz"
    np.savez(obj, **{**base, "joints": np.array([1, "a"], dtype=object)})
    with pytest.raises(MotionError, match=r"object\.npz.*'joints'.*Python objects"):
        load_motion(obj)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(MotionError, match=r"junk\.npz.*not a readable"):
        load_motion(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", foo=np.zeros(3))
    with pytest.raises(MotionError, match=r"other\.npz.*it has: foo"):
        load_motion(tmp_path / "other.npz")
    with pytest.raises(MotionError, match="no such file"):
        load_motion(tmp_path / "missing.npz")
    (tmp_path / "m.fbx").write_bytes(b"")
    with pytest.raises(MotionError, match=r"unknown motion file type '\.fbx'"):
        load_motion(tmp_path / "m.fbx")


def test_metadata_with_any_keys_survives_npz(tmp_path):
    motion = Motion(person(), metadata={b"raw": 1, 7: "seven", "video_path": "v.mp4"})
    save_motion(motion, tmp_path / "m.npz")
    assert load_motion(tmp_path / "m.npz").metadata == {"b'raw'": 1, "7": "seven", "video_path": "v.mp4"}
    assert not list(tmp_path.glob("*.part"))


def test_motion_validation():
    with pytest.raises(MotionError, match=r"joints.*\(frames, 24, 3\).*\(5, 17, 3\)"):
        Motion(np.zeros((5, 17, 3)))
    with pytest.raises(MotionError, match="no frames"):
        Motion(np.zeros((0, 24, 3)))
    with pytest.raises(MotionError, match="metres; multiply by 1000"):
        Motion(person() / 1000.0)
    with pytest.raises(MotionError, match="all at one point"):
        Motion(np.zeros((3, 24, 3)))
    with pytest.raises(MotionError, match="micrometres; multiply by 0.001"):
        Motion(person() * 1000.0)
    with pytest.raises(MotionError, match="centimetres; multiply by 10"):
        Motion(person() / 10.0)
    with pytest.raises(MotionError, match=r"4,000,001 frames is more than the 1,000,000 accepted"):
        Motion(np.broadcast_to(person(1), (4_000_001, 24, 3)))
    inf = person()
    inf[1, 0, 0] = np.inf
    with pytest.raises(MotionError, match=r"1 frame\(s\).*frames 1"):
        Motion(inf)
    with pytest.raises(MotionError, match="fps"):
        Motion(person(), fps=0)
    for size in [(0, 10), (np.nan, 3), (720.5, 1280), "big", (1, 2, 3)]:
        with pytest.raises(MotionError, match="'image_size'"):
            Motion(person(), image_size=size)
    with pytest.raises(MotionError, match="'fov_deg': must be a finite number"):
        Motion(person(), fov_deg="wide")
    with pytest.raises(MotionError, match="'frame_start'"):
        Motion(person(), frame_start="one")
    with pytest.raises(MotionError, match="'fps'"):
        Motion(person(), fps=np.nan)
    with pytest.raises(MotionError, match="rotations"):
        Motion(person(), rotations=np.zeros((4, 24, 4)))
    behind = person()
    behind[2, :, 2] *= -1
    assert "behind the camera" in Motion(behind).warnings()[0]


def test_slice_moves_frame_start_and_clip_selection(sample_pkl):
    motion = load_motion(sample_pkl, clip=2)
    assert motion.num_frames == 584
    part = Motion(person(10), frame_start=50).slice(2, 7)
    assert part.num_frames == 5 and part.frame_start == 52
    with pytest.raises(MotionError, match=r"clip 5 requested but the file holds 5 clip\(s\)"):
        load_motion(sample_pkl, clip=5)


def test_several_clips_only_fit_a_pickle(tmp_path, sample_motions):
    with pytest.raises(MotionError, match="holds one motion"):
        save_motions(sample_motions[:2], tmp_path / "two.npz")
    save_motions(sample_motions[:2], tmp_path / "two.pkl")
    back = load_motions(tmp_path / "two.pkl")
    assert [m.num_frames for m in back] == [127, 299]


def test_nlf_dict_layout_uses_the_first_person(tmp_path):
    people = np.stack([person(4), person(4) + 500.0], axis=1)  # (T, people, 24, 3)
    clip = {"video_path": "x.mp4", "pose": {"joints3d_nonparam": list(people)}, "video_height": 480, "video_width": 640}
    with open(tmp_path / "nlf.pkl", "wb") as handle:
        pickle.dump(clip, handle)
    motion = load_motion(tmp_path / "nlf.pkl")
    np.testing.assert_array_equal(motion.joints, person(4))
    assert motion.name == "x" and motion.image_size == (480, 640)


def test_camera_model():
    assert focal_length((1080, 604)) == pytest.approx(1080 / (2 * np.tan(np.radians(27.5))))
    f = focal_length((400, 600))
    u, v = project(np.array([100.0, -50.0, 2000.0]), (400, 600))
    assert (u, v) == pytest.approx((f * 0.05 + 300, f * -0.025 + 200))
    assert np.isnan(project(np.array([0.0, 0.0, -5.0]), (400, 600))).all()


def test_normalisation_statistics(tmp_path, sample_motions):
    from conftest import sample_dir

    official = NormStats.official()
    np.testing.assert_array_equal(official.mean, np.load(sample_dir() / "mean.npy"))
    np.testing.assert_array_equal(official.std, np.load(sample_dir() / "std.npy"))
    computed = NormStats.compute(sample_motions)
    everything = np.concatenate([m.joints for m in sample_motions]).astype(np.float64)
    np.testing.assert_allclose(computed.mean, everything.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(computed.std, everything.std(axis=0), rtol=1e-5)
    computed.save(tmp_path / "stats")
    again = NormStats.load(tmp_path / "stats")
    np.testing.assert_array_equal(again.mean, computed.mean)
    joints = sample_motions[0].joints
    np.testing.assert_allclose(official.denormalize(official.normalize(joints)), joints, atol=1e-3)
    offsets = official.joint_offsets_mm
    np.testing.assert_allclose(offsets.mean(axis=0), 0.0, atol=1e-3)
    with pytest.raises(MotionError, match="positive"):
        NormStats(official.mean, official.std * 0)


def test_info_json_lists_every_clip(capsys, sample_pkl):
    from mtvcrafter.cli import main

    assert main(["motion", "info", str(sample_pkl), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [c["frames"] for c in info["clips"]] == [127, 299, 584, 653, 179]
    assert {c["joints"] for c in info["clips"]} == {24}
    assert info["clips"][0]["duration_s"] == pytest.approx(127 / 30, abs=1e-3)


def test_blender_camera_axes():
    from mtvcrafter.motion.camera import blender_camera_to_opencv, opencv_to_blender_camera

    # SPEC §1: a Blender camera looks down its local -Z with +Y up; OpenCV is x right, y down, z forward,
    # in millimetres: (x, y, z)_opencv = (x_cam, -y_cam, -z_cam) * 1000.
    in_front_above_right = np.array([0.5, 0.25, -3.0])
    np.testing.assert_allclose(blender_camera_to_opencv(in_front_above_right), [500.0, -250.0, 3000.0])
    points = np.random.default_rng(1).normal(size=(10, 3))
    np.testing.assert_allclose(opencv_to_blender_camera(blender_camera_to_opencv(points)), points, atol=1e-12)


def test_clip_names_from_windows_and_posix_paths(tmp_path):
    clips = [
        {"video_path": r"C:\data\videos\walk.mp4", "pose": person(2)},
        {"video_path": "./data/videos/17_热恋阵线.mp4", "pose": person(2)},
        {"pose": person(2)},
    ]
    with open(tmp_path / "names.pkl", "wb") as handle:
        pickle.dump(clips, handle)
    assert [m.name for m in load_motions(tmp_path / "names.pkl")] == ["walk", "17_热恋阵线", "clip2"]
