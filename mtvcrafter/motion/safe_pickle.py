"""A restricted unpickler for the official motion pickles, in numpy only.

Pickles can run arbitrary code while loading. The official motion files need only numpy array
reconstruction and, when the extraction script stored torch tensors (possibly from a GPU), torch's
tensor rebuild functions. This unpickler allows exactly those, rebuilds torch tensors as numpy arrays
without importing torch (so a file written on a GPU machine loads on any machine), and refuses every
other class or function *before* calling it.

Nothing the pickle stream can reach is a real class, dtype or mutable object of ours: every allowed
name resolves to a sealed stand-in that takes plain values, checks them, and builds fresh numpy
arrays of simple numeric types itself. So a pickle can neither call ``numpy.ndarray`` directly, nor
rewrite a dtype's internal state, nor set attributes on anything it was handed.

An ``.npy`` of Python objects (what ``np.save(..., allow_pickle=True)`` writes for a dict, e.g. MDM's
``results.npy``) is a header followed by such a pickle of an object array: with ``object_arrays=True`` the
array's items may be what the rest of the pickle may hold (numbers, text, lists, dicts, numpy arrays), and
the array comes back as those items — never as a numpy array of Python objects.

Never use it for data that came over a network: uploads must be ``.npz`` or JSON.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
import struct
import zipfile
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MotionError
from .npz_archive import one_line

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
#: Most array elements one file may produce in all (about 930,000 frames of 24 joints x 3):
#: a guard against small files that declare huge shapes or reuse one buffer many times.
_MAX_ELEMENTS = 1 << 26
_MAX_DIMENSIONS = 32
_budget: ContextVar[list[int]] = ContextVar("mtvcrafter_pickle_budget")
#: Whether arrays of Python objects may be read (as lists of their items) in this load.
_object_arrays: ContextVar[bool] = ContextVar("mtvcrafter_pickle_object_arrays", default=False)
#: Largest archive member read from a ``torch.save`` zip.
_MAX_MEMBER_BYTES = 1 << 31

#: Array element types a motion file may hold (numpy type codes without byte order).
_ARRAY_TYPES = {"f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1"}


def _bfloat16_to_float32(raw: bytes) -> np.ndarray:
    halves = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
    return halves.view(np.float32)


#: torch storage class name → how to read its raw little-endian bytes.
_STORAGE_DTYPES: dict[str, Any] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": _bfloat16_to_float32,
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}
_ITEM_SIZES = {"BFloat16Storage": 2, **{k: v.itemsize for k, v in _STORAGE_DTYPES.items() if isinstance(v, np.dtype)}}


class _Sealed:
    """Base of every object of ours a pickle can reach: it cannot set or replace their state."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise pickle.UnpicklingError("motion pickles cannot set attributes")

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError("motion pickles cannot set object state")

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)


class _Function(_Sealed):
    """An allowed function, callable with positional arguments only."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[..., Any]):
        self._set("_fn", fn)

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)


class _StorageType(_Sealed):
    """Stands in for a ``torch.<Kind>Storage`` class named in a pickle."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self._set("name", name)


class _Storage(_Sealed):
    """A torch storage read as a flat numpy array (``array`` is None until its bytes are read)."""

    __slots__ = ("kind", "numel", "array")

    def __init__(self, kind: _StorageType, numel: int):
        if not isinstance(kind, _StorageType) or not isinstance(numel, int) or not 0 <= numel <= _MAX_ELEMENTS:
            raise pickle.UnpicklingError("an invalid tensor storage")
        self._set("kind", kind)
        self._set("numel", numel)
        self._set("array", None)

    @property
    def nbytes(self) -> int:
        return self.numel * _ITEM_SIZES[self.kind.name]

    def fill(self, raw: bytes, source: str) -> _Storage:
        if len(raw) < self.nbytes:
            raise MotionError(f"a tensor's data is truncated ({len(raw)} of {self.nbytes} bytes)", source=source)
        reader = _STORAGE_DTYPES[self.kind.name]
        raw = raw[: self.nbytes]
        self._set("array", reader(raw) if callable(reader) else np.frombuffer(raw, dtype=reader))
        return self


class _DtypeSpec(_Sealed):
    """What a pickle says about an array's element type; resolved only to simple numeric types."""

    __slots__ = ("code", "order")

    def __init__(self, code: Any, *_flags: Any):
        if not isinstance(code, str):
            raise pickle.UnpicklingError("an invalid array type")
        self._set("code", code)
        self._set("order", "=")

    def __setstate__(self, state: Any) -> None:
        # numpy's dtype state: (version, byte order, subarray, names, fields, itemsize, alignment, flags)
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "|", "="):
            raise pickle.UnpicklingError("an invalid array type")
        if any(part is not None for part in state[2:5]):
            raise pickle.UnpicklingError("structured arrays are not allowed in motion files")
        self._set("order", state[1])

    @property
    def is_object(self) -> bool:
        return self.code.lstrip("<>|=").startswith("O")

    def resolve(self) -> np.dtype:
        code = self.code.lstrip("<>|=")
        code = {"?": "b1", "f": "f8", "d": "f8", "i": "i8", "l": "i8"}.get(code, code)
        if code.startswith("O"):
            raise pickle.UnpicklingError("arrays of Python objects are not allowed in motion files")
        if code not in _ARRAY_TYPES:
            raise pickle.UnpicklingError(f"arrays of type '{self.code}' are not allowed in motion files")
        return np.dtype(code).newbyteorder(self.order if self.order != "|" else "=")


class _ArrayClass(_Sealed):
    """Stands in for ``numpy.ndarray``: only usable as the class argument of array reconstruction."""

    __slots__ = ()


class _ArrayBuilder(_Sealed):
    """What array reconstruction hands the pickle; its state becomes a fresh array, checked — or, for an
    array of Python objects where those are allowed, the list of its items (``objects``) and its shape."""

    __slots__ = ("array", "objects", "shape")

    def __init__(self) -> None:
        self._set("array", None)
        self._set("objects", None)
        self._set("shape", None)

    def __setstate__(self, state: Any) -> None:
        # ndarray state: (version, shape, dtype, is_fortran, raw bytes — a list of the items for objects)
        if self.array is not None or self.objects is not None or not isinstance(state, tuple) or len(state) != 5:
            raise pickle.UnpicklingError("an invalid array")
        _, shape, dtype, fortran, raw = state
        if isinstance(dtype, _DtypeSpec) and dtype.is_object and _object_arrays.get():
            shape = _shape(shape)
            if len(shape) > 1 or not isinstance(raw, list) or len(raw) != math.prod(shape):
                raise pickle.UnpicklingError("an invalid array of Python objects (only 0-d and 1-d ones are read)")
            _charge(len(raw))
            self._set("shape", shape)
            self._set("objects", list(raw))
            return
        self._set("array", _array_from_bytes(raw, dtype, shape, "F" if fortran else "C"))


def _shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, tuple) or len(value) > _MAX_DIMENSIONS:
        raise pickle.UnpicklingError("an invalid array shape")
    # Bound every number before multiplying: products of huge integers alone can take hours.
    if not all(type(n) is int and 0 <= n <= _MAX_ELEMENTS for n in value) or math.prod(value) > _MAX_ELEMENTS:
        raise pickle.UnpicklingError("an array too large for a motion file")
    return value


def _charge(elements: int) -> None:
    """Count elements about to be materialised against the file's budget."""
    remaining = _budget.get()
    remaining[0] -= elements
    if remaining[0] < 0:
        raise pickle.UnpicklingError("more array data than a motion file can hold")


def _array_from_bytes(raw: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    if not isinstance(dtype, _DtypeSpec):
        raise pickle.UnpicklingError("an array without a valid type")
    resolved = dtype.resolve()
    if isinstance(raw, (bytearray, memoryview, pickle.PickleBuffer)):
        raw = bytes(raw)
    if not isinstance(raw, bytes) or order not in ("C", "F"):
        raise pickle.UnpicklingError("array data that is not raw bytes")
    shape = _shape(shape)
    if len(raw) != math.prod(shape) * resolved.itemsize:
        raise pickle.UnpicklingError("array data of the wrong length")
    _charge(math.prod(shape))
    return np.frombuffer(raw, dtype=resolved).reshape(shape, order=order).copy(order="K")


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> _ArrayBuilder:
    if cls is not _ARRAY_CLASS:
        raise pickle.UnpicklingError("array reconstruction of something other than a numpy array")
    return _ArrayBuilder()


def _frombuffer(raw: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    return _array_from_bytes(raw, dtype, shape, order)


def _scalar(dtype: Any, raw: Any) -> Any:
    """A numpy scalar, returned as the plain Python number it holds."""
    return _array_from_bytes(raw, dtype, (), "C").item()


def _latin1_bytes(text: Any, encoding: Any) -> bytes:
    """How protocol-2 pickles (Python 2 era) spell bytes: ``_codecs.encode(text, 'latin1')``."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError("only latin-1 byte strings are allowed")
    return text.encode("latin-1")


class _Tensor(_Sealed):
    """A torch tensor to be read from its storage once the storage's bytes are known (in torch's
    legacy format they follow the pickle that rebuilds the tensor)."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage: Any, offset: Any, size: Any, stride: Any):
        if not isinstance(storage, _Storage):
            raise pickle.UnpicklingError("a tensor without storage data")
        size = _shape(tuple(size) if isinstance(size, list) else size)
        if not isinstance(stride, tuple) or not all(type(s) is int and s >= 0 for s in stride):
            raise pickle.UnpicklingError("a tensor with an invalid stride")
        if type(offset) is not int or not 0 <= offset <= _MAX_ELEMENTS or len(size) != len(stride):
            raise pickle.UnpicklingError("a tensor with an invalid shape or offset")
        # A dimension of one element never steps, whatever its stride says.
        stride = tuple(s if n > 1 else 0 for n, s in zip(size, stride, strict=True))
        if max(stride, default=0) > _MAX_ELEMENTS:
            raise pickle.UnpicklingError("a tensor that reaches past its storage")
        if math.prod(size) > storage.numel:
            raise pickle.UnpicklingError("a tensor with more elements than its storage")
        for name, value in (("storage", storage), ("offset", offset), ("size", size), ("stride", stride)):
            self._set(name, value)

    def to_array(self) -> np.ndarray:
        flat = self.storage.array
        if flat is None:
            raise pickle.UnpicklingError("a tensor without storage data")
        if 0 in self.size:
            return np.zeros(self.size, dtype=flat.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if last >= flat.size:
            raise pickle.UnpicklingError("a tensor that reaches past its storage")
        _charge(math.prod(self.size))
        # Bounds checked above, so the strided view stays inside the storage.
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :], shape=self.size, strides=tuple(s * flat.itemsize for s in self.stride), writeable=False
        )
        return np.array(view)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_rest: Any) -> _Tensor:
    return _Tensor(storage, offset, size, stride)


_ARRAY_CLASS = _ArrayClass()

#: (module, name) → what the pickle gets instead. Both numpy 1 and 2 module paths are accepted.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _ARRAY_CLASS,
    ("numpy", "dtype"): _Function(_DtypeSpec),
    ("numpy.core.multiarray", "_reconstruct"): _Function(_reconstruct),
    ("numpy._core.multiarray", "_reconstruct"): _Function(_reconstruct),
    ("numpy.core.multiarray", "scalar"): _Function(_scalar),
    ("numpy._core.multiarray", "scalar"): _Function(_scalar),
    ("numpy.core.numeric", "_frombuffer"): _Function(_frombuffer),
    ("numpy._core.numeric", "_frombuffer"): _Function(_frombuffer),
    ("_codecs", "encode"): _Function(_latin1_bytes),
    ("collections", "OrderedDict"): _Function(dict),
    ("torch._utils", "_rebuild_tensor_v2"): _Function(_rebuild_tensor),
    ("torch._utils", "_rebuild_tensor"): _Function(_rebuild_tensor),
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


_MEMO_WRITES = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})


def _check_opcodes(stream: io.BytesIO) -> None:
    """Walk the opcodes of the pickle at the stream's position (nothing is built or called), then rewind.

    Refuses what pickle itself would take huge memory for before failing: a memo index beyond the number of
    opcodes (pickle's memo is an array as long as the largest index: 4 bytes can ask for gigabytes), and data
    lengths beyond the end of the file (pickle allocates the declared length before reading)."""
    start = stream.tell()
    try:
        for count, (opcode, arg, _) in enumerate(pickletools.genops(stream)):
            if opcode.name in _MEMO_WRITES and not 0 <= int(arg) <= count:
                raise pickle.UnpicklingError(f"a memo index ({int(arg):,}) beyond the pickle's length")
    except ValueError as exc:  # pickletools: an unknown opcode, data shorter than declared, a missing STOP
        raise pickle.UnpicklingError(f"a damaged pickle ({one_line(exc)})") from None
    finally:
        stream.seek(start)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(
        self,
        file: Any,
        source: str,
        storages: dict[str, _Storage] | None = None,
        archive: tuple[str, zipfile.ZipFile] | None = None,
    ):
        super().__init__(file)
        self._file = file
        self._source = source
        self._storages = storages
        self._archive = archive

    def load(self) -> Any:
        _check_opcodes(self._file)
        return super().load()

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return _Function(lambda data: _load_legacy_torch(data, self._source))
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise MotionError(
                f"refused to load: the pickle asks for '{module}.{name}', which motion files never contain "
                "(only numpy arrays and torch tensors are allowed). Nothing from the file was run. "
                "If it came from someone else, do not load it in a full Python either",
                source=self._source,
            )
        return allowed

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"an unsupported persistent id (a {type(pid).__name__})")
        kind, key, numel = pid[1], str(pid[2]), pid[4]
        if self._storages is None:
            raise pickle.UnpicklingError("tensor data outside a torch file")
        if key in self._storages:
            return self._storages[key]
        storage = self._storages[key] = _Storage(kind, numel)
        if self._archive is not None:
            prefix, archive = self._archive
            _charge(numel)
            storage.fill(_read_member(archive, f"{prefix}data/{key}", storage.nbytes, self._source), self._source)
        # Otherwise (legacy stream) the data follows the object pickle and is filled in later.
        return storage


def _read_member(archive: zipfile.ZipFile, name: str, limit: int, source: str) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise MotionError(f"tensor data '{name}' is missing from the archive", source=source) from None
    if info.file_size > _MAX_MEMBER_BYTES:
        raise MotionError(f"archive member '{name}' is too large for a motion file", source=source)
    with archive.open(info) as handle:
        return handle.read(limit)


def _load_legacy_torch(data: Any, source: str) -> Any:
    """Read torch's legacy (non-zip) serialisation: what plain pickle embeds for each storage, and
    what ``torch.save(..., _use_new_zipfile_serialization=False)`` writes."""
    if not isinstance(data, bytes):
        raise pickle.UnpicklingError("torch data that is not bytes")
    stream = io.BytesIO(data)
    magic = _RestrictedUnpickler(stream, source).load()
    if magic != _LEGACY_MAGIC:
        raise pickle.UnpicklingError("not torch data")
    _RestrictedUnpickler(stream, source).load()  # protocol version
    sys_info = _RestrictedUnpickler(stream, source).load()
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise MotionError("big-endian torch data is not supported", source=source)
    pending: dict[str, _Storage] = {}
    result = _RestrictedUnpickler(stream, source, storages=pending).load()
    keys = _RestrictedUnpickler(stream, source).load()
    if not isinstance(keys, list):
        raise pickle.UnpicklingError("invalid torch data")
    for key in keys:
        header = stream.read(8)
        if len(header) != 8:
            raise MotionError("a tensor's data is truncated", source=source)
        (numel,) = struct.unpack("<q", header)
        storage = pending.get(str(key))
        if storage is None:
            raise pickle.UnpicklingError("unexpected storage in torch data")
        if numel != storage.numel:
            raise MotionError("a tensor's data does not match its size", source=source)
        _charge(numel)
        storage.fill(stream.read(storage.nbytes), source)
    if any(s.array is None for s in pending.values()):
        raise MotionError("a tensor's data is missing", source=source)
    return result


def _finish(value: Any, memo: dict[int, Any]) -> Any:
    """Replace array builders and tensors by their arrays throughout the loaded structure."""
    key = id(value)
    if key in memo:
        return memo[key]
    if isinstance(value, _ArrayBuilder):
        if value.objects is not None:  # a 0-d array as the item it holds, a 1-d one as a list
            items: list[Any] = []
            memo[key] = items
            items[:] = [_finish(v, memo) for v in value.objects]
            memo[key] = items[0] if value.shape == () else items
            return memo[key]
        if value.array is None:
            raise pickle.UnpicklingError("an array without data")
        memo[key] = value.array
        return value.array
    if isinstance(value, _Tensor):
        memo[key] = value.to_array()
        return memo[key]
    if isinstance(value, _Sealed):
        raise pickle.UnpicklingError("an incomplete object")
    if isinstance(value, list):
        memo[key] = value
        value[:] = [_finish(v, memo) for v in value]
    elif isinstance(value, dict):
        memo[key] = value
        for k in list(value):
            value[k] = _finish(value[k], memo)
    elif isinstance(value, tuple):
        memo[key] = value
        memo[key] = tuple(_finish(v, memo) for v in value)
    return memo.get(key, value)


def safe_load_pickle(path: str | Path, *, offset: int = 0, object_arrays: bool = False) -> Any:
    """Unpickle a local motion file allowing only numpy arrays and torch tensors (read as numpy).

    Also reads files written by ``torch.save`` (zip archives and the legacy format) the same way.
    Raises :class:`MotionError` for anything else, before any of it runs.

    ``offset``: where the pickle starts in the file (after an ``.npy`` header). ``object_arrays``: read
    0-d and 1-d arrays of Python objects as the item they hold and as a list of their items (see above).
    """
    path = Path(path)
    source = str(path)
    try:
        data = path.read_bytes()[offset:]
    except OSError as exc:
        raise MotionError(f"cannot read the file ({exc.strerror})", source=source) from None
    token = _budget.set([_MAX_ELEMENTS])
    objects_token = _object_arrays.set(object_arrays)
    try:
        if data[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                pkl = [n for n in archive.namelist() if n.endswith("data.pkl")]
                if not pkl:
                    raise MotionError("a zip file that is not a torch-saved motion", source=source)
                prefix = pkl[0][: -len("data.pkl")]
                raw = _read_member(archive, pkl[0], _MAX_MEMBER_BYTES, source)
                result = _RestrictedUnpickler(io.BytesIO(raw), source, storages={}, archive=(prefix, archive)).load()
        else:
            result = _RestrictedUnpickler(io.BytesIO(data), source).load()
            if result == _LEGACY_MAGIC and type(result) is int:
                result = _load_legacy_torch(data, source)
        return _finish(result, {})
    except MotionError:
        raise
    except Exception as exc:  # only our checked stand-ins ran, so any failure means a malformed file
        raise MotionError(
            f"not a readable motion pickle ({type(exc).__name__}: {one_line(exc)})", source=source
        ) from None
    finally:
        _object_arrays.reset(objects_token)
        _budget.reset(token)
