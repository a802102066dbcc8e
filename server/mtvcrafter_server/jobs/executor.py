"""Executing jobs. The API, the job store and the files talk to an :class:`Executor`: jobs wait in one queue, in
the order they were submitted, and worker threads take them as they get free, one thread per place jobs run. The
in-process executor has one worker thread running jobs in the server's process (one GPU, models kept warm); the
Ray executor (:mod:`.ray_executor`) has one per Ray replica, each handing its job to its replica. Both run the same
job code (:mod:`.running`) and record the same things in the same store and data folder.

A worker outlives anything a job or the store does: a job that fails fails alone; a job's progress is recorded
when the store takes it (a lost progress event changes nothing); a job's start and end are recorded when the store
takes them, the worker waiting (and saying so in ``/v1/health``) while it does not.

A worker thread that ends all the same (something that is not an ``Exception`` escapes a job's code, such as a
``SystemExit`` or ``KeyboardInterrupt`` raised in a library, or a fault of the worker's own) is replaced, as the Ray
executor replaces a replica whose process died: the job it was running fails with :data:`WORKER_LOST` (never
re-queued: a job that ends its worker would end the next one too) and a new thread takes the queue. A worker that
stops more than :data:`RESTARTS_AT_ONCE` times within :data:`RESTART_WINDOW_S` is replaced after a wait that doubles
each time (:data:`RESTART_DELAY_S`); ``/v1/health`` says ``restarting`` meanwhile, and counts the restarts.

A server that stops cleanly (Ctrl-C, SIGTERM: :meth:`QueueExecutor.stop`) interrupts its running jobs as a cancel
would, at their next step, and puts them back in the queue (:data:`INTERRUPTED`): the next start runs them again from
the start, in their original order. A job that has not stopped within :data:`STOP_WAIT_S` is put back all the same
(the process ends). Only a server that is killed leaves jobs ``running``, which its next start fails.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
import traceback
from pathlib import Path

from mtvcrafter.backends import Backend, Progress

from ..paths import hide_server_paths, server_folders
from ..settings import Settings
from .extraction import Extractor
from .files import DataFolder, StorageError, storage_error
from .running import JobRunner, Outcome, Throttle
from .store import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, Job, JobStore

log = logging.getLogger("mtvcrafter_server")


class Executor:
    """What the API needs from whatever runs jobs."""

    #: the id of a job running now (None: none)
    current: str | None = None

    def submit(self, job_id: str) -> None:
        raise NotImplementedError

    def cancel(self, job_id: str) -> None:
        """Ask a running job to stop at its next step (queued jobs are cancelled by the store)."""
        raise NotImplementedError

    def tokenize(self, joints_mm, reconstruction: bool = False) -> dict:
        """The answer of ``POST /v1/tokenize`` for ``joints_mm`` ``(T, 24, 3)``, computed where the models are
        (:meth:`.running.JobRunner.tokenize`)."""
        raise NotImplementedError

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def health(self) -> dict:
        """The workers' state for ``/v1/health``: ``worker`` (idle, running, stalled, waiting for storage, waiting
        for a replica, restarting, or dead), ``last_progress_s`` (seconds since the running job last reported; None
        when idle), ``worker_error`` (why it waits, or died; None), ``worker_restarts`` (worker threads replaced
        since the server started) and ``worker_restart_reason`` (why the last one stopped; None)."""
        return {
            "worker": "running" if self.current else "idle",
            "last_progress_s": None,
            "worker_error": None,
            "worker_restarts": 0,
            "worker_restart_reason": None,
        }


class ExecutorUnavailable(Exception):
    """The executor cannot answer a request now (no Ray replica answers): the message says why."""


class Stopping(Exception):
    """The server stops while a worker waits for the store."""


INTERNAL = "internal error; see the server log"
#: how long a worker waits between tries of a write the store refused (doubling up to the last)
RETRY_S = (0.25, 5.0)
#: a worker thread that stops is replaced at once this many times within :data:`RESTART_WINDOW_S` seconds; after
#: that, each replacement waits twice as long as the one before, from the first of :data:`RESTART_DELAY_S` up to the
#: last
RESTARTS_AT_ONCE = 2
RESTART_WINDOW_S = 600.0
RESTART_DELAY_S = (5.0, 300.0)
#: what a job whose worker thread stopped while running it ends with ({why}: the exception's type and first line)
WORKER_LOST = (
    "the server's job worker stopped while running this job ({why}); the server replaced the worker: submit the job "
    "again"
)
#: how long a clean stop waits for the running jobs to reach their next step (seconds); a job still running then is
#: put back in the queue all the same
STOP_WAIT_S = 5.0
#: what a job the server's clean stop interrupted says while it waits in the queue, and as it starts again
INTERRUPTED = "interrupted by a server stop: it runs again from the start when the server starts"
RUN_AGAIN = "running again from the start (a server stop interrupted it)"


class Worker:
    """One worker thread: the job it runs, when that job last reported, and whether it can take jobs (a Ray
    replica that is starting cannot: ``problem`` says why)."""

    def __init__(self, name: str):
        self.name = name
        self.thread: threading.Thread | None = None
        self.current: str | None = None
        self.last_beat = time.monotonic()
        self.ready = True
        self.problem: str | None = None
        #: a replacement thread's first duty: (the job its predecessor was running or None, why it stopped)
        self.lost: tuple[str | None, str] | None = None
        #: when a replacement thread takes jobs (time.monotonic()); None: it does
        self.restart_at: float | None = None


class QueueExecutor(Executor):
    """Jobs in one queue, in submission order, taken by worker threads as they get free; each records its job's
    start, progress and end in the store. Subclasses say which workers there are and where a job's code runs
    (:meth:`_execute`)."""

    #: whether the store takes at most 10 progress events a second within a phase (False: they come throttled)
    throttle_progress = True

    def __init__(self, settings: Settings, store: JobStore, files: DataFolder, extractor: Extractor):
        self.settings = settings
        self.store = store
        self.files = files
        self.extractor = extractor
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._cancel: set[str] = set()
        self._cancel_lock = threading.Lock()
        self._stopping = threading.Event()
        self.workers: list[Worker] = []
        #: what the workers wait for when they are not running a job's code: None, or "waiting for storage"
        self._waiting: str | None = None
        #: the storage error they wait on, or why no worker could be started in place of one that stopped
        self._error: str | None = None
        #: worker threads replaced since the server started, and why the last one stopped
        self.restarts = 0
        self.restart_reason: str | None = None
        #: when worker threads stopped within the last RESTART_WINDOW_S (time.monotonic())
        self._stops: list[float] = []
        self._restart_lock = threading.Lock()

    # -- what subclasses provide ---------------------------------------------------------------------

    def _make_workers(self) -> list[Worker]:
        return [Worker("worker")]

    def _prepare(self, worker: Worker) -> None:
        """Before a worker takes its next job (a Ray replica: started, or replaced)."""

    def _execute(self, worker: Worker, job: Job, report: Progress) -> Outcome:
        """Run ``job``'s code; a result it made is a file in the data folder's ``tmp``."""
        raise NotImplementedError

    def _abandon(self, worker: Worker, job_id: str) -> None:
        """The thread of ``worker`` stopped while running ``job_id``: stop what may still run of it elsewhere."""

    # -- the API's side ------------------------------------------------------------------------------

    @property
    def current(self) -> str | None:
        running = [w for w in self.workers if w.current is not None]
        return running[0].current if running else None

    def start(self) -> None:
        self._stopping.clear()
        self.workers = self._make_workers()
        for k, worker in enumerate(self.workers):
            name = "mtvcrafter-worker" if len(self.workers) == 1 else f"mtvcrafter-worker-{k + 1}"
            worker.thread = threading.Thread(target=self._work, args=(worker,), name=name, daemon=True)
            worker.thread.start()

    def _thread_stopped(self, worker: Worker, job_id: str | None, exc: BaseException) -> None:
        """Called by the thread of ``worker`` as ``exc`` ends it: a new thread in its place, at once or after the
        wait of a worker that keeps stopping; it fails ``job_id`` (the job this one was running) first."""
        why = self._describe(exc)
        if job_id is None and worker.lost is not None:  # a replacement that stopped before it failed that job
            job_id = worker.lost[0]
        where = f" while running job {job_id}" if job_id else ""
        now = time.monotonic()
        with self._restart_lock:
            self._stops = [t for t in self._stops if now - t < RESTART_WINDOW_S] + [now]
            stops = len(self._stops)
            delay = 0.0
            if stops > RESTARTS_AT_ONCE:
                delay = min(RESTART_DELAY_S[0] * 2 ** (stops - RESTARTS_AT_ONCE - 1), RESTART_DELAY_S[1])
            self.restarts += 1
            self.restart_reason = f"the job worker stopped ({why}){where}"
            worker.lost, worker.restart_at = (job_id, why), now + delay
            worker.current = None
        later = f"; {stops} stops within {RESTART_WINDOW_S / 60:.0f} min: its replacement waits {delay:.0f} s"
        log.critical(
            "the job worker stopped (%s)%s; starting a new one%s\n%s",
            why,
            where,
            later if delay else "",
            traceback.format_exc(),
        )
        if job_id is not None:
            try:
                self._abandon(worker, job_id)
            except Exception:  # noqa: BLE001 - the replacement matters more
                log.error("job %s: what ran of it could not be stopped\n%s", job_id, traceback.format_exc())
        if self._stopping.is_set():
            return
        assert worker.thread is not None
        try:
            thread = threading.Thread(target=self._work, args=(worker,), name=worker.thread.name, daemon=True)
            thread.start()
        except BaseException as error:  # noqa: BLE001 - e.g. no memory for another thread: health says so
            self._error = (
                f"the job worker stopped ({why}) and no new one could be started ({self._describe(error)}); "
                "restart the server"
            )
            log.critical("%s", self._error)
            return
        worker.thread = thread

    def _describe(self, exc: BaseException) -> str:
        """An exception's type and first line, without the server's folders (clients read it)."""
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        text = hide_server_paths(text, server_folders(self.settings))
        return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__

    def _replaced(self, worker: Worker) -> bool:
        """A replacement thread's first duty: fail the job its predecessor was running, wait out the delay of a
        worker that keeps stopping. False: the server stops."""
        job_id, why = worker.lost
        if job_id is not None:
            message = WORKER_LOST.format(why=why)
            for status in (RUNNING, QUEUED):  # queued: it stopped between taking the job and starting it
                done = self._persist(
                    lambda status=status: self.store.finish(job_id, FAILED, message, only_if_status=status),
                    f"job {job_id}: its end",
                )
                if done is not None:
                    break
        worker.lost = None
        wait = worker.restart_at - time.monotonic() if worker.restart_at is not None else 0.0
        if wait > 0 and self._stopping.wait(wait):
            return False
        worker.restart_at = None
        log.warning("a new job worker takes the queue")
        return True

    def stop(self) -> None:
        """A clean stop: running jobs stop at their next step and go back to the queue, as do those that have not
        stopped within :data:`STOP_WAIT_S`; queued jobs stay queued. The store stays open until this returns."""
        self._stopping.set()  # from now on a running job's cancelled() is true, and no worker takes a queued job
        try:
            self._interrupt()
        except Exception:  # noqa: BLE001 - the wait below still bounds the stop
            log.error("the running jobs could not be told to stop\n%s", traceback.format_exc())
        for _ in self.workers:
            self._queue.put(None)
        deadline = time.monotonic() + STOP_WAIT_S
        for worker in self.workers:
            if worker.thread is not None:
                worker.thread.join(timeout=max(0.0, deadline - time.monotonic()))
        for worker in self.workers:
            job_id = worker.current
            if job_id is not None and worker.thread is not None and worker.thread.is_alive():
                log.warning("job %s did not stop within %.0f s of the server's stop", job_id, STOP_WAIT_S)
                self._requeue(job_id)

    def _interrupt(self) -> None:
        """As the server stops: tell the running jobs to stop (the local worker's see :meth:`_cancelled`)."""

    def _requeue(self, job_id: str) -> None:
        """Put a job that a clean stop interrupted back in the queue (once: only while it is running)."""
        try:
            if self.store.requeue(job_id, INTERRUPTED) is not None:
                log.warning("job %s interrupted by the server's stop: queued again, it runs at the next start", job_id)
        except StorageError as exc:
            log.error("job %s: could not be queued again (%s); the next start fails it", job_id, exc.message)

    def submit(self, job_id: str) -> None:
        self._queue.put(job_id)

    def cancel(self, job_id: str) -> None:
        with self._cancel_lock:
            self._cancel.add(job_id)

    def _cancelled(self, job_id: str) -> bool:
        """Whether ``job_id``'s code should stop at its next step: a client cancelled it, or the server stops."""
        return self._stopping.is_set() or self._cancel_asked(job_id)

    def _cancel_asked(self, job_id: str) -> bool:
        with self._cancel_lock:
            return job_id in self._cancel

    def health(self) -> dict:
        state = self._state()
        return {**state, "worker_restarts": self.restarts, "worker_restart_reason": self.restart_reason}

    def _state(self) -> dict:
        stopped = [w for w in self.workers if w.thread is None or not w.thread.is_alive()]
        if not self.workers or stopped:
            error = self._error or "the job worker has stopped; restart the server"
            return {"worker": "dead", "last_progress_s": None, "worker_error": error}
        now = time.monotonic()
        restarting = [w for w in self.workers if w.restart_at is not None and w.restart_at > now]
        if restarting and not any(w.ready and w.restart_at is None for w in self.workers):
            wait = min(w.restart_at for w in restarting) - now
            with self._restart_lock:
                stops = len([t for t in self._stops if now - t < RESTART_WINDOW_S])
            error = (
                f"{self.restart_reason}; it stopped {stops} times within {RESTART_WINDOW_S / 60:.0f} min: a new "
                f"worker takes the queue in {max(wait, 0.0):.0f} s"
            )
            return {"worker": "restarting", "last_progress_s": None, "worker_error": error}
        if self._waiting is not None:
            return {"worker": self._waiting, "last_progress_s": None, "worker_error": self._error}
        running = [w for w in self.workers if w.current is not None]
        if not running and not any(w.ready for w in self.workers):
            problem = next((w.problem for w in self.workers if w.problem), None)
            return {"worker": "waiting for a replica", "last_progress_s": None, "worker_error": problem}
        if not running:
            return {"worker": "idle", "last_progress_s": None, "worker_error": None}
        quietest = max(running, key=lambda w: now - w.last_beat)
        quiet = now - quietest.last_beat
        if quiet > self.settings.stall_after_s:
            error = (
                f"job {quietest.current} has reported no progress for {quiet:.0f} s; cancel it or restart the server"
            )
            return {"worker": "stalled", "last_progress_s": round(quiet, 1), "worker_error": error}
        return {"worker": "running", "last_progress_s": round(quiet, 1), "worker_error": None}

    # -- a worker -------------------------------------------------------------------------------------

    def _work(self, worker: Worker) -> None:
        taken: str | None = None  # the job this thread handles now
        try:
            if worker.lost is not None and not self._replaced(worker):
                return
            while True:
                self._prepare(worker)
                if self._stopping.is_set():
                    return
                job_id = self._queue.get()
                if job_id is None or self._stopping.is_set():
                    return
                taken = job_id
                try:
                    self._take(worker, job_id)
                except Stopping:
                    return
                except Exception:  # the worker must survive anything a job does
                    log.error("job %s: unexpected failure\n%s", job_id, traceback.format_exc())
                    try:
                        self._persist(
                            lambda job_id=job_id: self.store.finish(job_id, FAILED, INTERNAL), f"job {job_id}: its end"
                        )
                    except Stopping:
                        return
                    except Exception:
                        log.error("job %s: its failure could not be recorded\n%s", job_id, traceback.format_exc())
                finally:
                    worker.current = None
                    self._waiting = None
                    with self._cancel_lock:
                        self._cancel.discard(job_id)
                taken = None
        except Stopping:
            return
        except BaseException as exc:  # the thread ends: another one takes its place
            if self._stopping.is_set():
                log.warning("the job worker stopped as the server stops (%s)", self._describe(exc))
                return
            self._thread_stopped(worker, taken, exc)

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
                    raise Stopping from None
                delay = min(delay * 2, RETRY_S[1])
                continue
            if failing:
                log.warning("%s: recorded; the job store takes writes again", what)
            self._waiting, self._error = None, None
            return value

    def _take(self, worker: Worker, job_id: str) -> None:
        job = self._persist(lambda: self.store.get(job_id), f"job {job_id}")
        if job is None or job.status != QUEUED:
            return  # cancelled while queued, or already handled
        worker.current = job_id
        worker.last_beat = time.monotonic()
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
        if self._stopping.is_set():
            return  # the server stops: the job stays queued
        again = {"message": RUN_AGAIN} if job.message == INTERRUPTED else {}
        started = self._persist(
            lambda: self.store.update(
                job.id,
                status=RUNNING,
                phase="starting",
                started=time.time(),
                progress=0.0,
                only_if_status=QUEUED,
                **again,
            ),
            f"job {job_id}: its start",
        )
        if started is None:
            return  # cancelled between the queue and here
        outcome = self._execute(worker, job, self._reporter(worker, job))
        if outcome.status == CANCELLED and self._stopping.is_set() and not self._cancel_asked(job.id):
            if outcome.made is not None:
                Path(outcome.made).unlink(missing_ok=True)
            self._requeue(job.id)  # stopped by the server's stop, not by a client: it runs again at the next start
            return
        if outcome.extractor_failure is not None:
            self.extractor.remember_failure(outcome.extractor_failure)
        status, message, fields = outcome.status, outcome.message, dict(outcome.fields)
        if status == SUCCEEDED:
            try:
                fields["result"] = self._store_result(job, outcome.made)
            except StorageError as exc:
                status, message, fields = FAILED, exc.message, {}
        elif outcome.made is not None:
            Path(outcome.made).unlink(missing_ok=True)
        # only while it runs: a job the server's stop has put back in the queue stays there
        self._persist(
            lambda: self.store.finish(job.id, status, message, only_if_status=RUNNING, **fields),
            f"job {job_id}: its end",
        )

    def _reporter(self, worker: Worker, job: Job) -> Progress:
        """The ``progress(phase, fraction, message, eta_s)`` a job's code calls: events in the store, at most 10
        a second within a phase; the worker's heartbeat."""
        throttle = Throttle()
        lost = [False]
        #: the last report the throttle held back: written when the next phase starts (a phase's end is kept)
        held: list[tuple | None] = [None]

        def write(phase: str, progress: float, message: str, eta_s: float | None) -> None:
            try:
                self.store.update(
                    job.id,
                    phase=phase,
                    progress=max(0.0, min(progress, 1.0)),
                    message=message,
                    eta_s=eta_s,
                    only_if_status=RUNNING,
                )
            except StorageError as exc:  # progress is not worth failing a job for: the next report may go in
                if not lost[0]:
                    log.warning("job %s: progress not recorded: %s", job.id, exc.message)
                lost[0] = True

        def report(phase: str, progress: float, message: str = "", eta_s: float | None = None) -> None:
            worker.last_beat = time.monotonic()
            if self.throttle_progress and not throttle.passes(phase, progress):
                held[0] = (phase, progress, message, eta_s)
                return
            if held[0] is not None and held[0][0] != phase:
                write(*held[0])
            held[0] = None
            write(phase, progress, message, eta_s)

        return report

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


class InProcessExecutor(QueueExecutor):
    """One worker thread running jobs in the server's own process, with the server's backends (one GPU, models
    kept warm)."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        files: DataFolder,
        backends: dict[str, Backend],
        extractor: Extractor | None = None,
    ):
        extractor = extractor if extractor is not None else Extractor(settings)
        super().__init__(settings, store, files, extractor)
        self.backends = backends
        self.runner = JobRunner(settings, backends, extractor, files.storage_problem)

    def _execute(self, worker: Worker, job: Job, report: Progress) -> Outcome:
        return self.runner.run(
            job, self.files.job_dir(job.id), self.files.tmp(), report, lambda: self._cancelled(job.id)
        )

    def tokenize(self, joints_mm, reconstruction: bool = False) -> dict:
        return self.runner.tokenize(joints_mm, reconstruction)
