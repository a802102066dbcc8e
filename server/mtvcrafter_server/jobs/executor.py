"""Executing jobs. The API, the job store and the files talk to an :class:`Executor`; the in-process one
runs one worker thread (one GPU, models kept warm). A distributed executor (e.g. Ray) implements the same
three methods and reads/writes the same store and data folder."""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
import traceback

from PIL import Image

from mtvcrafter.backends import Backend, Cancelled, RenderRequest
from mtvcrafter.motion import load_motion

from ..settings import Settings
from .files import DataFolder
from .params import JobParams
from .store import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, JobStore

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


class InProcessExecutor(Executor):
    def __init__(self, settings: Settings, store: JobStore, files: DataFolder, backends: dict[str, Backend]):
        self.settings = settings
        self.store = store
        self.files = files
        self.backends = backends
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._cancel: set[str] = set()
        self._cancel_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.current: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="mtvcrafter-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
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

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            job = self.store.get(job_id)
            if job is None or job.status != QUEUED:
                with self._cancel_lock:
                    self._cancel.discard(job_id)
                continue  # cancelled while queued, or already handled
            self.current = job_id
            try:
                self._run(job)
            except Exception:  # the worker must survive anything a job does
                log.error("job %s: unexpected failure\n%s", job_id, traceback.format_exc())
                self.store.finish(job_id, FAILED, "internal error; see the server log")
            finally:
                self.current = None
                with self._cancel_lock:
                    self._cancel.discard(job_id)

    def _run(self, job) -> None:
        backend = self.backends[job.backend]
        params = JobParams(**job.params)
        started = self.store.update(
            job.id, status=RUNNING, phase="starting", started=time.time(), progress=0.0, only_if_status=QUEUED
        )
        if started is None:
            return  # cancelled between the queue and here
        last = [0.0]
        last_phase = [""]

        def report(phase: str, progress: float, message: str = "", eta_s: float | None = None) -> None:
            now = time.monotonic()
            if now - last[0] < 0.1 and progress < 1.0 and phase == last_phase[0]:
                return  # at most 10 events a second within a phase
            last_phase[0] = phase
            last[0] = now
            self.store.update(job.id, phase=phase, progress=max(0.0, min(progress, 1.0)), message=message, eta_s=eta_s)

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
            self.store.finish(job.id, CANCELLED, "cancelled")
            backend.release()
            return
        except Exception as exc:
            out.unlink(missing_ok=True)
            message = _failure_message(exc)
            log.error("job %s failed: %s\n%s", job.id, message, traceback.format_exc())
            self.store.finish(job.id, FAILED, message)
            backend.release()
            return
        final = self.files.result(job.cache_key)
        shutil.move(str(result.path), final)
        self.store.finish(
            job.id,
            SUCCEEDED,
            "done",
            result=final.name,
            frames=result.frames,
            fps=result.fps,
            width=result.size[0],
            height=result.size[1],
            warnings=result.warnings,
        )


def _failure_message(exc: Exception) -> str:
    name = type(exc).__name__
    if name == "OutOfMemoryError" or "out of memory" in str(exc).lower():
        return "out of GPU memory: try a smaller size or fewer frames; the server goes on with the next job"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    return f"{name}: {text}"[:500]
