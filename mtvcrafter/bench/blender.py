"""Blender import speed (run with Blender's Python: ``.venv-blender/bin/python -m mtvcrafter bench blender``):
our importer against Blender's own BVH importer on the same skeleton and frame count, in one run; each time
is the best of three runs in a fresh empty scene."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FRAMES = 10_000
GOAL_S = 1.0
GOAL_RATIO = 10.0
REPEATS = 3


def blender_benchmarks(quick: bool = False) -> tuple[list[tuple[str, float]], float, bool]:
    try:
        import bpy
    except ImportError:
        raise SystemExit(
            "bench blender runs inside Blender's Python: .venv-blender/bin/python -m mtvcrafter bench blender"
        ) from None
    from mtvcrafter.motion import load_motions, save_motion
    from mtvcrafter.motion.bvh import write_bvh
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
    rows = []
    mtvcrafter_bridge.register()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bvh = write_bvh(with_rotations, Path(tmp) / "motion.bvh")
            rotations_npz = Path(tmp) / "rotations.npz"
            joints_npz = Path(tmp) / "joints.npz"
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
            ours_ik = timed(lambda: bpy.ops.import_anim.mtvcrafter_motion(filepath=str(joints_npz)))
            rows = [
                (f"Blender's BVH importer, {frames:,} frames (baseline)", blender),
                (f"ours, {frames:,} frames with rotations", ours),
                (f"ours, {frames:,} frames of joints only (+ inverse kinematics)", ours_ik),
            ]
    finally:
        mtvcrafter_bridge.unregister()
    ratio = blender / ours
    met = ours < GOAL_S and ratio >= GOAL_RATIO
    return rows, ratio, met


def print_blender_table(rows, ratio: float, met: bool) -> None:
    import bpy

    print(f"mtvcrafter bench blender — importing an SMPL-24 motion into Blender {bpy.app.version_string} (headless)")
    header = f"{'task':<64} {'time':>9} {'vs BVH':>8}"
    print(header)
    print("-" * len(header))
    baseline = rows[0][1]
    for name, seconds in rows:
        print(f"{name:<64} {seconds:8.3f}s {baseline / seconds:7.1f}x")
    print(
        f"goal: under {GOAL_S:.0f} s and {GOAL_RATIO:.0f}x faster than the BVH importer: {'met' if met else 'NOT met'} "
        f"({ratio:.1f}x)"
    )
