"""Bone maps: the SMPL-24 joints of any rig — BVH mocap, a Blender armature — numpy only.

A *bone map* (``presets/bones/*.json``, format in ``presets/README.md``) says where each of the 24
SMPL joints lies on a rig: at a bone's head (a BVH joint's position), at its end (``"Bone@end"``: the
BVH End Site, the Blender bone's tail), or on the line through two such points (``{"lerp": [a, b,
t]}`` = ``a + t·(b − a)``), with alternatives tried in order (the first whose bones all exist wins).
Rig names match after stripping a namespace (anything up to the last ``:`` or ``|``: ``mixamorig:``,
``Armature|``) and case-insensitively.

The way from a rig's joints to a :class:`~mtvcrafter.motion.Motion`:

1. :func:`detect_bone_map` picks the bone map that fits the rig's names (or the user names one);
2. :func:`map_points` gives the 24 joints per frame, in the rig's unit and axes;
3. :func:`rig_to_world` turns them into Blender's world (Z up, metres): the rig's ``up`` axis goes to
   +Z and the axis it faces (``forward``) to −Y, so a Y-up rig facing +Z maps as Blender's BVH
   importer maps it, ``(x, y, z) → (x, −z, y)``; the unit is the one given, else detected from the
   skeleton's size (:func:`choose_unit`);
4. a camera — the user's, or :func:`default_camera` — gives camera-space millimetres
   (:func:`~mtvcrafter.motion.camera.world_to_camera_mm`).

:func:`motion_from_bvh` does all of it for a BVH file.
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

import numpy as np

from .camera import (
    DEFAULT_FOV_DEG,
    DEFAULT_IMAGE_SIZE,
    CameraFile,
    CameraPlacement,
    default_camera,
    project,
    read_camera,
    world_to_camera_mm,
)
from .errors import MotionError
from .motion import Motion
from .skeleton import JOINT_NAMES, NUM_JOINTS
from .units import UNITS, choose_unit, unit_scale

AXES = ("X", "Y", "Z", "-X", "-Y", "-Z")
#: Folders of the user's own bone maps (``os.pathsep``-separated); else ``~/.config/mtvcrafter/bones``.
BONE_MAPS_ENV = "MTVCRAFTER_BONE_MAPS"

#: Confidence of a fallback map (``"fallback": true``, the generic one), whose names are guesses.
FALLBACK_CONFIDENCE = 0.8

_JOINT_INDEX = {name: i for i, name in enumerate(JOINT_NAMES)}
_BUNDLED_IN_PACKAGE = Path(__file__).resolve().parent / "bones"
_BUNDLED_IN_CHECKOUT = Path(__file__).resolve().parents[2] / "presets" / "bones"
_KEYS = {"name", "description", "up", "forward", "unit", "joints", "fallback"}


def bone_key(name: str) -> str:
    """How rig names are compared: the namespace (up to the last ``:`` or ``|``) stripped, lower case."""
    cut = max(name.rfind(":"), name.rfind("|"))
    return name[cut + 1 :].lower()


def _split_reference(reference: str) -> tuple[str, bool]:
    if reference.lower().endswith("@end"):
        return reference[:-4], True
    return reference, False


# --- the bone map -------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Ref:
    bone: str  # as written in the map
    end: bool

    @property
    def key(self) -> str:
        return bone_key(self.bone)


#: One way to place a joint: a weighted sum of points (a point: weight 1; a lerp: 1 − t and t).
_Alternative = tuple[tuple[_Ref, float], ...]


@dataclass(frozen=True, eq=False)
class BoneMap:
    """Where the 24 SMPL joints lie on a rig (see the module docstring and ``presets/README.md``).

    Attributes:
        name, description: for menus and messages.
        joints: SMPL joint name → source, as in the JSON file: ``"Bone"``, ``"Bone@end"``,
            ``{"lerp": [a, b, t]}``, or a list of those (alternatives, the first that fits wins).
        up, forward: the rig's axis pointing up and the axis the character faces (``"Y"``, ``"-Z"`` …).
        unit: ``"m"``, ``"cm"``, ``"mm"``, ``"inch"``, ``"cmu"`` or ``"auto"``: the rig's unit, used
            unless the skeleton's size clearly says otherwise (:func:`choose_unit`).
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
        unknown = [k for k in self.joints if k not in _JOINT_INDEX]
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
    def alternatives(self) -> dict[str, tuple[_Alternative, ...]]:
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


def _compile(source: Any, src: str | None, where: str) -> tuple[_Alternative, ...]:
    """A joint source → its alternatives, in order."""

    def ref(value: Any, at: str) -> _Ref:
        if not isinstance(value, str) or not _split_reference(value)[0].strip():
            raise MotionError(f"a point is a bone name or 'Bone@end', got {value!r}", source=src, field=at)
        bone, end = _split_reference(value)
        return _Ref(bone.strip(), end)

    def one(value: Any, at: str) -> _Alternative:
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


def _describe(alternative: _Alternative, names: Mapping[str, str], conditions: bool = False) -> str:
    """``"Bone"``, ``"Bone@end"`` or ``"lerp(A, B, t)"`` in the rig's names; a point weighted 0 (a
    lerp with t = 0 or 1, which only requires the bone to exist) is left out unless ``conditions``."""

    def point(ref: _Ref) -> str:
        name = names.get(ref.key, ref.bone)
        return f"{name}@end" if ref.end else name

    if len(alternative) == 1:
        return point(alternative[0][0])
    (a, wa), (b, t) = alternative
    if not conditions and (wa == 0.0 or t == 0.0):
        return point(b if wa == 0.0 else a)
    return f"lerp({point(a)}, {point(b)}, {t:g})"


# --- finding and reading bone maps -------------------------------------------------------------------------


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
    choice: str | BoneMap | Mapping[str, Any],
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


# --- detection ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Detection:
    """How a bone map fits a rig.

    Attributes:
        bone_map: the map.
        confidence: 0..1, the share of the 24 joints it places (× 0.8 for a fallback map).
        mapped: SMPL joint → the source used, in the rig's names (``"LeftUpLeg"``,
            ``"lerp(Spine1, Spine2, 0.3)"``).
        unmapped_bones: the rig's bones no joint uses (fingers, twist bones, props …), in rig order.
        missing_joints: SMPL joints the map cannot place on this rig.
        ranking: ``(id, confidence)`` of every map tried, best first.
        skipped: notes on the bone-map files that were left out because they are broken (only when
            :func:`detect_bone_map` read the files itself).
    """

    bone_map: BoneMap
    confidence: float
    mapped: dict[str, str]
    unmapped_bones: tuple[str, ...]
    missing_joints: tuple[str, ...]
    ranking: tuple[tuple[str, float], ...] = ()
    skipped: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.missing_joints


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


def _add_unprefixed(table: dict[str, Any], prefix: str) -> None:
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
    _add_unprefixed(lookup, shared_prefix(names))
    return lookup


def _resolve(
    bone_map: BoneMap, heads: Mapping[str, Any], ends: Mapping[str, Any] | None
) -> tuple[dict[str, _Alternative], list[str]]:
    """The first alternative of each joint whose points exist (``ends`` None: every bone has an end)."""
    chosen: dict[str, _Alternative] = {}
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


def _fit(
    bone_map: BoneMap, names: Sequence[str], lookup: Mapping[str, str], ends: Mapping[str, Any] | None
) -> Detection:
    chosen, missing = _resolve(bone_map, lookup, ends)
    used = {lookup[ref.key] for alternative in chosen.values() for ref, weight in alternative if weight != 0.0}
    confidence = len(chosen) / NUM_JOINTS * (FALLBACK_CONFIDENCE if bone_map.fallback else 1.0)
    return Detection(
        bone_map=bone_map,
        confidence=round(confidence, 4),
        mapped={joint: _describe(alt, lookup) for joint, alt in chosen.items()},
        unmapped_bones=tuple(n for n in names if n not in used),
        missing_joints=tuple(missing),
    )


def fit_bone_map(bone_map: BoneMap, bone_names: Sequence[str], ends: Iterable[str] | None = None) -> Detection:
    """How ``bone_map`` fits these bones (``ends``: the bones that have an end point; default all)."""
    names = list(bone_names)
    return _fit(bone_map, names, rig_lookup(names), _end_lookup(names, ends))


def _end_lookup(names: Sequence[str], ends: Iterable[str] | None) -> dict[str, str] | None:
    """Comparison key → bone, for the bones that have an end point (None: all of them)."""
    if ends is None:
        return None
    with_end = set(ends)
    return {key: name for key, name in rig_lookup(names).items() if name in with_end}


def _missing_message(bone_map: BoneMap, missing: Sequence[str]) -> str:
    return (
        f"the bone map {bone_map.name} ({bone_map.id}) finds no bone for {_looked_for(bone_map, missing)}; choose "
        "another bone map (or auto), or add this rig's bone names to a bone map of your own (presets/README.md)"
    )


def _looked_for(bone_map: BoneMap, joints: Sequence[str], limit: int = 6) -> str:
    parts = []
    for joint in joints[:limit]:
        options = [_describe(alt, {}, conditions=True) for alt in bone_map.alternatives[joint][:3]]
        parts.append(f"{joint} ({' or '.join(options)})")
    more = f" and {len(joints) - limit} more" if len(joints) > limit else ""
    return ", ".join(parts) + more


def rank_bone_maps(
    bone_names: Sequence[str], maps: Mapping[str, BoneMap], *, ends: Iterable[str] | None = None
) -> list[tuple[str, Detection]]:
    """``(id, how the map fits)`` for every map, best first, by :func:`detect_bone_map`'s rule: more SMPL
    joints placed, then a specific map before a fallback one, then more of the rig's bones used, then id."""
    names = list(bone_names)
    lookup = rig_lookup(names)
    end_keys = _end_lookup(names, ends)
    fits = [(ident, _fit(bone_map, names, lookup, end_keys)) for ident, bone_map in maps.items()]
    return sorted(
        fits,
        key=lambda item: (len(item[1].missing_joints), item[1].bone_map.fallback, len(item[1].unmapped_bones), item[0]),
    )


def detect_bone_map(
    bone_names: Sequence[str],
    maps: Mapping[str, BoneMap] | None = None,
    *,
    ends: Iterable[str] | None = None,
    source: str | None = None,
) -> Detection:
    """The bone map that fits a rig's bone names best.

    Rule: maps are ranked by the number of SMPL joints they place on the rig; ties go to a specific
    map over a fallback one (``generic``), then to the map that uses more of the rig's bones, then
    by id. The winner must place all 24 joints; otherwise MotionError names the closest map, what it
    missed and the fix (``--preset`` or a custom bone map).

    Args:
        bone_names: the rig's bone (BVH joint) names, namespaces and case as they are.
        maps: id → map (default :func:`load_bone_maps`; a broken file is left out and named in
            :attr:`Detection.skipped`).
        ends: the bones that have an end point (BVH joints with an End Site); default: all (Blender).
        source: the file, for messages.
    """
    names = list(bone_names)
    skipped: dict[str, MotionError] = {}
    maps = load_bone_maps(skipped=skipped) if maps is None else maps
    if not maps:
        raise MotionError(
            f"no bone maps found (looked in {', '.join(map(str, bone_map_folders()))})", source=source, field="bone_map"
        )
    fits = rank_bone_maps(names, maps, ends=ends)
    ranking = tuple((ident, fit.confidence) for ident, fit in fits)
    best_id, best = fits[0]
    if best.missing_joints:
        placed = NUM_JOINTS - len(best.missing_joints)
        listed = f"{', '.join(names[:6])}{' …' if len(names) > 6 else ''}"
        fix = (
            f"Choose a map with --preset ID ({', '.join(sorted(maps))}), or write a bone map for this rig "
            f"(presets/README.md) into {bone_map_folders()[0]}"
        )
        if skipped:
            fix += ". Skipped as broken: " + "; ".join(str(error) for error in skipped.values())
        if placed == 0:
            raise MotionError(
                f"no bone map finds a single SMPL joint among the {len(names)} bones ({listed}); this does not "
                f"look like a human skeleton. {fix}",
                source=source,
                field="bone_map",
            )
        human = "" if placed >= NUM_JOINTS // 2 else "these bones do not look like a human skeleton; "
        raise MotionError(
            f"no bone map fits the {len(names)} bones ({listed}): {human}the closest, {best.bone_map.name} "
            f"({best_id}), places {placed} of 24 joints and finds no bone for "
            f"{_looked_for(best.bone_map, best.missing_joints)}. {fix}",
            source=source,
            field="bone_map",
        )
    return Detection(
        bone_map=best.bone_map,
        confidence=best.confidence,
        mapped=best.mapped,
        unmapped_bones=best.unmapped_bones,
        missing_joints=(),
        ranking=ranking,
        skipped=tuple(skipped_note(error) for error in skipped.values()),
    )


# --- points -------------------------------------------------------------------------------------------------


def map_points(
    names: Sequence[str] | None,
    points: np.ndarray | tuple[np.ndarray, Mapping[Any, np.ndarray]] | Mapping[str, np.ndarray],
    bone_map: BoneMap,
    ends: Mapping[Any, np.ndarray] | None = None,
) -> np.ndarray:
    """The 24 SMPL joints ``(F, 24, 3)`` from a rig's points, in the rig's unit and axes.

    Args:
        names: the rig's bone (joint) names, one per column of the heads (unused for a dict).
        points: the heads ``(F, J, 3)`` (or ``(J, 3)`` for one frame, giving ``(24, 3)``); or a tuple
            ``(heads, ends)``; or a dict name → ``(F, 3)`` head, where ``"Bone@end"`` keys give ends.
        bone_map: the map.
        ends: End Site / tail positions ``(F, 3)`` by bone name or by column index.

    Raises:
        MotionError: a joint has no source among these bones (the message lists them).
    """
    if isinstance(points, tuple):
        points, tuple_ends = points
        ends = {**(ends or {}), **tuple_ends}
    head_of: dict[str, np.ndarray] = {}
    end_of: dict[str, np.ndarray] = {}
    single = False
    if isinstance(points, Mapping):
        for name, value in points.items():
            bone, end = _split_reference(str(name))
            (end_of if end else head_of).setdefault(bone_key(bone), np.asarray(value, dtype=np.float64))
        frames = {a.shape[0] for a in (*head_of.values(), *end_of.values()) if a.ndim == 2}
        single = not frames
        for table in (head_of, end_of):
            for key, value in table.items():
                table[key] = value[None] if value.ndim == 1 else value
        names = list(head_of)
    else:
        heads = np.asarray(points, dtype=np.float64)
        single = heads.ndim == 2
        if single:
            heads = heads[None]
        if names is None or heads.ndim != 3 or heads.shape[1:] != (len(names), 3):
            raise MotionError(
                f"heads must be (frames, {len(names) if names is not None else 'bones'}, 3), got {heads.shape}",
                field="points",
            )
        for j, name in enumerate(names):
            head_of.setdefault(bone_key(name), heads[:, j])
    for name, value in (ends or {}).items():
        key = bone_key(names[name]) if isinstance(name, int | np.integer) else bone_key(str(name))
        value = np.asarray(value, dtype=np.float64)
        end_of.setdefault(key, value[None] if value.ndim == 1 else value)
    # the rig's shared prefix (Bip01_, Character1_, DEF-, …) dropped too, as rig_lookup does
    prefix = shared_prefix(list(head_of))
    for table in (head_of, end_of):
        _add_unprefixed(table, prefix)
    chosen, missing = _resolve(bone_map, head_of, end_of)
    if missing:
        raise MotionError(_missing_message(bone_map, missing), field="bone_map")
    frame_count = max(a.shape[0] for a in (*head_of.values(), *end_of.values()))
    out = np.zeros((frame_count, NUM_JOINTS, 3))
    for joint, alternative in chosen.items():
        j = _JOINT_INDEX[joint]
        for ref, weight in alternative:
            if weight != 0.0:
                out[:, j] += weight * (end_of if ref.end else head_of)[ref.key]
    return out[0] if single else out


# --- axes -----------------------------------------------------------------------------------------------


def axes_matrix(up: str, forward: str) -> np.ndarray:
    """``(3, 3)`` rotation taking rig coordinates to Blender's world: ``up`` → +Z, ``forward`` (the axis
    the character faces) → −Y. For ``up="Y", forward="Z"``: ``(x, y, z) → (x, −z, y)``, as Blender's
    BVH importer."""

    def axis(name: str) -> np.ndarray:
        name = name.upper()
        if name not in AXES:
            raise MotionError(f"an axis is one of {', '.join(AXES)}, got {name!r}", field="axes")
        v = np.zeros(3)
        v["XYZ".index(name[-1])] = -1.0 if name.startswith("-") else 1.0
        return v

    u, f = axis(up), axis(forward)
    if abs(float(u @ f)) > 0.5:
        raise MotionError(f"up {up} and forward {forward} must be different axes", field="axes")
    ex, ey, ez = np.eye(3)
    return np.outer(ez, u) - np.outer(ey, f) + np.outer(ex, np.cross(u, f))


def rig_to_world(
    points: np.ndarray,
    bone_map_or_axes: BoneMap | tuple[str, str],
    unit: str | float | None = None,
) -> np.ndarray:
    """Rig points ``(..., 3)`` (e.g. :func:`map_points`' output) → Blender's world in metres, Z up.

    ``bone_map_or_axes``: a bone map (its ``up``, ``forward`` and ``unit``) or ``(up, forward)``.
    ``unit``: a unit name or metres per unit; None or ``"auto"``: :func:`choose_unit` on the points
    (which must then be SMPL joints), preferring the bone map's unit.
    """
    if isinstance(bone_map_or_axes, BoneMap):
        up, forward, preferred = bone_map_or_axes.up, bone_map_or_axes.forward, bone_map_or_axes.unit
    else:
        (up, forward), preferred = bone_map_or_axes, "auto"
    points = np.asarray(points, dtype=np.float64)
    if unit is None or (isinstance(unit, str) and unit.lower() == "auto"):
        scale, _ = choose_unit(points, None, preferred)
    else:
        scale = unit_scale(unit)
    return points @ axes_matrix(up, forward).T * scale


def _axis_name(vector: np.ndarray, min_cos: float) -> str | None:
    """The signed axis (``"Y"``, ``"-Z"`` …) a vector points along, if within ``acos(min_cos)`` of it."""
    vector = np.asarray(vector, dtype=np.float64)
    length = float(np.linalg.norm(vector))
    if not length > 1e-12:
        return None
    k = int(np.argmax(np.abs(vector)))
    if abs(vector[k]) / length < min_cos:
        return None
    return ("-" if vector[k] < 0 else "") + "XYZ"[k]


def _axis_vector(name: str) -> np.ndarray:
    v = np.zeros(3)
    v["XYZ".index(name[-1])] = -1.0 if name.startswith("-") else 1.0
    return v


def body_up(joints: np.ndarray) -> str | None:
    """The axis SMPL joints ``(F, 24, 3)`` stand along — from the ankles' middle to the head, averaged over
    (at most 1000) frames — when it is within 37° of one; else None."""
    joints = np.asarray(joints, dtype=np.float64)
    joints = joints[:: max(1, len(joints) // 1000)]
    ankles = (joints[:, _JOINT_INDEX["left_ankle"]] + joints[:, _JOINT_INDEX["right_ankle"]]) / 2.0
    axis = joints[:, _JOINT_INDEX["head"]] - ankles
    axis /= np.maximum(np.linalg.norm(axis, axis=-1, keepdims=True), 1e-12)
    return _axis_name(axis.mean(axis=0), 0.8)


def body_facing(joints: np.ndarray, up: str) -> str | None:
    """The axis SMPL joints ``(24, 3)`` (one pose) face, given their up axis: their left (hips and
    shoulders) turned a quarter turn about ``up``; None when that is not within 45° of an axis."""
    joints = np.asarray(joints, dtype=np.float64)
    left = np.zeros(3)
    for a, b in (("left_hip", "right_hip"), ("left_shoulder", "right_shoulder")):
        d = joints[_JOINT_INDEX[a]] - joints[_JOINT_INDEX[b]]
        n = float(np.linalg.norm(d))
        if n > 1e-12:
            left += d / n
    facing = _axis_name(np.cross(left, _axis_vector(up)), 0.7)
    return facing if facing is not None and facing[-1] != up[-1] else None


def choose_axes(
    bone_map: BoneMap, joints: np.ndarray, rest_joints: np.ndarray | None = None, up: str | None = None
) -> tuple[str, str, str]:
    """The rig's ``(up, forward)`` axes and why (a note for the user).

    Rule: an explicit ``up`` wins (facing: the rest pose's, else the bone map's axes turned onto it).
    Otherwise the bone map's axes stand, unless the skeleton clearly stands along another axis both in
    its rest pose (``rest_joints``, SMPL joints ``(1, 24, 3)`` of the hierarchy with no rotation) and over
    the clip (``joints``, ``(F, 24, 3)``) — a BVH that Blender wrote from a Z-up armature, say: then that
    axis is up and the rest pose's facing is forward. A rest pose that does not stand (some datasets
    pose it lying down) or a clip lying down (floor work) leaves the bone map's axes.
    """
    given = up is not None and not (isinstance(up, str) and up.lower() == "auto")
    if given:
        up = str(up).upper()
        if up not in AXES:
            raise MotionError(f"an axis is one of {', '.join(AXES)} or auto, got {up!r}", field="up")
        if up == bone_map.up:
            return up, bone_map.forward, f"axes: {up} up (as given), facing {bone_map.forward}"
        how = "up as given"
    else:
        standing = body_up(joints)
        rest = body_up(rest_joints) if rest_joints is not None else None
        if standing is None or standing != rest or standing == bone_map.up:
            return bone_map.up, bone_map.forward, f"axes: {bone_map.up} up, facing {bone_map.forward} (the bone map's)"
        up = standing
        how = f"detected: the skeleton stands along {up}; the bone map says {bone_map.up}"
    forward = body_facing(rest_joints[0], up) if rest_joints is not None else None
    if forward is None:  # the bone map's axes turned so that its up becomes this up
        u0, f0, u1 = _axis_vector(bone_map.up), _axis_vector(bone_map.forward), _axis_vector(up)
        if abs(float(u0 @ u1)) < 0.5:  # a quarter turn about u0 × u1
            a = np.cross(u0, u1)
            turned = np.cross(a, f0) + a * float(a @ f0)
        else:  # the same axis (forward stands) or the opposite one (a half turn about the rig's left)
            turned = f0 if float(u0 @ u1) > 0 else -f0
        forward = _axis_name(turned, 0.5) or bone_map.forward
    return up, forward, f"axes: {up} up, facing {forward} ({how})"


# --- BVH ----------------------------------------------------------------------------------------------------


def _file_fps(frame_time: float) -> float:
    """The frame rate of a ``Frame Time``; within 0.02 % of a whole number (a frame time written with six
    decimals, 0.033333 for 30 fps) it is that number."""
    fps = 1.0 / frame_time
    return float(round(fps)) if abs(fps - round(fps)) <= 2e-4 * fps else fps


#: World joints farther than this from where the clip starts are damaged values, not motion: the motion is
#: stored as float32 millimetres, which keep about a millimetre up to here.
MAX_TRAVEL_M = 10_000.0


def rest_points(skeleton: Any) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The rest pose of a BVH hierarchy (:class:`~mtvcrafter.motion.bvh.BvhSkeleton`): every joint at its
    ``OFFSET`` with no rotation — heads ``(1, J, 3)`` and End Sites ``(1, 3)`` by joint index."""
    heads = np.zeros((skeleton.num_joints, 3))
    for j, parent in enumerate(skeleton.parents):
        heads[j] = skeleton.offsets[j] + (heads[parent] if parent >= 0 else 0.0)
    ends = {j: (heads[j] + np.asarray(offset, dtype=np.float64))[None] for j, offset in skeleton.end_sites.items()}
    return heads[None], ends


def motion_from_bvh(
    path: str | Path,
    bone_map: str | BoneMap | Mapping[str, Any] | None = None,
    unit: str | float | None = None,
    camera: CameraPlacement | CameraFile | str | Path | None = None,
    fps: float | None = None,
    *,
    up: str | None = None,
    image_size: tuple[int, int] | None = None,
    fov_deg: float | None = None,
    maps: Mapping[str, BoneMap] | None = None,
) -> Motion:
    """A BVH file as a Motion: its joints mapped onto SMPL-24, in Blender's world, seen by a camera.

    Args:
        path: the ``.bvh`` file.
        bone_map: ``None``/``"auto"`` (detected, :func:`detect_bone_map`), a map id, a BoneMap, its
            JSON form, or the path of a bone-map ``.json`` file.
        unit: the file's unit (a name of :data:`UNITS` or metres per unit); default: :func:`choose_unit`.
        camera: a placement in Blender's world, a :class:`CameraFile`, or a camera JSON file
            (:func:`read_camera`); default :func:`default_camera`.
        fps: overrides the file's frame rate (``1 / Frame Time``, rounded to a whole number within 0.02 %).
        up: the file's up axis (``"Y"``, ``"Z"``, ``"-Y"`` …); default (None or ``"auto"``): the bone
            map's, unless the skeleton clearly stands along another axis (:func:`choose_axes`).
        image_size, fov_deg: the camera's image ``(H, W)`` and view across its larger side (default:
            the camera file's, else 1024×1024 and 55°).
        maps: the bone maps to detect among (default :func:`load_bone_maps`; a broken bone-map file is
            left out, with a warning in the notes, and choosing it by id raises its error).

    The motion's ``notes`` say which bone map (and how sure), the unit and why, the axes, the bones left
    out and the camera. A file with no frames, or with values that put a joint more than 10 km away,
    raises MotionError naming the line.
    """
    from .bvh import bvh_end_positions, bvh_forward_kinematics, read_bvh

    source = str(path)
    bvh = read_bvh(path)
    if bvh.num_frames == 0:
        raise MotionError(
            f"line {bvh.frames_line}: 'Frames: 0': the file holds a skeleton but no motion; export it with "
            "its animation (at least one frame)",
            source=source,
        )
    skipped: dict[str, MotionError] = {}
    if maps is None:
        maps = load_bone_maps(skipped=skipped)
    names = list(bvh.skeleton.names)
    end_names = [names[j] for j in bvh.skeleton.end_sites]
    if bone_map is None or (isinstance(bone_map, str) and bone_map.lower() == "auto"):
        detection = detect_bone_map(names, maps, ends=end_names, source=source)
        chosen = detection.bone_map
        how = f"detected, confidence {detection.confidence:.2f}"
    else:
        chosen = get_bone_map(bone_map, maps, source, skipped=skipped)
        detection = fit_bone_map(chosen, names, end_names)
        if detection.missing_joints:
            raise MotionError(_missing_message(chosen, detection.missing_joints), source=source, field="bone_map")
        how = "as chosen"
    positions, rotations = bvh_forward_kinematics(bvh)
    ends = bvh_end_positions(bvh, positions, rotations)
    rig_points = map_points(names, positions, chosen, ends=ends)
    rest_heads, rest_ends = rest_points(bvh.skeleton)
    rest = map_points(names, rest_heads, chosen, ends=rest_ends)
    rig_up, rig_forward, axes_note = choose_axes(chosen, rig_points, rest, up)
    scale, unit_note = choose_unit(rig_points, unit, chosen.unit)
    world = rig_to_world(rig_points, (rig_up, rig_forward), scale)
    _check_travel(world, bvh, source)

    camera_note = "seen by the camera given"
    given_camera = camera is not None
    if isinstance(camera, str | Path):
        camera = read_camera(camera)
    if isinstance(camera, CameraFile):
        image_size = image_size or camera.image_size
        fov_deg = fov_deg or camera.fov_deg
        camera = camera.placement
    image_size = tuple(image_size) if image_size else DEFAULT_IMAGE_SIZE  # type: ignore[assignment]
    fov_deg = float(fov_deg) if fov_deg else DEFAULT_FOV_DEG
    if camera is None:
        camera = default_camera(world, image_size, fov_deg)  # type: ignore[arg-type]
        camera_note = (
            "placed in front of a default camera (level, facing the performer, whole clip in view; "
            f"{image_size[1]}x{image_size[0]}, {fov_deg:g}°)"
        )
    joints = world_to_camera_mm(world, camera)
    unused = detection.unmapped_bones
    notes = [
        f"BVH: {len(names)} joints, {bvh.num_frames} frames, Frame Time {bvh.frame_time:.7g} s "
        f"({_file_fps(bvh.frame_time):.6g} fps)",
        f"bone map: {chosen.name} ({chosen.id}, {how})",
        unit_note,
        f"{axes_note} → Blender's Z up, facing −Y",
        *bvh.notes,
        *(skipped_note(error) for error in skipped.values()),
    ]
    if unused:
        listed = ", ".join(unused[:12]) + (f" and {len(unused) - 12} more" if len(unused) > 12 else "")
        notes.append(f"{len(unused)} rig bone(s) not used: {listed}")
    notes.append(camera_note)
    if given_camera:
        distance = float(np.abs(joints).max())
        if not distance <= MAX_TRAVEL_M * 1000.0:
            raise MotionError(
                f"the camera given is {distance / 1000:.3g} m from the performer (more than {MAX_TRAVEL_M / 1000:g} "
                "km): check its position (metres, in Blender's world)",
                source=source,
                field="camera",
            )
        notes += _visibility_warning(joints, image_size, fov_deg)  # type: ignore[arg-type]
    return Motion(
        joints=joints,
        fps=float(fps) if fps else _file_fps(bvh.frame_time),
        image_size=image_size,  # type: ignore[arg-type]
        fov_deg=fov_deg,
        name=Path(path).stem,
        source=source,
        source_format="bvh",
        notes=tuple(notes),
    )


def _check_travel(world: np.ndarray, bvh: Any, source: str) -> None:
    """MotionError naming the frame and its line where a joint lies beyond :data:`MAX_TRAVEL_M` from the
    first frame's pelvis (or is not a number): damaged values, or a unit wildly wrong."""
    with np.errstate(invalid="ignore", over="ignore"):
        distance = np.linalg.norm(world - world[:1, _JOINT_INDEX["pelvis"]][:, None], axis=-1).max(axis=-1)
    bad = np.flatnonzero(~(distance <= MAX_TRAVEL_M))
    if bad.size:
        frame = int(bad[0])
        far = f"{distance[frame]:.3g} m" if np.isfinite(distance[frame]) else "infinitely far (numbers overflow)"
        raise MotionError(
            f"{bvh.line_of_frame(frame)}: a joint lies {far} from where the clip starts (more than "
            f"{MAX_TRAVEL_M / 1000:g} km; {bad.size} frame(s) like this): the values are damaged, or the unit is "
            "wrong (--unit); export the file again",
            source=source,
        )


def _visibility_warning(joints_mm: np.ndarray, image_size: tuple[int, int], fov_deg: float) -> list[str]:
    """A warning note when a camera that was given does not see every joint of every frame."""
    height, width = image_size
    uv = project(joints_mm, image_size, fov_deg)
    with np.errstate(invalid="ignore"):
        inside = (uv[..., 0] >= 0) & (uv[..., 0] <= width) & (uv[..., 1] >= 0) & (uv[..., 1] <= height)
    if not inside.all():
        behind = float((joints_mm[..., 2] <= 1.0).mean())
        return [
            f"warning: the camera given sees {inside.mean():.0%} of the joint positions ({behind:.0%} are behind "
            f"it; {int((~inside.all(axis=1)).sum())} of {len(joints_mm)} frames are not fully in view); check the "
            "camera"
        ]
    tall = float(np.median(np.ptp(uv[..., 1], axis=1))) / height
    if tall < 0.05:
        return [
            f"warning: the performer is only {tall:.1%} of the image's height through the camera given (too far "
            "away for the model to see the pose); check the camera"
        ]
    return []
