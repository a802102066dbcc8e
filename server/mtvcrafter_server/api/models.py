"""What the API answers with (and ``JobParams``, what ``POST /v1/jobs`` takes as ``params``): declared once,
used by the routes as their response models and by the OpenAPI schema."""

from __future__ import annotations

from pydantic import BaseModel

from ..jobs.params import JobParams


class Health(BaseModel):
    #: "ok", or "degraded" (with 503) when the worker is dead, stalled or waiting for storage
    status: str
    version: str
    default_backend: str
    queued: int
    running: str | None
    worker: str | None = None
    last_progress_s: float | None = None
    worker_error: str | None = None
    storage: str | None = None
    free_gb: float | None = None


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


class TokenizeResult(BaseModel):
    frames: int
    latent_frames: int
    codes: list[list[int]]
    vq_loss: float
    mpjpe_mm: float
    joint_error_mm: list[float]
    warning: str | None
    reconstruction_mm: list[list[list[float]]] | None = None


__all__ = ["BackendInfo", "Health", "JobInfo", "JobParams", "TokenizeResult"]
