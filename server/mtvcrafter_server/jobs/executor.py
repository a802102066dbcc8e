"""Executing jobs. The API, the job store and the files talk to an :class:`Executor`; the in-process one
runs one worker thread (one GPU, models kept warm) for renders and extractions alike. A distributed executor
(e.g. Ray) implements the same methods and reads/writes the same store and data folder.

The worker outlives anything a job or the store does: a job that fails fails alone; a job's progress is
recorded when the store takes it (a lost progress event changes nothing); a job's start and end are
recorded when the store takes them, the worker waiting (and saying so in ``/v1/health``) while it does not.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
import traceback
from pathlib import Path

from PIL import Image

from mtvcrafter.backends import Backend, Cancelled, RenderRequest
from mtvcrafter.motion import load_motion, save_motion

from ..paths import hide_server_paths, server_folders
from ..settings import Settings
from .extraction import Extractor
from .files import DataFolder, StorageError, storage_error
from .params import ExtractParams, JobParams
from .store import CANCELLED, EXTRACT, FAILED, QUEUED, RUNNING, SUCCEEDED, Job, JobStore

log = logging.getLogger("mtvcrafter_server")


class Executor:
    """What the API needs from whatever runs jobs."""

    #: the id of the job running now (None: none)
    current: str | None = None

    def submit(self, job_id: str) -> None:
        raise NotImplementedError

    def cancel(self, job_id: str) -> None:
        """Ask a running job to stop at its next step (queued jobs are cancelled by the store)."""
        raise NotImplementedError

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def health(self) -> dict:
        """The worker's state for ``/v1/health``: ``worker`` (idle, running, stalled, waiting for storage or
        dead), ``last_progress_s`` (seconds since the running job last reported; None when idle) and
        ``worker_error`` (why it waits, or died; None)."""
        return {"worker": "running" if self.current else "idle", "last_progress_s": None, "worker_error": None}


class _Stopping(Exception):
    """The server stops while the worker waits for the store."""


INTERNAL = "internal error; see the server log"
#: how long the worker waits between tries of a write the store refused (doubling up to the last)
RETRY_S = (0.25, 5.0)


class InProcessExecutor(Executor):
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        files: DataFolder,
        backends: dict[str, Backend],
        extractor: Extractor | None = None,
    ):
        self.settings = settings
        self.store = store
        self.files = files
        self.backends = backends
        self.extractor = extractor if extractor is not None else Extractor(settings)
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._cancel: set[str] = set()
        self._cancel_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.current: str | None = None
        #: what the worker is doing when it is not running a job's code: None, or "waiting for storage"
        self._waiting: str | None = None
        #: the storage error it waits on, or what ended the worker
        self._error: str | None = None
        self._last_beat = time.monotonic()

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._work, name="mtvcrafter-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def submit(self, job_id: str) -> None:
        self._queue.put(job_id)

    def cancel(self, job_id: str) -> None:
        with self._cancel_lock:
            self._cancel.add(job_id)

    def _cancelled(self, job_id: str) -> bool:
        with self._cancel_lock:
            return job_id in self._cancel

    def health(self) -> dict:
        if self._thread is None or not self._thread.is_alive():
            error = self._error or "the job worker has stopped; restart the server"
            return {"worker": "dead", "last_progress_s": None, "worker_error": error}
        if self._waiting is not None:
            return {"worker": self._waiting, "last_progress_s": None, "worker_error": self._error}
        if self.current is None:
            return {"worker": "idle", "last_progress_s": None, "worker_error": None}
        quiet = time.monotonic() - self._last_beat
        if quiet > self.settings.stall_after_s:
            error = f"job {self.current} has reported no progress for {quiet:.0f} s; cancel it or restart the server"
            return {"worker": "stalled", "last_progress_s": round(quiet, 1), "worker_error": error}
        return {"worker": "running", "last_progress_s": round(quiet, 1), "worker_error": None}

    # -- the worker ---------------------------------------------------------------------------------

    def _work(self) -> None:
        try:
            while True:
                job_id = self._queue.get()
                if job_id is None or self._stopping.is_set():
                    return
                try:
                    self._take(job_id)
                except _Stopping:
                    return
                except Exception:  # the worker must survive anything a job does
                    log.error("job %s: unexpected failure\n%s", job_id, traceback.format_exc())
                    try:
                        self._persist(
                            lambda job_id=job_id: self.store.finish(job_id, FAILED, INTERNAL), f"job {job_id}: its end"
                        )
                    except _Stopping:
                        return
                    except Exception:
                        log.error("job %s: its failure could not be recorded\n%s", job_id, traceback.format_exc())
                finally:
                    self.current = None
                    self._waiting = None
                    with self._cancel_lock:
                        self._cancel.discard(job_id)
        except BaseException as exc:
            self._error = f"the job worker stopped ({type(exc).__name__}: {exc}); restart the server"
            log.critical("%s\n%s", self._error, traceback.format_exc())
            raise

    def _persist(self, write, what: str):
        """``write()`` until the store takes it: a write the store refuses is tried again, at growing
        intervals, while ``/v1/health`` says the worker is waiting for storage."""
        delay = RETRY_S[0]
        failing = False
        while True:
            try:
                value = write()
            except StorageError as exc:
                if not failing:
                    log.error("%s: %s; the worker tries again until it can", what, exc.message)
                    failing = True
                self._waiting, self._error = "waiting for storage", exc.message
                if self._stopping.wait(delay):
                    raise _Stopping from None
                delay = min(delay * 2, RETRY_S[1])
                continue
            if failing:
                log.warning("%s: recorded; the job store takes writes again", what)
            self._waiting, self._error = None, None
            return value

    def _take(self, job_id: str) -> None:
        job = self._persist(lambda: self.store.get(job_id), f"job {job_id}")
        if job is None or job.status != QUEUED:
            return  # cancelled while queued, or already handled
        self.current = job_id
        self._last_beat = time.monotonic()
        cached = self._persist(lambda: self.store.find_cached(job.cache_key), f"job {job_id}")
        if cached is not None and self.files.result(job.cache_key, job.kind).is_file():
            # an identical job rendered while this one was queued (e.g. both queued before a restart)
            facts = dict(frames=cached.frames, fps=cached.fps, width=cached.width, height=cached.height)
            self._persist(
                lambda: self.store.finish(
                    job_id,
                    SUCCEEDED,
                    "done (same inputs as an earlier job: its result)",
                    only_if_status=QUEUED,
                    result=cached.result,
                    cached=True,
                    warnings=cached.warnings,
                    **facts,
                ),
                f"job {job_id}",
            )
            return
        started = self._persist(
            lambda: self.store.update(
                job.id, status=RUNNING, phase="starting", started=time.time(), progress=0.0, only_if_status=QUEUED
            ),
            f"job {job_id}: its start",
        )
        if started is None:
            return  # cancelled between the queue and here
        status, message, fields = self._extract(job) if job.kind == EXTRACT else self._run(job)
        self._persist(lambda: self.store.finish(job.id, status, message, **fields), f"job {job_id}: its end")

    def _reporter(self, job: Job):
        """The ``progress(phase, fraction, message, eta_s)`` a job's code calls: events in the store, at most 10
        a second within a phase; the worker's heartbeat."""
        last = [0.0]
        last_phase = [""]
        lost = [False]

        def report(phase: str, progress: float, message: str = "", eta_s: float | None = None) -> None:
            now = time.monotonic()
            self._last_beat = now
            if now - last[0] < 0.1 and progress < 1.0 and phase == last_phase[0]:
                return  # at most 10 events a second within a phase
            last_phase[0] = phase
            last[0] = now
            try:
                self.store.update(
                    job.id, phase=phase, progress=max(0.0, min(progress, 1.0)), message=message, eta_s=eta_s
                )
            except StorageError as exc:  # progress is not worth failing a job for: the next report may go in
                if not lost[0]:
                    log.warning("job %s: progress not recorded: %s", job.id, exc.message)
                lost[0] = True

        return report

    def _failure(self, job: Job, exc: Exception) -> str:
        """What a client reads of a job's failure (logged with its traceback)."""
        problem = self.files.storage_problem()  # a full disk shows as a broken pipe to the encoder …
        if problem is not None:  # the storage error names the data folder on purpose: the operator's fix
            message = problem.message
        else:  # an exception's text may name any of the server's files: clients read it, so names only
            message = hide_server_paths(_failure_message(exc), server_folders(self.settings))
        log.error("job %s failed: %s\n%s", job.id, message, traceback.format_exc())
        return message

    def _store_result(self, job: Job, made: Path) -> str:
        """Move a job's result file into the results folder: its name there. A :class:`StorageError` (logged)
        when the folder refuses it."""
        final = self.files.result(job.cache_key, job.kind)
        try:
            shutil.move(str(made), final)
        except OSError as exc:
            Path(made).unlink(missing_ok=True)
            error = storage_error(exc, final.parent)
            log.error("job %s failed: %s", job.id, error.message)
            raise error from None
        return final.name

    def _run(self, job: Job) -> tuple[str, str, dict]:
        """Render a job: its final (status, message, fields)."""
        backend = self.backends[job.backend]
        params = JobParams(**job.params)
        report = self._reporter(job)
        folder = self.files.job_dir(job.id)
        out = self.files.tmp() / f"{job.id}.mp4"
        try:
            motion = load_motion(folder / "motion.npz")
            with Image.open(folder / "reference.png") as im:
                image = im.convert("RGB")
            request = RenderRequest(motion, image, params.render_settings(), out)
            result = backend.run(request, report, lambda: self._cancelled(job.id))
        except Cancelled:
            out.unlink(missing_ok=True)
            backend.release()
            return CANCELLED, "cancelled", {}
        except Exception as exc:
            out.unlink(missing_ok=True)
            message = self._failure(job, exc)
            backend.release()
            return FAILED, message, {}
        finally:
            return_memory()
        try:
            stored = self._store_result(job, result.path)
        except StorageError as exc:
            return FAILED, exc.message, {}
        fields = dict(
            result=stored,
            frames=result.frames,
            fps=result.fps,
            width=result.size[0],
            height=result.size[1],
            warnings=result.warnings,
        )
        return SUCCEEDED, "done", fields

    def _video(self, job: Job) -> Path:
        """An extraction's video: the one file of its job's ``video`` folder, under the client's file name."""
        folder = self.files.job_dir(job.id) / "video"
        videos = [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
        if len(videos) != 1:
            raise FileNotFoundError(f"the video of job {job.id} is missing from its folder")
        return videos[0]

    def _extract(self, job: Job) -> tuple[str, str, dict]:
        """Extract the motion of a job's video: its final (status, message, fields)."""
        from mtvcrafter.extract import ExtractionCancelled, ExtractionError

        params = ExtractParams(**job.params)
        report = self._reporter(job)
        started = time.monotonic()

        def progress(phase: str, fraction: float, message: str = "") -> None:
            elapsed = time.monotonic() - started
            eta = elapsed * (1.0 - fraction) / fraction if 0.05 <= fraction < 1.0 and elapsed > 1.0 else None
            report(phase, fraction, message, eta)

        out = self.files.tmp() / f"{job.id}.npz"
        try:
            video = self._video(job)
            motion = self.extractor.run(video, params, progress, lambda: self._cancelled(job.id))
            motion.notes = tuple(hide_server_paths(n, server_folders(self.settings)) for n in motion.notes)
            save_motion(motion, out)
        except ExtractionCancelled:
            out.unlink(missing_ok=True)
            return CANCELLED, "cancelled", {}
        except ExtractionError as exc:  # the video or the model: one line for the client, no traceback needed
            out.unlink(missing_ok=True)
            message = hide_server_paths(" ".join(str(exc).split()), server_folders(self.settings))
            log.error("job %s failed: %s", job.id, message)
            return FAILED, message, {}
        except Exception as exc:
            out.unlink(missing_ok=True)
            return FAILED, self._failure(job, exc), {}
        finally:
            return_memory()
        try:
            stored = self._store_result(job, out)
        except StorageError as exc:
            return FAILED, exc.message, {}
        valid = motion.frame_valid
        seen = int(valid.sum()) if valid is not None else motion.num_frames
        height, width = motion.camera_image_size
        fields = dict(
            result=stored,
            frames=motion.num_frames,
            fps=motion.fps,
            width=width,
            height=height,
            warnings=motion.warnings(),
        )
        message = f"done: the performer was found in {seen} of {motion.num_frames} frames"
        return SUCCEEDED, message, fields


def _failure_message(exc: Exception) -> str:
    name = type(exc).__name__
    if name == "OutOfMemoryError" or "out of memory" in str(exc).lower():
        return "out of GPU memory: try a smaller size or fewer frames; the server goes on with the next job"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    return f"{name}: {text}"[:500]


def return_memory() -> None:
    """Give the memory a job freed back to the system (glibc keeps freed heap pages, so the server's resident
    size would swing by hundreds of MB between jobs without growing)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to do
        pass
