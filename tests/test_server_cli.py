"""`mtvcrafter animate --server` and `make demo`'s path: a real server on a loopback port, driven by the CLI."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from mtvcrafter.cli import main  # noqa: E402
from mtvcrafter.render import read_mp4_info  # noqa: E402
from mtvcrafter_server.local import free_port, local_server  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("server")
    with local_server(folder / "data", log=folder / "log") as url:
        yield url


def test_animate_renders_through_the_server_and_reuses_the_result(
    server, tmp_path, sample_pkl, reference_image, capsys
):
    out = tmp_path / "a.mp4"
    args = [
        "animate",
        "--server",
        server,
        "--ref",
        str(reference_image),
        "--motion",
        str(sample_pkl),
        "--out",
        str(out),
        "--size",
        "96x64",
    ]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out.resolve())
    assert "preview backend" in captured.err and "cached" not in captured.err
    assert read_mp4_info(out) == {"frames": 127, "fps": 30.0, "size": (96, 64)}
    first = out.read_bytes()
    assert main(args) == 0
    assert "(cached result)" in capsys.readouterr().err
    assert out.read_bytes() == first


def test_animate_tiny_backend_through_the_server(server, tmp_path, sample_pkl, reference_image, capsys):
    out = tmp_path / "t.mp4"
    args = [
        "animate",
        "--server",
        server,
        "--backend",
        "tiny",
        "--steps",
        "2",
        "--ref",
        str(reference_image),
        "--motion",
        str(sample_pkl),
        "--clip",
        "4",
        "--out",
        str(out),
        "--size",
        "64x64",
    ]
    assert main(args) == 0, capsys.readouterr().err
    assert read_mp4_info(out) == {"frames": 179, "fps": 30.0, "size": (64, 64)}


def test_refusals_and_an_absent_server_are_one_line_errors(server, tmp_path, sample_pkl, reference_image, capsys):
    base = ["animate", "--ref", str(reference_image), "--motion", str(sample_pkl), "--out", str(tmp_path / "x.mp4")]
    assert main([*base, "--server", server, "--backend", "tiny", "--size", "72x64"]) == 1
    err = capsys.readouterr().err
    assert "a multiple of 16" in err and "HTTP 422" in err and "Traceback" not in err
    assert main([*base, "--server", server, "--backend", "mvdit-7b"]) == 1
    assert "not available" in capsys.readouterr().err
    assert main([*base, "--server", f"http://127.0.0.1:{free_port()}"]) == 1
    assert "cannot reach the server" in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()


def _submit(url, motion_bytes, reference_image, params=None, name="m.npz"):
    import json

    import httpx

    with open(reference_image, "rb") as ref:
        files = {"motion": (name, motion_bytes), "reference": ("r.png", ref.read())}
        return httpx.post(f"{url}/v1/jobs", files=files, data={"params": json.dumps(params or {})}, timeout=60)


def test_an_npz_that_would_expand_to_gigabytes_is_refused_from_its_directory(server, reference_image):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("format.npy", b"\0" * (200 * 2**20))  # 200 MB of zeros, ~200 KB compressed
    response = _submit(server, buffer.getvalue(), reference_image)
    assert response.status_code == 413 and response.json()["error"]["code"] == "motion_too_large"


def test_deeply_nested_json_and_huge_numbers_are_422(server, reference_image):
    deep = b'{"joints": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert _submit(server, deep, reference_image, name="m.json").status_code == 422
    frame = [[0.0, 0.0, 3000.0]] * 24
    import json

    huge = json.dumps({"joints": [frame] * 3, "fps": 30, "frame_start": 1e400}).encode().replace(b"Infinity", b"1e400")
    response = _submit(server, huge, reference_image, name="m.json")
    assert response.status_code == 422, response.text


def test_the_cache_tells_apart_motions_that_differ_only_in_their_camera(
    server, sample_motions, reference_image, tmp_path
):
    from dataclasses import replace

    from mtvcrafter.motion import save_motion

    motion = sample_motions[0].slice(0, 8)
    bodies = []
    for fov in (55.0, 20.0):
        path = tmp_path / f"m{fov}.npz"
        save_motion(replace(motion, fov_deg=fov), path)
        bodies.append(path.read_bytes())
    params = {"placement": "camera", "width": 64, "height": 64}
    first = _submit(server, bodies[0], reference_image, params).json()
    second = _submit(server, bodies[1], reference_image, params).json()
    assert first["id"] != second["id"] and second["cached"] is False


def test_a_second_server_on_the_same_data_folder_refuses_to_start(tmp_path):
    import subprocess
    import sys

    data = tmp_path / "data"
    with local_server(data) as url:
        port = free_port()
        result = subprocess.run(
            [sys.executable, "-m", "mtvcrafter", "serve", "--port", str(port), "--data-dir", str(data)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2 and "another server is using the data folder" in result.stderr
        import httpx

        assert httpx.get(f"{url}/v1/health").status_code == 200


def test_a_default_backend_that_is_not_available_refuses_to_start(tmp_path):
    import subprocess
    import sys

    command = [
        sys.executable,
        "-m",
        "mtvcrafter",
        "serve",
        "--port",
        str(free_port()),
        "--data-dir",
        str(tmp_path / "d"),
        "--backend",
        "mvdit-7b",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--backend mvdit-7b is not available" in result.stderr
    assert "--model-dir" in result.stderr  # the reason says what to do
