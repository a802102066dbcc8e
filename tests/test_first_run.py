"""A first run of the command line, as a new user tries it: small tiny renders, options refused in one line,
truthful ``motion info``, quiet pipes, and cancel that lands inside a denoising step."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mtvcrafter.backends import BackendConfig, Cancelled, RenderRequest, RenderSettings, get_backend
from mtvcrafter.cli import main
from mtvcrafter.motion import load_motion, save_motion


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mtvcrafter", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture()
def short_motion(tmp_path, sample_pkl):
    path = tmp_path / "m.npz"
    save_motion(load_motion(sample_pkl).slice(0, 6), path)
    return path


def test_tiny_renders_small_by_default_without_a_vq_warning(tmp_path, short_motion, reference_image):
    out = tmp_path / "t.mp4"
    result = cli("animate", "--backend", "tiny", "--ref", str(reference_image), "--motion", str(short_motion),
                 "--steps", "1", "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    from mtvcrafter.render import read_mp4_info

    info = read_mp4_info(out)
    assert info["size"] == (64, 64) and info["frames"] == 6
    assert "vq loss" not in result.stderr  # random tokenizer weights: the warning would always fire


def test_tiny_refuses_a_size_that_takes_minutes(tmp_path, short_motion, reference_image, capsys):
    code = main(["animate", "--backend", "tiny", "--ref", str(reference_image), "--motion", str(short_motion),
                 "--size", "512x512", "--out", str(tmp_path / "t.mp4")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and err.strip() == "error: width: at most 256 pixels for tiny (a smoke test on the CPU), got 512"


def test_every_phase_is_reported_including_the_decode(tmp_path, short_motion, reference_image):
    from PIL import Image

    seen = []
    backend = get_backend("tiny", BackendConfig())
    request = RenderRequest(load_motion(short_motion), Image.open(reference_image), RenderSettings(steps=2),
                            tmp_path / "o.mp4")  # fmt: skip
    backend.run(request, lambda phase, fraction, message="", eta=None: seen.append(phase))
    phases = list(dict.fromkeys(seen))
    assert phases[-3:] == ["denoising", "decoding", "encoding video"], phases


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--clip", "-1"], "argument --clip: a clip is a number from 0 (the first clip), got -1"),
        (["--out", "{tmp}/x.gif"], "{tmp}/x.gif: the video is written as H.264 MP4; name the file x.mp4"),
        (["--out", "{tmp}/noext"], "{tmp}/noext: the video is written as H.264 MP4; name the file noext.mp4"),
        (["--out", "{tmp}/file.txt/x.mp4"], "{tmp}/file.txt/x.mp4: {tmp}/file.txt is not a folder"),
    ],
)
def test_options_that_cannot_work_are_one_line_errors(tmp_path, short_motion, reference_image, args, message):
    (tmp_path / "file.txt").write_text("not a folder")
    args = [a.format(tmp=tmp_path) for a in args]
    base = ["animate", "--backend", "preview", "--ref", str(reference_image), "--motion", str(short_motion)]
    if "--out" not in args:
        base += ["--out", str(tmp_path / "ok.mp4")]
    result = cli(*base, *args)
    assert result.returncode != 0
    assert message.format(tmp=tmp_path) in result.stderr
    assert "Traceback" not in result.stderr
    assert message.format(tmp=tmp_path) in result.stderr.strip().splitlines()[-1]  # one line says it, last
    assert not (tmp_path / "x.gif").exists() and not (tmp_path / "noext").exists()


def test_motion_info_of_our_npz_is_truthful_and_its_json_says_width_and_height(tmp_path, sample_pkl):
    converted = tmp_path / "m.npz"
    assert cli("motion", "convert", str(sample_pkl), str(converted)).returncode == 0
    text = cli("motion", "info", str(converted)).stdout
    assert "note: the file stores no frame rate" not in text  # our .npz stores it
    assert "from the official-pkl file it was converted from: the file stores no frame rate" in text
    clip = json.loads(cli("motion", "info", str(converted), "--json").stdout)["clips"][0]
    assert f"{clip['image_width']}x{clip['image_height']} (width x height)" in text
    assert clip["image_size"] == [clip["image_height"], clip["image_width"]]


def test_a_closed_pipe_ends_quietly(sample_pkl):
    process = subprocess.Popen(
        [sys.executable, "-m", "mtvcrafter", "motion", "info", str(sample_pkl), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdout.read(10)
    process.stdout.close()  # as `| head -c 10` does
    err = process.stderr.read().decode()
    process.wait(timeout=60)
    assert "Broken pipe" not in err and "Traceback" not in err


def test_cancel_lands_inside_a_denoising_step(tmp_path, short_motion, reference_image):
    """Cancel is checked between transformer blocks: a step of a large model (minutes on a CPU) is cut short."""
    from PIL import Image

    backend = get_backend("tiny", BackendConfig())
    pipe = backend.pipeline(RenderSettings())
    calls = []
    hook = pipe.transformer.transformer_blocks[0].register_forward_pre_hook(lambda *a: calls.append(1))
    request = RenderRequest(load_motion(short_motion), Image.open(reference_image), RenderSettings(steps=5),
                            tmp_path / "o.mp4")  # fmt: skip
    try:
        with pytest.raises(Cancelled):
            backend.run(request, cancelled=lambda: len(calls) >= 1)  # set during the first step
    finally:
        hook.remove()
    assert len(calls) == 1  # the first block of the first step ran, then it stopped: not all 5 steps
    assert not (tmp_path / "o.mp4").exists()
    np.testing.assert_equal(len(pipe.transformer.transformer_blocks[0]._forward_pre_hooks), 0)  # hooks removed
