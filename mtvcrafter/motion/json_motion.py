"""JSON motion: ``{"joints": [[[x, y, z] × 24] × T], "fps": 30}`` (millimetres, camera space), read as it streams.

The joints are read frame by frame straight into one float array, so the memory a JSON motion takes is its
text plus its joints (8 bytes a value) — never a Python object per number, which would be some 30 times the
text. Reading stops at the first frame beyond ``max_frames``. Nothing else is built from the text either: the
other fields are single values, each checked where it is read.

Fields (any order; each at most once; no others):

- ``joints`` (required): a list of frames, each a list of the 24 SMPL joints, each ``[x, y, z]``: finite JSON
  numbers (at most 40 digits before and after the point).
- ``fps``: frames per second, above 0 and at most 1000 (default 30).
- ``name``: a label of at most :data:`MAX_NAME_CHARS` characters, or ``null``.
- ``frame_start``: the Blender frame of the first sample (a whole number), or ``null``.
- ``fov_deg``: the camera's view across the larger image side, 1–179 (default 55).
- ``image_size``: ``[height, width]`` of the camera's image in whole pixels, or ``null``.

Every malformed input raises :class:`~mtvcrafter.motion.errors.MotionError` naming the field (and the frame
and joint) and what is wrong; a motion over ``max_frames`` raises
:class:`~mtvcrafter.motion.errors.MotionLimitError`.
"""

from __future__ import annotations

import json
import re
from array import array
from typing import Any

import numpy as np

from .errors import MotionError, MotionLimitError
from .motion import MAX_FRAMES, Motion
from .skeleton import NUM_JOINTS

#: Longest ``name`` accepted, in characters.
MAX_NAME_CHARS = 256
FIELDS = ("joints", "fps", "name", "frame_start", "fov_deg", "image_size")

_WS = rb"[ \t\n\r]*"
_NUMBER = rb"-?(?:0|[1-9][0-9]{0,39})(?:\.[0-9]{1,40})?(?:[eE][+-]?[0-9]{1,4})?"
_TRIPLE = rb"\[" + _WS + (rb"(" + _NUMBER + rb")" + _WS + rb"," + _WS) * 2 + rb"(" + _NUMBER + rb")" + _WS + rb"\]"
_SPACE = re.compile(_WS)
_FRAME = re.compile(rb"\[" + _WS + _TRIPLE + (_WS + rb"," + _WS + _TRIPLE) * (NUM_JOINTS - 1) + _WS + rb"\]")
_JOINT = re.compile(_TRIPLE)
_NUMBER_VALUE = re.compile(_NUMBER + rb"(?![0-9.eE])")
_INTEGER = rb"(-?[0-9]{1,10})"
_SIZE = re.compile(rb"\[" + _WS + _INTEGER + _WS + rb"," + _WS + _INTEGER + _WS + rb"\]")
_STRING_UNIT = rb'(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})'
_KEY = re.compile(rb'"(' + _STRING_UNIT + rb'{0,64})"')
# a name's characters take up to 6 bytes each (\uXXXX escapes); its length is checked once decoded
_NAME = re.compile(rb'"(' + _STRING_UNIT + rb"{0,%d})" % (6 * MAX_NAME_CHARS) + rb'"')


def read_json_motion(data: bytes, source: str = "motion.json", max_frames: int = MAX_FRAMES) -> Motion:
    """A motion from the bytes of a JSON motion (UTF-8), every field checked (see the module docstring)."""
    return _Reader(data, source, max_frames).read()


def _snippet(data: bytes, pos: int) -> str:
    if pos >= len(data):
        return "the end of the text"
    text = data[pos : pos + 24].decode("utf-8", "replace")
    text = "".join(c if c.isprintable() else "?" for c in text)
    return f"'{text}…'" if pos + 24 < len(data) else f"'{text}'"


class _Reader:
    def __init__(self, data: bytes, source: str, max_frames: int):
        self.data = bytes(data)
        self.source = source
        self.max_frames = max_frames

    def fail(self, message: str, field: str | None = None) -> MotionError:
        return MotionError(message, source=self.source, field=field)

    def space(self, pos: int) -> int:
        return _SPACE.match(self.data, pos).end()  # type: ignore[union-attr]  # always matches

    def expect(self, pos: int, token: bytes, what: str, field: str | None = None) -> int:
        if self.data[pos : pos + len(token)] != token:
            raise self.fail(f"expected {what}, found {_snippet(self.data, pos)}", field)
        return pos + len(token)

    def read(self) -> Motion:
        data = self.data
        pos = 3 if data.startswith(b"\xef\xbb\xbf") else 0
        pos = self.expect(self.space(pos), b"{", "a JSON object ('{')")
        values: dict[str, Any] = {}
        pos = self.space(pos)
        if data[pos : pos + 1] == b"}":
            pos += 1
        else:
            while True:
                key, pos = self.key(pos)
                if key in values:
                    raise self.fail("given twice; give each field once", key)
                pos = self.expect(self.space(pos), b":", f"':' after \"{key}\"", key)
                values[key], pos = self.value(key, self.space(pos))
                pos = self.space(pos)
                if data[pos : pos + 1] == b",":
                    pos = self.space(pos + 1)
                    continue
                pos = self.expect(pos, b"}", f"',' or '}}' after the value of \"{key}\"", key)
                break
        pos = self.space(pos)
        if pos != len(data):
            raise self.fail(f"text after the JSON object: {_snippet(data, pos)}")
        if "joints" not in values:
            raise self.fail('missing: a JSON motion needs "joints": [[[x, y, z] × 24] × frames] (mm)', "joints")
        fps = values.get("fps")
        fov = values.get("fov_deg")
        return Motion(
            joints=values["joints"],
            fps=30.0 if fps is None else fps,
            name=values.get("name") or "",
            frame_start=values.get("frame_start"),
            image_size=values.get("image_size"),
            **({} if fov is None else {"fov_deg": fov}),
            source=self.source,
            source_format="array",
        )

    def key(self, pos: int) -> tuple[str, int]:
        match = _KEY.match(self.data, pos)
        if match is None:
            raise self.fail(
                f"expected a field name (a string of at most 64 characters), found {_snippet(self.data, pos)}"
            )
        key = self.decode(match.group(0), None)
        if key not in FIELDS:
            shown = json.dumps(key)  # escaped: one line whatever the key holds
            raise self.fail(f"unknown field {shown:.70}; a JSON motion has: {', '.join(FIELDS)}")
        return key, match.end()

    def decode(self, quoted: bytes, field: str | None) -> str:
        try:
            return json.loads(quoted)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise self.fail("is not valid UTF-8 text", field) from None

    def value(self, key: str, pos: int) -> tuple[Any, int]:
        data = self.data
        if data[pos : pos + 4] == b"null" and key in ("name", "frame_start", "image_size"):
            return None, pos + 4
        if key == "joints":
            return self.joints(pos)
        if key == "name":
            match = _NAME.match(data, pos)
            if match is None:
                if data[pos : pos + 1] == b'"':
                    raise self.fail(f"must be text of at most {MAX_NAME_CHARS} characters", key)
                raise self.fail(f"must be text (or null), found {_snippet(data, pos)}", key)
            name = self.decode(match.group(0), key)
            if len(name) > MAX_NAME_CHARS:
                raise self.fail(f"must be text of at most {MAX_NAME_CHARS} characters, got {len(name):,}", key)
            return name, match.end()
        if key == "image_size":
            match = _SIZE.match(data, pos)
            if match is None:
                raise self.fail(f"must be [height, width] in whole pixels, found {_snippet(data, pos)}", key)
            return (int(match.group(1)), int(match.group(2))), match.end()
        match = _NUMBER_VALUE.match(data, pos)
        if match is None:
            raise self.fail(f"must be a finite number, found {_snippet(data, pos)}", key)
        number = float(match.group(0))
        if key == "frame_start":
            if not number.is_integer() or abs(number) > 1_048_574:  # Blender's frame range
                raise self.fail(f"must be a whole Blender frame number, got {match.group(0).decode():.40}", key)
            return int(number), match.end()
        return number, match.end()

    def joints(self, pos: int) -> tuple[np.ndarray, int]:
        data = self.data
        pos = self.space(self.expect(pos, b"[", "a list of frames ('[')", "joints"))
        if data[pos : pos + 1] == b"]":
            raise self.fail("the motion has no frames", "joints")
        values = array("d")
        frames = 0
        while True:
            match = _FRAME.match(data, pos)
            if match is None:
                raise self.fail(self.diagnose(pos, frames), "joints")
            frames += 1
            if frames > self.max_frames:
                raise MotionLimitError(f"more than {self.max_frames:,} frames", source=self.source, field="joints")
            values.extend(map(float, match.groups()))
            pos = self.space(match.end())
            if data[pos : pos + 1] == b",":
                pos = self.space(pos + 1)
                continue
            pos = self.expect(pos, b"]", f"',' or ']' after frame {frames - 1}", "joints")
            break
        joints = np.frombuffer(values, dtype=np.float64).reshape(frames, NUM_JOINTS, 3)
        bad = ~np.isfinite(joints).all(axis=(1, 2))
        if bad.any():
            raise self.fail(f"frame {int(np.flatnonzero(bad)[0])} holds a number too large to be finite", "joints")
        return joints, pos

    def diagnose(self, pos: int, frame: int) -> str:
        """What is wrong with the frame at ``pos`` (which the one-pass pattern did not match)."""
        data = self.data
        if data[pos : pos + 1] != b"[":
            return f"frame {frame}: expected a list of 24 joints, found {_snippet(data, pos)}"
        pos = self.space(pos + 1)
        for joint in range(NUM_JOINTS):
            match = _JOINT.match(data, pos)
            if match is None:
                if data[pos : pos + 1] == b"]":
                    return f"frame {frame} has {joint} joints; expected {NUM_JOINTS}"
                return (
                    f"frame {frame}, joint {joint}: expected [x, y, z], three finite numbers (mm), "
                    f"found {_snippet(data, pos)}"
                )
            pos = self.space(match.end())
            if joint < NUM_JOINTS - 1:
                if data[pos : pos + 1] == b"]":
                    return f"frame {frame} has {joint + 1} joints; expected {NUM_JOINTS}"
                if data[pos : pos + 1] != b",":
                    return f"frame {frame}: expected ',' after joint {joint}, found {_snippet(data, pos)}"
                pos = self.space(pos + 1)
        if data[pos : pos + 1] == b",":
            return f"frame {frame} has more than {NUM_JOINTS} joints; expected {NUM_JOINTS}"
        return f"frame {frame}: expected ']' after its {NUM_JOINTS} joints, found {_snippet(data, pos)}"
