"""The server under bad conditions: a store that refuses writes for a while, a full disk, a read-only data
folder, many requests, identical submissions, slow clients, a killed server's leftovers, retention.

Real ``mtvcrafter serve`` processes on loopback; the conditions are real too: a file size limit set on the
server process (``prlimit``: every write past it fails, as on a full disk), a folder's mode, a descriptor
limit, raw sockets.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
resource = pytest.importorskip("resource")  # file size and descriptor limits: POSIX
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from conftest import EXAMPLES, REFERENCE, ROOT, SMALL, TERMINAL, ServeProcess  # noqa: E402

from mtvcrafter.motion import load_motion, save_motion  # noqa: E402
from mtvcrafter_server.settings import Settings, default_data_dir  # noqa: E402

#: a tiny-model job that denoises for some seconds on the CPU (10 to 20 ms a step at 128×128), then decodes
#: for some more
SLOW_TINY = {"backend": "tiny", "width": 128, "height": 128, "steps": 300}
#: one that runs until it is cancelled or killed
ENDLESS_TINY = {**SLOW_TINY, "width": 256, "height": 256, "steps": 1000}
#: the short deadlines of the shared server (seconds)
HEADER_S, BODY_S, KEEP_ALIVE_S = 1.5, 2.0, 1.0
#: clients drop an idle connection before the server does (no request sent as the server closes it)
CLIENT_LIMITS = httpx.Limits(keepalive_expiry=KEEP_ALIVE_S / 2)
#: reader connections the store keeps at most (jobs.store.READERS), plus its writer
CONNECTIONS = 8 + 1


# -- servers -----------------------------------------------------------------------------------------------


def _drop_file_permission_override() -> None:
    """In the server process: as root, give up the capabilities that ignore file modes (CAP_DAC_OVERRIDE,
    CAP_DAC_READ_SEARCH) from the bounding set, so that a read-only folder is read-only to the server as to
    any user."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


class Server(ServeProcess):
    """One ``mtvcrafter serve`` subprocess, with at most ``nofile`` file descriptors (0: no limit) and a file mode
    that holds for it as for any user."""

    client_options = {"limits": CLIENT_LIMITS}

    def __init__(self, data_dir: Path | None, log: Path, env: dict[str, str] | None = None, nofile: int = 0):
        super().__init__(data_dir, log, env=env)
        self.nofile = nofile

    def preexec(self) -> None:
        if self.nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))
        _drop_file_permission_override()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server with 256 file descriptors at most and short deadlines on slow clients."""
    folder = tmp_path_factory.mktemp("reliability")
    env = {
        "MTVCRAFTER_HEADER_TIMEOUT_S": str(HEADER_S),
        "MTVCRAFTER_BODY_TIMEOUT_S": str(BODY_S),
        "MTVCRAFTER_KEEP_ALIVE_S": str(KEEP_ALIVE_S),
    }
    srv = Server(folder / "data", folder / "server.log", env=env, nofile=256).start().wait_ready()
    try:
        yield srv
    finally:
        srv.stop()


#: the tests that set a limit on the running server (Linux's prlimit)
needs_prlimit = pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="sets limits with prlimit (Linux)")


class FileSizeLimit:
    """While inside: every write of the server process (and of the programs it starts) past 1 byte of a
    file fails (EFBIG), as every write does on a full disk."""

    def __init__(self, pid: int):
        self.pid = pid

    def __enter__(self):
        self.before = resource.prlimit(self.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(self.pid, resource.RLIMIT_FSIZE, (1, self.before[1]))
        return self

    def __exit__(self, *exc):
        resource.prlimit(self.pid, resource.RLIMIT_FSIZE, self.before)


# -- inputs and client helpers -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def motion(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("motion") / "m.npz"
    save_motion(load_motion(EXAMPLES / "sampled_data.pkl", clip=0).slice(0, 20), path)
    return path.read_bytes()


def submit(client, motion: bytes, params: dict):
    files = {"motion": ("m.npz", motion, "application/octet-stream"), "reference": ("ref.png", REFERENCE)}
    return client.post("/v1/jobs", files=files, data={"params": json.dumps(params)})


def submit_ok(server: Server, motion: bytes, params: dict) -> dict:
    response = submit(server.client, motion, params)
    assert response.status_code == 202, f"{response.status_code} {response.text}\n{server.output()}"
    return response.json()


def wait_for(server: Server, check, what: str, timeout: float = 60.0, every: float = 0.05):
    """Poll ``check()`` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s\n{server.output()}")
        time.sleep(every)


def job_state(server: Server, job_id: str) -> dict:
    return server.client.get(f"/v1/jobs/{job_id}").json()


def wait_job(server: Server, job_id: str, timeout: float = 120.0) -> dict:
    return wait_for(
        server,
        lambda: (j := job_state(server, job_id))["status"] in TERMINAL and j,
        f"job {job_id} to end",
        timeout,
    )


def health(server: Server) -> httpx.Response:
    return server.client.get("/v1/health")


def assert_healthy(server: Server) -> dict:
    response = health(server)
    assert response.status_code == 200, f"{response.text}\n{server.output()}"
    body = response.json()
    assert body["status"] == "ok" and body["worker"] in ("idle", "running") and body["storage"] is None, body
    return body


def error_of(response, status: int, code: str) -> str:
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    error = response.json()["error"]
    assert error["code"] == code, error
    return error["message"]


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# -- 1. the store refuses writes for a while -----------------------------------------------------------------


@needs_prlimit
def test_a_store_that_refuses_writes_for_a_while_does_not_end_the_worker(server, motion):
    job = submit_ok(server, motion, {**SLOW_TINY, "seed": 101})
    wait_for(server, lambda: job_state(server, job["id"])["phase"] == "denoising", "denoising")
    with FileSizeLimit(server.pid):
        refused = wait_for(server, lambda: (r := health(server)).status_code == 503 and r, "health to say so", 10)
        body = refused.json()
        assert body["status"] == "degraded" and "jobs.sqlite3" in body["storage"], body
        assert job_state(server, job["id"])["status"] == "running"
        time.sleep(1.0)  # progress the store cannot take meanwhile
    done = wait_job(server, job["id"])
    assert done["status"] == "succeeded", done  # its lost progress events did not fail it
    assert [e for e in events(server, job["id"]) if e in TERMINAL] == ["succeeded"]
    wait_for(server, lambda: health(server).status_code == 200, "health to recover", 10)
    assert_healthy(server)
    # the worker goes on
    nxt = submit_ok(server, motion, {**SMALL, "seed": 102})
    assert wait_job(server, nxt["id"])["status"] == "succeeded"


@needs_prlimit
def test_a_full_disk_while_a_job_writes_its_video_fails_that_job_alone_with_the_reason(server, motion):
    tmp = server.data_dir / "tmp"
    job = submit_ok(server, motion, {**SLOW_TINY, "steps": 60, "seed": 111})
    wait_for(server, lambda: job_state(server, job["id"])["phase"] == "denoising", "denoising")
    with FileSizeLimit(server.pid):
        # the video cannot be written, and the job's failure cannot be recorded: the worker waits, and says so
        waiting = wait_for(
            server, lambda: (r := health(server)).json().get("worker") == "waiting for storage" and r, "the wait"
        )
        assert waiting.status_code == 503 and "jobs.sqlite3" in waiting.json()["worker_error"], waiting.json()
    failed = wait_job(server, job["id"], timeout=30)
    assert failed["status"] == "failed", failed
    assert failed["message"].startswith(f"no room to write in {server.data_dir}"), failed["message"]
    assert "Broken pipe" not in failed["message"] and "--data-dir" in failed["message"]
    assert files_under(tmp) == []  # no partial video left
    wait_for(server, lambda: health(server).status_code == 200, "health to recover", 10)
    nxt = submit_ok(server, motion, {**SMALL, "seed": 112})
    assert wait_job(server, nxt["id"])["status"] == "succeeded"


def events(server: Server, job_id: str) -> list[str]:
    with server.client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=30) as response:
        return [line[7:] for line in response.iter_lines() if line.startswith("event: ")]


def test_health_says_when_the_worker_is_dead(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from mtvcrafter_server.app import create_app

    for name in [n for n in os.environ if n.startswith("MTVCRAFTER_")]:
        monkeypatch.delenv(name)
    app = create_app(Settings(data_dir=tmp_path / "data"))
    with TestClient(app, base_url="http://localhost") as client:
        assert client.get("/v1/health").json()["worker"] == "idle"
        app.state.executor.stop()  # the worker thread ends, as it would if anything ever killed it
        response = client.get("/v1/health")
        assert response.status_code == 503
        body = response.json()
        assert (body["status"], body["worker"]) == ("degraded", "dead")
        assert "restart the server" in body["worker_error"]


class HeldJobs:
    """An executor of the server's own (the local worker's queue, store and stop) whose jobs' code is held: a job
    reports once, then waits until ``release`` is set (``cooperative``: until it is asked to stop, as a render
    asks between two steps) and ends cancelled."""

    def __init__(self, folder: Path, cooperative: bool):
        from mtvcrafter_server.jobs.executor import QueueExecutor
        from mtvcrafter_server.jobs.extraction import Extractor
        from mtvcrafter_server.jobs.files import DataFolder
        from mtvcrafter_server.jobs.running import Outcome
        from mtvcrafter_server.jobs.store import CANCELLED, JobStore

        self.release, self.started = threading.Event(), threading.Event()
        held = self

        class Held(QueueExecutor):
            def _execute(self, worker, job, report):
                report("loading", 0.1)
                held.started.set()
                while not held.release.wait(0.01):
                    if cooperative and self._cancelled(job.id):
                        break
                return Outcome(CANCELLED, "cancelled")

        settings = Settings(data_dir=folder)
        files = DataFolder(settings.data_dir)
        self.store = JobStore(files.root / "jobs.sqlite3")
        self.executor = Held(settings, self.store, files, Extractor(settings))

    def statuses(self, job_id: str) -> list[str]:
        return [event["status"] for _, event in self.store.events_after(job_id, 0)]


def test_a_clean_stop_waits_a_bounded_time_for_a_job_that_does_not_stop_and_queues_it_again(tmp_path, monkeypatch):
    from mtvcrafter_server.jobs import executor as executors

    for name in [n for n in os.environ if n.startswith("MTVCRAFTER_")]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(executors, "STOP_WAIT_S", 0.5)
    jobs = HeldJobs(tmp_path / "data", cooperative=False)  # its code never asks whether to stop (a model loading)
    store, executor = jobs.store, jobs.executor
    stuck, waiting = store.create("tiny", {}, "a" * 64), store.create("preview", {}, "b" * 64)
    executor.start()
    for job in (stuck, waiting):
        executor.submit(job.id)
    assert jobs.started.wait(30)
    stopping = time.monotonic()
    executor.stop()
    assert 0.4 < time.monotonic() - stopping < 2.0  # the wait, bounded
    job = store.get(stuck.id)
    assert (job.status, job.phase, job.progress, job.started) == ("queued", "queued", 0.0, None)
    assert job.message == executors.INTERRUPTED
    assert store.queued_ids() == [stuck.id, waiting.id]  # in their original order
    jobs.release.set()  # its code ends after all: the job stays queued, queued again once
    executor.workers[0].thread.join(10)
    assert store.get(stuck.id).status == "queued"
    assert jobs.statuses(stuck.id) == ["queued", "running", "running", "queued"]
    assert jobs.statuses(waiting.id) == ["queued"]
    store.close()


def test_a_job_a_client_cancelled_is_cancelled_not_queued_again_by_a_clean_stop(tmp_path, monkeypatch):
    for name in [n for n in os.environ if n.startswith("MTVCRAFTER_")]:
        monkeypatch.delenv(name)
    jobs = HeldJobs(tmp_path / "data", cooperative=True)
    store, executor = jobs.store, jobs.executor
    job = store.create("tiny", {}, "a" * 64)
    executor.start()
    executor.submit(job.id)
    assert jobs.started.wait(30)
    executor.cancel(job.id)
    executor.stop()
    assert store.get(job.id).status == "cancelled"
    assert jobs.statuses(job.id)[-1] == "cancelled" and "queued" not in jobs.statuses(job.id)[1:]
    store.close()


# -- 2. file descriptors --------------------------------------------------------------------------------------


def open_files(pid: int) -> tuple[int, int]:
    """(all descriptors, those of the job database) of a process."""
    names = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            names.append(os.readlink(fd))
        except OSError:
            pass
    return len(names), sum("jobs.sqlite3" in n for n in names)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc")
def test_request_threads_do_not_leak_database_connections(server, motion):
    job = submit_ok(server, motion, {**SMALL, "seed": 201})
    wait_job(server, job["id"])
    paths = ["/v1/health", "/v1/jobs?limit=500", f"/v1/jobs/{job['id']}"]

    def burst() -> list[int]:
        limits = httpx.Limits(max_connections=40, keepalive_expiry=CLIENT_LIMITS.keepalive_expiry)
        with httpx.Client(base_url=server.url, timeout=30, limits=limits) as client:
            with ThreadPoolExecutor(40) as pool:
                return list(pool.map(lambda i: client.get(paths[i % 3]).status_code, range(200)))

    total_before, _ = open_files(server.pid)
    seen = []
    for round_ in range(2):
        if round_:
            time.sleep(10.5)  # the request threads of the last burst retire (anyio: after 10 s idle)
        assert set(burst()) == {200}, server.output()
        time.sleep(KEEP_ALIVE_S + 0.5)  # the burst's connections closed
        seen.append(open_files(server.pid))
    # a bounded number of connections (each: the database file and its WAL; one -shm for all), however many
    # threads served, burst after burst; and nothing else left open
    assert all(db <= 2 * CONNECTIONS + 1 for _, db in seen), seen
    assert all(total <= total_before + 2 * CONNECTIONS + 4 for total, _ in seen), (total_before, seen)


# -- 5. identical submissions ------------------------------------------------------------------------------------


def test_identical_submissions_while_the_first_is_queued_or_running_render_once(server, motion):
    blocker = submit_ok(server, motion, {**ENDLESS_TINY, "seed": 501})
    wait_for(server, lambda: job_state(server, blocker["id"])["status"] == "running", "the blocker to run")
    before = {j["id"] for j in server.client.get("/v1/jobs", params={"limit": 500}).json()}
    inputs = [{**SMALL, "seed": 510 + i % 10} for i in range(50)]  # 10 distinct inputs, 5 times each
    with ThreadPoolExecutor(10) as pool:
        replies = list(pool.map(lambda p: submit(server.client, motion, p), inputs))
    assert {r.status_code for r in replies} == {202}, [r.text for r in replies if r.status_code != 202]
    ids: dict[int, set[str]] = {}
    for params, reply in zip(inputs, replies, strict=True):
        ids.setdefault(params["seed"], set()).add(reply.json()["id"])
    assert all(len(same) == 1 for same in ids.values()), ids  # each submission joined the first
    jobs = {i for same in ids.values() for i in same}
    assert len(jobs) == 10
    assert all(r.json()["status"] == "queued" and not r.json()["cached"] for r in replies)
    assert server.client.delete(f"/v1/jobs/{blocker['id']}").status_code == 200
    assert all(wait_job(server, i)["status"] == "succeeded" for i in jobs)
    after = {j["id"] for j in server.client.get("/v1/jobs", params={"limit": 500}).json()}
    assert after - before == jobs  # 10 renders for 50 submissions
    job_dirs = {p.name for p in (server.data_dir / "jobs").iterdir()}
    assert job_dirs == after  # no inputs kept for the submissions that joined


# -- 6. storage errors -----------------------------------------------------------------------------------------


@needs_prlimit
def test_a_full_disk_at_submit_is_507_naming_the_folder_and_leaves_no_files(server, motion):
    data = server.data_dir
    jobs_before = files_under(data / "jobs")
    with FileSizeLimit(server.pid):
        message = error_of(submit(server.client, motion, {**SMALL, "seed": 601}), 507, "insufficient_storage")
        assert message.startswith(f"no room to write in {data}") and "--keep-days" in message, message
        assert files_under(data / "tmp") == [] and files_under(data / "jobs") == jobs_before
    assert submit(server.client, motion, {**SMALL, "seed": 601}).status_code == 202


def test_a_read_only_jobs_folder_is_503_naming_it_and_health_says_so(server, motion):
    jobs = server.data_dir / "jobs"
    mode = jobs.stat().st_mode
    jobs.chmod(0o555)
    try:
        message = error_of(submit(server.client, motion, {**SMALL, "seed": 611}), 503, "storage_not_writable")
        assert message.startswith(f"the server may not write in {jobs} ") and "writable" in message, message
        state = health(server)
        assert state.status_code == 503 and str(jobs) in state.json()["storage"], state.json()
        assert files_under(server.data_dir / "tmp") == []
    finally:
        jobs.chmod(mode)
    assert submit(server.client, motion, {**SMALL, "seed": 611}).status_code == 202
    assert_healthy(server)


def test_what_a_killed_server_left_behind_is_removed_at_start(tmp_path, motion):
    data = tmp_path / "data"
    first = Server(data, tmp_path / "first.log").start().wait_ready()
    try:
        done = submit_ok(first, motion, {**SMALL, "seed": 621})
        wait_job(first, done["id"])
        running = submit_ok(first, motion, {**ENDLESS_TINY, "seed": 622})
        wait_for(first, lambda: job_state(first, running["id"])["phase"] == "denoising", "denoising")
    finally:
        first.stop(kill=True)
    leftovers = [
        data / "tmp" / f".{running['id']}.{first.pid}.part.mp4",  # a video being encoded
        data / "tmp" / "tmpk2x8_a1b" / "upload.npz",  # a request's scratch folder
        data / "jobs" / ("0" * 32) / "motion.npz",  # the inputs of a submit cut short
        data / "results" / ("f" * 64 + ".mp4"),  # the video of a job cut short before it ended
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    second = Server(data, tmp_path / "second.log").start().wait_ready()
    try:
        assert not any(p.exists() for p in leftovers), [str(p) for p in leftovers if p.exists()]
        assert files_under(data / "tmp") == []
        assert {p.name for p in (data / "jobs").iterdir()} == {done["id"], running["id"]}
        assert job_state(second, running["id"])["status"] == "failed"
        assert second.client.get(f"/v1/jobs/{done['id']}/result").status_code == 200
        assert_healthy(second)
    finally:
        second.stop()


def test_retention_deletes_old_jobs_periodically_and_beyond_a_size_at_start(tmp_path, motion):
    data = tmp_path / "data"
    days = 3.0 / 86_400  # 3 s
    env = {"MTVCRAFTER_KEEP_DAYS": f"{days:.10f}", "MTVCRAFTER_CLEANUP_INTERVAL_S": "0.5"}
    srv = Server(data, tmp_path / "days.log", env=env).start().wait_ready()
    try:
        job = submit_ok(srv, motion, {**SMALL, "seed": 631})
        assert wait_job(srv, job["id"])["status"] == "succeeded"
        assert len(list((data / "results").iterdir())) == 1 and (data / "jobs" / job["id"]).is_dir()
        wait_for(srv, lambda: srv.client.get(f"/v1/jobs/{job['id']}").status_code == 404, "the deletion", 15, 0.2)
        assert srv.client.get(f"/v1/jobs/{job['id']}/events").status_code == 404
        assert files_under(data / "results") == [] and files_under(data / "jobs") == []
        made = [submit_ok(srv, motion, {**SMALL, "seed": 632 + i})["id"] for i in range(3)]
        for job_id in made:
            wait_job(srv, job_id)
    finally:
        srv.stop()
    # at most the newest job's inputs and result: the two older ones go at start-up
    newest = made[-1]
    result = max((data / "results").iterdir(), key=lambda p: p.stat().st_mtime)
    keep = sum(p.stat().st_size for p in (data / "jobs" / newest).iterdir()) + result.stat().st_size
    srv = (
        Server(data, tmp_path / "gb.log", env={"MTVCRAFTER_KEEP_GB": f"{(keep + 100) / 1e9:.12f}"}).start().wait_ready()
    )
    try:
        assert [j["id"] for j in srv.client.get("/v1/jobs").json()] == [newest]
        assert [p.name for p in (data / "results").iterdir()] == [result.name]
        assert [p.name for p in (data / "jobs").iterdir()] == [newest]
        assert srv.client.get(f"/v1/jobs/{newest}/result").status_code == 200
    finally:
        srv.stop()


# -- 7. slow clients -------------------------------------------------------------------------------------------


def closed_within(sock: socket.socket, limit: float, trickle: bytes | None = None, every: float = 0.25) -> float:
    """Seconds until the server closes ``sock`` (sending one byte of ``trickle`` every ``every`` s meanwhile);
    fails past ``limit``."""
    start = time.monotonic()
    sock.settimeout(every)
    sent = 0
    while time.monotonic() - start < limit:
        try:
            if trickle is not None:
                sock.sendall(trickle[sent % len(trickle) : sent % len(trickle) + 1])
                sent += 1
            data = sock.recv(65536)
            if data == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - start
    raise AssertionError(f"the server kept the connection open for {limit} s")


def test_slow_clients_are_cut_off(server):
    slack = 1.5
    # headers sent one byte at a time
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert closed_within(sock, HEADER_S + slack, trickle=b"X-Slow: abcdefghijklmnopqrstuvwxyz") >= HEADER_S - 0.1
    # a connection that sends nothing
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        closed_within(sock, HEADER_S + slack)
    # a body sent slowly: 408, then closed
    head = (
        b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: 100000\r\n\r\n--b\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head)
        start = time.monotonic()
        sock.settimeout(0.2)
        answer = b""
        while time.monotonic() - start < BODY_S + slack and b"\r\n\r\n" not in answer:
            try:
                sock.sendall(b"x" * 10)
                answer += sock.recv(65536)
            except TimeoutError:
                continue
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        body = answer.partition(b"\r\n\r\n")[2]
        sock.settimeout(2)
        while len(body) < int(answer.lower().split(b"content-length: ")[1].split(b"\r\n")[0]):
            body += sock.recv(65536)
        assert json.loads(body)["error"]["code"] == "request_timeout"
        closed_within(sock, slack)
    # kept alive: idle after a response, closed after keep_alive_s; the next request's head is bounded too
    request = b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    for trickle in (None, b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: abcdefghijklmnopqrstuvwxyz"):
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(request)
            sock.settimeout(5)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
            closed_within(sock, (KEEP_ALIVE_S if trickle is None else HEADER_S) + slack, trickle=trickle)
    assert_healthy(server)


# -- the data folder -------------------------------------------------------------------------------------------


def test_the_default_data_folder_is_the_users_data_folder_by_the_platforms_convention(tmp_path):
    home = {"HOME": "/home/ann"}
    assert default_data_dir("linux", home) == Path("/home/ann/.local/share/mtvcrafter")
    assert default_data_dir("linux", {**home, "XDG_DATA_HOME": "/data/ann"}) == Path("/data/ann/mtvcrafter")
    assert default_data_dir("linux", {**home, "XDG_DATA_HOME": "relative"}) == Path("/home/ann/.local/share/mtvcrafter")
    assert default_data_dir("darwin", home) == Path("/home/ann/Library/Application Support/mtvcrafter")
    windows = {"USERPROFILE": "C:/Users/ann", "LOCALAPPDATA": "C:/Users/ann/AppData/Local"}
    assert default_data_dir("win32", windows) == Path("C:/Users/ann/AppData/Local/mtvcrafter")

    # a server started with no --data-dir and no MTVCRAFTER_DATA_DIR: there, and it says so
    existed = (ROOT / "mtvcrafter-data").exists()
    env = {"HOME": str(tmp_path / "home"), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    srv = Server(None, tmp_path / "server.log", env=env).start().wait_ready()
    try:
        folder = tmp_path / "xdg" / "mtvcrafter"
        assert (folder / "jobs.sqlite3").is_file()
        assert f"data folder: {folder}" in srv.output()
    finally:
        srv.stop()
    assert (ROOT / "mtvcrafter-data").exists() == existed  # nothing made in the working directory


def test_a_failed_jobs_message_names_files_not_the_servers_folders(tmp_path):
    """What a job's failure says (read by any client) keeps the file's name and drops the server's folders."""
    from mtvcrafter_server.paths import hide_server_paths, server_folders
    from mtvcrafter_server.settings import Settings

    settings = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "models")
    message = (
        f"OSError: cannot read {tmp_path / 'models' / 'MV-DiT' / 'Wan-2-1' / 'a.safetensors'} (in {tmp_path}/data)"
    )
    shown = hide_server_paths(message, server_folders(settings))
    assert str(tmp_path) not in shown and "a.safetensors" in shown
