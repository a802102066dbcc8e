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
    assert "multiples of 16" in err and "HTTP 422" in err and "Traceback" not in err
    assert main([*base, "--server", server, "--backend", "mvdit-7b"]) == 1
    assert "not available" in capsys.readouterr().err
    assert main([*base, "--server", f"http://127.0.0.1:{free_port()}"]) == 1
    assert "cannot reach the server" in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()
