"""The HTTP API: one router per resource (:mod:`.health`, :mod:`.backends`, :mod:`.jobs`, :mod:`.tokenize`,
:mod:`.extract`), the models it answers with (:mod:`.models`), what routes are handed (:mod:`.deps`), uploads
(:mod:`.uploads`, :mod:`.video_upload`), errors (:mod:`.errors`) and the request checks (:mod:`.security`). See
README "HTTP API"."""

from __future__ import annotations

from fastapi import APIRouter, Security

from . import backends, extract, health, jobs, tokenize
from .security import bearer

#: every route, each one marked in the OpenAPI schema as taking the bearer token
api_router = APIRouter(dependencies=[Security(bearer)])
for _module in (health, backends, jobs, tokenize, extract):
    api_router.include_router(_module.router)

__all__ = ["api_router"]
