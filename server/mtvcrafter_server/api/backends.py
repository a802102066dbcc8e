"""``GET /v1/backends``: what can render here, and which one jobs get when they name none; with
``kind=extract``, what turns videos into motion here (NLF), or ``kind=all`` both."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter

from mtvcrafter.backends import Backend, best_backend

from ..jobs.extraction import Extractor
from ..jobs.params import ExtractParams
from ..settings import Settings
from .deps import BackendsDep, ExtractorDep, SettingsDep
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
    description="Each backend: available here or why not, the job params it reads and its defaults for them. "
    "`kind`: render (the default: what renders videos, POST /v1/jobs), extract (what extracts motion from videos, "
    "POST /v1/extract) or all.",
    responses=error_responses((422, "invalid query: the message names the parameter")),
)
def list_backends(
    settings: SettingsDep,
    backends: BackendsDep,
    extractor: ExtractorDep,
    kind: Literal["render", "extract", "all"] = "render",
):
    out = render_backends(settings, backends) if kind in ("render", "all") else []
    if kind in ("extract", "all"):
        out.append(extractor_info(extractor))
    return out


def extractor_info(extractor: Extractor) -> dict:
    available, reason = extractor.status()
    return {
        "name": extractor.name,
        "available": available,
        "reason": reason,
        "description": extractor.description,
        "default": True,
        "settings": list(ExtractParams.model_fields),
        "defaults": ExtractParams().model_dump(mode="json"),
        "kind": "extract",
    }


def render_backends(settings: Settings, backends: dict[str, Backend]) -> list[dict]:
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
                "kind": "render",
            }
        )
    return out
