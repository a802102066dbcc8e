"""A restricted unpickler for the official motion pickles, in numpy only.

Pickles can run arbitrary code while loading. The official motion files need only numpy array
reconstruction and, when the extraction script stored torch tensors (possibly from a GPU), torch's
tensor rebuild functions. This unpickler allows exactly those, rebuilds torch tensors as numpy arrays
without importing torch (so a file written on a GPU machine loads on any machine), and refuses every
other class or function *before* calling it.

Never use it for data that came over a network: uploads must be ``.npz`` or JSON.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MotionError

try:
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # numpy < 2 (Blender 4.2)
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


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


class _StorageType:
    """Stands in for a ``torch.<Kind>Storage`` class named in a pickle."""

    def __init__(self, name: str):
        self.name = name


class _Storage:
    """A torch storage read as a flat numpy array (``array`` is None until its bytes are read)."""

    def __init__(self, kind: _StorageType, numel: int):
        self.kind = kind
        self.numel = numel
        self.array: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        return self.numel * _ITEM_SIZES[self.kind.name]

    def fill(self, raw: bytes, source: str) -> _Storage:
        if len(raw) < self.nbytes:
            raise MotionError(f"a tensor's data is truncated ({len(raw)} of {self.nbytes} bytes)", source=source)
        reader = _STORAGE_DTYPES[self.kind.name]
        raw = raw[: self.nbytes]
        self.array = reader(raw) if callable(reader) else np.frombuffer(raw, dtype=reader)
        return self


class _ArrayClass:
    """Stands in for ``numpy.ndarray`` in a pickle: usable only as the class argument of array
    reconstruction, never called (calling the real class could allocate or alias memory at will)."""


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> np.ndarray:
    if cls is not _ArrayClass:
        raise pickle.UnpicklingError("array reconstruction of something other than a numpy array")
    return _multiarray._reconstruct(np.ndarray, (0,), b"b")


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """How protocol-2 pickles (Python 2 era) spell bytes: ``_codecs.encode(text, 'latin1')``."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError("only latin-1 byte strings are allowed")
    return text.encode("latin-1")


def _checked_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError("arrays of Python objects are not allowed in motion files")
    return dtype


def _rebuild_tensor(storage: Any, offset: int, size: tuple, stride: tuple, *_rest: Any) -> np.ndarray:
    if not isinstance(storage, _Storage) or storage.array is None:
        raise pickle.UnpicklingError("a tensor without storage data")
    flat = storage.array
    size = tuple(int(s) for s in size)
    stride = tuple(int(s) for s in stride)
    offset = int(offset)
    if len(size) != len(stride) or any(s < 0 for s in size) or any(s < 0 for s in stride) or offset < 0:
        raise pickle.UnpicklingError("a tensor with an invalid shape or stride")
    if 0 in size:
        return np.zeros(size, dtype=flat.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= flat.size:
        raise pickle.UnpicklingError("a tensor that reaches past its storage")
    # Bounds checked above, so the strided view stays inside the storage.
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=size, strides=tuple(s * flat.itemsize for s in stride), writeable=False
    )
    return np.array(view)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, source: str, storages: dict[str, _Storage] | None = None, archive: Any = None):
        super().__init__(file)
        self._source = source
        self._storages = storages
        self._archive = archive

    def find_class(self, module: str, name: str) -> Any:
        allowed = _allowed_global(module, name, self._source)
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
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.80}")
        kind, key, numel = pid[1], str(pid[2]), int(pid[4])
        if self._archive is not None:
            prefix, names = self._archive
            name = f"{prefix}data/{key}"
            if name not in names:
                raise MotionError(f"tensor data '{name}' is missing from the archive", source=self._source)
            return _Storage(kind, numel).fill(names[name].read(name), self._source)
        # Legacy stream: the data follows the object pickle; hand out the storage and fill it later.
        return self._storages.setdefault(key, _Storage(kind, numel))


def _allowed_global(module: str, name: str, source: str) -> Any:
    if module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        if name == "_reconstruct":
            return _reconstruct
        if name == "scalar":
            return _multiarray.scalar
    if module in ("numpy.core.numeric", "numpy._core.numeric") and name == "_frombuffer":
        return _numeric._frombuffer
    if module == "numpy" and name == "ndarray":
        return _ArrayClass
    if module == "numpy" and name == "dtype":
        return _checked_dtype
    if module == "_codecs" and name == "encode":
        return _latin1_bytes
    if module == "collections" and name == "OrderedDict":
        return OrderedDict
    if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
        return _rebuild_tensor
    if module == "torch.storage" and name == "_load_from_bytes":
        return lambda data: _load_legacy_torch(data, source)
    if module == "torch" and name in _STORAGE_DTYPES:
        return _StorageType(name)
    return None


def _load_legacy_torch(data: bytes, source: str) -> Any:
    """Read a storage saved by torch's legacy (non-zip) serialisation, as plain pickle embeds it."""
    stream = io.BytesIO(data)
    magic = _RestrictedUnpickler(stream, source).load()
    if magic != _LEGACY_MAGIC:
        raise pickle.UnpicklingError("not a torch storage")
    _RestrictedUnpickler(stream, source).load()  # protocol version
    sys_info = _RestrictedUnpickler(stream, source).load()
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise MotionError("big-endian torch data is not supported", source=source)
    pending: dict[str, _Storage] = {}
    result = _RestrictedUnpickler(stream, source, storages=pending).load()
    keys = _RestrictedUnpickler(stream, source).load()
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
        storage.fill(stream.read(storage.nbytes), source)
    if any(s.array is None for s in pending.values()):
        raise MotionError("a tensor's data is missing", source=source)
    return result


def safe_load_pickle(path: str | Path) -> Any:
    """Unpickle a local motion file allowing only numpy arrays and torch tensors (read as numpy).

    Also reads files written by ``torch.save`` (zip archives) the same way. Raises
    :class:`MotionError` for anything else, before any of it runs.
    """
    path = Path(path)
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MotionError(f"cannot read the file ({exc.strerror})", source=source) from None
    try:
        if data[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                pkl = [n for n in archive.namelist() if n.endswith("data.pkl")]
                if not pkl:
                    raise MotionError("a zip file that is not a torch-saved motion", source=source)
                prefix = pkl[0][: -len("data.pkl")]
                names = {n: archive for n in archive.namelist()}
                with archive.open(pkl[0]) as handle:
                    return _RestrictedUnpickler(io.BytesIO(handle.read()), source, archive=(prefix, names)).load()
        return _RestrictedUnpickler(io.BytesIO(data), source).load()
    except MotionError:
        raise
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        MemoryError,
        RecursionError,
        struct.error,
        zipfile.BadZipFile,
    ) as exc:
        raise MotionError(f"not a readable motion pickle ({exc})", source=source) from None
