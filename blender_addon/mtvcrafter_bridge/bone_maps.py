"""Bone maps in Blender: the bundled presets (``presets/bones``) and the user's, as menu items, with the mapping by
the skeleton's structure (:mod:`~mtvcrafter.motion.structure_mapping`: any bone names) beside them; the mapping a
user edits on a rig (one row per SMPL joint) as a :class:`~mtvcrafter.motion.bone_maps.BoneMap`, and saved
as a preset file."""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import bpy
import numpy as np

from mtvcrafter.motion import JOINT_NAMES, Motion, MotionError
from mtvcrafter.motion.bone_map_detection import (
    Detection,
    detect_bone_map,
    detect_rig_map,
    fit_bone_map,
    rank_bone_maps,
    structure_detection,
)
from mtvcrafter.motion.bone_maps import BoneMap, bone_map_folders, load_bone_maps, rig_lookup
from mtvcrafter.motion.bone_maps import save_bone_map as write_bone_map
from mtvcrafter.motion.bvh_motion import motion_from_bvh
from mtvcrafter.motion.structure_mapping import STRUCTURE_ID, NotHumanSkeleton
from mtvcrafter.motion.units import UNITS

AUTO = "AUTO"
#: The rig's own mapping (the list edited on the rig) rather than a preset.
CUSTOM = "CUSTOM"
#: The joints placed from the skeleton's hierarchy and rest pose, whatever the bones are named.
STRUCTURE = STRUCTURE_ID
UNIT_ITEMS = (
    (
        "AUTO",
        "Auto",
        "BVH: the bone map's unit; joint positions: metres (HumanML3D's) — unless the skeleton's size clearly "
        "says otherwise",
    ),
    ("m", "Metres", ""),
    ("cm", "Centimetres", ""),
    ("mm", "Millimetres", ""),
    ("inch", "Inches", ""),
    ("cmu", "CMU units", "The CMU mocap database's unit (1/0.45 inch)"),
)
#: The file's up axis, and the axis its character faces with it.
UP_ITEMS = (
    (
        "AUTO",
        "Auto",
        "The format's — BVH: the bone map's axes (Y up for the bundled ones, as most BVH files); joint "
        "positions, AIST++ and fitting outputs: Y up; AMASS: Z up — unless the body clearly stands along another "
        "axis (BVH: rest pose and clip both; joint positions and fitting outputs: clip and first frame)",
    ),
    (
        "Y",
        "Y up",
        "Y up, facing +Z: most BVH files, Blender's exporter from rigs imported from FBX or BVH, HumanML3D, MDM "
        "and AIST++",
    ),
    (
        "Z",
        "Z up",
        "Z up, facing −Y: AMASS, and Blender's exporter from rigs built in Blender (or with applied rotation)",
    ),
)


def user_bone_folder(create: bool = False) -> Path:
    """Where "Save as preset" writes: ``bones`` in the extension's user folder (kept across updates) when
    installed as an extension; registered from a checkout, the library's own user folder (the command
    line reads it too)."""
    package = __package__ or ""
    if package.startswith("bl_ext."):
        folder = Path(bpy.utils.extension_path_user(package, create=create)) / "bones"
    else:
        folder = bone_map_folders()[0]
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


_CACHE: dict = {"key": None, "maps": {}, "error": ""}


def bone_maps() -> dict[str, BoneMap]:
    """Every bone map by id (file stem): the user's folder first, then the library's folders (the first of a
    repeated id wins); reread only when a file changed. A broken file is left out, and
    :func:`bone_map_error` says why."""
    paths = [
        path
        for folder in bone_map_folders(extra=[user_bone_folder()])
        if folder.is_dir()
        for path in sorted(folder.glob("*.json"))
    ]
    key = tuple((str(path), path.stat().st_mtime_ns, path.stat().st_size) for path in paths)
    if key != _CACHE["key"]:
        skipped: dict[str, MotionError] = {}
        maps = load_bone_maps(bone_map_folders(extra=[user_bone_folder()]), skipped=skipped)
        _CACHE.update(key=key, maps=maps, error="; ".join(str(error) for error in skipped.values()))
    return _CACHE["maps"]


def bone_map_error() -> str:
    return _CACHE["error"]


def _number(ident: str) -> int:
    # dynamic enums store the item's number: a stable one per id keeps a choice when presets are added
    return 2 + zlib.crc32(ident.encode()) % 2_000_000_000


_ITEMS: dict[tuple, list] = {}


def _items(with_custom: bool) -> list[tuple[str, str, str, int]]:
    maps = bone_maps()
    key = (with_custom, _CACHE["key"])
    if key not in _ITEMS:  # one list per state of the files: Blender keeps pointers to its strings
        items = [(AUTO, "Auto-detect", "The bone map whose names match the bones best", 0)]
        if with_custom:
            items.append((CUSTOM, "Mapping below", "The mapping edited in the list (Fill from preset, then edit)", 1))
        items.append(
            (
                STRUCTURE,
                "By structure",
                "From the skeleton's hierarchy and rest pose, whatever its bones are named (the report says what was "
                "inferred, and how sure)",
                _number(STRUCTURE),
            )
        )
        for ident, bone_map in maps.items():
            if ident != STRUCTURE:  # a file of that name cannot take the place of the mapping by structure
                items.append((ident, bone_map.name, bone_map.description or str(bone_map.path), _number(ident)))
        _ITEMS[key] = items
    return _ITEMS[key]


def preset_items(self, context):
    """Enum items: auto-detect, by structure and every bone map."""
    return _items(False)


def source_items(self, context):
    """Enum items: auto-detect, the rig's own mapping, by structure and every bone map."""
    return _items(True)


def rig_skeleton(rig) -> tuple[list[str], list[int], np.ndarray, np.ndarray]:
    """An armature's bones as the mapping by structure reads them: names, parent indices (−1 for a root), and rest
    heads and tails ``(J, 3)`` in the armature's own space — a tail only where a chain ends (a head top, a toe's
    tip, as a BVH End Site), NaN elsewhere: there it marks no joint, only where the bone was drawn to (Blender 4.2's
    BVH importer draws a bone whose children start at its head as long as its parent)."""
    bones = rig.data.bones
    names = [bone.name for bone in bones]
    index = {name: j for j, name in enumerate(names)}
    parents = [index[bone.parent.name] if bone.parent is not None else -1 for bone in bones]
    heads, tails = np.empty(3 * len(bones)), np.empty(3 * len(bones))
    bones.foreach_get("head_local", heads)
    bones.foreach_get("tail_local", tails)
    tails = tails.reshape(-1, 3)
    tails[[j for j, bone in enumerate(bones) if bone.children]] = np.nan
    return names, parents, heads.reshape(-1, 3), tails


def _frames(rig, poses):
    """``(heads, tails)`` of evaluated frames as the mapping by structure takes them: heads, and index → tails of
    the bones that end a chain (as :func:`rig_skeleton`)."""
    if poses is None:
        return None
    heads, tails = poses
    return heads, {j: tails[:, j] for j, bone in enumerate(rig.data.bones) if not bone.children}


def by_structure(rig, poses=None, *, lead: str = "mapping by structure: ") -> Detection:
    """The rig mapped by its skeleton's structure (its bone names play no part): confidence and notes on what was
    inferred. ``poses``: ``(heads (K, J, 3), tails (K, J, 3))`` of evaluated frames, bones in ``rig.data.bones``
    order, read where the rest pose does not stand. A skeleton not read as a human's is one MotionError that says
    why (``lead`` first) and what to do instead."""
    names, parents, heads, tails = rig_skeleton(rig)
    try:
        return structure_detection(names, parents, heads, tails, poses=_frames(rig, poses), source=rig.name)
    except NotHumanSkeleton as error:
        raise MotionError(
            f"{lead}this skeleton of {len(names)} bones is not read as a human's: {error.reason}; choose a bone map, "
            "or fill the mapping list and edit it",
            source=rig.name,
            field="bone_map",
        ) from None


def choose_bone_map(choice: str, bone_names, rig=None, poses=None) -> tuple[Detection, bool]:
    """How the bone map of a menu choice fits these bones, and whether it was detected: ``AUTO`` (detected: from
    the names, and for a rig from its skeleton too — by structure where no bone map names all 24 joints),
    ``STRUCTURE`` (:func:`by_structure`), ``CUSTOM`` (the rig's list) or a bone map's id. ``poses``: as
    :func:`by_structure` takes them."""
    names = list(bone_names)
    if choice == AUTO:
        if rig is None:
            return detect_bone_map(names, bone_maps()), True
        try:
            return detect_rig_map(*rig_skeleton(rig), bone_maps(), poses=_frames(rig, poses), source=rig.name), True
        except MotionError:  # neither names nor structure: why not by structure, in the add-on's words
            by_structure(rig, poses, lead="no bone map names all 24 joints, and by its structure ")
            raise
    if choice == STRUCTURE:
        if rig is None:
            raise MotionError("a mapping by structure reads a rig's skeleton: choose a bone map or auto-detect")
        return by_structure(rig, poses), False
    if choice == CUSTOM:
        if rig is None:
            raise MotionError("the mapping below belongs to a rig: choose a bone map or auto-detect")
        return fit_bone_map(custom_bone_map(rig), names), False
    maps = bone_maps()
    if choice not in maps:
        raise MotionError(f"no bone map {choice!r}; known: {', '.join(sorted(maps))}")
    return fit_bone_map(maps[choice], names), False


def closest_bone_map(bone_names) -> Detection:
    """The bone map placing the most joints on these bones, even if not all: as :func:`detect_bone_map` ranks
    them (specific maps before fallback ones, then the one using more bones)."""
    fits = rank_bone_maps(list(bone_names), bone_maps())
    if not fits:
        raise MotionError("no bone maps found")
    return fits[0][1]


def describe(detection: Detection, detected: bool) -> str:
    """The bone map used (for a detection or a mapping by structure, how sure), what was inferred, and the bones
    no joint uses."""
    structure = detection.bone_map.id == STRUCTURE
    text = "by structure" if structure else detection.bone_map.name
    if detected or structure:
        text += f" ({'detected, ' if detected else ''}confidence {detection.confidence:.2f})"
    text += "".join(f"; {note}" for note in detection.notes)
    unmapped = detection.unmapped_bones
    if unmapped:
        more = f" and {len(unmapped) - 8} more" if len(unmapped) > 8 else ""
        text += f"; {len(unmapped)} bone(s) not used: {', '.join(unmapped[:8])}{more}"
    return text


def bvh_motion(path, choice: str = AUTO, unit: str = "AUTO", up: str = "AUTO") -> Motion:
    """A BVH file as a motion through a bone map of the menus (``AUTO``: detected, user maps included;
    ``STRUCTURE``: by the skeleton's structure), in a unit (``AUTO``: the bone map's, unless the skeleton's size
    says otherwise) and axes (``AUTO``: the bone map's; ``"Y"`` or ``"Z"`` up)."""
    maps = bone_maps()
    unit_arg = None if unit == "AUTO" else unit
    if choice not in (AUTO, STRUCTURE) and choice not in maps:
        raise MotionError(f"no bone map {choice!r}; known: {', '.join(sorted(maps))}", source=str(path))
    bone_map = choice if choice in (AUTO, STRUCTURE) else maps[choice]
    return motion_from_bvh(path, bone_map=bone_map, unit=unit_arg, maps=maps, up=None if up == "AUTO" else up)


# --- the mapping edited on a rig -------------------------------------------------------------------------------


def _point(bone: str, end: bool) -> str:
    return f"{bone}@end" if end else bone


def row_source(row):
    """A list row as a bone-map source: a point, a lerp when a second bone is set, None when empty."""
    if not row.bone:
        return None
    first = _point(row.bone, row.bone_end)
    if not row.blend_bone:
        return first
    return {"lerp": [first, _point(row.blend_bone, row.blend_end), round(float(row.blend), 6)]}


def rig_axes(rig) -> tuple[str, str, str]:
    """``up``, ``forward`` and ``unit`` of the armature's own space — what a BVH exported from it uses: its
    axis pointing up in the world, its axis pointing where Blender characters face (world −Y), and the
    unit its scale implies (``auto`` for an unusual scale)."""
    world = np.array(rig.matrix_world.to_3x3())
    scale = float(np.cbrt(abs(np.linalg.det(world)))) or 1.0
    axes = world / scale  # columns: where each local axis points in the world

    def towards(direction) -> str:
        dots = axes.T @ np.asarray(direction, dtype=np.float64)
        k = int(np.argmax(np.abs(dots)))
        return ("-" if dots[k] < 0 else "") + "XYZ"[k]

    unit = next((name for name, size in UNITS.items() if abs(scale - size) < 1e-3 * size), "auto")
    up, forward = towards((0.0, 0.0, 1.0)), towards((0.0, -1.0, 0.0))
    if up.lstrip("-") == forward.lstrip("-"):  # a rig lying on its front or back
        forward = "Z" if up.lstrip("-") != "Z" else "-Y"
    return up, forward, unit


def custom_bone_map(rig, name: str | None = None, description: str = "") -> BoneMap:
    """The rig's list as a bone map (bone names as they are on the rig; axes and unit of the rig)."""
    joints = {row.joint: row_source(row) for row in rig.mtvcrafter_retarget.joints}
    missing = [joint for joint in JOINT_NAMES if joints.get(joint) is None]
    if missing:
        raise MotionError(
            f"{rig.name}: the mapping has no bone for {', '.join(missing)}; pick one in the list or Fill from preset"
        )
    up, forward, unit = rig_axes(rig)
    return BoneMap(
        name=name or f"{rig.name} mapping",
        description=description,
        joints={joint: joints[joint] for joint in JOINT_NAMES},
        up=up,
        forward=forward,
        unit=unit,
    )


def resolve_bone_map(bone_map: BoneMap, bone_names) -> dict[str, tuple[str, bool, str, bool, float]]:
    """Each joint's source in this rig's bones: ``(bone, tail, blend bone, blend tail, factor)``, the blend
    bone empty for a plain point. As :func:`~mtvcrafter.motion.skeleton_mapping.map_points` does, the first
    alternative whose bones all exist wins, and names match without namespace and case."""
    lookup = rig_lookup(list(bone_names))
    resolved = {}
    for joint, alternatives in bone_map.alternatives.items():
        for alternative in alternatives:
            if all(ref.key in lookup for ref, _ in alternative):
                (a, _), *rest = alternative
                if rest:
                    ((b, t),) = rest
                    resolved[joint] = (lookup[a.key], a.end, lookup[b.key], b.end, float(t))
                else:
                    resolved[joint] = (lookup[a.key], a.end, "", False, 0.5)
                break
    return resolved


def fill_rows(rig, bone_map: BoneMap) -> list[str]:
    """Set the rig's list (24 rows, joint order) from a bone map; returns the joints left without a bone."""
    rows = rig.mtvcrafter_retarget.joints
    resolved = resolve_bone_map(bone_map, [b.name for b in rig.data.bones])
    rows.clear()
    missing = []
    for joint in JOINT_NAMES:
        row = rows.add()
        row.joint = joint
        if joint in resolved:
            row.bone, row.bone_end, row.blend_bone, row.blend_end, row.blend = resolved[joint]
        else:
            missing.append(joint)
    return missing


def preset_id(name: str) -> str:
    """The file name (without .json) for a preset name: lower-case letters, digits and underscores."""
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_") or "custom"


def save_bone_map(rig, name: str, description: str = "", folder: Path | None = None) -> Path:
    """Write the rig's list as a bone-map preset (the ``presets/bones`` format) in the user folder; it shows
    up in the menus at once. The id of a bone map from another folder is refused (the file would hide it)."""
    name = name.strip() or rig.name
    bone_map = custom_bone_map(rig, name, description or f"Saved in Blender from the rig {rig.name!r}")
    folder = folder if folder is not None else user_bone_folder(create=True)
    path = folder / f"{preset_id(name)}.json"
    if path.stem == STRUCTURE:
        raise MotionError(f"{STRUCTURE!r} is the menus' By structure; choose another name")
    existing = bone_maps().get(path.stem)
    if existing is not None and existing.path is not None and Path(existing.path).parent != folder:
        raise MotionError(f"{path.stem!r} is the id of the bone map {existing.path}; choose another name")
    write_bone_map(bone_map, path)
    bone_maps()
    return path
