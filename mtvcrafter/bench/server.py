"""Server under load, against a real ``mtvcrafter serve`` subprocess on loopback:

- status polls (``GET /v1/jobs/{id}``) during a tiny render, first with no event streams open (the
  baseline), then while 200 server-sent event streams (``GET /v1/jobs/{id}/events``) follow that render
  from a second process;
- the server process's memory (VmRSS, VmHWM from ``/proc/<pid>/status``) before a burst of small jobs,
  after it completes, and after a pause.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RATE = 200  # polls per second
POLL_THREADS = 8  # each waits for its answer: 25 polls a second each, one every 40 ms
STREAMS = 200
BURST = 50
BURST_FRAMES = 8
GOAL_P99_S = 0.050
GOAL_RSS_GROWTH_MB = 100.0
TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass
class ServerReport:
    seconds: float
    #: (condition, latency summary, failed polls, the server's CPU use in cores, the render's steps/s, the CPU use
    #: of other processes than the server, the pollers and the stream holder, in cores); None: not measured
    polls: list[tuple[str, dict, int, float | None, float | None, float | None]] = field(default_factory=list)
    #: what the stream holder saw: opened, open_throughout, events, events_per_s, final, last_final_s, errors
    streams: dict = field(default_factory=dict)
    #: (moment, VmRSS kB, VmHWM kB); empty without /proc
    memory: list[tuple[str, int, int]] = field(default_factory=list)
    #: index of the "before the burst" row in ``memory``
    before: int = 0
    burst: dict = field(default_factory=dict)
    #: (goal, met)
    goals: list[tuple[str, bool]] = field(default_factory=list)


# -- status polls -------------------------------------------------------------------------------------


def _poll(url: str, job_id: str, seconds: float, rate: int) -> tuple[list[float], int, float]:
    """Poll GET /v1/jobs/{id} at ``rate``/s for ``seconds`` from POLL_THREADS threads, each waiting for its
    answer (one behind its schedule sends the next at once); returns latencies, failures and the seconds it
    took (longer than ``seconds`` when answers are slower than the schedule: the rate achieved is lower)."""
    import httpx

    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    period = POLL_THREADS / rate
    start = time.perf_counter()

    def worker(k: int) -> None:
        with httpx.Client(base_url=url, timeout=5) as client:
            next_at = start + k * period / POLL_THREADS
            while next_at - start < seconds:
                delay = next_at - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                t0 = time.perf_counter()
                try:
                    ok = client.get(f"/v1/jobs/{job_id}").status_code == 200
                except httpx.HTTPError:
                    ok = False
                elapsed = time.perf_counter() - t0
                with lock:
                    latencies.append(elapsed)
                    failures[0] += not ok
                next_at += period

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(POLL_THREADS)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return latencies, failures[0], time.perf_counter() - start


def _summary(latencies: list[float], wall: float) -> dict:
    ordered = sorted(latencies)
    return {
        "rate": len(latencies) / wall,
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "max": ordered[-1],
    }


# -- event streams, held open by a second process -------------------------------------------------------


class _Stream:
    def __init__(self) -> None:
        import asyncio

        self.ready = asyncio.Event()  # headers read, or failed
        self.open = False
        self.events = 0
        self.final: str | None = None
        self.final_at: float | None = None
        self.error: str | None = None


async def _follow(host: str, port: int, job_id: str, s: _Stream) -> None:
    """One event stream over a plain socket (HTTP/1.1, ``Connection: close``): counts the events."""
    import asyncio

    writer = None
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            f"GET /v1/jobs/{job_id}/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Accept: text/event-stream\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        status = await reader.readline()
        if not status.startswith(b"HTTP/1.1 200"):
            s.error = status.decode("latin-1").strip() or "no answer"
            return
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass  # headers
        s.open = True
        s.ready.set()
        while line := await reader.readline():  # chunk sizes and event lines alike; events start "event:"
            if line.startswith(b"event:"):
                s.events += 1
                name = line[6:].strip().decode("latin-1")
                if name in TERMINAL:
                    s.final, s.final_at = name, time.monotonic()
        if s.final is None:
            s.error = "the stream ended before the job's final event"
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        s.error = f"{type(exc).__name__}: {exc}"
    finally:
        s.open = False
        s.ready.set()
        if writer is not None:
            writer.close()


async def _hold_streams(host: str, port: int) -> None:
    """Commands as JSON lines on stdin (open, state, wait_end, quit); one JSON line answers each."""
    import asyncio

    loop = asyncio.get_running_loop()
    streams: list[_Stream] = []
    tasks: list[asyncio.Task] = []

    def reply(data: dict) -> None:
        sys.stdout.write(json.dumps(data) + "\n")
        sys.stdout.flush()

    def errors() -> list[str]:
        seen: dict[str, int] = {}
        for s in streams:
            if s.error:
                seen[s.error] = seen.get(s.error, 0) + 1
        return [f"{n}× {e}" for e, n in seen.items()]

    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        command = json.loads(line) if line.strip() else {"cmd": "quit"}
        if command["cmd"] == "open":
            start = time.monotonic()
            new = [_Stream() for _ in range(command["n"])]
            streams += new
            tasks += [asyncio.create_task(_follow(host, port, command["job"], s)) for s in new]
            try:
                await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in new)), command["timeout"])
            except TimeoutError:
                pass
            reply({"open": sum(s.open for s in new), "seconds": time.monotonic() - start, "errors": errors()})
        elif command["cmd"] == "state":
            reply({"open": sum(s.open for s in streams), "events": sum(s.events for s in streams), "errors": errors()})
        elif command["cmd"] == "wait_end":
            if tasks:
                await asyncio.wait(tasks, timeout=command["timeout"])
            finals: dict[str, int] = {}
            for s in streams:
                if s.final:
                    finals[s.final] = finals.get(s.final, 0) + 1
            times = [s.final_at for s in streams if s.final_at is not None]
            reply(
                {
                    "open": sum(s.open for s in streams),
                    "events": sum(s.events for s in streams),
                    "finals": finals,
                    "last_final_at": max(times) if times else None,
                    "errors": errors(),
                }
            )
        else:
            for t in tasks:
                t.cancel()
            return


def _stream_holder_main() -> None:
    import asyncio

    asyncio.run(_hold_streams(sys.argv[1], int(sys.argv[2])))


class StreamHolder:
    """A second process holding event streams open (asyncio, one socket each), driven over its stdin."""

    def __init__(self, url: str):
        host, port = url.removeprefix("http://").rsplit(":", 1)
        code = "from mtvcrafter.bench.server import _stream_holder_main; _stream_holder_main()"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, host, port], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def ask(self, cmd: str, **args) -> dict:
        self.process.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError(f"the stream-holding process exited (status {self.process.wait()})")
        return json.loads(answer)

    def close(self) -> None:
        try:
            self.process.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# -- the server process's memory ------------------------------------------------------------------------


def _server_pid(port: int) -> int | None:
    """The pid of our ``mtvcrafter serve --port PORT`` child (None without /proc)."""
    me, wanted = os.getpid(), str(port).encode()
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid != me:
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if b"serve" in argv and wanted in argv:
            return int(entry.name)
    return None


def _cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of ``pid`` so far (None without it)."""
    if pid is None:
        return None
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_seconds() -> float | None:
    """CPU seconds all of this machine's cores have been busy (not idle or waiting) so far (None without /proc)."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except OSError:
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _cpu_counters(server: int | None, holder: int | None) -> tuple:
    """CPU seconds so far of the server, the stream holder, this process (the pollers), and the whole machine."""
    own = os.times()
    return _cpu_seconds(server), _cpu_seconds(holder) or 0.0, own.user + own.system, _machine_busy_seconds()


def _memory(pid: int) -> tuple[int, int]:
    """VmRSS and VmHWM of ``pid`` in kB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(value.split()[0])
    return values["VmRSS"], values["VmHWM"]


# -- the run ----------------------------------------------------------------------------------------------


def _step(state: dict) -> int | None:
    """The render's step so far, from its message ("step 120/38000, window 1")."""
    found = re.match(r"step (\d+)/", state.get("message") or "")
    return int(found.group(1)) if found else None


def _wait_done(client, job_ids: list[str], timeout: float) -> list[dict]:
    """The jobs' states once the last one has ended (one worker: jobs end in order), or at the timeout."""
    deadline = time.monotonic() + timeout
    while client.job(job_ids[-1])["status"] not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.25)
    return [client.job(j) for j in job_ids]


def server_benchmark(seconds: float = 10.0, quick: bool = False) -> tuple[ServerReport, bool]:
    from mtvcrafter.client import Client
    from mtvcrafter.motion import load_motions
    from mtvcrafter_server.local import local_server

    burst, pause = BURST, 10.0
    if quick:
        seconds, burst, pause = 3.0, 10, 3.0
    report = ServerReport(seconds=seconds)
    root = Path(__file__).resolve().parents[2]
    image = root / "examples" / "human.png"
    motions = load_motions(root / "examples" / "sampled_data.pkl")
    long = motions[0].with_joints(np.concatenate([m.joints for m in motions]))
    tiny = {"backend": "tiny", "width": 64, "height": 64}

    with tempfile.TemporaryDirectory() as tmp, local_server(Path(tmp) / "data", log=Path(tmp) / "log") as url:
        pid = _server_pid(int(url.rsplit(":", 1)[1]))

        def remember(moment: str) -> None:
            if pid is not None:
                report.memory.append((moment, *_memory(pid)))

        with Client(url) as client:
            # warm up: the tiny model loads on its first job
            first = client.submit(motions[0].slice(100, 100 + BURST_FRAMES), image, tiny)
            _wait_done(client, [first["id"]], 120)
            remember("warmed up (one tiny job done)")

            # status polls during a long render (1000 steps a window, dozens of windows: minutes of denoising, which
            # a cancel ends within a transformer block): no streams first, then 200 streams following it
            job = client.submit(long, image, {**tiny, "steps": 1000})
            deadline = time.monotonic() + 60
            while client.job(job["id"])["phase"] != "denoising" and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)
            phases = []

            def polls_during_render(condition: str) -> None:
                state = client.job(job["id"])
                holder_pid = None if holder is None else holder.process.pid
                first = _cpu_counters(pid, holder_pid)
                polls, failed, wall = _poll(url, job["id"], seconds, RATE)
                last = _cpu_counters(pid, holder_pid)
                cores = None if first[0] is None else (last[0] - first[0]) / wall
                others = None
                if None not in first + last:
                    ours = sum(b - a for a, b in zip(first[:3], last[:3], strict=True))
                    others = max(0.0, (last[3] - first[3] - ours) / wall)
                end = client.job(job["id"])
                phases.append((state["phase"], end["phase"]))
                steps = _step(state), _step(end)
                rate = None if None in steps else (steps[1] - steps[0]) / wall
                if phases[-1] != ("denoising", "denoising"):
                    condition += f" (render: {phases[-1][0]} to {phases[-1][1]})"
                report.polls.append((condition, _summary(polls, wall), failed, cores, rate, others))

            holder = None
            polls_during_render("during a render, no event streams (baseline)")
            holder = StreamHolder(url)
            try:
                opened = holder.ask("open", job=job["id"], n=STREAMS, timeout=30)
                time.sleep(0.5)
                before, window = holder.ask("state"), time.monotonic()
                polls_during_render(f"during a render, {STREAMS} event streams open")
                after, window = holder.ask("state"), time.monotonic() - window
                remember(f"{STREAMS} event streams open, render running")
                cancelled_at = time.monotonic()
                client.cancel(job["id"])
                ended = holder.ask("wait_end", timeout=30)
            finally:
                holder.close()
            report.streams = {
                "opened": opened["open"],
                "open_seconds": opened["seconds"],
                "open_throughout": min(before["open"], after["open"]),
                "events": after["events"] - before["events"],
                "events_per_s": (after["events"] - before["events"]) / window,
                "finals": ended["finals"],
                "last_final_s": None if ended["last_final_at"] is None else ended["last_final_at"] - cancelled_at,
                "errors": ended["errors"],
                "render_steady": all(p == ("denoising", "denoising") for p in phases),
            }
            _wait_done(client, [job["id"]], 60)
            time.sleep(1.0)
            report.before = len(report.memory)
            remember("before the burst (streams closed, render cancelled)")

            # a burst of small jobs with distinct inputs (no two share a cached result)
            start = time.monotonic()
            ids = []
            for i in range(burst):
                m = motions[i % len(motions)]
                first_frame = (i // len(motions)) * 5
                ids.append(client.submit(m.slice(first_frame, first_frame + BURST_FRAMES), image, tiny)["id"])
            submitted = time.monotonic() - start
            states = _wait_done(client, ids, 30 + 10 * burst)
            report.burst = {
                "jobs": burst,
                "succeeded": sum(s["status"] == "succeeded" for s in states),
                "submit_s": submitted,
                "seconds": time.monotonic() - start,
            }
            remember(f"after the burst ({report.burst['succeeded']}/{burst} jobs succeeded)")
            time.sleep(pause)
            remember(f"after a {pause:.0f} s pause")

    with_streams = report.polls[1]
    s = report.streams
    report.goals.append(
        (
            f"p99 under {GOAL_P99_S * 1000:.0f} ms with {STREAMS} streams open, {RATE}/s sustained, no poll failed, "
            f"all {STREAMS} streams open throughout and ended by the final event (the render denoising throughout)",
            with_streams[1]["p99"] <= GOAL_P99_S
            and with_streams[2] == 0
            and with_streams[1]["rate"] >= 0.95 * RATE
            and s["open_throughout"] == STREAMS
            and s["finals"].get("cancelled", 0) == STREAMS
            and s["render_steady"],
        )
    )
    if report.memory:
        base = report.memory[report.before][1]
        growth = max(rss for _, rss, _ in report.memory[report.before + 1 :]) - base
        report.goals.append(
            (
                f"VmRSS after the burst and after the pause within +{GOAL_RSS_GROWTH_MB:.0f} MB of before, "
                "every burst job succeeded",
                growth <= GOAL_RSS_GROWTH_MB * 1024 and report.burst["succeeded"] == burst,
            )
        )
    return report, all(met for _, met in report.goals)


def _mb(kb: int) -> str:
    return f"{kb / 1024:7.1f} MB"


def print_server_table(report: ServerReport, met: bool) -> None:
    print(
        f"mtvcrafter bench server — a server subprocess on loopback, tiny backend (64x64) on the CPU, "
        f"{os.cpu_count()} cores"
    )
    print(
        f"\nStatus polls: GET /v1/jobs/{{id}} at {RATE}/s from {POLL_THREADS} client threads for "
        f"{report.seconds:.0f} s, during a render; streams: GET /v1/jobs/{{id}}/events of that render, "
        "held by a second process"
    )
    header = (
        f"{'condition':<52} {'polls/s':>8} {'p50':>9} {'p99':>9} {'max':>9} {'failed':>7} {'server CPU':>11} "
        f"{'render':>9} {'other CPU':>10}"
    )
    print(header)
    print("-" * len(header))
    for name, s, failed, cores, rate, others in report.polls:
        ms = [f"{s[k] * 1000:7.2f}ms" for k in ("p50", "p99", "max")]
        cpu = "-" if cores is None else f"{cores:.2f} cores"
        steps = "-" if rate is None else f"{rate:.0f} st/s"
        other = "-" if others is None else f"{others:.2f} cores"
        print(f"{name:<52} {s['rate']:8.1f} {' '.join(ms)} {failed:7d} {cpu:>11} {steps:>9} {other:>10}")
    base, loaded = report.polls[0][1], report.polls[1][1]
    ratios = f"{loaded['p50'] / base['p50']:.2f}x / {loaded['p99'] / base['p99']:.2f}x"
    print(
        f"p50 / p99 with streams vs baseline: {ratios}; server CPU: the server process; render: its denoising steps "
        "a second; other CPU: processes besides the server, the pollers and the stream holder (0: an undisturbed run)"
    )
    s = report.streams
    finals = ", ".join(f"{n} {name}" for name, n in s["finals"].items()) or "none"
    last = "" if s["last_final_s"] is None else f", the last {s['last_final_s']:.2f} s after the cancel"
    print(
        f"streams: {s['opened']}/{STREAMS} opened in {s['open_seconds']:.2f} s; {s['open_throughout']} open throughout "
        f"the polls; {s['events']} events delivered during them ({s['events_per_s']:.0f}/s); "
        f"final events: {finals}{last}"
    )
    for error in s["errors"]:
        print(f"  stream error: {error}")

    print("\nServer memory (the server process's /proc/<pid>/status)")
    if not report.memory:
        print("not measured: no /proc on this system")
    else:
        header = f"{'moment':<52} {'VmRSS':>10} {'VmHWM':>10} {'RSS vs before':>14}"
        print(header)
        print("-" * len(header))
        base = report.memory[report.before][1]
        for k, (moment, rss, hwm) in enumerate(report.memory):
            delta = f"{(rss - base) / 1024:+9.1f} MB" if k >= report.before else f"{'':>12}"
            print(f"{moment:<52} {_mb(rss):>10} {_mb(hwm):>10} {delta:>14}")
        b = report.burst
        print(
            f"burst: {b['jobs']} tiny jobs ({BURST_FRAMES} frames, distinct motions) submitted in "
            f"{b['submit_s']:.1f} s, all ended {b['seconds']:.1f} s after the first submission"
        )
    print()
    for goal, ok in report.goals:
        print(f"goal: {goal}: {'met' if ok else 'NOT met'}")


# -- the executors: the local worker against Ray replicas ---------------------------------------------------

#: a small CPU job: the tiny model at 64x64 on 8 frames, 4 steps
THROUGHPUT_JOB = {"backend": "tiny", "width": 64, "height": 64, "steps": 4}
#: a job of a few milliseconds of work (the preview's skeleton at 64x64): its time in the server is the executor's own
DISPATCH_JOB = {"backend": "preview", "width": 64, "height": 64}
THROUGHPUT_FRAMES = 8
GOAL_OVERHEAD_S = 0.1
GOAL_SPEEDUP = 1.3


@dataclass
class ExecutorRow:
    name: str
    replicas: int
    #: the machine's load average (1 min) when the run started: other work on the machine shows here
    load: float
    #: seconds from the server's start to its first answer
    startup_s: float
    #: per job run alone (warm), seconds from its submission to its end by the server's clock: a preview job
    #: (milliseconds of work) and a tiny job
    dispatch: list[float]
    alone: list[float]
    #: a burst of tiny jobs submitted at once: jobs, seconds from the first submission to the last end, succeeded
    burst: int
    burst_s: float
    succeeded: int

    @property
    def dispatch_s(self) -> float:
        return statistics.median(self.dispatch)

    @property
    def alone_s(self) -> float:
        return statistics.median(self.alone)

    @property
    def jobs_per_minute(self) -> float:
        return 60.0 * self.burst / self.burst_s


def _distinct_jobs(motions, count: int, offset: int) -> list:
    """``count`` motions of THROUGHPUT_FRAMES frames none of which was rendered before (no cached result)."""
    jobs = []
    for i in range(count):
        m = motions[i % len(motions)]
        first = offset + (i // len(motions)) * 3
        jobs.append(m.slice(first, first + THROUGHPUT_FRAMES))
    return jobs


def _measure_executor(name: str, replicas: int, options: tuple[str, ...], sequential: int, burst: int) -> ExecutorRow:
    from mtvcrafter.client import Client
    from mtvcrafter.motion import load_motions
    from mtvcrafter_server.local import local_server

    root = Path(__file__).resolve().parents[2]
    image = root / "examples" / "human.png"
    motions = load_motions(root / "examples" / "sampled_data.pkl")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    def alone(params: dict, offset: int) -> list[float]:
        times = []
        for m in _distinct_jobs(motions, sequential, offset):
            done = _wait_all(client, [client.submit(m, image, params)["id"]], 120)[0]
            times.append(done["finished"] - done["created"])
        return times

    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        with local_server(Path(tmp) / "data", "--device", "cpu", *options, log=Path(tmp) / "log", timeout=300) as url:
            startup = time.monotonic() - started
            with Client(url, timeout=60) as client:
                # warm up: one job per replica, at once, so that every replica has loaded the model
                warm = [client.submit(m, image, THROUGHPUT_JOB)["id"] for m in _distinct_jobs(motions, replicas, 0)]
                _wait_all(client, warm, 300)
                dispatch, tiny = alone(DISPATCH_JOB, 20), alone(THROUGHPUT_JOB, 40)
                ids = [client.submit(m, image, THROUGHPUT_JOB)["id"] for m in _distinct_jobs(motions, burst, 80)]
                states = _wait_all(client, ids, 60 + 10 * burst)
    ended = [s for s in states if s["finished"] is not None]
    wall = max(s["finished"] for s in ended) - min(s["created"] for s in states) if ended else float("inf")
    succeeded = sum(s["status"] == "succeeded" for s in states)
    return ExecutorRow(name, replicas, load, startup, dispatch, tiny, burst, wall, succeeded)


def _wait_all(client, job_ids: list[str], timeout: float) -> list[dict]:
    """The jobs' states once all have ended (or at the timeout); polled every 50 ms (the times are the server's:
    the polls only cost the server some CPU)."""
    deadline = time.monotonic() + timeout
    states = [client.job(j) for j in job_ids]
    while any(s["status"] not in TERMINAL for s in states) and time.monotonic() < deadline:
        time.sleep(0.05)
        states = [s if s["status"] in TERMINAL else client.job(s["id"]) for s in states]
    return states


def executor_benchmark(quick: bool = False) -> tuple[list[ExecutorRow], list[tuple[str, bool]]]:
    """The local executor and Ray replicas (1 and 2, on the CPU) on the same small jobs: each job alone (its time in
    the server; on a preview job of milliseconds of work, the difference to the local executor is Ray's dispatch
    overhead) and a burst of tiny jobs (jobs per minute)."""
    sequential, burst = (3, 6) if quick else (8, 16)
    ray = ("--executor", "ray")
    rows = [
        _measure_executor("local executor (one worker thread)", 1, (), sequential, burst),
        _measure_executor("Ray, 1 replica", 1, (*ray, "--replicas", "1"), sequential, burst),
        _measure_executor("Ray, 2 replicas", 2, (*ray, "--replicas", "2"), sequential, burst),
    ]
    local, one, two = rows
    overhead = one.dispatch_s - local.dispatch_s
    goals = [
        (
            f"Ray's dispatch overhead (a preview job alone, 1 replica against the local executor) under "
            f"{GOAL_OVERHEAD_S * 1000:.0f} ms a job: {overhead * 1000:+.0f} ms",
            overhead <= GOAL_OVERHEAD_S,
        ),
        ("every job succeeded", all(r.succeeded == r.burst for r in rows)),
    ]
    if (os.cpu_count() or 1) >= 2:
        speedup = two.jobs_per_minute / one.jobs_per_minute
        goals.append(
            (
                f"2 replicas at least {GOAL_SPEEDUP:.1f}x the tiny jobs a minute of 1 (2+ cores): {speedup:.2f}x",
                speedup >= GOAL_SPEEDUP,
            )
        )
    return rows, goals


def print_executor_table(rows: list[ExecutorRow], goals: list[tuple[str, bool]]) -> None:
    print(
        f"mtvcrafter bench server --executor ray — server subprocesses on loopback, models on the CPU, "
        f"{os.cpu_count()} cores; tiny jobs: {THROUGHPUT_JOB['width']}x{THROUGHPUT_JOB['height']}, "
        f"{THROUGHPUT_FRAMES} frames, {THROUGHPUT_JOB['steps']} steps"
    )
    header = (
        f"{'executor':<36} {'load':>5} {'start':>7} {'preview alone':>14} {'tiny alone':>11} {'tiny burst':>16} "
        f"{'jobs/min':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        burst = f"{r.succeeded}/{r.burst} in {r.burst_s:.1f} s"
        print(
            f"{r.name:<36} {r.load:5.1f} {r.startup_s:6.1f}s {r.dispatch_s * 1000:12.0f}ms {r.alone_s * 1000:9.0f}ms "
            f"{burst:>16} {r.jobs_per_minute:9.1f}"
        )
    print(
        "load: the machine's load average when the row started (other work); start: from the server's launch to its "
        "first answer (Ray: its own instance and the replicas); alone: a job's time in the server (submission to "
        "end, median), models warm; burst: tiny jobs submitted at once"
    )
    for goal, ok in goals:
        print(f"goal: {goal}: {'met' if ok else 'NOT met'}")
