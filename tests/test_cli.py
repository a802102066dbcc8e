"""The mtvcrafter command as a user runs it (a real subprocess)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np

from mtvcrafter.render import read_mp4_info


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mtvcrafter", *args], capture_output=True, text=True, timeout=300)


def test_animate_preview_writes_the_video_and_prints_its_path(tmp_path, sample_pkl, reference_image):
    out = tmp_path / "demo.mp4"
    result = run(
        "animate",
        "--backend",
        "preview",
        "--ref",
        str(reference_image),
        "--motion",
        str(sample_pkl),
        "--clip",
        "4",
        "--size",
        "256x256",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out.resolve())
    assert read_mp4_info(out) == {"frames": 179, "fps": 30.0, "size": (256, 256)}
    assert "179 frames" in result.stderr


def test_stats_from_motion_files(tmp_path, sample_pkl):
    result = run("motion", "stats", str(sample_pkl), "--out", str(tmp_path / "stats"))
    assert result.returncode == 0, result.stderr
    assert "5 clip(s), 1842 frames" in result.stdout
    mean = np.load(tmp_path / "stats" / "mean.npy")
    assert mean.shape == (24, 3) and mean.dtype == np.float32


def test_errors_are_one_sentence_and_exit_1(tmp_path, reference_image, sample_pkl):
    result = run(
        "animate",
        "--ref",
        str(reference_image),
        "--motion",
        str(tmp_path / "none.pkl"),
        "--out",
        str(tmp_path / "o.mp4"),
    )
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {tmp_path / 'none.pkl'}: no such file"
    bad_size = run("animate", "--ref", "x", "--motion", "y", "--out", "z", "--size", "big")
    assert bad_size.returncode == 2 and "WIDTHxHEIGHT" in bad_size.stderr
    huge = run("animate", "--ref", "x", "--motion", "y", "--out", "z", "--size", "100000x100000")
    assert huge.returncode == 2 and "between 16 and 8192" in huge.stderr
    to_folder = run(
        "animate", "--ref", str(reference_image), "--motion", str(sample_pkl), "--out", str(tmp_path), "--size", "64x64"
    )
    assert to_folder.returncode == 1 and to_folder.stderr.startswith(f"error: {tmp_path}: is a folder")
    (tmp_path / "afile").write_text("")
    stats_to_file = run("motion", "stats", str(sample_pkl), "--out", str(tmp_path / "afile"))
    assert stats_to_file.returncode == 1 and "is a file" in stats_to_file.stderr
    nested = run("motion", "convert", str(sample_pkl), str(tmp_path / "new" / "folder" / "m.npz"))
    assert nested.returncode == 0 and (tmp_path / "new" / "folder" / "m.npz").is_file()


def test_convert_and_fit(tmp_path, sample_pkl):
    out = tmp_path / "clip3.npz"
    result = run("motion", "convert", str(sample_pkl), str(out), "--clip", "3", "--fit")
    assert result.returncode == 0, result.stderr
    data = np.load(out, allow_pickle=False)
    assert data["joints"].shape == (653, 24, 3) and data["rotations"].shape == (653, 24, 4)
    assert "mean per-joint error" in result.stderr
    info = json.loads(run("motion", "info", str(out), "--json").stdout)
    assert info["clips"][0]["frames"] == 653 and info["clips"][0]["has_rotations"]
    every = run("motion", "convert", str(sample_pkl), str(tmp_path / "all.pkl"), "--all-clips")
    assert every.returncode == 0 and "5 clip(s)" in every.stdout
    written, original = (pickle.loads(p.read_bytes()) for p in (tmp_path / "all.pkl", sample_pkl))
    for mine, theirs in zip(written, original, strict=True):
        assert list(mine) == list(theirs)  # same fields in the same order
        np.testing.assert_array_equal(mine.pop("pose"), theirs.pop("pose"))
        assert mine == theirs
    refused = run("motion", "convert", str(sample_pkl), str(tmp_path / "all.npz"), "--all-clips")
    assert refused.returncode == 1 and "needs a .pkl output" in refused.stderr
    fit = json.loads(run("motion", "fit", str(sample_pkl), "--json").stdout)
    assert [r["frames"] for r in fit] == [127, 299, 584, 653, 179]
    assert all(r["mean_error_mm"] < 15 for r in fit)


def test_a_downward_up_axis_is_taken_as_written(tmp_path):
    """``--up -Y`` (as the README writes it), not only ``--up=-Y``: argparse alone reads ``-Y`` as an option."""
    from pathlib import Path

    bvh = Path(__file__).resolve().parents[2] / "shared" / "data" / "realworld" / "mixamo_test_freebvh.bvh"
    if not bvh.is_file():
        import pytest

        pytest.skip("the real-world BVH files are not in ../shared")
    spaced = run("motion", "info", str(bvh), "--up", "-Y", "--json")
    joined = run("motion", "info", str(bvh), "--up=-Y", "--json")
    assert spaced.returncode == 0 == joined.returncode, spaced.stderr
    assert json.loads(spaced.stdout) == json.loads(joined.stdout)
    assert "upside down" in json.loads(spaced.stdout)["clips"][0]["quality"]["summary"]
