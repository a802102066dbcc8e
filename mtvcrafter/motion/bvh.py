"""BVH motion capture files (numpy only): the reader (:func:`read_bvh`, :func:`bvh_forward_kinematics`) and
the writer of SMPL-24 motions (:func:`write_bvh`).

Reading
-------
:func:`read_bvh` returns the file as it is — hierarchy, offsets and per-frame channel values in **file
units and file axes** (CMU and Mixamo files are usually centimetres, Y up; nothing is scaled or
rotated here) — and :func:`bvh_forward_kinematics` turns it into world joint positions and rotations.
The conventions are those of Blender's own importer (``io_anim_bvh``), so a BVH read here and the
armature Blender imports from it pose the same (Blender then turns Y up into Z up:
``(x, y, z) → (x, −z, y)``):

- A joint's local transform is ``T(t) · R`` (column vectors; world = parent world · local).
- ``t`` is the joint's ``OFFSET``, except for joints with position channels, whose channel values
  **replace** the offset (they are the joint's position in its parent's frame, not an offset added
  to it). A position channel that such a joint lacks counts as 0, not as the offset's component, as
  in Blender. Where the position channels sit in the ``CHANNELS`` list does not matter.
- ``R`` applies the rotation channels in the order listed, intrinsically: ``Zrotation Xrotation
  Yrotation`` is ``R = Rz · Rx · Ry``. Values are degrees. Any order, per joint, is read; a joint may
  have 0–3 rotation channels (a missing one is a zero angle; Blender's importer cannot read those).
- Channel names are case-insensitive and stored in their canonical spelling (``Xposition``,
  ``Zrotation`` …); each may appear once per joint. Any joint may have 3 or 6 channels (or none: a
  joint without ``CHANNELS`` is fixed at its offset).
- ``End Site`` blocks are not joints: their offsets are kept per joint in ``end_sites`` and posed by
  :func:`bvh_end_positions` (a name after ``End Site`` is ignored).
- Joint names: the words after ``ROOT``/``JOINT`` joined with ``_``; a repeated name gets ``.001``,
  ``.002`` … as in Blender, and :attr:`Bvh.notes` says so (a bone map then finds the first one). Several
  ``ROOT`` hierarchies are read (parent −1 each).
- ``MOTION`` is followed by ``Frames: N`` and ``Frame Time: dt`` (either order, any spacing and case),
  then one row per frame with one value per channel, in hierarchy order. Blank lines are ignored.
  Fewer rows than ``Frames:`` is an error (a truncated file). More rows than ``Frames:`` are all kept,
  as Blender's importer keeps them, and :attr:`Bvh.notes` says so. ``Frame Time`` must be > 0.
  Rotation values beyond ±1,000,000 degrees (thousands of turns) and offsets or positions beyond ±10⁹
  (1,000 km even in millimetres) are damaged numbers and refused.
- Whitespace may be spaces or tabs, line ends LF, CRLF or CR; a UTF-8 BOM is skipped.

Every malformed input raises :class:`~mtvcrafter.motion.errors.MotionError` naming the file and the
line (``line N: …``) and what to do about it; nothing is read partially.

Writing
-------
:func:`write_bvh` writes an SMPL-24 motion with rotations. The hierarchy is the SMPL skeleton
(offsets from ``rest_offsets``, body frame: Y up), in centimetres; the root has position and rotation
channels, the other joints rotation channels, all Euler angles in ZXY order (``R = Rz · Rx · Ry``),
degrees. The file's world is Y up, as BVH files conventionally are: the motion's camera frame (OpenCV: x
right, y down, z forward) turned 180° about X (:data:`CAMERA_TO_BVH`: x right, y up, z towards the camera),
so a performer who faces the camera stands upright facing +Z. The turn applies to the root alone — its
rotation and its position (``root_translation`` in centimetres) — and leaves every other joint's local
rotation and the rest offsets as they are. Read back (by :func:`read_bvh` and
:func:`~mtvcrafter.motion.bvh_motion.motion_from_bvh`, or Blender's BVH importer, which turns Y up into Z up)
the figure stands upright.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import MotionError
from .motion import Motion
from .rotations import quaternion_to_matrix
from .skeleton import CHILDREN, JOINT_NAMES

LEAF_END_CM = 8.0

#: The motion's camera frame (x right, y down, z forward) → the written file's world (x right, Y up, z towards
#: the camera): 180° about X.
CAMERA_TO_BVH = np.diag([1.0, -1.0, -1.0])

#: Rotation values beyond this many degrees (2,777 turns) are a damaged row, not an angle.
MAX_ANGLE_DEG = 1e6
#: Offsets and positions beyond this (1,000 km in millimetres, the smallest unit in use) are damaged numbers.
MAX_POSITION = 1e9

#: Channel names (lower case) → canonical spelling, kind and axis.
_CHANNELS = {
    f"{axis.lower()}{kind}": (f"{axis}{kind}", kind, i)
    for kind in ("position", "rotation")
    for i, axis in enumerate("XYZ")
}


@dataclass(frozen=True, eq=False)
class BvhSkeleton:
    """The hierarchy of a BVH file (file units, file axes).

    Attributes:
        names: joint names in file order (roots first of their trees); End Sites are not joints.
        parents: ``(J,)`` int, the parent's index, −1 for a root.
        offsets: ``(J, 3)`` float64 ``OFFSET`` of each joint from its parent.
        channels: per joint, its channel names in file order (canonical spelling), e.g.
            ``("Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation")``.
        end_sites: joint index → ``(3,)`` offset of its End Site.
    """

    names: tuple[str, ...]
    parents: np.ndarray
    offsets: np.ndarray
    channels: tuple[tuple[str, ...], ...]
    end_sites: dict[int, np.ndarray]

    @property
    def num_joints(self) -> int:
        return len(self.names)

    @property
    def num_channels(self) -> int:
        return sum(len(c) for c in self.channels)

    @property
    def columns(self) -> tuple[int, ...]:
        """The column of :attr:`Bvh.values` holding each joint's first channel."""
        starts = np.cumsum([0] + [len(c) for c in self.channels])[:-1]
        return tuple(int(s) for s in starts)


@dataclass(frozen=True, eq=False)
class Bvh:
    """A BVH file as read: its hierarchy, frame time and channel values.

    Attributes:
        skeleton: the hierarchy.
        frame_time: seconds per frame.
        values: ``(F, C)`` float64, one column per channel in hierarchy order, as in the file
            (positions in file units, rotations in degrees).
        source: the path, for messages.
        notes: facts about the file a user should know (e.g. rows beyond ``Frames:``, repeated names).
        frame_lines: ``(F,)`` int, the file's line number of each frame row (for messages); None for a
            Bvh made in code.
        frames_line: the line number of ``Frames:`` (0 when unknown).
    """

    skeleton: BvhSkeleton
    frame_time: float
    values: np.ndarray
    source: str
    notes: tuple[str, ...] = ()
    frame_lines: np.ndarray | None = None
    frames_line: int = 0

    def line_of_frame(self, frame: int) -> str:
        """``"frame N (line L)"`` for messages (``"frame N"`` where the line is unknown)."""
        if self.frame_lines is not None and 0 <= frame < len(self.frame_lines):
            return f"frame {frame} (line {int(self.frame_lines[frame])})"
        return f"frame {frame}"

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    @property
    def num_frames(self) -> int:
        return int(self.values.shape[0])


def matrix_to_euler_zxy(matrix: np.ndarray) -> np.ndarray:
    """``(..., 3, 3)`` rotations → ``(..., 3)`` angles (z, x, y) in degrees with ``R = Rz · Rx · Ry``."""
    m = np.asarray(matrix, dtype=np.float64)
    x = np.arcsin(np.clip(m[..., 2, 1], -1.0, 1.0))
    z = np.arctan2(-m[..., 0, 1], m[..., 1, 1])
    y = np.arctan2(-m[..., 2, 0], m[..., 2, 2])
    return np.degrees(np.stack([z, x, y], axis=-1))


def write_bvh(motion: Motion, path: str | Path) -> Path:
    """Write ``motion`` (which must carry rotations, e.g. from ``motion convert --fit``) as BVH, Y up (its
    camera frame turned 180° about X, :data:`CAMERA_TO_BVH`; see the module docstring)."""
    if motion.rotations is None or motion.rest_offsets is None or motion.root_translation is None:
        raise MotionError("BVH needs rotations: fit the motion first (motion convert --fit)", field="rotations")
    offsets_cm = np.asarray(motion.rest_offsets, dtype=np.float64) / 10.0
    lines: list[str] = ["HIERARCHY"]
    order: list[int] = []

    def joint(j: int, depth: int) -> None:
        pad = "  " * depth
        order.append(j)
        keyword = "ROOT" if j == 0 else "JOINT"
        offset = np.zeros(3) if j == 0 else offsets_cm[j]
        lines.append(f"{pad}{keyword} {JOINT_NAMES[j]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {offset[0]:.4f} {offset[1]:.4f} {offset[2]:.4f}")
        if j == 0:
            lines.append(f"{pad}  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation")
        else:
            lines.append(f"{pad}  CHANNELS 3 Zrotation Xrotation Yrotation")
        for c in CHILDREN[j]:
            joint(c, depth + 1)
        if not CHILDREN[j]:
            end = offsets_cm[j] / max(np.linalg.norm(offsets_cm[j]), 1e-9) * LEAF_END_CM
            lines.append(f"{pad}  End Site")
            lines.append(f"{pad}  {{")
            lines.append(f"{pad}    OFFSET {end[0]:.4f} {end[1]:.4f} {end[2]:.4f}")
            lines.append(f"{pad}  }}")
        lines.append(f"{pad}}}")

    joint(0, 0)
    matrices = quaternion_to_matrix(np.asarray(motion.rotations, dtype=np.float64))  # (T, 24, 3, 3), local
    matrices[:, 0] = CAMERA_TO_BVH @ matrices[:, 0]  # the root: camera frame → Y up
    angles = matrix_to_euler_zxy(matrices)[:, order]  # (T, 24, 3)
    root = np.asarray(motion.root_translation, dtype=np.float64) @ CAMERA_TO_BVH.T / 10.0
    values = np.concatenate([root, angles.reshape(len(root), -1)], axis=1)
    lines += ["MOTION", f"Frames: {motion.num_frames}", f"Frame Time: {1.0 / motion.fps:.6f}"]
    path = Path(path)
    with open(path, "w", encoding="ascii") as f:
        f.write("\n".join(lines) + "\n")
        np.savetxt(f, values, fmt="%.4f")
    return path


def read_bvh(path: str | Path) -> Bvh:
    """Read a BVH file (see the module docstring for the conventions).

    Raises:
        MotionError: the file cannot be read, or is malformed (the message names the line).
    """
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise MotionError(f"cannot read the file ({exc.strerror or exc}); check the path", source=source) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return _Parser(text, source).parse()


class _Block:
    """A ROOT, JOINT or End Site being read."""

    __slots__ = ("kind", "joint", "line", "has_offset", "has_channels", "has_children")

    def __init__(self, kind: str, joint: int, line: int):
        self.kind, self.joint, self.line = kind, joint, line
        self.has_offset = self.has_channels = self.has_children = False


class _Parser:
    def __init__(self, text: str, source: str):
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        self.text = text
        self.lines = text.split("\n")
        self.source = source
        self.names: list[str] = []
        self.parents: list[int] = []
        self.offsets: list[tuple[float, float, float]] = []
        self.channels: list[tuple[str, ...]] = []
        self.end_sites: dict[int, np.ndarray] = {}
        self.stack: list[_Block] = []
        self.pending: _Block | None = None  # a block whose '{' has not come yet
        self.first_line: dict[str, int] = {}  # name → the line that named it first
        self.notes: list[str] = []

    # -- helpers -------------------------------------------------------------------------------------
    def fail(self, line: int, message: str) -> MotionError:
        return MotionError(f"line {line}: {message}", source=self.source)

    def describe(self, block: _Block) -> str:
        if block.kind == "end":
            return f"the End Site of '{self.names[block.joint]}' (line {block.line})"
        return f"{block.kind.upper()} '{self.names[block.joint]}' (line {block.line})"

    def last_line(self) -> int:
        """The number of the file's last non-blank line."""
        for i in range(len(self.lines) - 1, -1, -1):
            if self.lines[i].strip():
                return i + 1
        return 1

    # -- hierarchy -----------------------------------------------------------------------------------
    def parse(self) -> Bvh:
        lines = self.lines
        i = 0
        while i < len(lines) and not lines[i].split():
            i += 1
        if i == len(lines):
            raise self.fail(1, "the file is empty; export the BVH again")
        tokens = lines[i].split()
        if tokens[0].lower() != "hierarchy" or len(tokens) > 1:
            raise self.fail(
                i + 1, f"a BVH file starts with 'HIERARCHY', found '{lines[i].strip():.40}'; is this a BVH file?"
            )
        i += 1
        motion_line = 0
        while i < len(lines):
            lineno, tokens = i + 1, lines[i].split()
            i += 1
            if tokens:
                if tokens[0].lower() == "motion":
                    motion_line = lineno
                    self.motion_keyword(lineno, tokens)
                    break
                self.hierarchy_line(lineno, tokens)
        if not motion_line:
            open_block = self.pending or (self.stack[-1] if self.stack else None)
            if open_block is not None:
                raise self.fail(
                    self.last_line(),
                    f"the file ends inside {self.describe(open_block)}: a '}}' is missing and there is no "
                    "MOTION section; the file is incomplete, export it again",
                )
            raise self.fail(
                self.last_line(),
                "the file ends without a MOTION section (only a hierarchy); export the BVH with its animation",
            )
        skeleton = BvhSkeleton(
            names=tuple(self.names),
            parents=np.asarray(self.parents, dtype=np.int64),
            offsets=np.asarray(self.offsets, dtype=np.float64).reshape(-1, 3),
            channels=tuple(self.channels),
            end_sites=self.end_sites,
        )
        frames, frame_time, frames_line, start = self.motion_header(i, motion_line)
        values, rows_note, frame_lines = self.motion_rows(start, skeleton, frames, frames_line)
        return Bvh(
            skeleton,
            frame_time,
            values,
            self.source,
            (*self.notes, *rows_note),
            frame_lines=frame_lines,
            frames_line=frames_line,
        )

    def hierarchy_line(self, lineno: int, tokens: list[str]) -> None:
        keyword = tokens[0].lower()
        if self.pending is not None:
            if tokens[0] != "{":
                raise self.fail(
                    lineno, f"expected '{{' to open {self.describe(self.pending)}, found '{' '.join(tokens):.40}'"
                )
            self.stack.append(self.pending)
            self.pending = None
            tokens = tokens[1:]
            if not tokens:
                return
            keyword = tokens[0].lower()
        if all(t in ("{", "}") for t in tokens):
            for t in tokens:
                if t == "{":
                    raise self.fail(lineno, "'{' opens nothing: it must follow ROOT, JOINT or End Site")
                if not self.stack:
                    raise self.fail(lineno, "'}' closes nothing: the braces are unbalanced; remove the extra '}'")
                block = self.stack.pop()
                if not block.has_offset:
                    raise self.fail(lineno, f"{self.describe(block)} has no OFFSET; add 'OFFSET x y z' to it")
            return
        if keyword in ("root", "joint"):
            self.open_joint(lineno, tokens)
        elif keyword == "end":
            self.open_end_site(lineno, tokens)
        elif keyword == "offset":
            self.offset(lineno, tokens)
        elif keyword == "channels":
            self.channel_list(lineno, tokens)
        elif keyword == "hierarchy":
            raise self.fail(lineno, "a second 'HIERARCHY': two files were joined; keep one")
        elif keyword.startswith("frame") and not self.stack:
            raise self.fail(lineno, f"'{tokens[0]:.20}' without a 'MOTION' line before it; add 'MOTION' above it")
        else:
            where = f" inside {self.describe(self.stack[-1])}" if self.stack else ""
            raise self.fail(
                lineno,
                f"unexpected '{tokens[0]:.40}'{where}; expected ROOT, JOINT, End Site, OFFSET, CHANNELS, "
                "a brace or MOTION",
            )

    def open_block(self, block: _Block, tokens: list[str]) -> None:
        if tokens[-1] == "{":  # "JOINT Name {" on one line
            self.stack.append(block)
        else:
            self.pending = block

    def open_joint(self, lineno: int, tokens: list[str]) -> None:
        kind = tokens[0].lower()
        words = tokens[1:-1] if tokens[-1] == "{" else tokens[1:]
        if not words:
            raise self.fail(lineno, f"{tokens[0]} without a name; write '{tokens[0]} Name'")
        if kind == "root" and self.stack:
            raise self.fail(
                lineno, f"ROOT inside {self.describe(self.stack[-1])}: a '}}' is missing before it (unbalanced braces)"
            )
        if kind == "joint":
            if not self.stack:
                raise self.fail(lineno, "JOINT outside any ROOT: a '{' is missing, or an extra '}' closed the ROOT")
            if self.stack[-1].kind == "end":
                raise self.fail(lineno, f"JOINT inside {self.describe(self.stack[-1])}: a '}}' is missing before it")
        name = "_".join(words)  # as Blender's importer joins names with spaces
        if name in self.names:  # repeated names get .001, .002 … as in Blender
            number = 1
            while f"{name}.{number:03d}" in self.names:
                number += 1
            renamed = f"{name}.{number:03d}"
            self.notes.append(
                f"line {lineno}: the joint name '{name}' is used again (first on line {self.first_line[name]}); "
                f"this one is read as '{renamed}', and a bone map finds the first one"
            )
            name = renamed
        self.first_line.setdefault(name, lineno)
        parent = -1
        if kind == "joint":
            parent = self.stack[-1].joint
            self.stack[-1].has_children = True
        self.names.append(name)
        self.parents.append(parent)
        self.offsets.append((0.0, 0.0, 0.0))
        self.channels.append(())
        self.open_block(_Block(kind, len(self.names) - 1, lineno), tokens)

    def open_end_site(self, lineno: int, tokens: list[str]) -> None:
        if len(tokens) < 2 or tokens[1].lower() != "site":
            raise self.fail(lineno, f"expected 'End Site', found '{' '.join(tokens):.40}'")
        if not self.stack or self.stack[-1].kind == "end":
            raise self.fail(lineno, "End Site outside a joint: the braces are unbalanced")
        parent = self.stack[-1]
        if parent.joint in self.end_sites:
            raise self.fail(lineno, f"a second End Site in {self.describe(parent)}; a joint has at most one")
        parent.has_children = True
        self.end_sites[parent.joint] = np.zeros(3)
        self.open_block(_Block("end", parent.joint, lineno), tokens)

    def offset(self, lineno: int, tokens: list[str]) -> None:
        if not self.stack:
            raise self.fail(lineno, "OFFSET outside a joint: the braces are unbalanced")
        block = self.stack[-1]
        if block.has_offset:
            raise self.fail(lineno, f"a second OFFSET in {self.describe(block)}; keep one")
        numbers = _floats(tokens[1:])
        if numbers is None or len(numbers) != 3:
            raise self.fail(lineno, f"OFFSET needs three numbers (x y z), found '{' '.join(tokens[1:]):.60}'")
        if max(abs(x) for x in numbers) > MAX_POSITION:
            raise self.fail(
                lineno,
                f"OFFSET {' '.join(f'{x:g}' for x in numbers)} is beyond ±{MAX_POSITION:g} (1,000 km even in "
                "millimetres): a damaged number; export the file again",
            )
        block.has_offset = True
        if block.kind == "end":
            self.end_sites[block.joint] = np.asarray(numbers, dtype=np.float64)
        else:
            self.offsets[block.joint] = (numbers[0], numbers[1], numbers[2])

    def channel_list(self, lineno: int, tokens: list[str]) -> None:
        if not self.stack or self.stack[-1].kind == "end":
            raise self.fail(lineno, "CHANNELS outside a joint (End Sites have none)")
        block = self.stack[-1]
        if block.has_channels:
            raise self.fail(lineno, f"a second CHANNELS in {self.describe(block)}; keep one")
        if block.has_children:
            raise self.fail(lineno, f"CHANNELS of {self.describe(block)} after its children; move it up to its OFFSET")
        try:
            count = int(tokens[1]) if len(tokens) > 1 else -1
        except ValueError:
            count = -1
        if count < 0:
            raise self.fail(lineno, "CHANNELS needs a count then the channel names, e.g. 'CHANNELS 3 Zrotation …'")
        names = tokens[2:]
        if len(names) != count:
            raise self.fail(
                lineno, f"CHANNELS says {count} channels but names {len(names)}; make the count match the names"
            )
        canonical = []
        for name in names:
            if name.lower() not in _CHANNELS:
                raise self.fail(
                    lineno,
                    f"unknown channel '{name:.40}'; BVH channels are Xposition, Yposition, Zposition, "
                    "Xrotation, Yrotation and Zrotation",
                )
            spelled = _CHANNELS[name.lower()][0]
            if spelled in canonical:
                raise self.fail(lineno, f"channel {spelled} listed twice in {self.describe(block)}")
            canonical.append(spelled)
        block.has_channels = True
        self.channels[block.joint] = tuple(canonical)

    # -- motion --------------------------------------------------------------------------------------
    def motion_keyword(self, lineno: int, tokens: list[str]) -> None:
        open_block = self.pending or (self.stack[-1] if self.stack else None)
        if open_block is not None:
            raise self.fail(lineno, f"MOTION inside {self.describe(open_block)}: a '}}' is missing (unbalanced braces)")
        if not self.names:
            raise self.fail(lineno, "MOTION before any ROOT: the hierarchy is empty")
        if len(tokens) > 1:
            raise self.fail(lineno, "'MOTION' must be alone on its line; put 'Frames:' on the next line")

    def motion_header(self, i: int, motion_line: int) -> tuple[int, float, int, int]:
        """'Frames:' and 'Frame Time:' (either order) from line index ``i``: (frames, frame time, line of
        'Frames:', index of the first data line)."""
        frames: int | None = None
        frame_time: float | None = None
        frames_line = 0
        for _ in range(2):
            while i < len(self.lines) and not self.lines[i].strip():
                i += 1
            if i == len(self.lines):
                raise self.fail(
                    self.last_line(),
                    f"the file ends after MOTION (line {motion_line}) without 'Frames: N' and 'Frame Time: seconds'",
                )
            lineno, text = i + 1, self.lines[i].strip()
            i += 1
            words = text.replace(":", " : ").split()
            lowered = [w.lower() for w in words]
            if lowered[:1] == ["frames"] and frames is None:
                value = [w for w in words[1:] if w != ":"]
                try:
                    frames = int(value[0]) if len(value) == 1 else -1
                except ValueError:
                    frames = -1
                if frames < 0:
                    raise self.fail(lineno, f"'Frames:' needs a whole number ≥ 0, found '{text:.40}'")
                frames_line = lineno
            elif lowered[:2] == ["frame", "time"] and frame_time is None:
                value = [w for w in words[2:] if w != ":"]
                numbers = _floats(value) if len(value) == 1 else None
                if not numbers or not numbers[0] > 0:
                    raise self.fail(
                        lineno,
                        f"'Frame Time:' needs a positive number of seconds (e.g. 0.0333333 for 30 fps), "
                        f"found '{text:.40}'",
                    )
                frame_time = numbers[0]
            else:
                raise self.fail(
                    lineno,
                    f"expected 'Frames: N' and 'Frame Time: seconds' after MOTION (line {motion_line}), "
                    f"found '{text:.40}'",
                )
        assert frames is not None and frame_time is not None
        return frames, frame_time, frames_line, i

    def motion_rows(
        self, start: int, skeleton: BvhSkeleton, frames: int, frames_line: int
    ) -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
        """The data rows from line index ``start`` on, in bulk: (values (F, width), notes, line of each row)."""
        width = skeleton.num_channels
        data_lines = self.lines[start:]
        counts = np.array([len(line.split()) for line in data_lines], dtype=np.int64)
        rows = np.flatnonzero(counts)  # blank lines are skipped
        if width == 0:
            if rows.size:
                raise self.fail(start + int(rows[0]) + 1, "motion values, but the hierarchy has no CHANNELS")
            return np.zeros((frames, 0)), (), np.zeros(0, dtype=np.int64)
        flat = None
        if np.all(counts[rows] == width):
            offset = sum(len(line) + 1 for line in self.lines[:start])
            try:
                flat = np.array(self.text[offset:].split(), dtype=np.float64)
            except ValueError:
                flat = None
            if flat is not None and not np.isfinite(flat).all():
                flat = None
        if flat is None:
            raise self.first_bad_row(data_lines, start, width)
        if rows.size < frames:
            raise self.fail(
                self.last_line(),
                f"the motion data ends after {rows.size} of the {frames} frames that 'Frames:' (line {frames_line}) "
                f"announces; the file is truncated — export it again (or set 'Frames: {rows.size}')",
            )
        values = flat.reshape(rows.size, width)
        frame_lines = start + rows + 1
        rotation = np.array([c.endswith("rotation") for joint in skeleton.channels for c in joint], dtype=bool)
        limit = np.where(rotation, MAX_ANGLE_DEG, MAX_POSITION)
        wild = np.abs(values) > limit
        if wild.any():
            row, column = (int(k) for k in np.argwhere(wild)[0])
            what = (
                f" degrees, more than {MAX_ANGLE_DEG:,.0f} (thousands of turns)"
                if rotation[column]
                else f", beyond ±{MAX_POSITION:g} (1,000 km even in millimetres)"
            )
            raise self.fail(
                int(frame_lines[row]),
                f"value {column + 1} ({self.channel_name(skeleton, column)}) is {values[row, column]:.6g}{what}: "
                "the row is damaged; export the file again",
            )
        notes: tuple[str, ...] = ()
        if rows.size > frames:
            notes = (
                f"{rows.size} frame rows, more than the {frames} of 'Frames:' (line {frames_line}); all rows were "
                "read, as Blender's importer reads them",
            )
        return values, notes, frame_lines

    @staticmethod
    def channel_name(skeleton: BvhSkeleton, column: int) -> str:
        """``"Zrotation of 'LeftArm'"`` for a column of the motion values."""
        for name, channels, first in zip(skeleton.names, skeleton.channels, skeleton.columns, strict=True):
            if first <= column < first + len(channels):
                return f"{channels[column - first]} of '{name}'"
        return f"column {column + 1}"

    def first_bad_row(self, data_lines: list[str], start: int, width: int) -> MotionError:
        """The error for the first malformed data line (the slow path, only taken on errors)."""
        for k, line in enumerate(data_lines):
            tokens = line.split()
            if not tokens:
                continue
            lineno = start + k + 1
            if len(tokens) != width:
                return self.fail(
                    lineno,
                    f"a frame row has {len(tokens)} values but the hierarchy has {width} channels; "
                    "the row is damaged or the file was cut (export it again)",
                )
            for column, token in enumerate(tokens):
                numbers = _floats([token])
                if numbers is None:
                    hint = "use '.' as the decimal mark" if "," in token else "the file is damaged; export it again"
                    return self.fail(lineno, f"value {column + 1} is not a finite number: '{token:.40}'; {hint}")
        return self.fail(start + 1, "the motion data cannot be read as numbers")


def _floats(tokens: list[str]) -> list[float] | None:
    """The tokens as finite floats, or None if any is not one."""
    try:
        numbers = [float(t) for t in tokens]
    except ValueError:
        return None
    return numbers if all(math.isfinite(x) for x in numbers) else None


def bvh_forward_kinematics(bvh: Bvh) -> tuple[np.ndarray, np.ndarray]:
    """World positions ``(F, J, 3)`` of every joint (file units, file axes) and world rotations
    ``(F, J, 3, 3)`` (column vectors), float64, vectorised over frames."""
    skeleton = bvh.skeleton
    values = np.asarray(bvh.values, dtype=np.float64)
    frames, joints = values.shape[0], skeleton.num_joints
    positions = np.empty((frames, joints, 3))
    rotations = np.empty((frames, joints, 3, 3))
    for j, (channels, column) in enumerate(zip(skeleton.channels, skeleton.columns, strict=True)):
        parent = int(skeleton.parents[j])
        if parent >= j:
            raise MotionError(f"joint {j} '{skeleton.names[j]}' comes before its parent {parent}", source=bvh.source)
        translation: np.ndarray = skeleton.offsets[j]
        rotation = np.broadcast_to(np.eye(3), (frames, 3, 3)).copy()
        if any(_CHANNELS[c.lower()][1] == "position" for c in channels):
            translation = np.zeros((frames, 3))  # position channels replace the offset (as Blender)
        for k, channel in enumerate(channels):
            _, kind, axis = _CHANNELS[channel.lower()]
            if kind == "position":
                translation[:, axis] = values[:, column + k]
                continue
            angle = np.radians(values[:, column + k])[:, None]
            c, s = np.cos(angle), np.sin(angle)
            a, b = (axis + 1) % 3, (axis + 2) % 3  # rotation ← rotation · R_axis touches columns a and b
            col_a = rotation[:, :, a].copy()
            rotation[:, :, a] = col_a * c + rotation[:, :, b] * s
            rotation[:, :, b] = rotation[:, :, b] * c - col_a * s
        if parent < 0:
            positions[:, j] = translation
            rotations[:, j] = rotation
        else:
            parent_rotation = rotations[:, parent]
            if translation.ndim == 1:
                moved = parent_rotation @ translation
            else:
                moved = np.einsum("fij,fj->fi", parent_rotation, translation)
            positions[:, j] = positions[:, parent] + moved
            rotations[:, j] = parent_rotation @ rotation
    return positions, rotations


def bvh_end_positions(bvh: Bvh, world_positions: np.ndarray, world_rotations: np.ndarray) -> dict[int, np.ndarray]:
    """World positions ``(F, 3)`` of the End Sites, by joint index, from :func:`bvh_forward_kinematics`."""
    return {
        j: world_positions[:, j] + world_rotations[:, j] @ np.asarray(offset, dtype=np.float64)
        for j, offset in bvh.skeleton.end_sites.items()
    }
