"""``GET /v1/health``: the server is up; its version, default backend and queue."""

from __future__ import annotations

from fastapi import APIRouter

from mtvcrafter import __version__

from .backends import default_backend
from .deps import BackendsDep, ExecutorDep, SettingsDep, StoreDep
from .errors import COMMON_ERRORS, error_responses
from .models import Health

router = APIRouter(prefix="/v1/health", tags=["health"], responses=error_responses(*COMMON_ERRORS))


@router.get("", response_model=Health, summary="Server status", description="The version, default backend and queue.")
def health(settings: SettingsDep, store: StoreDep, executor: ExecutorDep, backends: BackendsDep):
    queued = len(store.queued_ids())
    return {
        "status": "ok",
        "version": __version__,
        "default_backend": default_backend(settings, backends),
        "queued": queued,
        "running": executor.current,
    }
