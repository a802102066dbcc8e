"""The UI: the MTVCrafter panels (3D viewport and sequencer), the Retarget Rig panel and its mapping list, the
add-on's preferences, and the properties they show (the scene's Animate settings, a rig's bone map)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from . import animate, video_import
from .armature import SMPL_TAG
from .bone_maps import CUSTOM, bone_map_error, source_items
from .import_export import frame_range, motion_camera, smpl_armature
from .operators import (
    MTVCRAFTER_OT_animate,
    MTVCRAFTER_OT_cancel,
    MTVCRAFTER_OT_cancel_video_import,
    MTVCRAFTER_OT_check_motion,
    MTVCRAFTER_OT_clean_motion,
    MTVCRAFTER_OT_fill_bone_map,
    MTVCRAFTER_OT_refresh_backends,
    MTVCRAFTER_OT_retarget_rig,
    MTVCRAFTER_OT_save_bone_map,
    MTVCRAFTER_OT_size_from_camera,
    MTVCRAFTER_OT_video_behind,
)
from .presets import load_presets
from .retarget import mapping_editable
from .videos import VIDEO_PROP, video_shown_behind

# --- Animate -----------------------------------------------------------------------------------------------------


class MTVCRAFTER_PT_panel(bpy.types.Panel):
    bl_label = "MTVCrafter"
    bl_idname = "MTVCRAFTER_PT_panel"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "MTVCrafter"

    def draw(self, context):
        scene, layout = context.scene, self.layout
        layout.prop(scene, "mtvcrafter_reference")
        layout.prop(scene, "mtvcrafter_reference_image")
        layout.prop(scene, "mtvcrafter_preset")
        if scene.mtvcrafter_preset == "CUSTOM":
            row = layout.row(align=True)
            row.prop(scene, "mtvcrafter_backend")
            row.operator(MTVCRAFTER_OT_refresh_backends.bl_idname, text="", icon="FILE_REFRESH")
            if not animate.BACKENDS.url:
                layout.label(text="Refresh to list the server's backends", icon="INFO")
            layout.prop(scene, "mtvcrafter_auto_size")
            row = layout.row(align=True)
            row.enabled = not scene.mtvcrafter_auto_size  # greyed: not sent, the backend picks the size
            row.prop(scene, "mtvcrafter_width")
            row.prop(scene, "mtvcrafter_height")
            row.operator(MTVCRAFTER_OT_size_from_camera.bl_idname, text="", icon="CAMERA_DATA")
        elif not animate.BACKENDS.url:  # the preset's backend: which fields it takes is known once listed
            row = layout.row(align=True)
            row.label(text="Refresh to list the server's backends", icon="INFO")
            row.operator(MTVCRAFTER_OT_refresh_backends.bl_idname, text="", icon="FILE_REFRESH")
        # the prompt fields, only for a backend that takes them (the 17B); greyed when empty: what they stand for
        for name, placeholder in animate.panel_text_fields(scene).items():
            layout.prop(scene, animate.TEXT_FIELDS[name], placeholder=placeholder)
        row = layout.row(align=True)
        row.operator(MTVCRAFTER_OT_animate.bl_idname, icon="RENDER_ANIMATION")
        row.operator(MTVCRAFTER_OT_cancel.bl_idname, icon="CANCEL")
        armature = smpl_armature(context)
        if armature is not None and armature.get(VIDEO_PROP):  # its last video, behind it in the camera view
            if video_shown_behind(motion_camera(scene, armature)):
                op = layout.operator(MTVCRAFTER_OT_video_behind.bl_idname, text="Hide Video Behind", icon="HIDE_ON")
                op.show = False
            else:
                layout.operator(MTVCRAFTER_OT_video_behind.bl_idname, icon="IMAGE_BACKGROUND")
        row = layout.row(align=True)
        row.operator(MTVCRAFTER_OT_check_motion.bl_idname, icon="VIEWZOOM")
        row.operator(MTVCRAFTER_OT_clean_motion.bl_idname, icon="MOD_SMOOTH")
        if "mtvcrafter_check" in scene:
            layout.label(text=str(scene["mtvcrafter_check"])[:120])
        draw_video_import(layout)
        state = animate.STATE
        if state.status:
            eta = f", {state.eta_s:.0f} s left" if state.eta_s else ""
            layout.label(text=f"{state.status} · {state.phase} {state.progress * 100:.0f}%{eta}")
            if state.error:
                layout.label(text=state.error[:120], icon="ERROR")
            column = layout.column(align=True)
            for line in state.summary:  # where the strip went, the size rendered and why (labels do not wrap)
                for piece in textwrap.wrap(line, 64):
                    column.label(text=piece)


def draw_video_import(layout) -> None:
    """Motion from Video's progress (with Cancel while it runs), its error, or what its import reported."""
    state = video_import.IMPORT
    if not state.status:
        return
    box = layout.box()
    row = box.row(align=True)
    name = Path(state.video).name
    if video_import.job_running():
        row.label(text=f"{name}: {state.phase or state.status} {state.progress * 100:.0f}%", icon="FILE_MOVIE")
        row.operator(MTVCRAFTER_OT_cancel_video_import.bl_idname, icon="CANCEL")
    else:
        row.label(text=f"{name}: {state.status}", icon="FILE_MOVIE")
    if state.error:
        box.label(text=state.error[:120], icon="ERROR")
    column = box.column(align=True)
    for line in state.summary:  # labels do not wrap
        for piece in textwrap.wrap(line, 64):
            column.label(text=piece)


class MTVCRAFTER_PT_sequencer_panel(MTVCRAFTER_PT_panel):
    bl_idname = "MTVCRAFTER_PT_sequencer_panel"
    bl_space_type = "SEQUENCE_EDITOR"


class MTVCrafterPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    server_url: StringProperty(name="Server", default=animate.DEFAULT_SERVER_URL)
    token: StringProperty(name="Access token", subtype="PASSWORD", default="")
    timeout: FloatProperty(name="Timeout (s)", default=30.0, min=1.0, max=600.0)
    output_dir: StringProperty(
        name="Output folder",
        subtype="DIR_PATH",
        default="",
        description="Where videos are saved (default: a mtvcrafter folder beside the .blend file; for a .blend "
        "never saved, a mtvcrafter folder in the system's temporary folder)",
    )
    video_scene: EnumProperty(
        name="Video strips",
        items=[
            (
                animate.OWN_SCENE,
                "Their own scene",
                "A sequencer scene of the add-on's own, MTVCrafter Videos, made with the first video: the scene you "
                "animate renders what it rendered before",
                0,
            ),
            (
                animate.SEQUENCER_SCENE,
                "Sequencer scene",
                "The workspace's sequencer scene (Blender 5), else the scene you animate — which then renders the "
                "video instead of the armature (Post Processing › Sequencer)",
                1,
            ),
        ],
        default=animate.OWN_SCENE,
        description="Where Animate puts the video's movie strip",
    )

    def draw(self, context):
        for name in ("server_url", "token", "timeout", "output_dir", "video_scene"):
            self.layout.prop(self, name)


def _preset_items(self, context):
    items = [("CUSTOM", "Custom", "Backend and size set below")]
    for key, preset in load_presets().items():
        items.append((key, str(preset.get("name", key)), str(preset.get("description", ""))))
    _preset_items.cache = items  # Blender needs the strings kept alive
    return items


SCENE_PROPS = {
    "mtvcrafter_preset": EnumProperty(name="Preset", items=_preset_items, description="Render preset"),
    "mtvcrafter_reference": StringProperty(name="Reference", subtype="FILE_PATH", description="Reference image file"),
    "mtvcrafter_reference_image": PointerProperty(name="Image", type=bpy.types.Image),
    # the server's backends, as it last listed them (Refresh, Animate); 0: Server default
    "mtvcrafter_backend": EnumProperty(name="Backend", items=animate.backend_items, default=0),
    "mtvcrafter_auto_size": BoolProperty(
        name="Backend's size",
        description="Let the backend pick the video size: 512×512 (the tiny backends 64×64), or for MV-DiT-17B the "
        "official 512-pixel size nearest the reference image's aspect (tiny-17b an eighth of it). Off: Width and "
        "Height below, which then start at the camera's aspect",
        default=True,
        update=animate.auto_size_changed,
    ),
    "mtvcrafter_width": IntProperty(name="Width", default=512, min=16, max=2048, step=16),
    "mtvcrafter_height": IntProperty(name="Height", default=512, min=16, max=2048, step=16),
    # shown and sent only for a backend that takes them (its settings in the server's list); empty: its default
    "mtvcrafter_prompt": StringProperty(
        name="Prompt",
        description="What the video shows (backends with a text prompt, MV-DiT-17B). Empty: the preset's prompt, "
        "else the backend's default (shown greyed in the field)",
        default="",
    ),
    "mtvcrafter_negative_prompt": StringProperty(
        name="Negative",
        description="What the video should avoid (used with text guidance). Empty: the preset's, else the "
        "backend's default (shown greyed in the field)",
        default="",
    ),
    "mtvcrafter_lora": StringProperty(
        name="LoRA",
        description="A LoRA merged into the model: the name of a .safetensors file in the server's LoRA folder "
        "(FusionX: 10 steps, no text guidance). Empty: the preset's, else none",
        default="",
    ),
}


# --- Retarget Rig ------------------------------------------------------------------------------------------------


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
    MTVCrafterPreferences,
    MTVCrafterJointBone,
    MTVCrafterRigSettings,
    MTVCRAFTER_UL_joint_bones,
    MTVCRAFTER_PT_panel,
    MTVCRAFTER_PT_sequencer_panel,
    MTVCRAFTER_PT_retarget,
)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    for name, prop in SCENE_PROPS.items():
        setattr(bpy.types.Scene, name, prop)
    bpy.types.Object.mtvcrafter_retarget = PointerProperty(type=MTVCrafterRigSettings)


def unregister():
    del bpy.types.Object.mtvcrafter_retarget
    for name in SCENE_PROPS:
        delattr(bpy.types.Scene, name)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
