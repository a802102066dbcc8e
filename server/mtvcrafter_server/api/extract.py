"""``POST /v1/extract``: a video → a job that extracts the performer's 3D motion with the server's NLF model.

The job is followed, cancelled and fetched (our motion ``.npz``) with the routes of ``/v1/jobs``; the same
video with the same params joins the job already running it, or gets the motion made before."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from fastapi import APIRouter, Request

from ..jobs.extraction import NLF, Extractor
from ..jobs.keys import video_key
from ..jobs.params import ExtractParams
from ..jobs.store import EXTRACT
from ..settings import Settings
from .deps import ExecutorDep, ExtractorDep, FilesDep, SettingsDep, StoreDep
from .errors import COMMON_ERRORS, ApiError, error_responses
from .jobs import start_job
from .models import JobInfo
from .uploads import parse_params
from .video_upload import PARAMS_PART, VIDEO_PART, VideoUpload, receive_video

router = APIRouter(prefix="/v1/extract", tags=["extract"], responses=error_responses(*COMMON_ERRORS))

#: the request body as OpenAPI describes it (the route reads the multipart stream itself, writing the video to
#: the data folder as it arrives)
REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": [VIDEO_PART],
                "properties": {
                    VIDEO_PART: {
                        "type": "string",
                        "contentMediaType": "application/octet-stream",
                        "description": "the driving video (mp4, mov, mkv, webm, avi …); its file name names the motion",
                    },
                    PARAMS_PART: {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": {"$ref": "#/components/schemas/ExtractParams"},
                        "description": "JSON object of ExtractParams (who to follow, smoothing, cleaning …)",
                    },
                },
            }
        }
    },
}


@router.post(
    "",
    status_code=202,
    response_model=JobInfo,
    summary="Extract a motion from a video",
    description="A video (and the extraction's params): the job (kind extract), queued (or, for a video extracted "
    "before with the same params, already succeeded with that motion). Follow it with /v1/jobs/{job_id}/events; "
    "its result is the motion as our .npz.",
    openapi_extra={"requestBody": REQUEST_BODY},
    responses=error_responses(
        (400, "the body is not a multipart body that can be parsed, or it was cut off"),
        (409, "this server does not extract motion from videos (no NLF model, or it cannot be loaded): the reason"),
        (
            413,
            "the video is larger, longer or has larger frames than this server takes (--max-video-mb, "
            "--max-video-s), or more frames than it takes in a motion",
        ),
        (415, "the video part is not a video (or holds no video stream)"),
        (422, "no video, an empty one, one whose header lacks what extraction needs, or invalid params"),
    ),
)
async def extract(
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    files: FilesDep,
    executor: ExecutorDep,
    extractor: ExtractorDep,
):
    available, reason = extractor.status()
    if not available:
        raise ApiError(409, "extract_unavailable", f"this server cannot extract motion from videos: {reason}")
    upload = await receive_video(request, files.tmp(), int(settings.max_video_mb * 2**20))
    try:
        return await asyncio.to_thread(submit, upload, settings, store, files, executor, extractor)
    finally:
        upload.remove()  # moved into the job's folder when it became one


def submit(upload: VideoUpload, settings: Settings, store, files, executor, extractor: Extractor) -> dict:
    """The job of a received video (the upload's checks, its cache key, the job)."""
    params: ExtractParams = parse_params(upload.params, ExtractParams)
    info = probe(upload.path, settings)
    params_dict = params.model_dump(mode="json")
    # clean is part of the key; left out when not asked, so that motions extracted before it existed are still found
    key_params = {name: value for name, value in params_dict.items() if name != "clean" or value is not None}
    key = video_key(upload.sha256, upload.filename, key_params, extractor.identity())
    facts = dict(frames=info.frames, fps=info.fps, width=info.width, height=info.height)

    def save_inputs(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        os.replace(upload.path.parent, folder / "video")  # the upload's own folder: the same disk, no copy

    return start_job(
        store,
        files,
        executor,
        kind=EXTRACT,
        backend=NLF,
        params=params_dict,
        key=key,
        facts=facts,
        save_inputs=save_inputs,
    )


def probe(path: Path, settings: Settings):
    """The video's header, checked against this server's limits: 415 for what is not a video, 413 over a limit,
    422 for a header that lacks what extraction needs."""
    from mtvcrafter.extract import ExtractionError, probe_video

    try:
        info = probe_video(path, max_pixels=settings.max_video_pixels)
    except ExtractionError as exc:
        if exc.field == "frame size":
            raise ApiError(413, "video_too_large", str(exc), field=VIDEO_PART) from None
        if exc.field is None:
            raise ApiError(415, "unsupported_video", str(exc), field=VIDEO_PART) from None
        raise ApiError(422, "invalid_video", str(exc), field=VIDEO_PART) from None
    name = path.name
    if info.duration_s <= 0:
        raise ApiError(
            422,
            "invalid_video",
            f"{name}: does not say how long it is, so this server's limit of {settings.max_video_s:g} s cannot be "
            "checked; remux it (ffmpeg -i IN -c copy OUT.mp4)",
            field=VIDEO_PART,
        )
    if info.duration_s > settings.max_video_s:
        raise ApiError(
            413,
            "video_too_long",
            f"{name}: lasts {info.duration_s:,.1f} s; this server takes videos of at most {settings.max_video_s:g} s "
            f"(--max-video-s); cut it first (ffmpeg -i IN -t {settings.max_video_s:g} -c copy OUT.mp4)",
            field=VIDEO_PART,
        )
    if info.frames > settings.max_frames:
        raise ApiError(
            413,
            "video_too_long",
            f"{name}: has {info.frames:,} frames at {info.fps:g} fps; this server takes motions of at most "
            f"{settings.max_frames:,} frames; cut it first",
            field=VIDEO_PART,
        )
    return info
