"""Wiring: the store, data folder, executor and backends a server runs with, its routes, middleware and
lifespan. The routes are in :mod:`.api`; OpenAPI docs at ``/docs``."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from mtvcrafter import __version__
from mtvcrafter.backends import Backend, create_backends

from .api import api_router
from .api.docs import add_docs
from .api.errors import add_error_handlers
from .api.jobs import openapi_schema
from .api.security import SecurityMiddleware
from .jobs.executor import Executor, InProcessExecutor
from .jobs.extraction import Extractor
from .jobs.files import NO_SPACE, DataFolder, OutsideDataFolder, StorageError, storage_error
from .jobs.retention import Housekeeper
from .jobs.running import backend_config
from .jobs.store import JobStore
from .settings import Settings
from .timeouts import MAX_HEAD_BYTES, BodyDeadline, http_protocol

log = logging.getLogger("mtvcrafter_server")


def create_app(settings: Settings) -> FastAPI:
    files = DataFolder(settings.data_dir)
    store = JobStore(files.root / "jobs.sqlite3")
    backends = create_backends(backend_config(settings))
    if settings.backend is not None:
        available, reason = backends[settings.backend].status()
        if not available:  # a default that every job would be refused with
            raise RuntimeError(f"--backend {settings.backend} is not available: {reason}")
    files.lock()  # one server per data folder: a second one would fail the first one's running job
    extractor = Extractor(settings)  # the NLF model: loaded by the first extraction
    executor = create_executor(settings, store, files, backends, extractor)
    housekeeper = Housekeeper(settings, store, files)
    log.info("data folder: %s", files.root)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        failed, queued = store.recover()
        if failed:
            log.warning("%d job(s) were running when the server was killed; marked failed", len(failed))
        housekeeper.at_start()  # what a killed server left behind; the retention settings
        executor.start()
        for job_id in queued:
            executor.submit(job_id)
        housekeeper.start()
        yield
        housekeeper.stop()
        executor.stop()  # running jobs stop at their next step (a bounded wait) and are queued again
        store.close()

    app = FastAPI(
        title="MTVCrafter server",
        version=__version__,
        description="Animate a reference image with a 3-D motion: jobs, progress, cancel, results.",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc with their files served here (api.docs), not from a CDN
        redoc_url=None,
    )
    # what the routes' dependencies (api.deps) hand them
    app.state.settings, app.state.store, app.state.files = settings, store, files
    app.state.executor, app.state.backends, app.state.extractor = executor, backends, extractor
    add_error_handlers(app)
    add_storage_error_handlers(app, files)
    app.include_router(api_router)
    add_docs(app)
    app.openapi = lambda: openapi_schema(app)
    if settings.allowed_origins:  # explicitly allowed browser origins get CORS headers (none by default)
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.allowed_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Last-Event-ID", "Content-Type"],
        )
    app.add_middleware(BodyDeadline, seconds=settings.body_timeout_s)
    app.add_middleware(SecurityMiddleware, settings=settings)
    return app


def add_storage_error_handlers(app: FastAPI, files: DataFolder) -> None:
    """A write the data folder refuses is 507 (no room) or 503 with the folder and the fix, whichever route
    meets it; a path outside the data folder stays 403."""

    async def storage(request: Request, exc: StorageError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    async def os_error(request: Request, exc: OSError) -> JSONResponse:
        if isinstance(exc, OutsideDataFolder):
            return JSONResponse({"error": {"code": "forbidden", "message": "refused: outside the data folder"}}, 403)
        where = Path(str(exc.filename)) if exc.filename else None
        in_data = where is not None and where.resolve().is_relative_to(files.root)
        if in_data or exc.errno in NO_SPACE:
            error = storage_error(exc, where.parent if in_data else files.root)
            log.error("%s %s: %s", request.method, request.url.path, error.message)
            return JSONResponse(error.body(), status_code=error.status)
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": {"code": "internal", "message": "internal error; see the server log"}}, 500)

    app.add_exception_handler(StorageError, storage)
    app.add_exception_handler(OSError, os_error)


def create_executor(
    settings: Settings, store: JobStore, files: DataFolder, backends: dict[str, Backend], extractor: Extractor
) -> Executor:
    """What runs the jobs: a worker thread in this process, or replicas on a Ray cluster (Ray is imported only
    then)."""
    if settings.executor == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise RuntimeError("--executor ray needs Ray on this machine: pip install 'mtvcrafter[ray]'")
        from .jobs.ray_executor import RayExecutor

        executor = RayExecutor(settings, store, files, extractor)
        executor.connect()  # before the server answers: a cluster it cannot use stops it with the reason
        return executor
    return InProcessExecutor(settings, store, files, backends, extractor)


def serve(settings: Settings, log_level: str = "info") -> None:
    import sys

    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The worker thread runs Python between GPU/CPU kernels; hand the interpreter over more often so
    # that requests are not kept waiting behind it (5 ms by default).
    sys.setswitchinterval(0.001)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        proxy_headers=False,
        timeout_graceful_shutdown=3,
        # slow clients (slowloris): a deadline on a request's head and body, idle connections closed
        http=http_protocol(settings.header_timeout_s, settings.body_timeout_s),
        timeout_keep_alive=settings.keep_alive_s,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
    )


__all__ = ["backend_config", "create_app", "serve"]
