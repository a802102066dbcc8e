"""The job store: SQLite (jobs and their events) beside the job files, in the server's data folder.

Everything a client can see of a job lives here, so jobs and finished results survive a restart.
Events are numbered per job (1, 2, …) so an event stream can resume from ``Last-Event-ID``.

Writes go through one connection, one transaction at a time; reads through a small pool of connections
(WAL: readers never wait for the writer). A failed read or write is a :class:`StoreError` (a
:class:`StorageError`: the status to answer and a message naming the folder and the fix); the connection
that failed is replaced, so the store works again as soon as its folder does.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .files import StorageError, probe, storage_error

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
#: what a job makes: a video from a motion and an image, or a motion from a video
RENDER, EXTRACT = "render", "extract"
KINDS = (RENDER, EXTRACT)
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})
JOB_ID = re.compile(r"^[0-9a-f]{32}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL DEFAULT 'render',
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
CREATE TABLE IF NOT EXISTS checks (
    name TEXT PRIMARY KEY,
    at REAL NOT NULL
);
"""
#: reader connections kept open at most (a reader beyond them waits for one: reads take milliseconds)
READERS = 8
ACTIVE = (QUEUED, RUNNING)


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
    kind: str = RENDER

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


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a database written by an earlier version up to :data:`SCHEMA`: its jobs keep working (a job
    without a kind was a render)."""
    columns = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
    if "kind" not in columns:
        db.execute("ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'render'")


class StoreError(StorageError):
    """The job database could not be read or written (the folder's disk is full, it is read-only, …)."""


def _store_error(exc: sqlite3.Error, path: Path) -> StoreError:
    """What a failed SQLite call means, checked against the folder itself (SQLite says 'disk I/O error' for a
    full disk or a file size limit as for anything else)."""
    problem = probe(path.parent, 64 << 10)
    if problem is not None:
        known = storage_error(problem, path.parent)
        message = f"the job database {path} cannot be written ({exc}); {known.message.split(': ', 1)[-1]}"
        return StoreError(known.status, known.code, message)
    text = str(exc)
    if "full" in text:
        return StoreError(
            507,
            "insufficient_storage",
            f"the job database {path} cannot be written ({text}): free space on its disk, keep fewer results "
            "(--keep-days, --keep-gb), or start the server with another --data-dir",
        )
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return StoreError(
            503,
            "storage_not_writable",
            f"the job database {path} cannot be written ({text}): make the data folder and its jobs.sqlite3* "
            "files writable by the user the server runs as, or start the server with another --data-dir",
        )
    return StoreError(
        503,
        "storage_error",
        f"the job database {path} cannot be used ({text}): check the disk of the data folder, or start the "
        "server with another --data-dir",
    )


class JobStore:
    """Thread-safe access to the jobs database: one writer connection behind a lock, a bounded pool of
    reader connections (open file descriptors stay bounded however many threads serve requests)."""

    def __init__(self, path: Path, readers: int = READERS):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()  # writes go through one connection, one at a time
        self._db: sqlite3.Connection | None = None
        self._pool: list[sqlite3.Connection] = []  # idle readers
        self._pool_cond = threading.Condition()
        self._readers_open = 0
        self._readers_max = max(1, readers)
        self._closed = False
        #: per job, how many events this process has written (event streams read the store only when it moved)
        self._event_counts: dict[str, int] = {}
        #: the last write's failure (None: the last write went through), and since when it fails
        self.write_error: StoreError | None = None
        self.failing_since: float | None = None
        with self._lock:
            try:
                db = self._writer()
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(SCHEMA)
                _migrate(db)
            except sqlite3.Error as exc:
                self._drop_writer()
                raise RuntimeError(_store_error(exc, self.path).message) from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        db.row_factory = sqlite3.Row
        return db

    def _writer(self) -> sqlite3.Connection:
        if self._db is None:
            db = self._connect()
            db.execute("PRAGMA synchronous=NORMAL")
            self._db = db
        return self._db

    def _drop_writer(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (all or nothing); a failure is a :class:`StoreError`."""
        with self._lock:
            if self._closed:
                raise StoreError(503, "store_closed", "the server is stopping")
            try:
                db = self._writer()
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                self._drop_writer()
                raise self._failed(exc) from None
            try:
                yield db
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(db)
                raise self._failed(exc) from None
            except BaseException:
                self._rollback(db)
                raise
            if self.write_error is not None:
                self.write_error, self.failing_since = None, None

    def _rollback(self, db: sqlite3.Connection) -> None:
        try:
            if db.in_transaction:
                db.execute("ROLLBACK")
        except sqlite3.Error:
            self._drop_writer()  # a connection in an unknown state: a new one for the next write

    def _failed(self, exc: sqlite3.Error) -> StoreError:
        error = _store_error(exc, self.path)
        if self.write_error is None:
            self.failing_since = time.time()
        self.write_error = error
        return error

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A reader connection from the pool (at most ``readers`` open; more readers wait for one)."""
        with self._pool_cond:
            while not self._pool and self._readers_open >= self._readers_max:
                self._pool_cond.wait()
            if self._pool:
                db = self._pool.pop()
            else:
                db = None
                self._readers_open += 1
        broken = False
        try:
            if db is None:
                db = self._connect()
            yield db
        except sqlite3.Error as exc:
            broken = True
            raise _store_error(exc, self.path) from None
        except BaseException:
            broken = db is None
            raise
        finally:
            with self._pool_cond:
                if db is not None and not broken and not self._closed:
                    self._pool.append(db)
                else:
                    self._readers_open -= 1
                    if db is not None:
                        db.close()
                self._pool_cond.notify()

    def check_writable(self) -> StoreError | None:
        """After a failed write: try a small one now (the error, or None when the store takes writes again)."""
        try:
            with self._write() as db:
                db.execute("INSERT OR REPLACE INTO checks (name, at) VALUES ('write', ?)", (time.time(),))
        except StoreError as exc:
            return exc
        return None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop_writer()
        with self._pool_cond:
            for db in self._pool:
                db.close()
                self._readers_open -= 1
            self._pool.clear()

    # -- jobs ---------------------------------------------------------------------------------------

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def _new_job(self, backend: str, params: dict, cache_key: str, job_id: str | None, fields: dict) -> Job:
        return Job(
            id=job_id or self.new_id(),
            status=QUEUED,
            backend=backend,
            params=params,
            cache_key=cache_key,
            created=time.time(),
            **fields,
        )

    def _insert(self, db: sqlite3.Connection, job: Job) -> None:
        row = asdict(job)
        row["params"] = json.dumps(job.params)
        row["warnings"] = json.dumps(job.warnings)
        row["cached"] = int(job.cached)
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        db.execute(f"INSERT INTO jobs ({names}) VALUES ({marks})", tuple(row.values()))
        self._add_event(db, job.id, self._event(job))

    def create(self, backend: str, params: dict, cache_key: str, job_id: str | None = None, **fields) -> Job:
        job = self._new_job(backend, params, cache_key, job_id, fields)
        with self._write() as db:
            self._insert(db, job)
        return job

    def create_or_join(
        self, backend: str, params: dict, cache_key: str, job_id: str | None = None, **fields
    ) -> tuple[Job, bool]:
        """A new queued job, unless a job with the same cache key is queued or running: then that job, and
        True (the same inputs render once; whoever submits them follows that job)."""
        job = self._new_job(backend, params, cache_key, job_id, fields)
        with self._write() as db:
            row = db.execute(
                "SELECT * FROM jobs WHERE cache_key = ? AND status IN (?, ?) ORDER BY created LIMIT 1",
                (cache_key, *ACTIVE),
            ).fetchone()
            if row is not None:
                return _row_to_job(row), True
            self._insert(db, job)
        return job, False

    def get(self, job_id: str) -> Job | None:
        if not JOB_ID.match(job_id or ""):
            return None
        with self._read() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row_to_job(row) if row else None

    def list(self, limit: int = 50, status: str | None = None) -> list[Job]:
        query, args = "SELECT * FROM jobs", []
        if status:
            query += " WHERE status = ?"
            args.append(status)
        query += " ORDER BY created DESC LIMIT ?"
        args.append(limit)
        with self._read() as db:
            rows = db.execute(query, args).fetchall()
        return [_row_to_job(r) for r in rows]

    def queued_ids(self) -> list[str]:
        with self._read() as db:
            rows = db.execute("SELECT id FROM jobs WHERE status = ? ORDER BY created", (QUEUED,)).fetchall()
        return [r["id"] for r in rows]

    def queue_position(self, job: Job) -> int:
        with self._read() as db:
            row = db.execute(
                "SELECT COUNT(*) AS n FROM jobs WHERE status = ? AND created < ?", (QUEUED, job.created)
            ).fetchone()
        return int(row["n"])

    def find_cached(self, cache_key: str) -> Job | None:
        with self._read() as db:
            row = db.execute(
                "SELECT * FROM jobs WHERE cache_key = ? AND status = ? AND result IS NOT NULL ORDER BY finished DESC",
                (cache_key, SUCCEEDED),
            ).fetchone()
        return _row_to_job(row) if row else None

    def find_active(self, cache_key: str) -> Job | None:
        """The queued or running job with this cache key (the oldest), if any."""
        with self._read() as db:
            row = db.execute(
                "SELECT * FROM jobs WHERE cache_key = ? AND status IN (?, ?) ORDER BY created LIMIT 1",
                (cache_key, *ACTIVE),
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
        with self._write() as db:
            cursor = db.execute(f"UPDATE jobs SET {sets} WHERE {where}", (*fields.values(), *args))
            if cursor.rowcount == 0:
                return None
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            job = _row_to_job(row) if row else None
            if event and job is not None:
                self._add_event(db, job_id, self._event(job))
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

    def requeue(self, job_id: str, message: str) -> Job | None:
        """Put a running job back in the queue, as it was before it started (a clean stop of the server interrupted
        it: it runs again from the start, in its place by ``created``); None if it was not running."""
        return self.update(
            job_id,
            status=QUEUED,
            phase=QUEUED,
            progress=0.0,
            eta_s=None,
            started=None,
            message=message,
            only_if_status=RUNNING,
        )

    def recover(self) -> tuple[list[str], list[str]]:
        """After a restart: jobs still running were cut short by a killed or crashed server (a clean stop puts its
        running jobs back in the queue): they are failed, never run again (a job that crashes the server would crash
        it again). Queued jobs stay queued and run again. Returns (failed ids, queued ids)."""
        with self._read() as db:
            running = [r["id"] for r in db.execute("SELECT id FROM jobs WHERE status = ?", (RUNNING,))]
        for job_id in running:
            self.finish(job_id, FAILED, "the server stopped while this job was running; submit it again")
        return running, self.queued_ids()

    # -- retention ----------------------------------------------------------------------------------

    def results_in_use(self) -> dict[str, int]:
        """Result file names the jobs name, and how many jobs name each."""
        with self._read() as db:
            rows = db.execute("SELECT result, COUNT(*) AS n FROM jobs WHERE result IS NOT NULL GROUP BY result")
            return {r["result"]: int(r["n"]) for r in rows}

    def ids(self) -> set[str]:
        with self._read() as db:
            return {r["id"] for r in db.execute("SELECT id FROM jobs")}

    def finished_jobs(self, before: float | None = None) -> list[tuple[str, str | None]]:
        """(id, result) of the finished jobs, oldest first; only those finished before ``before`` if given."""
        final = ", ".join(f"'{s}'" for s in sorted(TERMINAL))
        query, args = f"SELECT id, result FROM jobs WHERE status IN ({final})", []
        if before is not None:
            query += " AND finished < ?"
            args.append(before)
        with self._read() as db:
            rows = db.execute(query + " ORDER BY finished, created", args).fetchall()
        return [(r["id"], r["result"]) for r in rows]

    def delete(self, job_ids: list[str]) -> None:
        """Forget finished jobs: their rows and events (their files are the data folder's)."""
        final = ", ".join(f"'{s}'" for s in sorted(TERMINAL))
        for start in range(0, len(job_ids), 500):
            chunk = job_ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            with self._write() as db:
                db.execute(f"DELETE FROM events WHERE job_id IN ({marks})", chunk)
                db.execute(f"DELETE FROM jobs WHERE id IN ({marks}) AND status IN ({final})", chunk)

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

    def _add_event(self, db: sqlite3.Connection, job_id: str, data: dict) -> int:
        row = db.execute("SELECT COALESCE(MAX(seq), 0) AS n FROM events WHERE job_id = ?", (job_id,)).fetchone()
        seq = int(row["n"]) + 1
        db.execute("INSERT INTO events (job_id, seq, data) VALUES (?, ?, ?)", (job_id, seq, json.dumps(data)))
        # counted even if the transaction rolls back: a stream then reads once for nothing, never misses one
        self._event_counts[job_id] = self._event_counts.get(job_id, 0) + 1
        return seq

    def event_count(self, job_id: str) -> int:
        """How many events this process has written for ``job_id`` (cheap: no database read); a stream reads
        the store when it changes."""
        return self._event_counts.get(job_id, 0)

    def add_event(self, job_id: str, data: dict) -> int:
        with self._write() as db:
            return self._add_event(db, job_id, data)

    def events_after(self, job_id: str, after: int) -> list[tuple[int, dict]]:
        with self._read() as db:
            rows = db.execute(
                "SELECT seq, data FROM events WHERE job_id = ? AND seq > ? ORDER BY seq", (job_id, after)
            ).fetchall()
        return [(int(r["seq"]), json.loads(r["data"])) for r in rows]
