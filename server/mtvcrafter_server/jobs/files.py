"""The server's data folder: job inputs, finished results and scratch files, one server per folder.

A write the folder refuses (a full disk, a file size limit, a read-only folder) is a :class:`StorageError`:
the HTTP status it is answered with (507 or 503), and a message that names the folder and the fix.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path

#: errors that mean: no room to write (a full disk, a quota, a file size limit)
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
#: errors that mean: this folder may not be written
NOT_WRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
#: a result file's suffix, by the kind of job that made it
RESULT_SUFFIX = {"render": ".mp4", "extract": ".npz"}
#: how many bytes a check of the folder writes (and removes)
PROBE_BYTES = 1 << 20


class OutsideDataFolder(PermissionError):
    """A path that resolves outside the data folder (refused as 403, never a storage problem)."""


class StorageError(Exception):
    """The data folder (or the job database in it) cannot be written: ``status`` 507 when there is no room,
    503 otherwise; ``message`` names the folder and the fix."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


def storage_error(exc: OSError, folder: Path | str) -> StorageError:
    """What an ``OSError`` met writing in ``folder`` means for the operator, and what to do about it."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in NO_SPACE:
        limit = " or raise the file size limit (ulimit -f)" if exc.errno == errno.EFBIG else ""
        return StorageError(
            507,
            "insufficient_storage",
            f"no room to write in {folder} ({reason}): free space on its disk{limit}, keep fewer results "
            "(--keep-days, --keep-gb), or start the server with another --data-dir",
        )
    if exc.errno in NOT_WRITABLE:
        return StorageError(
            503,
            "storage_not_writable",
            f"the server may not write in {folder} ({reason}): make the data folder writable by the user the "
            "server runs as, or start the server with another --data-dir",
        )
    return StorageError(
        503,
        "storage_error",
        f"the server cannot write in {folder} ({reason}): check the disk of the data folder, or start the "
        "server with another --data-dir",
    )


def probe(folder: Path, size: int = PROBE_BYTES) -> OSError | None:
    """Write ``size`` bytes to a scratch file in ``folder`` and remove it: the error if that fails."""
    path = folder / f".probe-{uuid.uuid4().hex}"
    try:
        with open(path, "wb") as out:
            out.write(b"\0" * size)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        return exc
    finally:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
    return None


def tree_size(path: Path) -> int:
    """Bytes of the files under ``path`` (a file: its size; missing: 0)."""
    try:
        if path.is_file():
            return path.stat().st_size
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    except OSError:
        return 0


class DataFolder:
    """Every path the server reads or writes, built from validated ids and checked to lie inside the folder."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        for sub in ("jobs", "results", "tmp"):
            try:
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RuntimeError(storage_error(exc, self.root / sub).message) from None

    def lock(self) -> None:
        """Hold an exclusive lock on the folder for the life of the process (where the OS has flock)."""
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks here; one server per folder is then up to the user
            return
        self._lock_file = open(self.root / ".lock", "w")  # noqa: SIM115 - held open on purpose
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RuntimeError(
                f"another server is using the data folder {self.root}; stop it, or use another --data-dir"
            ) from None

    def inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise OutsideDataFolder(f"{path} is outside the data folder")
        return resolved

    def job_dir(self, job_id: str) -> Path:
        return self.inside(self.root / "jobs" / job_id)

    def result(self, cache_key: str, kind: str = "render") -> Path:
        """Where the result of the job with this cache key is kept: a render's video, an extraction's motion."""
        return self.inside(self.root / "results" / f"{cache_key}{RESULT_SUFFIX[kind]}")

    def tmp(self) -> Path:
        return self.inside(self.root / "tmp")

    # -- space and clean-up -------------------------------------------------------------------------

    def storage_problem(self) -> StorageError | None:
        """Whether the folder takes writes now: a :class:`StorageError` if not (after a failed job, to tell a
        full disk from a broken job)."""
        exc = probe(self.tmp())
        return None if exc is None else storage_error(exc, self.root)

    def free_bytes(self) -> int:
        try:
            return shutil.disk_usage(self.root).free
        except OSError:
            return 0

    def _result_path(self, name: str) -> Path:
        return self.inside(self.root / "results" / Path(name).name)

    def job_size(self, job_id: str) -> int:
        return tree_size(self.job_dir(job_id))

    def result_size(self, name: str) -> int:
        """The bytes of a result file (``name`` as the store keeps it)."""
        return tree_size(self._result_path(name))

    def remove_job(self, job_id: str) -> None:
        """Delete a job's inputs."""
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def remove_result(self, name: str) -> None:
        """Delete a result file (``name`` as the store keeps it)."""
        try:
            self._result_path(name).unlink(missing_ok=True)
        except OSError:
            pass

    def clean_start(self, job_ids: set[str], results: set[str]) -> dict[str, int]:
        """At start-up, before any job runs: remove scratch files (partial videos, upload folders of requests
        cut short), input folders of jobs the store does not know (a submit cut short) and results no job
        names (a job cut short between its video and its final state). The count removed of each."""
        removed = {"scratch": 0, "inputs": 0, "results": 0}
        for entry in self.tmp().iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed["scratch"] += 1
        for entry in (self.root / "jobs").iterdir():
            if entry.name not in job_ids:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed["inputs"] += 1
        for entry in (self.root / "results").iterdir():
            if entry.name not in results and entry.is_file():
                entry.unlink(missing_ok=True)
                removed["results"] += 1
        return removed

    def usage(self) -> int:
        """Bytes the inputs and results take."""
        return tree_size(self.root / "jobs") + tree_size(self.root / "results")
