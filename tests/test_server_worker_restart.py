"""The local worker thread ended by a job (something that is not an ``Exception`` escapes its backend): the job
fails with the reason and "submit it again", a new worker takes the queue, ``/v1/health`` counts the restart and
is healthy again; a worker that keeps stopping is restarted after a growing wait, which health shows.

A real ``mtvcrafter serve`` on loopback, with one more backend in its registry (``exits``, see
:mod:`exiting_backend`) whose renders raise ``SystemExit`` or another ``BaseException``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from conftest import EXAMPLES, REFERENCE, SMALL, TERMINAL, ServeProcess  # noqa: E402

from mtvcrafter.motion import load_motion, save_motion  # noqa: E402

EXITS = {"backend": "exits", "width": 64, "height": 64}


class ExitingServer(ServeProcess):
    """``mtvcrafter serve`` with the ``exits`` backend registered."""

    def program(self) -> list[str]:
        return [sys.executable, str(Path(__file__).with_name("exiting_backend.py"))]


@pytest.fixture
def server(tmp_path):
    srv = ExitingServer(tmp_path / "data", tmp_path / "server.log").start().wait_ready()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def motion(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("motion") / "m.npz"
    save_motion(load_motion(EXAMPLES / "sampled_data.pkl", clip=0).slice(0, 12), path)
    return path.read_bytes()


def submit(server: ServeProcess, motion: bytes, params: dict) -> str:
    files = {"motion": ("m.npz", motion, "application/octet-stream"), "reference": ("ref.png", REFERENCE)}
    response = server.client.post("/v1/jobs", files=files, data={"params": json.dumps(params)})
    assert response.status_code == 202, f"{response.status_code} {response.text}\n{server.output()}"
    return response.json()["id"]


def wait_for(server: ServeProcess, check, what: str, timeout: float):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            log = "\n".join(line for line in server.output(10**7).splitlines() if '"GET /v1/' not in line)
            raise AssertionError(f"{what}: not within {timeout:.0f} s\n{log[-6000:]}")
        time.sleep(0.05)
    return value


def job(server: ServeProcess, job_id: str) -> dict:
    return server.client.get(f"/v1/jobs/{job_id}").json()


def ended(server: ServeProcess, job_id: str, timeout: float = 30.0) -> dict:
    last = [None]

    def check():
        last[0] = job(server, job_id)
        return last[0]["status"] in TERMINAL and last[0]

    try:
        return wait_for(server, check, f"job {job_id} to end", timeout)
    except AssertionError as exc:
        state = {k: last[0][k] for k in ("status", "phase", "message")}
        raise AssertionError(f"{state}; /v1/health: {health(server).json()}\n{exc}") from None


def health(server: ServeProcess) -> httpx.Response:
    return server.client.get("/v1/health")


def healthy(server: ServeProcess) -> dict:
    response = health(server)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "ok" and body["worker"] == "idle", body
    return body


def queue_behind_a_killer(server: ServeProcess, motion: bytes, seed: int, behind: int) -> tuple[str, list[str]]:
    """An ``exits`` job, running, with ``behind`` preview jobs queued after it: their ids."""
    killer = submit(server, motion, {**EXITS, "seed": seed})
    wait_for(server, lambda: job(server, killer)["status"] == "running", "the killing job to run", 30)
    queued = [submit(server, motion, {**SMALL, "seed": seed * 100 + k}) for k in range(behind)]
    assert [job(server, j)["status"] for j in queued] == ["queued"] * behind
    return killer, queued


def assert_failed_for_the_worker(done: dict, error: str) -> None:
    assert done["status"] == "failed", done
    message = done["message"]
    assert "\n" not in message and "worker stopped" in message and error in message, message
    assert message.endswith("submit the job again"), message


def test_a_job_that_ends_the_worker_fails_alone_and_a_new_worker_runs_the_queue(server, motion):
    # 1. SystemExit in a render: that job fails; the two queued behind it run, in order, on a new worker
    killer, queued = queue_behind_a_killer(server, motion, seed=1, behind=2)
    assert_failed_for_the_worker(ended(server, killer), "SystemExit")
    first, second = (ended(server, j) for j in queued)
    assert (first["status"], second["status"]) == ("succeeded", "succeeded"), (first, second)
    assert first["finished"] <= second["started"]
    assert server.client.get(f"/v1/jobs/{first['id']}/result").status_code == 200
    body = healthy(server)
    assert body["worker_restarts"] == 1 and "SystemExit" in body["worker_restart_reason"], body
    assert killer in body["worker_restart_reason"], body

    # 2. another BaseException, on the new worker: survived the same way
    killer, (after,) = queue_behind_a_killer(server, motion, seed=2, behind=1)
    assert_failed_for_the_worker(ended(server, killer), "Abort")
    assert ended(server, after)["status"] == "succeeded"
    body = healthy(server)
    assert body["worker_restarts"] == 2 and "Abort" in body["worker_restart_reason"], body

    # the job that ended the worker was not re-queued: it stays failed
    time.sleep(0.5)
    assert job(server, killer)["status"] == "failed"


def test_a_worker_that_keeps_stopping_is_restarted_after_a_wait_that_health_shows(server, motion):
    from mtvcrafter_server.jobs.executor import RESTART_DELAY_S, RESTARTS_AT_ONCE

    for seed in range(1, RESTARTS_AT_ONCE + 1):  # restarted at once
        killer = submit(server, motion, {**EXITS, "seed": seed})
        assert_failed_for_the_worker(ended(server, killer), "SystemExit" if seed % 2 else "Abort")
    healthy(server)

    killer, (after,) = queue_behind_a_killer(server, motion, seed=RESTARTS_AT_ONCE + 1, behind=1)
    stopped = ended(server, killer)
    assert_failed_for_the_worker(stopped, "")
    waiting = health(server)
    body = waiting.json()
    assert waiting.status_code == 503 and (body["status"], body["worker"]) == ("degraded", "restarting"), body
    assert f"{RESTARTS_AT_ONCE + 1} times" in body["worker_error"], body
    assert "a new worker takes the queue in" in body["worker_error"], body
    assert body["error"]["message"] == body["worker_error"]
    assert job(server, after)["status"] == "queued"  # nothing runs while the worker waits

    done = ended(server, after, timeout=RESTART_DELAY_S[0] + 30)
    assert done["status"] == "succeeded", done
    assert done["started"] - stopped["finished"] >= RESTART_DELAY_S[0] - 0.5, (stopped, done)
    body = healthy(server)
    assert body["worker_restarts"] == RESTARTS_AT_ONCE + 1, body
