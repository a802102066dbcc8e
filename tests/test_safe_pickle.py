"""The restricted unpickler of official motion pickles (``safe_load_pickle``), as a user meets it.

Hostile pickles are refused before anything in them runs, with a MotionError naming the file and the
global they asked for; real NLF extraction output (torch tensors, pickled plainly or with ``torch.save``,
saved on the CPU or on a GPU) loads as numpy, bit for bit, without importing torch; broken files give a
MotionError and nothing else.

torch is used here only to *write* files the way the extraction script does; tests that need it are
skipped where it is not installed.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
import pickletools
import re
import shlex
import struct
import subprocess
import sys
import textwrap
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from mtvcrafter.motion import MotionError, load_motions, safe_load_pickle

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = {
    "shared": ROOT.parent / "shared" / "data" / "mtvcrafter-sample" / "sampled_data.pkl",
    "examples": ROOT / "examples" / "sampled_data.pkl",
}
#: How torch's legacy serialisation spells a storage's location (protocol 2 BINUNICODE: 4-byte length).
CPU_LOCATION = b"X\x03\x00\x00\x00cpu"
GPU_LOCATION = b"X\x06\x00\x00\x00cuda:0"
#: The first pickle of torch's legacy format (its magic number), which opens every embedded storage.
LEGACY_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


class Call:
    """Pickles as the call ``func(*args)``: what a hostile file makes a plain ``pickle.load`` run."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args

    def __call__(self, *args):  # pickle reduces only to callables (nested calls); never called here
        raise AssertionError("only for pickling")


def _binunicode(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _binbytes(raw: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(raw)) + raw


def _global_call(module: str, name: str, *args: str | bytes) -> bytes:
    """A hand-written protocol-4 pickle calling ``module.name(*args)`` through STACK_GLOBAL."""
    body = b"".join(_binunicode(a) if isinstance(a, str) else _binbytes(a) for a in args)
    return b"\x80\x04" + _binunicode(module) + _binunicode(name) + b"\x93(" + body + b"tR."


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _assert_refused(path: Path, global_name: str) -> None:
    """Both entry points refuse the file with a MotionError naming the file and the global."""
    with pytest.raises(MotionError) as info:
        safe_load_pickle(path)
    message = str(info.value)
    assert str(path) in message
    assert f"'{global_name}'" in message, message
    assert "Nothing from the file was run" in message
    with pytest.raises(MotionError, match=re.escape(f"'{global_name}'")):
        load_motions(path)


def _run_plainly(path: Path) -> subprocess.CompletedProcess:
    """What a full Python does with the file: ``pickle.load`` in a separate process."""
    code = "import pickle, sys\nresult = pickle.load(open(sys.argv[1], 'rb'))\ngetattr(result, 'wait', int)()\n"
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)


# --- 1. Hostile pickles ---------------------------------------------------------------------------

HOSTILE = [
    "os.system",
    "subprocess.Popen",
    "builtins.eval",
    "builtins.exec",
    "getattr gadget chain",
    "importlib.import_module",
    "numpy.load",
    "numpy runstring",
    "numpy.f2py",
    "nested in valid clips",
]


def _hostile(case: str, marker: Path, tmp_path: Path) -> tuple[object, str]:
    """A payload that creates ``marker`` when unpickled plainly, and the global the loader must name."""
    touch = f"touch {shlex.quote(str(marker))}"
    python_touch = f"open({str(marker)!r}, 'w').close()"
    system = f"{os.system.__module__}.system"  # 'posix.system': how pickle names os.system on Linux
    if case == "os.system":
        return Call(os.system, touch), system
    if case == "subprocess.Popen":
        return Call(subprocess.Popen, ["touch", str(marker)]), "subprocess.Popen"
    if case == "builtins.eval":
        return Call(eval, python_touch), "builtins.eval"
    if case == "builtins.exec":
        return Call(exec, python_touch), "builtins.exec"
    if case == "getattr gadget chain":
        # getattr(importlib.import_module('os'), 'system')(touch)
        return Call(Call(getattr, Call(importlib.import_module, "os"), "system"), touch), "builtins.getattr"
    if case == "importlib.import_module":
        return [Call(importlib.import_module, "os"), Call(os.system, touch)], "importlib.import_module"
    if case == "numpy.load":
        inner = _write(tmp_path, "inner.pkl", pickle.dumps(Call(os.system, touch)))
        return Call(np.load, str(inner), None, True), "numpy.load"  # np.load(path, allow_pickle=True)
    if case == "numpy runstring":
        from numpy.testing._private.utils import runstring  # exec(code, namespace)

        return Call(runstring, python_touch, {}), "numpy.testing._private.utils.runstring"
    if case == "numpy.f2py":
        from numpy.f2py import f2py2e

        return Call(f2py2e.run_main, ["-c", str(marker)]), "numpy.f2py.f2py2e.run_main"
    if case == "nested in valid clips":
        valid = {"video_path": "./data/videos/a.mp4", "video_length": 2, "pose": _standing_person(2)}
        frames = [_standing_person(1), Call(os.system, touch)]  # after a valid array
        return [valid, {"video_path": "./data/videos/b.mp4", "pose": {"joints3d_nonparam": frames}}], system
    raise AssertionError(case)


#: How pickle protocols 0-2 spell these globals (``fix_imports``), for Python 2 readers.
PYTHON2_NAMES = {
    "subprocess.Popen": "commands.Popen",
    "builtins.eval": "__builtin__.eval",
    "builtins.exec": "__builtin__.exec",
    "builtins.getattr": "__builtin__.getattr",
}


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_pickles_are_refused_before_running(tmp_path, case, protocol):
    marker = tmp_path / "pwned"
    payload, global_name = _hostile(case, marker, tmp_path)
    path = _write(tmp_path, "hostile.pkl", pickle.dumps(payload, protocol=protocol))
    if protocol < 3:  # the file holds the Python 2 name, and that is what the message quotes
        global_name = PYTHON2_NAMES.get(global_name, global_name)
    _assert_refused(path, global_name)
    assert not marker.exists()


@pytest.mark.parametrize("case", [c for c in HOSTILE if c != "numpy.f2py"])
def test_hostile_payloads_are_live_under_plain_pickle(tmp_path, case):
    """Control: the same files do create the marker in a full Python, so its absence above means something."""
    marker = tmp_path / "pwned"
    payload, _ = _hostile(case, marker, tmp_path)
    path = _write(tmp_path, "hostile.pkl", pickle.dumps(payload))
    _run_plainly(path)
    assert marker.exists()


RAW_HOSTILE = {
    # Protocol 0 text, as written by hand: GLOBAL 'os system', then a call.
    "GLOBAL opcode": (lambda cmd: b"cos\nsystem\n(S'" + cmd.encode() + b"'\ntR.", "os.system"),
    # INST looks the class up and calls it in one opcode.
    "INST opcode": (lambda cmd: b"(S'" + cmd.encode() + b"'\nios\nsystem\n.", "os.system"),
    # Protocol 4 resolves dotted names: an allow-list keyed on the module alone would let this through.
    "dotted STACK_GLOBAL": (lambda cmd: _global_call("numpy.f2py", "os.system", cmd), "numpy.f2py.os.system"),
    "dotted numpy name": (lambda cmd: _global_call("numpy", "ndarray.__class__", cmd), "numpy.ndarray.__class__"),
}


@pytest.mark.parametrize("case", RAW_HOSTILE)
def test_hand_written_hostile_opcodes_are_refused(tmp_path, case):
    marker = tmp_path / "pwned"
    build, global_name = RAW_HOSTILE[case]
    path = _write(tmp_path, "hostile.pkl", build(f"touch {marker}"))
    _assert_refused(path, global_name)
    assert not marker.exists()
    if case != "dotted numpy name":
        _run_plainly(path)  # control: live in a full Python
        assert marker.exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_object_arrays_are_refused(tmp_path, protocol):
    path = _write(tmp_path, "objects.pkl", pickle.dumps({"pose": np.array([1, "a"], dtype=object)}, protocol=protocol))
    with pytest.raises(MotionError, match="arrays of Python objects are not allowed") as info:
        safe_load_pickle(path)
    assert str(path) in str(info.value)
    with pytest.raises(MotionError, match="Python objects"):
        load_motions(path)


def test_object_array_holding_a_call_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    evil = np.array([Call(os.system, f"touch {marker}"), "a"], dtype=object)
    path = _write(tmp_path, "objects.pkl", pickle.dumps([{"pose": evil}]))
    # Refused either for the call inside (reached first) or for the object array itself.
    with pytest.raises(MotionError, match="arrays of Python objects|'(posix|os)\\.system'"):
        load_motions(path)
    assert not marker.exists()
    _run_plainly(path)
    assert marker.exists()  # control


@pytest.mark.parametrize(
    "args",
    [((2,), "O"), ((1, 24, 3), "O", b"\x41" * 8 * 72), ((10**6, 10**6), "f8")],
    ids=["object array", "object array over raw bytes", "huge allocation"],
)
def test_numpy_ndarray_is_never_called(tmp_path, args):
    """``numpy.ndarray`` may only appear as array reconstruction's class: called, it could make an array of
    Python objects from raw bytes (pointers the file chooses) or allocate at will."""
    path = _write(tmp_path, "ndarray.pkl", pickle.dumps({"pose": Call(np.ndarray, *args)}))
    with pytest.raises(MotionError) as info:
        safe_load_pickle(path)
    assert str(path) in str(info.value)


def test_object_array_of_raw_pointers_cannot_crash_the_process(tmp_path):
    frames = [Call(np.ndarray, (1, 24, 3), "O", b"\x41" * 8 * 72)]  # 0x4141414141414141 as PyObject*
    path = _write(
        tmp_path, "pointers.pkl", pickle.dumps({"video_path": "a.mp4", "pose": {"joints3d_nonparam": frames}})
    )
    result = _load_in_subprocess(path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "refused" in result.stdout and "motion error" in result.stdout


class _EvilDtype:
    """numpy.dtype('V8') (allowed: no Python objects), whose BUILD state then moves its one field 1 GiB
    past the 8 bytes of each element: numpy does not check field offsets in ``dtype.__setstate__``."""

    def __reduce__(self):
        return np.dtype, ("V8", False, True), (3, "|", None, ("a",), {"a": (np.dtype("<f8"), 1 << 30)}, 8, 1, 0)


class _EvilArray:
    def __init__(self, shape):
        self.shape = shape

    def __reduce__(self):
        raw = b"\0" * 8 * int(np.prod(self.shape))
        reconstruct = np.zeros(1).__reduce__()[0]  # numpy's multiarray._reconstruct
        return reconstruct, (np.ndarray, (0,), b"b"), (1, self.shape, _EvilDtype(), False, raw)


def _evil_scalar_call() -> Call:
    scalar = np.float64(0).__reduce__()[0]  # numpy's multiarray.scalar, as numpy pickles its scalars
    return Call(scalar, _EvilDtype(), b"\0" * 8)


def _load_in_subprocess(path: Path) -> subprocess.CompletedProcess:
    """safe_load_pickle, then load_motions, in a separate process (a crash must not take pytest down)."""
    code = textwrap.dedent(
        """
        import sys
        from mtvcrafter.motion import MotionError, load_motions, safe_load_pickle
        try:
            safe_load_pickle(sys.argv[1])
        except MotionError:
            print("refused", flush=True)
        else:
            print("accepted", flush=True)
        try:
            load_motions(sys.argv[1])
        except MotionError:
            print("motion error", flush=True)
        """
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("where", ["frame array", "metadata scalar"])
def test_crafted_dtype_state_is_refused(tmp_path, where):
    if where == "frame array":
        clip = {"video_path": "a.mp4", "pose": {"joints3d_nonparam": [_EvilArray((1, 24, 3))]}}
    else:
        clip = {"video_path": "a.mp4", "video_width": _evil_scalar_call(), "pose": _standing_person(2)}
    path = _write(tmp_path, "dtype.pkl", pickle.dumps(clip, protocol=4))
    result = _load_in_subprocess(path)
    assert result.returncode == 0, f"the process died with {result.returncode}"
    assert "refused" in result.stdout


# --- Tensors that reach past their storage ---------------------------------------------------------


class _TensorPickler(pickle.Pickler):
    """Pickles torch tensors as torch does (``_rebuild_tensor_v2`` over the real storage, which pickles as
    torch's legacy bytes), but with the (offset, size, stride) given."""

    def __init__(self, file, torch, geometry):
        super().__init__(file, protocol=4)
        self._torch, self._geometry = torch, geometry

    def reducer_override(self, obj):
        if isinstance(obj, self._torch.Tensor):
            offset, size, stride = self._geometry
            args = (obj._typed_storage(), offset, size, stride, False, OrderedDict())
            return self._torch._utils._rebuild_tensor_v2, args
        return NotImplemented


def _tensor_clip_bytes(torch, geometry) -> bytes:
    frame = torch.from_numpy(_standing_person(2))  # (2, 24, 3): a storage of 144 floats
    buffer = io.BytesIO()
    _TensorPickler(buffer, torch, geometry).dump({"video_path": "a.mp4", "pose": {"joints3d_nonparam": [frame]}})
    return buffer.getvalue()


BAD_GEOMETRY = {
    "one element past the end": (0, (2, 24, 3), (72, 3, 2)),
    "a frame too many": (0, (3, 24, 3), (72, 3, 1)),
    "offset past the end": (73, (2, 24, 3), (72, 3, 1)),
    "offset at the end": (144, (1,), (1,)),
    "negative stride": (143, (2, 24, 3), (-72, -3, -1)),
    "negative offset": (-1, (2, 24, 3), (72, 3, 1)),
    "rank mismatch": (0, (2, 24, 3), (72, 3)),
}


def test_tensor_geometry_control_loads(torch, tmp_path):
    path = _write(tmp_path, "tensor.pkl", _tensor_clip_bytes(torch, (0, (2, 24, 3), (72, 3, 1))))
    (motion,) = load_motions(path)
    np.testing.assert_array_equal(motion.joints, _standing_person(2)[:1])


@pytest.mark.parametrize("case", BAD_GEOMETRY)
def test_tensors_reaching_past_their_storage_are_refused(torch, tmp_path, case):
    path = _write(tmp_path, "tensor.pkl", _tensor_clip_bytes(torch, BAD_GEOMETRY[case]))
    with pytest.raises(
        MotionError, match="past its storage|more elements than its storage|invalid shape|invalid stride"
    ) as info:
        safe_load_pickle(path)
    assert str(path) in str(info.value)
    with pytest.raises(MotionError):
        load_motions(path)


def test_torch_saved_tensor_reaching_past_its_storage_is_refused(torch, tmp_path):
    frame = torch.from_numpy(_standing_person(2))
    buffer = io.BytesIO()
    torch.save({"video_path": "a.mp4", "pose": {"joints3d_nonparam": [frame]}}, buffer)
    # The size (2, 24, 3) in the archive's data.pkl becomes (3, 24, 3): a frame more than the storage holds.
    tampered = _rewrite_member(buffer.getvalue(), "data.pkl", b"K\x02K\x18K\x03\x87", b"K\x03K\x18K\x03\x87")
    path = _write(tmp_path, "tensor.pt", tampered)
    with pytest.raises(MotionError, match="past its storage|more elements than its storage"):
        load_motions(path)


def test_tensor_with_absurd_stride_gives_motion_error(torch, tmp_path):
    path = _write(tmp_path, "tensor.pkl", _tensor_clip_bytes(torch, (0, (2, 24, 3), (10**30, 3, 1))))
    with pytest.raises(MotionError, match="past its storage"):
        safe_load_pickle(path)


def test_stride_of_a_single_element_dimension_is_ignored(torch, tmp_path):
    """A dimension of size one never steps (torch ignores its stride too): the tensor reads normally."""
    path = _write(tmp_path, "tensor.pkl", _tensor_clip_bytes(torch, (0, (1, 24, 3), (10**30, 3, 1))))
    frame = safe_load_pickle(path)["pose"]["joints3d_nonparam"][0]
    assert frame.shape == (1, 24, 3)


def test_broadcast_tensor_over_a_tiny_storage_is_refused(tmp_path):
    """A 1 KB file must not make the reader allocate gigabytes: a tensor of 2**25 elements with
    stride 0 over a one-element storage, eight times, in a torch.save archive."""
    tensor = (
        b"ctorch._utils\n_rebuild_tensor_v2\n((S'storage'\nctorch\nDoubleStorage\nS'0'\nS'cpu'\nK\x01tQ"
        b"K\x00J\x00\x00\x00\x02\x85K\x00\x85\x89}tR"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a/data.pkl", b"\x80\x02(" + tensor * 8 + b"l.")
        archive.writestr("a/data/0", b"\0" * 8)
    path = _write(tmp_path, "bomb.pt", buffer.getvalue())
    assert path.stat().st_size < 2000
    with pytest.raises(MotionError, match="more elements than its storage"):
        safe_load_pickle(path)


def test_huge_declared_shapes_are_refused_before_any_arithmetic(tmp_path):
    """Shapes of enormous integers are refused without multiplying them (which alone can take hours)."""
    big = 10**20000
    numeric = importlib.import_module("numpy._core.numeric")
    path = _write(
        tmp_path, "shape.pkl", pickle.dumps({"pose": Call(numeric._frombuffer, b"", np.dtype("f4"), (big,) * 30, "C")})
    )
    with pytest.raises(MotionError, match="too large"):
        safe_load_pickle(path)


def test_one_buffer_reused_many_times_is_bounded(tmp_path):
    """Pickle memo references let a file reuse one data buffer for many arrays; what they add up to
    is bounded, so a few megabytes cannot expand to gigabytes."""
    numeric = importlib.import_module("numpy._core.numeric")
    raw = bytes(4 << 20)  # one million float32 values, stored once in the file
    arrays = [Call(numeric._frombuffer, raw, np.dtype("f4"), (1 << 20,), "C") for _ in range(100)]
    path = _write(tmp_path, "reuse.pkl", pickle.dumps(arrays, protocol=4))
    assert path.stat().st_size < 6 << 20
    with pytest.raises(MotionError, match="more array data than a motion file can hold"):
        safe_load_pickle(path)


def test_deeply_nested_torch_storages_give_motion_error(tmp_path):
    data = pickle.dumps(1)
    for _ in range(sys.getrecursionlimit() + 100):
        data = _global_call("torch.storage", "_load_from_bytes", data)
    path = _write(tmp_path, "nested.pkl", data)
    with pytest.raises(MotionError):
        safe_load_pickle(path)


def test_persistent_ids_outside_torch_data_are_refused(tmp_path):
    path = _write(tmp_path, "pid.pkl", b"\x80\x04" + _binunicode("anything") + b"Q.")
    with pytest.raises(MotionError, match="persistent id"):
        safe_load_pickle(path)


# --- Broken files ----------------------------------------------------------------------------------


def _nlf_plain_bytes(torch) -> bytes:
    return pickle.dumps(_nlf_clip([torch.from_numpy(f) for f in _people(3)]))


def _nlf_zip_bytes(torch) -> bytes:
    buffer = io.BytesIO()
    torch.save(_nlf_clip([torch.from_numpy(f) for f in _people(3)]), buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("layout", ["official arrays", "NLF tensors, pickle", "NLF tensors, torch.save"])
def test_truncated_files_give_motion_error(request, tmp_path, layout):
    if layout == "official arrays":
        data = pickle.dumps([_nlf_clip(_standing_person(3))], protocol=4)
    elif layout == "NLF tensors, pickle":
        data = _nlf_plain_bytes(request.getfixturevalue("torch"))
    else:
        data = _nlf_zip_bytes(request.getfixturevalue("torch"))
    path = tmp_path / "truncated.pkl"
    load_motions(_write(tmp_path, "whole.pkl", data))  # the whole file is fine
    step = max(1, len(data) // 1500)
    for end in range(0, len(data), step):
        path.write_bytes(data[:end])
        try:
            load_motions(path)
        except MotionError as exc:
            assert str(path) in str(exc)
        else:
            pytest.fail(f"a file truncated to {end} of {len(data)} bytes loaded")


def test_random_bytes_give_motion_error(tmp_path):
    rng = np.random.default_rng(20261125)
    headers = [b"", b"\x80\x02", b"\x80\x04", b"\x80\x05", b"PK\x03\x04"]
    escaped = []
    path = tmp_path / "random.pkl"
    for i in range(600):
        data = headers[i % len(headers)] + rng.bytes(int(rng.integers(0, 400)))
        path.write_bytes(data)
        try:
            load_motions(path)
        except MotionError:
            pass
        except Exception as exc:  # what must not happen
            escaped.append(f"{data[:24]!r}…: {type(exc).__name__}: {exc}")
        else:
            pytest.fail(f"random bytes loaded as a motion: {data!r}")
    assert not escaped, "\n".join(escaped)


def test_empty_and_missing_files_give_motion_error(tmp_path):
    for path in (_write(tmp_path, "empty.pkl", b""), tmp_path / "missing.pkl"):
        with pytest.raises(MotionError, match=re.escape(str(path))):
            safe_load_pickle(path)


def _corrupted(case: str, request) -> tuple[str, bytes]:
    clip = [_nlf_clip(_standing_person(3))]
    if case == "FRAME length beyond maxsize":
        data = bytearray(pickle.dumps(clip, protocol=4))
        assert data[2:3] == pickle.FRAME
        data[3:11] = struct.pack("<Q", 2**63)
        return "clip.pkl", bytes(data)
    if case == "BINBYTES8 length beyond maxsize":
        return "clip.pkl", b"\x80\x04\x8e" + struct.pack("<Q", 2**63) + b"."
    if case == "zip compression method":
        buffer = io.BytesIO()
        request.getfixturevalue("torch").save(clip, buffer)
        data = bytearray(buffer.getvalue())
        at = data.find(b"PK\x01\x02")  # central directory entries: compression method at offset 10
        while at >= 0:
            data[at + 10 : at + 12] = struct.pack("<H", 99)
            at = data.find(b"PK\x01\x02", at + 4)
        return "clip.pt", bytes(data)
    if case == "dtype flags":
        # The dtype's pickled state ends with its flags (0 for float32); 199 claims it holds Python objects.
        data = pickle.dumps(clip, protocol=3)
        old = b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"
        assert data.count(old) == 1
        return "clip.pkl", data.replace(old, b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\xc7t")
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case", ["FRAME length beyond maxsize", "BINBYTES8 length beyond maxsize", "zip compression method", "dtype flags"]
)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # numpy's, for 'dtype flags'
def test_corrupted_files_give_motion_error(request, tmp_path, case):
    name, data = _corrupted(case, request)
    path = _write(tmp_path, name, data)
    if case == "dtype flags":
        # Flags mean nothing for the plain numeric types allowed, so they are ignored: the data
        # reads as what it is (float32), never as Python objects.
        (motion,) = load_motions(path)
        assert motion.joints.dtype == np.float32
        return
    with pytest.raises(MotionError, match=re.escape(str(path))):
        load_motions(path)


@pytest.mark.parametrize(
    "clip",
    [
        {"pose": {"joints3d_nonparam": [[[1.0, 2.0], [3.0]]]}},
        {"video_length": "many", "pose": np.zeros((2, 24, 3), np.float32)},
        {"video_length": [2], "pose": np.zeros((2, 24, 3), np.float32)},
    ],
    ids=["ragged frame", "text video_length", "list video_length"],
)
def test_malformed_clip_fields_give_motion_error(tmp_path, clip):
    path = _write(tmp_path, "clip.pkl", pickle.dumps(clip))
    try:
        load_motions(path)
    except MotionError:
        return
    except Exception as exc:  # what must not happen
        pytest.fail(f"{type(exc).__name__} instead of MotionError: {exc}")
    pytest.fail("loaded")


# --- 2. Real NLF output loads as numpy, bit for bit -------------------------------------------------


def _standing_person(frames: int) -> np.ndarray:
    """A plausible person in millimetres, (frames, 24, 3) float32."""
    from mtvcrafter.motion.skeleton import NEUTRAL_REST_JOINTS_M

    body = NEUTRAL_REST_JOINTS_M * [1000.0, -1000.0, -1000.0] + [0.0, 0.0, 2000.0]
    return np.repeat(body[None], frames, axis=0).astype(np.float32)


def _people(frames: int, seed: int = 7) -> list[np.ndarray]:
    """Per-frame (2, 24, 3) float32: a walking person first, someone else second, with unround values."""
    rng = np.random.default_rng(seed)
    first = _standing_person(frames) + rng.normal(0, 30, (frames, 24, 3)).astype(np.float32)
    second = first[::-1] + np.float32(1000.0)
    return [np.stack([a, b]).astype(np.float32) for a, b in zip(first, second, strict=True)]


def _nlf_clip(pose) -> dict:
    frames = pose if not isinstance(pose, list) else {"joints3d_nonparam": pose}
    return {
        "file_path": "./data/frames/clip",
        "video_path": "./data/videos/clip.mp4",
        "pose": frames,
        "video_length": len(pose),
        "video_height": 720,
        "video_width": 1280,
    }


VARIANTS = ["float32", "transposed view", "strided view", "views of one storage", "float16", "bfloat16", "float64"]


def _tensors(torch, variant: str, frames: int = 5) -> list:
    people = _people(frames)
    if variant == "float32":
        return [torch.from_numpy(p) for p in people]
    if variant == "transposed view":  # stored (3, 24, 2), seen as (2, 24, 3)
        tensors = [torch.from_numpy(np.ascontiguousarray(p.transpose(2, 1, 0))).transpose(0, 2) for p in people]
        assert not any(t.is_contiguous() for t in tensors)
        return tensors
    if variant == "strided view":  # every other element of a larger tensor
        tensors = []
        for p in people:
            big = np.zeros((4, 48, 6), np.float32)
            big[::2, ::2, ::2] = p
            tensors.append(torch.from_numpy(big)[::2, ::2, ::2])
        assert not any(t.is_contiguous() for t in tensors)
        return tensors
    if variant == "views of one storage":  # frames sliced from one tensor: storage offsets
        whole = torch.from_numpy(np.concatenate([np.zeros((1, 24, 3), np.float32), *people]))
        tensors = [whole[1 + 2 * i : 3 + 2 * i] for i in range(frames)]
        assert all(t.storage_offset() > 0 for t in tensors)
        return tensors
    return [torch.from_numpy(p).to(getattr(torch, variant)) for p in people]


def _expected(torch, tensor) -> np.ndarray:
    """What the loader must give for a tensor: its values as numpy (bfloat16, which numpy lacks, as float32)."""
    return tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()


def _save(torch, obj, path: Path, layout: str) -> Path:
    if layout == "pickle":
        with open(path, "wb") as handle:
            pickle.dump(obj, handle)
    else:
        torch.save(obj, path, _use_new_zipfile_serialization=layout == "torch.save")
    return path


def _assert_bit_exact(got: np.ndarray, want: np.ndarray) -> None:
    assert type(got) is np.ndarray
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(want).tobytes()


@pytest.mark.parametrize("layout", ["pickle", "torch.save", "legacy torch.save"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_nlf_tensors_load_bit_exactly(torch, tmp_path, variant, layout):
    tensors = _tensors(torch, variant)
    clip = _nlf_clip(tensors)
    path = _save(
        torch, clip if layout == "pickle" else [clip], tmp_path / f"nlf.{'pkl' if layout == 'pickle' else 'pt'}", layout
    )
    if layout == "torch.save":
        assert path.read_bytes()[:4] == b"PK\x03\x04"
    if layout == "legacy torch.save":  # torch's pre-1.6 format: pickles then raw storage bytes
        assert path.read_bytes()[:4] != b"PK\x03\x04"

    raw = safe_load_pickle(path)
    raw = raw if isinstance(raw, dict) else raw[0]
    for got, tensor in zip(raw["pose"]["joints3d_nonparam"], tensors, strict=True):
        _assert_bit_exact(got, _expected(torch, tensor))
    assert {k: v for k, v in raw.items() if k != "pose"} == {k: v for k, v in clip.items() if k != "pose"}

    (motion,) = load_motions(path)
    first_person = np.stack([t.float().numpy()[0] for t in tensors])
    _assert_bit_exact(motion.joints, first_person)
    assert not np.array_equal(motion.joints, np.stack([t.float().numpy()[1] for t in tensors]))
    assert motion.image_size == (720, 1280) and motion.name == "clip" and motion.num_frames == len(tensors)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_official_array_layout_loads_bit_exactly_in_every_protocol(tmp_path, protocol):
    pose = np.stack([p[0] for p in _people(6)])
    path = _write(tmp_path, "official.pkl", pickle.dumps([_nlf_clip(pose)], protocol=protocol))
    (clip,) = safe_load_pickle(path)
    _assert_bit_exact(clip["pose"], pose)
    (motion,) = load_motions(path)
    _assert_bit_exact(motion.joints, pose)


# --- Simulated GPU files ---------------------------------------------------------------------------


def _relocate_to_gpu(legacy: bytes) -> bytes:
    """A legacy torch storage stream as written on 'cuda:0' (same length prefix rule: 4 bytes, little-endian)."""
    assert legacy.count(CPU_LOCATION) == 1
    return legacy.replace(CPU_LOCATION, GPU_LOCATION)


def _gpu_pickler(torch):
    class GpuPickler(pickle.Pickler):
        """``pickle.dump`` as on a GPU machine: each storage is what ``TypedStorage.__reduce__`` gives for a
        storage on 'cuda:0' (torch's legacy bytes, location 'cuda:0', data copied to the host)."""

        def reducer_override(self, obj):
            if isinstance(obj, torch.storage.TypedStorage):
                buffer = io.BytesIO()
                torch.save(obj, buffer, _use_new_zipfile_serialization=False)
                return torch.storage._load_from_bytes, (_relocate_to_gpu(buffer.getvalue()),)
            return NotImplemented

    return GpuPickler


def _rewrite_member(archive: bytes, suffix: str, old: bytes, new: bytes) -> bytes:
    """The zip with ``old`` replaced by ``new`` in its member ending with ``suffix`` (each other member kept)."""
    with zipfile.ZipFile(io.BytesIO(archive)) as source:
        members = [(info.filename, source.read(info.filename)) for info in source.infolist()]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as target:
        for name, data in members:
            if name.endswith(suffix):
                assert old in data
                data = data.replace(old, new)
            target.writestr(name, data)
    return out.getvalue()


def _write_gpu_file(torch, obj, path: Path, layout: str) -> Path:
    if layout == "pickle":
        buffer = io.BytesIO()
        _gpu_pickler(torch)(buffer, protocol=4).dump(obj)
        path.write_bytes(buffer.getvalue())
    else:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        path.write_bytes(_rewrite_member(buffer.getvalue(), "data.pkl", CPU_LOCATION, GPU_LOCATION))
    return path


def _disassembled_object_pickles(path: Path) -> list[str]:
    """pickletools' listing of each pickle that names storage locations in the file."""
    data = path.read_bytes()
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
            chunks = [archive.read(name)]
    else:
        legacy = [
            arg for _, arg, _ in pickletools.genops(data) if isinstance(arg, bytes) and arg.startswith(LEGACY_MAGIC)
        ]
        chunks = []
        for stream in legacy:  # magic, protocol version, system info, then the storage's pickle
            handle = io.BytesIO(stream)
            for _ in range(3):
                list(pickletools.genops(handle))
            start = handle.tell()
            list(pickletools.genops(handle))
            chunks.append(stream[start : handle.tell()])
    listings = []
    for chunk in chunks:
        text = io.StringIO()
        pickletools.dis(chunk, out=text)
        listings.append(text.getvalue())
    return listings


@pytest.mark.parametrize("layout", ["pickle", "torch.save"])
def test_gpu_saved_tensors_load_on_a_cpu_only_machine(torch, tmp_path, layout):
    tensors = _tensors(torch, "float32", frames=4)
    path = _write_gpu_file(torch, _nlf_clip(tensors), tmp_path / f"gpu.{'pkl' if layout == 'pickle' else 'pt'}", layout)

    listings = _disassembled_object_pickles(path)
    assert len(listings) == (len(tensors) if layout == "pickle" else 1)
    for listing in listings:
        assert "'cuda:0'" in listing and "'cpu'" not in listing, listing

    if not torch.cuda.is_available():  # torch itself sees GPU data it cannot place here
        with pytest.raises(RuntimeError, match="CUDA"):
            if layout == "pickle":
                with open(path, "rb") as handle:
                    pickle.load(handle)
            else:
                torch.load(path, weights_only=False)
    if layout == "torch.save":  # still a valid torch file
        again = torch.load(path, map_location="cpu", weights_only=False)
        assert all(torch.equal(a, b) for a, b in zip(again["pose"]["joints3d_nonparam"], tensors, strict=True))

    (motion,) = load_motions(path)
    _assert_bit_exact(motion.joints, np.stack([t.numpy()[0] for t in tensors]))


def test_loading_gpu_files_does_not_import_torch(torch, tmp_path):
    tensors = _tensors(torch, "views of one storage", frames=3)
    expected = np.stack([t.numpy()[0] for t in tensors])
    np.save(tmp_path / "expected.npy", expected)
    files = [
        _write_gpu_file(torch, _nlf_clip(tensors), tmp_path / "gpu.pkl", "pickle"),
        _write_gpu_file(torch, [_nlf_clip(tensors)], tmp_path / "gpu.pt", "torch.save"),
        _write_gpu_file(torch, _nlf_clip([t.to(torch.bfloat16) for t in tensors]), tmp_path / "bf16.pkl", "pickle"),
    ]
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        from mtvcrafter.motion import load_motions
        assert "torch" not in sys.modules, "importing mtvcrafter.motion imported torch"
        expected = np.load(sys.argv[1])
        for path in sys.argv[2:]:
            (motion,) = load_motions(path)
            if "bf16" not in path:
                assert motion.joints.tobytes() == expected.tobytes(), path
        leaked = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        assert not leaked, leaked
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "expected.npy"), *map(str, files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"


# --- 3. Frames without a person, frames of the wrong shape ------------------------------------------


@pytest.mark.parametrize("layout", ["pickle", "torch.save"])
def test_frames_without_a_person_are_listed(torch, tmp_path, layout):
    tensors = [torch.from_numpy(p) for p in _people(6)]
    tensors[1] = torch.zeros((0, 24, 3))
    tensors[4] = torch.empty((0, 24, 3))
    path = _save(torch, _nlf_clip(tensors), tmp_path / "empty.pkl", layout)
    with pytest.raises(MotionError) as info:
        load_motions(path)
    message = str(info.value)
    assert str(path) in message and "joints3d_nonparam" in message
    assert "no person was detected in 2 frame(s) (1, 4)" in message


@pytest.mark.parametrize("shape", [(2, 17, 3), (24, 3), (1, 24, 2)], ids=["17 joints", "no person axis", "2-D joints"])
def test_wrong_frame_shape_names_the_frame(torch, tmp_path, shape):
    tensors = [torch.from_numpy(p) for p in _people(5)]
    tensors[3] = torch.ones(shape)
    path = _save(torch, _nlf_clip(tensors), tmp_path / "shape.pkl", "pickle")
    with pytest.raises(MotionError) as info:
        load_motions(path)
    message = str(info.value)
    assert str(path) in message
    assert f"frame 3 has shape {shape}" in message


# --- 4. The bundled official sample ----------------------------------------------------------------


def _assert_same_tree(got, want, where="file") -> None:
    assert type(got) is type(want), where
    if isinstance(want, np.ndarray):
        _assert_bit_exact(got, want)
    elif isinstance(want, dict):
        assert list(got) == list(want), where
        for key in want:
            _assert_same_tree(got[key], want[key], f"{where}[{key!r}]")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), where
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            _assert_same_tree(a, b, f"{where}[{i}]")
    else:
        assert got == want, where


@pytest.mark.parametrize("which", SAMPLES)
def test_official_sample_loads_as_plain_pickle_does(which):
    path = SAMPLES[which]
    if not path.is_file():
        pytest.skip(f"no official sample at {path}")
    with open(path, "rb") as handle:
        plain = pickle.load(handle)  # the bundled, trusted sample
    _assert_same_tree(safe_load_pickle(path), plain)
    motions = load_motions(path)
    assert len(motions) == len(plain) == 5
    for motion, clip in zip(motions, plain, strict=True):
        _assert_bit_exact(motion.joints, clip["pose"])
