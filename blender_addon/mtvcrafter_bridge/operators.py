"""Import and export operators (File › Import/Export › MTVCrafter motion)."""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
from bpy.props import EnumProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from mtvcrafter.motion import Motion, MotionError, load_motions, save_motion
from mtvcrafter.motion.rig import carries_skeleton

from .armature import SMPL_TAG, build_armature, export_joints, fov_on_larger_side, scene_fps
from .bone_maps import UNIT_ITEMS, UP_ITEMS, bvh_motion, preset_items


class IMPORT_ANIM_OT_mtvcrafter_motion(bpy.types.Operator, ImportHelper):
    """Import a motion (official .pkl, AMASS .npz, our .npz, or BVH mocap through a bone map) as an editable SMPL
    armature"""

    bl_idname = "import_anim.mtvcrafter_motion"
    bl_label = "Import MTVCrafter Motion"
    bl_options = {"REGISTER", "UNDO", "PRESET"}

    filename_ext = ".pkl"
    filter_glob: StringProperty(default="*.pkl;*.npz;*.bvh", options={"HIDDEN"})
    clip_index: IntProperty(name="Clip", description="Clip of a multi-clip file", default=0, min=0)
    bone_map: EnumProperty(
        name="Bone map", items=preset_items, description="BVH: which of the file's joints are the SMPL joints"
    )
    unit: EnumProperty(name="Unit", items=UNIT_ITEMS, default="AUTO", description="BVH: the file's length unit")
    up_axis: EnumProperty(name="Up", items=UP_ITEMS, default="AUTO", description="BVH: the file's up axis")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "clip_index")
        column = layout.column(heading="BVH")
        column.prop(self, "bone_map")
        column.prop(self, "unit")
        column.prop(self, "up_axis")

    def execute(self, context):
        try:
            if Path(self.filepath).suffix.lower() == ".bvh":  # through a bone map, the user's included
                motions = [bvh_motion(self.filepath, self.bone_map, self.unit, self.up_axis)]
            else:
                motions = load_motions(self.filepath)
        except MotionError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if self.clip_index >= len(motions):
            self.report({"ERROR"}, f"{self.filepath}: clip {self.clip_index} requested, the file holds {len(motions)}")
            return {"CANCELLED"}
        motion = motions[self.clip_index]
        if context.object is not None and context.object.mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")
        before, active = datablocks(), context.view_layer.objects.active
        try:
            obj, camera, fit = build_armature(context, motion)
        except Exception as exc:  # noqa: BLE001 - whatever failed: one report, and nothing half-made left
            remove_new(context, before)
            context.view_layer.objects.active = active
            self.report({"ERROR"}, str(exc) if isinstance(exc, MotionError) else f"{type(exc).__name__}: {exc}")
            return {"CANCELLED"}
        for other in context.selected_objects:
            other.select_set(False)
        obj.select_set(True)
        context.view_layer.objects.active = obj
        how = (
            "rotations from the file"
            if carries_skeleton(motion)
            else f"rotations fitted, {fit.mean_error:.1f} mm mean error per joint"
        )
        notes = "".join(f"; {note}" for note in motion.notes)  # for BVH: the bone map, its confidence, unused bones
        self.report({"INFO"}, f"{obj.name}: {motion.num_frames} frames, {how}{notes}")
        return {"FINISHED"}


_KINDS = ("objects", "armatures", "cameras", "actions")


def datablocks() -> dict[str, set]:
    """The objects, armatures, cameras and actions there are (to remove what an operator that failed made)."""
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


def smpl_armature(context):
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


class EXPORT_ANIM_OT_mtvcrafter_motion(bpy.types.Operator, ExportHelper):
    """Export the active SMPL armature over the scene frame range through the scene camera"""

    bl_idname = "export_anim.mtvcrafter_motion"
    bl_label = "Export MTVCrafter Motion"
    bl_options = {"REGISTER"}

    filename_ext = ".npz"
    check_extension = None  # .npz (ours) or .pkl (the official layout): the name decides
    filter_glob: StringProperty(default="*.npz;*.pkl", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        return smpl_armature(context) is not None

    def execute(self, context):
        try:
            motion = motion_from_scene(context, smpl_armature(context))
            save_motion(motion, self.filepath)
        except (MotionError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"wrote {self.filepath}: {motion.num_frames} frames at {motion.fps:g} fps")
        return {"FINISHED"}


def menu_import(self, context):
    self.layout.operator(IMPORT_ANIM_OT_mtvcrafter_motion.bl_idname, text="MTVCrafter Motion (.pkl, .npz, .bvh)")


def menu_export(self, context):
    self.layout.operator(EXPORT_ANIM_OT_mtvcrafter_motion.bl_idname, text="MTVCrafter Motion (.npz, .pkl)")


CLASSES = (IMPORT_ANIM_OT_mtvcrafter_motion, EXPORT_ANIM_OT_mtvcrafter_motion)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.TOPBAR_MT_file_import.append(menu_import)
    bpy.types.TOPBAR_MT_file_export.append(menu_export)


def unregister():
    bpy.types.TOPBAR_MT_file_export.remove(menu_export)
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
