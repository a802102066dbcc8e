"""``mtvcrafter motion extract`` as a user runs it: a real subprocess on the official driving video, through a real
TorchScript file with NLF's interface (the stand-in: it finds the performer as the footage's foreground)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mtvcrafter.extract import probe_video
from mtvcrafter.extract.standin import write_standin_model
from mtvcrafter.motion import load_motion
from tests.conftest import SHARED_SAMPLE
from tests.test_official_pickle_layout import load_like_the_official_scripts

DRIVING = SHARED_SAMPLE / "driving_00001.mp4"
needs_video = pytest.mark.skipif(not DRIVING.is_file(), reason="the official driving video is not in ../shared")


def run(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mtvcrafter", *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd
    )


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    path = tmp_path_factory.mktemp("nlf") / "standin.torchscript"
    write_standin_model(path, mode="foreground")
    return path


@needs_video
def test_extract_the_official_driving_video_to_npz_and_the_official_pkl(tmp_path, standin):
    out, pkl = tmp_path / "dance.npz", tmp_path / "dance.pkl"
    result = run("motion", "extract", str(DRIVING), "--nlf", str(standin), "--out", str(out), "--pkl", str(pkl))
    assert result.returncode == 0, result.stderr
    video = probe_video(DRIVING)
    motion = load_motion(out)
    # as many frames as the video, at its frame rate, in its camera; every frame marked observed or not
    assert motion.num_frames == video.frames == 127
    assert motion.fps == pytest.approx(video.fps) and video.fps == pytest.approx(30.0)
    assert motion.image_size == (video.height, video.width) == (1080, 604)
    assert motion.fov_deg == 55.0
    assert motion.frame_valid is not None and motion.frame_valid.shape == (127,) and motion.frame_valid.mean() > 0.9
    assert motion.joint_uncertainty is not None and motion.joint_uncertainty.shape == (127, 24)
    assert (motion.joints[:, :, 2] > 0).all()  # in front of the camera
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"{out}: 127 frames at 30 fps, camera 604x1080")
    assert f"seen in {int(motion.frame_valid.sum())} of them" in first
    # the official layout, read as MTVCrafter's own scripts do: numpy and pickle only, torch unimportable
    clips = load_like_the_official_scripts(pkl, tmp_path)
    assert len(clips) == 1 and clips[0]["frames"] == 127 == clips[0]["video_length"]
    assert (clips[0]["video_height"], clips[0]["video_width"]) == (1080, 604)
    assert np.array_equal(np.load(tmp_path / "frames_0.npy"), motion.joints)
    # and motion info says how much of it was observed
    info = run("motion", "info", str(out), "--json")
    clip = json.loads(info.stdout)["clips"][0]
    assert clip["valid_frames"] == int(motion.frame_valid.sum())
    assert "from the video it was extracted from: followed the largest person of the first second" in clip["notes"]


@needs_video
def test_extract_options_model_from_the_environment_clean_and_json(tmp_path, standin):
    env = {**os.environ, "MTVCRAFTER_NLF": str(standin)}
    result = run(
        "motion", "extract", str(DRIVING), "--clean", "0.7", "--smooth", "one-euro", "--batch-size", "16",
        "--fov", "40", "--json", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    written = tmp_path / "driving_00001.npz"  # the default: the video's name, in the current folder
    assert summary["out"] == "driving_00001.npz" and written.is_file()
    motion = load_motion(written)
    assert summary["frames"] == motion.num_frames == 127 and summary["fov_deg"] == motion.fov_deg == pytest.approx(40)
    assert summary["clean"].startswith("moved joints by") and any("cleaned:" in n for n in motion.notes)
    assert any("One-Euro" in n or "one-euro" in n.lower() for n in motion.notes)


def test_extract_errors_are_one_line(tmp_path, standin):
    env = {k: v for k, v in os.environ.items() if k != "MTVCRAFTER_NLF"}
    no_model = run("motion", "extract", str(DRIVING), "--out", str(tmp_path / "a.npz"), env=env)
    assert no_model.returncode == 2 and no_model.stderr.count("\n") == 1 and "--nlf" in no_model.stderr
    image = run(
        "motion", "extract", str(SHARED_SAMPLE / "human.png"), "--nlf", str(standin), "--out", str(tmp_path / "b.npz")
    )
    assert image.returncode == 1 and image.stderr.count("\n") == 1 and "not a video" in image.stderr
    suffix = run("motion", "extract", str(DRIVING), "--nlf", str(standin), "--out", str(tmp_path / "c.bvh"))
    assert suffix.returncode == 2 and ".npz" in suffix.stderr
    not_a_model = tmp_path / "model.torchscript"
    not_a_model.write_bytes(b"not a model")
    model = run("motion", "extract", str(DRIVING), "--nlf", str(not_a_model), "--out", str(tmp_path / "d.npz"))
    assert model.returncode == 1 and model.stderr.count("\n") == 1 and str(not_a_model) in model.stderr
    box = run("motion", "extract", str(DRIVING), "--nlf", str(standin), "--box", "1,2,3")
    assert box.returncode == 2 and "X,Y,W,H" in box.stderr
    assert not any(tmp_path.glob("*.npz"))  # nothing written on failure
