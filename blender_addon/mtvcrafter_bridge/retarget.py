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
from mtvcrafter.motion.bone_maps import BoneMap
from mtvcrafter.motion.camera import DEFAULT_FOV_DEG, default_camera, world_to_camera_mm
from mtvcrafter.motion.skeleton_mapping import map_points

from .armature import (
    SMPL_TAG,
    build_armature,
    camera_placement,
    ensure_camera,
    fov_on_larger_side,
    sample_evaluated,
    scene_fps,
    world_bone_points,
)
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
from .operators import datablocks, frame_range, remove_new

# --- evaluating the rig ----------------------------------------------------------------------------------------


def evaluate_rig(context, rig, frame_start: int, frame_end: int):
    """The rig's evaluated bone heads and tails in world space, metres, per frame (constraints, drivers and
    NLA included: one depsgraph evaluation per frame, bone positions read in bulk); the scene's frame is put
    back where it was.

    Returns ``(bone names, heads (F, J, 3), tails (F, J, 3))``. A rig the view layer does not evaluate (disabled
    in viewports, in an excluded or disabled collection, in another scene) would give one frozen pose: that is
    an error."""
    scene = context.scene
    if not rig.evaluated_get(context.evaluated_depsgraph_get()).is_evaluated:
        raise MotionError(
            f"{rig.name} is not evaluated in the view layer {context.view_layer.name!r} of the scene {scene.name!r} "
            "(disabled in viewports, in an excluded or disabled collection, or not in this scene): enable it there "
            "to retarget it"
        )
    names = [b.name for b in rig.pose.bones]

    def read(depsgraph) -> tuple[np.ndarray, np.ndarray]:
        evaluated = rig.evaluated_get(depsgraph)
        return world_bone_points(evaluated, "head"), world_bone_points(evaluated, "tail")

    samples = sample_evaluated(context, range(frame_start, frame_end + 1), read)
    shape = (len(samples), len(names), 3)
    return names, np.reshape([h for h, _ in samples], shape), np.reshape([t for _, t in samples], shape)


def rig_joints(names, heads, tails, bone_map: BoneMap) -> np.ndarray:
    """SMPL joints ``(F, 24, 3)`` from evaluated bone heads/tails (``"Bone@end"`` reads the tail)."""
    ends = {name: tails[:, j] for j, name in enumerate(names)}
    return map_points(names, (heads, ends), bone_map)


def retarget_rig(context, rig, choice: str = AUTO, name: str | None = None):
    """Build an SMPL armature performing ``rig``'s animation over the scene (or preview) range, seen through
    the scene camera (a default camera in front of the performer is added when the scene has none).

    The armature performs the rig's motion in the world (the joints go into the camera's view as it stands now
    and back out through the same view), so the camera, moving or not, sees it as it sees the rig.

    Returns ``(armature, camera, fit, detection, detected)`` (how the bone map fits the rig, and whether it
    was detected); the rig itself is not changed."""
    scene = context.scene
    camera = scene.camera
    if camera is not None and camera.type != "CAMERA":
        raise MotionError(
            f"the scene camera {camera.name!r} is not a camera: make a camera the scene camera, or clear it to have "
            "one added"
        )
    detection, detected = choose_bone_map(choice, [b.name for b in rig.data.bones], rig)
    bone_map = detection.bone_map
    start, end = frame_range(scene)
    names, heads, tails = evaluate_rig(context, rig, start, end)
    world = rig_joints(names, heads, tails, bone_map)
    fps = scene_fps(scene)
    label = name or f"{rig.name}SMPL"
    width, height = scene.render.resolution_x, scene.render.resolution_y
    if camera is None:  # level, facing the performer, the whole clip in view at the render's aspect
        placement = default_camera(world, (height, width), DEFAULT_FOV_DEG)
        seen = Motion(joints=world_to_camera_mm(world, placement).astype(np.float32), fov_deg=DEFAULT_FOV_DEG)
        camera = ensure_camera(scene, seen, placement, f"{label}Camera")
    motion = Motion(
        # the view build_armature places the armature back through
        joints=world_to_camera_mm(world, camera_placement(camera)).astype(np.float32),
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
    """The armature a retarget operator works on: the one named, else the active object. A linked rig may share
    its name with a local object: the active object, then the scene's objects, come first."""
    active = context.active_object
    if name:
        same = [o for o in (active, *context.scene.objects) if o is not None and o.name == name]
        obj = same[0] if same else bpy.data.objects.get(name)
    else:
        obj = active
    if obj is None or obj.type != "ARMATURE":
        return None
    return obj


def mapping_editable(rig) -> bool:
    """Whether the mapping list can be kept on the rig: not on a linked rig or a library override, whose
    properties Blender does not let the user edit nor saves (those are only read: a preset maps them)."""
    return rig.library is None and rig.override_library is None


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

    # one rig's settings: SKIP_SAVE, so the next call from a menu does not reuse another rig's
    armature: StringProperty(name="Armature", description="The rig (default: the active object)", options={"SKIP_SAVE"})
    bone_map: EnumProperty(
        name="Bone map",
        items=source_items,
        description="How the rig's bones map to SMPL joints (default: the rig's choice in the Retarget Rig panel)",
        options={"SKIP_SAVE"},
    )
    name: StringProperty(
        name="Name",
        description="Name of the new SMPL armature (default: the rig's + SMPL)",
        options={"SKIP_SAVE"},
    )

    @classmethod
    def poll(cls, context):
        return context.mode in ("OBJECT", "POSE") and any(o.type == "ARMATURE" for o in context.scene.objects)

    def execute(self, context):
        rig = target_rig(context, self.armature)
        if rig is None:
            self.report({"ERROR"}, f"{self.armature or 'the active object'} is not an armature")
            return {"CANCELLED"}
        self.armature = rig.name  # redo and Repeat Last retarget this rig, not the armature made from it
        if not self.properties.is_property_set("bone_map"):
            self.bone_map = rig.mtvcrafter_retarget.source or AUTO  # empty: its preset file is gone
        view_layer = context.view_layer
        active, mode = view_layer.objects.active, context.object.mode if context.object is not None else "OBJECT"
        if mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")
        before = datablocks()
        try:
            obj, camera, fit, detection, detected = retarget_rig(context, rig, self.bone_map, self.name or None)
        except Exception as exc:  # noqa: BLE001 - whatever failed: one report, and nothing half-made left
            remove_new(context, before)
            if active is not None and active.name in view_layer.objects:
                view_layer.objects.active = active
                if mode != "OBJECT" and active.mode == "OBJECT":
                    bpy.ops.object.mode_set(mode=mode)
            self.report({"ERROR"}, str(exc) if isinstance(exc, MotionError) else f"{type(exc).__name__}: {exc}")
            return {"CANCELLED"}
        for other in context.selected_objects:
            other.select_set(False)
        obj.select_set(True)
        view_layer.objects.active = obj
        frames = len(fit.root_translation)
        self.report(
            {"INFO"},
            f"{rig.name} → {obj.name}: {frames} frames through {camera.name}, fit error {fit.mean_error:.1f} mm "
            f"per joint; bone map {describe(detection, detected)}",
        )
        return {"FINISHED"}


class MTVCRAFTER_OT_fill_bone_map(bpy.types.Operator):
    """Fill the rig's mapping from a bone map (then edit it)"""

    bl_idname = "mtvcrafter.fill_bone_map"
    bl_label = "Fill from Preset"
    bl_options = {"REGISTER", "UNDO"}

    armature: StringProperty(name="Armature", description="The rig (default: the active object)", options={"SKIP_SAVE"})
    bone_map: EnumProperty(name="Bone map", items=preset_items)

    def execute(self, context):
        rig = target_rig(context, self.armature)
        if rig is None:
            self.report({"ERROR"}, "select an armature")
            return {"CANCELLED"}
        if not mapping_editable(rig):
            where = f"linked from {rig.library.filepath}" if rig.library else "a library override"
            self.report(
                {"ERROR"},
                f"{rig.name} is {where}: a mapping cannot be kept on it; retarget it with a bone map (auto-detect or "
                "a preset), or edit a mapping on a local rig with its bone names and save it as a preset",
            )
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

    # SKIP_SAVE: the dialog proposes this rig's name, never the last preset's (OK would overwrite that one)
    armature: StringProperty(name="Armature", description="The rig (default: the active object)", options={"SKIP_SAVE"})
    preset_name: StringProperty(
        name="Name", description="The preset's name (its file name is derived from it)", options={"SKIP_SAVE"}
    )
    description: StringProperty(name="Description", options={"SKIP_SAVE"})

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
        if mapping_editable(rig):
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
        start, end = frame_range(context.scene)
        through = f"Frames {start}–{end}, through {getattr(context.scene.camera, 'name', 'a new camera')}"
        if not mapping_editable(rig):  # only read: the bone map is chosen on the button
            kind = "linked" if rig.library else "a library override"
            layout.label(text=f"{rig.name} is {kind}: pick its bone map on the button", icon="LINKED")
            layout.label(text=through)
            layout.operator_menu_enum(
                MTVCRAFTER_OT_retarget_rig.bl_idname, "bone_map", text="Retarget Rig to SMPL", icon="ARMATURE_DATA"
            )
            return
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
        layout.label(text=through)
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
