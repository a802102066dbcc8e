"""The BVH reader: round trip through our writer, every rotation order against scipy, position channels
(replacing the offset, as Blender's importer does), End Sites, real-world layouts, and a MotionError naming
the line for every kind of malformed file."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from reporting import report
from scipy.spatial.transform import Rotation

from mtvcrafter.motion import (
    JOINT_NAMES,
    Bvh,
    MotionError,
    bvh_end_positions,
    bvh_forward_kinematics,
    inverse_kinematics,
    read_bvh,
)
from mtvcrafter.motion.bvh import CAMERA_TO_BVH, write_bvh
from mtvcrafter.motion.rig import with_skeleton
from mtvcrafter.motion.skeleton import CHILDREN

HEADING = "BVH reader"
ORDERS = ["XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX"]


def write(tmp_path: Path, text: str, name: str = "motion.bvh", newline: str = "\n") -> Path:
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode())
    return path


def reference_fk(parents, offsets, layouts, values):
    """Per-frame, per-joint forward kinematics with scipy rotations: layouts[j] = (position columns or None,
    rotation order, rotation columns); position channels replace the offset."""
    frames, joints = len(values), len(parents)
    positions = np.zeros((frames, joints, 3))
    rotations = np.zeros((frames, joints, 3, 3))
    for f in range(frames):
        for j in range(joints):
            position_columns, order, rotation_columns = layouts[j]
            local_t = offsets[j] if position_columns is None else values[f, position_columns]
            local_r = Rotation.from_euler(order, values[f, rotation_columns], degrees=True).as_matrix()
            if parents[j] < 0:
                positions[f, j], rotations[f, j] = local_t, local_r
            else:
                p = parents[j]
                positions[f, j] = positions[f, p] + rotations[f, p] @ local_t
                rotations[f, j] = rotations[f, p] @ local_r
    return positions, rotations


# -- round trip through our writer ----------------------------------------------------------------------


@pytest.mark.parametrize("clip", [0, 3])
def test_round_trip_through_write_bvh_gives_the_fitted_joints(sample_motions, clip, tmp_path):
    motion = sample_motions[clip]
    fit = inverse_kinematics(motion.joints, mode="fit")
    path = write_bvh(with_skeleton(motion, fit), tmp_path / "fit.bvh")
    bvh = read_bvh(path)
    assert isinstance(bvh, Bvh) and bvh.source == str(path)
    assert bvh.num_frames == motion.num_frames and bvh.fps == pytest.approx(motion.fps, rel=1e-4)
    skeleton = bvh.skeleton
    assert sorted(skeleton.names) == sorted(JOINT_NAMES) and skeleton.parents[0] == -1
    assert skeleton.channels[0][:3] == ("Xposition", "Yposition", "Zposition")
    assert all(c == ("Zrotation", "Xrotation", "Yrotation") for c in skeleton.channels[1:])
    leaves = {JOINT_NAMES[j] for j in range(len(JOINT_NAMES)) if not CHILDREN[j]}
    assert {skeleton.names[j] for j in skeleton.end_sites} == leaves
    positions, rotations = bvh_forward_kinematics(bvh)
    assert positions.dtype == np.float64 and rotations.shape == (motion.num_frames, 24, 3, 3)
    order = [skeleton.names.index(name) for name in JOINT_NAMES]
    expected = fit.joints() @ CAMERA_TO_BVH.T  # the writer writes Y up (the camera frame turned 180° about X)
    error = np.abs(positions[:, order] * 10.0 - expected).max()  # … and centimetres
    report(HEADING, f"clip {clip}: write_bvh → read_bvh → FK vs the fitted joints: max {error:.4f} mm")
    assert error < 0.05  # 4 decimals of cm and degrees
    np.testing.assert_allclose(
        rotations @ np.swapaxes(rotations, -1, -2), np.broadcast_to(np.eye(3), rotations.shape), atol=1e-12
    )
    ends = bvh_end_positions(bvh, positions, rotations)
    for j, offset in skeleton.end_sites.items():
        expected = positions[:, j] + np.einsum("fij,j->fi", rotations[:, j], offset)
        np.testing.assert_allclose(ends[j], expected, atol=1e-12)
        assert np.linalg.norm(offset) == pytest.approx(8.0, abs=1e-3)


# -- rotation orders and channel layouts against scipy ------------------------------------------------------


def order_hierarchy(order: str, rng) -> tuple[str, list, np.ndarray, list]:
    """A root (6 channels, positions last), a 3-channel joint, a 6-channel joint with positions first and a
    3-channel joint with an End Site, all in ``order``; returns the text, parents, offsets, layouts."""
    rot = " ".join(f"{axis}rotation" for axis in order)
    offsets = np.round(rng.uniform(-20, 20, (4, 3)), 4)
    o = [" ".join(f"{v:.4f}" for v in offset) for offset in offsets]
    text = f"""HIERARCHY
ROOT Root
{{
  OFFSET {o[0]}
  CHANNELS 6 {rot} Xposition Yposition Zposition
  JOINT A
  {{
    OFFSET {o[1]}
    CHANNELS 3 {rot}
    JOINT B
    {{
      OFFSET {o[2]}
      CHANNELS 6 Xposition Yposition Zposition {rot}
      JOINT C
      {{
        OFFSET {o[3]}
        CHANNELS 3 {rot}
        End Site
        {{
          OFFSET 0.0 -7.5 2.0
        }}
      }}
    }}
  }}
}}
"""
    parents = [-1, 0, 1, 2]
    layouts = [([3, 4, 5], order, [0, 1, 2]), (None, order, [6, 7, 8]), ([9, 10, 11], order, [12, 13, 14])]
    layouts.append((None, order, [15, 16, 17]))
    return text, parents, offsets, layouts


@pytest.mark.parametrize("order", ORDERS)
def test_every_rotation_order_matches_scipy(order, tmp_path):
    rng = np.random.default_rng(ORDERS.index(order))
    text, parents, offsets, layouts = order_hierarchy(order, rng)
    values = np.round(rng.uniform(-180, 180, (25, 18)), 6)
    values[:, [3, 4, 5, 9, 10, 11]] = np.round(rng.uniform(-50, 50, (25, 6)), 6)
    rows = "\n".join(" ".join(f"{v:.6f}" for v in row) for row in values)
    bvh = read_bvh(write(tmp_path, f"{text}MOTION\nFrames: 25\nFrame Time: 0.01\n{rows}\n"))
    np.testing.assert_array_equal(bvh.values, values)
    np.testing.assert_array_equal(bvh.skeleton.offsets, offsets)
    positions, rotations = bvh_forward_kinematics(bvh)
    expected_positions, expected_rotations = reference_fk(parents, offsets, layouts, values)
    np.testing.assert_allclose(positions, expected_positions, rtol=0, atol=1e-10)
    np.testing.assert_allclose(rotations, expected_rotations, rtol=0, atol=1e-12)
    ends = bvh_end_positions(bvh, positions, rotations)
    assert list(ends) == [3]
    np.testing.assert_allclose(
        ends[3], expected_positions[:, 3] + expected_rotations[:, 3] @ [0.0, -7.5, 2.0], atol=1e-10
    )


def test_position_channels_replace_the_offset_and_missing_ones_are_zero(tmp_path):
    text = """HIERARCHY
ROOT Hips
{
  OFFSET 100 200 300
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Spine
  {
    OFFSET 0 10 0
    CHANNELS 4 Yposition Zrotation Xrotation Yrotation
    JOINT Neck
    {
      OFFSET 0 5 0
      CHANNELS 1 Zrotation
      End Site
      {
        OFFSET 1 0 0
      }
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.5
1 2 3 0 0 0 7 0 0 0 0
1 2 3 90 0 0 7 0 0 0 90
"""
    bvh = read_bvh(write(tmp_path, text))
    assert bvh.fps == 2.0 and bvh.skeleton.channels[2] == ("Zrotation",)
    positions, rotations = bvh_forward_kinematics(bvh)
    # the root sits at its position channels (not offset + position); Spine's lone Yposition replaces its
    # offset with (0, 7, 0); Neck, without position channels, sits at its offset
    np.testing.assert_allclose(positions[0], [[1, 2, 3], [1, 9, 3], [1, 14, 3]], atol=1e-12)
    np.testing.assert_allclose(positions[1], [[1, 2, 3], [-6, 2, 3], [-11, 2, 3]], atol=1e-12)
    ends = bvh_end_positions(bvh, positions, rotations)
    np.testing.assert_allclose(ends[2], [[2, 14, 3], [-12, 2, 3]], atol=1e-12)  # frame 1: 180° about Z in all


def test_root_without_position_channels_stays_at_its_offset(tmp_path):
    text = """HIERARCHY
ROOT hip
{
  OFFSET 5 90 -3
  CHANNELS 3 Zrotation Yrotation Xrotation
  JOINT leg
  {
    OFFSET 0 -40 0
    CHANNELS 3 Zrotation Yrotation Xrotation
    End Site
    {
      OFFSET 0 -40 0
    }
  }
}
MOTION
Frames: 3
Frame Time: 0.0333333
0 0 0 0 0 0
0 0 90 0 0 0
30 -20 45 10 20 30
"""
    bvh = read_bvh(write(tmp_path, text))
    positions, rotations = bvh_forward_kinematics(bvh)
    np.testing.assert_allclose(positions[:, 0], [[5, 90, -3]] * 3, atol=1e-12)
    np.testing.assert_allclose(positions[1, 1], [5, 90, -43], atol=1e-9)
    expected = Rotation.from_euler("ZYX", [30, -20, 45], degrees=True).as_matrix()
    np.testing.assert_allclose(rotations[2, 0], expected, atol=1e-12)
    np.testing.assert_allclose(positions[2, 1], [5, 90, -3] + expected @ [0, -40, 0], atol=1e-12)


def test_crlf_tabs_blank_lines_and_odd_header_spacing_read_like_the_plain_file(tmp_path):
    rng = np.random.default_rng(7)
    text, *_ = order_hierarchy("ZXY", rng)
    rows = "\n".join(" ".join(f"{v:.5f}" for v in row) for row in rng.uniform(-90, 90, (4, 18)))
    plain = read_bvh(write(tmp_path, f"{text}MOTION\nFrames: 4\nFrame Time: 0.04\n{rows}\n", "plain.bvh"))
    odd_text = "\n\n" + text.replace("  ", "\t").replace("CHANNELS 6", "CHANNELS\t 6  ") + "\n"
    odd_rows = rows.replace(" ", " \t ").replace("\n", "\n\n")
    odd = f"{odd_text}MOTION\n\n  FRAMES:\t4  \nFrame   Time:0.04\n\n{odd_rows}\n\n\n"
    for newline, name in [("\r\n", "crlf.bvh"), ("\r", "cr.bvh"), ("\n", "lf.bvh")]:
        bvh = read_bvh(write(tmp_path, odd, name, newline))
        assert bvh.skeleton.names == plain.skeleton.names and bvh.skeleton.channels == plain.skeleton.channels
        np.testing.assert_array_equal(bvh.values, plain.values)
        np.testing.assert_array_equal(bvh.skeleton.offsets, plain.skeleton.offsets)
        assert bvh.frame_time == plain.frame_time == 0.04 and bvh.notes == ()
    bom = tmp_path / "bom.bvh"
    bom.write_bytes(b"\xef\xbb\xbf" + (tmp_path / "crlf.bvh").read_bytes())
    np.testing.assert_array_equal(read_bvh(bom).values, plain.values)


def test_names_like_blenders_importer_several_roots_and_extra_rows(tmp_path):
    text = """HIERARCHY
ROOT Left Arm
{
  OFFSET 0 0 0
  CHANNELS 3 Xrotation Yrotation Zrotation
  JOINT Left Arm
  {
    OFFSET 1 0 0
    End Site
    {
      OFFSET 1 0 0
    }
  }
}
ROOT Prop {
  OFFSET 0 0 0
  CHANNELS 3 Xposition Yposition Zposition
  End Site Prop_end {
    OFFSET 0 1 0
  }
}
MOTION
Frames: 1
Frame Time: 0.1
0 0 90 4 5 6
0 0 0 7 8 9
"""
    bvh = read_bvh(write(tmp_path, text))
    assert bvh.skeleton.names == ("Left_Arm", "Left_Arm.001", "Prop")
    assert bvh.skeleton.channels[1] == () and bvh.skeleton.parents.tolist() == [-1, 0, -1]
    assert bvh.num_frames == 2 and "2 frame rows, more than the 1 of 'Frames:' (line 23)" in bvh.notes[1]
    # the repeated name is said, with both lines
    assert bvh.notes[0].startswith("line 6: the joint name 'Left_Arm' is used again (first on line 2)")
    assert "'Left_Arm.001'" in bvh.notes[0]
    assert bvh.frame_lines.tolist() == [25, 26] and bvh.frames_line == 23
    positions, rotations = bvh_forward_kinematics(bvh)
    np.testing.assert_allclose(positions[:, 1], [[0, 1, 0], [1, 0, 0]], atol=1e-12)
    np.testing.assert_allclose(positions[:, 2], [[4, 5, 6], [7, 8, 9]], atol=1e-12)
    ends = bvh_end_positions(bvh, positions, rotations)
    np.testing.assert_allclose(ends[1], [[0, 2, 0], [2, 0, 0]], atol=1e-12)  # the child turns with its parent
    np.testing.assert_allclose(ends[2], [[4, 6, 6], [7, 9, 9]], atol=1e-12)


def test_a_hierarchy_with_no_frames(tmp_path):
    text = "HIERARCHY\nROOT a\n{\n OFFSET 0 0 0\n CHANNELS 3 Xrotation Yrotation Zrotation\n}\nMOTION\n"
    bvh = read_bvh(write(tmp_path, text + "Frames: 0\nFrame Time: 0.0333333\n"))
    positions, rotations = bvh_forward_kinematics(bvh)
    assert bvh.num_frames == 0 and positions.shape == (0, 1, 3) and rotations.shape == (0, 1, 3, 3)


# -- real-world-looking files ---------------------------------------------------------------------------

CMU_LIKE = (
    """HIERARCHY
ROOT Hips
{
	OFFSET 0.00000 0.00000 0.00000
	CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
	JOINT LHipJoint
	{
		OFFSET 0 0 0
		CHANNELS 3 Zrotation Yrotation Xrotation
		JOINT LeftUpLeg
		{
			OFFSET 1.36306 -1.79463 0.83929
			CHANNELS 3 Zrotation Yrotation Xrotation
			JOINT LeftLeg
			{
				OFFSET 2.44811 -6.72613 0.00000
				CHANNELS 3 Zrotation Yrotation Xrotation
				JOINT LeftFoot
				{
					OFFSET 2.56220 -7.03959 0.00000
					CHANNELS 3 Zrotation Yrotation Xrotation
					JOINT LeftToeBase
					{
						OFFSET 0.00000 -0.15419 2.33868
						CHANNELS 3 Zrotation Yrotation Xrotation
						End Site
						{
							OFFSET 0.00000 -0.00000 1.30000
						}
					}
				}
			}
		}
	}
	JOINT LowerBack
	{
		OFFSET 0 0 0
		CHANNELS 3 Zrotation Yrotation Xrotation
		JOINT Spine
		{
			OFFSET -0.06854 2.07524 -0.11985
			CHANNELS 3 Zrotation Yrotation Xrotation
			JOINT Head
			{
				OFFSET 0.02468 1.72731 -0.18460
				CHANNELS 3 Zrotation Yrotation Xrotation
				End Site
				{
					OFFSET 0.0 1.8 0.0
				}
			}
		}
	}
}
MOTION
Frames: 2
Frame Time: .0083333
"""
    + "\n".join(
        [
            "9.3722 17.8693 -17.3198 -0.0000 -0.0000 -0.0000 0.0000 0.0000 "
            "0.0000 -28.5307 -2.5613 14.6911 0.0000 0.0000 11.4476 "
            "-6.7131 -12.9611 4.3453 0.0000 -8.6400 -1.2700 0.0000 "
            "0.0000 0.0000 7.7702 -5.3453 2.1137 -2.3145 3.4131 1.0032",
            "9.3853 17.8683 -17.3239 -1.3360 -8.6400 -3.3231 0.0000 0.0000 "
            "0.0000 -28.4961 -2.5701 14.6755 0.0000 0.0000 11.3918 "
            "-6.6892 -12.9529 4.3473 0.0000 -8.6100 -1.2400 0.0000 "
            "0.0000 0.0000 7.7815 -5.3510 2.1247 -2.3009 3.4158 1.0185",
        ]
    )
    + "\n"
)


def test_cmu_like_file(tmp_path):
    bvh = read_bvh(write(tmp_path, CMU_LIKE, "01_01.bvh"))
    skeleton = bvh.skeleton
    assert skeleton.names[:3] == ("Hips", "LHipJoint", "LeftUpLeg") and skeleton.num_joints == 9
    assert skeleton.parents.tolist() == [-1, 0, 1, 2, 3, 4, 0, 6, 7]
    assert set(skeleton.end_sites) == {5, 8} and skeleton.num_channels == 30
    assert bvh.fps == pytest.approx(120.0, rel=1e-4) and bvh.values.shape == (2, 30)
    positions, _ = bvh_forward_kinematics(bvh)
    np.testing.assert_allclose(positions[:, 0], bvh.values[:, :3])
    np.testing.assert_allclose(np.linalg.norm(positions[:, 4] - positions[:, 3], axis=-1), np.hypot(2.56220, 7.03959))


MIXAMO_LIKE = (
    """HIERARCHY
ROOT mixamorig:Hips
{
\tOFFSET 0.000000 103.463402 1.526513
\tCHANNELS 6 Xposition Yposition Zposition Xrotation Yrotation Zrotation
\tJOINT mixamorig:Spine
\t{
\t\tOFFSET 0.000000 9.891571 -0.897380
\t\tCHANNELS 6 Xposition Yposition Zposition Xrotation Yrotation Zrotation
\t\tJOINT mixamorig:Head
\t\t{
\t\t\tOFFSET 0.000000 50.000000 0.000000
\t\t\tCHANNELS 6 Xposition Yposition Zposition Xrotation Yrotation Zrotation
\t\t\tJOINT mixamorig:HeadTop_End
\t\t\t{
\t\t\t\tOFFSET 0.000000 20.806000 6.941000
\t\t\t\tCHANNELS 6 Xposition Yposition Zposition Xrotation Yrotation Zrotation
\t\t\t\tEnd Site
\t\t\t\t{
\t\t\t\t\tOFFSET 0.000000 20.806000 6.941000
\t\t\t\t}
\t\t\t}
\t\t}
\t}
\tJOINT mixamorig:LeftUpLeg
\t{
\t\tOFFSET 8.207239 -6.752300 -0.010000
\t\tCHANNELS 6 Xposition Yposition Zposition Xrotation Yrotation Zrotation
\t\tEnd Site
\t\t{
\t\t\tOFFSET 0.000000 -44.0 0.0
\t\t}
\t}
}
MOTION
Frames: 2
Frame Time: 0.033333
"""
    + "\n".join(
        [
            "0.2 101.0 1.5 -3.0 4.0 1.0 0.0 9.891571 -0.897380 5.0 0.0 0.0 0.0 50.0 0.0 "
            "0.0 0.0 0.0 0.0 20.806 6.941 0.0 0.0 0.0 8.207239 -6.7523 -0.01 10.0 0.0 0.0",
            "0.3 101.5 1.6 -3.5 4.5 1.5 0.0 9.891571 -0.897380 6.0 0.0 0.0 0.0 50.0 0.0 "
            "0.0 0.0 0.0 0.0 20.806 6.941 0.0 0.0 0.0 8.207239 -6.7523 -0.01 12.0 0.0 0.0",
        ]
    )
    + "\n"
)


def test_mixamo_like_file_with_six_channels_everywhere(tmp_path):
    bvh = read_bvh(write(tmp_path, MIXAMO_LIKE, "mixamo.bvh", "\r\n"))
    skeleton = bvh.skeleton
    assert skeleton.names == (
        "mixamorig:Hips",
        "mixamorig:Spine",
        "mixamorig:Head",
        "mixamorig:HeadTop_End",
        "mixamorig:LeftUpLeg",
    )
    assert all(len(c) == 6 for c in skeleton.channels) and set(skeleton.end_sites) == {3, 4}
    positions, rotations = bvh_forward_kinematics(bvh)
    # the position channels equal the offsets here, so FK is the usual offset chain
    for j in range(1, 5):
        p = skeleton.parents[j]
        expected = positions[:, p] + np.einsum("fij,j->fi", rotations[:, p], skeleton.offsets[j])
        np.testing.assert_allclose(positions[:, j], expected, atol=1e-9)
    np.testing.assert_allclose(positions[:, 0], [[0.2, 101.0, 1.5], [0.3, 101.5, 1.6]])
    expected_root = Rotation.from_euler("XYZ", [-3.0, 4.0, 1.0], degrees=True).as_matrix()
    np.testing.assert_allclose(rotations[0, 0], expected_root, atol=1e-12)


# -- malformed files: MotionError naming the line ------------------------------------------------------

GOOD = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Spine
  {
    OFFSET 0 10 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 0 5 0
    }
  }
}
MOTION
Frames: 3
Frame Time: 0.0333333
0 90 0 0 0 0 1 2 3
0 91 0 0 0 0 1 2 3
0 92 0 0 0 0 1 2 3
"""
# line numbers: 1 HIERARCHY, 5 and 9 CHANNELS, 8 Spine's OFFSET, 14 and 15 the '}' of Spine and Hips, 16 MOTION,
# 17 Frames, 18 Frame Time, 19-21 the rows


def replace_line(text: str, number: int, new: str | None) -> str:
    lines = text.split("\n")
    if new is None:
        del lines[number - 1]
    else:
        lines[number - 1] = new
    return "\n".join(lines)


MALFORMED = {
    "empty file": ("", 1, "empty"),
    "only blank lines": ("\n  \n\t\n", 1, "empty"),
    "not a BVH": ("ply\nformat ascii 1.0\n", 1, "HIERARCHY"),
    "missing HIERARCHY": (GOOD.split("\n", 1)[1], 1, "HIERARCHY"),
    "missing MOTION": (GOOD.split("MOTION")[0], 15, "MOTION"),
    "missing MOTION line": (replace_line(GOOD, 16, None), 16, "without a 'MOTION' line"),
    "truncated motion block": (replace_line(GOOD, 21, ""), 20, "2 of the 3 frames"),
    "no rows at all": (GOOD.split("0 90 0")[0], 18, "0 of the 3 frames"),
    "row cut in the middle": (replace_line(GOOD, 21, "0 92 0 0 0"), 21, "5 values"),
    "row with too many values": (replace_line(GOOD, 19, "0 91 0 0 0 0 1 2 3 4"), 19, "10 values"),
    "non-numeric value": (replace_line(GOOD, 19, "0 91 0 0 abc 0 1 2 3"), 19, "'abc'"),
    "comma decimal": (replace_line(GOOD, 19, "0 90,5 0 0 0 0 1 2 3"), 19, "'90,5'"),
    "nan value": (replace_line(GOOD, 20, "0 92 0 nan 0 0 1 2 3"), 20, "'nan'"),
    "first bad row wins": (replace_line(replace_line(GOOD, 20, "1 2"), 19, "0 x 0 0 0 0 1 2 3"), 19, "'x'"),
    "unknown channel": (replace_line(GOOD, 9, "    CHANNELS 3 Zrotation Xrotation Wrotation"), 9, "'Wrotation'"),
    "wrong CHANNELS count": (replace_line(GOOD, 9, "    CHANNELS 4 Zrotation Xrotation Yrotation"), 9, "says 4"),
    "CHANNELS without count": (replace_line(GOOD, 9, "    CHANNELS Zrotation Xrotation Yrotation"), 9, "count"),
    "channel listed twice": (replace_line(GOOD, 9, "    CHANNELS 3 Zrotation Xrotation Zrotation"), 9, "twice"),
    "extra closing brace": (replace_line(GOOD, 15, "}\n}"), 16, "closes nothing"),
    "missing closing brace before MOTION": (replace_line(GOOD, 15, None), 15, "'}' is missing"),
    "missing closing brace at the end": (GOOD.split("}\nMOTION")[0], 14, "'}' is missing"),
    "missing opening brace": (replace_line(GOOD, 7, None), 7, "expected '{'"),
    "Frame Time zero": (replace_line(GOOD, 18, "Frame Time: 0"), 18, "positive"),
    "Frame Time negative": (replace_line(GOOD, 18, "Frame Time: -0.03"), 18, "positive"),
    "Frame Time missing": (replace_line(GOOD, 18, None), 18, "Frame Time"),
    "Frames not a number": (replace_line(GOOD, 17, "Frames: many"), 17, "whole number"),
    "Frames missing": (replace_line(GOOD, 17, None), 18, "Frames"),
    "nothing after MOTION": (GOOD.split("Frames")[0], 16, "after MOTION"),
    "OFFSET with two numbers": (replace_line(GOOD, 8, "    OFFSET 0 10"), 8, "three numbers"),
    "OFFSET not numeric": (replace_line(GOOD, 8, "    OFFSET 0 ten 0"), 8, "three numbers"),
    "no OFFSET": (replace_line(GOOD, 8, ""), 14, "no OFFSET"),
    "JOINT without a name": (replace_line(GOOD, 6, "  JOINT"), 6, "without a name"),
    "JOINT outside ROOT": (GOOD.replace("ROOT Hips", "JOINT Hips"), 2, "outside any ROOT"),
    "unknown keyword": (replace_line(GOOD, 8, "    OFFSETS 0 10 0"), 8, "'OFFSETS'"),
    # numbers that parse but cannot be a skeleton or a pose: refused, not turned into garbage or an overflow
    "absurd angle": (replace_line(GOOD, 20, "0 92 0 0 1e300 0 1 2 3"), 20, "value 5 (Xrotation of 'Hips') is 1e+300"),
    "absurd position": (replace_line(GOOD, 21, "1e30 92 0 0 0 0 1 2 3"), 21, "value 1 (Xposition of 'Hips') is 1e+30"),
    "absurd OFFSET": (replace_line(GOOD, 8, "    OFFSET 0 4.9e200 0"), 8, "OFFSET 0 4.9e+200 0 is beyond"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_files_name_the_line(case, tmp_path):
    text, line, fragment = MALFORMED[case]
    path = write(tmp_path, text)
    with pytest.raises(MotionError) as caught:
        read_bvh(path)
    message = str(caught.value)
    assert f"line {line}:" in message, message
    assert fragment in message, message
    assert caught.value.source == str(path) and message.startswith(str(path))


def test_channels_after_children_is_refused(tmp_path):
    text = replace_line(GOOD, 9, None).replace(
        "    }\n  }\n}", "    }\n    CHANNELS 3 Zrotation Xrotation Yrotation\n  }\n}"
    )
    with pytest.raises(MotionError, match="line 13: CHANNELS of JOINT 'Spine'.*after its children"):
        read_bvh(write(tmp_path, text))


def test_missing_file_is_a_motion_error(tmp_path):
    with pytest.raises(MotionError, match="cannot read"):
        read_bvh(tmp_path / "nope.bvh")
    with pytest.raises(MotionError, match="cannot read"):
        read_bvh(tmp_path)


def test_every_cut_and_damage_is_refused_with_a_motion_error(tmp_path):
    """Cutting the file after any line, or deleting, doubling or damaging one line: a MotionError (with a
    line number) or a complete read — never another exception, never fewer rows than promised."""
    lines = GOOD.rstrip("\n").split("\n")
    variants = ["\n".join(lines[:k]) + "\n" for k in range(len(lines))]
    for k in range(len(lines)):
        variants.append("\n".join(lines[:k] + lines[k + 1 :]))
        variants.append("\n".join(lines[:k] + [lines[k], lines[k]] + lines[k + 1 :]))
        variants.append("\n".join(lines[:k] + [lines[k][: len(lines[k]) // 2]] + lines[k + 1 :]))
        variants.append("\n".join(lines[:k] + [lines[k] + " }"] + lines[k + 1 :]))
    rng = np.random.default_rng(0)
    for _ in range(200):
        chars = list(GOOD)
        for at in rng.integers(0, len(chars), 3):
            chars[at] = "{}x:.- \n\t"[rng.integers(9)]
        variants.append("".join(chars))
    outcomes = {"read": 0, "refused": 0}
    for k, text in enumerate(variants):
        cut = k < len(lines)
        path = write(tmp_path, text, f"v{k}.bvh")
        try:
            bvh = read_bvh(path)
        except MotionError as exc:
            assert "line " in str(exc), str(exc)
            outcomes["refused"] += 1
            continue
        assert not cut, f"a file cut after line {k} was read"
        outcomes["read"] += 1
        declared = re.search(r"Frames:\s*(\d+)", text)
        assert declared and bvh.num_frames >= int(declared.group(1))
        assert bvh.values.shape == (bvh.num_frames, bvh.skeleton.num_channels)
        bvh_forward_kinematics(bvh)
    assert outcomes["refused"] > outcomes["read"] > 0


# -- speed ----------------------------------------------------------------------------------------------


def test_ten_thousand_frames_are_read_exactly(tmp_path):
    """A long file is read whole and exactly (its speed is measured by ``mtvcrafter bench blender``)."""
    joints = 24
    lines = [
        "HIERARCHY",
        "ROOT j0",
        "{",
        "OFFSET 0 0 0",
        "CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation",
    ]
    for j in range(1, joints):
        lines += [f"JOINT j{j}", "{", "OFFSET 0 1 0", "CHANNELS 3 Zrotation Xrotation Yrotation"]
    lines += ["End Site", "{", "OFFSET 0 1 0", "}"] + ["}"] * joints
    values = np.random.default_rng(1).uniform(-180, 180, (10_000, 6 + 3 * (joints - 1)))
    body = "\n".join(" ".join(f"{v:.6f}" for v in row) for row in values)
    path = write(tmp_path, "\n".join(lines) + f"\nMOTION\nFrames: 10000\nFrame Time: 0.0083333\n{body}\n")
    bvh = read_bvh(path)
    positions, _ = bvh_forward_kinematics(bvh)
    np.testing.assert_array_equal(bvh.values, np.round(values, 6))
    assert bvh.num_frames == 10_000 and positions.shape == (10_000, joints, 3)
    assert np.isfinite(positions).all()
