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
from mtvcrafter.motion.rig import carries_skeleton

from .armature import SMPL_TAG, build_armature, export_joints, fov_on_larger_side, scene_fps
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


def motion_from_scene(context, obj, fps: float | None = None) -> Motion:
    """The SMPL armature over the scene's (or preview) frame range, through the scene camera; sampled at
    ``fps`` (sub-frames evaluated) instead of once per scene frame when given."""
    scene = context.scene
    camera = motion_camera(scene, obj)
    if camera is None:
        raise MotionError("the scene has no camera: the motion is exported through the scene camera")
    start, end = frame_range(scene)
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


def import_motion(
    context,
    filepath: str | Path,
    clip_index: int = 0,
    *,
    bone_map: str = AUTO,
    unit: str = "AUTO",
    up_axis: str = "AUTO",
    report: Report = print_report,
):
    """Import clip ``clip_index`` of a motion file (official .pkl, AMASS .npz, our .npz, or a BVH through a bone
    map) as an editable SMPL armature keyed on every frame, with the camera the motion was seen through; the
    scene takes the motion's frame range, frame rate and image size. Returns the armature, selected and active.

    BVH only: ``bone_map`` (``"AUTO"`` or a bone map's id), ``unit`` (``"AUTO"``, ``"m"``, ``"cm"``, …) and
    ``up_axis`` (``"AUTO"``, ``"Y"``, ``"Z"``). A file that cannot be read, or any failure while building,
    raises (:class:`~mtvcrafter.motion.MotionError` for the file's problems) and leaves nothing half-made."""
    filepath = str(filepath)
    if Path(filepath).suffix.lower() == ".bvh":  # through a bone map, the user's included
        motions = [bvh_motion(filepath, bone_map, unit, up_axis)]
    else:
        motions = load_motions(filepath)
    if clip_index >= len(motions):
        raise MotionError(f"clip {clip_index} requested, the file holds {len(motions)}", source=filepath)
    motion = motions[clip_index]
    with building(context):
        obj, _camera, fit = build_armature(context, motion)
    make_active(context, obj)
    how = (
        "rotations from the file"
        if carries_skeleton(motion)
        else f"rotations fitted, {fit.mean_error:.1f} mm mean error per joint"
    )
    notes = "".join(f"; {note}" for note in motion.notes)  # for BVH: the bone map, its confidence, unused bones
    report({"INFO"}, f"{obj.name}: {motion.num_frames} frames, {how}{notes}")
    return obj


def export_motion(context, filepath: str | Path, armature=None, *, report: Report = print_report) -> Motion:
    """Write ``armature``'s motion (default: the active SMPL armature) over the scene's (or preview) frame range,
    seen through its camera, to ``filepath``: our ``.npz``, or the official ``.pkl`` layout (the suffix decides).
    Returns the motion written."""
    motion = motion_from_scene(context, armature_or_active(context, armature))
    save_motion(motion, filepath)
    report({"INFO"}, f"wrote {filepath}: {motion.num_frames} frames at {motion.fps:g} fps")
    return motion
