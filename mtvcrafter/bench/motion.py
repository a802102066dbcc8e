"""Motion-core benchmarks: reading the official pickle, inverse kinematics and quality checks of long clips, and
mapping a BVH skeleton by its structure."""

from __future__ import annotations

import pickle
import tempfile
import time
from pathlib import Path

import numpy as np

from ..motion import CHILDREN, NUM_JOINTS, PARENTS, Motion, inverse_kinematics, load_motions
from ..motion.bvh import bvh_end_positions, bvh_forward_kinematics, read_bvh, write_bvh
from ..motion.bvh_motion import motion_from_bvh, rest_points
from ..motion.kinematics import estimate_rest_offsets
from ..motion.quality import MAX_FRAMES_CHECKED, check_quality
from ..motion.rig import with_skeleton
from ..motion.rotations import best_fit_rotation, rotation_between
from ..motion.structure_mapping import map_by_structure
from . import Row, median_time


def sample_pickle() -> Path:
    """The official sample motions shipped in ``examples/`` (5 clips, the longest 653 frames)."""
    here = Path(__file__).resolve().parents[2] / "examples" / "sampled_data.pkl"
    if here.is_file():
        return here
    raise FileNotFoundError(f"{here}: the sample motions are not there; run from a checkout of the project")


def largest_real_bvh() -> Path | None:
    """The largest BVH of the real-world files written by other tools (``shared/data/realworld`` beside the
    checkout), if they are there."""
    folder = Path(__file__).resolve().parents[3] / "shared" / "data" / "realworld"
    files = sorted(folder.glob("*.bvh"), key=lambda p: p.stat().st_size) if folder.is_dir() else []
    return files[-1] if files else None


def structure_mapping_row(quick: bool, scratch: Path) -> Row:
    """Mapping a BVH's skeleton by its structure (what a load adds to name detection) against the whole load of
    the largest real BVH (or, without the real files, the longest sample clip fitted and written as BVH)."""
    path = largest_real_bvh()
    if path is None:
        clip = load_motions(sample_pickle())[3]
        fitted = with_skeleton(clip, inverse_kinematics(clip.joints, mode="fit"))
        path = write_bvh(fitted, scratch / "sample_clip.bvh")
    bvh = read_bvh(path)
    positions, rotations = bvh_forward_kinematics(bvh)
    ends = bvh_end_positions(bvh, positions, rotations)
    heads, rest_ends = rest_points(bvh.skeleton)
    rig = (bvh.skeleton.names, bvh.skeleton.parents, heads[0], {j: e[0] for j, e in rest_ends.items()})
    repeats = 3 if quick else 10
    ours = median_time(lambda: map_by_structure(*rig, poses=(positions, ends)), repeats * 5)
    load = median_time(lambda: motion_from_bvh(path), 1 if quick else 3)
    return Row(
        "structure mapping of a BVH skeleton",
        ours,
        load,
        f"loading all of {path.name} ({bvh.num_frames:,} frames, {bvh.skeleton.num_joints} joints)",
        0.050,
    )


def baseline_ik_per_frame(joints: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """Straightforward inverse kinematics: one frame at a time, each bone aimed from the source
    parent (direction matching), the pelvis and chest by a per-frame Kabsch fit. Returns the
    local rotations ``(T, 24, 3, 3)``."""
    out = np.zeros((joints.shape[0], NUM_JOINTS, 3, 3))
    for t in range(joints.shape[0]):
        frame = joints[t]
        glob = [np.eye(3)] * NUM_JOINTS
        for j in range(NUM_JOINTS):
            parent_rot = glob[PARENTS[j]] if j else np.eye(3)
            kids = CHILDREN[j]
            if len(kids) > 1:
                glob[j] = best_fit_rotation(rest[list(kids)], frame[list(kids)] - frame[j])
            elif kids:
                c = kids[0]
                glob[j] = rotation_between(parent_rot @ rest[c], frame[c] - frame[j]) @ parent_rot
            else:
                glob[j] = parent_rot
            out[t, j] = glob[j] if j == 0 else glob[PARENTS[j]].T @ glob[j]
    return out


def motion_benchmarks(quick: bool = False) -> list[Row]:
    path = sample_pickle()
    repeats = 3 if quick else 10
    rows = []

    def ours_read() -> None:
        load_motions(path)

    def baseline_read() -> None:
        with open(path, "rb") as handle:
            pickle.load(handle)  # unrestricted: what the official scripts do, no checks

    rows.append(
        Row(
            "read sample .pkl (5 clips, longest 653 frames)",
            median_time(ours_read, repeats),
            median_time(baseline_read, repeats),
            "plain pickle.load, no checks",
            0.050,
        )
    )

    clip = load_motions(path)[3].joints.astype(np.float64)
    reps = -(-10_000 // clip.shape[0])
    # Play the clip forwards then backwards so the long clip has no jumps.
    long_clip = np.concatenate([clip if i % 2 == 0 else clip[::-1] for i in range(reps)])[:10_000]
    ik_repeats = 1 if quick else 3
    ours = median_time(lambda: inverse_kinematics(long_clip), ik_repeats)
    rest = estimate_rest_offsets(long_clip)
    subset = 200 if quick else 500
    start = time.perf_counter()
    baseline_ik_per_frame(long_clip[:subset], rest)
    baseline = (time.perf_counter() - start) * (len(long_clip) / subset)
    rows.append(
        Row(
            "inverse kinematics, 10,000 frames (fit mode)",
            ours,
            baseline,
            f"per-frame loop, direction matching ({subset} frames timed, scaled)",
            2.0,
        )
    )
    long_motion = Motion(
        np.concatenate([clip if i % 2 == 0 else clip[::-1] for i in range(-(-100_000 // len(clip)))])[:100_000]
    )
    rows.append(
        Row(
            "quality checks, 100,000 frames",
            median_time(lambda: check_quality(long_motion), repeats),
            median_time(lambda: check_quality(long_motion, max_frames=None), repeats),
            f"the same checks on every frame (ours: {MAX_FRAMES_CHECKED:,} evenly spaced)",
            0.100,
        )
    )
    with tempfile.TemporaryDirectory() as scratch:
        rows.append(structure_mapping_row(quick, Path(scratch)))
    return rows


__all__ = ["baseline_ik_per_frame", "largest_real_bvh", "motion_benchmarks", "structure_mapping_row"]
