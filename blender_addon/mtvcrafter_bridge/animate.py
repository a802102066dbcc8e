"""Animate: send the edited motion and a reference image to the server, follow the job, and place the video
in the sequencer. The network work is plain Python on a background thread; ``bpy.app.timers`` only moves
its state into the UI and places the strip. ``wait=True`` runs the same job synchronously (scripts, tests)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

from mtvcrafter.motion import MotionError

from .armature import scene_fps
from .operators import motion_from_scene, smpl_armature
from .presets import job_params, load_presets

BACKENDS = [
    ("DEFAULT", "Server default", "The best backend the server has"),
    ("preview", "Preview", "The skeleton over the reference image (fast, CPU)"),
    ("tiny", "Tiny", "The video pipeline with tiny random weights (a smoke test)"),
    ("mvdit-7b", "MV-DiT-7B", "MTVCrafter's 7B video model (GPU)"),
]


@dataclass
class JobState:
    """What the panel shows; written by the worker thread, read by the UI."""

    job_id: str = ""
    status: str = ""
    phase: str = ""
    progress: float = 0.0
    message: str = ""
    eta_s: float | None = None
    error: str = ""
    result: str = ""
    frame_start: int = 1
    frames: int = 0
    armature: str = ""
    cancel_requested: bool = False
    blend_file: str = ""
    url: str = ""
    token: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


STATE = JobState()


def preferences(context):
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon is not None else None


def server_settings(context) -> tuple[str, str | None, float]:
    prefs = preferences(context)
    if prefs is None:  # registered without the extension system (scripts, tests)
        return "http://127.0.0.1:8765", None, 30.0
    return prefs.server_url, prefs.token or None, prefs.timeout


def check_network(url: str) -> str | None:
    """A reason not to contact ``url``, or None: non-loopback servers need Blender's online access."""
    from mtvcrafter.client import is_loopback

    host = (urlparse(url).hostname or "").lower()
    if not is_loopback(host) and not bpy.app.online_access:
        return (
            f"{url} is not on this machine and Blender's online access is off "
            "(Preferences › System › Network › Allow Online Access)"
        )
    return None


def usable_server(operator, context) -> tuple[str, str | None, float] | None:
    """The server settings, or None after reporting why the server may not be contacted."""
    url, token, timeout = server_settings(context)
    reason = check_network(url)
    if reason:
        operator.report({"ERROR"}, reason)
        return None
    return url, token, timeout


def output_folder(context) -> Path:
    prefs = preferences(context)
    if prefs is not None and prefs.output_dir:
        return Path(bpy.path.abspath(prefs.output_dir))
    if bpy.data.filepath:
        return Path(bpy.data.filepath).parent / "mtvcrafter"
    return Path(tempfile.gettempdir()) / "mtvcrafter"


def reference_path(context, tmp: Path) -> Path:
    """The reference image as a file: the panel's path, or its image datablock saved as PNG."""
    scene = context.scene
    image = scene.mtvcrafter_reference_image
    if image is not None:
        source = Path(bpy.path.abspath(image.filepath)) if image.filepath else None
        if image.source == "FILE" and not image.packed_file and not image.is_dirty and source and source.is_file():
            return source  # the file it was loaded from, unchanged
        if not image.has_data:
            image.pixels[0]  # noqa: B018 - reading a pixel loads packed or generated images
        if not image.has_data or image.size[0] == 0:
            raise MotionError(f"the image {image.name!r} has no pixels; load or pack it first")
        path = tmp / "reference.png"
        image.save_render(str(path))
        return path
    if not scene.mtvcrafter_reference:
        raise MotionError("choose a reference image (a file or an image in the blend file)")
    path = Path(bpy.path.abspath(scene.mtvcrafter_reference))
    if not path.is_file():
        raise MotionError(f"{path}: the reference image does not exist")
    return path


def run_job(url, token, timeout, motion, reference, out, params, state: JobState, scratch: Path | None = None) -> None:
    """Submit, follow and download (plain Python: runs on a thread, or inline with wait=True)."""
    from mtvcrafter.client import Client, ServerError

    def on_event(event: dict) -> None:
        with state.lock:
            state.status, state.phase = event.get("status", ""), event.get("phase", "")
            state.progress, state.message = float(event.get("progress", 0.0)), event.get("message", "")
            state.eta_s = event.get("eta_s")

    try:
        with Client(url, token=token, timeout=timeout) as client:
            job = client.submit(motion, reference, params)
            with state.lock:
                state.job_id, state.status = job["id"], job["status"]
                cancel = state.cancel_requested
            if cancel:
                cancel_job(url, token, job["id"])
            final = job
            if job["status"] not in ("succeeded", "failed", "cancelled"):
                for event in client.events(job["id"]):
                    on_event(event)
                final = client.job(job["id"])
            if final["status"] != "succeeded":
                raise ServerError(f"the job {final['status']}: {final['message']}")
            client.download(job["id"], out)
        with state.lock:
            state.result, state.status = str(out), "succeeded"
    except ServerError as exc:
        with state.lock:
            state.error, state.status = str(exc), state.status if state.status == "cancelled" else "failed"
    except Exception as exc:  # anything else (a file, a proxy's answer, …): one message, never a stuck job
        with state.lock:
            state.error, state.status = f"{type(exc).__name__}: {exc}", "failed"
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def cancel_job(url: str, token: str | None, job_id: str, timeout: float = 10.0) -> None:
    """DELETE the job (on its own connection; a job that already ended is fine)."""
    from mtvcrafter.client import Client, ServerError

    try:
        with Client(url, token=token, timeout=timeout) as client:
            client.cancel(job_id)
    except ServerError:
        pass


def cancel_unfinished() -> bool:
    """Cancel the job still running on the server, if any (Blender quitting, the add-on disabled): nobody would
    be left to place its result, and the GPU would go on working for nothing. True if a cancel was sent."""
    with STATE.lock:
        running = STATE.status in ("submitting", "queued", "running") and not STATE.result
        STATE.cancel_requested = STATE.cancel_requested or running
        job_id, url, token = STATE.job_id, STATE.url, STATE.token
    if not (running and job_id):
        return False
    try:
        cancel_job(url, token, job_id, timeout=3.0)
    except Exception:  # quitting: a server that does not answer must not hold Blender up
        return False
    return True


def free_channel(strips, frame_start: int, frame_end: int) -> int:
    busy = {s.channel for s in strips if s.frame_final_start < frame_end and s.frame_final_end > frame_start}
    channel = 1
    while channel in busy:
        channel += 1
    return channel


def place_strip(context, state: JobState):
    """The result as a movie strip at the motion's first frame, on a free channel, at the scene's fps."""
    scene = target_scene(context)
    editor = scene.sequence_editor or scene.sequence_editor_create()
    strips = editor.strips if hasattr(editor, "strips") else editor.sequences
    end = state.frame_start + state.frames
    channel = free_channel(list(strips), state.frame_start, end)
    name = f"{state.armature} {state.job_id[:8]}"
    prefetch = getattr(editor, "use_prefetch", False)
    if prefetch:
        editor.use_prefetch = False  # no frame being prefetched while the strip is added
    try:
        strip = strips.new_movie(name=name, filepath=state.result, channel=channel, frame_start=state.frame_start)
    finally:
        if prefetch:
            editor.use_prefetch = True
    return strip


def target_scene(context):
    return getattr(context, "sequencer_scene", None) or context.scene


def strip_start(frame: int, scene, target) -> int:
    """The sequencer scene's frame at the moment of ``scene``'s ``frame`` (the same number at the same rate;
    frame 1 is time 0 in both)."""
    if target == scene or abs(scene_fps(target) - scene_fps(scene)) < 1e-6:
        return int(frame)
    return 1 + int(round((frame - 1) * scene_fps(target) / scene_fps(scene)))


class MTVCRAFTER_OT_animate(bpy.types.Operator):
    """Send the active SMPL armature's motion and the reference image to the MTVCrafter server, and put the
    video in the sequencer at the motion's first frame"""

    bl_idname = "mtvcrafter.animate"
    bl_label = "Animate"
    bl_options = {"REGISTER"}

    wait: BoolProperty(name="Wait", description="Block until the strip is placed (scripts and tests)", default=False)

    @classmethod
    def poll(cls, context):
        return smpl_armature(context) is not None and STATE.status not in ("queued", "running", "submitting")

    def execute(self, context):
        server = usable_server(self, context)
        if server is None:
            return {"CANCELLED"}
        url, token, timeout = server
        scene = context.scene
        armature = smpl_armature(context)
        target = target_scene(context)
        # A sequencer scene at another frame rate gets a video rendered at its rate (the motion sampled at
        # sub-frames), starting at the same moment: never a clip that plays too fast or too slow.
        other_rate = abs(scene_fps(target) - scene_fps(scene)) > 1e-6
        params = {"width": scene.mtvcrafter_width, "height": scene.mtvcrafter_height}
        if scene.mtvcrafter_backend != "DEFAULT":
            params["backend"] = scene.mtvcrafter_backend
        if scene.mtvcrafter_preset != "CUSTOM":
            preset = load_presets().get(scene.mtvcrafter_preset)
            if preset is None:
                self.report({"ERROR"}, f"render preset {scene.mtvcrafter_preset!r} is gone; choose another")
                return {"CANCELLED"}
            params = job_params(preset)
        tmp = Path(tempfile.mkdtemp(prefix="mtvcrafter-"))  # a copy of an image datablock; removed after the job
        try:
            motion = motion_from_scene(context, armature, fps=scene_fps(target) if other_rate else None)
            reference = reference_path(context, tmp)
            output_folder(context).mkdir(parents=True, exist_ok=True)
        except (MotionError, RuntimeError, OSError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        folder = output_folder(context)
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / f"{bpy.path.clean_name(armature.name)}_{time.strftime('%Y%m%d-%H%M%S')}.mp4"
        global STATE
        STATE = JobState(
            url=url,
            token=token,
            status="submitting",
            frame_start=strip_start(motion.frame_start, scene, target),
            frames=motion.num_frames,
            armature=armature.name,
        )
        args = (url, token, timeout, motion, reference, out, params, STATE, tmp)
        if self.wait:
            run_job(*args)
            return self._finish(context)
        STATE.blend_file = bpy.data.filepath
        threading.Thread(target=run_job, args=args, daemon=True).start()
        if not bpy.app.timers.is_registered(_poll_job):
            bpy.app.timers.register(_poll_job, first_interval=0.5, persistent=True)
        self.report({"INFO"}, "sent to the MTVCrafter server")
        return {"FINISHED"}

    def _finish(self, context):
        if STATE.error or not STATE.result:
            self.report({"ERROR"}, STATE.error or "the job ended without a result")
            return {"CANCELLED"}
        strip = place_strip(context, STATE)
        bpy.ops.ed.undo_push(message="MTVCrafter strip")
        self.report({"INFO"}, f"{strip.name}: {STATE.frames} frames from frame {STATE.frame_start}")
        return {"FINISHED"}


def _poll_job():
    """Timer: refresh the UI while the job runs; place the strip when it is done."""
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "SEQUENCE_EDITOR"):
                area.tag_redraw()
    with STATE.lock:
        done = bool(STATE.result or STATE.error) or STATE.status == "cancelled"
        eta = f", {STATE.eta_s:.0f} s left" if STATE.eta_s else ""
        text = None if done else f"MTVCrafter: {STATE.phase or STATE.status} {STATE.progress * 100:.0f}%{eta}"
    _status_bar(text)
    if not done:
        return 0.5
    if STATE.result and not STATE.error:
        if bpy.data.filepath != STATE.blend_file:
            print(f"MTVCrafter: another file was opened; the video is in {STATE.result}")
            return None
        try:
            place_strip(bpy.context, STATE)
            bpy.ops.ed.undo_push(message="MTVCrafter strip")
        except Exception as exc:  # shown in the panel rather than lost in the console
            STATE.error = f"could not add the strip: {exc}"
    return None


def _status_bar(text: str | None) -> None:
    """Progress in the status bar of every window (None clears it)."""
    for window in bpy.context.window_manager.windows:
        try:
            window.workspace.status_text_set(text)
        except (AttributeError, RuntimeError):  # no workspace in this window (background mode)
            pass


class MTVCRAFTER_OT_cancel(bpy.types.Operator):
    """Cancel the running MTVCrafter job on the server"""

    bl_idname = "mtvcrafter.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return STATE.status in ("submitting", "queued", "running")

    def execute(self, context):
        with STATE.lock:
            STATE.cancel_requested = True
            job_id = STATE.job_id
        if job_id:  # otherwise the worker cancels as soon as the server gives the job an id
            threading.Thread(target=cancel_job, args=(STATE.url, STATE.token, job_id), daemon=True).start()
        return {"FINISHED"}


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
            layout.prop(scene, "mtvcrafter_backend")
            row = layout.row(align=True)
            row.prop(scene, "mtvcrafter_width")
            row.prop(scene, "mtvcrafter_height")
        row = layout.row(align=True)
        row.operator(MTVCRAFTER_OT_animate.bl_idname, icon="RENDER_ANIMATION")
        row.operator(MTVCRAFTER_OT_cancel.bl_idname, icon="CANCEL")
        layout.operator("mtvcrafter.check_motion", icon="VIEWZOOM")
        if "mtvcrafter_check" in scene:
            layout.label(text=str(scene["mtvcrafter_check"])[:120])
        if STATE.status:
            eta = f", {STATE.eta_s:.0f} s left" if STATE.eta_s else ""
            layout.label(text=f"{STATE.status} · {STATE.phase} {STATE.progress * 100:.0f}%{eta}")
            if STATE.error:
                layout.label(text=STATE.error[:120], icon="ERROR")


class MTVCRAFTER_PT_sequencer_panel(MTVCRAFTER_PT_panel):
    bl_idname = "MTVCRAFTER_PT_sequencer_panel"
    bl_space_type = "SEQUENCE_EDITOR"


class MTVCrafterPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    server_url: StringProperty(name="Server", default="http://127.0.0.1:8765")
    token: StringProperty(name="Access token", subtype="PASSWORD", default="")
    timeout: bpy.props.FloatProperty(name="Timeout (s)", default=30.0, min=1.0, max=600.0)
    output_dir: StringProperty(
        name="Output folder",
        subtype="DIR_PATH",
        default="",
        description="Where videos are saved (default: a folder beside the .blend file)",
    )

    def draw(self, context):
        for name in ("server_url", "token", "timeout", "output_dir"):
            self.layout.prop(self, name)


def worst_joints(errors: list[float], count: int = 3) -> str:
    from mtvcrafter.motion import JOINT_NAMES

    order = sorted(range(len(errors)), key=lambda j: -errors[j])[:count]
    return ", ".join(f"{JOINT_NAMES[j]} {errors[j]:.0f} mm" for j in order)


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
        from mtvcrafter.client import Client, ServerError
        from mtvcrafter.motion import Motion

        from .armature import build_armature

        server = usable_server(self, context)
        if server is None:
            return {"CANCELLED"}
        url, token, timeout = server
        armature = smpl_armature(context)
        try:
            motion = motion_from_scene(context, armature)
            with Client(url, token=token, timeout=max(timeout, 120.0)) as client:
                result = client.tokenize(motion, reconstruction=self.ghost)
        except (MotionError, ServerError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        scene = context.scene
        scene["mtvcrafter_vq_loss"] = result["vq_loss"]
        scene["mtvcrafter_mpjpe_mm"] = result["mpjpe_mm"]
        summary = (
            f"vq loss {result['vq_loss']:.3f}, reconstruction error {result['mpjpe_mm']:.1f} mm; worst: "
            f"{worst_joints(result['joint_error_mm'])}"
        )
        scene["mtvcrafter_check"] = summary
        if self.ghost and result.get("reconstruction_mm"):
            import numpy as np

            mode = armature.mode
            if mode != "OBJECT":
                bpy.ops.object.mode_set(mode="OBJECT")
            for old in [o for o in bpy.data.objects if o.get("mtvcrafter_ghost_of") == armature.name]:
                data = old.data
                bpy.data.objects.remove(old)
                if data is not None and data.users == 0:
                    bpy.data.armatures.remove(data)

            joints = np.asarray(result["reconstruction_mm"], dtype=np.float32)
            ghost_motion = Motion(
                joints=joints,
                fps=motion.fps,
                image_size=motion.image_size,
                fov_deg=motion.fov_deg,
                frame_start=motion.frame_start,
                name=f"{armature.name} ghost",
            )
            ghost, _, _ = build_armature(
                context, ghost_motion, name=f"{armature.name}Ghost", frame_start=motion.frame_start, camera=scene.camera
            )
            ghost.show_in_front = True
            ghost.data.display_type = "STICK"
            ghost["mtvcrafter_ghost_of"] = armature.name
            context.view_layer.objects.active = armature
            if mode != "OBJECT":
                bpy.ops.object.mode_set(mode=mode)
        level = "WARNING" if result.get("warning") else "INFO"
        self.report({level}, summary)
        return {"FINISHED"}


CLASSES = (
    MTVCrafterPreferences,
    MTVCRAFTER_OT_animate,
    MTVCRAFTER_OT_cancel,
    MTVCRAFTER_OT_check_motion,
    MTVCRAFTER_PT_panel,
    MTVCRAFTER_PT_sequencer_panel,
)


def _preset_items(self, context):
    items = [("CUSTOM", "Custom", "Backend and size set below")]
    for key, preset in load_presets().items():
        items.append((key, str(preset.get("name", key)), str(preset.get("description", ""))))
    _preset_items.cache = items  # Blender needs the strings kept alive
    return items


SCENE_PROPS = {
    "mtvcrafter_preset": EnumProperty(name="Preset", items=_preset_items, description="Render preset"),
    "mtvcrafter_reference": StringProperty(name="Reference", subtype="FILE_PATH", description="Reference image file"),
    "mtvcrafter_reference_image": bpy.props.PointerProperty(name="Image", type=bpy.types.Image),
    "mtvcrafter_backend": EnumProperty(name="Backend", items=BACKENDS, default="DEFAULT"),
    "mtvcrafter_width": bpy.props.IntProperty(name="Width", default=512, min=16, max=2048, step=16),
    "mtvcrafter_height": bpy.props.IntProperty(name="Height", default=512, min=16, max=2048, step=16),
}


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    for name, prop in SCENE_PROPS.items():
        setattr(bpy.types.Scene, name, prop)
    atexit.register(cancel_unfinished)


def unregister():
    atexit.unregister(cancel_unfinished)
    cancel_unfinished()
    if bpy.app.timers.is_registered(_poll_job):
        bpy.app.timers.unregister(_poll_job)
    for name in SCENE_PROPS:
        delattr(bpy.types.Scene, name)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
