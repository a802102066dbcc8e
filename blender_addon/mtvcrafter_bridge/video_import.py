"""Motion from Video: a driving video sent to the MTVCrafter server, which extracts the performer's 3D motion (NLF);
the motion imported as an editable SMPL armature, as File › Import › MTVCrafter Motion imports it (the scene takes
the video's frame rate, frame range and size, through a camera of the video's field of view), with the video behind
it as that camera's background movie clip, in time with the keys.

Plain functions a script or a test calls (:func:`import_video`, :func:`cancel`); the operator only reads its
properties. As Animate (:mod:`animate`): the network work is plain Python on a background thread, a timer moves its
state into the UI and builds the armature when the motion is there; ``wait=True`` runs the same job synchronously
(scripts, background Blender, where timers do not fire)."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import bpy

from mtvcrafter.client import ServerError
from mtvcrafter.motion import MotionError

from . import animate
from .animate import (
    RUNNING,
    JobState,
    Server,
    cancel_running_job,
    cancel_unfinished_job,
    redraw_panels,
    server_job,
    start_job,
    status_bar,
    usable_server,
)
from .armature import keyed_range
from .import_export import Report, import_motion, print_report
from .videos import VIDEO_PROP, VIDEO_START_PROP

#: The extraction's smoothing (the server's ``smooth``), as the operator's menu offers it.
SMOOTHING_ITEMS = [
    ("savgol", "Savitzky-Golay", "Over a third of a second, without lag (the server's default)"),
    ("one-euro", "One-Euro", "Run forwards and backwards, without lag: smooths slow movement more than fast"),
    ("none", "None", "The pose estimator's joints as they are"),
]
#: Video files the file browser shows.
VIDEO_GLOB = "*.mp4;*.mov;*.m4v;*.mkv;*.webm;*.avi;*.mpg;*.mpeg;*.wmv;*.ogv;*.gif"
#: The video behind the armature: half see-through, as Show Video Behind the Armature shows it by default.
VIDEO_OPACITY = 0.5
#: Extractions read and decode the whole video: the server may take a while to answer the upload.
UPLOAD_TIMEOUT_S = 120.0


@dataclass
class VideoImport(JobState):
    """A Motion from Video job, as the panel shows it (written by the worker thread, read by the UI); ``result`` is
    the motion file downloaded, ``armature`` the armature built from it."""

    video: str = ""
    clean: bool = False
    clean_smooth: float = 0.0
    clean_feet: bool = True


IMPORT = VideoImport()


def job_running() -> bool:
    return IMPORT.status in RUNNING


def extract_params(person: int = 0, smoothing: str = "savgol") -> dict:
    """The extraction's parameters (``POST /v1/extract``): the ``person``-th largest person of the first frames
    (0: the largest), followed through the video; the server's ``smoothing`` of the joints."""
    return {"person": int(person), "smooth": smoothing}


def video_file(filepath: str | Path) -> Path:
    path = Path(bpy.path.abspath(str(filepath)))
    if not path.is_file():
        raise MotionError(f"{path}: the video does not exist")
    return path


def import_video(
    context,
    filepath: str | Path,
    *,
    person: int = 0,
    smoothing: str = "savgol",
    clean: bool = True,
    clean_smooth: float = 0.0,
    clean_feet: bool = True,
    server: Server | str | None = None,
    wait: bool = False,
    report: Report = print_report,
) -> VideoImport:
    """Send the video ``filepath`` to the MTVCrafter server, which extracts the motion of its ``person``-th largest
    performer (0: the largest) smoothed by ``smoothing`` (``"savgol"``, ``"one-euro"``, ``"none"``); the motion file
    is kept in the output folder (beside the .blend, as Animate's videos) and imported as an editable SMPL armature
    keyed on every frame of the video, through a camera of the video's size and field of view, the scene at the
    video's frame rate; the video is that camera's background movie clip (in the camera view the armature moves
    over it), its first frame at the armature's first key. With ``clean``, Clean Motion runs on the motion first
    (``clean_smooth`` 0–1, ``clean_feet``: feet planted while they touch the ground).

    ``server``: a URL or :class:`~animate.Server` (default: the preferences'). ``wait=True`` blocks until the
    armature is built and raises :class:`~mtvcrafter.client.ServerError` when the server refuses the video or the
    extraction fails (the scene is left as it was); otherwise the job runs on a thread and a timer builds the
    armature. Returns the job's state."""
    global IMPORT
    server = usable_server(context, server)
    if job_running():
        raise ServerError("a video import is already running: wait for it or cancel it")
    video = video_file(filepath)
    folder = animate.output_folder(context)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{bpy.path.clean_name(video.stem)}_{time.strftime('%Y%m%d-%H%M%S')}.npz"
    params = extract_params(person, smoothing)
    IMPORT = state = VideoImport(
        url=server.url,
        token=server.token,
        status="submitting",
        video=str(video),
        clean=clean,
        clean_smooth=clean_smooth,
        clean_feet=clean_feet,
    )
    timeout = max(server.timeout, UPLOAD_TIMEOUT_S)
    args = (server.url, server.token, timeout, lambda client: client.extract(video, params), out, state)
    return start_job(
        context,
        state,
        server_job,
        args,
        wait=wait,
        finish=finish,
        poll=_poll_import,
        report=report,
        no_result="the extraction ended without a motion",
        sent=f"{video.name} sent to the MTVCrafter server",
    )


def finish(context, state: VideoImport, report: Report):
    """Import the extracted motion as an SMPL armature and put the video behind it in its camera's view, its first
    frame at the armature's first key (the reports are also kept for the panel). Returns the armature."""

    def keep(kind: set[str], text: str) -> None:
        state.summary.append(text)
        report(kind, text)

    armature = import_motion(
        context,
        state.result,
        clean=state.clean,
        clean_smooth=state.clean_smooth,
        clean_feet=state.clean_feet,
        offer_keep=False,  # the camera and the video behind it need the scene at the video's settings
        report=keep,
    )
    state.armature = armature.name
    first = keyed_range(armature)[0]
    armature[VIDEO_PROP], armature[VIDEO_START_PROP] = state.video, first
    keep({"INFO"}, f"the motion is in {state.result}")
    try:
        clip = animate.video_behind(context, armature, opacity=VIDEO_OPACITY, report=keep)
    except (MotionError, RuntimeError) as exc:  # Blender cannot read the file: the armature is still there
        keep({"WARNING"}, f"the video cannot be shown behind the armature: {exc}")
    else:
        frames = keyed_range(armature)[1] - first + 1
        width, height = context.scene.render.resolution_x, context.scene.render.resolution_y
        if width != height and tuple(clip.size) == (height, width):
            # a phone's video: its file asks for its frames to be turned, which Blender 4.2 does not do
            keep(
                {"WARNING"},
                f"Blender shows {clip.name} unturned ({clip.size[0]}×{clip.size[1]}) while its file asks for it to "
                f"be turned to {width}×{height}: turn the camera's background image with its Rotation (90°)",
            )
        if clip.frame_duration != frames:
            keep(
                {"WARNING"},
                f"{clip.name} has {clip.frame_duration} frames for the motion's {frames}: it is not in time with "
                "the armature throughout",
            )
    bpy.ops.ed.undo_push(message="Motion from Video")
    return armature


def _poll_import():
    """Timer: refresh the UI while the extraction runs; build the armature when the motion is there."""
    redraw_panels()
    state = IMPORT
    with state.lock:
        done = bool(state.result or state.error) or state.status == "cancelled"
        text = None if done else f"Motion from Video: {state.phase or state.status} {state.progress * 100:.0f}%"
    status_bar(text)
    if not done:
        return 0.5
    if state.result and not state.error:
        if bpy.data.filepath != state.blend_file:
            print(f"Motion from Video: another file was opened; the motion is in {state.result}")
            return None
        context = bpy.context
        windows = list(context.window_manager.windows)
        try:
            # a timer runs without a window: the first one gives the operators the import calls their context
            with context.temp_override(window=windows[0]) if windows else nullcontext():
                finish(bpy.context, state, print_report)  # printed; the panel shows them too
        except Exception as exc:  # shown in the panel rather than lost in the console
            state.error = f"could not build the armature: {exc}"
    return None


def cancel(*, report: Report = print_report) -> bool:
    """Cancel the running extraction on the server (one the server has not given an id yet is cancelled as soon as
    it has one); nothing is imported. Returns whether one was running."""
    return cancel_running_job(IMPORT, "no video import is running", report)


def cancel_unfinished() -> bool:
    """Cancel the extraction still running on the server, if any (Blender quitting, the add-on disabled). True if a
    cancel was sent."""
    return cancel_unfinished_job(IMPORT)


def stop() -> None:
    """The add-on is disabled: the running extraction is cancelled on the server, and its timer removed."""
    cancel_unfinished()
    if bpy.app.timers.is_registered(_poll_import):
        bpy.app.timers.unregister(_poll_import)
