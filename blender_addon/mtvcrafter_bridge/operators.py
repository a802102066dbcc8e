"""The operators: each reads its properties and calls one plain function (``import_export``, ``video_import``,
``clean``, ``animate``, ``retarget``); whatever that function raises becomes one ERROR report and CANCELLED, in
:func:`call`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from mtvcrafter.client import ServerError
from mtvcrafter.motion import MotionError

from . import animate, video_import
from .bone_maps import AUTO, UNIT_ITEMS, UP_ITEMS, preset_items, source_items
from .clean import clean_armature
from .import_export import export_motion, import_motion, smpl_armature
from .retarget import fill_bone_map, retarget_rig, save_as_preset, target_rig


def error_message(exc: Exception) -> str:
    """What the user reads: our errors' own sentence (it names the file, the field or the fix); anything
    unexpected with its type."""
    if isinstance(exc, MotionError | ServerError | OSError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def call(operator, function: Callable, *args, **kwargs) -> set[str]:
    """Run an operator's work: ``function(*args, report=operator.report, **kwargs)``. FINISHED, or after any
    error one ERROR report and CANCELLED (the functions leave nothing half-made)."""
    try:
        function(*args, report=operator.report, **kwargs)
    except Exception as exc:  # noqa: BLE001 - whatever failed: one report, never a traceback
        operator.report({"ERROR"}, error_message(exc))
        return {"CANCELLED"}
    return {"FINISHED"}


# --- File › Import/Export ----------------------------------------------------------------------------------------


class CleanOnImport:
    """The import operators' Clean Motion option (:func:`~import_export.import_motion`'s ``clean``)."""

    clean: BoolProperty(
        name="Clean Motion",
        description="Smooth the joints and plant the feet while they touch the ground before the armature is built "
        "(the report says how far the joints moved)",
        default=False,
    )
    clean_smooth: FloatProperty(
        name="Smoothing",
        description="Clean Motion's smoothing: 0 none, 1 strong",
        default=0.5,
        min=0.0,
        max=1.0,
        subtype="FACTOR",
    )
    clean_feet: BoolProperty(
        name="Plant Feet", description="Clean Motion keeps a foot in place while it touches the ground", default=True
    )

    def clean_options(self) -> dict:
        return {"clean": self.clean, "clean_smooth": self.clean_smooth, "clean_feet": self.clean_feet}


def draw_clean_options(operator, layout) -> None:
    column = layout.column(heading="Clean Motion")
    column.prop(operator, "clean", text="Clean")
    column.prop(operator, "clean_smooth")
    column.prop(operator, "clean_feet")


#: The import's options that apply to some formats only, by the selected file's suffix: the heading they are
#: drawn under and which they are (:func:`~import_export.read_motions` ignores them elsewhere).
FORMAT_OPTIONS = {
    ".bvh": ("BVH", ("bone_map", "unit", "up_axis")),
    ".npy": ("Joint Positions", ("unit", "up_axis")),
    ".pkl": ("SMPL Parameters", ("up_axis",)),
    ".npz": ("SMPL Parameters", ("up_axis",)),
}


class IMPORT_ANIM_OT_mtvcrafter_motion(bpy.types.Operator, ImportHelper, CleanOnImport):
    """Import a motion (official .pkl, AMASS .npz, our .npz, AIST++ or other SMPL parameters .pkl/.npz, joint
    positions .npy as HumanML3D, MDM's results.npy, or BVH mocap through a bone map) as an editable SMPL armature"""

    bl_idname = "import_anim.mtvcrafter_motion"
    bl_label = "Import MTVCrafter Motion"
    bl_options = {"REGISTER", "UNDO", "PRESET"}

    filename_ext = ".pkl"
    filter_glob: StringProperty(default="*.pkl;*.npz;*.npy;*.bvh", options={"HIDDEN"})
    clip_index: IntProperty(
        name="Clip",
        description="Clip of a file holding several (an official .pkl; MDM's results.npy: one per sample)",
        default=0,
        min=0,
    )
    bone_map: EnumProperty(
        name="Bone map", items=preset_items, description="BVH: which of the file's joints are the SMPL joints"
    )
    unit: EnumProperty(
        name="Unit",
        items=UNIT_ITEMS,
        default="AUTO",
        description="BVH and joint positions (.npy): the file's length unit",
    )
    up_axis: EnumProperty(
        name="Up",
        items=UP_ITEMS,
        default="AUTO",
        description="BVH, joint positions (.npy) and SMPL parameters (AIST++ .pkl, AMASS and fitting outputs): the "
        "file's up axis (an official .pkl and our .npz are seen through their camera: ignored)",
    )
    keep_scene_settings: BoolProperty(
        name="Keep Scene Settings",
        description="Leave the scene's frame rate, frame range, render size and camera as they are: the motion is "
        "resampled to the scene's frame rate and seen through the scene camera. Off: the scene takes the motion's "
        "(the report lists what changed)",
        default=False,
    )

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "clip_index")
        layout.prop(self, "keep_scene_settings")
        draw_clean_options(self, layout)
        # only the options that apply to the file selected (none selected: BVH's, which are all of them)
        heading, names = FORMAT_OPTIONS.get(Path(self.filepath).suffix.lower(), FORMAT_OPTIONS[".bvh"])
        column = layout.column(heading=heading)
        for name in names:
            column.prop(self, name)

    def execute(self, context):
        return call(
            self,
            import_motion,
            context,
            self.filepath,
            self.clip_index,
            bone_map=self.bone_map,
            unit=self.unit,
            up_axis=self.up_axis,
            keep_scene_settings=self.keep_scene_settings,
            **self.clean_options(),
        )


class IMPORT_ANIM_OT_mtvcrafter_video(bpy.types.Operator, ImportHelper, CleanOnImport):
    """Extract the performer's 3D motion from a video on the MTVCrafter server and import it as an editable SMPL
    armature, with the video behind it in the camera view"""

    bl_idname = "import_anim.mtvcrafter_video"
    bl_label = "Import Motion from Video"
    bl_options = {"REGISTER"}  # not UNDO: redoing it would upload the video again

    filename_ext = ".mp4"
    filter_glob: StringProperty(default=video_import.VIDEO_GLOB, options={"HIDDEN"})
    person: IntProperty(
        name="Person",
        description="Who to follow: 0 the largest person of the first frames, 1 the second largest, …",
        default=0,
        min=0,
        max=99,
    )
    smoothing: EnumProperty(
        name="Smoothing", items=video_import.SMOOTHING_ITEMS, default="savgol", description="The extraction's smoothing"
    )
    # a video's motion: the feet planted by default (a pose estimator's feet slide)
    clean: BoolProperty(
        name="Clean Motion",
        description="Plant the feet while they touch the ground (and smooth more, with Smoothing above 0) before "
        "the armature is built (the report says how far the joints moved)",
        default=True,
    )
    clean_smooth: FloatProperty(
        name="Smoothing",
        description="Clean Motion's smoothing on top of the extraction's: 0 none, 1 strong",
        default=0.0,
        min=0.0,
        max=1.0,
        subtype="FACTOR",
    )
    wait: BoolProperty(
        name="Wait",
        description="Block until the armature is built (scripts and tests)",
        default=False,
        options={"HIDDEN"},
    )

    @classmethod
    def poll(cls, context):
        return not video_import.job_running()

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "person")
        layout.prop(self, "smoothing")
        draw_clean_options(self, layout)

    def execute(self, context):
        return call(
            self,
            video_import.import_video,
            context,
            self.filepath,
            person=self.person,
            smoothing=self.smoothing,
            wait=self.wait,
            **self.clean_options(),
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
        return call(self, export_motion, context, self.filepath)


def menu_import(self, context):
    self.layout.operator(IMPORT_ANIM_OT_mtvcrafter_motion.bl_idname, text="MTVCrafter Motion (.pkl, .npz, .npy, .bvh)")
    self.layout.operator(IMPORT_ANIM_OT_mtvcrafter_video.bl_idname, text="MTVCrafter Motion from Video")


def menu_export(self, context):
    self.layout.operator(EXPORT_ANIM_OT_mtvcrafter_motion.bl_idname, text="MTVCrafter Motion (.npz, .pkl)")


# --- Animate, Cancel, Check Motion, the server's backends ---------------------------------------------------------


class MTVCRAFTER_OT_animate(bpy.types.Operator):
    """Send the active SMPL armature's motion and the reference image to the MTVCrafter server, and put the
    video in a sequencer at the motion's first frame (by default the add-on's own scene, MTVCrafter Videos)"""

    bl_idname = "mtvcrafter.animate"
    bl_label = "Animate"
    bl_options = {"REGISTER"}

    wait: BoolProperty(name="Wait", description="Block until the strip is placed (scripts and tests)", default=False)

    @classmethod
    def poll(cls, context):
        return smpl_armature(context) is not None and not animate.job_running()

    def execute(self, context):
        return call(self, animate.animate, context, wait=self.wait)


class MTVCRAFTER_OT_video_behind(bpy.types.Operator):
    """Show the armature's last video as its camera's background image, behind the armature, in time with the
    motion (in the camera view)"""

    bl_idname = "mtvcrafter.video_behind"
    bl_label = "Show Video Behind the Armature"
    bl_options = {"REGISTER", "UNDO"}

    opacity: FloatProperty(name="Opacity", default=0.5, min=0.0, max=1.0, subtype="FACTOR")
    show: BoolProperty(name="Show", description="Off: hide the video again", default=True, options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context):
        return smpl_armature(context) is not None

    def execute(self, context):
        return call(self, animate.video_behind, context, opacity=self.opacity, show=self.show)


class MTVCRAFTER_OT_size_from_camera(bpy.types.Operator):
    """Set Width and Height to the camera's aspect (the scene's render size), keeping the longer side"""

    bl_idname = "mtvcrafter.size_from_camera"
    bl_label = "Camera Aspect"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        return call(self, animate.size_from_camera, context)


class CancelJob:
    """A Cancel button: cancels the running job of :attr:`jobs`, the module that runs it (its ``job_running`` and
    ``cancel``)."""

    jobs = animate

    @classmethod
    def poll(cls, context):
        return cls.jobs.job_running()

    def execute(self, context):
        return call(self, self.jobs.cancel)


class MTVCRAFTER_OT_cancel(bpy.types.Operator, CancelJob):
    """Cancel the running MTVCrafter job on the server"""

    bl_idname = "mtvcrafter.cancel"
    bl_label = "Cancel"
    jobs = animate


class MTVCRAFTER_OT_cancel_video_import(bpy.types.Operator, CancelJob):
    """Cancel the running Motion from Video on the server (nothing is imported)"""

    bl_idname = "mtvcrafter.cancel_video_import"
    bl_label = "Cancel"
    jobs = video_import


class MTVCRAFTER_OT_clean_motion(bpy.types.Operator):
    """Smooth the active SMPL armature's motion and plant its feet while they touch the ground, on the frames it
    keys (the report says how far the joints moved)"""

    bl_idname = "mtvcrafter.clean_motion"
    bl_label = "Clean Motion"
    bl_options = {"REGISTER", "UNDO"}

    smooth: FloatProperty(
        name="Smoothing", description="0 none, 1 strong", default=0.5, min=0.0, max=1.0, subtype="FACTOR"
    )
    feet: BoolProperty(name="Plant Feet", description="Keep a foot in place while it touches the ground", default=True)

    @classmethod
    def poll(cls, context):
        return smpl_armature(context) is not None and context.mode in ("OBJECT", "POSE")

    def execute(self, context):
        return call(self, clean_armature, context, smooth=self.smooth, feet=self.feet)


class MTVCRAFTER_OT_check_motion(bpy.types.Operator):
    """Show what the video model will see: the motion tokenizer's vq loss and worst joints, and optionally its
    reconstruction as a ghost armature"""

    bl_idname = "mtvcrafter.check_motion"
    bl_label = "Check Motion"
    bl_options = {"UNDO"}  # not REGISTER: redoing it would ask the server again

    ghost: BoolProperty(name="Ghost armature", description="Add the reconstruction as a second armature", default=True)

    @classmethod
    def poll(cls, context):
        return smpl_armature(context) is not None

    def execute(self, context):
        return call(self, animate.check_motion, context, ghost=self.ghost)


class MTVCRAFTER_OT_refresh_backends(bpy.types.Operator):
    """Ask the MTVCrafter server which backends it has (the Backend menu lists them)"""

    bl_idname = "mtvcrafter.refresh_backends"
    bl_label = "Refresh Backends"

    def execute(self, context):
        return call(self, animate.refresh_backends, context)


# --- Retarget Rig ------------------------------------------------------------------------------------------------


class MTVCRAFTER_OT_retarget_rig(bpy.types.Operator):
    """Turn the active rig's animation into an editable SMPL armature (over the scene range, through the scene
    camera), using a bone map, or the skeleton's structure for a rig with any bone names"""

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
        if rig is not None:  # redo and Repeat Last: this rig (not the armature made from it), this bone map
            self.armature = rig.name
            if not self.properties.is_property_set("bone_map"):
                self.bone_map = rig.mtvcrafter_retarget.source or AUTO  # empty: its preset file is gone
        return call(self, retarget_rig, context, rig or self.armature, self.bone_map, self.name or None)


class MTVCRAFTER_OT_fill_bone_map(bpy.types.Operator):
    """Fill the rig's mapping from a bone map (then edit it)"""

    bl_idname = "mtvcrafter.fill_bone_map"
    bl_label = "Fill from Preset"
    bl_options = {"REGISTER", "UNDO"}

    armature: StringProperty(name="Armature", description="The rig (default: the active object)", options={"SKIP_SAVE"})
    bone_map: EnumProperty(name="Bone map", items=preset_items)

    def execute(self, context):
        return call(self, fill_bone_map, context, self.armature, self.bone_map)


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
        return call(self, save_as_preset, context, self.armature, self.preset_name, self.description)


CLASSES = (
    IMPORT_ANIM_OT_mtvcrafter_motion,
    IMPORT_ANIM_OT_mtvcrafter_video,
    EXPORT_ANIM_OT_mtvcrafter_motion,
    MTVCRAFTER_OT_animate,
    MTVCRAFTER_OT_cancel,
    MTVCRAFTER_OT_cancel_video_import,
    MTVCRAFTER_OT_clean_motion,
    MTVCRAFTER_OT_video_behind,
    MTVCRAFTER_OT_size_from_camera,
    MTVCRAFTER_OT_check_motion,
    MTVCRAFTER_OT_refresh_backends,
    MTVCRAFTER_OT_retarget_rig,
    MTVCRAFTER_OT_fill_bone_map,
    MTVCRAFTER_OT_save_bone_map,
)


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
