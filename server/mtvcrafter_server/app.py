"""The HTTP API (FastAPI). See README "HTTP API" for the routes; OpenAPI docs at ``/docs``."""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from mtvcrafter import __version__

from .backends import BACKENDS, PREFERENCE
from .config import ServerConfig
from .errors import ApiError
from .executor import DataFolder, InProcessExecutor
from .inputs import (
    JobParams,
    check_output_size,
    content_key,
    parse_params,
    read_image,
    read_motion,
    store_inputs,
)
from .security import SecurityMiddleware
from .store import CANCELLED, QUEUED, RUNNING, SUCCEEDED, TERMINAL, JobStore

log = logging.getLogger("mtvcrafter_server")

EVENT_POLL_S = 0.1
KEEPALIVE_S = 15.0


class BackendInfo(BaseModel):
    name: str
    available: bool
    reason: str
    description: str
    default: bool


class JobInfo(BaseModel):
    id: str
    status: str
    backend: str
    params: dict
    progress: float
    phase: str
    message: str
    eta_s: float | None
    frames: int
    fps: float
    width: int
    height: int
    cached: bool
    warnings: list[str]
    created: float
    started: float | None
    finished: float | None
    result_ready: bool
    queue_position: int | None = None


class Health(BaseModel):
    status: str
    version: str
    default_backend: str
    queued: int
    running: str | None


class TokenizeResult(BaseModel):
    frames: int
    latent_frames: int
    codes: list[list[int]]
    vq_loss: float
    mpjpe_mm: float
    joint_error_mm: list[float]
    warning: str | None
    reconstruction_mm: list[list[list[float]]] | None = None


def create_app(config: ServerConfig) -> FastAPI:
    files = DataFolder(config.data_dir)
    store = JobStore(files.root / "jobs.sqlite3")
    backends = {name: cls(config) for name, cls in BACKENDS.items()}
    if config.backend is not None:
        available, reason = backends[config.backend].status()
        if not available:  # a default that every job would be refused with
            raise RuntimeError(f"--backend {config.backend} is not available: {reason}")
    files.lock()  # one server per data folder: a second one would fail the first one's running job
    executor = InProcessExecutor(config, store, files, backends)

    def default_backend() -> str:
        if config.backend:
            return config.backend
        for name in PREFERENCE:
            if backends[name].status()[0]:
                return name
        return "preview"

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        failed, queued = store.recover()
        if failed:
            log.warning("%d job(s) were running when the server stopped; marked failed", len(failed))
        executor.start()
        for job_id in queued:
            executor.submit(job_id)
        yield
        executor.stop()
        store.close()

    app = FastAPI(
        title="MTVCrafter server",
        version=__version__,
        description="Animate a reference image with a 3-D motion: jobs, progress, cancel, results.",
        lifespan=lifespan,
    )
    app.state.store, app.state.executor, app.state.files, app.state.backends = store, executor, files, backends

    # -- errors -------------------------------------------------------------------------------------

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p not in ("body", "query", "path"))
        return JSONResponse(
            {"error": {"code": "invalid_request", "message": f"{where}: {first['msg']}", "field": where}},
            status_code=422,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        if isinstance(exc, PermissionError):  # a path that resolves outside the data folder
            return JSONResponse({"error": {"code": "forbidden", "message": "refused: outside the data folder"}}, 403)
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": {"code": "internal", "message": "internal error; see the server log"}}, 500)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"error": {"code": code, "message": str(exc.detail)}}, status_code=exc.status_code)

    def job_or_404(job_id: str):
        job = store.get(job_id)
        if job is None:
            raise ApiError(404, "job_not_found", f"no job {job_id[:64]!r}")
        return job

    def job_info(job) -> dict:
        info = job.public()
        info["queue_position"] = store.queue_position(job) if job.status == QUEUED else None
        return info

    # -- routes -------------------------------------------------------------------------------------

    @app.get("/v1/health", response_model=Health, tags=["server"])
    def health():
        queued = len(store.queued_ids())
        return {
            "status": "ok",
            "version": __version__,
            "default_backend": default_backend(),
            "queued": queued,
            "running": executor.current,
        }

    @app.get("/v1/backends", response_model=list[BackendInfo], tags=["server"])
    def list_backends():
        default = default_backend()
        out = []
        for name, backend in backends.items():
            available, reason = backend.status()
            out.append(
                {
                    "name": name,
                    "available": available,
                    "reason": reason,
                    "description": backend.description,
                    "default": name == default,
                }
            )
        return out

    @app.post("/v1/tokenize", response_model=TokenizeResult, tags=["motion"])
    def tokenize(
        motion: Annotated[UploadFile, File(description="our .npz or JSON motion")],
        reconstruction: bool = False,
    ):
        try:
            tokenizer = backends["preview"].tokenizer()
        except Exception as exc:  # a missing or unreadable checkpoint: the server's setting, not the request
            raise ApiError(503, "no_tokenizer", f"the configured 4DMoT checkpoint cannot be loaded: {exc}") from None
        if tokenizer is None:
            raise ApiError(
                503, "no_tokenizer", "no 4DMoT checkpoint configured: start the server with --tokenizer or --model-dir"
            )
        with tempfile.TemporaryDirectory(dir=files.tmp()) as tmp:
            parsed = read_motion(motion.file.read(), motion.filename or "", Path(tmp), config.max_frames)
        result = tokenizer.reconstruct(parsed.joints)
        warning = None
        if result.vq_loss > 0.1:
            warning = f"vq loss {result.vq_loss:.3f} > 0.1: the video model may render this motion poorly"
        return {
            "frames": parsed.num_frames,
            "latent_frames": int(result.codes.shape[0]),
            "codes": result.codes.tolist(),
            "vq_loss": result.vq_loss,
            "mpjpe_mm": result.mpjpe_mm,
            "joint_error_mm": [float(v) for v in result.joint_error_mm],
            "warning": warning,
            "reconstruction_mm": result.reconstruction_mm.round(2).tolist() if reconstruction else None,
        }

    @app.post("/v1/jobs", status_code=202, response_model=JobInfo, tags=["jobs"])
    def submit(
        motion: Annotated[UploadFile, File(description="our .npz, or JSON {joints: [[[x,y,z]×24]×T], fps}")],
        reference: Annotated[UploadFile, File(description="reference image (PNG, JPEG, WebP, BMP)")],
        params: Annotated[str | None, Form(description="JSON object of JobParams")] = None,
    ):
        settings: JobParams = parse_params(params)
        backend = settings.backend or default_backend()
        available, reason = backends[backend].status()
        if not available:
            raise ApiError(
                409, "backend_unavailable", f"backend {backend} is not available: {reason}", field="params.backend"
            )
        check_output_size(settings, backend, config.max_output_side)
        with tempfile.TemporaryDirectory(dir=files.tmp()) as tmp:
            parsed = read_motion(motion.file.read(), motion.filename or "", Path(tmp), config.max_frames)
        image = read_image(reference.file.read(), config.max_image_pixels)
        settings = settings.model_copy(update={"backend": backend})
        params_dict = settings.model_dump()
        key = content_key(parsed, image, params_dict, backends[backend].identity())
        # inputs first, then the job row: a job the store lists always has its files
        job_id = store.new_id()
        store_inputs(files.job_dir(job_id), parsed, image)
        cached = store.find_cached(key)
        if cached is not None and not files.result(key).is_file():
            cached = None
        if cached is not None:  # the same inputs rendered before: its result, at once
            facts = dict(
                frames=cached.frames, fps=cached.fps, width=cached.width, height=cached.height, warnings=cached.warnings
            )
        else:
            facts = dict(frames=parsed.num_frames, fps=parsed.fps, width=settings.width, height=settings.height)
        job = store.create(backend, params_dict, key, job_id=job_id, **facts)
        if cached is not None:
            message = "done (same inputs as an earlier job: its result)"
            return job_info(store.finish(job.id, SUCCEEDED, message, result=f"{key}.mp4", cached=True))
        executor.submit(job.id)
        return job_info(store.get(job.id))

    @app.get("/v1/jobs", response_model=list[JobInfo], tags=["jobs"])
    def list_jobs(limit: int = 50, status: str | None = None):
        limit = max(1, min(limit, 500))
        return [job_info(j) for j in store.list(limit, status)]

    @app.get("/v1/jobs/{job_id}", response_model=JobInfo, tags=["jobs"])
    def get_job(job_id: str):
        return job_info(job_or_404(job_id))

    @app.delete("/v1/jobs/{job_id}", response_model=JobInfo, tags=["jobs"])
    def cancel_job(job_id: str):
        job = job_or_404(job_id)
        if job.status == QUEUED:
            executor.cancel(job.id)  # in case the worker is taking it up right now
            ended = store.finish(job.id, CANCELLED, "cancelled before it started", only_if_status=QUEUED)
            job = ended or store.get(job.id)
        if job.status == RUNNING:
            executor.cancel(job.id)
            job = store.update(job.id, only_if_status=RUNNING, message="cancelling at the next step") or store.get(
                job.id
            )
        return job_info(job)

    @app.get("/v1/jobs/{job_id}/result", tags=["jobs"], response_class=FileResponse)
    def result(job_id: str):
        job = job_or_404(job_id)
        if job.status != SUCCEEDED or not job.result:
            raise ApiError(409, "no_result", f"job {job.id} is {job.status}; a result exists once it succeeded")
        path = files.inside(files.root / "results" / Path(job.result).name)
        if not path.is_file():
            raise ApiError(410, "result_gone", f"the result of job {job.id} was deleted from the server's data folder")
        return FileResponse(path, media_type="video/mp4", filename=f"mtvcrafter-{job.id}.mp4")

    @app.get("/v1/jobs/{job_id}/events", tags=["jobs"])
    async def events(job_id: str, request: Request):
        job = job_or_404(job_id)
        try:
            after = int(request.headers.get("last-event-id", "0") or 0)
        except ValueError:
            after = 0
        if not 0 <= after < 2**62:
            after = 0

        async def stream():
            nonlocal after
            last_sent = time.monotonic()
            yield "retry: 1000\n\n"
            while True:
                if await request.is_disconnected():
                    return  # the job goes on: only DELETE cancels
                batch = await asyncio.to_thread(store.events_after, job.id, after)
                for seq, data in batch:
                    after = seq
                    yield f"id: {seq}\nevent: {data['status']}\ndata: {json.dumps(data)}\n\n"
                    last_sent = time.monotonic()
                    if data["status"] in TERMINAL:
                        return
                if not batch:
                    current = await asyncio.to_thread(store.get, job.id)
                    if current is not None and current.status in TERMINAL:
                        if not await asyncio.to_thread(store.events_after, job.id, after):
                            return
                if time.monotonic() - last_sent > KEEPALIVE_S:
                    yield ": keep-alive\n\n"
                    last_sent = time.monotonic()
                await asyncio.sleep(EVENT_POLL_S)

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    if config.allowed_origins:  # explicitly allowed browser origins get CORS headers (none by default)
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.allowed_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Last-Event-ID", "Content-Type"],
        )
    app.add_middleware(SecurityMiddleware, config=config)
    return app


def serve(config: ServerConfig, log_level: str = "info") -> None:
    import sys

    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The worker thread runs Python between GPU/CPU kernels; hand the interpreter over more often so
    # that requests are not kept waiting behind it (5 ms by default).
    sys.setswitchinterval(0.001)
    app = create_app(config)
    uvicorn.run(
        app, host=config.host, port=config.port, log_level=log_level, proxy_headers=False, timeout_graceful_shutdown=3
    )


__all__ = ["create_app", "serve"]
