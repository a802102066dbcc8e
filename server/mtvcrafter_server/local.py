"""Start a server on a free loopback port for the duration of a ``with`` block (demo, benchmarks, tests)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_server(
    data_dir: str | Path,
    *options: str,
    log: str | Path | None = None,
    timeout: float = 120.0,
    python: str | Path | None = None,
    env: dict[str, str] | None = None,
    token: str | None = None,
):
    """A ``mtvcrafter serve`` subprocess on 127.0.0.1; yields its URL and stops it at the end.

    ``python``: the interpreter to run it with (default this one; e.g. the server's environment
    when the caller runs inside Blender's Python). ``env``: variables added to its environment (e.g.
    ``MTVCRAFTER_TOKEN``); ``token``: the one to send while waiting for it to answer."""
    port = free_port()
    command = [
        str(python or sys.executable),
        "-m",
        "mtvcrafter",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        *options,
    ]
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        command, stdout=out, stderr=out, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    )
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the server exited with status {process.returncode}" + (f"; see {log}" if log else "")
                )
            try:
                answer = httpx.get(f"{url}/v1/health", headers=headers, timeout=2)
                if answer.status_code == 200:
                    break
                if answer.status_code == 503:  # up, but it cannot run jobs (e.g. its data folder refuses writes)
                    reason = answer.json().get("error", {}).get("message", answer.text[:300])
                    raise RuntimeError(f"the server cannot run jobs: {reason}")
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer within {timeout:.0f} s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        if log:
            out.close()
