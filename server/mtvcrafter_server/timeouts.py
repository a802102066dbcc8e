"""Bounds on slow clients, so that a connection that trickles bytes (slowloris) cannot hold the server's
sockets and file descriptors for ever.

- Request line and headers: within ``header_timeout_s`` of the connection, or of the first byte of the
  next request on a kept-alive connection (:func:`http_protocol`, uvicorn's h11 protocol with a deadline;
  h11 also caps the headers at 16 KB).
- Body: within ``body_timeout_s`` of its headers; past that the request is answered ``408`` and the
  connection closed (:class:`BodyDeadline`, with the protocol closing the connection shortly after as a
  backstop, e.g. when a body keeps arriving after the response).
- Idle kept-alive connection: closed after ``keep_alive_s`` (uvicorn's ``timeout_keep_alive``).
"""

from __future__ import annotations

import asyncio
import json
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("mtvcrafter_server")

#: h11's cap on a request's line and headers (bytes)
MAX_HEAD_BYTES = 16 * 1024
#: how long after the body deadline the protocol closes a connection the application has not closed
BACKSTOP_S = 1.0


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, with deadlines on a request's head and body (set by :func:`http_protocol`)."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 300.0

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_for: object = None
        super().connection_made(transport)
        self._arm(h11.IDLE, self.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE:
            self._disarm()  # between requests: uvicorn's keep-alive timeout, until the next byte
        else:
            self._follow()

    def _follow(self) -> None:
        """Arm the deadline of what the client still owes: the head of a request, or its body."""
        state = self.conn.their_state
        if state is h11.IDLE and not self.transport.is_closing():
            self._arm(h11.IDLE, self.header_timeout_s)
        elif state is h11.SEND_BODY:
            self._arm(h11.SEND_BODY, self.body_timeout_s + BACKSTOP_S)
        else:
            self._disarm()

    def _arm(self, state, seconds: float) -> None:
        if self._deadline is not None and self._deadline_for is state:
            return  # already counting (from the first byte of this head or body)
        self._disarm()
        self._deadline_for = state
        self._deadline = self.loop.call_later(seconds, self._expired, state)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline, self._deadline_for = None, None

    def _expired(self, state) -> None:
        self._deadline, self._deadline_for = None, None
        if self.transport.is_closing() or self.conn.their_state is not state:
            return
        peer = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        if state is h11.IDLE:
            log.info("closed the connection of %s: no complete request within %g s", peer, self.header_timeout_s)
        else:
            log.warning("closed the connection of %s: its request body did not arrive in time", peer)
        self.transport.close()


def http_protocol(header_timeout_s: float, body_timeout_s: float) -> type[H11Protocol]:
    """The protocol class to give uvicorn (``http=``), with these deadlines."""
    return type(
        "DeadlineH11Protocol",
        (DeadlineH11Protocol,),
        {"header_timeout_s": header_timeout_s, "body_timeout_s": body_timeout_s},
    )


class BodyDeadline:
    """ASGI middleware: a request's whole body must arrive within ``seconds`` of its headers; past that it is
    answered ``408`` (``Connection: close``) and the application is told the client went away."""

    def __init__(self, app, seconds: float):
        self.app = app
        self.seconds = seconds

    async def _refuse(self, send) -> None:
        message = (
            f"the request body did not arrive within {self.seconds:g} s; send it faster, or start the server with "
            "a longer --body-timeout-s"
        )
        body = json.dumps({"error": {"code": "request_timeout", "message": message}}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 408, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        body_done = False
        expired = False
        started = False

        async def timed_receive():
            nonlocal body_done, expired
            if expired:
                return {"type": "http.disconnect"}
            if body_done:  # e.g. a streaming response waiting for the client to go away: no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
            except TimeoutError:
                expired = True
                log.warning("%s %s: the request body did not arrive in time", scope["method"], scope["path"])
                if not started:
                    await self._refuse(send)
                return {"type": "http.disconnect"}
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def guarded_send(message):
            nonlocal started
            if expired:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, timed_receive, guarded_send)
        except Exception:
            if not expired:
                raise
