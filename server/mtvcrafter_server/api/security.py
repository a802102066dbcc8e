"""Request checks made before any route runs (plain ASGI middleware).

- Host: on a loopback bind, only ``localhost``/``127.0.0.1``/``[::1]`` are accepted, so a web page
  cannot reach the server through a DNS name rebound to 127.0.0.1.
- Origin: browsers mark cross-site requests (``Origin``, ``Sec-Fetch-Site``); they are refused unless
  the origin was allowed explicitly. Clients such as Blender or httpx send neither.
- Token: when the server has one, every request needs ``Authorization: Bearer <token>``, except reading the docs
  (:data:`OPEN_PATHS`: ``GET``/``HEAD`` of ``/docs``, ``/redoc``, their files and ``/openapi.json``), which a
  browser opens without a way to send the header. The schema is no secret (the routes and their params, the same
  on every server); Swagger UI's Authorize button then sends the token with each request it makes, and every route
  of the API still refuses a request without it.
- Size: a body larger than the limit is refused from its ``Content-Length``, or cut off while streaming (the
  limit of uploads, ``max_upload_bytes``; a video sent to ``POST /v1/extract`` may be as large as
  ``max_video_mb``).

The OpenAPI schema declares the token as the ``bearer`` scheme (:data:`bearer`) on every route of the API; the
check itself is the middleware's, so that it covers every request but the docs' reads.
"""

from __future__ import annotations

import hmac
import json

from fastapi.security import HTTPBearer

from mtvcrafter.client import is_loopback

from ..settings import Settings
from .docs import ASSETS_URL

#: the path whose body is a video (bounded by ``max_video_mb``), and what its body may hold besides the video
#: (multipart framing, the params)
VIDEO_PATH = "/v1/extract"
VIDEO_BODY_EXTRA = 1 << 20

#: what a browser reads without the token (GET and HEAD only): the docs pages, their files and the schema they show
OPEN_PATHS = frozenset({"/docs", "/redoc", "/openapi.json"})
OPEN_PREFIX = ASSETS_URL + "/"


def is_open(scope) -> bool:
    """Whether the request reads the docs (no token needed; the Host, Origin and size checks still apply)."""
    path = scope.get("path", "")
    return scope.get("method") in ("GET", "HEAD") and (path in OPEN_PATHS or path.startswith(OPEN_PREFIX))


#: the access token in the OpenAPI schema; it checks nothing (SecurityMiddleware does)
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="the server's access token (--token or MTVCRAFTER_TOKEN); needed when the server has one",
)


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class SecurityMiddleware:
    def __init__(self, app, settings: Settings):
        self.app = app
        self.settings = settings
        self.loopback = is_loopback(settings.host)

    async def _refuse(self, send, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        host = _header(scope, b"host")
        if self.loopback and (host is None or not is_loopback(_host_name(host))):
            return await self._refuse(
                send,
                421,
                "bad_host",
                f"this server answers only to localhost (Host {host!r} refused: DNS rebinding guard)",
            )
        origin = _header(scope, b"origin")
        site = _header(scope, b"sec-fetch-site")
        # the server's own pages (/docs) send their own origin on POST and DELETE
        same_origin = origin is not None and host is not None and origin.lower() in (f"http://{host.lower()}",)
        allowed = same_origin or origin in self.settings.allowed_origins
        if (origin is not None and not allowed) or (site in ("cross-site", "same-site") and not allowed):
            return await self._refuse(send, 403, "cross_origin", f"requests from web pages ({origin}) are refused")
        if self.settings.token and not is_open(scope):
            auth = _header(scope, b"authorization") or ""
            given = auth[7:] if auth.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(given.encode(), self.settings.token.encode()):
                return await self._refuse(
                    send, 401, "unauthorized", "missing or wrong access token (Authorization: Bearer …)"
                )
        limit = self.settings.max_upload_bytes
        what = "the limit is"
        if scope.get("path") == VIDEO_PATH:
            video_mb = self.settings.max_video_mb
            limit = max(limit, int(video_mb * 2**20) + VIDEO_BODY_EXTRA)
            what = f"this server takes videos of at most {video_mb:g} MB (--max-video-mb), requests of at most"
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return await self._refuse(send, 400, "bad_request", "invalid Content-Length")
            if declared > limit:
                return await self._refuse(
                    send, 413, "upload_too_large", f"the request declares {declared:,} bytes; {what} {limit:,}"
                )
        received = 0
        started = False
        refused = False

        async def limited_receive():
            # Past the limit: answer 413 ourselves, then tell the app the client went away (an exception
            # here would be turned into a 400 by the form parser) and drop whatever it answers.
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not started:
                        await self._refuse(send, 413, "upload_too_large", f"the request is larger than {limit:,} bytes")
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refused:
                raise
