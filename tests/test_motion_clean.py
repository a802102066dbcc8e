"""Clean motion: feet that touch the ground stay planted, jitter goes, swing phases keep their shape, and the
report says how far joints moved. A synthetic walk with known footprints is the ground truth; the official
sample clips check that real estimator output changes by a plausible amount."""

from __future__ import annotations

import math
import subprocess
import sys
import zipfile
from dataclasses import dataclass

import numpy as np
import pytest
from reporting import report

from mtvcrafter.motion import JOINT_NAMES, Motion, MotionError, bone_lengths
from mtvcrafter.motion.clean import CleanReport, clean_motion, smoothing_window
from mtvcrafter.motion.skeleton import JOINT_INDEX, NEUTRAL_REST_JOINTS_M

FPS = 30.0
LEFT_ANKLE, RIGHT_ANKLE = JOINT_INDEX["left_ankle"], JOINT_INDEX["right_ankle"]
LEFT_BALL, RIGHT_BALL = JOINT_INDEX["left_foot"], JOINT_INDEX["right_foot"]
FOOT_JOINTS = {"left_foot": (LEFT_ANKLE, LEFT_BALL), "right_foot": (RIGHT_ANKLE, RIGHT_BALL)}
LEGS = {"left_foot": ("left_hip", "left_knee", "left_ankle"), "right_foot": ("right_hip", "right_knee", "right_ankle")}
UPPER_BODY = [j for j, name in enumerate(JOINT_NAMES) if not name.endswith(("hip", "knee", "ankle", "foot"))]


@dataclass
class Walk:
    truth: np.ndarray  # (T, 24, 3) mm, camera space
    observed: np.ndarray  # truth + foot sliding + jitter
    stance: dict[str, np.ndarray]  # foot name -> (T,) bool, the foot flat on the ground


def _rotation_y(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _knee(hip: np.ndarray, ankle: np.ndarray, thigh: float, shin: float, forward: np.ndarray) -> np.ndarray:
    """Two-bone placement of the knee, bending towards ``forward`` (world, metres)."""
    reach = ankle - hip
    d = np.linalg.norm(reach, axis=-1, keepdims=True)
    along = reach / d
    d = np.minimum(d, thigh + shin - 1e-6)
    a = (thigh**2 - shin**2 + d**2) / (2 * d)
    r = np.sqrt(np.maximum(thigh**2 - a**2, 0.0))
    bend = forward - np.sum(forward * along, axis=-1, keepdims=True) * along
    bend /= np.linalg.norm(bend, axis=-1, keepdims=True)
    return hip + a * along + r * bend


def make_walk(seconds: float = 4.0, *, slide_mm: float = 30.0, jitter_mm: float = 4.0, seed: int = 0) -> Walk:
    """A person walking across the view of a level camera 4.5 m away: each foot flat and still on the
    ground for 60 % of its gait cycle (1.1 s) and swinging forward in an arc for the rest; upper body
    carried along with a little bounce. Observed = truth with the feet sliding forward by ``slide_mm``
    over each stance (an estimator's foot skate) and Gaussian jitter on every joint."""
    rng = np.random.default_rng(seed)
    rest = NEUTRAL_REST_JOINTS_M @ _rotation_y(math.pi / 2).T  # facing +X (walking direction), Y up
    frames = int(seconds * FPS)
    t = np.arange(frames) / FPS
    period, step, stance_share = 1.1, 0.55, 0.6  # stride = 2 steps per period
    speed = 2 * step / period
    ground = rest[[LEFT_BALL, RIGHT_BALL], 1].min() - 0.02
    pelvis = np.stack([speed * t, -0.05 + 0.012 * np.cos(4 * math.pi * t / period), np.zeros_like(t)], axis=-1)
    joints = rest[None] + pelvis[:, None]
    stance = {}
    forward = np.array([1.0, 0.0, 0.0])
    for name, phase_offset in (("left_foot", 0.0), ("right_foot", 0.5)):
        ankle, ball = FOOT_JOINTS[name]
        hip, knee = JOINT_INDEX[LEGS[name][0]], JOINT_INDEX[LEGS[name][1]]
        cycle = t / period + phase_offset
        index, phase = np.floor(cycle), cycle - np.floor(cycle)
        # footprint k: where the foot stands during stance k (under the hip at mid-stance)
        mid_stance_time = (index - phase_offset + stance_share / 2) * period
        print_x = speed * mid_stance_time
        swing = np.clip((phase - stance_share) / (1 - stance_share), 0.0, 1.0)
        ease = 0.5 - 0.5 * np.cos(math.pi * swing)
        foot_x = np.where(phase < stance_share, print_x, print_x + ease * 2 * step)
        lift = np.where(phase < stance_share, 0.0, 0.07 * np.sin(math.pi * swing))
        stance[name] = phase < stance_share
        for joint in (ankle, ball):
            joints[:, joint, 0] = rest[joint, 0] - rest[ankle, 0] + foot_x
            joints[:, joint, 1] = rest[joint, 1] + lift
            joints[:, joint, 2] = rest[joint, 2]
        thigh = float(np.linalg.norm(rest[knee] - rest[hip]))
        shin = float(np.linalg.norm(rest[ankle] - rest[knee]))
        joints[:, knee] = _knee(joints[:, hip], joints[:, ankle], thigh, shin, forward)
    assert ground < joints[:, :, 1].min() + 1e-9  # nothing below the ground
    # camera: level, 4.5 m in front of the walking line (world -Z is its view direction), OpenCV axes
    camera = np.array([speed * seconds / 2, 0.1, 4.5])
    truth = (
        np.stack([joints[..., 0] - camera[0], -(joints[..., 1] - camera[1]), camera[2] - joints[..., 2]], axis=-1)
        * 1000.0
    )
    observed = truth.copy()
    for name, (ankle, ball) in FOOT_JOINTS.items():
        in_stance = stance[name]
        cycle = t / period + (0.0 if name == "left_foot" else 0.5)
        progress = (cycle - np.floor(cycle)) / stance_share
        slide = np.where(in_stance, slide_mm * (progress - 0.5), 0.0)
        observed[:, [ankle, ball], 0] += slide[:, None]
    observed += rng.normal(0.0, jitter_mm, size=observed.shape)
    return Walk(truth=truth, observed=observed, stance=stance)


def interior(mask: np.ndarray, margin: int) -> np.ndarray:
    """The mask with ``margin`` frames taken off both ends of every run."""
    out = mask.copy()
    for shift in range(1, margin + 1):
        out[shift:] &= mask[:-shift]
        out[:-shift] &= mask[shift:]
    return out


def walk_motion(walk: Walk, **fields) -> Motion:
    return Motion(walk.observed.astype(np.float32), fps=FPS, name="walk", **fields)


def held_frames(joints: np.ndarray, joint: int) -> np.ndarray:
    """``(T,)`` True where the joint is exactly where it is in a neighbouring frame (held still)."""
    same = np.all(joints[1:, joint] == joints[:-1, joint], axis=-1)
    out = np.zeros(len(joints), bool)
    out[1:] |= same
    out[:-1] |= same
    return out


def full_stances(walk: Walk, name: str) -> list[tuple[int, int]]:
    """``[start, stop)`` of the stances that lie wholly inside the clip."""
    from mtvcrafter.motion.filters import true_runs

    frames = len(walk.truth)
    return [(a, b) for a, b in true_runs(walk.stance[name]) if a > 0 and b < frames]


def test_planted_feet_stay_put_through_each_stance_and_land_on_the_footprint():
    walk = make_walk()
    cleaned, report = clean_motion(walk_motion(walk))
    out = cleaned.joints.astype(np.float64)
    for name, joints in FOOT_JOINTS.items():
        stances = full_stances(walk, name)
        assert len(stances) >= 3
        for start, stop in stances:
            core = slice(start + 2, stop - 2)  # the foot lands and lifts off at the ends
            for joint in joints:
                positions = out[core, joint]
                spread = np.linalg.norm(positions - positions.mean(axis=0), axis=-1).max()
                assert spread < 2.0, (name, start, JOINT_NAMES[joint], spread)
                observed_spread = np.linalg.norm(walk.observed[core, joint] - positions.mean(axis=0), axis=-1).max()
                assert observed_spread > 10.0  # it did slide before
                # on the footprint: the sliding was centred on it, the hold is the median
                assert np.linalg.norm(positions - walk.truth[core, joint], axis=-1).max() < 6.0
    for name in FOOT_JOINTS:
        in_clip = sum(b - a for a, b in full_stances(walk, name))  # stances cut by the clip's ends may be left
        assert 0.8 * in_clip <= report.planted_frames[name] <= int(walk.stance[name].sum())


def test_the_report_equals_the_measured_displacement():
    walk = make_walk(seed=1)
    motion = walk_motion(walk)
    cleaned, report = clean_motion(motion)
    assert isinstance(report, CleanReport)
    move = np.linalg.norm(cleaned.joints.astype(np.float64) - motion.joints.astype(np.float64), axis=-1)
    assert report.mean_move_mm == pytest.approx(move.mean(), rel=1e-9)
    assert report.max_move_mm == pytest.approx(move.max(), rel=1e-9)
    assert list(report.per_joint_mm) == list(JOINT_NAMES)
    for j, name in enumerate(JOINT_NAMES):
        assert report.per_joint_mm[name] == pytest.approx(move[:, j].mean(), rel=1e-9)
        assert report.per_joint_max_mm[name] == pytest.approx(move[:, j].max(), rel=1e-9)
    for name, (ankle, ball) in FOOT_JOINTS.items():
        held = held_frames(cleaned.joints, ankle) | held_frames(cleaned.joints, ball)
        assert report.planted_frames[name] == int(held.sum()) > 0
    line = report.summary()
    assert "\n" not in line
    assert f"{report.mean_move_mm:.1f} mm on average" in line and f"at most {report.max_move_mm:.0f} mm" in line
    assert f"L {report.planted_frames['left_foot']} / R {report.planted_frames['right_foot']}" in line
    assert cleaned.notes[-1] == f"cleaned: {line}"


def test_swing_phases_are_untouched_beyond_the_blend():
    walk = make_walk(seed=2)
    motion = walk_motion(walk)
    blend = round(0.1 * FPS)
    for smooth in (0.0, 0.5):
        with_feet, _ = clean_motion(motion, smooth=smooth)
        without, _ = clean_motion(motion, smooth=smooth, feet=False)
        for name, joints in FOOT_JOINTS.items():
            swing = ~walk.stance[name]
            # a frame further than the blend (and a frame of slack for where contact is detected) from a stance
            far = interior(swing, blend + 1)
            assert far.sum() >= 10
            for joint in (*joints, JOINT_INDEX[LEGS[name][1]]):
                assert np.array_equal(with_feet.joints[far, joint], without.joints[far, joint])
        others = [j for j in range(24) if j not in (*FOOT_JOINTS["left_foot"], *FOOT_JOINTS["right_foot"])]
        others = [j for j in others if not JOINT_NAMES[j].endswith("knee")]
        assert np.array_equal(with_feet.joints[:, others], without.joints[:, others])
    untouched, _ = clean_motion(motion, smooth=0.0)
    far = interior(~walk.stance["left_foot"], blend + 1)
    assert np.array_equal(untouched.joints[far, LEFT_ANKLE], motion.joints[far, LEFT_ANKLE])


def test_nothing_jumps_where_a_hold_begins_or_ends():
    walk = make_walk(seed=3, jitter_mm=0.0)
    cleaned, _ = clean_motion(walk_motion(walk), smooth=0.0)
    for joints in FOOT_JOINTS.values():
        for joint in joints:
            step = np.linalg.norm(np.diff(cleaned.joints[:, joint].astype(np.float64), axis=0), axis=-1)
            truth_step = np.linalg.norm(np.diff(walk.truth[:, joint], axis=0), axis=-1)
            # no frame-to-frame move larger than the true motion's fastest plus a fraction of the slide
            assert step.max() < truth_step.max() + 15.0


def test_the_knee_follows_the_ankle_so_the_shin_does_not_stretch():
    walk = make_walk(seed=4)
    motion = walk_motion(walk)
    cleaned, _ = clean_motion(motion, smooth=0.0)
    before, after = motion.joints.astype(np.float64), cleaned.joints.astype(np.float64)
    for hip_name, knee_name, ankle_name in LEGS.values():
        hip, knee, ankle = JOINT_INDEX[hip_name], JOINT_INDEX[knee_name], JOINT_INDEX[ankle_name]
        ankle_move = np.linalg.norm(after[:, ankle] - before[:, ankle], axis=-1)
        knee_move = np.linalg.norm(after[:, knee] - before[:, knee], axis=-1)
        moved = ankle_move > 0.5
        assert moved.sum() > 20
        assert np.all(knee_move <= ankle_move + 1e-3)  # never further than the ankle
        assert np.all(knee_move[ankle_move == 0] == 0)
        assert knee_move[moved].mean() > 0.3 * ankle_move[moved].mean()  # and it does follow
        shin_before = np.linalg.norm(before[:, ankle] - before[:, knee], axis=-1)
        shin_after = np.linalg.norm(after[:, ankle] - after[:, knee], axis=-1)
        shin_unfollowed = np.linalg.norm(after[:, ankle] - before[:, knee], axis=-1)
        thigh_before = np.linalg.norm(before[:, knee] - before[:, hip], axis=-1)
        thigh_after = np.linalg.norm(after[:, knee] - after[:, hip], axis=-1)
        reach_before = np.linalg.norm(before[:, ankle] - before[:, hip], axis=-1)
        reach_after = np.linalg.norm(after[:, ankle] - after[:, hip], axis=-1)
        # bones stretch only by the hip-to-ankle distance's change, in proportion
        ratio = np.abs(reach_after / reach_before - 1)
        assert np.all(np.abs(shin_after / shin_before - 1) <= ratio + 1e-5)
        assert np.all(np.abs(thigh_after / thigh_before - 1) <= ratio + 1e-5)
        # and less than the shin alone would have taken with the knee left where it was
        assert (
            np.abs(shin_after - shin_before)[moved].mean() < 0.7 * np.abs(shin_unfollowed - shin_before)[moved].mean()
        )


def test_jitter_is_reduced():
    walk = make_walk(seed=5, jitter_mm=6.0)
    motion = walk_motion(walk)
    cleaned, report = clean_motion(motion)
    error_before = np.sqrt(np.mean((walk.observed[:, UPPER_BODY] - walk.truth[:, UPPER_BODY]) ** 2))
    error_after = np.sqrt(np.mean((cleaned.joints[:, UPPER_BODY] - walk.truth[:, UPPER_BODY]) ** 2))
    assert error_after < 0.6 * error_before

    def roughness(joints: np.ndarray) -> float:
        return float(np.sqrt(np.mean(np.diff(joints.astype(np.float64), 2, axis=0) ** 2)))

    assert roughness(cleaned.joints) < 0.3 * roughness(motion.joints)
    assert report.smoothed.startswith(f"Savitzky–Golay, {smoothing_window(0.5, FPS)} frames")
    stronger, _ = clean_motion(motion, smooth=1.0, feet=False)
    milder, _ = clean_motion(motion, smooth=0.2, feet=False)
    assert roughness(stronger.joints) < roughness(milder.joints) < roughness(motion.joints)
    euro, euro_report = clean_motion(motion, method="one-euro")
    assert roughness(euro.joints) < 0.5 * roughness(motion.joints)
    assert euro_report.smoothed.startswith("One-Euro") and min(euro_report.planted_frames.values()) > 0


def rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = math.radians(degrees)
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def test_a_tilted_camera_plants_the_same_frames_at_the_same_places():
    walk = make_walk(seed=6)
    motion = walk_motion(walk)
    turn = rotation([1.0, 0.3, 0.2], 28.0)  # pitched, rolled and panned
    centre = motion.joints.reshape(-1, 3).mean(axis=0).astype(np.float64)
    tilted_joints = (motion.joints.astype(np.float64) - centre) @ turn.T + centre
    tilted = Motion(tilted_joints.astype(np.float32), fps=FPS)
    level_cleaned, level_report = clean_motion(motion)
    tilted_cleaned, tilted_report = clean_motion(tilted)
    assert tilted_report.planted_frames == level_report.planted_frames
    assert min(tilted_report.planted_frames.values()) > 30
    expected = (level_cleaned.joints.astype(np.float64) - centre) @ turn.T + centre
    assert np.abs(tilted_cleaned.joints - expected).max() < 0.05
    assert tilted_report.mean_move_mm == pytest.approx(level_report.mean_move_mm, abs=1e-3)


def test_a_performer_leaning_forward_on_a_long_walk_is_planted_at_every_step():
    """The feet-to-head direction leans with the performer; the ground comes from where the feet stand."""
    walk = make_walk(seconds=6.0, seed=7)
    lean = rotation([0.0, 0.0, 1.0], 6.0)  # the upper body pitched forward about the pelvis (camera space)
    observed = walk.observed.copy()
    for t in range(len(observed)):
        pelvis = observed[t, 0].copy()
        observed[t, UPPER_BODY] = (observed[t, UPPER_BODY] - pelvis) @ lean.T + pelvis
    head_ahead = np.mean(observed[:, JOINT_INDEX["head"], 0] - observed[:, 0, 0])
    assert head_ahead > 40  # it leans towards the walking direction (+x in the image)
    cleaned, report = clean_motion(Motion(observed.astype(np.float32), fps=FPS))
    for name, joints in FOOT_JOINTS.items():
        for start, stop in full_stances(walk, name):
            held = held_frames(cleaned.joints, joints[1])[start + 2 : stop - 2]
            assert held.all(), (name, start)


def test_no_smoothing_and_no_feet_is_the_identity_and_the_frame_fields_are_kept():
    walk = make_walk(seed=8)
    valid = np.ones(len(walk.observed), bool)
    valid[40:44] = False
    uncertainty = np.random.default_rng(0).uniform(5, 40, size=(len(valid), 24)).astype(np.float32)
    motion = walk_motion(walk, frame_valid=valid, joint_uncertainty=uncertainty, image_size=(1080, 1920))
    same, report = clean_motion(motion, smooth=0.0, feet=False)
    assert np.array_equal(same.joints, motion.joints)
    assert report.mean_move_mm == report.max_move_mm == 0.0
    assert report.planted_frames == {"left_foot": 0, "right_foot": 0}
    assert same.notes[-1].startswith("cleaned: moved joints by 0.0 mm")
    cleaned, _ = clean_motion(motion)
    for result in (same, cleaned):
        assert np.array_equal(result.frame_valid, valid)
        assert np.array_equal(result.joint_uncertainty, uncertainty)
        assert (result.fps, result.image_size, result.fov_deg, result.name) == (
            FPS,
            (1080, 1920),
            motion.fov_deg,
            "walk",
        )
    assert motion.notes == ()  # the input is left alone


def test_rotations_are_dropped_only_when_joints_moved():
    from mtvcrafter.motion import inverse_kinematics
    from mtvcrafter.motion.rig import with_skeleton

    walk = make_walk(seconds=1.5, seed=9)
    rigged = with_skeleton(walk_motion(walk), inverse_kinematics(walk.observed, mode="exact"))
    assert rigged.rotations is not None
    unchanged, _ = clean_motion(rigged, smooth=0.0, feet=False)
    assert unchanged.rotations is not None and np.array_equal(unchanged.rotations, rigged.rotations)
    cleaned, _ = clean_motion(rigged)
    assert cleaned.rotations is None and cleaned.rest_offsets is None


def test_wrong_options_are_refused():
    motion = walk_motion(make_walk(seconds=1.0))
    with pytest.raises(MotionError, match="strength"):
        clean_motion(motion, smooth=1.5)
    with pytest.raises(MotionError, match="strength"):
        clean_motion(motion, smooth=float("nan"))
    with pytest.raises(MotionError, match="savgol or one-euro"):
        clean_motion(motion, method="kalman")


def test_very_short_motions_are_cleaned_without_error():
    walk = make_walk(seconds=1.0)
    for frames in (1, 2, 4, 7):
        motion = Motion(walk.observed[:frames].astype(np.float32), fps=FPS)
        cleaned, report = clean_motion(motion)
        assert cleaned.num_frames == frames
        assert np.isfinite(cleaned.joints).all()


def bone_spread(joints: np.ndarray) -> float:
    """Mean over bones of the mean absolute deviation of the bone's length over frames (mm)."""
    lengths = bone_lengths(joints.astype(np.float64))[:, 1:]
    return float(np.mean(np.abs(lengths - np.median(lengths, axis=0))))


def test_the_official_sample_changes_by_a_plausible_amount_and_stays_valid(sample_motions):
    for motion in sample_motions:
        feet_only, feet_report = clean_motion(motion, smooth=0.0)
        cleaned, clean_report = clean_motion(motion)
        # holding the feet moves the leg joints only, and little on average
        assert feet_report.mean_move_mm < 5.0
        assert feet_report.max_move_mm < 150.0
        legs = {
            "left_hip",
            "right_hip",
            "left_knee",
            "right_knee",
            "left_ankle",
            "right_ankle",
            "left_foot",
            "right_foot",
        }
        assert all(v == 0.0 for k, v in feet_report.per_joint_max_mm.items() if k not in legs)
        # dancers stand on a foot for a good share of the time
        planted = feet_report.planted_frames
        assert min(planted.values()) > 0.1 * motion.num_frames
        assert max(planted.values()) < motion.num_frames
        # smoothing: the estimator's jitter and single-frame slips go (tens of mm), the dance stays
        assert 2.0 < clean_report.mean_move_mm < 60.0
        assert np.median(np.linalg.norm(cleaned.joints - motion.joints, axis=-1)) < 40.0
        # still a valid motion with the same body: bones keep their typical length and vary less
        again = Motion(cleaned.joints, fps=cleaned.fps, image_size=cleaned.image_size)
        assert again.num_frames == motion.num_frames
        typical_before = np.median(bone_lengths(motion.joints.astype(np.float64))[:, 1:], axis=0)
        typical_after = np.median(bone_lengths(cleaned.joints.astype(np.float64))[:, 1:], axis=0)
        assert np.abs(typical_after - typical_before).max() < 0.1 * typical_before.max()
        assert bone_spread(cleaned.joints) < bone_spread(motion.joints)
        assert len(cleaned.warnings()) <= len(motion.warnings())
        assert cleaned.notes[-1].startswith("cleaned: ")
        report(
            "Clean motion on the official sample",
            f"{motion.name}: {clean_report.summary()} (feet alone: {feet_report.mean_move_mm:.1f} mm on average)",
        )


def test_the_blender_extension_carries_the_new_modules_and_they_run_without_scipy_or_torch(tmp_path):
    from mtvcrafter.packaging.blender_extension import build_core_wheel, core_files

    files = core_files()
    assert "mtvcrafter/motion/filters.py" in files and "mtvcrafter/motion/clean.py" in files
    wheel = build_core_wheel(tmp_path / "wheels")
    with zipfile.ZipFile(wheel) as archive:
        assert {"mtvcrafter/motion/filters.py", "mtvcrafter/motion/clean.py"} <= set(archive.namelist())
    walk = make_walk(seconds=2.0, seed=10)
    np.save(tmp_path / "walk.npy", walk.observed.astype(np.float32))
    script = f"""
import sys
for name in ("torch", "scipy"):
    sys.modules[name] = None  # importing them fails, as in Blender
sys.path.insert(0, {str(wheel)!r})
import numpy as np
from mtvcrafter.motion import Motion
from mtvcrafter.motion.clean import clean_motion
import mtvcrafter.motion.clean as module
assert module.__file__.startswith({str(wheel)!r}), module.__file__
cleaned, report = clean_motion(Motion(np.load({str(tmp_path / "walk.npy")!r}), fps=30.0))
print(report.planted_frames["left_foot"] > 0, cleaned.num_frames)
"""
    result = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", str(len(walk.observed))]
