"""Jobs on Ray replicas (``mtvcrafter serve --executor ray``): a real server subprocess that starts its own Ray
instance on this machine with two logical GPUs, two replicas on them (models on the CPU), and a local-executor
server with the same models to compare with.

What a user sees: two jobs run at once and a third waits its turn, with the very bytes the local executor makes;
a cancel ends a running job within a step and frees its replica for the next job; a replica killed mid-job fails
that job alone and is replaced; tokenize and extraction answer as the local executor does while the API process
never loads the models; Ray's own ports have no dashboard and refuse a process without the server's token.
(The job tests of ``test_server.py`` run against both executors too.)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_server import (
    LONG_TINY,
    TERMINAL,
    Server,
    download,
    needs_ray,
    sse_events,
    step_of,
    submit_ok,
    wait_job,
)

pytest.importorskip("fastapi")
pytest.importorskip("torch")
pytestmark = needs_ray

from mtvcrafter.motion import load_motion, save_motion  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
#: a tiny-model job of about a second on one core, once its replica has loaded the model
SHORT_TINY = {"backend": "tiny", "width": 64, "height": 64, "steps": 8}


# -- the servers ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A tiny random 4DMoT checkpoint, the stand-in NLF model and a video of a dancing figure."""
    import torch

    from mtvcrafter.extract import figure_video, write_standin_model, write_test_video
    from mtvcrafter.motion import NormStats
    from mtvcrafter.tokenizer import FourDMoT, MotionTokenizer, TokenizerConfig

    folder = tmp_path_factory.mktemp("ray-models")
    torch.manual_seed(0)
    MotionTokenizer(FourDMoT(TokenizerConfig.tiny()).eval(), NormStats.official()).save_pretrained(folder / "4dmot")
    figures = figure_video(frames=24, size=(64, 64), fps=25)
    return {
        "tokenizer": folder / "4dmot",
        "nlf": write_standin_model(folder / "nlf-standin.torchscript", mode="figures"),
        "dance": write_test_video(folder / "dance.mp4", figures.frames, figures.fps),
    }


def model_options(models: dict[str, Path]) -> tuple[str, ...]:
    return ("--tokenizer", str(models["tokenizer"]), "--nlf", str(models["nlf"]))


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """The Ray server's home folder (where Ray would write a token it made up)."""
    return tmp_path_factory.mktemp("ray-home")


@pytest.fixture(scope="module")
def ray_server(models, home, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ray-server")
    srv = Server(
        folder / "data", folder / "server.log", *model_options(models), executor="ray", env={"HOME": str(home)}
    )
    try:
        yield srv.start().wait_ready()
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def local_server(models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("local-server")
    srv = Server(folder / "data", folder / "server.log", *model_options(models))
    try:
        yield srv.start().wait_ready()
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def clip():
    return load_motion(EXAMPLES / "sampled_data.pkl", clip=0)


def npz(motion, folder: Path, name: str) -> bytes:
    save_motion(motion, folder / name)
    return (folder / name).read_bytes()


# -- processes, from /proc --------------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (its children, theirs, …)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def title(pid: int) -> str:
    """What ``ps`` shows of a process (Ray names its workers ``ray::JobReplica``, ``ray::JobReplica.run`` while
    running a job)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def replica_processes(server: Server) -> dict[int, str]:
    return {p: t for p in descendants(server.proc.pid) if (t := title(p)).startswith("ray::JobReplica")}


def wait_for(check, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s"
        time.sleep(0.05)
    return value


def listening(pids: list[int]) -> dict[tuple[str, int], int]:
    """The TCP sockets the processes ``pids`` listen on: (address to reach it at, port) → pid."""
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:
            continue
    found = {}
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            raw = b"".join(raw[k : k + 4][::-1] for k in range(0, len(raw), 4))  # the kernel's word order
            host = socket.inet_ntop(family, raw)
            host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
            found[(host, int(port, 16))] = inodes[fields[9]]
    return found


def plain_http(host: str, port: int) -> bytes:
    """What a port answers to a plain ``GET /`` (the first bytes)."""
    try:
        with socket.create_connection((host, port), timeout=3) as sock:
            sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            return sock.recv(200)
    except OSError:
        return b""


# -- the tests --------------------------------------------------------------------------------------------


def test_two_replicas_run_two_jobs_at_once_the_third_waits_and_the_videos_match_the_local_executor(
    ray_server, local_server, clip, tmp_path
):
    motions = [npz(clip.slice(k, k + 49), tmp_path, f"m{k}.npz") for k in range(3)]
    submitted = time.monotonic()
    jobs = [submit_ok(ray_server, m, {**SHORT_TINY, "seed": 7}) for m in motions]
    # the third is queued while the first two run, first in line
    third = wait_job(ray_server, jobs[2]["id"], check=lambda j: j["status"] != "queued" or j["queue_position"] == 0)
    running = [ray_server.client.get(f"/v1/jobs/{j['id']}").json()["status"] for j in jobs[:2]]
    assert third["status"] == "queued" and running == ["running", "running"], (third, running)
    done = [wait_job(ray_server, j["id"], timeout=180) for j in jobs]
    assert [d["status"] for d in done] == ["succeeded"] * 3, done
    a, b, c = done
    assert a["started"] < b["finished"] and b["started"] < a["finished"], "the first two did not run at once"
    assert c["started"] >= min(a["finished"], b["finished"]) - 0.05, "the third started before a replica was free"
    took = time.monotonic() - submitted

    # the same three jobs on the local executor: the same bytes
    local = [submit_ok(local_server, m, {**SHORT_TINY, "seed": 7}) for m in motions]
    for mine, theirs in zip(done, local, strict=True):
        assert wait_job(local_server, theirs["id"], timeout=180)["status"] == "succeeded"
        video, info = download(ray_server, mine["id"], tmp_path)
        assert info["frames"] == 49 and tuple(info["size"]) == (64, 64)
        assert video == download(local_server, theirs["id"], tmp_path)[0]
    print(f"three jobs on two replicas: {took:.1f} s (the first job of each replica loads its model)")


ACTIVE = ("queued", "running")


@pytest.fixture(autouse=True)
def no_job_left_running(request):
    """A test that fails half-way leaves no job on the shared Ray server's replicas for the next test."""
    yield
    if "ray_server" not in request.fixturenames:
        return
    server = request.getfixturevalue("ray_server")
    active = [j["id"] for j in server.client.get("/v1/jobs", params={"limit": 100}).json() if j["status"] in ACTIVE]
    for job_id in active:
        server.client.delete(f"/v1/jobs/{job_id}")
    for job_id in active:
        wait_job(server, job_id, timeout=60)


def test_a_cancel_ends_a_running_job_within_a_step_and_its_replica_takes_the_next_job(ray_server, clip, tmp_path):
    motion = npz(clip.slice(0, 49), tmp_path, "m.npz")
    first, other = (submit_ok(ray_server, motion, {**LONG_TINY, "seed": s}) for s in (51, 52))  # both replicas busy
    wait_job(ray_server, other["id"], check=lambda j: j["phase"] == "denoising", timeout=120)
    seen: list[tuple[float, int]] = []
    asked = ended = last = None
    with ray_server.client.stream("GET", f"/v1/jobs/{first['id']}/events", timeout=60) as response:
        for event in sse_events(response):
            if (step := step_of(event)) is not None:
                seen.append((time.monotonic(), step))
            if len(seen) == 3:
                asked = time.monotonic()
                # "running" (cancelling at its next step), or already "cancelled" when the replica's next step came
                # before the answer: a tiny step takes milliseconds
                assert ray_server.client.delete(f"/v1/jobs/{first['id']}").json()["status"] in ("running", "cancelled")
            if event["event"] in TERMINAL:
                ended, last = time.monotonic(), event
    assert asked is not None and last["event"] == "cancelled", (seen, last)
    at_cancel = max(s for t, s in seen if t <= asked)
    assert max(s for _, s in seen) - at_cancel <= 2, f"ran {max(s for _, s in seen) - at_cancel} steps after the cancel"
    assert ended - asked < 3.0, f"cancelled {ended - asked:.1f} s after DELETE"

    # the next job runs at once, on the freed replica: the other one is still busy
    nxt = submit_ok(ray_server, motion, {**SHORT_TINY, "seed": 53})
    assert wait_job(ray_server, nxt["id"], timeout=60)["status"] == "succeeded"
    assert ray_server.client.get(f"/v1/jobs/{other['id']}").json()["status"] == "running"
    assert download(ray_server, nxt["id"], tmp_path)[1]["frames"] == 49
    ray_server.client.delete(f"/v1/jobs/{other['id']}")
    assert wait_job(ray_server, other["id"], timeout=10)["status"] == "cancelled"


def test_a_replica_killed_mid_job_fails_that_job_alone_and_a_replacement_runs_the_next(ray_server, clip, tmp_path):
    motion = npz(clip.slice(0, 49), tmp_path, "m.npz")
    doomed = submit_ok(ray_server, motion, {**LONG_TINY, "seed": 61})
    wait_job(ray_server, doomed["id"], check=lambda j: j["phase"] == "denoising", timeout=120)
    busy = wait_for(lambda: [p for p, t in replica_processes(ray_server).items() if t.endswith(".run")], "running job")
    assert len(busy) == 1, replica_processes(ray_server)
    survivor = submit_ok(ray_server, motion, {**LONG_TINY, "seed": 62})  # on the other replica
    wait_job(ray_server, survivor["id"], check=lambda j: j["phase"] == "denoising", timeout=120)
    queued = submit_ok(ray_server, motion, {**SHORT_TINY, "seed": 63})
    assert ray_server.client.get(f"/v1/jobs/{queued['id']}").json()["status"] == "queued"

    os.kill(busy[0], signal.SIGKILL)
    failed = wait_job(ray_server, doomed["id"], timeout=30)
    assert failed["status"] == "failed", failed
    assert "replica running this job stopped" in failed["message"] and "submit the job again" in failed["message"]
    # the queued job runs on the replacement (the other replica is still busy) and nothing else is lost
    assert wait_job(ray_server, queued["id"], timeout=120)["status"] == "succeeded"
    assert ray_server.client.get(f"/v1/jobs/{survivor['id']}").json()["status"] == "running"
    assert download(ray_server, queued["id"], tmp_path)[1]["frames"] == 49
    replicas = replica_processes(ray_server)
    assert len(replicas) == 2 and busy[0] not in replicas, replicas

    # a replica killed while idle: the next job handed to it runs on its replacement instead of failing
    idle = [p for p, t in replicas.items() if not t.endswith(".run")]
    assert len(idle) == 1, replicas
    os.kill(idle[0], signal.SIGKILL)
    wait_for(lambda: idle[0] not in replica_processes(ray_server), "end of the killed process", 10)
    after = submit_ok(ray_server, motion, {**SHORT_TINY, "seed": 64})
    assert wait_job(ray_server, after["id"], timeout=120)["status"] == "succeeded"
    assert ray_server.client.get(f"/v1/jobs/{survivor['id']}").json()["status"] == "running"
    assert idle[0] not in replica_processes(ray_server)

    ray_server.client.delete(f"/v1/jobs/{survivor['id']}")
    assert wait_job(ray_server, survivor["id"], timeout=10)["status"] == "cancelled"
    health = ray_server.client.get("/v1/health")
    assert health.status_code == 200 and health.json()["worker"] == "idle", health.json()


def test_tokenize_and_extraction_answer_as_the_local_executor_and_the_api_process_never_loads_torch(
    ray_server, local_server, models, clip, tmp_path
):
    motion = npz(clip.slice(0, 40), tmp_path, "m.npz")
    answers = []
    for srv in (ray_server, local_server):
        response = srv.client.post(
            "/v1/tokenize", params={"reconstruction": "true"}, files={"motion": ("m.npz", motion)}
        )
        assert response.status_code == 200, response.text
        answers.append(response.json())
    assert answers[0] == answers[1] and answers[0]["latent_frames"] == 10
    render = submit_ok(ray_server, motion, {"backend": "tiny", "width": 64, "height": 64, "steps": 2})
    assert wait_job(ray_server, render["id"], timeout=60)["status"] == "succeeded"

    # the models ran on the replicas: the API process has not even loaded torch (the local server has)
    def loaded_torch(srv: Server) -> bool:
        return "libtorch" in Path(f"/proc/{srv.proc.pid}/maps").read_text()

    assert not loaded_torch(ray_server) and loaded_torch(local_server)

    results = []
    for srv in (ray_server, local_server):
        video = {"video": ("dance.mp4", models["dance"].read_bytes())}
        job = srv.client.post("/v1/extract", files=video, data={"params": json.dumps({"smooth": "none"})}).json()
        done = wait_job(srv, job["id"], timeout=120)
        assert done["status"] == "succeeded" and done["kind"] == "extract", done
        with srv.client.stream("GET", f"/v1/jobs/{job['id']}/events") as response:
            events = [e["data"] for e in sse_events(response)]
        phases = list(dict.fromkeys(e["phase"] for e in events if e["status"] == "running"))
        assert phases[-3:] == ["decoding+detecting", "tracking", "smoothing"], phases
        results.append((done["message"], srv.client.get(f"/v1/jobs/{job['id']}/result").content))
    assert results[0] == results[1]


def test_the_ray_instance_has_no_dashboard_and_refuses_a_process_without_the_servers_token(ray_server, home):
    ports = listening([ray_server.proc.pid, *descendants(ray_server.proc.pid)])
    ray_ports = {where: pid for where, pid in ports.items() if where[1] != ray_server.port}
    assert ray_ports, ports
    assert all(port != 8265 for _, port in ray_ports), "a Ray dashboard listens"
    for (host, port), pid in ray_ports.items():  # gRPC, or HTTP that wants the token: nothing answers a plain GET
        answer = plain_http(host, port)
        assert not answer.startswith(b"HTTP/1.1 2") and not answer.startswith(b"HTTP/1.0 2"), (title(pid), answer)
    gcs = {
        port for (_, port), pid in ray_ports.items() if Path(f"/proc/{pid}/comm").read_text().strip() == "gcs_server"
    }
    assert len(gcs) == 1, ray_ports

    # a process without the token (no RAY_* variables, a home without ~/.ray) is refused by the cluster
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(home / "stranger")
    code = f"import ray; ray.init(address='127.0.0.1:{gcs.pop()}')"  # it listens on every address
    stranger = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, env=env, text=True)
    refused, lines = False, []
    try:
        deadline = time.monotonic() + 60
        while not refused and time.monotonic() < deadline and (line := stranger.stderr.readline()):
            lines.append(line)
            refused = "InvalidAuthToken" in line
    finally:
        stranger.kill()
        stranger.wait(timeout=10)
    assert refused, "".join(lines[-20:])
    assert not (home / ".ray").exists(), "the server's Ray token was written to the disk"
