"""End-to-end tests of the HTTP server: real ``mtvcrafter serve`` processes on a loopback port, driven with httpx.

Every test asserts what a client sees: status codes, JSON errors, job states, the event stream and the mp4. The
tests of running jobs (submit, events, cancel, cache, restart, disconnect) run against both executors: the
in-process worker, and Ray replicas (two, on a Ray instance the server starts with two logical GPUs) where the
``ray`` extra is installed.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import pickle
import re
import signal
import socket
import sqlite3
import struct
import time
import zlib
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from conftest import EXAMPLES, REFERENCE, STARTUP_S, TERMINAL, ServeProcess  # noqa: E402

from mtvcrafter.motion import load_motion, save_motion  # noqa: E402
from mtvcrafter.motion.npz import motion_to_arrays  # noqa: E402
from mtvcrafter.render import read_mp4_info  # noqa: E402
from mtvcrafter_server.jobs.executor import STOP_WAIT_S  # noqa: E402

#: A tiny-backend job that runs for many seconds: at 256×256 one denoising step takes ~0.1 s on the CPU
#: (above the 0.1 s progress throttle, so every step is reported); it is always cancelled or killed.
LONG_TINY = {"backend": "tiny", "width": 256, "height": 256, "steps": 400}
#: one that runs for a few seconds (10 to 20 ms a denoising step at 128×128): stopped mid-way, then run to its end
RERUN_TINY = {"backend": "tiny", "width": 128, "height": 128, "steps": 300}

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="the ray extra is not installed (pip install 'mtvcrafter[ray]')"
)
#: where a job-running test's server runs its jobs
EXECUTORS = ["local", pytest.param("ray", marks=needs_ray)]
#: a Ray-backed server: two replicas on the two logical GPUs of the Ray instance it starts, models on the CPU
RAY_REPLICAS = 2
RAY_OPTIONS = ("--executor", "ray", "--replicas", str(RAY_REPLICAS), "--device", "cpu")


# -- servers -----------------------------------------------------------------------------------------------


class Server(ServeProcess):
    """One ``mtvcrafter serve`` subprocess whose jobs run on ``executor``."""

    def __init__(self, data_dir: Path, log: Path, *args: str, executor: str = "local", **options):
        if executor == "ray":
            args = (*RAY_OPTIONS, *args)
        super().__init__(data_dir, log, *args, **options)
        self.executor = executor
        #: how many jobs run at once
        self.replicas = RAY_REPLICAS if executor == "ray" else 1

    def environment(self) -> dict[str, str]:
        env = super().environment()
        if self.executor == "ray":  # logical GPUs (Ray refuses them while CUDA_VISIBLE_DEVICES hides all); --device cpu
            if "CUDA_VISIBLE_DEVICES" not in self.env:
                env.pop("CUDA_VISIBLE_DEVICES")
            env.setdefault("MTVCRAFTER_RAY_GPUS", str(RAY_REPLICAS))
        return env


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("server")
    srv = Server(folder / "data", folder / "server.log").start()
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


@pytest.fixture(scope="module", params=EXECUTORS)
def job_server(request, tmp_path_factory):
    """A server of each executor, for the tests of running jobs (the local one is :func:`server`)."""
    if request.param == "local":
        yield request.getfixturevalue("server")
        return
    folder = tmp_path_factory.mktemp("ray-server")
    srv = Server(folder / "data", folder / "server.log", executor="ray").start()
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


# -- inputs ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip():
    return load_motion(EXAMPLES / "sampled_data.pkl", clip=0)


def npz_bytes(motion, tmp_path: Path, name: str = "motion.npz") -> bytes:
    path = tmp_path / name
    save_motion(motion, path)
    return path.read_bytes()


def raw_npz(arrays: dict) -> bytes:
    """An .npz written by hand (np.savez), bypassing our writer's checks."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def motions(clip, tmp_path_factory):
    """npz bytes: 20, 30, 40 and 49 frames of the sample clip."""
    folder = tmp_path_factory.mktemp("motions")
    return {n: npz_bytes(clip.slice(0, n), folder, f"m{n}.npz") for n in (20, 30, 40, 49)}


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width×height (CRCs right), with a tiny IDAT: a decompression bomb header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# -- client helpers ----------------------------------------------------------------------------------------


def submit(client, motion: bytes, params: dict | None, *, motion_name="motion.npz", reference=REFERENCE, **kw):
    files = {"motion": (motion_name, motion, "application/octet-stream"), "reference": ("ref.png", reference)}
    data = {"params": json.dumps(params)} if params is not None else {}
    return client.post("/v1/jobs", files=files, data=data, **kw)


def submit_ok(server, motion: bytes, params: dict) -> dict:
    response = submit(server.client, motion, params)
    assert response.status_code == 202, f"{response.status_code} {response.text}\n{server.output()}"
    job = response.json()
    assert re.fullmatch(r"[0-9a-f]{32}", job["id"])
    return job


def wait_job(server, job_id: str, until=TERMINAL, timeout: float = 60.0, check=None) -> dict:
    """Poll the job until its status is in ``until`` (or ``check(job)`` holds)."""
    deadline = time.monotonic() + timeout
    while True:
        job = server.client.get(f"/v1/jobs/{job_id}").json()
        if (check(job) if check else job["status"] in until) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert check(job) if check else job["status"] in until, f"job stuck at {job}\n{server.output()}"
    return job


def sse_events(response):
    """Parse a text/event-stream into dicts {id, event, data} (comments and retry lines skipped)."""
    event: dict = {}
    for line in response.iter_lines():
        if not line:
            if "data" in event:
                yield event
            event = {}
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if key == "id":
            event["id"] = int(value)
        elif key == "event":
            event["event"] = value
        elif key == "data":
            event["data"] = json.loads(value)


def read_events(server, job_id: str, last_event_id: int | None = None, timeout: float = 60.0) -> list[dict]:
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    with server.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=timeout) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(sse_events(response))


def download(server, job_id: str, tmp_path: Path) -> tuple[bytes, dict]:
    response = server.client.get(f"/v1/jobs/{job_id}/result")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "video/mp4"
    path = tmp_path / f"{job_id}.mp4"
    path.write_bytes(response.content)
    return response.content, read_mp4_info(path)


def assert_error(response, status: int, code: str | None = None, field: str | None = None) -> dict:
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    error = response.json()["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    if field is not None:
        assert error.get("field") == field, error
    return error


def assert_healthy(server) -> None:
    response = server.client.get("/v1/health")
    assert response.status_code == 200, f"{response.text}\n{server.output()}"
    assert response.json()["status"] == "ok"
    assert server.proc.poll() is None


def job_count(server) -> int:
    return len(server.client.get("/v1/jobs", params={"limit": 500}).json())


def raw_http(port: int, request: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (no client normalisation) and read one response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                lengths = re.findall(rb"(?im)^content-length:\s*(\d+)\s*$", head)
                if lengths and len(body) >= int(lengths[0]):
                    break
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines and lines[0].startswith("HTTP/1.1 "), f"no HTTP response: {data[:200]!r}"
    headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
    return int(lines[0].split()[1]), {k.strip().lower(): v.strip() for k, v in headers.items()}, body


def step_of(event: dict) -> int | None:
    match = re.search(r"step (\d+)/(\d+)", event["data"]["message"])
    return int(match.group(1)) if match else None


# -- 1. submit → events → result -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "frames", "params"),
    [
        ("preview", 40, {"width": 128, "height": 96}),
        ("tiny", 49, {"width": 64, "height": 64, "steps": 2}),
    ],
)
def test_submit_events_result(job_server, motions, tmp_path, backend, frames, params):
    job = submit_ok(job_server, motions[frames], {"backend": backend, **params})
    assert job["status"] in ("queued", "running") and job["backend"] == backend and not job["cached"]
    assert job["frames"] == frames and job["result_ready"] is False

    events = read_events(job_server, job["id"])
    ids = [e["id"] for e in events]
    assert ids == list(range(1, len(ids) + 1)), ids  # numbered 1, 2, … with no gap
    assert all(e["event"] == e["data"]["status"] for e in events)
    assert all(e["data"]["id"] == job["id"] for e in events)
    assert events[0]["event"] == "queued" and events[-1]["event"] == "succeeded"
    assert "running" in [e["event"] for e in events]
    assert sum(e["event"] in TERMINAL for e in events) == 1  # the stream ends after the terminal event
    progress = [e["data"]["progress"] for e in events]
    assert progress == sorted(progress) and progress[-1] == 1.0, progress

    # resuming from Last-Event-ID gives the rest, and nothing already seen
    resumed = read_events(job_server, job["id"], last_event_id=ids[-2])
    assert [e["id"] for e in resumed] == [ids[-1]] and resumed[0]["data"] == events[-1]["data"]
    assert read_events(job_server, job["id"], last_event_id=ids[-1]) == []

    done = job_server.client.get(f"/v1/jobs/{job['id']}").json()
    assert done["status"] == "succeeded" and done["result_ready"] and done["progress"] == 1.0
    assert (done["frames"], done["width"], done["height"]) == (frames, params["width"], params["height"])
    content, info = download(job_server, job["id"], tmp_path)
    assert content[4:8] == b"ftyp"
    assert info["frames"] == frames
    assert tuple(info["size"]) == (params["width"], params["height"])
    assert info["fps"] == pytest.approx(30.0)
    assert job["id"] in [j["id"] for j in job_server.client.get("/v1/jobs").json()]


@pytest.mark.parametrize(
    "params",
    [
        {"backend": "preview", "width": 64, "height": 64},
        {"backend": "tiny", "width": 64, "height": 64, "steps": 2},
    ],
)
def test_num_frames_renders_only_the_first_frames(job_server, motions, tmp_path, params):
    """``num_frames`` is documented as "render only the first N frames"."""
    job = submit_ok(job_server, motions[49], {**params, "num_frames": 17, "seed": 17})
    done = wait_job(job_server, job["id"])
    assert done["status"] == "succeeded", done
    _, info = download(job_server, job["id"], tmp_path)
    assert (info["frames"], done["frames"]) == (17, 17)


def test_odd_preview_size_is_refused_at_submit(server, motions):
    """The preview renderer needs even sizes: a 65-pixel width should be a 422, not a job that fails later."""
    response = submit(server.client, motions[20], {"backend": "preview", "width": 65, "height": 64})
    assert_error(response, 422, "invalid_params", "params.width")


# -- 2. cancel ---------------------------------------------------------------------------------------------


def test_cancel_running_job_stops_within_a_step(job_server, motions, tmp_path):
    job = submit_ok(job_server, motions[49], LONG_TINY)
    seen: list[tuple[float, dict]] = []
    cancel_reply = t_cancel = t_end = None
    with job_server.client.stream("GET", f"/v1/jobs/{job['id']}/events", timeout=60) as response:
        for event in sse_events(response):
            seen.append((time.monotonic(), event))
            if cancel_reply is None and sum(step_of(e) is not None for _, e in seen) >= 3:
                t_cancel = time.monotonic()
                cancel_reply = job_server.client.delete(f"/v1/jobs/{job['id']}")
            if event["event"] in TERMINAL:
                t_end = time.monotonic()
    assert cancel_reply is not None, f"the job never reached denoising: {[e for _, e in seen]}"
    assert cancel_reply.status_code == 200
    reply = cancel_reply.json()
    assert reply["status"] == "running" and "cancel" in reply["message"]
    events = [e for _, e in seen]
    assert events[-1]["event"] == "cancelled", [e["data"] for e in events[-5:]]
    assert t_end - t_cancel < 3.0, f"cancelled {t_end - t_cancel:.1f} s after DELETE"

    total = int(re.search(r"step \d+/(\d+)", next(e for e in events if step_of(e))["data"]["message"]).group(1))
    assert total == LONG_TINY["steps"]
    # the step the client last saw when it cancelled vs. the last step the job reported: about one more
    steps = [(t, step_of(e)) for t, e in seen if step_of(e) is not None]
    before = [(t, s) for t, s in steps if t <= t_cancel]
    at_cancel, at_end = before[-1][1], max(s for _, s in steps)
    per_second = (before[-1][1] - before[0][1]) / max(before[-1][0] - before[0][0], 1e-3)  # steps/s seen
    slack = 1 + math.ceil(per_second * 0.1)  # one step, plus those the 0.1 s progress throttle may hide
    assert at_end - at_cancel <= slack, f"ran {at_end - at_cancel} steps after the cancel (allowed {slack})"
    assert at_end < total
    end_progress, cancel_progress = events[-1]["data"]["progress"], reply["progress"]
    assert end_progress - cancel_progress <= 0.9 * slack / total + 1e-4, (cancel_progress, end_progress)

    final = job_server.client.get(f"/v1/jobs/{job['id']}").json()
    assert final["status"] == "cancelled" and final["result_ready"] is False and final["finished"] is not None
    assert_error(job_server.client.get(f"/v1/jobs/{job['id']}/result"), 409, "no_result")

    # the worker goes on with the next job
    nxt = submit_ok(job_server, motions[49], {"backend": "tiny", "width": 64, "height": 64, "steps": 2, "seed": 11})
    assert wait_job(job_server, nxt["id"])["status"] == "succeeded"
    assert download(job_server, nxt["id"], tmp_path)[1]["frames"] == 49


def test_cancel_queued_job_never_runs(job_server, motions):
    # every worker busy (one long job each), then one more: queued
    busy = [submit_ok(job_server, motions[49], {**LONG_TINY, "seed": 21 + 100 * k}) for k in range(job_server.replicas)]
    second = submit_ok(job_server, motions[30], {"backend": "preview", "width": 64, "height": 64, "seed": 22})
    for first in busy:
        wait_job(job_server, first["id"], check=lambda j: j["status"] == "running")
    queued = job_server.client.get(f"/v1/jobs/{second['id']}").json()
    assert queued["status"] == "queued" and queued["queue_position"] == 0

    reply = job_server.client.delete(f"/v1/jobs/{second['id']}")
    assert reply.status_code == 200
    assert reply.json()["status"] == "cancelled" and reply.json()["started"] is None

    for first in busy:
        assert job_server.client.delete(f"/v1/jobs/{first['id']}").status_code == 200
    for first in busy:
        assert wait_job(job_server, first["id"], timeout=10)["status"] == "cancelled"
    # the worker is idle again and the cancelled job was skipped
    deadline = time.monotonic() + 10
    while job_server.client.get("/v1/health").json()["running"] is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    after = job_server.client.get(f"/v1/jobs/{second['id']}").json()
    assert after["status"] == "cancelled" and after["started"] is None and after["result_ready"] is False
    statuses = [e["event"] for e in read_events(job_server, second["id"], timeout=10)]
    assert statuses == ["queued", "cancelled"], statuses
    assert job_server.client.get("/v1/health").json()["queued"] == 0


# -- 3. cache ----------------------------------------------------------------------------------------------


def test_identical_submission_is_served_from_cache(job_server, motions, tmp_path):
    params = {"backend": "preview", "width": 96, "height": 64, "seed": 31}
    first = submit_ok(job_server, motions[20], params)
    assert wait_job(job_server, first["id"])["status"] == "succeeded"
    content, _ = download(job_server, first["id"], tmp_path)

    again = submit_ok(job_server, motions[20], params)
    assert again["id"] != first["id"]
    assert again["status"] == "succeeded" and again["cached"] is True and again["result_ready"] is True
    assert again["progress"] == 1.0 and again["frames"] == 20
    assert download(job_server, again["id"], tmp_path)[0] == content
    assert read_events(job_server, again["id"], timeout=10)[-1]["event"] == "succeeded"

    other = submit_ok(job_server, motions[20], {**params, "seed": 32})  # other settings: rendered anew
    assert other["cached"] is False
    assert wait_job(job_server, other["id"])["status"] == "succeeded"


# -- 4. restart after kill -9 ------------------------------------------------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
def test_kill9_restart_keeps_results_fails_running_and_runs_queued(motions, tmp_path, executor):
    data = tmp_path / "data"
    first = Server(data, tmp_path / "first.log", executor=executor).start().wait_ready()
    second = None
    try:
        short = submit_ok(first, motions[20], {"backend": "preview", "width": 64, "height": 64})
        assert wait_job(first, short["id"])["status"] == "succeeded"
        content, _ = download(first, short["id"], tmp_path)
        # every worker busy with a long job, one more queued behind them
        longs = [submit_ok(first, motions[49], {**LONG_TINY, "seed": 41 + k}) for k in range(first.replicas)]
        queued = submit_ok(first, motions[30], {"backend": "preview", "width": 80, "height": 64})
        for long in longs:
            wait_job(first, long["id"], check=lambda j: j["phase"] == "denoising", timeout=120)
        assert first.client.get(f"/v1/jobs/{queued['id']}").json()["status"] == "queued"
        first.kill9()
        assert first.proc.returncode == -signal.SIGKILL

        second = Server(data, tmp_path / "second.log", executor=executor).start().wait_ready()
        jobs = {j["id"]: j for j in second.client.get("/v1/jobs").json()}
        assert {short["id"], queued["id"], *(long["id"] for long in longs)} <= set(jobs)  # nothing lost

        done = jobs[short["id"]]
        assert done["status"] == "succeeded" and done["result_ready"]
        assert download(second, short["id"], tmp_path)[0] == content

        for long in longs:
            failed = jobs[long["id"]]
            assert failed["status"] == "failed" and "server stopped" in failed["message"], failed
            assert_error(second.client.get(f"/v1/jobs/{long['id']}/result"), 409, "no_result")
            assert read_events(second, long["id"], timeout=10)[-1]["event"] == "failed"

        rerun = wait_job(second, queued["id"])
        assert rerun["status"] == "succeeded", rerun
        _, info = download(second, queued["id"], tmp_path)
        assert info["frames"] == 30 and tuple(info["size"]) == (80, 64)
        assert_healthy(second)
    finally:
        stop_both(first, second)


def stop_both(first: Server, second: Server | None) -> None:
    """End a restart test's two servers, whatever state the first was left in."""
    if first.proc.poll() is None:
        first.proc.kill()
    first.stop()
    if second is not None:
        second.stop()


@pytest.mark.parametrize(
    ("executor", "signum"),
    [("local", signal.SIGTERM), ("local", signal.SIGINT), pytest.param("ray", signal.SIGTERM, marks=needs_ray)],
)
def test_a_clean_stop_requeues_the_running_job_and_the_next_start_runs_it_again_in_order(
    motions, tmp_path, executor, signum
):
    data = tmp_path / "data"
    first = Server(data, tmp_path / "first.log", executor=executor).start().wait_ready()
    second = None
    try:
        # every worker busy with a job of a few seconds, one more queued behind them
        runs = [submit_ok(first, motions[20], {**RERUN_TINY, "seed": 51 + k}) for k in range(first.replicas)]
        queued = submit_ok(first, motions[30], {"backend": "preview", "width": 80, "height": 64})
        for run in runs:
            wait_job(first, run["id"], check=lambda j: j["phase"] == "denoising" and j["progress"] > 0, timeout=120)
        assert first.client.get(f"/v1/jobs/{queued['id']}").json()["status"] == "queued"
        first.client.close()
        stopping = time.monotonic()
        first.proc.send_signal(signum)  # Ctrl-C or a service manager's stop
        first.proc.wait(timeout=30)
        took = time.monotonic() - stopping
        assert first.proc.returncode != -signal.SIGKILL
        assert took < 3 + STOP_WAIT_S + 5, took  # open requests, the jobs' next step, the rest of the shutdown

        # what the stopped server left: the interrupted jobs queued again, with the reason; the queued one queued
        with closing(sqlite3.connect(data / "jobs.sqlite3")) as db:
            left = {row[0]: row[1:] for row in db.execute("SELECT id, status, message, progress FROM jobs")}
        for run in runs:
            status, message, progress = left[run["id"]]
            assert (status, progress) == ("queued", 0.0), (left, first.output())
            assert "interrupted by a server stop" in message and "again" in message, message
        assert left[queued["id"]][0] == "queued"

        second = Server(data, tmp_path / "second.log", executor=executor).start().wait_ready()
        ends = {run["id"]: wait_job(second, run["id"], timeout=120) for run in runs}
        after = wait_job(second, queued["id"], timeout=120)
        assert all(end["status"] == "succeeded" for end in ends.values()), ends
        assert after["status"] == "succeeded", after
        _, info = download(second, runs[0]["id"], tmp_path)
        assert info["frames"] == 20 and tuple(info["size"]) == (128, 128)
        if second.replicas == 1:  # in their original order: the interrupted job first
            assert ends[runs[0]["id"]]["finished"] <= after["started"], (ends, after)
        for run in runs:
            seen = read_events(second, run["id"], timeout=10)
            names = [e["event"] for e in seen]
            # ran, was interrupted and queued again (saying so), ran again from the start, succeeded
            assert names[0] == "queued" and names[-1] == "succeeded", names
            back = next(k for k, e in enumerate(seen) if k and e["event"] == "queued")
            assert "running" in names[1:back] and "running" in names[back:], names
            assert "interrupted by a server stop" in seen[back]["data"]["message"], seen[back]
            assert seen[back]["data"]["progress"] == 0.0
            again = seen[back + 1]["data"]
            assert again["status"] == "running" and again["progress"] == 0.0, again
            assert [e for e in names if e in TERMINAL] == ["succeeded"], names
        assert_healthy(second)
    finally:
        stop_both(first, second)


# -- 5. hostile inputs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("m.pkl", pickle.dumps({"joints": [[0.0, 0.0, 0.0]] * 24, "fps": 30})),
        ("m.npz", pickle.dumps({"joints": [[0.0, 0.0, 0.0]] * 24, "fps": 30})),
        ("m.json", pickle.dumps({"joints": 1}, protocol=0)),  # protocol 0 has no \x80 marker
    ],
)
def test_pickled_motion_is_refused(server, name, data):
    before = job_count(server)
    assert_error(submit(server.client, data, None, motion_name=name), 415, "unsupported_motion", "motion")
    assert job_count(server) == before
    assert_healthy(server)


def test_object_array_in_npz_is_refused(server, clip):
    arrays = motion_to_arrays(clip.slice(0, 10))
    arrays["joints"] = np.array([object()] * 3, dtype=object)  # stored as a pickle inside the .npy
    assert_error(submit(server.client, raw_npz(arrays), None), 422, "invalid_motion", "motion.joints")
    assert_healthy(server)


def test_declared_huge_body_is_refused_without_reading_it(server):
    head = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        "Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: 1073741824\r\n\r\n"
    )
    request = head.encode() + b"--xyz\r\n" + b"\0" * 100  # 1 GB declared, 108 bytes sent
    started = time.monotonic()
    status, headers, body = raw_http(server.port, request, timeout=10)
    assert time.monotonic() - started < 5, "the server waited for the body"
    assert status == 413, body
    assert json.loads(body)["error"]["code"] == "upload_too_large"
    assert_healthy(server)


def test_streamed_body_over_the_limit_is_refused(server):
    """No Content-Length (chunked): the body is cut off at the limit (64 MiB) and answered 413."""

    def body():
        yield b'--xyz\r\nContent-Disposition: form-data; name="motion"; filename="m.npz"\r\n\r\n'
        for _ in range(66):
            yield b"\0" * 2**20
        yield b"\r\n--xyz--\r\n"

    headers = {"Content-Type": "multipart/form-data; boundary=xyz"}
    response = server.client.post("/v1/jobs", content=body(), headers=headers)
    assert_error(response, 413, "upload_too_large")
    assert_healthy(server)


@pytest.mark.parametrize("side", [10_000, 50_000])
def test_image_bomb_header_is_refused(server, motions, side):
    response = submit(server.client, motions[20], None, reference=png_header_only(side, side))
    assert_error(response, 413, "image_too_large", "reference")
    assert_healthy(server)


def test_broken_image_is_refused(server, motions):
    assert_error(submit(server.client, motions[20], None, reference=b"not an image"), 415, "unsupported_image")
    assert_healthy(server)


def test_nan_joints_are_refused(server, clip):
    joints = clip.slice(0, 10).joints.astype(float)
    joints[3, 5, 1] = float("nan")
    text = json.dumps({"joints": joints.tolist(), "fps": 30})  # Python writes the NaN token
    assert "NaN" in text
    error = assert_error(submit(server.client, text.encode(), None, motion_name="m.json"), 422, "invalid_motion")
    assert error["field"] == "motion.joints"

    arrays = motion_to_arrays(clip.slice(0, 10))
    arrays["joints"] = joints.astype(np.float32)
    assert_error(submit(server.client, raw_npz(arrays), None), 422, "invalid_motion", "motion.joints")
    assert_healthy(server)


def test_wrong_joint_shape_is_refused(server, clip):
    joints = clip.slice(0, 10).joints[:, :23]
    text = json.dumps({"joints": joints.tolist(), "fps": 30}).encode()
    assert_error(submit(server.client, text, None, motion_name="m.json"), 422, "invalid_motion", "motion.joints")
    arrays = motion_to_arrays(clip.slice(0, 10))
    arrays["joints"] = np.ascontiguousarray(joints)
    assert_error(submit(server.client, raw_npz(arrays), None), 422, "invalid_motion", "motion.joints")
    assert_healthy(server)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/jobs/..%2F..%2Fjobs.sqlite3",
        "/v1/jobs/..%2F..%2Fjobs.sqlite3/result",
        "/v1/jobs/../../etc/passwd",
        "/v1/jobs/..%2f..%2f..%2f..%2fetc%2fpasswd/result",
        "/v1/jobs/%2e%2e/result",
        "/v1/jobs/%2e%2e%2fjobs.sqlite3/events",
        "/v1/jobs/" + "ab" * 16,
        "/v1/jobs/" + "ab" * 16 + "/result",
        "/v1/jobs/" + "ab" * 16 + "/events",
    ],
)
def test_path_like_job_ids_are_not_found(server, path):
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nConnection: close\r\n\r\n".encode()
    status, headers, body = raw_http(server.port, request)
    assert status == 404, body
    assert b"SQLite format" not in body and b"root:" not in body
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] in ("not_found", "job_not_found")
    assert_error(server.client.delete(f"/v1/jobs/{'ab' * 16}"), 404, "job_not_found")
    assert_healthy(server)


def test_cross_site_requests_are_refused(server, motions):
    before = job_count(server)
    evil = submit(server.client, motions[20], None, headers={"Origin": "https://evil.example"})
    assert_error(evil, 403, "cross_origin")
    site = submit(server.client, motions[20], None, headers={"Sec-Fetch-Site": "cross-site"})
    assert_error(site, 403, "cross_origin")
    assert_error(server.client.get("/v1/jobs", headers={"Origin": "https://evil.example"}), 403, "cross_origin")
    assert job_count(server) == before
    assert_healthy(server)


def test_rebinding_host_is_refused(server):
    evil = server.client.get("/v1/health", headers={"Host": f"evil.example:{server.port}"})
    assert_error(evil, 421, "bad_host")
    assert_error(server.client.get("/v1/jobs", headers={"Host": "evil.example"}), 421, "bad_host")
    for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}", f"[::1]:{server.port}"):
        assert server.client.get("/v1/health", headers={"Host": host}).status_code == 200, host
    assert_healthy(server)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"width": "abc"}, "params.width"),
        ({"steps": -1}, "params.steps"),
        ({"bogus": 1}, "params.bogus"),
        ({"backend": "nope"}, "params.backend"),
        ({"backend": "tiny", "width": 72, "height": 64}, "params.width"),  # not a multiple of 16
        ({"width": 100_000}, "params.width"),
    ],
)
def test_invalid_params_are_refused(server, motions, params, field):
    before = job_count(server)
    assert_error(submit(server.client, motions[20], params), 422, "invalid_params", field)
    assert job_count(server) == before
    assert_healthy(server)


def test_unavailable_backend_is_refused(server, motions):
    backends = {b["name"]: b for b in server.client.get("/v1/backends").json()}
    assert backends["preview"]["available"] and backends["tiny"]["available"]
    assert backends["mvdit-7b"]["available"] is False and "--model-dir" in backends["mvdit-7b"]["reason"]
    assert backends["preview"]["default"] is True
    error = assert_error(submit(server.client, motions[20], {"backend": "mvdit-7b"}), 409, "backend_unavailable")
    assert error["field"] == "params.backend"
    assert_healthy(server)


# -- 6. token ----------------------------------------------------------------------------------------------


def test_public_bind_without_token_refuses_to_start(tmp_path):
    srv = Server(tmp_path / "data", tmp_path / "server.log", host="0.0.0.0").start()
    try:
        rc = srv.proc.wait(timeout=STARTUP_S)
    finally:
        srv.stop()
    assert rc != 0
    assert "token" in srv.output().lower(), srv.output()


def test_token_is_required(tmp_path):
    srv = Server(tmp_path / "data", tmp_path / "server.log", token="secret").start()
    try:
        srv.wait_ready()
        plain = httpx.Client(base_url=srv.url, timeout=10)
        assert_error(plain.get("/v1/health"), 401, "unauthorized")
        assert_error(plain.get("/v1/jobs"), 401, "unauthorized")
        assert_error(plain.post("/v1/jobs", files={"motion": ("m.npz", b"PK")}), 401, "unauthorized")
        assert_error(plain.get("/v1/health", headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
        assert_error(plain.get("/v1/health", headers={"Authorization": "secret"}), 401, "unauthorized")
        plain.close()
        assert srv.client.get("/v1/health").status_code == 200  # Authorization: Bearer secret
        assert srv.client.get("/v1/jobs").status_code == 200
    finally:
        srv.stop()


# -- 7. disconnect -----------------------------------------------------------------------------------------


def test_closing_the_event_stream_does_not_stop_the_job(job_server, motions, tmp_path):
    job = submit_ok(job_server, motions[49], {"backend": "tiny", "width": 64, "height": 64, "steps": 300, "seed": 71})
    with job_server.client.stream("GET", f"/v1/jobs/{job['id']}/events", timeout=30) as response:
        stream = sse_events(response)
        first_two = [next(stream), next(stream)]
    assert [e["id"] for e in first_two] == [1, 2]
    assert job_server.client.get(f"/v1/jobs/{job['id']}").json()["status"] in ("queued", "running")
    done = wait_job(job_server, job["id"])
    assert done["status"] == "succeeded", done
    _, info = download(job_server, job["id"], tmp_path)
    assert info["frames"] == 49
    assert_healthy(job_server)


# -- 8. docs -----------------------------------------------------------------------------------------------


def test_openapi_docs(server):
    docs = server.client.get("/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert "swagger" in docs.text.lower()
    spec = server.client.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    assert "/v1/jobs" in paths and "post" in paths["/v1/jobs"] and "get" in paths["/v1/jobs"]
    assert {"/v1/jobs/{job_id}", "/v1/jobs/{job_id}/result", "/v1/jobs/{job_id}/events"} <= set(paths)
