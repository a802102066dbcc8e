"""``GET /v1/backends``: what can render here, and which one jobs get when they name none."""

from __future__ import annotations

from fastapi import APIRouter

from mtvcrafter.backends import Backend, best_backend

from ..settings import Settings
from .deps import BackendsDep, SettingsDep
from .errors import COMMON_ERRORS, error_responses
from .models import BackendInfo

router = APIRouter(prefix="/v1/backends", tags=["backends"], responses=error_responses(*COMMON_ERRORS))


def default_backend(settings: Settings, backends: dict[str, Backend]) -> str:
    """The server's ``--backend``, else the first available in order of preference."""
    return settings.backend or best_backend(backends)


@router.get(
    "",
    response_model=list[BackendInfo],
    summary="List backends",
    description="Each backend: available here or why not, the job params it reads and its defaults for them.",
)
def list_backends(settings: SettingsDep, backends: BackendsDep):
    default = default_backend(settings, backends)
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
                "settings": list(backend.takes),
                "defaults": backend.defaults(),
            }
        )
    return out
