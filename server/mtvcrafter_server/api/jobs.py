"""``/v1/jobs``: submit a render, follow it (state, server-sent events), cancel it, fetch its video. An
extraction (``POST /v1/extract``) is followed, cancelled and fetched (its motion) by the same routes."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, StreamingResponse

from ..jobs.executor import Executor
from ..jobs.files import DataFolder, StorageError, storage_error
from ..jobs.keys import content_key
from ..jobs.store import CANCELLED, EXTRACT, QUEUED, RENDER, RUNNING, SUCCEEDED, TERMINAL, Job, JobStore
from .backends import default_backend
from .deps import BackendsDep, ExecutorDep, FilesDep, JobDep, SettingsDep, StoreDep
from .errors import COMMON_ERRORS, ApiError, error_responses
from .models import ExtractParams, JobInfo, JobParams
from .uploads import check_settings, output_size, parse_params, read_image, read_motion, store_inputs

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=error_responses(*COMMON_ERRORS))
#: what the routes of one job answer when its id names none
NO_SUCH_JOB = (404, "no job with this id")
#: one event of ``GET /v1/jobs/{job_id}/events`` (as OpenAPI 3.2 describes server-sent events)
JOB_EVENT = {
    "type": "object",
    "required": ["id", "event", "data"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "the event's number: Last-Event-ID"},
        "event": {"type": "string", "enum": sorted({QUEUED, RUNNING, *TERMINAL}), "description": "the job's status"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {
                "type": "object",
                "required": ["id", "status", "progress", "phase", "message", "eta_s"],
                "properties": {
                    "id": {"type": "string"},
                    "status": {"type": "string"},
                    "progress": {"type": "number", "minimum": 0, "maximum": 1},
                    "phase": {"type": "string"},
                    "message": {"type": "string"},
                    "eta_s": {"type": ["number", "null"]},
                },
            },
        },
        "retry": {"type": "integer", "description": "how long a client waits before it reconnects, in ms"},
    },
}
#: The ``params`` form field is JSON; its schema is JobParams (added to the components by :func:`openapi_schema`).
JOB_PARAMS_REF = {"$ref": "#/components/schemas/JobParams"}
#: what a result is served as, by the kind of job
RESULT_MEDIA = {RENDER: ("video/mp4", "mp4"), EXTRACT: ("application/octet-stream", "npz")}


def openapi_schema(app) -> dict:
    """FastAPI's schema with :class:`JobParams` and :class:`ExtractParams` among its components (a JSON form field
    is not a model to it)."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for model in (JobParams, ExtractParams):
            schema["components"]["schemas"][model.__name__] = model.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
        app.openapi_schema = schema
    return app.openapi_schema


EVENT_POLL_S = 0.1
KEEPALIVE_S = 15.0
#: an event stream re-reads the store at least this often, even when this process wrote nothing for its job
EVENT_REREAD_S = 2.0


def job_info(store: JobStore, job: Job) -> dict:
    info = job.public()
    info["queue_position"] = store.queue_position(job) if job.status == QUEUED else None
    return info


@router.post(
    "",
    status_code=202,
    response_model=JobInfo,
    summary="Submit a render",
    description="A motion, a reference image and the render's params: the job, queued (or, for inputs rendered "
    "before, already succeeded with that result).",
    responses=error_responses(
        (409, "the backend is not available on this server (params.backend)"),
        (
            413,
            "the upload is over the size limit, the motion has more frames or the image more pixels than "
            "this server takes",
        ),
        (
            415,
            "the motion is not our .npz or JSON (pickles are refused), or the reference is not a PNG, JPEG, "
            "WebP or BMP image",
        ),
        (422, "invalid motion, image or params: the message names the field"),
    ),
)
def submit(
    motion: Annotated[UploadFile, File(description="our .npz, or JSON {joints: [[[x,y,z]×24]×T], fps}")],
    reference: Annotated[UploadFile, File(description="reference image (PNG, JPEG, WebP, BMP)")],
    settings: SettingsDep,
    store: StoreDep,
    files: FilesDep,
    executor: ExecutorDep,
    backends: BackendsDep,
    params: Annotated[
        str | None,
        Form(
            description="JSON object of JobParams (the backend and the render settings)",
            json_schema_extra={"contentMediaType": "application/json", "contentSchema": JOB_PARAMS_REF},
        ),
    ] = None,
):
    job_params: JobParams = parse_params(params)
    backend = job_params.backend or default_backend(settings, backends)
    available, reason = backends[backend].status()
    if not available:
        raise ApiError(
            409, "backend_unavailable", f"backend {backend} is not available: {reason}", field="params.backend"
        )
    check_settings(backends[backend], job_params.render_settings(), settings.max_output_side)
    motion_bytes = motion.file.read()
    try:
        with tempfile.TemporaryDirectory(dir=files.tmp()) as tmp:
            parsed = read_motion(motion_bytes, motion.filename or "", Path(tmp), settings.max_frames)
    except OSError as exc:  # a full disk, a read-only folder: 507/503 naming it (the scratch folder is gone)
        raise storage_error(exc, files.tmp()) from None
    image = read_image(reference.file.read(), settings.max_image_pixels)
    job_params = job_params.model_copy(update={"backend": backend})
    params_dict = job_params.model_dump()
    render_settings = job_params.render_settings()
    width, height = output_size(backends[backend], render_settings, image, settings.max_output_side)
    identity = backends[backend].identity()
    variant = backends[backend].variant(render_settings)  # e.g. the LoRA file's stamp: a new file, a new video
    key = content_key(parsed, image, params_dict, identity if variant is None else f"{identity} variant={variant}")
    facts = dict(frames=parsed.num_frames, fps=parsed.fps, width=width, height=height)
    return start_job(
        store,
        files,
        executor,
        kind=RENDER,
        backend=backend,
        params=params_dict,
        key=key,
        facts=facts,
        save_inputs=lambda folder: store_inputs(folder, parsed, image),
    )


def start_job(
    store: JobStore,
    files: DataFolder,
    executor: Executor,
    *,
    kind: str,
    backend: str,
    params: dict,
    key: str,
    facts: dict,
    save_inputs: Callable[[Path], None],
) -> dict:
    """The job of a submission (a render or an extraction) whose inputs have cache key ``key``: the queued or
    running job of the same inputs (joined: one run), else a new job, succeeded at once with the result of an
    earlier job of the same inputs if there is one, else queued. ``save_inputs(folder)`` writes its inputs into
    its folder (before its row: a job the store lists always has its files)."""
    # The same inputs queued or running already: this submission joins that job (its id; one run).
    active = store.find_active(key)
    if active is not None:
        return job_info(store, active)
    job_id = store.new_id()
    folder = files.job_dir(job_id)
    try:
        save_inputs(folder)
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise storage_error(exc, folder.parent) from None
    cached = store.find_cached(key)
    if cached is not None and not files.result(key, kind).is_file():
        cached = None
    if cached is not None:  # the same inputs run before: its result, at once
        facts = dict(
            frames=cached.frames, fps=cached.fps, width=cached.width, height=cached.height, warnings=cached.warnings
        )
    try:
        if cached is not None:
            job, joined = store.create(backend, params, key, job_id=job_id, kind=kind, **facts), False
        else:  # atomic with any identical submission made meanwhile: one of them creates the job
            job, joined = store.create_or_join(backend, params, key, job_id=job_id, kind=kind, **facts)
    except StorageError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if joined:
        shutil.rmtree(folder, ignore_errors=True)
        return job_info(store, job)
    if cached is not None:
        message = "done (same inputs as an earlier job: its result)"
        try:
            done = store.finish(job.id, SUCCEEDED, message, result=files.result(key, kind).name, cached=True)
        except StorageError:
            executor.submit(job.id)  # recorded as queued: the worker finds the result when the store is back
            raise
        return job_info(store, done)
    executor.submit(job.id)
    return job_info(store, store.get(job.id))


@router.get(
    "",
    response_model=list[JobInfo],
    summary="List jobs",
    description="The most recent jobs first, `limit` of them (1 to 500), of one `status` if given.",
    responses=error_responses((422, "invalid query: the message names the parameter")),
)
def list_jobs(store: StoreDep, limit: int = 50, status: str | None = None):
    limit = max(1, min(limit, 500))
    return [job_info(store, j) for j in store.list(limit, status)]


@router.get(
    "/{job_id}",
    response_model=JobInfo,
    summary="A job's state",
    responses=error_responses(NO_SUCH_JOB, 422),
)
def get_job(job: JobDep, store: StoreDep):
    return job_info(store, job)


@router.delete(
    "/{job_id}",
    response_model=JobInfo,
    summary="Cancel a job",
    description="A queued job is cancelled at once, a running one at its next step; a finished one is left as it "
    "is. The job's state.",
    responses=error_responses(NO_SUCH_JOB, 422),
)
def cancel_job(job: JobDep, store: StoreDep, executor: ExecutorDep):
    if job.status == QUEUED:
        executor.cancel(job.id)  # in case the worker is taking it up right now
        ended = store.finish(job.id, CANCELLED, "cancelled before it started", only_if_status=QUEUED)
        job = ended or store.get(job.id)
    if job.status == RUNNING:
        executor.cancel(job.id)
        job = store.update(job.id, only_if_status=RUNNING, message="cancelling at the next step") or store.get(job.id)
    return job_info(store, job)


@router.get(
    "/{job_id}/result",
    response_class=FileResponse,
    summary="A job's result",
    description="A render's video (mp4); an extraction's motion (our .npz).",
    responses={
        200: {
            "description": "the video (mp4) of a render, the motion (our .npz) of an extraction",
            "content": {
                "video/mp4": {"schema": {"type": "string", "format": "binary"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        **error_responses(
            NO_SUCH_JOB,
            (409, "the job has not succeeded (yet): there is no result"),
            (410, "the result was deleted from the server's data folder"),
            422,
        ),
    },
)
def result(job: JobDep, files: FilesDep):
    if job.status != SUCCEEDED or not job.result:
        raise ApiError(409, "no_result", f"job {job.id} is {job.status}; a result exists once it succeeded")
    path = files.inside(files.root / "results" / Path(job.result).name)
    if not path.is_file():
        raise ApiError(410, "result_gone", f"the result of job {job.id} was deleted from the server's data folder")
    media_type, suffix = RESULT_MEDIA[job.kind]
    return FileResponse(path, media_type=media_type, filename=f"mtvcrafter-{job.id}.{suffix}")


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    summary="A job's progress as server-sent events",
    description="Events numbered by `id:`, named by `event:` (the job's status) with the job's progress as JSON "
    "in `data:`; the stream ends after the final status. `Last-Event-ID` resumes after that event.",
    # read from the request's headers by the route; declared here
    openapi_extra={
        "parameters": [
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "description": "resume after this event (the `id:` of the last one received)",
                "schema": {"type": "string"},
            }
        ]
    },
    responses={
        200: {
            "description": "server-sent events",
            "content": {"text/event-stream": {"schema": JOB_EVENT}},
        },
        **error_responses(NO_SUCH_JOB, 422),
    },
)
async def events(job: JobDep, store: StoreDep, request: Request):
    try:
        after = int(request.headers.get("last-event-id", "0") or 0)
    except ValueError:
        after = 0
    if not 0 <= after < 2**62:
        after = 0

    async def stream():
        nonlocal after
        last_sent = time.monotonic()
        seen, last_read = -1, 0.0
        yield "retry: 1000\n\n"
        while True:
            if await request.is_disconnected():
                return  # the job goes on: only DELETE cancels
            # the store is read when this process wrote an event for the job, and every few seconds anyway
            # (another writer): 200 idle streams cost no database reads
            if time.monotonic() - last_sent > KEEPALIVE_S:
                yield ": keep-alive\n\n"
                last_sent = time.monotonic()
            count = store.event_count(job.id)
            if count == seen and time.monotonic() - last_read < EVENT_REREAD_S:
                await asyncio.sleep(EVENT_POLL_S)
                continue
            seen, last_read = count, time.monotonic()
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
            await asyncio.sleep(EVENT_POLL_S)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
