"""Reading ``.npz`` files that came from anywhere: every member checked before it is read.

numpy's own ``np.load`` reads members lazily and lets whatever a damaged archive raises escape (zlib
errors, an unknown compression method, the encryption flag, a file that ends early), and on a file
that is not a zip it tries to unpickle it. :class:`NpzArchive` opens the archive itself and turns each
of those into a :class:`~mtvcrafter.motion.errors.MotionError` of one line naming the file, the field
and the problem. A member is read only when asked for, only up to the size its field may have (checked
from its ``.npy`` header before any data is read), never as a pickle, and read to its end so that its
checksum is verified.
"""

from __future__ import annotations

import io
import math
import re
import struct
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import MotionError

#: Most members an archive may list (our files have about ten, AMASS files fewer than twenty).
MAX_MEMBERS = 256
#: Bytes a member may hold beyond its array (numpy writes none).
_SLACK_BYTES = 4096
_MAX_DIMENSIONS = 32
#: What zipfile, zlib and numpy's header parser raise on damaged input.
_DAMAGED = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    struct.error,
    OverflowError,
    KeyError,
    UnicodeDecodeError,
    SyntaxError,
    TypeError,
    RecursionError,
    tokenize.TokenError,  # numpy reads a header's text with Python's tokenizer
)
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}


class ObjectArrayError(MotionError):
    """A member holding Python objects (stored as a pickle inside the ``.npy``): never read."""


def one_line(exc: BaseException, limit: int = 160) -> str:
    """An exception's message as one short line, without object reprs (``<… at 0x…>``)."""
    text = re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "the data", str(exc))
    text = " ".join(text.split())
    if not text:
        return type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_start(head: bytes) -> str:
    """What a file that is not a zip archive looks like it is, from its first bytes."""
    if not head:
        return "the file is empty"
    if head.startswith(b"\x93NUMPY"):
        return "it is a single .npy array, not an .npz archive of named arrays"
    if head[:1] == b"\x80":
        return "it is a Python pickle, not an .npz archive"
    if head.lstrip()[:1] in (b"{", b"["):
        return "it is text (JSON?), not an .npz archive"
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head)
    if printable == len(head):
        return "it is text, not an .npz archive"
    return "it is not a zip archive (an .npz is a zip of .npy arrays)"


class NpzArchive:
    """An ``.npz`` opened for reading (a path, or the bytes of an upload with ``source`` naming it).

    ``files`` lists the array names; :meth:`read` returns one array, checked against the limits given.
    Use it as a context manager (it holds the file open).
    """

    def __init__(self, file: str | Path | bytes, source: str | None = None):
        handle: IO[bytes]
        if isinstance(file, bytes | bytearray | memoryview):
            self.source = source or "motion.npz"
            handle = io.BytesIO(bytes(file))
        else:
            self.source = source or str(file)
            try:
                handle = open(file, "rb")  # noqa: SIM115 - closed by close()
            except OSError as exc:
                raise MotionError(
                    f"cannot read the file ({exc.strerror or one_line(exc)})", source=self.source
                ) from None
        self._handle = handle
        try:
            head = handle.read(8)
            handle.seek(0)
            if not (head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06")):
                raise MotionError(f"not a readable .npz file: {describe_start(head)}", source=self.source)
            try:
                self._zip = zipfile.ZipFile(handle)
                members = self._zip.infolist()
            except _DAMAGED as exc:
                raise MotionError(f"not a readable .npz file: {one_line(exc)}", source=self.source) from None
            if len(members) > MAX_MEMBERS:
                raise MotionError(
                    f"the archive lists {len(members):,} members; a motion .npz has at most {MAX_MEMBERS}",
                    source=self.source,
                )
        except BaseException:
            handle.close()
            raise
        self._members = {m.filename[:-4]: m for m in members if m.filename.endswith(".npy")}
        self.files = list(self._members)

    def __enter__(self) -> NpzArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()
        self._handle.close()

    def __contains__(self, name: object) -> bool:
        return name in self._members

    def read(self, name: str, max_elements: int, max_bytes: int) -> np.ndarray:
        """The array ``name``, refused (MotionError naming the field) beyond ``max_elements`` values or
        ``max_bytes`` bytes, as Python objects, or when its member is damaged."""
        where: dict[str, Any] = {"source": self.source, "field": name}
        info = self._members.get(name)
        if info is None:
            raise MotionError("missing", **where)
        if info.flag_bits & 0x1:
            raise MotionError("is encrypted; the arrays of an .npz never are", **where)
        if info.compress_type not in _METHODS:
            raise MotionError(
                f"uses zip compression method {info.compress_type}; the arrays of an .npz are stored or deflated",
                **where,
            )
        try:
            with self._zip.open(info) as handle:
                version = np.lib.format.read_magic(handle)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
                else:
                    raise MotionError(f"is an .npy array of format version {version[0]}.{version[1]}", **where)
                if dtype.hasobject:
                    raise ObjectArrayError("holds Python objects, which are not allowed", **where)
                if dtype.names is not None or dtype.subdtype is not None or dtype.itemsize == 0:
                    raise MotionError(f"has the element type {dtype.str}, which is not motion data", **where)
                if len(shape) > _MAX_DIMENSIONS or not all(type(n) is int and n >= 0 for n in shape):
                    raise MotionError(f"has the shape {shape!r:.60}, which no array has", **where)
                count = math.prod(shape)
                nbytes = count * dtype.itemsize
                if count > max_elements or nbytes > max_bytes:
                    values = f"{count:,} values ({nbytes:,} bytes)" if count < 10**15 else "far more values"
                    raise MotionError(
                        f"holds {values}, more than the {max_elements:,} values ({max_bytes:,} bytes) it may have "
                        "in a motion file",
                        **where,
                    )
                start = handle.tell()
                if info.file_size > start + nbytes + _SLACK_BYTES:
                    raise MotionError(
                        f"holds {info.file_size - start - nbytes:,} bytes more than its shape {shape} needs", **where
                    )
                raw = handle.read(nbytes)
                if len(raw) < nbytes:
                    raise MotionError(f"is truncated ({len(raw):,} of {nbytes:,} bytes)", **where)
                handle.read()  # to the end (at most the slack): that is where zipfile checks the CRC
            if dtype.kind == "U":  # numpy builds no str from code points beyond Unicode's (a SystemError)
                order = ">" if dtype.byteorder == ">" else "<" if dtype.byteorder == "<" else "="
                if (np.frombuffer(raw, dtype=np.dtype(f"{order}u4")) > 0x10FFFF).any():
                    raise MotionError("holds text that is not Unicode", **where)
            array = np.frombuffer(raw, dtype=dtype, count=count)
            return array.reshape(shape, order="F" if fortran else "C").copy(order="K")
        except MotionError:
            raise
        except _DAMAGED as exc:
            raise MotionError(f"not a readable array: {one_line(exc)}", **where) from None


def list_names(names: list[str] | set[str], limit: int = 20) -> str:
    """Field names for a message: sorted, each cut to 40 characters, at most ``limit``."""
    shown = [f"{n:.40}" for n in sorted(names)[:limit]]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "") if shown else "nothing"
