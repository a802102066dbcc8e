"""One render path: ``mtvcrafter animate`` in this process and the same request on a server run the same
backend code, so they give the same video; the backend names and settings come from one registry."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("fastapi")
import httpx  # noqa: E402

from mtvcrafter.backends import SETTINGS, backend_names  # noqa: E402
from mtvcrafter_server.local import local_server  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("one-path")
    with local_server(folder / "data", log=folder / "log") as url:
        yield url


def animate(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "mtvcrafter", "animate", *args], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    return result


def frames(path) -> np.ndarray:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    return np.stack([np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in reader])


def test_preview_here_and_on_the_server_gives_the_same_mp4_bytes(server, tmp_path, sample_pkl, reference_image):
    common = ["--backend", "preview", "--ref", str(reference_image), "--motion", str(sample_pkl), "--clip", "4"]
    common += ["--size", "128x96", "--placement", "camera"]
    animate(*common, "--out", str(tmp_path / "here.mp4"))
    animate(*common, "--server", server, "--out", str(tmp_path / "there.mp4"))
    here, there = (tmp_path / "here.mp4").read_bytes(), (tmp_path / "there.mp4").read_bytes()
    assert len(here) > 10_000 and here == there
    other = animate(*common[:-2], "--out", str(tmp_path / "fit.mp4"))  # a setting that matters changes the video
    assert other.returncode == 0 and (tmp_path / "fit.mp4").read_bytes() != here


def test_tiny_here_and_on_the_server_gives_the_same_frames(server, tmp_path, sample_pkl, reference_image):
    common = ["--backend", "tiny", "--ref", str(reference_image), "--motion", str(sample_pkl), "--clip", "0"]
    common += ["--size", "64x48", "--steps", "2", "--num-frames", "20", "--seed", "7"]
    animate(*common, "--out", str(tmp_path / "here.mp4"))
    animate(*common, "--server", server, "--out", str(tmp_path / "there.mp4"))
    here, there = frames(tmp_path / "here.mp4"), frames(tmp_path / "there.mp4")
    assert here.shape == (20, 48, 64, 3)
    np.testing.assert_array_equal(here, there)
    animate(*common[:-1], "8", "--out", str(tmp_path / "seed8.mp4"))
    assert not np.array_equal(frames(tmp_path / "seed8.mp4"), here)


def test_the_server_schema_takes_its_backends_and_params_from_the_registry(server):
    schema = httpx.get(f"{server}/openapi.json", timeout=10).json()
    params = schema["components"]["schemas"]["JobParams"]
    backend = next(option for option in params["properties"]["backend"]["anyOf"] if "enum" in option)
    assert tuple(backend["enum"]) == backend_names()
    assert list(params["properties"]) == ["backend", *(s.name for s in SETTINGS)]
    for setting in SETTINGS:
        field = params["properties"][setting.name]
        assert field["description"] == setting.help and field["default"] == setting.default
    listed = [b["name"] for b in httpx.get(f"{server}/v1/backends", timeout=10).json()]
    assert tuple(listed) == backend_names()
