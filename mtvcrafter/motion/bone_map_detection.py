"""Which bone map fits a rig: every map ranked by how many SMPL joints it places on the rig's bones
(:func:`rank_bone_maps`), the best one chosen (:func:`detect_bone_map`) or a chosen one checked
(:func:`fit_bone_map`), with messages that name what is missing and the fix. numpy only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
from .skeleton import NUM_JOINTS

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
