"""Jobs on a Ray cluster (``mtvcrafter serve --executor ray``): one warm model replica per GPU, on as many machines
as the cluster has, behind the same :class:`~.executor.Executor` seam as the in-process worker.

What runs where:

- the server's process (the Ray driver) keeps the API, the job store, the data folder and the queue: one worker
  thread per replica takes the next queued job (submission order) when its replica is free, sends it the job's
  input files, writes the progress its replica streams back into the store (events, ETA, heartbeats), forwards a
  cancel, and stores the result file its replica returns;
- each replica (a Ray actor holding ``gpus_per_replica`` GPUs and one CPU) keeps one server's backends and NLF
  model loaded between jobs and runs a job's code (:class:`.running.JobRunner`) on its inputs in a scratch folder
  of its own machine; nothing but Ray's object store passes between the machines (no shared folder).

A replica whose process dies (killed, out of memory, its machine gone) is replaced; the job it was running
fails ("submit it again", as a job running when the server is killed does), and a job it had not started yet runs
on the replacement. A clean stop of the server tells the replicas to cancel their jobs and queues them again
(:meth:`.executor.QueueExecutor.stop`) before it ends the replicas. Ray is imported by this module only: a server
with the local executor never loads it.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import shutil
import tempfile
import threading
import time
import traceback
from pathlib import Path

import ray
from ray import exceptions as ray_errors

from mtvcrafter.backends import Progress, create_backends

from ..settings import Settings
from .executor import INTERNAL, ExecutorUnavailable, QueueExecutor, Stopping, Worker
from .extraction import Extractor
from .files import NO_SPACE, RESULT_SUFFIX, DataFolder, StorageError, probe, storage_error
from .running import JobRunner, Outcome, Throttle, TokenizerUnavailable, backend_config
from .store import FAILED, Job, JobStore

log = logging.getLogger("mtvcrafter_server")

#: the Ray namespace the server's replicas live in
NAMESPACE = "mtvcrafter"
#: how long the server waits at start for its replicas (a replica the cluster cannot place yet joins later)
STARTUP_S = 120.0
#: how long a tokenize request waits for a replica's answer
TOKENIZE_S = 120.0
#: how many times a job a replica never started is given to a replacement before it fails
STARTS = 3
#: what a job whose replica died while running it ends with
REPLICA_LOST = (
    "the Ray replica running this job stopped (its process was killed, ran out of memory, or its machine left the "
    "cluster); the server replaced it: submit the job again"
)
#: what a replica's machine may fail with besides the actor's death
LOST = (ray_errors.RayActorError, ray_errors.WorkerCrashedError, ray_errors.ObjectLostError)


class JobReplica:
    """One replica, a Ray actor: a server's backends and NLF model, loaded by the first job that needs them and
    kept; one job at a time (:meth:`run`), with cancels and tokenize requests answered beside it."""

    def __init__(self, settings: Settings):
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        self.settings = settings
        self.backends = create_backends(backend_config(settings))
        self.extractor = Extractor(settings)
        self.scratch = Path(tempfile.mkdtemp(prefix="mtvcrafter-replica-"))
        self.runner = JobRunner(settings, self.backends, self.extractor, self._storage_problem)
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()

    def _storage_problem(self) -> StorageError | None:
        exc = probe(self.scratch)
        if exc is None:
            return None
        where = f"{self.scratch} on the Ray node {ray.util.get_node_ip_address()}"
        return StorageError(
            507 if exc.errno in NO_SPACE else 503,
            "insufficient_storage" if exc.errno in NO_SPACE else "storage_error",
            f"a replica cannot write in {where} ({exc.strerror or exc}): free space on that machine's disk, or give "
            "its Ray worker another temporary folder (TMPDIR)",
        )

    def ready(self) -> dict:
        """Where this replica runs: its process, its machine, the GPUs Ray gave it."""
        return {"pid": os.getpid(), "node": ray.util.get_node_ip_address(), "gpus": [str(g) for g in ray.get_gpu_ids()]}

    def cancel(self, job_id: str) -> None:
        with self._lock:
            self._cancelled.add(job_id)

    def tokenize(self, joints_mm, reconstruction: bool) -> dict:
        try:
            return {"answer": self.runner.tokenize(joints_mm, reconstruction)}
        except TokenizerUnavailable as exc:
            return {"unavailable": exc.message}

    def run(self, job: Job, inputs: dict[str, bytes]):
        """Run ``job`` on its input files (``inputs``: path in its folder → bytes). Yields ``("started", pid)``,
        then ``("progress", phase, fraction, message, eta_s)`` (at most 10 a second within a phase), then
        ``("end", outcome, result bytes or None)``."""
        yield ("started", os.getpid())
        folder = self.scratch / job.id
        events: queue.Queue = queue.Queue()
        throttle = Throttle()

        def report(phase: str, progress: float, message: str = "", eta_s: float | None = None) -> None:
            if throttle.passes(phase, progress):
                events.put(("progress", phase, progress, message, eta_s))

        def cancelled() -> bool:
            with self._lock:
                return job.id in self._cancelled

        def work() -> None:
            try:
                for name, data in inputs.items():
                    path = folder / name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
                outcome = self.runner.run(job, folder, self.scratch, report, cancelled)
            except OSError as exc:
                problem = self._storage_problem()
                outcome = Outcome(FAILED, problem.message if problem else storage_error(exc, self.scratch).message)
            except BaseException:  # the replica goes on with the next job whatever this one did
                log.error("job %s: unexpected failure\n%s", job.id, traceback.format_exc())
                outcome = Outcome(FAILED, INTERNAL)
            events.put(("end", outcome))

        worker = threading.Thread(target=work, name=f"job-{job.id[:8]}", daemon=True)
        worker.start()
        try:
            while (item := events.get())[0] != "end":
                yield item
            outcome: Outcome = item[1]
            data = None
            if outcome.made is not None:
                data = Path(outcome.made).read_bytes()
                Path(outcome.made).unlink(missing_ok=True)
            yield (
                "end",
                Outcome(outcome.status, outcome.message, outcome.fields, None, outcome.extractor_failure),
                data,
            )
        finally:
            worker.join()
            shutil.rmtree(folder, ignore_errors=True)
            with self._lock:
                self._cancelled.discard(job.id)


class Replica(Worker):
    """A worker thread of the server and the Ray actor it hands its jobs to."""

    def __init__(self, name: str):
        super().__init__(name)
        self.ready = False
        self.actor = None
        self.ready_ref = None
        self.launched = 0.0
        #: where it runs: "pid P on NODE"
        self.where = ""


class RayExecutor(QueueExecutor):
    """One worker thread per Ray replica; see the module's description."""

    #: a replica passes on at most 10 progress events a second within a phase already
    throttle_progress = False

    def __init__(self, settings: Settings, store: JobStore, files: DataFolder, extractor: Extractor):
        super().__init__(settings, store, files, extractor)
        self._actor_class = None
        self._actor_options: dict = {}
        self._count = 0
        self._own_instance = False
        self._replicas: list[Replica] = []
        self._turn = 0

    # -- the cluster --------------------------------------------------------------------------------

    def connect(self) -> None:
        """Join the cluster (or start this server's own Ray instance) and decide the replicas: their number and
        what each holds. A :class:`RuntimeError` saying why when that is not possible."""
        settings = self.settings
        if settings.ray_address is None:
            # Ray has no way to keep its ports on loopback: its token authentication (on by default for an instance
            # ray.init starts) guards them. A fresh token per server, kept in its processes' environment rather
            # than written to ~/.ray, unless the user gave one.
            if not any(os.environ.get(name) for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")):
                os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
            cpus = os.cpu_count() or 1
            if isinstance(settings.replicas, int):
                cpus = max(cpus, settings.replicas)  # one CPU each: N CPU replicas always fit
            # "local": a new instance, never one a `ray start` on this machine runs
            options = dict(address="local", num_cpus=cpus, num_gpus=settings.ray_gpus)
            self._own_instance = True
        else:
            options = dict(address=settings.ray_address)
        try:
            context = ray.init(
                namespace=NAMESPACE,
                include_dashboard=False,  # no dashboard, no job API (a cluster's are its own: see the README)
                configure_logging=False,
                log_to_driver=True,  # the replicas' log lines show in the server's log
                **options,
            )
        except Exception as exc:  # noqa: BLE001 - every reason is shown as the reason
            where = "start a Ray instance" if self._own_instance else f"join the Ray cluster at {settings.ray_address}"
            raise RuntimeError(f"--executor ray: could not {where}: {' '.join(str(exc).split())[:500]}") from None
        if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":  # Ray sets it where it turned the token on
            log.warning(
                "Ray: no token authentication (RAY_AUTH_MODE=token and the same RAY_AUTH_TOKEN on every machine): "
                "anyone who reaches the cluster's ports can run code on its machines"
            )
        resources = ray.cluster_resources()
        gpus, per = float(resources.get("GPU", 0.0)), settings.gpus_per_replica
        use_gpus = gpus >= per
        if settings.replicas == "auto":
            self._count = int(gpus // per) if use_gpus else 1
        else:
            self._count = settings.replicas
        self._actor_options = dict(num_cpus=1, num_gpus=per if use_gpus else 0, max_concurrency=4, max_restarts=0)
        self._actor_class = ray.remote(JobReplica)
        holds = f"{per:g} GPU" if use_gpus else "the CPU (the cluster has no GPU)"
        log.info(
            "Ray: %s (GCS %s; %g CPUs, %g GPUs); %d replica(s), each on %s",
            "this server's own instance, dashboard and job API off, token required"
            if self._own_instance
            else "cluster",
            context.address_info.get("gcs_address", "?"),
            resources.get("CPU", 0.0),
            gpus,
            self._count,
            holds,
        )
        if use_gpus and self._count * per > gpus:
            log.warning(
                "Ray: %d replicas of %g GPU need %g GPUs, the cluster has %g now: the others start when GPUs join",
                self._count,
                per,
                self._count * per,
                gpus,
            )
        try:
            self._replicas = self._start_replicas()
        except RuntimeError:
            ray.shutdown()
            raise

    def _launch(self, replica: Replica) -> None:
        replica.actor = self._actor_class.options(**self._actor_options).remote(self.settings)
        replica.ready_ref = replica.actor.ready.remote()
        replica.ready, replica.launched = False, time.monotonic()

    def _made_ready(self, replica: Replica, info: dict) -> None:
        replica.ready, replica.problem = True, None
        gpus = f", GPU {','.join(info['gpus'])}" if info["gpus"] else ""
        replica.where = f"pid {info['pid']} on {info['node']}{gpus}"
        log.info("Ray: %s ready (%s)", replica.name, replica.where)

    def _make_workers(self) -> list[Worker]:
        return list(self._replicas)

    def _start_replicas(self) -> list[Replica]:
        """The replicas, started: those the cluster places within :data:`STARTUP_S` are ready, the others start
        in the background (a :class:`RuntimeError` when none can)."""
        replicas = [Replica(f"replica {k + 1}") for k in range(self._count)]
        for replica in replicas:
            self._launch(replica)
        refs = [r.ready_ref for r in replicas]
        per = self._actor_options["num_gpus"]
        fit = int(ray.cluster_resources().get("GPU", 0.0) // per) if per else len(refs)  # the GPUs there are now
        done, _ = ray.wait(refs, num_returns=max(1, min(fit, len(refs))), timeout=STARTUP_S)
        for replica in replicas:
            if replica.ready_ref in done:
                try:
                    self._made_ready(replica, ray.get(replica.ready_ref))
                except ray_errors.RayError as exc:
                    replica.problem = f"{replica.name} could not start: {_short(exc)}"
                    log.error("Ray: %s", replica.problem)
        if not any(r.ready for r in replicas):
            problems = "; ".join(r.problem for r in replicas if r.problem) or (
                f"none started within {STARTUP_S:.0f} s: the cluster offers {ray.cluster_resources()} and each replica "
                f"asks for {self._actor_options['num_gpus']:g} GPU and 1 CPU"
            )
            for replica in replicas:
                ray.kill(replica.actor)
            raise RuntimeError(f"--executor ray: no replica could start: {problems}")
        return replicas

    def _prepare(self, worker: Worker) -> None:
        """Before a replica's next job: wait until it is ready (started anew if it could not start)."""
        replica: Replica = worker  # type: ignore[assignment]
        delay = 1.0
        while not replica.ready and not self._stopping.is_set():
            try:
                self._made_ready(replica, ray.get(replica.ready_ref, timeout=1.0))
            except ray_errors.GetTimeoutError:
                waited = time.monotonic() - replica.launched
                if waited > 10:
                    replica.problem = (
                        f"{replica.name} is waiting {waited:.0f} s for the cluster to place it "
                        f"({self._actor_options['num_gpus']:g} GPU, 1 CPU)"
                    )
            except ray_errors.RayError as exc:
                if self._stopping.is_set():
                    return  # killed by stop()
                replica.problem = f"{replica.name} could not start: {_short(exc)}; trying again"
                log.error("Ray: %s", replica.problem)
                if self._stopping.wait(delay):
                    return
                delay = min(delay * 2, 30.0)
                self._launch(replica)

    def _replace(self, replica: Replica, exc: BaseException) -> None:
        log.error("Ray: %s (%s) stopped: %s; starting a replacement", replica.name, replica.where, _short(exc))
        try:
            ray.kill(replica.actor)
        except Exception:  # noqa: BLE001 - gone already
            pass
        self._launch(replica)

    def stop(self) -> None:
        super().stop()  # the replicas' jobs stop at their next step (or not in time) and are queued again
        for replica in self.workers:
            try:
                ray.kill(replica.actor)  # what still runs of a job stops with its replica
            except Exception:  # noqa: BLE001 - gone already
                pass
        deadline = time.monotonic() + 2.0
        for replica in self.workers:  # their threads end as their replicas go
            if replica.thread is not None:
                replica.thread.join(timeout=max(0.0, deadline - time.monotonic()))
        ray.shutdown()

    def _interrupt(self) -> None:
        """As the server stops: each replica stops its job at the next step, as on a cancel."""
        for replica in self.workers:
            job_id = replica.current
            if job_id is not None and replica.actor is not None:
                replica.actor.cancel.remote(job_id)

    # -- jobs -----------------------------------------------------------------------------------------

    def cancel(self, job_id: str) -> None:
        super().cancel(job_id)
        for replica in self.workers:
            if replica.current == job_id and replica.actor is not None:
                replica.actor.cancel.remote(job_id)

    def _abandon(self, worker: Worker, job_id: str) -> None:
        """The server's thread of a replica stopped while that replica ran ``job_id``: the replica stops it (and
        then takes the next job from the thread that replaces this one)."""
        replica: Replica = worker  # type: ignore[assignment]
        if replica.actor is not None:
            replica.actor.cancel.remote(job_id)

    def _inputs(self, job: Job) -> dict[str, bytes]:
        folder = self.files.job_dir(job.id)
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    def _execute(self, worker: Worker, job: Job, report: Progress) -> Outcome:
        replica: Replica = worker  # type: ignore[assignment]
        inputs = self._inputs(job)
        for _ in range(STARTS):
            started = False
            try:
                for ref in replica.actor.run.options(num_returns="streaming").remote(job, inputs):
                    item = ray.get(ref)
                    if item[0] == "progress":
                        report(*item[1:])
                    elif item[0] == "started":
                        started = True
                        replica.last_beat = time.monotonic()
                        log.info("job %s runs on %s (%s)", job.id, replica.name, replica.where)
                        if self._cancelled(job.id):  # cancelled while it was handed over
                            replica.actor.cancel.remote(job.id)
                    else:
                        return self._received(job, item[1], item[2])
            except LOST as exc:
                if self._stopping.is_set():
                    raise Stopping from None
                self._replace(replica, exc)
                if started:
                    return Outcome(FAILED, REPLICA_LOST)
                self._prepare(replica)  # it never started: on the replacement
                if self._stopping.is_set():
                    raise Stopping from None
                continue
            except ray_errors.RayError:
                if self._stopping.is_set():
                    raise Stopping from None
                log.error("job %s: unexpected failure on %s\n%s", job.id, replica.name, traceback.format_exc())
                return Outcome(FAILED, INTERNAL)
            log.error("job %s: %s ended its stream without an outcome", job.id, replica.name)
            return Outcome(FAILED, INTERNAL)
        return Outcome(
            FAILED, f"no Ray replica could start this job ({STARTS} tried, each stopped); see the server log"
        )

    def _received(self, job: Job, outcome: Outcome, data: bytes | None) -> Outcome:
        """A replica's outcome, its result written into the data folder's ``tmp``."""
        if data is None:
            return outcome
        made = self.files.tmp() / f"{job.id}{RESULT_SUFFIX[job.kind]}"
        try:
            made.write_bytes(data)
        except OSError as exc:
            made.unlink(missing_ok=True)
            error = storage_error(exc, self.files.tmp())
            log.error("job %s failed: %s", job.id, error.message)
            return Outcome(FAILED, error.message)
        return Outcome(outcome.status, outcome.message, outcome.fields, made, outcome.extractor_failure)

    # -- tokenize --------------------------------------------------------------------------------------

    def tokenize(self, joints_mm, reconstruction: bool = False) -> dict:
        """On a replica: an idle one first (the tokenizer is small: a busy one answers beside its job)."""
        ready = [r for r in self.workers if r.ready]
        self._turn += 1
        ready = ready[self._turn % len(ready) :] + ready[: self._turn % len(ready)] if ready else []
        for replica in sorted(ready, key=lambda r: r.current is not None):
            try:
                answer = ray.get(replica.actor.tokenize.remote(joints_mm, reconstruction), timeout=TOKENIZE_S)
            except ray_errors.GetTimeoutError:
                raise ExecutorUnavailable(f"no Ray replica answered within {TOKENIZE_S:.0f} s; try again") from None
            except LOST:
                continue  # its worker replaces it at its next job
            if "unavailable" in answer:
                raise TokenizerUnavailable(answer["unavailable"])
            return answer["answer"]
        raise ExecutorUnavailable("no Ray replica is running now (starting, or being replaced); try again shortly")


def _short(exc: BaseException) -> str:
    """The first line of a Ray error, without its traceback."""
    text = " ".join(str(exc).strip().splitlines()[:1]) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
