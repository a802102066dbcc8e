"""``/v1/jobs``: submit a render, follow it (state, server-sent events), cancel it, fetch its video."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, StreamingResponse

from ..jobs.keys import content_key
from ..jobs.store import CANCELLED, QUEUED, RUNNING, SUCCEEDED, TERMINAL, Job, JobStore
from .backends import default_backend
from .deps import BackendsDep, ExecutorDep, FilesDep, JobDep, SettingsDep, StoreDep
from .errors import ApiError
from .models import JobInfo, JobParams
from .uploads import check_settings, output_size, parse_params, read_image, read_motion, store_inputs

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
#: The ``params`` form field is JSON; its schema is JobParams (added to the components by :func:`openapi_schema`).
JOB_PARAMS_REF = {"$ref": "#/components/schemas/JobParams"}


def openapi_schema(app) -> dict:
    """FastAPI's schema with :class:`JobParams` among its components (a JSON form field is not a model to it)."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schema["components"]["schemas"]["JobParams"] = JobParams.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        app.openapi_schema = schema
    return app.openapi_schema


EVENT_POLL_S = 0.1
KEEPALIVE_S = 15.0


def job_info(store: JobStore, job: Job) -> dict:
    info = job.public()
    info["queue_position"] = store.queue_position(job) if job.status == QUEUED else None
    return info


@router.post("", status_code=202, response_model=JobInfo)
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
    with tempfile.TemporaryDirectory(dir=files.tmp()) as tmp:
        parsed = read_motion(motion.file.read(), motion.filename or "", Path(tmp), settings.max_frames)
    image = read_image(reference.file.read(), settings.max_image_pixels)
    job_params = job_params.model_copy(update={"backend": backend})
    params_dict = job_params.model_dump()
    render_settings = job_params.render_settings()
    width, height = output_size(backends[backend], render_settings, image, settings.max_output_side)
    identity = backends[backend].identity()
    variant = backends[backend].variant(render_settings)  # e.g. the LoRA file's stamp: a new file, a new video
    key = content_key(parsed, image, params_dict, identity if variant is None else f"{identity} variant={variant}")
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
        facts = dict(frames=parsed.num_frames, fps=parsed.fps, width=width, height=height)
    job = store.create(backend, params_dict, key, job_id=job_id, **facts)
    if cached is not None:
        message = "done (same inputs as an earlier job: its result)"
        return job_info(store, store.finish(job.id, SUCCEEDED, message, result=f"{key}.mp4", cached=True))
    executor.submit(job.id)
    return job_info(store, store.get(job.id))


@router.get("", response_model=list[JobInfo])
def list_jobs(store: StoreDep, limit: int = 50, status: str | None = None):
    limit = max(1, min(limit, 500))
    return [job_info(store, j) for j in store.list(limit, status)]


@router.get("/{job_id}", response_model=JobInfo)
def get_job(job: JobDep, store: StoreDep):
    return job_info(store, job)


@router.delete("/{job_id}", response_model=JobInfo)
def cancel_job(job: JobDep, store: StoreDep, executor: ExecutorDep):
    if job.status == QUEUED:
        executor.cancel(job.id)  # in case the worker is taking it up right now
        ended = store.finish(job.id, CANCELLED, "cancelled before it started", only_if_status=QUEUED)
        job = ended or store.get(job.id)
    if job.status == RUNNING:
        executor.cancel(job.id)
        job = store.update(job.id, only_if_status=RUNNING, message="cancelling at the next step") or store.get(job.id)
    return job_info(store, job)


@router.get("/{job_id}/result", response_class=FileResponse)
def result(job: JobDep, files: FilesDep):
    if job.status != SUCCEEDED or not job.result:
        raise ApiError(409, "no_result", f"job {job.id} is {job.status}; a result exists once it succeeded")
    path = files.inside(files.root / "results" / Path(job.result).name)
    if not path.is_file():
        raise ApiError(410, "result_gone", f"the result of job {job.id} was deleted from the server's data folder")
    return FileResponse(path, media_type="video/mp4", filename=f"mtvcrafter-{job.id}.mp4")


@router.get("/{job_id}/events")
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
