"""What the API answers with (and ``JobParams``, what ``POST /v1/jobs`` takes as ``params``; ``ExtractParams``,
what ``POST /v1/extract`` takes): declared once, used by the routes as their response models and by the OpenAPI
schema."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from ..jobs.params import ExtractParams, JobParams


class ExtractAvailability(BaseModel):
    available: bool
    #: why not (empty when available), with the fix
    reason: str
    #: the largest video this server takes (MB of 2**20 bytes) and the longest (seconds)
    max_video_mb: float
    max_video_s: float


class Health(BaseModel):
    #: "ok", or "degraded" (with 503) when the worker is dead, stalled, restarting or waiting for storage
    status: str
    version: str
    default_backend: str
    queued: int
    running: str | None
    worker: str | None = None
    last_progress_s: float | None = None
    worker_error: str | None = None
    #: worker threads the server replaced since it started (a job ended one), and why the last one stopped
    worker_restarts: int = 0
    worker_restart_reason: str | None = None
    storage: str | None = None
    free_gb: float | None = None
    #: whether this server extracts motion from videos (POST /v1/extract), and why not
    extract: ExtractAvailability | None = None


class BackendInfo(BaseModel):
    name: str
    available: bool
    reason: str
    description: str
    default: bool
    #: the job params this backend reads (a client shows the fields of these, e.g. a prompt for mvdit-17b)
    settings: list[str]
    #: the values it uses for those left out (steps, guidance, seed, prompt …)
    defaults: dict
    kind: Literal["render", "extract"] = Field(
        "render",
        description="render: a video from a motion (POST /v1/jobs); extract: a motion from a video (POST /v1/extract)",
    )


class JobInfo(BaseModel):
    id: str
    kind: Literal["render", "extract"] = Field(
        description="render: a video from a motion and an image; extract: a motion from a video"
    )
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


class TokenizeResult(BaseModel):
    frames: int
    latent_frames: int
    codes: list[list[int]]
    vq_loss: float
    mpjpe_mm: float
    joint_error_mm: list[float]
    warning: str | None
    reconstruction_mm: list[list[list[float]]] | None = None


__all__ = [
    "BackendInfo",
    "ExtractAvailability",
    "ExtractParams",
    "Health",
    "JobInfo",
    "JobParams",
    "TokenizeResult",
]
