"""Motion quality checks (:mod:`mtvcrafter.motion.quality`) on real files and on motions made wrong the way
users get them wrong: the up axis, the unit, a bone map that swaps sides, a floating foot.

The three properties every real file must have — upright, correctly handed, a person's stature — are measured
here twice: with a few lines of geometry written in this file, and through ``check_quality``."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from reporting import report

from mtvcrafter.motion import Motion, load_motion, load_motions
from mtvcrafter.motion.quality import MAX_FRAMES_CHECKED, check_quality
from mtvcrafter.motion.skeleton import JOINT_INDEX as J
from mtvcrafter.motion.skeleton import NEUTRAL_REST_JOINTS_M

ROOT = Path(__file__).resolve().parents[1]
REALWORLD = ROOT.parent / "shared" / "data" / "realworld"
MIXAMO_MAP = ROOT / "presets" / "bones" / "mixamo.json"
#: The real-world motion files: load_motion reads every one without options.
REAL_FILES = (
    "cmu_cgspeed_01_01.bvh",
    "mixamo_test_freebvh.bvh",
    "rokoko_video_mixamo_preset_jesse_dance.bvh",
    "smpl2bvh_aistpp_gBR_sBM_cAll_d04_mBR0_ch01.bvh",
    "games105_walk60.bvh",
    "pymo_AV_8Walk_Meredith_HVHA_Rep1.bvh",
    "aistpp_gBR_sBM_cAll_d04_mBR0_ch01.pkl",
    "humanml3d_new_joints_012314.npy",
)
LEG_JOINTS = ("hip", "knee", "ankle", "foot")
ARM_JOINTS = ("collar", "shoulder", "elbow", "wrist", "hand")


def real_file(name: str) -> Path:
    path = REALWORLD / name
    if not path.is_file():
        pytest.skip(f"{path} is not there (the shared real-world data sits beside the checkout)")
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mtvcrafter", *args], capture_output=True, text=True, timeout=300)


# --- the three properties, in plain geometry (camera space: y down) ------------------------------------------


def upright_share(joints: np.ndarray) -> float:
    """Share of frames whose neck is above the pelvis in the image."""
    return float((joints[:, J["neck"], 1] < joints[:, J["pelvis"], 1]).mean())


def chirality(joints: np.ndarray) -> np.ndarray:
    """Sign of det[hips' left, pelvis → neck, toes] per frame: a rotation keeps it, a mirror flips it."""
    left = joints[..., J["left_hip"], :] - joints[..., J["right_hip"], :]
    up = joints[..., J["neck"], :] - joints[..., J["pelvis"], :]
    toes = sum(joints[..., J[f"{s}_foot"], :] - joints[..., J[f"{s}_ankle"], :] for s in ("left", "right"))
    return np.sign(np.linalg.det(np.stack([left, up, toes], axis=-2)))


def handed_share(joints: np.ndarray) -> float:
    """Share of frames with the chirality of SMPL's own rest skeleton."""
    return float((chirality(joints) == chirality(NEUTRAL_REST_JOINTS_M)).mean())


def consistent_share(joints: np.ndarray) -> float:
    """Share of frames whose left hip and left shoulder are on the same side of the body."""
    hips = joints[:, J["left_hip"]] - joints[:, J["right_hip"]]
    shoulders = joints[:, J["left_shoulder"]] - joints[:, J["right_shoulder"]]
    return float((np.sum(hips * shoulders, axis=-1) > 0).mean())


def stature_m(joints: np.ndarray) -> float:
    """Head joint to the ankles at full stretch (90th percentile over frames), plus a fifth for the top of the
    head and the sole (SMPL's neutral rest: 1.45 m head to ankles, a 1.70 m body)."""
    ankles = (joints[:, J["left_ankle"]] + joints[:, J["right_ankle"]]) / 2
    return float(np.percentile(np.linalg.norm(joints[:, J["head"]] - ankles, axis=-1), 90)) * 1.2 / 1000


def assert_a_plausible_person(motion: Motion) -> None:
    joints = motion.joints.astype(np.float64)
    assert upright_share(joints) > 0.95
    assert handed_share(joints) > 0.95
    assert consistent_share(joints) > 0.95
    assert 1.2 < stature_m(joints) < 2.1
    quality = check_quality(motion)
    assert quality.ok and quality.warnings == [] and motion.warnings() == []
    assert quality.summary() == (
        f"stature {quality.stature_m:.2f} m, upright, left/right consistent, not mirrored, feet on the ground"
    )
    assert math.isclose(quality.stature_m, stature_m(joints), rel_tol=0.1)
    assert quality.upright.value < 30  # degrees from the image's up, median over frames
    assert quality.handedness.value > 0.95 and quality.left_right.value > 0.95


def test_the_official_sample_clips_are_upright_handed_consistent_and_of_a_persons_stature(sample_motions):
    for motion in sample_motions:
        assert_a_plausible_person(motion)
        report("Motion quality", f"official sample {motion.name}: {check_quality(motion).summary()}")


def test_every_motion_file_of_the_real_world_data_is_checked():
    if not REALWORLD.is_dir():
        pytest.skip(f"{REALWORLD} is not there (the shared real-world data sits beside the checkout)")
    motion_files = {p.name for p in REALWORLD.iterdir() if p.suffix.lower() in (".bvh", ".pkl", ".npy", ".npz")}
    assert motion_files == set(REAL_FILES)


@pytest.mark.parametrize("name", REAL_FILES)
def test_every_real_file_is_upright_handed_consistent_and_of_a_persons_stature(name):
    motion = load_motion(real_file(name))
    assert_a_plausible_person(motion)
    report("Motion quality", f"{name}: {check_quality(motion).summary()}")


# --- motions made wrong ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dancer(sample_motions) -> Motion:
    """The official sample's longest clip (653 frames of dance)."""
    return max(sample_motions, key=lambda m: m.num_frames)


def turned(joints: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """The joints rotated about their mean point (they stay in front of the camera)."""
    centre = joints.reshape(-1, 3).mean(axis=0)
    return ((joints - centre) @ rotation.T + centre).astype(np.float32)


def about_x(degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def swapped(joints: np.ndarray, parts: tuple[str, ...]) -> np.ndarray:
    """The left and right labels of ``parts`` exchanged."""
    out = joints.copy()
    for part in parts:
        left, right = J[f"left_{part}"], J[f"right_{part}"]
        out[:, [left, right]] = out[:, [right, left]]
    return out


def test_a_motion_turned_upside_down_is_said_to_be_so_and_nothing_else(dancer):
    upside_down = dancer.with_joints(turned(dancer.joints, np.diag([-1.0, -1.0, 1.0])))  # half a turn in the image
    assert upright_share(upside_down.joints) == 0.0
    quality = check_quality(upside_down)
    assert quality.upright.verdict == "upside down" and quality.upright.value > 150
    assert quality.warnings == [
        "the body is upside down in 100 % of the frames: the joints must be in camera space with y pointing down "
        "(OpenCV axes)"
    ]
    assert quality.left_right.ok and quality.handedness.ok  # a turn is no mirror
    assert upside_down.warnings() == quality.warnings  # what the server's render job reports

    # a third of the clip upside down: a handstand, or data joined from two sources
    part = math.ceil(0.34 * dancer.num_frames)
    joints = dancer.joints.copy()
    joints[:part] = upside_down.joints[:part]
    quality = check_quality(dancer.with_joints(joints))
    share = f"{100 * part / dancer.num_frames:.0f} %"
    assert quality.upright.verdict == f"upside down in {share} of frames"
    assert f"the body is upside down in {share} of the frames" in quality.warnings[0]


@pytest.mark.parametrize(
    "name", ["mixamo_test_freebvh.bvh", "aistpp_gBR_sBM_cAll_d04_mBR0_ch01.pkl", "humanml3d_new_joints_012314.npy"]
)
def test_a_file_read_with_the_wrong_up_axis_names_the_axis_to_try(name):
    path = real_file(name)  # all Y up
    upside_down = load_motion(path, up="-Y")
    assert upright_share(upside_down.joints) < 0.1
    quality = check_quality(upside_down)
    assert quality.upright.verdict == "upside down"
    assert len(quality.warnings) == 1
    assert quality.warnings[0].startswith("the body is upside down in ")
    assert quality.warnings[0].endswith(
        " of the frames: is the file's up axis right? try --up Y (Up in Blender's import)"
    )
    lying = check_quality(load_motion(path, up="Z"))
    assert lying.upright.verdict == "lying sideways" and 60 < lying.upright.value < 120
    assert len(lying.warnings) == 1 and lying.warnings[0].endswith("try --up Y (Up in Blender's import)")


def test_a_tilted_camera_still_sees_an_upright_body_standing_on_its_feet(dancer):
    level = check_quality(dancer)
    for degrees in (30.0, -30.0):
        tilted = dancer.with_joints(turned(dancer.joints, about_x(degrees)))
        quality = check_quality(tilted)
        assert quality.upright.value > level.upright.value + 15  # the tilt shows in the angle …
        assert quality.ok and quality.warnings == []  # … and is no fault
        assert quality.summary().split(", ")[1:] == level.summary().split(", ")[1:]
        assert math.isclose(quality.stature.value, level.stature.value, rel_tol=1e-4)


def test_a_mirrored_motion_is_said_to_be_mirrored(dancer):
    mirrored = dancer.with_joints(dancer.joints * np.array([-1.0, 1.0, 1.0], dtype=np.float32))  # x negated
    assert handed_share(mirrored.joints) == 0.0 and consistent_share(mirrored.joints) == 1.0
    quality = check_quality(mirrored)
    assert quality.handedness.verdict == "mirrored" and quality.handedness.value < 0.05
    assert quality.left_right.ok and quality.upright.ok and quality.stature.ok and quality.feet.ok
    assert quality.warnings == [
        "the skeleton is mirrored: left and right are swapped (the toes point backwards from the body's front) — "
        "the joints must be in camera space with x to the image's right"
    ]
    assert "mirrored" in quality.summary()


def test_left_and_right_swapped_on_one_half_of_the_body_says_which_half(dancer):
    legs = check_quality(dancer.with_joints(swapped(dancer.joints, LEG_JOINTS)))
    assert legs.left_right.verdict == "swapped on the legs" and legs.left_right.value < 0.05
    assert len(legs.warnings) == 1
    assert legs.warnings[0].startswith("left and right are inconsistent: the legs' left and right are swapped")
    assert "mirrored" not in legs.summary()  # the inconsistency is the finding, not a mirror on top

    arms = check_quality(dancer.with_joints(swapped(dancer.joints, ARM_JOINTS)))
    assert arms.left_right.verdict == "swapped on the arms" and arms.handedness.ok
    assert arms.warnings[0].startswith("left and right are inconsistent: the arms' left and right are swapped")


def mixamo_map_with_sides_swapped(folder: Path, parts: tuple[str, ...]) -> Path:
    preset = json.loads(MIXAMO_MAP.read_text())
    joints = preset["joints"]
    for part in parts:
        joints[f"left_{part}"], joints[f"right_{part}"] = joints[f"right_{part}"], joints[f"left_{part}"]
    path = folder / f"mixamo_{'_'.join(parts)}_swapped.json"
    path.write_text(json.dumps({**preset, "name": "Mixamo, sides swapped"}))
    return path


def test_a_bone_map_that_swaps_sides_is_named_as_the_thing_to_check(tmp_path):
    path = real_file("mixamo_test_freebvh.bvh")
    legs = load_motion(path, bone_map=str(mixamo_map_with_sides_swapped(tmp_path, LEG_JOINTS)))
    assert consistent_share(legs.joints.astype(np.float64)) == 0.0
    assert legs.warnings() == [
        "left and right are inconsistent: the legs' left and right are swapped against the arms' (the left hip is on "
        "the right shoulder's side in 100 % of the frames) — check the bone map's legs"
    ]
    everything = load_motion(path, bone_map=str(mixamo_map_with_sides_swapped(tmp_path, LEG_JOINTS + ARM_JOINTS)))
    assert handed_share(everything.joints.astype(np.float64)) == 0.0
    assert everything.warnings() == [
        "the skeleton is mirrored: left and right are swapped (the toes point backwards from the body's front) — "
        "check the bone map"
    ]


def test_a_motion_ten_times_too_large_asks_about_the_unit(dancer):
    level = check_quality(dancer)
    large = check_quality(dancer.with_joints(dancer.joints * 10))  # accepted by Motion: its bones are not absurd
    assert math.isclose(large.stature.value, 10 * level.stature.value, rel_tol=1e-4)
    assert large.stature.verdict == "too tall" and not large.unit.ok
    assert large.warnings == [
        f"stature {large.stature_m:.2f} m: is the unit right? millimetres expected: the joints look like tenths of a "
        "millimetre; multiply by 0.1"
    ]
    assert large.summary().startswith(f"stature {large.stature_m:.2f} m (too tall), upright")


@pytest.mark.parametrize(
    ("name", "wrong", "right"),
    [
        ("mixamo_test_freebvh.bvh", "inch", "cm"),
        ("cmu_cgspeed_01_01.bvh", "inch", "cmu"),
        ("humanml3d_new_joints_012314.npy", "0.4", "m"),  # metres per unit
    ],
)
def test_a_file_read_in_the_wrong_unit_names_the_unit_to_try(name, wrong, right):
    path = real_file(name)
    quality = check_quality(load_motion(path, unit=wrong))
    assert not quality.stature.ok
    assert quality.warnings == [
        f"stature {quality.stature_m:.2f} m: is the unit right? try --unit {right} (Unit in Blender's import)"
    ]
    assert check_quality(load_motion(path, unit=right)).ok


def test_a_foot_that_never_comes_down_is_floating(dancer):
    lifted = dancer.joints.copy()
    lifted[:, [J["left_ankle"], J["left_foot"]], 1] -= 300.0  # 300 mm up the image, in every frame
    quality = check_quality(dancer.with_joints(lifted))
    assert quality.feet.verdict == "left foot floating" and not quality.feet.ok
    assert quality.feet.details["left_foot_lift_mm"] > 250 and quality.feet.details["right_foot_lift_mm"] == 0
    assert len(quality.warnings) == 1
    assert quality.warnings[0].startswith("the left foot never comes down to the ground the right foot stands on")
    assert quality.summary().endswith("left foot floating")


def test_a_long_clip_is_checked_on_spaced_frames_with_the_verdicts_of_every_frame(dancer):
    reps = -(-100_000 // dancer.num_frames)
    joints = np.concatenate([dancer.joints if i % 2 == 0 else dancer.joints[::-1] for i in range(reps)])[:100_000]
    joints[::3] *= np.array([-1.0, 1.0, 1.0], dtype=np.float32)  # a third of the frames mirrored
    motion = Motion(joints)
    spaced, every = check_quality(motion), check_quality(motion, max_frames=None)
    assert spaced.frames_checked <= MAX_FRAMES_CHECKED and every.frames_checked == 100_000
    assert spaced.summary() == every.summary() and spaced.warnings == every.warnings
    assert abs(spaced.handedness.value - every.handedness.value) < 0.01
    assert spaced.handedness.verdict == f"mirrored in {100 * (1 - every.handedness.value):.0f} % of frames"


def test_the_report_as_json(dancer):
    data = json.loads(json.dumps(check_quality(dancer).as_dict()))
    assert set(data["checks"]) == {"stature", "upright", "left_right", "handedness", "feet", "unit"}
    assert data["ok"] is True and data["warnings"] == [] and data["frames_checked"] == dancer.num_frames
    stature = data["checks"]["stature"]
    assert stature["unit"] == "mm" and data["summary"].startswith(f"stature {stature['value'] / 1000:.2f} m")


# --- where a user sees it --------------------------------------------------------------------------------------


def test_motion_info_shows_the_quality_of_every_clip(sample_pkl):
    result = run("motion", "info", str(sample_pkl))
    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("quality: ")]
    clips = load_motions(sample_pkl)
    assert lines == [f"quality: {check_quality(m).summary()}" for m in clips]

    result = run("motion", "info", str(sample_pkl), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [c["quality"] for c in data["clips"]] == [json.loads(json.dumps(check_quality(m).as_dict())) for m in clips]


def test_motion_info_and_convert_warn_about_a_wrong_up_axis(tmp_path):
    path = real_file("mixamo_test_freebvh.bvh")
    warning = "the body is upside down in 100 % of the frames: is the file's up axis right? try --up Y"
    info = run("motion", "info", str(path), "--up=-Y")
    assert info.returncode == 0, info.stderr
    assert "quality: stature " in info.stdout and ", upside down, " in info.stdout
    assert f"warning: {warning}" in info.stdout
    data = json.loads(run("motion", "info", str(path), "--up=-Y", "--json").stdout)
    assert data["clips"][0]["quality"]["checks"]["upright"]["verdict"] == "upside down"

    out = tmp_path / "m.npz"
    convert = run("motion", "convert", str(path), str(out), "--up=-Y")
    assert convert.returncode == 0, convert.stderr
    assert f"mixamo_test_freebvh: warning: {warning}" in convert.stderr and out.is_file()
    fine = run("motion", "convert", str(path), str(tmp_path / "fine.npz"))
    assert fine.returncode == 0 and "warning" not in fine.stderr
