"""The job store: SQLite (jobs and their events) beside the job files, in the server's data folder.

Everything a client can see of a job lives here, so jobs and finished results survive a restart.
Events are numbered per job (1, 2, …) so an event stream can resume from ``Last-Event-ID``.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})
JOB_ID = re.compile(r"^[0-9a-f]{32}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    backend TEXT NOT NULL,
    params TEXT NOT NULL,
    cache_key TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    phase TEXT NOT NULL DEFAULT 'queued',
    message TEXT NOT NULL DEFAULT '',
    eta_s REAL,
    frames INTEGER NOT NULL DEFAULT 0,
    fps REAL NOT NULL DEFAULT 0,
    width INTEGER NOT NULL DEFAULT 0,
    height INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    cached INTEGER NOT NULL DEFAULT 0,
    warnings TEXT NOT NULL DEFAULT '[]',
    created REAL NOT NULL,
    started REAL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS jobs_cache ON jobs (cache_key, status);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, created);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
"""


@dataclass
class Job:
    id: str
    status: str
    backend: str
    params: dict
    cache_key: str
    progress: float = 0.0
    phase: str = QUEUED
    message: str = ""
    eta_s: float | None = None
    frames: int = 0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    result: str | None = None
    cached: bool = False
    warnings: list[str] = field(default_factory=list)
    created: float = 0.0
    started: float | None = None
    finished: float | None = None

    def public(self) -> dict:
        """What the API shows (no file paths)."""
        data = asdict(self)
        data.pop("result")
        data.pop("cache_key")
        data["result_ready"] = self.status == SUCCEEDED
        return data


def _row_to_job(row: sqlite3.Row) -> Job:
    data = dict(row)
    data["params"] = json.loads(data["params"])
    data["warnings"] = json.loads(data["warnings"])
    data["cached"] = bool(data["cached"])
    return Job(**data)


class JobStore:
    """Thread-safe access to the jobs database (one connection, a lock; WAL so readers don't wait)."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._connect()
        self._lock = threading.RLock()  # writes go through one connection, one at a time
        self._local = threading.local()  # reads: one connection per thread (WAL: readers never wait)
        self._readers: list[sqlite3.Connection] = []
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        db.row_factory = sqlite3.Row
        return db

    def _reader(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
            with self._lock:
                self._readers.append(db)
        return db

    def close(self) -> None:
        with self._lock:
            for db in self._readers:
                db.close()
            self._db.close()

    # -- jobs ---------------------------------------------------------------------------------------

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def create(self, backend: str, params: dict, cache_key: str, job_id: str | None = None, **fields) -> Job:
        job = Job(
            id=job_id or self.new_id(),
            status=QUEUED,
            backend=backend,
            params=params,
            cache_key=cache_key,
            created=time.time(),
            **fields,
        )
        row = asdict(job)
        row["params"] = json.dumps(params)
        row["warnings"] = json.dumps(job.warnings)
        row["cached"] = int(job.cached)
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self._lock:
            self._db.execute(f"INSERT INTO jobs ({names}) VALUES ({marks})", tuple(row.values()))
        self.add_event(job.id, self._event(job))
        return job

    def get(self, job_id: str) -> Job | None:
        if not JOB_ID.match(job_id or ""):
            return None
        row = self._reader().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row_to_job(row) if row else None

    def list(self, limit: int = 50, status: str | None = None) -> list[Job]:
        query, args = "SELECT * FROM jobs", []
        if status:
            query += " WHERE status = ?"
            args.append(status)
        query += " ORDER BY created DESC LIMIT ?"
        args.append(limit)
        return [_row_to_job(r) for r in self._reader().execute(query, args).fetchall()]

    def queued_ids(self) -> list[str]:
        rows = self._reader().execute("SELECT id FROM jobs WHERE status = ? ORDER BY created", (QUEUED,)).fetchall()
        return [r["id"] for r in rows]

    def queue_position(self, job: Job) -> int:
        row = (
            self._reader()
            .execute("SELECT COUNT(*) AS n FROM jobs WHERE status = ? AND created < ?", (QUEUED, job.created))
            .fetchone()
        )
        return int(row["n"])

    def find_cached(self, cache_key: str) -> Job | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM jobs WHERE cache_key = ? AND status = ? AND result IS NOT NULL ORDER BY finished DESC",
                (cache_key, SUCCEEDED),
            ).fetchone()
        return _row_to_job(row) if row else None

    def update(self, job_id: str, event: bool = True, only_if_status: str | None = None, **fields) -> Job | None:
        """Change fields of a job and (by default) append an event with its new state.

        ``only_if_status``: change nothing (and return None) unless the job is in that status."""
        if "warnings" in fields:
            fields["warnings"] = json.dumps(fields["warnings"])
        if "cached" in fields:
            fields["cached"] = int(fields["cached"])
        sets = ", ".join(f"{k} = ?" for k in fields)
        # A finished job is final: nothing (a late worker write, a racing cancel) changes it again.
        final = ", ".join(f"'{s}'" for s in sorted(TERMINAL))
        where, args = f"id = ? AND status NOT IN ({final})", [job_id]
        if only_if_status is not None:
            where += " AND status = ?"
            args.append(only_if_status)
        with self._lock:
            cursor = self._db.execute(f"UPDATE jobs SET {sets} WHERE {where}", (*fields.values(), *args))
            if cursor.rowcount == 0:
                return None
            job = self.get(job_id)
            if event and job is not None:
                self.add_event(job_id, self._event(job))
        return job

    def finish(self, job_id: str, status: str, message: str = "", only_if_status: str | None = None, **fields):
        """End a job (returns None if it had already ended, or was not in ``only_if_status``)."""
        now = time.time()
        extra = {"progress": 1.0} if status == SUCCEEDED else {}
        return self.update(
            job_id,
            status=status,
            phase=status,
            message=message,
            finished=now,
            eta_s=None,
            only_if_status=only_if_status,
            **extra,
            **fields,
        )

    def recover(self) -> tuple[list[str], list[str]]:
        """After a restart: jobs that were running are failed (their GPU work is lost); queued jobs stay
        queued and run again. Returns (failed ids, queued ids)."""
        with self._lock:
            running = [r["id"] for r in self._db.execute("SELECT id FROM jobs WHERE status = ?", (RUNNING,))]
        for job_id in running:
            self.finish(job_id, FAILED, "the server stopped while this job was running; submit it again")
        return running, self.queued_ids()

    # -- events -------------------------------------------------------------------------------------

    @staticmethod
    def _event(job: Job) -> dict:
        return {
            "id": job.id,
            "status": job.status,
            "progress": round(job.progress, 4),
            "phase": job.phase,
            "message": job.message,
            "eta_s": None if job.eta_s is None else round(job.eta_s, 1),
        }

    def add_event(self, job_id: str, data: dict) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT COALESCE(MAX(seq), 0) AS n FROM events WHERE job_id = ?", (job_id,)
            ).fetchone()
            seq = int(row["n"]) + 1
            self._db.execute("INSERT INTO events (job_id, seq, data) VALUES (?, ?, ?)", (job_id, seq, json.dumps(data)))
        return seq

    def events_after(self, job_id: str, after: int) -> list[tuple[int, dict]]:
        rows = (
            self._reader()
            .execute("SELECT seq, data FROM events WHERE job_id = ? AND seq > ? ORDER BY seq", (job_id, after))
            .fetchall()
        )
        return [(int(r["seq"]), json.loads(r["data"])) for r in rows]
