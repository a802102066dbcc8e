"""Retarget a rig: any armature's animation (constraints, drivers, NLA included) becomes an editable SMPL
armature, through a bone map — a preset from ``presets/bones`` or the user's, or a mapping edited on the rig.

The work is in plain functions (:func:`evaluate_rig`, :func:`retarget_rig`, :func:`resolve_bone_map`,
:func:`save_bone_map`); the operators and the panel only hold the UI.
"""

from __future__ import annotations

import bpy
import numpy as np
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from mtvcrafter.motion import Motion, MotionError
from mtvcrafter.motion.retarget import BoneMap, default_camera, map_points
from mtvcrafter.motion.rig import CameraPlacement, world_to_camera_mm

from .armature import DEFAULT_FOV_DEG, SMPL_TAG, build_armature, camera_placement, ensure_camera, fov_on_larger_side
from .bone_maps import (
    AUTO,
    CUSTOM,
    bone_map_error,
    choose_bone_map,
    closest_bone_map,
    describe,
    fill_rows,
    preset_items,
    save_bone_map,
    source_items,
)
from .operators import frame_range

# --- evaluating the rig ----------------------------------------------------------------------------------------


def evaluate_rig(context, rig, frame_start: int, frame_end: int, camera=None):
    """The rig's evaluated bone heads and tails in world space, metres, per frame (constraints, drivers and
    NLA included: one depsgraph evaluation per frame, bone positions read in bulk).

    Returns ``(bone names, heads (F, J, 3), tails (F, J, 3), camera placements per frame or None)``."""
    scene = context.scene
    names = [b.name for b in rig.pose.bones]
    count = len(names)
    frames = frame_end - frame_start + 1
    heads = np.empty((frames, count, 3))
    tails = np.empty((frames, count, 3))
    buffer = np.empty(count * 3, dtype=np.float32)
    placements = [] if camera is not None else None
    current = scene.frame_current
    try:
        for t, frame in enumerate(range(frame_start, frame_end + 1)):
            scene.frame_set(frame)
            depsgraph = context.evaluated_depsgraph_get()
            evaluated = rig.evaluated_get(depsgraph)
            world = np.array(evaluated.matrix_world)
            bones = evaluated.pose.bones
            for out, prop in ((heads, "head"), (tails, "tail")):
                bones.foreach_get(prop, buffer)
                out[t] = buffer.reshape(count, 3) @ world[:3, :3].T + world[:3, 3]
            if camera is not None:
                placements.append(camera_placement(camera.evaluated_get(depsgraph)))
    finally:
        scene.frame_set(current)
    return names, heads, tails, placements


def rig_joints(names, heads, tails, bone_map: BoneMap) -> np.ndarray:
    """SMPL joints ``(F, 24, 3)`` from evaluated bone heads/tails (``"Bone@end"`` reads the tail)."""
    ends = {name: tails[:, j] for j, name in enumerate(names)}
    return map_points(names, (heads, ends), bone_map)


def _through(world_m: np.ndarray, placements: list[CameraPlacement]) -> np.ndarray:
    return np.stack([world_to_camera_mm(world_m[t], p) for t, p in enumerate(placements)])


def retarget_rig(context, rig, choice: str = AUTO, name: str | None = None):
    """Build an SMPL armature performing ``rig``'s animation over the scene (or preview) range, seen through
    the scene camera (a default camera in front of the performer is added when the scene has none).

    Returns ``(armature, camera, fit, detection, detected)`` (how the bone map fits the rig, and whether it
    was detected); the rig itself is not changed."""
    scene = context.scene
    detection, detected = choose_bone_map(choice, [b.name for b in rig.data.bones], rig)
    bone_map = detection.bone_map
    start, end = frame_range(scene)
    camera = scene.camera
    names, heads, tails, placements = evaluate_rig(context, rig, start, end, camera)
    world = rig_joints(names, heads, tails, bone_map)
    fps = scene.render.fps / scene.render.fps_base
    label = name or f"{rig.name}SMPL"
    width, height = scene.render.resolution_x, scene.render.resolution_y
    if camera is None:  # level, facing the performer, the whole clip in view at the render's aspect
        placement = default_camera(world, (height, width), DEFAULT_FOV_DEG)
        seen = Motion(joints=world_to_camera_mm(world, placement).astype(np.float32), fov_deg=DEFAULT_FOV_DEG)
        camera = ensure_camera(scene, seen, placement, f"{label}Camera")
        placements = [placement] * len(world)
    motion = Motion(
        joints=_through(world, placements).astype(np.float32),
        fps=fps,
        image_size=(height, width),
        fov_deg=fov_on_larger_side(camera.data, width, height),
        frame_start=start,
        name=label,
        source=bpy.data.filepath or "blender",
        source_format="array",
    )
    armature, camera, fit = build_armature(context, motion, name=label, frame_start=start, camera=camera)
    armature["mtvcrafter_retargeted_from"] = rig.name
    return armature, camera, fit, detection, detected


def target_rig(context, name: str = ""):
    """The armature a retarget operator works on: the one named, else the active object."""
    obj = bpy.data.objects.get(name) if name else context.active_object
    if obj is None or obj.type != "ARMATURE":
        return None
    return obj


# --- UI: properties, list, operators, panel --------------------------------------------------------------------


class MTVCrafterJointBone(bpy.types.PropertyGroup):
    """One row of the mapping: an SMPL joint and the rig bone (head, or tail) it sits at, optionally blended
    towards a second bone."""

    joint: StringProperty(name="Joint")
    bone: StringProperty(name="Bone", description="The rig bone whose head (or tail) is this joint")
    bone_end: BoolProperty(name="Tail", description="Use the bone's tail instead of its head")
    blend_bone: StringProperty(name="Blend towards", description="Optional: a second bone to blend towards")
    blend_end: BoolProperty(name="Tail", description="Use the second bone's tail instead of its head")
    blend: FloatProperty(
        name="Factor", description="0: the first bone, 1: the second", default=0.5, soft_min=0.0, soft_max=1.0
    )


class MTVCrafterRigSettings(bpy.types.PropertyGroup):
    source: EnumProperty(name="Bone map", items=source_items, description="How the rig's bones map to SMPL joints")
    joints: CollectionProperty(type=MTVCrafterJointBone)
    active: IntProperty(name="Active joint", default=0)


class MTVCRAFTER_UL_joint_bones(bpy.types.UIList):
    """SMPL joint → rig bone."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        rig = data.id_data
        row = layout.row(align=True)
        row.label(text=item.joint)
        row.prop_search(item, "bone", rig.data, "bones", text="")
        row.prop(item, "bone_end", text="", icon="BONE_DATA", toggle=True)
        if item.blend_bone:
            row.label(text="", icon="ARROW_LEFTRIGHT")


class MTVCRAFTER_OT_retarget_rig(bpy.types.Operator):
    """Turn the active rig's animation into an editable SMPL armature (over the scene range, through the scene
    camera), using a bone map"""

    bl_idname = "mtvcrafter.retarget_rig"
    bl_label = "Retarget Rig to SMPL"
    bl_options = {"REGISTER", "UNDO"}

    armature: StringProperty(name="Armature", description="The rig (default: the active object)")
    bone_map: EnumProperty(name="Bone map", items=source_items)
    name: StringProperty(name="Name", description="Name of the new SMPL armature (default: the rig's + SMPL)")

    @classmethod
    def poll(cls, context):
        return context.mode in ("OBJECT", "POSE") and any(o.type == "ARMATURE" for o in context.scene.objects)

    def execute(self, context):
        rig = target_rig(context, self.armature)
        if rig is None:
            self.report({"ERROR"}, f"{self.armature or 'the active object'} is not an armature")
            return {"CANCELLED"}
        if context.object is not None and context.object.mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")
        before = _datablocks()
        try:
            obj, camera, fit, detection, detected = retarget_rig(context, rig, self.bone_map, self.name or None)
        except MotionError as exc:
            _remove_new(before)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        for other in context.selected_objects:
            other.select_set(False)
        obj.select_set(True)
        context.view_layer.objects.active = obj
        frames = len(fit.root_translation)
        self.report(
            {"INFO"},
            f"{rig.name} → {obj.name}: {frames} frames through {camera.name}, fit error {fit.mean_error:.1f} mm "
            f"per joint; bone map {describe(detection, detected)}",
        )
        return {"FINISHED"}


_KINDS = ("objects", "armatures", "cameras", "actions")


def _datablocks() -> dict[str, set]:
    return {kind: set(getattr(bpy.data, kind)) for kind in _KINDS}


def _remove_new(before: dict[str, set]) -> None:
    """Nothing half-made stays behind after an error."""
    for kind in _KINDS:
        collection = getattr(bpy.data, kind)
        for block in [b for b in collection if b not in before[kind]]:
            collection.remove(block)


class MTVCRAFTER_OT_fill_bone_map(bpy.types.Operator):
    """Fill the rig's mapping from a bone map (then edit it)"""

    bl_idname = "mtvcrafter.fill_bone_map"
    bl_label = "Fill from Preset"
    bl_options = {"REGISTER", "UNDO"}

    armature: StringProperty(name="Armature", description="The rig (default: the active object)")
    bone_map: EnumProperty(name="Bone map", items=preset_items)

    def execute(self, context):
        rig = target_rig(context, self.armature)
        if rig is None:
            self.report({"ERROR"}, "select an armature")
            return {"CANCELLED"}
        names = [b.name for b in rig.data.bones]
        try:
            if self.bone_map == AUTO:  # the closest map: a start even for a rig no bone map fits whole
                detection, detected = closest_bone_map(names), True
            else:
                detection, detected = choose_bone_map(self.bone_map, names)
        except MotionError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        missing = fill_rows(rig, detection.bone_map)
        rig.mtvcrafter_retarget.source = CUSTOM
        note = f"; pick a bone for {', '.join(missing)}" if missing else ""
        self.report(
            {"WARNING" if missing else "INFO"}, f"{rig.name}: mapping from {describe(detection, detected)}{note}"
        )
        return {"FINISHED"}


class MTVCRAFTER_OT_save_bone_map(bpy.types.Operator):
    """Save the rig's mapping as a bone-map preset (in your user folder); it then appears in the bone map menus"""

    bl_idname = "mtvcrafter.save_bone_map"
    bl_label = "Save as Preset"
    bl_options = {"REGISTER"}

    armature: StringProperty(name="Armature", description="The rig (default: the active object)")
    preset_name: StringProperty(name="Name", description="The preset's name (its file name is derived from it)")
    description: StringProperty(name="Description")

    def invoke(self, context, event):
        rig = target_rig(context, self.armature)
        if rig is not None and not self.preset_name:
            self.preset_name = rig.name
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context):
        rig = target_rig(context, self.armature)
        if rig is None:
            self.report({"ERROR"}, "select an armature")
            return {"CANCELLED"}
        try:
            path = save_bone_map(rig, self.preset_name or rig.name, self.description)
        except (MotionError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        rig.mtvcrafter_retarget.source = path.stem
        self.report({"INFO"}, f"saved {path}")
        return {"FINISHED"}


class MTVCRAFTER_PT_retarget(bpy.types.Panel):
    bl_label = "Retarget Rig"
    bl_idname = "MTVCRAFTER_PT_retarget"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "MTVCrafter"

    @classmethod
    def poll(cls, context):
        rig = context.active_object
        return rig is not None and rig.type == "ARMATURE" and not rig.get(SMPL_TAG)

    def draw(self, context):
        layout, rig = self.layout, context.active_object
        settings = rig.mtvcrafter_retarget
        layout.prop(settings, "source")
        if bone_map_error():
            layout.label(text=bone_map_error()[:120], icon="ERROR")
        if settings.source == CUSTOM:
            layout.template_list(
                "MTVCRAFTER_UL_joint_bones", "", settings, "joints", settings, "active", rows=8, maxrows=24
            )
            if 0 <= settings.active < len(settings.joints):
                row_item = settings.joints[settings.active]
                box = layout.box()
                box.label(text=f"{row_item.joint}: blend towards a second bone")
                row = box.row(align=True)
                row.prop_search(row_item, "blend_bone", rig.data, "bones", text="")
                row.prop(row_item, "blend_end", text="", icon="BONE_DATA", toggle=True)
                if row_item.blend_bone:
                    box.prop(row_item, "blend")
            row = layout.row(align=True)
            row.operator_menu_enum(MTVCRAFTER_OT_fill_bone_map.bl_idname, "bone_map", text="Fill from Preset")
            row.operator(MTVCRAFTER_OT_save_bone_map.bl_idname, icon="FILE_TICK")
        elif not settings.joints:
            layout.operator_menu_enum(MTVCRAFTER_OT_fill_bone_map.bl_idname, "bone_map", text="Edit a Mapping From")
        start, end = frame_range(context.scene)
        layout.label(text=f"Frames {start}–{end}, through {getattr(context.scene.camera, 'name', 'a new camera')}")
        op = layout.operator(MTVCRAFTER_OT_retarget_rig.bl_idname, icon="ARMATURE_DATA")
        op.armature = rig.name
        if settings.source:  # empty when its preset file is gone: the operator then auto-detects
            op.bone_map = settings.source


CLASSES = (
    MTVCrafterJointBone,
    MTVCrafterRigSettings,
    MTVCRAFTER_UL_joint_bones,
    MTVCRAFTER_OT_retarget_rig,
    MTVCRAFTER_OT_fill_bone_map,
    MTVCRAFTER_OT_save_bone_map,
    MTVCRAFTER_PT_retarget,
)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Object.mtvcrafter_retarget = PointerProperty(type=MTVCrafterRigSettings)


def unregister():
    del bpy.types.Object.mtvcrafter_retarget
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
