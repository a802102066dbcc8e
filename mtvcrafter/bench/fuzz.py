"""``mtvcrafter bench fuzz``: property-based fuzzing (hypothesis) of every reader of outside bytes.

Each reader is given valid files changed at random — bits flipped, bytes replaced, inserted or deleted,
ranges repeated, the file cut; for zip-based files (``.npz``) also the fields of the zip headers (flags,
compression method, CRC, sizes) and the arrays' bytes and ``.npy`` headers re-packed with valid checksums;
for text (BVH, JSON) whole lines and numbers — and inputs built from scratch (arrays of any type and shape,
pickles of official-looking clips, JSON values). A reader passes when every input is either read or refused
with that reader's own error — :class:`~mtvcrafter.motion.MotionError` for the motion readers,
:class:`~mtvcrafter.render.RenderError` for reference images, a 4xx ``ApiError`` naming the field for the
server's uploads — whose message is one line naming the file (and, from the server, no path of its own),
within :data:`MAX_SECONDS` and :data:`MAX_MEMORY_MB`.

The seeds are built here from the motions of ``examples/`` (or a synthetic one); tests add real-world files.
"""

from __future__ import annotations

import io
import json
import pickle
import re
import shutil
import struct
import tempfile
import time
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..motion import Motion, MotionError, load_motions, motion_to_arrays
from ..motion.json_motion import read_json_motion
from ..motion.official import write_official_pickle
from ..motion.skeleton import NEUTRAL_REST_JOINTS_M

#: Longest time one input may take to read.
MAX_SECONDS = 1.0
#: Most memory (peak resident, above what the process held before) one input may take to read.
MAX_MEMORY_MB = 256
#: Longest error message accepted (one line).
MAX_MESSAGE_CHARS = 1000
#: Bytes an input may grow beyond its seed.
MAX_GROWTH = 1 << 16
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class UnexpectedOutcome(AssertionError):
    """A reader raised something other than its documented error, or took too long or too much memory, or
    its error message is not one line naming the file."""


@dataclass
class Reader:
    """One reader of outside bytes under test.

    ``read(data, path)``: reads ``data`` (already written to ``path``, whose name messages must hold);
    ``errors``: what it may raise; ``check``: what is wrong with an error it raised (None: nothing);
    ``kind``: which mutations suit its files (``zip``, ``text`` or ``binary``); ``suffix``: the file name's.
    """

    name: str
    suffix: str
    read: Callable[[bytes, Path], object]
    errors: tuple[type[BaseException], ...]
    seeds: list[bytes]
    kind: str
    generated: Callable[[], Any] | None = None
    check: Callable[[BaseException, Path], str | None] | None = None


@dataclass
class Tally:
    """What a reader did with the inputs of a run."""

    examples: int = 0
    read: int = 0
    errors: Counter = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    slowest_s: float = 0.0
    most_memory_mb: float = 0.0


# -- measuring -----------------------------------------------------------------------------------------------


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> int | None:
    """Reset the kernel's peak-resident counter of this process (Linux); the resident size now, in kB."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return None
    return _status_kb("VmRSS:")


def _peak_growth_mb(before_kb: int | None) -> float:
    if before_kb is None:
        return 0.0
    peak = _status_kb("VmHWM:")
    return 0.0 if peak is None else max(0.0, (peak - before_kb) / 1024)


def message_problem(exc: BaseException, path: Path) -> str | None:
    """What is wrong with an error's message: not one line, too long, or not naming the file."""
    text = str(exc)
    if "\n" in text or "\r" in text:
        return "the message is more than one line"
    if len(text) > MAX_MESSAGE_CHARS:
        return f"the message has {len(text):,} characters"
    if path.name not in text:
        return f"the message does not name the file ({path.name})"
    if re.search(r"<[^<>]* at 0x[0-9a-fA-F]+>", text):
        return "the message shows a Python object's repr"
    return None


def run_one(reader: Reader, data: bytes, path: Path) -> tuple[str, float, float]:
    """Read one input: the outcome (``"read"`` or the error's type name), the seconds and the peak memory (MB)
    it took; :class:`UnexpectedOutcome` for anything but the reader's own errors, or beyond the bounds."""
    path.write_bytes(data)
    before = _reset_peak()
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # decoders warn about what they skip; only errors count here
            reader.read(data, path)
        outcome = "read"
    except reader.errors as exc:
        problem = (reader.check or message_problem)(exc, path)
        if problem:
            raise UnexpectedOutcome(f"{reader.name}: {type(exc).__name__}: {problem}: {str(exc)[:300]!r}") from exc
        outcome = type(exc).__name__
    except Exception as exc:
        raise UnexpectedOutcome(
            f"{reader.name}: unexpected {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        ) from exc
    seconds = time.perf_counter() - started
    memory = _peak_growth_mb(before)
    if seconds > MAX_SECONDS:  # timed again: a pause of a busy machine is not the reader's
        started = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reader.read(data, path)
        except reader.errors:
            pass
        seconds = min(seconds, time.perf_counter() - started)
    if seconds > MAX_SECONDS:
        raise UnexpectedOutcome(f"{reader.name}: took {seconds:.2f} s (at most {MAX_SECONDS:g} s), {len(data):,} bytes")
    if memory > MAX_MEMORY_MB:
        raise UnexpectedOutcome(
            f"{reader.name}: took {memory:.0f} MB (at most {MAX_MEMORY_MB} MB), {len(data):,} bytes"
        )
    return outcome, seconds, memory


# -- mutations -----------------------------------------------------------------------------------------------

INTERESTING_BYTES = b'\x00\x01\x7f\x80\xff-.e9 \n\t{}[]",:\\'
INTERESTING_INTS = (
    0,
    1,
    2,
    7,
    8,
    9,
    12,
    14,
    99,
    0x7F,
    0x80,
    0xFF,
    0x100,
    0x7FFF,
    0x8000,
    0xFFFF,
    0x7FFFFFFF,
    2**31,
    2**32 - 1,
)
INTERESTING_TOKENS = (
    b"NaN",
    b"nan",
    b"inf",
    b"-inf",
    b"Infinity",
    b"1e999",
    b"-1e999",
    b"1e308",
    b"1e39",
    b"0",
    b"-0",
    b"0.0",
    b"99999999999999999999",
    b"1" * 60,
    b"",
    b"x",
    b"\x00",
    b"\xff\xfe",
    b"\xc3",
    b"\xef\xbb\xbf",
    b"[",
    b"]",
    b"{",
    b"}",
    b",",
    b'"',
    b"\\",
    b"null",
    b"true",
    b"[[[",
    b"]]]",
    b"End Site",
    b"JOINT j",
    b"ROOT r",
    b"CHANNELS 3 Xrotation Yrotation Zrotation",
    b"CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation",
    b"OFFSET 0 0 0",
    b"Frames: 0",
    b"Frames: 99999999",
    b"Frame Time: 0",
    b"MOTION",
    b"HIERARCHY",
    b"}}}",
)
_NUMBER = re.compile(rb"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
#: (signature, {field offset: struct format}) of the zip headers: local file, central directory, end record
_ZIP_FIELDS = (
    (b"PK\x03\x04", {4: "<H", 6: "<H", 8: "<H", 14: "<I", 18: "<I", 22: "<I", 26: "<H", 28: "<H"}),
    (b"PK\x01\x02", {6: "<H", 8: "<H", 10: "<H", 16: "<I", 20: "<I", 24: "<I", 28: "<H", 30: "<H", 32: "<H", 42: "<I"}),
    (b"PK\x05\x06", {4: "<H", 6: "<H", 8: "<H", 10: "<H", 12: "<I", 16: "<I", 20: "<H"}),
)
DTYPES = (
    "<f4",
    "<f8",
    ">f4",
    "<f2",
    "<i8",
    "<u1",
    "|b1",
    "<c16",
    "<U5",
    "|S3",
    "|O",
    "<M8[s]",
    "|V8",
    "<U0",
    "[('a', '<f4')]",
)


def _strategies():
    from hypothesis import strategies as st

    return st


def byte_mutations(draw: Callable[[Any], Any], data: bytearray, count: int) -> bytearray:
    """``count`` changes anywhere in ``data``: flips, replaced and inserted bytes or tokens, deletions,
    repeats, a cut, and integers written over what is there (header fields)."""
    st = _strategies()
    for _ in range(count):
        op = draw(st.sampled_from(("flip", "byte", "insert", "token", "delete", "repeat", "cut", "int")))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and data:
            data[pos] = draw(st.sampled_from(INTERESTING_BYTES) | st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "token":
            data[pos:pos] = draw(st.sampled_from(INTERESTING_TOKENS))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        elif op == "repeat":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 256))]
        elif op == "cut":
            del data[pos:]
        elif op == "int" and len(data) >= 4:
            fmt = draw(st.sampled_from(("<H", "<I", ">I", "<q")))
            size = struct.calcsize(fmt)
            value = draw(st.sampled_from(INTERESTING_INTS)) % (1 << (8 * size - (1 if fmt == "<q" else 0)))
            pos = min(pos, len(data) - size)
            if pos >= 0:
                struct.pack_into(fmt, data, pos, value)
    return data


def zip_header_mutation(draw: Callable[[Any], Any], data: bytearray) -> bytearray:
    """One field of one zip header (local, central or end record) set to an interesting value."""
    st = _strategies()
    places = [
        (match.start(), fields)
        for signature, fields in _ZIP_FIELDS
        for match in re.finditer(re.escape(signature), bytes(data))
    ]
    if not places:
        return data
    start, fields = draw(st.sampled_from(places))
    offset = draw(st.sampled_from(sorted(fields)))
    fmt = fields[offset]
    value = draw(st.sampled_from(INTERESTING_INTS) | st.integers(0, 0xFFFF)) % (1 << (8 * struct.calcsize(fmt)))
    if start + offset + struct.calcsize(fmt) <= len(data):
        struct.pack_into(fmt, data, start + offset, value)
    return data


def npy_header(dtype: str, shape: tuple[int, ...], fortran: bool) -> bytes:
    """An ``.npy`` version 1.0 header for any descr text, shape and order (consistent with nothing)."""
    text = f"{{'descr': {dtype if dtype.startswith('[') else repr(dtype)}, 'fortran_order': {fortran}, "
    text += f"'shape': {shape!r}, }}"
    length = 10 + len(text) + 1
    text += " " * (-length % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin-1")


def member_mutation(draw: Callable[[Any], Any], data: bytes) -> bytes:
    """The archive re-packed (valid checksums) with one member's bytes changed, or its ``.npy`` header
    replaced (any type, shape and order over the same data), or a member dropped, repeated or added."""
    st = _strategies()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [(info.filename, archive.read(info)) for info in archive.infolist()]
    except Exception:  # not a zip any more: nothing to re-pack
        return data
    if not members:
        return data
    index = draw(st.integers(0, len(members) - 1))
    name, content = members[index]
    op = draw(st.sampled_from(("bytes", "header", "drop", "repeat", "add")))
    if op == "bytes":
        members[index] = (name, bytes(byte_mutations(draw, bytearray(content), draw(st.integers(1, 4)))))
    elif op == "header":
        body = content
        if content.startswith(b"\x93NUMPY") and len(content) >= 10:
            body = content[10 + struct.unpack("<H", content[8:10])[0] :]
        shape = tuple(draw(st.lists(st.sampled_from((0, 1, 2, 3, 4, 24, 72, 10**6, 2**40)), max_size=4)))
        header = npy_header(draw(st.sampled_from(DTYPES)), shape, draw(st.booleans()))
        members[index] = (name, header + body)
    elif op == "drop":
        del members[index]
    elif op == "repeat":
        members.insert(index, (name, content))
    else:
        members.append((draw(st.sampled_from(("x.npy", "format", "info.npy", "poses"))), content))
    method = draw(st.sampled_from((zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)))
    out = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w", method) as archive:
        warnings.simplefilter("ignore")  # a repeated member name is the point
        for member, payload in members:
            archive.writestr(member, payload)
    return out.getvalue()


def text_mutation(draw: Callable[[Any], Any], data: bytearray) -> bytearray:
    """A line deleted, repeated, swapped or inserted, or a number replaced by an interesting token."""
    st = _strategies()
    op = draw(st.sampled_from(("number", "number", "delete", "repeat", "swap", "insert")))
    if op == "number":
        match = _NUMBER.search(data, draw(st.integers(0, max(len(data) - 1, 0))))
        if match:
            data[match.start() : match.end()] = draw(st.sampled_from(INTERESTING_TOKENS[:16]))
        return data
    lines = bytes(data).split(b"\n")
    i = draw(st.integers(0, len(lines) - 1))
    if op == "delete":
        del lines[i]
    elif op == "repeat":
        lines.insert(i, lines[i])
    elif op == "swap":
        j = draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
    else:
        lines.insert(i, draw(st.sampled_from(INTERESTING_TOKENS)))
    return bytearray(b"\n".join(lines))


def mutated(seeds: Sequence[bytes], kind: str):
    """Hypothesis strategy: a seed changed by a few mutations that suit ``kind``, at most :data:`MAX_GROWTH`
    bytes larger."""
    st = _strategies()

    @st.composite
    def build(draw):
        seed = draw(st.sampled_from(seeds))
        data = bytearray(seed)
        for _ in range(draw(st.integers(1, 3))):
            choices = ["bytes"] + {"zip": ["zip", "member", "member"], "text": ["text", "text"]}.get(kind, [])
            how = draw(st.sampled_from(choices))
            if how == "bytes":
                data = byte_mutations(draw, data, draw(st.integers(1, 4)))
            elif how == "zip":
                data = zip_header_mutation(draw, data)
            elif how == "member":
                data = bytearray(member_mutation(draw, bytes(data)))
            else:
                data = text_mutation(draw, data)
        return bytes(data[: len(seed) + MAX_GROWTH])

    return build()


# -- generated inputs ----------------------------------------------------------------------------------------


def arrays():
    """Hypothesis strategy: a small array of any numeric, text, object or structured type and shape."""
    st = _strategies()

    @st.composite
    def build(draw):
        kind = draw(st.sampled_from(("float", "int", "bool", "complex", "text", "bytes", "object", "struct", "date")))
        shape = tuple(draw(st.lists(st.sampled_from((0, 1, 2, 3, 24)), max_size=3)))
        if kind == "float":  # a few values, repeated over the shape
            values = draw(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1, max_size=8))
            dtype = draw(st.sampled_from(("<f4", "<f8", ">f8", "<f2")))
            with np.errstate(over="ignore"):
                return np.resize(np.array(values, dtype=dtype), shape)
        if kind == "int":
            return np.full(shape, draw(st.integers(-(2**63), 2**63 - 1)), dtype=np.int64)
        if kind == "bool":
            return np.ones(shape, dtype=bool)
        if kind == "complex":
            return np.full(shape, 1 + 2j)
        if kind == "text":
            return np.full(shape, draw(st.text(max_size=20)))
        if kind == "bytes":
            return np.full(shape, draw(st.binary(max_size=20)))
        if kind == "object":
            return np.array([None, 1], dtype=object)
        if kind == "struct":
            return np.zeros(shape, dtype=[("a", "<f4"), ("b", "<i2")])
        return np.zeros(shape, dtype="datetime64[s]")

    return build()


def generated_npz(fields: Sequence[str], base: dict[str, np.ndarray]):
    """Hypothesis strategy: an ``.npz`` of ``base`` with some fields replaced by, or added as, any array."""
    st = _strategies()

    @st.composite
    def build(draw):
        values = dict(base)
        for name in draw(st.lists(st.sampled_from(list(fields)), min_size=1, max_size=4, unique=True)):
            if draw(st.integers(0, 5)) == 0:
                values.pop(name, None)
            else:
                values[name] = draw(arrays())
        out = io.BytesIO()
        (np.savez_compressed if draw(st.booleans()) else np.savez)(out, **values)
        return out.getvalue()

    return build()


def generated_pickles(clip: dict[str, Any]):
    """Hypothesis strategy: official-looking pickles: a clip's fields replaced by values of any type (arrays,
    lists, text, numbers, nested dicts), the pose in either official layout, any protocol; and pickles that ask
    for functions no motion file holds."""
    st = _strategies()
    values = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=20),
        st.binary(max_size=20),
        arrays(),
        st.lists(arrays(), max_size=3),
        st.dictionaries(st.text(max_size=5), arrays(), max_size=2),
    )

    @st.composite
    def build(draw):
        if draw(st.integers(0, 9)) == 0:  # a global no motion file holds
            module, name = draw(st.sampled_from((("os", "system"), ("builtins", "eval"), ("numpy", "load"))))
            return b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X\x02\x00\x00\x00idq\x00\x85q\x01Rq\x02."
        fields = dict(clip)
        for name in draw(st.lists(st.sampled_from([*clip, "joints3d_nonparam", "extra"]), max_size=3, unique=True)):
            fields[name] = draw(values)
        if draw(st.booleans()):
            frames = draw(st.lists(arrays(), max_size=3)) if draw(st.booleans()) else [np.zeros((1, 24, 3))] * 3
            fields["pose"] = {"joints3d_nonparam": frames}
        data = fields if draw(st.booleans()) else [fields] * draw(st.integers(0, 2))
        return pickle.dumps(data, protocol=draw(st.integers(0, pickle.HIGHEST_PROTOCOL)))

    return build()


def generated_json(frame: list):
    """Hypothesis strategy: JSON motions: the documented fields with values of any JSON type, joints of
    wrong shapes and numbers, unknown fields; and JSON values of any kind."""
    st = _strategies()
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    values = st.recursive(
        scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    )
    numbers = st.floats() | st.integers(-(10**30), 10**30) | st.sampled_from((1e39, -0.0, 1e-320))

    @st.composite
    def build(draw):
        if draw(st.integers(0, 4)) == 0:
            return json.dumps(draw(values)).encode()
        frames = draw(st.integers(0, 3))
        joints = [[list(j) for j in frame] for _ in range(frames)]
        for _ in range(draw(st.integers(0, 3))):
            if joints:
                f = draw(st.integers(0, len(joints) - 1))
                if not joints[f]:
                    continue
                j = draw(st.integers(0, len(joints[f]) - 1))
                how = draw(st.sampled_from(("number", "drop", "add", "value")))
                if how == "number" and isinstance(joints[f][j], list) and joints[f][j]:
                    joints[f][j][draw(st.integers(0, len(joints[f][j]) - 1))] = draw(numbers)
                elif how == "drop":
                    del joints[f][j:]
                elif how == "add":
                    joints[f].append([0, 0, 0])
                else:
                    joints[f][j] = draw(values)
        motion: dict[str, Any] = {"joints": joints}
        for name in draw(st.lists(st.sampled_from(("fps", "name", "frame_start", "fov_deg", "image_size", "x"))))[:3]:
            motion[name] = draw(values | numbers)
        return json.dumps(motion, ensure_ascii=draw(st.booleans())).encode()

    return build()


# -- seeds ---------------------------------------------------------------------------------------------------


def seed_motion(frames: int = 16) -> Motion:
    """A short clip of a person: the first of the official sample motions in ``examples/`` (a checkout), else
    the neutral skeleton swaying in front of the camera."""
    sample = EXAMPLES / "sampled_data.pkl"
    if sample.is_file():
        return load_motions(sample)[0].slice(0, frames)
    t = np.arange(frames)[:, None, None] / 30.0
    joints = NEUTRAL_REST_JOINTS_M[None] * np.array([1.0, -1.0, 1.0]) * 1000.0 + [0.0, 0.0, 3000.0]
    joints = joints + 30.0 * np.sin(2 * np.pi * t + np.arange(24)[None, :, None])
    return Motion(joints=joints.astype(np.float32), fps=30.0, name="synthetic")


def amass_seed(frames: int = 16, width: int = 156, compressed: bool = False, **changes: Any) -> bytes:
    """An AMASS-style ``.npz`` (SMPL-H by default): small smooth joint angles, a walk forwards."""
    rng = np.random.default_rng(width + frames)
    t = np.arange(frames)[:, None] / 120.0
    poses = 0.3 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0, (1, width)) * t + rng.uniform(0, 6, (1, width)))
    poses[:, 0:3] = [np.pi / 2, 0.0, 0.0]
    fields: dict[str, Any] = {
        "poses": poses,
        "trans": np.stack([0.0 * t[:, 0], -1.2 * t[:, 0], 0.95 + 0.0 * t[:, 0]], axis=-1),
        "betas": rng.normal(size=16),
        "gender": np.array("female"),
        "mocap_framerate": np.array(120.0),
        "dmpls": np.zeros((frames, 8)),
    }
    fields.update(changes)
    out = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(out, **{k: v for k, v in fields.items() if v is not None})
    return out.getvalue()


def npz_seeds(motion: Motion) -> list[bytes]:
    """Our ``.npz`` of the motion, stored and deflated, with and without rotations."""
    from ..motion import inverse_kinematics

    fitted = inverse_kinematics(motion.joints)
    with_rotations = Motion(
        joints=motion.joints,
        fps=motion.fps,
        frame_start=1,
        image_size=(480, 640),
        rotations=fitted.local_quaternions,
        rest_offsets=fitted.rest_offsets,
        root_translation=fitted.root_translation,
        name="fitted",
        notes=("a note",),
        metadata={"video_path": "./v.mp4"},
    )
    out = []
    for source in (motion, with_rotations):
        for save in (np.savez, np.savez_compressed):
            buffer = io.BytesIO()
            save(buffer, **motion_to_arrays(source))
            out.append(buffer.getvalue())
    return out


def pickle_seeds(motion: Motion, torch_too: bool = False) -> list[bytes]:
    """Official pickles of the motion: the sample layout (an array per clip), the extraction script's
    (``joints3d_nonparam``, a list of per-frame arrays), and protocol 2; torch-saved forms if asked and torch
    is installed."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.pkl"
        write_official_pickle([motion, motion.slice(0, 4)], path)
        sample = path.read_bytes()
    frames = [motion.joints[t][None] for t in range(motion.num_frames)]
    clip = {"video_path": "./v.mp4", "video_length": motion.num_frames, "video_height": 480, "video_width": 640}
    extraction = pickle.dumps({**clip, "pose": {"joints3d_nonparam": frames}})
    out = [sample, extraction, pickle.dumps([{**clip, "pose": motion.joints}], protocol=2)]
    if torch_too:
        try:
            import torch
        except ImportError:
            return out
        tensors = {**clip, "pose": {"joints3d_nonparam": [torch.from_numpy(f.copy()) for f in frames[:4]]}}
        for legacy in (False, True):
            buffer = io.BytesIO()
            torch.save(tensors, buffer, _use_new_zipfile_serialization=not legacy)
            out.append(buffer.getvalue())
    return out


def bvh_seed(amass: bytes) -> bytes:
    """A BVH of the SMPL skeleton (the writer's), from an AMASS clip's rotations."""
    from ..motion.bvh import write_bvh

    with tempfile.TemporaryDirectory() as folder:
        npz = Path(folder) / "a.npz"
        npz.write_bytes(amass)
        bvh = write_bvh(load_motions(npz)[0], Path(folder) / "a.bvh")
        return bvh.read_bytes()


def crop_bvh(data: bytes, frames: int) -> bytes:
    """A BVH cut to its first ``frames`` frames (``Frames:`` set to match), for fast inputs."""
    head, sep, rest = data.partition(b"MOTION")
    if not sep:
        return data
    lines = rest.replace(b"\r\n", b"\n").split(b"\n")
    header = [line for line in lines[:4] if line.strip().lower().startswith(b"frame")]
    rows = [line for line in lines[1:] if line.strip() and not line.strip().lower().startswith(b"frame")]
    header = [b"Frames: %d" % min(frames, len(rows)) if h.lower().startswith(b"frames") else h for h in header]
    return head + b"MOTION\n" + b"\n".join([*header, *rows[:frames]]) + b"\n"


def image_seeds() -> list[bytes]:
    """Small images in every accepted format and several modes."""
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (40, 32, 3), dtype=np.uint8)
    rgb = Image.fromarray(pixels)
    out = []
    for image, fmt in (
        (rgb, "PNG"),
        (rgb.convert("RGBA"), "PNG"),
        (rgb.convert("P"), "PNG"),
        (rgb.convert("L"), "PNG"),
        (rgb, "JPEG"),
        (rgb.convert("L"), "JPEG"),
        (rgb, "BMP"),
        (rgb.convert("P"), "BMP"),
        (rgb, "WEBP"),
        (rgb.convert("RGBA"), "WEBP"),
    ):
        buffer = io.BytesIO()
        try:
            image.save(buffer, fmt)
        except (OSError, KeyError):  # a format this Pillow cannot write
            continue
        out.append(buffer.getvalue())
    return out


# -- the readers ---------------------------------------------------------------------------------------------


def _server_check(field_prefix: str) -> Callable[[BaseException, Path], str | None]:
    """What is wrong with an upload's ApiError: not 4xx, not naming the field, or not one line, or showing a
    path of this machine."""

    def check(exc: BaseException, path: Path) -> str | None:
        status, message, where = getattr(exc, "status", 0), getattr(exc, "message", ""), getattr(exc, "field", "")
        if status not in (413, 415, 422):
            return f"status {status}"
        if not (where or "").startswith(field_prefix):
            return f"the field is {where!r}, not {field_prefix}…"
        if "\n" in message or len(message) > MAX_MESSAGE_CHARS:
            return "the message is not one short line"
        if str(path.parent) in message or re.search(r"(^|[\s'\"(])/(tmp|home|root|srv|var|work)/", message):
            return "the message shows a path of the server"
        if re.search(r"<[^<>]* at 0x[0-9a-fA-F]+>", message):
            return "the message shows a Python object's repr"
        return None

    return check


def readers(extra_seeds: dict[str, list[bytes]] | None = None, torch_seeds: bool = False) -> list[Reader]:
    """Every reader of outside bytes, with seeds built here plus ``extra_seeds`` by reader name."""
    from ..motion.bvh_motion import motion_from_bvh
    from ..render import RenderError, open_reference

    extra = extra_seeds or {}
    motion = seed_motion()
    amass = [
        amass_seed(),
        amass_seed(compressed=True),
        amass_seed(width=165, mocap_framerate=None, mocap_frame_rate=np.array(60.0)),
        amass_seed(width=72, gender=np.array(b"male")),
        amass_seed(poses=None, root_orient=np.zeros((16, 3)), pose_body=np.zeros((16, 63))),
    ]
    ours = npz_seeds(motion)
    official = pickle_seeds(motion, torch_too=torch_seeds)
    frame = motion.joints[0].round(2).tolist()
    as_json = [
        json.dumps({"joints": motion.joints.round(3).tolist(), "fps": 30}).encode(),
        json.dumps(
            {
                "name": "clip é",
                "fps": 25.0,
                "frame_start": 1,
                "fov_deg": 40,
                "image_size": [480, 640],
                "joints": [frame],
            },
            indent=1,
        ).encode(),
    ]
    images = image_seeds()
    if (EXAMPLES / "woman.png").is_file():
        images.append((EXAMPLES / "woman.png").read_bytes())
    official_fields = {"video_path": "./v.mp4", "video_length": 3, "video_height": 480, "video_width": 640}
    our_fields = tuple(motion_to_arrays(motion)) + ("rotations", "root_translation", "rest_offsets", "betas")
    amass_fields = ("poses", "trans", "betas", "gender", "mocap_framerate", "mocap_frame_rate", "root_orient")

    def load(data: bytes, path: Path) -> object:
        return load_motions(path)

    out = [
        Reader("bvh", ".bvh", lambda data, path: motion_from_bvh(path), (MotionError,), [bvh_seed(amass[0])], "text"),
        Reader(
            "npz",
            ".npz",
            load,
            (MotionError,),
            ours,
            "zip",
            lambda: generated_npz(our_fields, motion_to_arrays(motion)),
        ),
        Reader(
            "amass",
            ".npz",
            load,
            (MotionError,),
            amass,
            "zip",
            lambda: generated_npz(amass_fields, dict(np.load(io.BytesIO(amass[0])))),
        ),
        Reader("pickle", ".pkl", load, (MotionError,), official, "binary", lambda: generated_pickles(official_fields)),
        Reader(
            "json",
            ".json",
            lambda data, path: read_json_motion(data, source=str(path), max_frames=2000),
            (MotionError,),
            as_json,
            "text",
            lambda: generated_json(frame),
        ),
        Reader("image", ".png", lambda data, path: open_reference(path), (RenderError,), images, "binary"),
    ]
    try:
        from mtvcrafter_server.api.errors import ApiError
        from mtvcrafter_server.api.uploads import read_image, read_motion
    except ImportError:  # the server's extra is not installed: its readers are left out
        pass
    else:
        out += [
            Reader(
                "upload-motion",
                ".npz",
                lambda data, path: read_motion(data, path.name, path.parent, 2000),
                (ApiError,),
                ours + as_json + official[:1],
                "zip",
                lambda: generated_json(frame),
                _server_check("motion"),
            ),
            Reader(
                "upload-image",
                ".png",
                lambda data, path: read_image(data, 4_000_000),
                (ApiError,),
                images,
                "binary",
                None,
                _server_check("reference"),
            ),
        ]
    for reader in out:
        reader.seeds = reader.seeds + list(extra.get(reader.name, []))
    return out


def inputs(reader: Reader):
    """Hypothesis strategy of a reader's inputs: mutated seeds, and generated ones where it has them."""
    strategy = mutated(reader.seeds, reader.kind)
    if reader.name == "upload-motion":  # zip seeds and text seeds: each with the mutations that suit it
        zips = [s for s in reader.seeds if s[:2] == b"PK"]
        texts = [s for s in reader.seeds if s[:1] == b"{"]
        others = [s for s in reader.seeds if s not in zips and s not in texts] or zips
        strategy = mutated(zips, "zip") | mutated(texts, "text") | mutated(others, "binary")
    if reader.generated is not None:
        strategy = strategy | reader.generated()
    return strategy


# -- the benchmark -------------------------------------------------------------------------------------------


def fuzz(reader: Reader, examples: int, folder: Path, seed: int | None = None) -> Tally:
    """Run ``examples`` inputs through a reader; every outcome counted, unexpected ones kept (their inputs saved
    to ``folder``) rather than raised, so that the run goes on."""
    from hypothesis import HealthCheck, given, settings

    tally = Tally()
    path = folder / f"input{reader.suffix}"

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=seed is None,
        suppress_health_check=list(HealthCheck),
    )
    @given(inputs(reader))
    def run(data: bytes) -> None:
        tally.examples += 1
        try:
            outcome, seconds, memory = run_one(reader, data, path)
        except UnexpectedOutcome as exc:
            kept = folder / f"{reader.name}-unexpected-{len(tally.unexpected)}{reader.suffix}"
            kept.write_bytes(data)
            tally.unexpected.append(f"{exc} (input saved to {kept})")
            return
        tally.slowest_s = max(tally.slowest_s, seconds)
        tally.most_memory_mb = max(tally.most_memory_mb, memory)
        if outcome == "read":
            tally.read += 1
        else:
            tally.errors[outcome] += 1

    if seed is not None:
        from hypothesis import seed as hypothesis_seed

        run = hypothesis_seed(seed)(run)
    run()
    return tally


def fuzz_benchmark(examples: int = 500, only: Sequence[str] | None = None, seed: int | None = None) -> int:
    """``mtvcrafter bench fuzz``: each reader fed ``examples`` inputs (new ones each run unless ``seed`` is
    given; the seed is printed); a table of outcomes; exit status 1 when any reader raised something
    unexpected (or took too long or too much memory)."""
    try:
        import hypothesis  # noqa: F401
    except ImportError:
        print("error: bench fuzz needs hypothesis (pip install 'mtvcrafter[dev]' or pip install hypothesis)")
        return 2
    import random

    seed = random.randrange(2**32) if seed is None else seed
    folder = Path(tempfile.mkdtemp(prefix="mtvcrafter-fuzz-"))
    chosen = [r for r in readers(torch_seeds=True) if not only or r.name in only]
    print(
        f"mtvcrafter bench fuzz: {examples} inputs per reader, at most {MAX_SECONDS:g} s and {MAX_MEMORY_MB} MB "
        f"each; seed {seed} (the same inputs again: --seed {seed})"
    )
    header = f"{'reader':<15} {'inputs':>7} {'read':>6}  {'refused, by error':<40} {'slowest':>8} {'memory':>7}"
    header += f" {'unexpected':>10}"
    print(header)
    print("-" * len(header))
    failed = False
    for reader in chosen:
        started = time.perf_counter()
        tally = fuzz(reader, examples, folder, seed)
        refused = ", ".join(f"{n} {k}" for k, n in sorted(tally.errors.items())) or "-"
        print(
            f"{reader.name:<15} {tally.examples:>7} {tally.read:>6}  {refused:<40} {tally.slowest_s * 1000:>6.0f}ms "
            f"{tally.most_memory_mb:>5.0f}MB {len(tally.unexpected):>10}   ({time.perf_counter() - started:.1f} s)",
            flush=True,
        )
        for line in tally.unexpected[:10]:
            print(f"    {line}")
        failed = failed or bool(tally.unexpected)
    print("unexpected outcomes: " + (f"yes, see above (inputs kept in {folder})" if failed else "none"))
    if not failed:
        shutil.rmtree(folder, ignore_errors=True)
    return 1 if failed else 0


__all__ = [
    "MAX_MEMORY_MB",
    "MAX_SECONDS",
    "Reader",
    "Tally",
    "UnexpectedOutcome",
    "fuzz",
    "fuzz_benchmark",
    "inputs",
    "message_problem",
    "readers",
    "run_one",
]
