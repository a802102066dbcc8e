"""Shared fixtures: the official sample data, figures reported at the end of the run, and ``mtvcrafter serve``
processes on loopback for the server tests."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import pytest
from reporting import REPORT, report  # noqa: F401 - `report` is re-exported to the tests

# The Blender tests need the real `bpy` wheel: they run in .venv-blender (`make test` does both).
collect_ignore = [] if importlib.util.find_spec("bpy") else ["blender"]

ROOT = Path(__file__).resolve().parents[1]
SHARED_SAMPLE = ROOT.parent / "shared" / "data" / "mtvcrafter-sample"
EXAMPLES = ROOT / "examples"


def sample_dir() -> Path:
    """The official sample folder beside the checkout, or the copy shipped in ``examples/``."""
    return SHARED_SAMPLE if (SHARED_SAMPLE / "sampled_data.pkl").is_file() else EXAMPLES


@pytest.fixture(scope="session")
def sample_pkl() -> Path:
    return sample_dir() / "sampled_data.pkl"


@pytest.fixture(scope="session")
def sample_motions(sample_pkl):
    from mtvcrafter.motion import load_motions

    return load_motions(sample_pkl)


@pytest.fixture(scope="session")
def reference_image() -> Path:
    return sample_dir() / "human.png"


# -- servers on loopback ----------------------------------------------------------------------------------------

#: how long a server may take to answer /v1/health
STARTUP_S = 60.0
#: the states a job ends in
TERMINAL = {"succeeded", "failed", "cancelled"}
#: the reference image the server tests send: the bundled example's bytes
REFERENCE = (EXAMPLES / "human.png").read_bytes()
#: a job of the preview backend, done in a moment
SMALL = {"backend": "preview", "width": 64, "height": 64}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_command() -> list[str]:
    """The ``mtvcrafter`` command beside this Python, or ``python -m mtvcrafter``."""
    script = Path(sys.executable).with_name("mtvcrafter")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "mtvcrafter"]


class ServeProcess:
    """One ``mtvcrafter serve`` subprocess on a free loopback port; its stdout and stderr go to ``log``.

    ``data_dir`` None: no ``--data-dir`` (the default folder). The server sees none of our ``MTVCRAFTER_*``
    variables, only ``env``; it runs on the CPU. :meth:`start` starts it, :meth:`wait_ready` waits for
    ``/v1/health`` and opens :attr:`client`; :meth:`stop` always ends it."""

    #: keywords of the ``httpx.Client`` that :meth:`wait_ready` opens
    client_options: dict = {}
    #: a function run in the server process before it starts (``subprocess.Popen``'s ``preexec_fn``)
    preexec = None

    def __init__(
        self,
        data_dir: Path | None,
        log: Path,
        *args: str,
        host: str = "127.0.0.1",
        token: str | None = None,
        env: dict[str, str] | None = None,
    ):
        self.data_dir, self.log_path, self.args, self.host, self.token = data_dir, log, args, host, token
        self.env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.client = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MTVCRAFTER_")}
        env.update(PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="")  # the models on the CPU, as the timings assume
        return {**env, **self.env}

    def program(self) -> list[str]:
        """What runs ``serve …``: the ``mtvcrafter`` command."""
        return serve_command()

    def start(self) -> Self:
        command = [*self.program(), "serve", "--host", self.host, "--port", str(self.port)]
        if self.data_dir is not None:
            command += ["--data-dir", str(self.data_dir)]
        command += self.args
        if self.token:
            command += ["--token", self.token]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=self.environment(), cwd=ROOT, preexec_fn=self.preexec
            )
        return self

    def wait_ready(self) -> Self:
        import httpx

        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/v1/health", headers=self.headers, timeout=2).status_code == 200:
                    self.client = httpx.Client(
                        base_url=self.url, headers=self.headers, timeout=30, **self.client_options
                    )
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the server did not answer /v1/health within {STARTUP_S:.0f} s:\n{self.output()}")

    def output(self, tail: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, kill: bool = False) -> None:
        """End the server (SIGKILL with ``kill``, else SIGTERM, SIGKILL after 15 s) and close the client."""
        if self.client is not None:
            self.client.close()
        if self.proc is not None and self.proc.poll() is None:
            if kill:
                os.kill(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def declared_body_answer(url: str, method: str, path: str, headers: dict[str, object]):
    """The server's answer (an ``httpx.Response``) to a request whose head (``headers`` after ``Host``) declares a
    body that is never sent, as httpx would not send it; read until the server closes the connection."""
    import httpx

    netloc = url.removeprefix("http://")
    host, port = netloc.rsplit(":", 1)
    head = f"{method} {path} HTTP/1.1\r\nHost: {netloc}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "Connection: close\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    raw_head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = raw_head.decode("latin-1").split("\r\n")
    fields = [tuple(part.strip() for part in line.split(":", 1)) for line in lines]
    return httpx.Response(
        int(status_line.split()[1]), headers=fields, content=body, request=httpx.Request(method, url + path)
    )


def pytest_terminal_summary(terminalreporter):
    for heading, lines in REPORT.items():
        terminalreporter.section(heading)
        for line in lines:
            terminalreporter.write_line(line)
