"""Importing a motion file as an editable SMPL armature, and exporting an armature's motion through the scene
camera: plain functions a script or a test calls (``from mtvcrafter_bridge.import_export import import_motion``);
the File › Import/Export operators only read their properties and call them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import bpy
import numpy as np

from mtvcrafter.motion import Motion, MotionError, load_motions, save_motion
from mtvcrafter.motion.clean import clean_motion
from mtvcrafter.motion.rig import carries_skeleton

from .armature import SMPL_TAG, build_armature, export_joints, fov_on_larger_side, retime_keys, scene_fps
from .bone_maps import AUTO, bvh_motion

#: Where a function's messages go: ``report({"INFO"}, "…")``, as ``Operator.report`` takes them.
Report = Callable[[set[str], str], None]


def print_report(kind: set[str], message: str) -> None:
    """The default ``report`` of the plain functions (scripts): one line, as Blender prints an operator's."""
    print(f"{next(iter(kind), 'INFO').title()}: {message}")


# --- the scene ---------------------------------------------------------------------------------------------------

_KINDS = ("objects", "armatures", "cameras", "actions")


def datablocks() -> dict[str, set]:
    """The objects, armatures, cameras and actions there are (to remove what a function that failed made)."""
    return {kind: set(getattr(bpy.data, kind)) for kind in _KINDS}


def remove_new(context, before: dict[str, set]) -> None:
    """Nothing half-made stays behind after an error (an armature left in edit mode leaves it first)."""
    obj = context.view_layer.objects.active
    if obj is not None and obj not in before["objects"] and obj.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    for kind in _KINDS:
        collection = getattr(bpy.data, kind)
        for block in [b for b in collection if b not in before[kind]]:
            collection.remove(block)


@contextmanager
def building(context) -> Iterator[None]:
    """Object mode while armatures are built; if anything inside fails, whatever it made (objects, armatures,
    cameras, actions) is removed and the active object is active again in the mode it was in, and the error
    goes on."""
    view_layer = context.view_layer
    active = view_layer.objects.active
    mode = context.object.mode if context.object is not None else "OBJECT"
    if mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    before = datablocks()
    try:
        yield
    except BaseException:
        remove_new(context, before)
        if active is not None and active.name in view_layer.objects:
            view_layer.objects.active = active
            if mode != "OBJECT" and active.mode == "OBJECT":
                bpy.ops.object.mode_set(mode=mode)
        raise


def make_active(context, obj) -> None:
    """``obj`` alone selected, and active."""
    for other in context.selected_objects:
        other.select_set(False)
    obj.select_set(True)
    context.view_layer.objects.active = obj


def smpl_armature(context):
    """The active object if it is one of our SMPL armatures (imported, retargeted), else None."""
    obj = context.active_object
    if obj is not None and obj.type == "ARMATURE" and obj.get(SMPL_TAG):
        return obj
    return None


def frame_range(scene) -> tuple[int, int]:
    """The preview range when it is on, else the scene's."""
    if scene.use_preview_range:
        return scene.frame_preview_start, scene.frame_preview_end
    return scene.frame_start, scene.frame_end


def motion_camera(scene, obj):
    """The camera an armature's motion is seen through: the one its import made (if it still exists),
    else the scene camera."""
    own = bpy.data.objects.get(obj.get("mtvcrafter_camera_name", ""))
    return own if own is not None and own.type == "CAMERA" else scene.camera


def motion_from_scene(context, obj, fps: float | None = None, frames: tuple[int, int] | None = None) -> Motion:
    """The SMPL armature over the scene's (or preview) frame range — or ``frames`` (first, last) —, through the
    scene camera; sampled at ``fps`` (sub-frames evaluated) instead of once per scene frame when given."""
    scene = context.scene
    camera = motion_camera(scene, obj)
    if camera is None:
        raise MotionError("the scene has no camera: the motion is exported through the scene camera")
    start, end = frames if frames is not None else frame_range(scene)
    joints = export_joints(context, obj, camera, start, end, fps=fps)
    fps = fps or scene_fps(scene)
    data = camera.data
    size = (scene.render.resolution_y, scene.render.resolution_x)
    fov = fov_on_larger_side(data, scene.render.resolution_x, scene.render.resolution_y)
    return Motion(
        joints=joints.astype(np.float32),
        fps=fps,
        image_size=size,
        fov_deg=fov,
        frame_start=start,
        name=obj.name,
        source=bpy.data.filepath or "blender",
        source_format="array",
    )


def armature_or_active(context, armature=None):
    """``armature``, else the active SMPL armature; an error that says what to select when there is none."""
    obj = armature if armature is not None else smpl_armature(context)
    if obj is None:
        raise MotionError("select an SMPL armature (File › Import › MTVCrafter Motion, or Retarget Rig to SMPL)")
    return obj


# --- import and export -------------------------------------------------------------------------------------------


def scene_settings(scene) -> dict[str, str]:
    """What an import may change of the scene, as the report shows it: frame rate, frame range, render size,
    camera."""
    render = scene.render
    size = f"{render.resolution_x}×{render.resolution_y}"
    if render.resolution_percentage != 100:
        size += f" at {render.resolution_percentage}%"
    return {
        "fps": f"{scene_fps(scene):g}",
        "frames": f"{scene.frame_start}–{scene.frame_end}",
        "render size": size,
        "camera": scene.camera.name if scene.camera is not None else "none",
    }


def changes(before: dict[str, str], after: dict[str, str]) -> dict[str, str]:
    """The settings that differ, each as ``"24 → 30"`` (old → new)."""
    return {name: f"{before[name]} → {after[name]}" for name in before if before[name] != after[name]}


def listed(settings: dict[str, str]) -> str:
    """``"fps 24 → 30, frames 1–250 → 1–127"``."""
    return ", ".join(f"{name} {value}" for name, value in settings.items())


def read_motions(filepath: str | Path, bone_map: str = AUTO, unit: str = "AUTO", up_axis: str = "AUTO") -> list[Motion]:
    """The clips of a motion file (an official pickle and MDM's ``results.npy`` hold several), read with the import's
    options where they apply and without them elsewhere: ``bone_map`` (``"AUTO"`` or a bone map's id) to BVH;
    ``unit`` (``"AUTO"``, ``"m"``, ``"cm"``, …) to BVH and joint positions (``.npy``: HumanML3D's, MDM's);
    ``up_axis`` (``"AUTO"``, ``"Y"``, ``"Z"``) to those and to SMPL parameters (AIST++ ``.pkl``, AMASS and fitting
    outputs) — an official pickle or our ``.npz`` is seen through its camera already and takes none."""
    suffix = Path(filepath).suffix.lower()
    if suffix == ".bvh":  # through a bone map, the user's included
        return [bvh_motion(filepath, bone_map, unit, up_axis)]
    up = None if up_axis == "AUTO" else up_axis
    if suffix == ".npy":
        return load_motions(filepath, unit=None if unit == "AUTO" else unit, up=up)
    try:
        return load_motions(filepath, up=up)
    except MotionError as error:
        if up is None or error.field != "up":
            raise
    return load_motions(filepath)  # the reader said Up does not apply to this file


def import_motion(
    context,
    filepath: str | Path,
    clip_index: int = 0,
    *,
    bone_map: str = AUTO,
    unit: str = "AUTO",
    up_axis: str = "AUTO",
    keep_scene_settings: bool = False,
    clean: bool = False,
    clean_smooth: float = 0.5,
    clean_feet: bool = True,
    offer_keep: bool = True,
    report: Report = print_report,
):
    """Import clip ``clip_index`` of a motion file (official .pkl, AMASS .npz, our .npz, AIST++ or other SMPL
    parameters .pkl/.npz, joint positions .npy, MDM's results.npy, or a BVH through a bone map) as an editable
    SMPL armature keyed on every frame, with the camera the motion was seen through; the
    scene takes the motion's frame range, frame rate and image size, and that camera (a second report line lists
    what changed, old → new). The first report line also gives the motion's quality (stature, upright, left/right,
    feet: :func:`~mtvcrafter.motion.quality.check_quality`), whose warnings (a wrong up axis, unit or bone map) come
    last, as warnings. Returns the armature, selected and active.

    ``keep_scene_settings``: the scene's frame rate, frame range, render size and camera stay as they are: the
    motion is resampled to the scene's frame rate (as Animate samples for a sequencer scene at another rate) and
    placed as seen through the scene camera (a camera is added, and becomes the scene camera, only when the scene
    has none).

    ``clean``: Clean Motion first (:func:`mtvcrafter.motion.clean.clean_motion`): the joints smoothed by
    ``clean_smooth`` (0: not at all … 1: strongly) and, with ``clean_feet``, the feet planted while they touch the
    ground; a report line says how far the joints moved. The rotations are then fitted to the cleaned joints.
    ``offer_keep``: the report of the scene settings changed names Keep Scene Settings (off where the scene must
    take the motion's, as for Motion from Video).

    ``bone_map``, ``unit`` and ``up_axis`` apply to the formats :func:`read_motions` says, and are ignored for the
    others. A file that cannot be read, or any failure while building, raises
    (:class:`~mtvcrafter.motion.MotionError` for the file's problems) and leaves nothing half-made."""
    filepath = str(filepath)
    motions = read_motions(filepath, bone_map, unit, up_axis)
    if clip_index >= len(motions):
        raise MotionError(f"clip {clip_index} requested, the file holds {len(motions)}", source=filepath)
    motion = motions[clip_index]
    notes = "".join(f"; {note}" for note in motion.notes)  # for BVH: the bone map, its confidence, unused bones
    cleaned = None
    if clean:  # reported on a line of its own
        motion, cleaned = clean_motion(motion, smooth=clean_smooth, feet=clean_feet)
    scene = context.scene
    before = scene_settings(scene)
    frames = motion.num_frames
    with building(context):
        if keep_scene_settings:
            obj, _camera, fit = build_armature(context, motion, camera=scene.camera, keep_scene=True)
            fps = scene_fps(scene)
            if abs(fps - motion.fps) > 1e-6:
                start = motion.frame_start if motion.frame_start is not None else 1
                frames = retime_keys(obj, start, motion.num_frames, motion.fps, fps)
        else:
            obj, _camera, fit = build_armature(context, motion)
    make_active(context, obj)
    how = (
        "rotations from the file"
        if carries_skeleton(motion)
        else f"rotations fitted, {fit.mean_error:.1f} mm mean error per joint"
    )
    if frames != motion.num_frames:
        how = f"resampled from {motion.num_frames} at {motion.fps:g} fps, {how}"
    quality = motion.quality()  # stature, upright, left/right, feet: its warnings come last, in the status bar
    report({"INFO"}, f"{obj.name}: {frames} frames, {how}; {quality.summary()}{notes}")
    if cleaned is not None:
        report({"INFO"}, f"Clean Motion: {cleaned.summary()}")
    changed = changes(before, scene_settings(scene))
    if keep_scene_settings:
        start = motion.frame_start if motion.frame_start is not None else 1
        end = start + frames - 1
        outside = start < scene.frame_start or end > scene.frame_end
        past = f"; the motion's frames {start}–{end} reach past the scene's range" if outside else ""
        kept = listed({name: value for name, value in before.items() if name not in changed})
        report({"INFO"}, f"scene settings kept: {kept}" + (f"; changed: {listed(changed)}" if changed else "") + past)
    elif changed:
        hint = " (Keep Scene Settings imports without changing them)" if offer_keep else ""
        report({"INFO"}, f"scene settings changed: {listed(changed)}{hint}")
    for warning in quality.warnings:
        report({"WARNING"}, warning)
    return obj


def export_motion(context, filepath: str | Path, armature=None, *, report: Report = print_report) -> Motion:
    """Write ``armature``'s motion (default: the active SMPL armature) over the scene's (or preview) frame range,
    seen through its camera, to ``filepath``: our ``.npz``, or the official ``.pkl`` layout (the suffix decides).
    Returns the motion written."""
    motion = motion_from_scene(context, armature_or_active(context, armature))
    save_motion(motion, filepath)
    report({"INFO"}, f"wrote {filepath}: {motion.num_frames} frames at {motion.fps:g} fps")
    return motion
