"""Receiving a video upload (``POST /v1/extract``): the multipart body read as it arrives, the ``video`` part
written straight into a folder of its own in the data folder's scratch folder, under the client's file name made
safe (never held in memory, never in the system's temporary folder), and hashed on the way, within the server's
size limit; the small ``params`` part kept as text."""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePath

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from ..jobs.files import storage_error
from .errors import ApiError

#: the multipart part that holds the video, and the one with the JSON params
VIDEO_PART, PARAMS_PART = "video", "params"
#: most bytes of the params part (a JSON object of a few settings)
MAX_PARAMS_BYTES = 64 * 2**10
#: bytes gathered before they are written (in a worker thread, off the event loop)
WRITE_BYTES = 1 << 20
#: most characters of a video's file name kept (it names the motion made from it)
MAX_FILENAME_CHARS = 120


@dataclass
class VideoUpload:
    """A received video: the scratch file (alone in its folder, named as the client named it, made safe), its
    size and SHA-256, and the params part as sent (None: none)."""

    path: Path
    size: int
    sha256: str
    params: str | None

    @property
    def filename(self) -> str:
        return self.path.name

    def remove(self) -> None:
        """Remove the scratch file and its folder."""
        shutil.rmtree(self.path.parent, ignore_errors=True)


def safe_filename(filename: str | None) -> str:
    """The last part of a client's file name, in letters, digits, ``.``, ``-``, ``_`` and spaces (no folder, no
    leading dot): the name the motion and its file get."""
    name = PurePath((filename or "").replace("\\", "/")).name
    name = re.sub(r"[^\w.\- ]", "_", name).strip(" .")
    if len(name) > MAX_FILENAME_CHARS:
        stem, dot, suffix = name.rpartition(".")
        suffix = suffix[:16] if dot else ""
        name = (stem if dot else name)[: MAX_FILENAME_CHARS - len(suffix) - 1].rstrip(" .") + (
            f".{suffix}" if suffix else ""
        )
    return name or "video"


class _Parts:
    """The parser's callbacks: which part is being read, and what it holds so far."""

    def __init__(self, folder: Path, max_bytes: int):
        self.folder, self.max_bytes = folder, max_bytes
        self.header_name, self.header_value = b"", b""
        self.disposition = b""
        self.part: str | None = None  # "video", "params" or None (a part this route does not read)
        self.filename: str | None = None
        self.video_seen = False
        self.params: bytearray | None = None
        self.pending = bytearray()  # video bytes not written yet
        self.size = 0
        self.digest = hashlib.sha256()
        self.file = None

    def on_part_begin(self) -> None:
        self.disposition, self.part = b"", None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        if self.header_name.strip().lower() == b"content-disposition":
            self.disposition = self.header_value
        self.header_name, self.header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name == VIDEO_PART:
            if self.video_seen:
                raise ApiError(422, "invalid_request", "send one video (one 'video' part)", field=VIDEO_PART)
            self.video_seen, self.part = True, VIDEO_PART
            raw = options.get(b"filename")
            self.filename = raw.decode("utf-8", "replace") if raw is not None else None
        elif name == PARAMS_PART:
            if self.params is not None:
                raise ApiError(422, "invalid_params", "send the params once", field=PARAMS_PART)
            self.params, self.part = bytearray(), PARAMS_PART

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part == VIDEO_PART:
            self.size += end - start
            if self.size > self.max_bytes:
                raise ApiError(
                    413,
                    "upload_too_large",
                    f"the video is larger than this server takes ({self.max_bytes / 2**20:g} MB)",
                    field=VIDEO_PART,
                )
            self.pending += data[start:end]
        elif self.part == PARAMS_PART:
            self.params += data[start:end]
            if len(self.params) > MAX_PARAMS_BYTES:
                raise ApiError(
                    422, "invalid_params", f"params is longer than {MAX_PARAMS_BYTES:,} bytes", field=PARAMS_PART
                )

    def write_pending(self) -> None:
        """Write (and hash) what arrived of the video since the last call (in a worker thread)."""
        if not self.pending:
            return
        data, self.pending = bytes(self.pending), bytearray()
        self.digest.update(data)
        if self.file is None:
            self.folder.mkdir()
            self.file = open(self.path, "xb")  # noqa: SIM115 - closed by close()
        self.file.write(data)

    @property
    def path(self) -> Path:
        return self.folder / safe_filename(self.filename)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


async def receive_video(request: Request, folder: Path, max_bytes: int) -> VideoUpload:
    """The ``video`` part of the request's multipart body as a file in ``folder`` (the data folder's scratch
    folder) and the ``params`` part as text. Refused as 400 when the body is not multipart, 413 past
    ``max_bytes`` of video, 422 without a video or with an empty one; a full disk is a storage error (507).
    Nothing stays in ``folder`` unless a :class:`VideoUpload` is returned (the caller moves or removes it)."""
    kind, options = parse_options_header(request.headers.get("content-type"))
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise ApiError(
            422,
            "invalid_request",
            "send the video as multipart/form-data: a 'video' file part and an optional 'params' part (JSON)",
            field=VIDEO_PART,
        )
    parts = _Parts(folder / f"upload-{uuid.uuid4().hex}", max_bytes)
    callbacks = {
        name: getattr(parts, name)
        for name in (
            "on_part_begin",
            "on_part_data",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
        )
    }
    kept = False
    try:
        parser = MultipartParser(boundary, callbacks)
        try:
            async for chunk in request.stream():
                parser.write(chunk)
                if len(parts.pending) >= WRITE_BYTES:
                    await asyncio.to_thread(parts.write_pending)
            parser.finalize()
        except FormParserError:
            raise ApiError(400, "bad_request", "the multipart body cannot be parsed") from None
        await asyncio.to_thread(parts.write_pending)
        await asyncio.to_thread(parts.close)
        if not parts.video_seen:
            raise ApiError(
                422, "invalid_request", "no video: send the video as the multipart part 'video'", field=VIDEO_PART
            )
        if parts.size == 0:
            raise ApiError(422, "invalid_video", "the video is empty", field=VIDEO_PART)
        params = None if parts.params is None else parts.params.decode("utf-8", "replace")
        kept = True
        return VideoUpload(parts.path, parts.size, parts.digest.hexdigest(), params)
    except OSError as exc:  # a full disk, a read-only folder: 507/503 naming the data folder's scratch folder
        raise storage_error(exc, folder) from None
    except ClientDisconnect:  # the body was cut off (or refused by the size check or the body's deadline)
        raise ApiError(400, "bad_request", "the request body ended before the multipart body did") from None
    finally:
        parts.close()
        if not kept:
            shutil.rmtree(parts.folder, ignore_errors=True)
