"""Server load: status polls per second and their latency while a job runs, against an idle server."""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

RATE = 200  # polls per second
GOAL_P99_S = 0.050


def _poll(url: str, job_id: str, seconds: float, rate: int, stop_when_done: bool = False) -> tuple[list[float], int]:
    """Poll GET /v1/jobs/{id} at ``rate``/s from 4 threads; returns latencies and the failures."""
    import httpx

    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    threads = 4
    period = threads / rate
    start = time.perf_counter()

    def worker(k: int) -> None:
        with httpx.Client(base_url=url, timeout=5) as client:
            next_at = start + k * period / threads
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

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return latencies, failures[0]


def _summary(latencies: list[float], seconds: float) -> dict:
    ordered = sorted(latencies)
    return {
        "rate": len(latencies) / seconds,
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "max": ordered[-1],
    }


def server_benchmark(seconds: float = 10.0, quick: bool = False) -> tuple[list[tuple[str, dict, int]], bool]:
    from mtvcrafter.client import Client
    from mtvcrafter.motion import load_motions
    from mtvcrafter_server.local import local_server

    if quick:
        seconds = 4.0
    root = Path(__file__).resolve().parents[2]
    motions = load_motions(root / "examples" / "sampled_data.pkl")
    long = motions[0].with_joints(np.concatenate([m.joints for m in motions]))
    rows = []
    with tempfile.TemporaryDirectory() as tmp, local_server(Path(tmp) / "data", log=Path(tmp) / "log") as url:
        with Client(url) as client:
            short = client.submit(
                motions[0].slice(0, 20),
                root / "examples" / "human.png",
                {"backend": "preview", "width": 64, "height": 64},
            )
            for _ in client.events(short["id"]):
                pass
            idle, failed = _poll(url, short["id"], seconds, RATE)
            rows.append(("idle server (baseline)", _summary(idle, seconds), failed))
            job = client.submit(
                long, root / "examples" / "human.png", {"backend": "tiny", "width": 64, "height": 64, "steps": 50}
            )
            time.sleep(1.0)
            busy, failed = _poll(url, job["id"], seconds, RATE)
            still_running = client.job(job["id"])["status"] == "running"
            rows.append(
                (
                    f"while a tiny job runs{'' if still_running else ' (it ended early)'}",
                    _summary(busy, seconds),
                    failed,
                )
            )
            client.cancel(job["id"])
    met = rows[1][1]["p99"] <= GOAL_P99_S and rows[1][2] == 0 and rows[1][1]["rate"] >= 0.95 * RATE
    return rows, met


def print_server_table(rows, met: bool) -> None:
    print(f"mtvcrafter bench server — GET /v1/jobs/{{id}} at {RATE}/s from 4 clients, loopback, this machine")
    header = f"{'condition':<44} {'polls/s':>8} {'p50':>9} {'p99':>9} {'max':>9} {'failed':>7}"
    print(header)
    print("-" * len(header))
    for name, s, failed in rows:
        ms = [f"{s[k] * 1000:7.2f}ms" for k in ("p50", "p99", "max")]
        print(f"{name:<44} {s['rate']:8.1f} {' '.join(ms)} {failed:7d}")
    ratio = rows[1][1]["p99"] / rows[0][1]["p99"]
    print(
        f"p99 while busy / idle: {ratio:.2f}x; goal: {RATE}/s sustained with p99 under {GOAL_P99_S * 1000:.0f} ms: "
        f"{'met' if met else 'NOT met'}"
    )
