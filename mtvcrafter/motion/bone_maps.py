"""Bone maps: where the 24 SMPL joints lie on any rig — BVH mocap, a Blender armature — numpy only.

A *bone map* (``presets/bones/*.json``, format in ``presets/README.md``) says where each of the 24
SMPL joints lies on a rig: at a bone's head (a BVH joint's position), at its end (``"Bone@end"``: the
BVH End Site, the Blender bone's tail), or on the line through two such points (``{"lerp": [a, b,
t]}`` = ``a + t·(b − a)``), with alternatives tried in order (the first whose bones all exist wins:
:func:`resolve_alternatives`). Rig names match after stripping a namespace (anything up to the last
``:`` or ``|``: ``mixamorig:``, ``Armature|``) and case-insensitively (:func:`bone_key`), and also
without a prefix every bone of the rig shares (:func:`rig_lookup`).

This module holds the schema (:class:`BoneMap`) and the files: the bundled maps, the user's folders
(:data:`BONE_MAPS_ENV`, :func:`user_bone_map_folder`), reading, saving and choosing one by id. Which map
fits a rig is :mod:`~mtvcrafter.motion.bone_map_detection`; placing the joints is
:func:`~mtvcrafter.motion.skeleton_mapping.map_points`.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import MotionError
from .skeleton import JOINT_INDEX, JOINT_NAMES
from .units import UNITS

AXES = ("X", "Y", "Z", "-X", "-Y", "-Z")
#: Folders of the user's own bone maps (``os.pathsep``-separated); else ``~/.config/mtvcrafter/bones``.
BONE_MAPS_ENV = "MTVCRAFTER_BONE_MAPS"

# Installed, the maps are package data (setup.py copies presets/bones there); a checkout reads presets/bones.
_BUNDLED_IN_PACKAGE = Path(__file__).resolve().parent / "bones"
_BUNDLED_IN_CHECKOUT = Path(__file__).resolve().parents[2] / "presets" / "bones"
_KEYS = {"name", "description", "up", "forward", "unit", "joints", "fallback"}


# --- rig names ----------------------------------------------------------------------------------------------


def bone_key(name: str) -> str:
    """How rig names are compared: the namespace (up to the last ``:`` or ``|``) stripped, lower case."""
    cut = max(name.rfind(":"), name.rfind("|"))
    return name[cut + 1 :].lower()


def split_reference(reference: str) -> tuple[str, bool]:
    """A point of a bone map (``"Bone"`` or ``"Bone@end"``) → ``(bone, at its end)``."""
    if reference.lower().endswith("@end"):
        return reference[:-4], True
    return reference, False


_SEPARATORS = "_.- "


def shared_prefix(names: Sequence[str]) -> str:
    """A prefix most of a rig's bone names share after their namespace, up to a separator (``Bip01_``,
    ``Character1_``, ``J_Bip_``): what a rig's author put before every bone name. Empty if there is none."""
    keys = [bone_key(n) for n in names]
    if len(keys) < 4:
        return ""
    counts: dict[str, int] = {}
    for key in keys:
        for i, char in enumerate(key[:-1]):
            if char in _SEPARATORS:
                counts[key[: i + 1]] = counts.get(key[: i + 1], 0) + 1
    # the longest prefix that at least 80 % of the names start with (and at least one name continues past)
    common = [p for p, c in counts.items() if c >= 0.8 * len(keys)]
    return max(common, key=len, default="")


def add_unprefixed(table: dict[str, Any], prefix: str) -> None:
    """Give every key that starts with ``prefix`` a second key without it (existing keys win)."""
    if prefix:
        for key in [k for k in table if k.startswith(prefix) and len(k) > len(prefix)]:
            table.setdefault(key[len(prefix) :], table[key])


def rig_lookup(names: Sequence[str]) -> dict[str, str]:
    """Comparison key → the rig's own bone name: :func:`bone_key`, and the same without the rig's
    :func:`shared_prefix` (exact keys win where both exist)."""
    lookup: dict[str, str] = {}
    for name in names:
        lookup.setdefault(bone_key(name), name)
    add_unprefixed(lookup, shared_prefix(names))
    return lookup


# --- the bone map -------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class BonePoint:
    """A point of a bone map: a bone's head, or its end (``"Bone@end"``)."""

    bone: str  # as written in the map
    end: bool

    @property
    def key(self) -> str:
        return bone_key(self.bone)


#: One way to place a joint: a weighted sum of points (a point: weight 1; a lerp: 1 − t and t).
Alternative = tuple[tuple[BonePoint, float], ...]


@dataclass(frozen=True, eq=False)
class BoneMap:
    """Where the 24 SMPL joints lie on a rig (see the module docstring and ``presets/README.md``).

    Attributes:
        name, description: for menus and messages.
        joints: SMPL joint name → source, as in the JSON file: ``"Bone"``, ``"Bone@end"``,
            ``{"lerp": [a, b, t]}``, or a list of those (alternatives, the first that fits wins).
        up, forward: the rig's axis pointing up and the axis the character faces (``"Y"``, ``"-Z"`` …).
        unit: ``"m"``, ``"cm"``, ``"mm"``, ``"inch"``, ``"cmu"`` or ``"auto"``: the rig's unit, used
            unless the skeleton's size clearly says otherwise (:func:`~mtvcrafter.motion.units.choose_unit`).
        path: the file it was read from (None for one made in code).
        fallback: a map of guessed names (the generic one): detection uses it only when no other map
            fits as well.
    """

    name: str
    description: str = ""
    joints: dict[str, Any] = field(default_factory=dict)
    up: str = "Y"
    forward: str = "Z"
    unit: str = "auto"
    path: Path | None = None
    fallback: bool = False

    def __post_init__(self) -> None:
        src = str(self.path) if self.path is not None else (self.name or None)
        if not isinstance(self.name, str) or not self.name.strip():
            raise MotionError("must be a non-empty string", source=src, field="name")
        if not isinstance(self.description, str):
            raise MotionError("must be a string", source=src, field="description")
        for key in ("up", "forward"):
            value = getattr(self, key)
            if not isinstance(value, str) or value.upper() not in AXES:
                raise MotionError(f"must be one of {', '.join(AXES)}, got {value!r}", source=src, field=key)
            object.__setattr__(self, key, value.upper())
        if self.up.lstrip("-") == self.forward.lstrip("-"):
            raise MotionError(f"'up' {self.up} and 'forward' {self.forward} must be different axes", source=src)
        if not isinstance(self.unit, str) or (self.unit.lower() not in UNITS and self.unit.lower() != "auto"):
            raise MotionError(f"must be one of {', '.join(UNITS)} or auto, got {self.unit!r}", source=src, field="unit")
        object.__setattr__(self, "unit", self.unit.lower())
        if not isinstance(self.joints, Mapping):
            raise MotionError("must be an object: SMPL joint name → source", source=src, field="joints")
        unknown = [k for k in self.joints if k not in JOINT_INDEX]
        if unknown:
            raise MotionError(
                f"unknown SMPL joint(s) {', '.join(map(repr, unknown))}; the joints are {', '.join(JOINT_NAMES)}",
                source=src,
                field="joints",
            )
        missing = [k for k in JOINT_NAMES if k not in self.joints]
        if missing:
            raise MotionError(
                f"no source for {', '.join(missing)}; a bone map places all 24 SMPL joints", source=src, field="joints"
            )
        compiled = {j: _compile(self.joints[j], src, f"joints.{j}") for j in JOINT_NAMES}
        object.__setattr__(self, "joints", {j: self.joints[j] for j in JOINT_NAMES})
        object.__setattr__(self, "_compiled", compiled)

    @property
    def id(self) -> str:
        """The file name without ``.json`` (the name for a map made in code)."""
        return self.path.stem if self.path is not None else self.name

    @property
    def alternatives(self) -> dict[str, tuple[Alternative, ...]]:
        return self._compiled  # type: ignore[attr-defined]

    def bones(self) -> set[str]:
        """Every bone name the map mentions (compared as :func:`bone_key` compares them)."""
        return {ref.key for alts in self.alternatives.values() for alt in alts for ref, _ in alt}

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what :func:`save_bone_map` writes)."""
        data: dict[str, Any] = {"name": self.name, "description": self.description}
        data.update(up=self.up, forward=self.forward, unit=self.unit)
        if self.fallback:
            data["fallback"] = True
        data["joints"] = dict(self.joints)
        return data

    @classmethod
    def from_dict(cls, data: Any, path: str | Path | None = None) -> BoneMap:
        """A bone map from its JSON form; errors name the file and the field."""
        src = str(path) if path is not None else None
        if not isinstance(data, dict):
            raise MotionError("a bone map is a JSON object with 'name' and 'joints'", source=src)
        unknown = sorted(k for k in data if k not in _KEYS and not str(k).startswith("_"))
        if unknown:
            raise MotionError(
                f"unknown key(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(_KEYS))} "
                "(keys starting with '_' are comments)",
                source=src,
            )
        for key in ("name", "joints"):
            if key not in data:
                raise MotionError("missing", source=src, field=key)
        fallback = data.get("fallback", False)
        if not isinstance(fallback, bool):
            raise MotionError("must be true or false", source=src, field="fallback")
        return cls(
            name=data["name"],
            description=data.get("description", ""),
            joints=data["joints"],
            up=data.get("up", "Y"),
            forward=data.get("forward", "Z"),
            unit=data.get("unit", "auto"),
            path=Path(path) if path is not None else None,
            fallback=fallback,
        )


def _compile(source: Any, src: str | None, where: str) -> tuple[Alternative, ...]:
    """A joint source → its alternatives, in order."""

    def ref(value: Any, at: str) -> BonePoint:
        if not isinstance(value, str) or not split_reference(value)[0].strip():
            raise MotionError(f"a point is a bone name or 'Bone@end', got {value!r}", source=src, field=at)
        bone, end = split_reference(value)
        return BonePoint(bone.strip(), end)

    def one(value: Any, at: str) -> Alternative:
        if isinstance(value, str):
            return ((ref(value, at), 1.0),)
        if isinstance(value, dict):
            lerp = value.get("lerp")
            if set(value) != {"lerp"} or not isinstance(lerp, list) or len(lerp) != 3:
                raise MotionError(
                    f'expected {{"lerp": ["BoneA", "BoneB", t]}}, got {json.dumps(value)[:80]}', source=src, field=at
                )
            t = lerp[2]
            if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
                raise MotionError(f"the lerp factor must be a number, got {t!r}", source=src, field=at)
            return ((ref(lerp[0], at), 1.0 - float(t)), (ref(lerp[1], at), float(t)))
        raise MotionError(
            f"a source is a bone name, 'Bone@end', a lerp or a list of those, got {json.dumps(value)[:80]}",
            source=src,
            field=at,
        )

    if isinstance(source, list):
        if not source:
            raise MotionError("an empty list of alternatives", source=src, field=where)
        if any(isinstance(item, list) for item in source):
            raise MotionError("alternatives cannot be nested lists", source=src, field=where)
        return tuple(one(item, f"{where}[{i}]") for i, item in enumerate(source))
    return (one(source, where),)


def resolve_alternatives(
    bone_map: BoneMap, heads: Mapping[str, Any], ends: Mapping[str, Any] | None
) -> tuple[dict[str, Alternative], list[str]]:
    """The first alternative of each joint whose points exist (``ends`` None: every bone has an end)."""
    chosen: dict[str, Alternative] = {}
    missing = []
    for joint in JOINT_NAMES:
        for alternative in bone_map.alternatives[joint]:
            if all(
                ref.key in heads if not ref.end else ref.key in (heads if ends is None else ends)
                for ref, _ in alternative
            ):
                chosen[joint] = alternative
                break
        else:
            missing.append(joint)
    return chosen, missing


# --- finding and reading bone maps --------------------------------------------------------------------------


def user_bone_map_folder() -> Path:
    """The user's bone-map folder: ``$XDG_CONFIG_HOME/mtvcrafter/bones`` (default ``~/.config``), or
    ``%APPDATA%\\mtvcrafter\\bones`` on Windows. :data:`BONE_MAPS_ENV` replaces it."""
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        base = Path(os.environ["APPDATA"])
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "mtvcrafter" / "bones"


def bundled_bone_map_folder() -> Path:
    """The bone maps shipped with the package (inside the installed wheel, or ``presets/bones`` of a checkout)."""
    if _BUNDLED_IN_PACKAGE.is_dir():
        return _BUNDLED_IN_PACKAGE
    return _BUNDLED_IN_CHECKOUT


def bone_map_folders(extra: Iterable[str | Path] = ()) -> list[Path]:
    """Where bone maps are looked for, first wins for a repeated id: ``extra`` folders, then the user's
    (:data:`BONE_MAPS_ENV`, a list of folders, or :func:`user_bone_map_folder`), then the bundled ones."""
    folders = [Path(p) for p in extra]
    env = os.environ.get(BONE_MAPS_ENV)
    if env:
        folders += [Path(p) for p in env.split(os.pathsep) if p]
    else:
        folders.append(user_bone_map_folder())
    folders.append(bundled_bone_map_folder())
    unique: list[Path] = []
    for folder in folders:
        if folder not in unique:
            unique.append(folder)
    return unique


def read_bone_map(path: str | Path) -> BoneMap:
    """One bone-map file; a file that is not a valid bone map raises MotionError naming it and the field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MotionError(f"cannot read the bone map ({exc.strerror or exc})", source=str(path)) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MotionError(f"not valid JSON ({exc}); see presets/README.md for the format", source=str(path)) from None
    return BoneMap.from_dict(data, path)


def load_bone_maps(
    folders: Iterable[str | Path] | None = None, *, skipped: dict[str, MotionError] | None = None
) -> dict[str, BoneMap]:
    """Every bone map (``*.json``) in ``folders`` (default :func:`bone_map_folders`), by id (the file
    name without ``.json``); for an id in several folders, the first folder's. Missing folders are skipped.

    A file that is not a valid bone map raises MotionError naming it and the field — unless ``skipped`` is
    given: then the file is left out, its error is stored in ``skipped`` under its id, and a valid map of
    the same id from a later folder (a bundled one) stands in for it.
    """
    maps: dict[str, BoneMap] = {}
    for folder in bone_map_folders() if folders is None else [Path(f) for f in folders]:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.json")):
            if path.stem in maps:
                continue
            try:
                maps[path.stem] = read_bone_map(path)
            except MotionError as exc:
                if skipped is None:
                    raise
                skipped.setdefault(path.stem, exc)
    return maps


def skipped_note(error: MotionError) -> str:
    """The note a motion carries for a bone-map file that was left out."""
    return f"warning: a bone map file was skipped ({error}); fix or remove it"


def save_bone_map(bone_map: BoneMap, path: str | Path) -> Path:
    """Write a bone map as JSON (``path`` a file, or a folder to write ``<id>.json`` in)."""
    path = Path(path)
    if path.is_dir():
        path = path / f"{bone_map.id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(bone_map.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def get_bone_map(
    choice: str | os.PathLike | BoneMap | Mapping[str, Any],
    maps: Mapping[str, BoneMap] | None = None,
    source: str | None = None,
    skipped: Mapping[str, MotionError] | None = None,
) -> BoneMap:
    """A bone map by id (or a :class:`BoneMap`, its JSON form as a dict, or the path of a bone-map
    ``.json`` file); ``source`` for messages.

    ``maps`` default: :func:`load_bone_maps` (a broken file does not hide the others). An id whose file
    is broken (in ``skipped``) raises that file's error.
    """
    if isinstance(choice, BoneMap):
        return choice
    if isinstance(choice, Mapping):
        return BoneMap.from_dict(dict(choice))
    if isinstance(choice, os.PathLike):  # a bone-map .json given as a path object
        choice = os.fspath(choice)
    if maps is None:
        found: dict[str, MotionError] = {}
        maps = load_bone_maps(skipped=found)
        skipped = {**found, **(skipped or {})}
    if skipped and choice in skipped:
        raise MotionError(
            f"the bone map {choice!r} cannot be used: {skipped[choice]}", source=source, field="bone_map"
        ) from None
    if choice not in maps and choice.lower() in maps:  # ids are file names: "Mixamo" means mixamo
        choice = choice.lower()
    if choice not in maps and choice.lower().endswith(".json") and Path(choice).is_file():
        return read_bone_map(choice)
    if choice not in maps:
        raise MotionError(
            f"no bone map {choice!r}; known: {', '.join(sorted(maps)) or 'none'} (or 'auto' to detect one, "
            "or the path of a bone-map .json file)",
            source=source,
            field="bone_map",
        )
    return maps[choice]
