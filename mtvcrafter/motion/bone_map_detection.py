"""Which bone map fits a rig: every map ranked by how many SMPL joints it places on the rig's bones
(:func:`rank_bone_maps`), the best one chosen (:func:`detect_bone_map`) or a chosen one checked
(:func:`fit_bone_map`), with messages that name what is missing and the fix. numpy only.

Where the rig's hierarchy and rest pose are known too (a BVH file, a Blender armature), :func:`detect_rig_map`
weighs the names against the skeleton's structure
(:func:`~mtvcrafter.motion.structure_mapping.map_by_structure`):

- a specific bone map that places all 24 joints by name (confidence 1) is used, its sides checked against
  the rest pose: where its left limbs lie on the body's right (left and right names swapped), its left and
  right are exchanged, with a warning that the names' sides were ignored;
- otherwise the mapping by structure replaces the names altogether (it places all 24 joints in one
  consistent way; a half-named rig mixed with structure would place the spine and the sides by two rules);
- where structure cannot read the skeleton, the generic map, when it places all 24 joints by guessed
  names, is used with a warning; else one MotionError says what the names and the structure each lacked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .bone_maps import (
    Alternative,
    BoneMap,
    BonePoint,
    bone_map_folders,
    load_bone_maps,
    resolve_alternatives,
    rig_lookup,
    skipped_note,
)
from .errors import MotionError
from .skeleton import JOINT_NAMES, NUM_JOINTS
from .structure_mapping import STRUCTURE_ID, NotHumanSkeleton, StructureMap, map_by_structure

#: Confidence of a fallback map (``"fallback": true``, the generic one), whose names are guesses.
FALLBACK_CONFIDENCE = 0.8


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
        notes: what was inferred and warnings (a mapping by structure: how it read the skeleton; names whose
            sides were ignored).
    """

    bone_map: BoneMap
    confidence: float
    mapped: dict[str, str]
    unmapped_bones: tuple[str, ...]
    missing_joints: tuple[str, ...]
    ranking: tuple[tuple[str, float], ...] = ()
    skipped: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.missing_joints


def _describe(alternative: Alternative, names: Mapping[str, str], conditions: bool = False) -> str:
    """``"Bone"``, ``"Bone@end"`` or ``"lerp(A, B, t)"`` in the rig's names; a point weighted 0 (a
    lerp with t = 0 or 1, which only requires the bone to exist) is left out unless ``conditions``."""

    def point(ref: BonePoint) -> str:
        name = names.get(ref.key, ref.bone)
        return f"{name}@end" if ref.end else name

    if len(alternative) == 1:
        return point(alternative[0][0])
    (a, wa), (b, t) = alternative
    if not conditions and (wa == 0.0 or t == 0.0):
        return point(b if wa == 0.0 else a)
    return f"lerp({point(a)}, {point(b)}, {t:g})"


def _fit(
    bone_map: BoneMap, names: Sequence[str], lookup: Mapping[str, str], ends: Mapping[str, Any] | None
) -> Detection:
    chosen, missing = resolve_alternatives(bone_map, lookup, ends)
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


def missing_joints_message(bone_map: BoneMap, missing: Sequence[str]) -> str:
    """The error for SMPL joints ``missing`` that ``bone_map`` places on no bone of a rig: the bones it
    looked for, and the fix."""
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


# --- names and structure --------------------------------------------------------------------------------------

#: SMPL joints of each limb whose side a bone map's names decide.
_LIMB_JOINTS = {
    "leg": ("hip", "knee", "ankle", "foot"),
    "arm": ("collar", "shoulder", "elbow", "wrist", "hand"),
}


def structure_detection(
    bone_names: Sequence[str],
    parents: Sequence[int],
    heads: np.ndarray,
    tails: np.ndarray | Mapping[Any, np.ndarray] | None = None,
    *,
    poses: tuple[np.ndarray, Mapping[Any, np.ndarray]] | None = None,
    source: str | None = None,
    structure: StructureMap | None = None,
) -> Detection:
    """The rig mapped by its structure (:func:`~mtvcrafter.motion.structure_mapping.map_by_structure`, same
    arguments) as a :class:`Detection`: ``mapped`` and ``unmapped_bones`` as for a bone map, ``notes`` what was
    inferred. MotionError for a skeleton that is not read as a human's."""
    names = list(bone_names)
    if structure is None:
        structure = map_by_structure(names, parents, heads, tails, poses=poses, source=source)
    fit = fit_bone_map(structure.bone_map, names, _names_with_ends(names, tails))
    return replace(fit, confidence=structure.confidence, notes=structure.notes)


def _names_with_ends(names: Sequence[str], tails: Any) -> list[str]:
    """The bones that have an end, from ``tails`` as :func:`~mtvcrafter.motion.structure_mapping.map_by_structure`
    takes them."""
    if tails is None:
        return []
    if isinstance(tails, Mapping):
        return [names[k] if isinstance(k, int | np.integer) else str(k) for k in tails]
    rows = np.isfinite(np.asarray(tails, dtype=np.float64)).all(axis=-1)
    return [name for name, has in zip(names, rows, strict=True) if has]


def _swapped_limbs(
    bone_map: BoneMap, names: Sequence[str], ends: Iterable[str] | None, structure: StructureMap
) -> list[str]:
    """The limbs (``"leg"``, ``"arm"``) whose left joints a bone map places on the bones that the rest pose
    shows on the body's right, and its right joints on the left."""
    lookup = rig_lookup(names)
    chosen, _ = resolve_alternatives(bone_map, lookup, _end_lookup(list(names), ends))

    def side_of(joint: str) -> str | None:
        bones = {lookup[ref.key] for ref, weight in chosen.get(joint, ()) if weight != 0.0}
        sides = {
            side
            for side in ("left", "right")
            for limb in _LIMB_JOINTS
            if bones & set(structure.limbs.get(f"{side}_{limb}", ()))
        }
        return sides.pop() if len(sides) == 1 else None

    swapped = []
    for limb, joints in _LIMB_JOINTS.items():
        found = [(side_of(f"left_{j}"), side_of(f"right_{j}")) for j in joints]
        if any(pair == ("right", "left") for pair in found) and not any(pair == ("left", "right") for pair in found):
            swapped.append(limb)
    return swapped


def _exchange_sides(bone_map: BoneMap, limbs: Sequence[str]) -> BoneMap:
    joints = dict(bone_map.joints)
    for limb in limbs:
        for j in _LIMB_JOINTS[limb]:
            joints[f"left_{j}"], joints[f"right_{j}"] = bone_map.joints[f"right_{j}"], bone_map.joints[f"left_{j}"]
    return replace(bone_map, joints={joint: joints[joint] for joint in JOINT_NAMES})


def detect_rig_map(
    bone_names: Sequence[str],
    parents: Sequence[int],
    heads: np.ndarray,
    tails: np.ndarray | Mapping[Any, np.ndarray] | None = None,
    maps: Mapping[str, BoneMap] | None = None,
    *,
    poses: tuple[np.ndarray, Mapping[Any, np.ndarray]] | None = None,
    source: str | None = None,
) -> Detection:
    """Where the 24 SMPL joints lie on a rig, from its names and its structure (the rule in the module's
    docstring).

    Args:
        bone_names, parents, heads, tails, poses: the rig, as
            :func:`~mtvcrafter.motion.structure_mapping.map_by_structure` takes it (a Blender armature: bone
            names, parent indices, rest heads and tails).
        maps: id → bone map (default :func:`load_bone_maps`; broken files are left out, named in ``skipped``).
        source: the file, for messages.

    Returns:
        The :class:`Detection` used: a bone map's, or the mapping by structure's (its bone map's id is
        ``structure``); its ``notes`` say what was inferred and warn of swapped or guessed names.
    """
    names = list(bone_names)
    ends = _names_with_ends(names, tails)
    skipped: dict[str, MotionError] = {}
    maps = load_bone_maps(skipped=skipped) if maps is None else maps
    skipped_notes = tuple(skipped_note(error) for error in skipped.values())
    named: Detection | None = None
    named_error: MotionError | None = None
    try:
        named = replace(detect_bone_map(names, maps, ends=ends, source=source), skipped=skipped_notes)
    except MotionError as exc:
        named_error = exc
    structure: StructureMap | None = None
    structure_error = ""
    try:
        structure = map_by_structure(names, parents, heads, tails, poses=poses, source=source)
    except MotionError as exc:  # not a human's, or bones a bone map cannot tell apart
        structure_error = exc.reason if isinstance(exc, NotHumanSkeleton) else _message(exc)
    if named is not None and not named.bone_map.fallback:
        swapped = _swapped_limbs(named.bone_map, names, ends, structure) if structure is not None else []
        if not swapped or structure is None:
            return named
        exchanged = fit_bone_map(_exchange_sides(named.bone_map, swapped), names, ends)
        warning = (
            f"warning: the bone names' left and right are swapped: the {' and '.join(f'{limb}s' for limb in swapped)} "
            f"named left lie on the body's right in the {'rest pose' if structure.from_rest else 'poses'} (up "
            f"{structure.up}, facing {structure.forward}); "
            "mapped by the skeleton's geometry, the names' sides ignored"
        )
        return replace(
            exchanged, confidence=named.confidence, ranking=named.ranking, skipped=skipped_notes, notes=(warning,)
        )
    if structure is not None:
        fits = rank_bone_maps(names, maps, ends=ends)
        if fits:
            closest = fits[0][1]
            placed = NUM_JOINTS - len(closest.missing_joints)
            guessed = " from guessed names" if closest.bone_map.fallback else ""
            why = f"by names, {closest.bone_map.name} ({closest.bone_map.id}) places {placed} of 24{guessed}"
        else:
            why = "no bone maps"
        detection = structure_detection(names, parents, heads, tails, source=source, structure=structure)
        return replace(
            detection,
            ranking=((STRUCTURE_ID, detection.confidence), *((ident, fit.confidence) for ident, fit in fits)),
            notes=(f"no bone map names all 24 joints ({why}): mapped by the skeleton's structure", *detection.notes),
            skipped=skipped_notes,
        )
    if named is not None:
        warning = (
            f"warning: the joints are placed by guessed names ({named.bone_map.name} map), unchecked: the skeleton's "
            f"structure is not read as a human's ({structure_error}); check the result"
        )
        return replace(named, notes=(warning,))
    assert named_error is not None
    raise MotionError(
        f"{_message(named_error).rstrip('.')}. Not read by its structure either: {structure_error}",
        source=source,
        field="bone_map",
    )


def _message(error: MotionError) -> str:
    """A MotionError's message without the source and field it names first."""
    text = str(error)
    for prefix in (f"{error.source}: " if error.source else "", f"field '{error.field}': " if error.field else ""):
        text = text.removeprefix(prefix)
    return text
