"""API errors: every error response is ``{"error": {"code", "message"[, "field"]}}`` with the right status,
declared in the OpenAPI schema for each operation that can answer it (:func:`error_responses`)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ..paths import hide_server_paths, server_folders

log = logging.getLogger("mtvcrafter_server")


class ErrorDetail(BaseModel):
    code: str = Field(description="what went wrong, for programs: job_not_found, invalid_params, unauthorized …")
    message: str = Field(description="what went wrong, for people")
    field: str | SkipJsonSchema[None] = Field(
        None, description="the part of the request at fault (e.g. params.width, motion.joints); only when one is"
    )


class Error(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


#: what each error status means in this API (an operation may say more about its own)
ERROR_STATUSES: dict[int, str] = {
    400: "malformed request (an invalid Content-Length, a multipart body that cannot be parsed)",
    401: "missing or wrong access token (when the server has one: Authorization: Bearer …)",
    403: "refused: a request from a web page of another origin (Origin, Sec-Fetch-Site), or a path outside "
    "the data folder",
    404: "not found",
    408: "the request's body did not arrive in time",
    409: "conflict with the current state",
    410: "gone",
    413: "the request is larger than this server takes",
    415: "unsupported file type",
    421: "wrong Host header: on loopback the server answers only to localhost, 127.0.0.1 and [::1]",
    422: "invalid request: the message names the field",
    500: "internal error; see the server log",
    503: "the server cannot do this now (e.g. its data folder refuses writes): the message says why and the fix",
    507: "no room left in the server's data folder: the message says what to free",
}
#: what any request can be answered with, whatever its route: the request checks (api.security, the body's
#: deadline), a data folder that refuses writes, and an internal error
COMMON_ERRORS = (400, 401, 403, 408, 413, 421, 500, 503, 507)


def error_responses(*statuses: int | tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a router or route: each status with the :class:`Error` body. A status may be given as
    ``(status, description)`` to say what it means for that route."""
    out: dict[int | str, dict[str, Any]] = {}
    for item in statuses:
        status, description = item if isinstance(item, tuple) else (item, ERROR_STATUSES[item])
        out[status] = {"model": Error, "description": description}
    return out


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def body(self) -> dict:
        error = {"code": self.code, "message": self.message}
        if self.field:
            error["field"] = self.field
        return {"error": error}


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    # one line, and no path of this server, whatever an error passed on (e.g. a checkpoint's path)
    exc.message = " ".join(exc.message.split())
    settings = getattr(request.app.state, "settings", None)
    if settings is not None:
        exc.message = hide_server_paths(exc.message, server_folders(settings))
    return JSONResponse(exc.body(), status_code=exc.status)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"] if p not in ("body", "query", "path"))
    return JSONResponse(
        {"error": {"code": "invalid_request", "message": f"{where}: {first['msg']}", "field": where}},
        status_code=422,
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, PermissionError):  # a path that resolves outside the data folder
        return JSONResponse({"error": {"code": "forbidden", "message": "refused: outside the data folder"}}, 403)
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"error": {"code": "internal", "message": "internal error; see the server log"}}, 500)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:  # every method of the path, not only those of the first route that matched it
        allowed = _allowed_methods(request)
        if allowed:
            headers["Allow"] = ", ".join(allowed)
    body = {"error": {"code": code, "message": str(exc.detail)}}
    return JSONResponse(body, status_code=exc.status_code, headers=headers or None)


def _allowed_methods(request: Request) -> list[str]:
    """The methods some route answers on this path: each one tried on a fresh scope (routes may note their
    matching in the scope they are given)."""
    allowed = []
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        scope = {
            "type": "http",
            "method": method,
            "path": request.scope["path"],
            "root_path": request.scope.get("root_path", ""),
            "headers": [],
            "query_string": b"",
        }
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
    app.add_exception_handler(StarletteHTTPException, _http_error)
