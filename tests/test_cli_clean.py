"""``mtvcrafter motion clean`` and ``motion convert --clean`` as a user runs them (a real subprocess, real files)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from mtvcrafter.motion import JOINT_NAMES, load_motion
from mtvcrafter.motion.clean import clean_motion


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mtvcrafter", *args], capture_output=True, text=True, timeout=300)


def test_clean_writes_the_cleaned_clip_and_prints_the_report_line(tmp_path, sample_pkl):
    out = tmp_path / "clean.npz"
    result = run("motion", "clean", str(sample_pkl), "--out", str(out), "--clip", "2")
    assert result.returncode == 0, result.stderr
    expected, report = clean_motion(load_motion(sample_pkl, clip=2))
    assert result.stdout.splitlines() == [f"{out}: {report.summary()}"]
    written = load_motion(out)
    assert np.array_equal(written.joints, expected.joints)
    assert written.notes[-1].endswith(f"cleaned: {report.summary()}")  # the note travels with the file
    assert report.planted_frames["left_foot"] > 0 and report.mean_move_mm > 0


def test_clean_options_strength_method_no_feet_json_and_a_pkl_out(tmp_path, sample_pkl):
    out = tmp_path / "clean.pkl"
    result = run(
        "motion", "clean", str(sample_pkl), "--out", str(out), "--smooth", "0.8", "--method", "one-euro",
        "--no-feet", "--clip", "4", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected, report = clean_motion(load_motion(sample_pkl, clip=4), smooth=0.8, feet=False, method="one-euro")
    printed = json.loads(result.stdout)
    assert printed["mean_move_mm"] == report.mean_move_mm and printed["max_move_mm"] == report.max_move_mm
    assert list(printed["per_joint_mm"]) == list(JOINT_NAMES)
    assert printed["planted_frames"] == {"left_foot": 0, "right_foot": 0}
    assert printed["smoothed"].startswith("One-Euro")
    assert np.array_equal(load_motion(out).joints, expected.joints)


def test_clean_with_nothing_to_do_leaves_the_joints_alone(tmp_path, sample_pkl):
    out = tmp_path / "same.npz"
    result = run("motion", "clean", str(sample_pkl), "--out", str(out), "--smooth", "0", "--no-feet")
    assert result.returncode == 0, result.stderr
    assert "moved joints by 0.0 mm on average (at most 0 mm)" in result.stdout
    assert np.array_equal(load_motion(out).joints, load_motion(sample_pkl).joints)


def test_clean_refuses_wrong_input_in_one_line(tmp_path, sample_pkl):
    strength = run("motion", "clean", str(sample_pkl), "--out", str(tmp_path / "o.npz"), "--smooth", "2")
    assert strength.returncode == 2 and "strength from 0 (none) to 1 (strong)" in strength.stderr
    clip = run("motion", "clean", str(sample_pkl), "--out", str(tmp_path / "o.npz"), "--clip", "9")
    assert clip.returncode == 1
    assert clip.stderr.strip().splitlines() == [
        f"error: {sample_pkl}: field 'clip': clip 9 requested but the file holds 5 clip(s) (0–4)"
    ]
    missing = run("motion", "clean", str(tmp_path / "none.pkl"), "--out", str(tmp_path / "o.npz"))
    assert missing.returncode == 1 and missing.stderr.strip() == f"error: {tmp_path / 'none.pkl'}: no such file"
    no_out = run("motion", "clean", str(sample_pkl))
    assert no_out.returncode == 2 and "--out" in no_out.stderr
    assert not (tmp_path / "o.npz").exists()


def test_convert_cleans_on_the_way(tmp_path, sample_pkl):
    default = tmp_path / "default.npz"
    result = run("motion", "convert", str(sample_pkl), str(default), "--clip", "1", "--clean")
    assert result.returncode == 0, result.stderr
    expected, report = clean_motion(load_motion(sample_pkl, clip=1))
    assert np.array_equal(load_motion(default).joints, expected.joints)
    assert f"cleaned: {report.summary()}" in result.stderr
    mild = tmp_path / "mild.npz"
    result = run("motion", "convert", str(sample_pkl), str(mild), "--clip", "1", "--clean", "0.2", "--fit")
    assert result.returncode == 0, result.stderr
    expected, _ = clean_motion(load_motion(sample_pkl, clip=1), smooth=0.2)
    written = load_motion(mild)
    assert written.rotations is not None  # fitted after cleaning, to the cleaned joints
    assert np.array_equal(written.joints, expected.joints)
    plain = run("motion", "convert", str(sample_pkl), str(tmp_path / "plain.npz"), "--clip", "1")
    assert plain.returncode == 0 and "cleaned" not in plain.stderr
    assert np.array_equal(load_motion(tmp_path / "plain.npz").joints, load_motion(sample_pkl, clip=1).joints)
