"""Blender import speed (run with Blender's Python: ``.venv-blender/bin/python -m mtvcrafter bench blender``):
our importer against Blender's own BVH importer on the same skeleton, motion and frame count, in one run; each
time is the best of three runs in a fresh empty scene."""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FRAMES = 10_000
REPEATS = 3
#: OpenCV camera axes (x right, y down, z forward) → a Z-up world (y forward), as AMASS files are.
CAMERA_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


@dataclass
class Row:
    task: str
    seconds: float
    goal_s: float | None = None  # under this many seconds …
    goal_ratio: float | None = None  # … and at least this many times faster than the baseline

    def met(self, baseline: float) -> bool | None:
        if self.goal_s is None:
            return None
        return self.seconds < self.goal_s and baseline / self.seconds >= (self.goal_ratio or 0.0)


def write_amass(motion, path: Path) -> Path:
    """``motion`` (with rotations) as an AMASS file: SMPL-H axis-angle poses (the body's 22 joints; hands at
    rest), the root's translation in metres in a Z-up world, neutral shape, the motion's frame rate."""
    from mtvcrafter.motion.rotations import matrix_to_quaternion, quaternion_to_matrix
    from mtvcrafter.motion.skeleton import NEUTRAL_REST_JOINTS_M

    frames = motion.num_frames
    local = quaternion_to_matrix(motion.rotations)
    local[:, 0] = CAMERA_TO_Z_UP @ local[:, 0]
    quaternions = matrix_to_quaternion(local)  # w >= 0: angles in [0, π]
    half = np.arctan2(np.linalg.norm(quaternions[..., 1:], axis=-1), quaternions[..., 0])
    scale = np.where(half > 1e-9, 2.0 * half / np.maximum(np.sin(half), 1e-12), 2.0)
    poses = np.zeros((frames, 156))
    poses[:, :66] = (quaternions[:, :22, 1:] * scale[:, :22, None]).reshape(frames, 66)
    root_m = motion.root_translation.astype(np.float64) / 1000.0 @ CAMERA_TO_Z_UP.T
    np.savez(
        path,
        poses=poses,
        trans=root_m - NEUTRAL_REST_JOINTS_M[0],  # AMASS's pelvis: the rest pelvis moved by trans
        betas=np.zeros(16),
        gender=np.array("neutral"),
        mocap_framerate=np.array(float(motion.fps)),
    )
    return path


def blender_benchmarks(quick: bool = False) -> tuple[list[Row], bool]:
    try:
        import bpy
    except ImportError:
        raise SystemExit(
            "bench blender runs inside Blender's Python: .venv-blender/bin/python -m mtvcrafter bench blender"
        ) from None
    from mtvcrafter.motion import load_motions, save_motion
    from mtvcrafter.motion.bvh import write_bvh
    from mtvcrafter.motion.bvh_motion import motion_from_bvh
    from mtvcrafter.motion.kinematics import inverse_kinematics
    from mtvcrafter.motion.rig import with_skeleton

    root = Path(__file__).resolve().parents[2]
    addon = root / "blender_addon"
    if str(addon) not in sys.path:
        sys.path.insert(0, str(addon))
    import mtvcrafter_bridge

    frames = 2_000 if quick else FRAMES
    motions = load_motions(root / "examples" / "sampled_data.pkl")
    joints = np.concatenate([m.joints for m in motions] * (frames // 1800 + 1))[:frames]
    fit = inverse_kinematics(joints, mode="fit")
    with_rotations = with_skeleton(motions[0].with_joints(fit.joints().astype(np.float32)), fit)
    joints_only = motions[0].with_joints(joints)
    mtvcrafter_bridge.register()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bvh = write_bvh(with_rotations, Path(tmp) / "motion.bvh")  # SMPL-24 skeleton, 6 + 23 × 3 channels
            rotations_npz = Path(tmp) / "rotations.npz"
            joints_npz = Path(tmp) / "joints.npz"
            amass = write_amass(with_rotations, Path(tmp) / "amass.npz")
            save_motion(with_rotations, rotations_npz)
            save_motion(joints_only, joints_npz)

            def timed(operator) -> float:
                """Best of REPEATS runs, each in a fresh empty scene (the first pays one-off warm-up costs)."""
                best = float("inf")
                for _ in range(REPEATS):
                    bpy.ops.wm.read_factory_settings(use_empty=True)
                    start = time.perf_counter()
                    operator()
                    best = min(best, time.perf_counter() - start)
                return best

            ours = timed(lambda: bpy.ops.import_anim.mtvcrafter_motion(filepath=str(rotations_npz)))
            blender = timed(lambda: bpy.ops.import_anim.bvh(filepath=str(bvh), rotate_mode="NATIVE"))
            ours_amass = timed(lambda: bpy.ops.import_anim.mtvcrafter_motion(filepath=str(amass)))
            ours_ik = timed(lambda: bpy.ops.import_anim.mtvcrafter_motion(filepath=str(joints_npz)))
            convert = timed(lambda: motion_from_bvh(bvh))
            ours_bvh = timed(lambda: bpy.ops.import_anim.mtvcrafter_motion(filepath=str(bvh)))
            rows = [
                Row(f"Blender's BVH importer, {frames:,}-frame BVH (baseline)", blender),
                Row(f"ours: our .npz with rotations, {frames:,} frames", ours, 1.0, 10.0),
                Row("ours: the same motion as an AMASS .npz (SMPL-H poses)", ours_amass, 1.0, 10.0),
                Row("ours: our .npz of joints only (+ inverse kinematics)", ours_ik),
                Row("ours: the same BVH read and mapped to SMPL-24 joints", convert, 1.5, 5.0),
                Row("ours: the same BVH imported as an SMPL armature (+ IK)", ours_bvh),
            ]
    finally:
        mtvcrafter_bridge.unregister()
    met = all(row.met(blender) is not False for row in rows)
    return rows, met


def print_blender_table(rows: list[Row], met: bool) -> None:
    import bpy

    print(f"mtvcrafter bench blender — importing an SMPL-24 motion into Blender {bpy.app.version_string} (headless)")
    header = f"{'task':<60} {'time':>9} {'vs BVH':>8}  goal"
    print(header)
    print("-" * (len(header) + 30))
    baseline = rows[0].seconds
    for row in rows:
        goal = ""
        if row.goal_s is not None:
            verdict = "met" if row.met(baseline) else "NOT met"
            goal = f"< {row.goal_s:g} s and >= {row.goal_ratio:g}x: {verdict}"
        print(f"{row.task:<60} {row.seconds:8.3f}s {baseline / row.seconds:7.1f}x  {goal}")
    print(f"goals: {'all met' if met else 'NOT all met'}")
