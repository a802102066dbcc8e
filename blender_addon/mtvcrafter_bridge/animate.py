"""Animate: send the edited motion and a reference image to the server, follow the job, and place the video
in the sequencer (the add-on's own scene by default: :mod:`videos`); Show Video Behind (the video as the camera's
background); Check Motion (what the tokenizer makes of the motion); the server's list of backends.

Plain functions a script or a test calls (:func:`animate`, :func:`cancel`, :func:`check_motion`,
:func:`refresh_backends`); the operators only read their properties and call them. The network work is plain
Python on a background thread; ``bpy.app.timers`` only moves its state into the UI and places the strip.
``wait=True`` runs the same job synchronously (scripts, tests)."""

from __future__ import annotations

import math
import shutil
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlparse

import bpy
import numpy as np

from mtvcrafter.client import Client, ServerError, is_loopback
from mtvcrafter.motion import JOINT_NAMES, Motion, MotionError

from .armature import build_armature, scene_fps
from .import_export import Report, armature_or_active, frame_range, motion_camera, motion_from_scene, print_report
from .presets import job_params, load_presets
from .videos import (
    VIDEO_PROP,
    VIDEO_SCENE_TAG,
    VIDEO_START_PROP,
    add_movie_strip,
    hide_video_behind,
    make_video_scene,
    show_video_behind,
    video_scene,
)

#: The Backend menu's first item: no backend sent, the server picks its best.
DEFAULT_BACKEND = "DEFAULT"
#: Job statuses while the server works on it (Animate waits, Cancel applies).
RUNNING = ("submitting", "queued", "running")
#: ``mtvcrafter serve``'s address when started without options.
DEFAULT_SERVER_URL = "http://127.0.0.1:8765"
#: Asking for the list of backends is quick; Blender waits for it, so a server that is off must not hold it long.
LIST_TIMEOUT_S = 5.0
#: Where Animate puts the video (the preferences' *Video strips*): the add-on's own sequencer scene, or the
#: workspace's sequencer scene (Blender 5) or else the scene animated — which then renders the video.
OWN_SCENE, SEQUENCER_SCENE = "OWN", "SEQUENCER"
#: Sides a size derived from the camera's aspect is rounded to (what every backend takes).
SIZE_MULTIPLE = 16


class Server(NamedTuple):
    """Where the MTVCrafter server is, and how to talk to it."""

    url: str = DEFAULT_SERVER_URL
    token: str | None = None
    timeout: float = 30.0


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
    strip: str = ""
    frame_start: int = 1
    frames: int = 0
    armature: str = ""
    #: the scene the strip goes to ("": the add-on's own, made when the strip is placed), at this frame rate
    scene: str = ""
    fps: float = 0.0
    #: the scene animated, and the motion's first frame in it (where Show Video Behind starts the video)
    source_scene: str = ""
    motion_start: int = 1
    #: the video as the server rendered it, and why at that size (for the report)
    backend: str = ""
    width: int = 0
    height: int = 0
    size_reason: str = ""
    size_hint: str = ""
    camera_size: tuple[int, int] = (0, 0)
    #: what the placed strip's reports said (shown in the panel: a background job has no operator to report)
    summary: list[str] = field(default_factory=list)
    cancel_requested: bool = False
    blend_file: str = ""
    url: str = ""
    token: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


STATE = JobState()


def job_running() -> bool:
    return STATE.status in RUNNING


# --- the server --------------------------------------------------------------------------------------------------


def preferences(context):
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon is not None else None


def server_settings(context) -> Server:
    """The server of the add-on's preferences (the default one when registered without the extension system)."""
    prefs = preferences(context)
    if prefs is None:  # registered without the extension system (scripts, tests)
        return Server()
    return Server(prefs.server_url, prefs.token or None, prefs.timeout)


def check_network(url: str) -> str | None:
    """A reason not to contact ``url``, or None: non-loopback servers need Blender's online access."""
    host = (urlparse(url).hostname or "").lower()
    if not is_loopback(host) and not bpy.app.online_access:
        return (
            f"{url} is not on this machine and Blender's online access is off "
            "(Preferences › System › Network › Allow Online Access)"
        )
    return None


def usable_server(context, server: Server | str | None = None) -> Server:
    """``server`` (a URL or :class:`Server`; default: the preferences'), after checking it may be contacted."""
    if server is None:
        server = server_settings(context)
    server = Server(server) if isinstance(server, str) else Server(*server)
    reason = check_network(server.url)
    if reason:
        raise ServerError(reason)
    return server


# --- the server's backends: the panel's Backend menu -------------------------------------------------------------


@dataclass
class BackendList:
    """What ``GET /v1/backends`` of a server last answered (``url`` empty: not asked yet)."""

    url: str = ""
    backends: list[dict] = field(default_factory=list)


BACKENDS = BackendList()
_BACKEND_ITEMS: dict[tuple, list] = {}


def backend_number(name: str) -> int:
    # dynamic enums store the item's number: a stable one per name keeps a choice when the list changes
    return 1 + zlib.crc32(name.encode()) % 2_000_000_000


def backend_items(self, context) -> list[tuple[str, str, str, int]]:
    """Enum items of the Backend menu: Server default, then each backend the server last listed (the ones it
    cannot run now with the reason in their description)."""
    key = tuple(
        (b["name"], bool(b.get("available", True)), str(b.get("reason") or ""), str(b.get("description") or ""))
        for b in BACKENDS.backends
    )
    items = _BACKEND_ITEMS.get(key)
    if items is None:  # one list per answer, never freed: Blender keeps pointers to its strings
        default = next((b["name"] for b in BACKENDS.backends if b.get("default")), None)
        now = f" (now {default})" if default else ""
        items = [(DEFAULT_BACKEND, "Server default", f"The best backend the server has{now}", 0)]
        for name, available, reason, description in key:
            text = description if available else f"Unavailable: {reason or 'the server cannot run it now'}"
            items.append((name, name, text, backend_number(name)))
        _BACKEND_ITEMS[key] = items
    return items


def fetch_backends(server: Server) -> list[dict]:
    """``GET /v1/backends`` of ``server``: its backends (``name``, ``available``, ``reason``, ``description``,
    ``default``, ``settings``: the job parameters it reads, ``defaults``: its values of those left out),
    remembered for the Backend menu and the prompt fields."""
    with Client(server.url, token=server.token, timeout=min(server.timeout, LIST_TIMEOUT_S)) as client:
        backends = client.backends()
    named = isinstance(backends, list) and all(isinstance(b, dict) and isinstance(b.get("name"), str) for b in backends)
    if not named:
        raise ServerError(f"{server.url} answered /v1/backends with something that is not a list of backends")
    BACKENDS.url, BACKENDS.backends = server.url, backends
    return backends


def listed_backend(name: str | None) -> dict | None:
    """What the server last said of the backend ``name`` (None: of its default backend); None if not listed."""
    for backend in BACKENDS.backends:
        if (backend["name"] == name) if name else backend.get("default"):
            return backend
    return None


# --- the prompt fields: shown and sent for a backend that takes them ---------------------------------------------

#: The panel's text fields, by the job parameter each one fills (empty: the backend's own default).
TEXT_FIELDS = {
    "prompt": "mtvcrafter_prompt",
    "negative_prompt": "mtvcrafter_negative_prompt",
    "lora": "mtvcrafter_lora",
}


def panel_preset(scene) -> dict | None:
    """The panel's render preset (None: Custom, or a preset whose file is gone)."""
    if scene.mtvcrafter_preset == "CUSTOM":
        return None
    return load_presets().get(scene.mtvcrafter_preset)


def text_fields(backend: str | None) -> list[str]:
    """The job parameters of :data:`TEXT_FIELDS` that ``backend`` (None: the server's default) reads, as the
    server last listed it (its ``settings``); none while the server has not been asked."""
    listed = listed_backend(backend)
    taken = (listed.get("settings") or []) if listed else []
    return [name for name in TEXT_FIELDS if name in taken]


def panel_text_fields(scene) -> dict[str, str]:
    """The text fields the panel shows — those the backend of its preset or Backend menu takes (None: the server's
    default) — each with what it stands for when empty: the preset's value, else the backend's default as the
    server listed it, else nothing."""
    preset = panel_preset(scene)
    if preset is not None:
        backend = preset.get("backend")
    else:
        choice = scene.mtvcrafter_backend if scene.mtvcrafter_preset == "CUSTOM" else ""
        backend = None if choice in ("", DEFAULT_BACKEND) else choice
    defaults = (listed_backend(backend) or {}).get("defaults") or {}
    fields = {}
    for name in text_fields(backend):
        value = (preset or {}).get(name) or defaults.get(name)
        fields[name] = str(value) if value else ""
    return fields


def text_params(scene, backend: str | None) -> dict[str, str]:
    """The panel's non-empty text fields that ``backend`` (None: the server's default) takes, as job parameters."""
    values = {name: getattr(scene, prop).strip() for name, prop in TEXT_FIELDS.items()}
    return {name: values[name] for name in text_fields(backend) if values[name]}


def offered_backend(scene, before: str, report: Report) -> str:
    """The scene's Backend choice if the server (as last asked) offers it; a choice it no longer offers falls
    back to Server default, with a warning. ``before``: the choice as read before the list changed (to name it)."""
    choice = scene.mtvcrafter_backend  # empty when its stored number names none of the backends listed
    if choice:
        return choice
    scene.mtvcrafter_backend = DEFAULT_BACKEND
    which = f"the backend {before!r}" if before and before != DEFAULT_BACKEND else "the backend chosen before"
    report({"WARNING"}, f"the server at {BACKENDS.url} no longer offers {which}: Server default is used")
    return DEFAULT_BACKEND


def refresh_backends(context, server: Server | str | None = None, *, report: Report = print_report) -> list[dict]:
    """Ask the server which backends it has and offer them in the panel's Backend menu (after Server default);
    a choice the server no longer offers falls back to Server default, with a warning. Returns the backends."""
    server = usable_server(context, server)
    before = context.scene.mtvcrafter_backend
    backends = fetch_backends(server)
    offered_backend(context.scene, before, report)
    ready = [b["name"] for b in backends if b.get("available", True)]
    unavailable = [f"{b['name']} ({b.get('reason') or 'unavailable'})" for b in backends if b["name"] not in ready]
    text = f"{server.url}: {', '.join(ready) or 'no backend ready'}"
    report({"INFO"}, text + (f"; unavailable: {', '.join(unavailable)}" if unavailable else ""))
    return backends


# --- Animate -----------------------------------------------------------------------------------------------------


def output_folder(context) -> Path:
    prefs = preferences(context)
    if prefs is not None and prefs.output_dir:
        return Path(bpy.path.abspath(prefs.output_dir))
    if bpy.data.filepath:
        return Path(bpy.data.filepath).parent / "mtvcrafter"
    return Path(tempfile.gettempdir()) / "mtvcrafter"


def image_file(path: str | Path) -> Path:
    path = Path(bpy.path.abspath(str(path)))
    if not path.is_file():
        raise MotionError(f"{path}: the reference image does not exist")
    return path


def reference_path(context, tmp: Path) -> Path:
    """The panel's reference image as a file: its path, or its image datablock saved as PNG in ``tmp``."""
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
    return image_file(scene.mtvcrafter_reference)


def panel_size(scene) -> dict[str, int]:
    """The size Custom sends: none with *Backend's size* on — the backend picks it (512×512; mvdit-17b and
    tiny-17b: the official 512-pixel size nearest the reference image's aspect) —, else Width and Height."""
    if scene.mtvcrafter_auto_size:
        return {}
    return {"width": scene.mtvcrafter_width, "height": scene.mtvcrafter_height}


def panel_params(scene) -> dict:
    """The job parameters of the panel's render preset, or its size in Custom (:func:`panel_size`; its backend, and
    the prompt fields its backend takes, are added once the server said which backends it offers)."""
    if scene.mtvcrafter_preset != "CUSTOM":
        preset = panel_preset(scene)
        if preset is None:
            raise MotionError(f"render preset {scene.mtvcrafter_preset!r} is gone; choose another")
        return job_params(preset)
    return panel_size(scene)


def run_job(url, token, timeout, motion, reference, out, params, state: JobState, scratch: Path | None = None) -> None:
    """Submit, follow and download (plain Python: runs on a thread, or inline with wait=True)."""
    try:
        server_job(url, token, timeout, lambda client: client.submit(motion, reference, params), out, state)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def server_job(url, token, timeout, submit: Callable[[Client], dict], out: Path, state: JobState) -> None:
    """A job on the server from ``submit(client)`` (which returns the job), followed to its end — ``state`` takes
    its events; a cancel asked for before the server gave the job an id is sent as soon as it has one — and its
    result downloaded to ``out``. Never raises: a failure is one message in ``state.error``."""

    def on_event(event: dict) -> None:
        with state.lock:
            state.status, state.phase = event.get("status", ""), event.get("phase", "")
            state.progress, state.message = float(event.get("progress", 0.0)), event.get("message", "")
            state.eta_s = event.get("eta_s")

    try:
        with Client(url, token=token, timeout=timeout) as client:
            job = submit(client)
            with state.lock:
                state.job_id, state.status = job["id"], job["status"]
                cancel_now = state.cancel_requested
            if cancel_now:
                cancel_job(url, token, job["id"])
            final = job
            if job["status"] not in ("succeeded", "failed", "cancelled"):
                for event in client.events(job["id"]):
                    on_event(event)
                final = client.job(job["id"])
            if final["status"] != "succeeded":
                raise ServerError(f"the job {final['status']}: {final['message']}")
            with state.lock:
                state.backend = str(final.get("backend") or "")
                state.width, state.height = int(final.get("width") or 0), int(final.get("height") or 0)
            client.download(job["id"], out)
        with state.lock:
            state.result, state.status = str(out), "succeeded"
    except ServerError as exc:
        with state.lock:
            state.error, state.status = str(exc), state.status if state.status == "cancelled" else "failed"
    except Exception as exc:  # anything else (a file, a proxy's answer, …): one message, never a stuck job
        with state.lock:
            state.error, state.status = f"{type(exc).__name__}: {exc}", "failed"


def cancel_job(url: str, token: str | None, job_id: str, timeout: float = 10.0) -> None:
    """DELETE the job (on its own connection; a job that already ended is fine)."""
    try:
        with Client(url, token=token, timeout=timeout) as client:
            client.cancel(job_id)
    except ServerError:
        pass


def cancel_unfinished() -> bool:
    """Cancel the job still running on the server, if any (Blender quitting, the add-on disabled): nobody would
    be left to place its result, and the GPU would go on working for nothing. True if a cancel was sent."""
    return cancel_unfinished_job(STATE)


def cancel_unfinished_job(state: JobState) -> bool:
    """Cancel ``state``'s job if it still runs on the server (at once, on this thread). True if a cancel was sent."""
    with state.lock:
        running = state.status in RUNNING and not state.result
        state.cancel_requested = state.cancel_requested or running
        job_id, url, token = state.job_id, state.url, state.token
    if not (running and job_id):
        return False
    try:
        cancel_job(url, token, job_id, timeout=3.0)
    except Exception:  # quitting: a server that does not answer must not hold Blender up
        return False
    return True


def video_destination(context) -> str:
    """The preferences' *Video strips*: :data:`OWN_SCENE` (the default, also without preferences) or
    :data:`SEQUENCER_SCENE`."""
    prefs = preferences(context)
    return getattr(prefs, "video_scene", OWN_SCENE) if prefs is not None else OWN_SCENE


def target_scene(context):
    """The scene the video strip goes to: the add-on's own (None before its first video: it is made then), or with
    *Video strips* on Sequencer Scene, the workspace's sequencer scene (Blender 5), else the scene animated."""
    if video_destination(context) == SEQUENCER_SCENE:
        return getattr(context, "sequencer_scene", None) or context.scene
    return video_scene()


def strip_start(frame: int, fps: float, target_fps: float) -> int:
    """The frame, at ``target_fps``, of the moment of ``frame`` at ``fps`` (the same number at the same rate;
    frame 1 is time 0 in both)."""
    if abs(target_fps - fps) < 1e-6:
        return int(frame)
    return 1 + int(round((frame - 1) * target_fps / fps))


def place_strip(context, state: JobState):
    """The result as a movie strip at the motion's first frame, on a free channel, in the scene chosen when the job
    was sent (the add-on's own scene, made now on first use — also when the chosen one was deleted meanwhile);
    the armature remembers the video (Show Video Behind)."""
    scene = bpy.data.scenes.get(state.scene) if state.scene else None
    if scene is None:
        scene = video_scene() or make_video_scene(state.fps, (state.width, state.height))
    name = f"{state.armature} {state.job_id[:8]}"
    strip = add_movie_strip(scene, name, state.result, state.frame_start, state.frames)
    state.strip, state.scene = strip.name, scene.name
    armature = bpy.data.objects.get(state.armature)
    if armature is not None:
        armature[VIDEO_PROP], armature[VIDEO_START_PROP] = state.result, int(state.motion_start)
    return strip


def aspect_text(width: int, height: int) -> str:
    """A size's aspect: ``"16:9"``, ``"1:1"`` where small numbers say it, else ``"0.56:1"``."""
    divisor = math.gcd(int(width), int(height)) or 1
    if max(width, height) // divisor <= 32:
        return f"{width // divisor}:{height // divisor}"
    return f"{width / height:.2f}:1"


def same_aspect(size: tuple[int, int], camera: tuple[int, int], slack: int = SIZE_MULTIPLE) -> bool:
    """Whether ``size`` has ``camera``'s aspect, as near as sides in multiples of ``slack`` can be: the camera's
    aspect at ``size``'s height gives its width within ``slack`` pixels, and the other way round."""
    if not (all(size) and all(camera)):
        return False
    cross = abs(size[0] * camera[1] - size[1] * camera[0])
    return cross <= slack * min(camera)


def size_reason(scene, params: dict, from_panel: bool) -> tuple[str, str]:
    """Why the video has the size it has — the size sent, and by what; or none sent, and the backend's rule — and
    what to do when its aspect is not the camera's."""
    if params.get("width") and params.get("height"):
        if not from_panel:
            return "the size given", ""
        if scene.mtvcrafter_preset != "CUSTOM":
            return (
                f"the render preset {scene.mtvcrafter_preset!r}'s size",
                "choose Custom for a Width × Height of the camera's aspect",
            )
        return (
            "the panel's Width × Height (Backend's size off)",
            "set Width × Height to the camera's aspect (the camera button beside them)",
        )
    return (
        "no size sent (Backend's size on), the backend's own: 512×512 (tiny: 64×64); MV-DiT-17B the official "
        "512-pixel size nearest the reference image's aspect (tiny-17b an eighth of it)",
        "turn Backend's size off for a Width × Height of the camera's aspect" if from_panel else "",
    )


def results_reports(state: JobState, target) -> list[tuple[set[str], str]]:
    """What Animate reports once the strip is placed: where the strip and the video are; which size was rendered,
    why, and how it compares with the camera's (a warning when the aspects differ)."""
    where = f"{state.strip}: {state.frames} frames from frame {state.frame_start} in the scene '{target.name}'"
    source = bpy.data.scenes.get(state.source_scene)
    if target.get(VIDEO_SCENE_TAG):
        where += f" (the add-on's own; '{state.source_scene}' still renders the armature)"
    elif source is not None and target == source and source.render.use_sequencer:
        where += f" (rendering '{source.name}' now renders the video: Post Processing › Sequencer)"
    folder = Path(state.result).parent
    temporary = not bpy.data.filepath and folder.is_relative_to(Path(tempfile.gettempdir()))
    where += f"; the video is in {folder}" + (
        " (a temporary folder: save the .blend to keep videos beside it)" if temporary else ""
    )
    reports = [({"INFO"}, where)]
    width, height = state.width, state.height
    if width and height:
        camera = state.camera_size
        text = f"rendered {width}×{height} by {state.backend or 'the server'}: {state.size_reason}"
        kind = {"INFO"}
        if all(camera):
            text += f"; the camera's render size is {camera[0]}×{camera[1]}"
            if not same_aspect((width, height), camera):
                kind = {"WARNING"}
                text += f", another aspect ({aspect_text(width, height)} against {aspect_text(*camera)})"
                text += f": {state.size_hint}" if state.size_hint else ""
        reports.append((kind, text))
    return reports


def animate(
    context,
    *,
    armature=None,
    reference: str | Path | None = None,
    server: Server | str | None = None,
    params: dict | None = None,
    wait: bool = False,
    report: Report = print_report,
) -> JobState:
    """Send ``armature``'s motion (default: the active SMPL armature, over the scene's or preview range, through
    its camera) and a reference image to the MTVCrafter server, and put the video in a sequencer at the motion's
    first frame, on a free channel: the add-on's own scene (*MTVCrafter Videos*, made on first use; the scene
    animated renders what it did), or with the preferences' *Video strips* on Sequencer Scene, the workspace's
    sequencer scene (Blender 5), else the scene animated. A target scene at another frame rate gets a video rendered
    at its rate. The armature remembers its video (:func:`video_behind`).

    ``reference``: an image file (default: the panel's image or file). ``server``: a URL or :class:`Server`
    (default: the preferences'). ``params``: the job's parameters (``backend``, ``width``, ``height``, ``steps``,
    ``guidance``, ``seed``, ``prompt``, …; default: the panel's render preset, or its backend and size (none with
    *Backend's size* on: the backend's own) — a panel backend the server no longer offers falls back to Server
    default, with a warning —, with the panel's prompt, negative prompt and LoRA where the backend takes them and
    they are not empty; a preset's own are used where the panel's are empty).

    ``wait=True`` blocks until the strip is placed and raises :class:`~mtvcrafter.client.ServerError` when the
    job fails; otherwise the job runs on a thread and a timer places the strip. The reports say where the strip
    and the video are, and which size was rendered and why (a warning when its aspect is not the camera's).
    Returns the job's state."""
    global STATE
    server = usable_server(context, server)
    if job_running():
        raise ServerError("a job is already running: wait for it or cancel it")
    scene = context.scene
    armature = armature_or_active(context, armature)
    target = target_scene(context)  # None: the add-on's own scene, made at the scene's rate with the first strip
    target_fps = scene_fps(target) if target is not None else scene_fps(scene)
    # A sequencer scene at another frame rate gets a video rendered at its rate (the motion sampled at
    # sub-frames), starting at the same moment: never a clip that plays too fast or too slow.
    other_rate = abs(target_fps - scene_fps(scene)) > 1e-6
    from_panel = params is None
    menu_backend = from_panel and scene.mtvcrafter_preset == "CUSTOM"
    before = scene.mtvcrafter_backend if menu_backend else ""
    params = dict(panel_params(scene) if from_panel else params)
    tmp = Path(tempfile.mkdtemp(prefix="mtvcrafter-"))  # a copy of an image datablock; removed after the job
    try:
        motion = motion_from_scene(context, armature, fps=target_fps if other_rate else None)
        reference = image_file(reference) if reference is not None else reference_path(context, tmp)
        folder = output_folder(context)
        folder.mkdir(parents=True, exist_ok=True)
        fetch_backends(server)
        if menu_backend and (choice := offered_backend(scene, before, report)) != DEFAULT_BACKEND:
            params["backend"] = choice
        if from_panel:  # the prompt fields the backend takes (as the server just listed it), where not empty
            params.update(text_params(scene, params.get("backend")))
    except RuntimeError as exc:  # bpy: an image that cannot be saved
        shutil.rmtree(tmp, ignore_errors=True)
        raise MotionError(str(exc)) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    out = folder / f"{bpy.path.clean_name(armature.name)}_{time.strftime('%Y%m%d-%H%M%S')}.mp4"
    height, width = motion.image_size or (0, 0)
    reason, hint = size_reason(scene, params, from_panel)
    STATE = state = JobState(
        url=server.url,
        token=server.token,
        status="submitting",
        frame_start=strip_start(motion.frame_start, scene_fps(scene), target_fps),
        frames=motion.num_frames,
        armature=armature.name,
        scene=target.name if target is not None else "",
        fps=target_fps,
        source_scene=scene.name,
        motion_start=int(motion.frame_start),
        size_reason=reason,
        size_hint=hint,
        camera_size=(int(width), int(height)),
    )
    args = (server.url, server.token, server.timeout, motion, reference, out, params, state, tmp)
    return start_job(
        context,
        state,
        run_job,
        args,
        wait=wait,
        finish=finish,
        poll=_poll_job,
        report=report,
        no_result="the job ended without a result",
        sent="sent to the MTVCrafter server",
    )


def start_job(
    context,
    state: JobState,
    work: Callable[..., None],
    args: tuple,
    *,
    wait: bool,
    finish: Callable[[object, JobState, Report], object],
    poll: Callable[[], float | None],
    report: Report,
    no_result: str,
    sent: str,
) -> JobState:
    """Run a job's network side ``work(*args)`` (plain Python that fills ``state`` and never raises). With ``wait``:
    here, then ``finish(context, state, report)``; :class:`~mtvcrafter.client.ServerError` with ``state.error`` (or
    ``no_result``) when it ended without a result. Otherwise on a thread, the timer ``poll`` following it, and
    ``sent`` reported. Returns ``state``."""
    if wait:
        work(*args)
        if state.error or not state.result:
            raise ServerError(state.error or no_result)
        finish(context, state, report)
        return state
    state.blend_file = bpy.data.filepath
    threading.Thread(target=work, args=args, daemon=True).start()
    if not bpy.app.timers.is_registered(poll):
        bpy.app.timers.register(poll, first_interval=0.5, persistent=True)
    report({"INFO"}, sent)
    return state


def finish(context, state: JobState, report: Report):
    """Place the finished job's strip, and report where it went and the video's size (also kept for the panel).
    Returns the strip."""
    strip = place_strip(context, state)
    bpy.ops.ed.undo_push(message="MTVCrafter strip")
    for kind, text in results_reports(state, bpy.data.scenes[state.scene]):
        state.summary.append(text)
        report(kind, text)
    return strip


def _poll_job():
    """Timer: refresh the UI while the job runs; place the strip when it is done."""
    redraw_panels()
    with STATE.lock:
        done = bool(STATE.result or STATE.error) or STATE.status == "cancelled"
        eta = f", {STATE.eta_s:.0f} s left" if STATE.eta_s else ""
        text = None if done else f"MTVCrafter: {STATE.phase or STATE.status} {STATE.progress * 100:.0f}%{eta}"
    status_bar(text)
    if not done:
        return 0.5
    if STATE.result and not STATE.error:
        if bpy.data.filepath != STATE.blend_file:
            print(f"MTVCrafter: another file was opened; the video is in {STATE.result}")
            return None
        try:
            finish(bpy.context, STATE, print_report)  # printed; the panel shows them too
        except Exception as exc:  # shown in the panel rather than lost in the console
            STATE.error = f"could not add the strip: {exc}"
    return None


def redraw_panels() -> None:
    """The panels show the job's progress: redraw the areas they are in."""
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "SEQUENCE_EDITOR"):
                area.tag_redraw()


def status_bar(text: str | None) -> None:
    """Progress in the status bar of every window (None clears it)."""
    for window in bpy.context.window_manager.windows:
        try:
            window.workspace.status_text_set(text)
        except (AttributeError, RuntimeError):  # no workspace in this window (background mode)
            pass


def stop() -> None:
    """The add-on is disabled: the running job is cancelled on the server, and its timer removed."""
    cancel_unfinished()
    if bpy.app.timers.is_registered(_poll_job):
        bpy.app.timers.unregister(_poll_job)


def cancel(*, report: Report = print_report) -> bool:
    """Cancel the running job on the server (a job the server has not given an id yet is cancelled as soon as it
    has one). Returns whether a job was running."""
    return cancel_running_job(STATE, "no MTVCrafter job is running", report)


def cancel_running_job(state: JobState, none_running: str, report: Report) -> bool:
    """Cancel ``state``'s job on the server (on a thread; a job the server has not given an id yet is cancelled by
    its worker as soon as it has one), or report ``none_running``. Returns whether a job was running."""
    with state.lock:
        if state.status not in RUNNING:
            report({"WARNING"}, none_running)
            return False
        state.cancel_requested = True
        job_id, url, token = state.job_id, state.url, state.token
    if job_id:  # otherwise the worker cancels as soon as the server gives the job an id
        threading.Thread(target=cancel_job, args=(url, token, job_id), daemon=True).start()
    return True


# --- the video behind the armature, and a size of the camera's aspect ---------------------------------------------


def video_behind(
    context,
    armature=None,
    *,
    video: str | Path | None = None,
    opacity: float = 0.5,
    show: bool = True,
    report: Report = print_report,
):
    """Show ``armature``'s video (default: the active SMPL armature's last one from Animate, or ``video``) as the
    background image of its camera (the camera its motion is seen through), at ``opacity``, its first frame at the
    motion's first frame: in the camera view the armature moves over the video. ``show=False`` hides it again.
    Returns the movie clip (None when hidden)."""
    armature = armature_or_active(context, armature)
    scene = context.scene
    camera = motion_camera(scene, armature)
    if camera is None:
        raise MotionError("the scene has no camera to show the video behind")
    if not show:
        hidden = hide_video_behind(camera)
        report({"INFO"}, f"{camera.name}: video hidden" if hidden else f"{camera.name} shows no video of ours")
        return None
    source = str(video) if video is not None else str(armature.get(VIDEO_PROP, ""))
    if not source:
        raise MotionError(f"{armature.name} has no video yet: Animate it first")
    path = Path(bpy.path.abspath(source))
    if not path.is_file():
        raise MotionError(f"{path}: the video is not there any more")
    first = frame_range(scene)[0]
    start = int(armature.get(VIDEO_START_PROP, first)) if video is None else first
    clip = show_video_behind(camera, path, start, opacity)
    text = f"{path.name} behind {armature.name} in {camera.name}'s view, from frame {start}, opacity {opacity:.0%}"
    kind = {"INFO"}
    if abs(clip.fps - scene_fps(scene)) > 1e-3 and clip.fps > 0:
        kind = {"WARNING"}
        text += f"; the video runs at {clip.fps:g} fps, the scene at {scene_fps(scene):g}: it drifts out of time"
    report(kind, text)
    return clip


def camera_size(context) -> tuple[int, int]:
    """The render size the motion is seen at (the scene's resolution: the camera's frame)."""
    render = context.scene.render
    return render.resolution_x, render.resolution_y


def size_for_aspect(width: int, height: int, longest: int = 512, multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    """A ``width`` : ``height`` size whose longer side is ``longest``, both sides multiples of ``multiple``."""
    scale = longest / max(width, height)
    return (
        max(multiple, round(width * scale / multiple) * multiple),
        max(multiple, round(height * scale / multiple) * multiple),
    )


def size_from_camera(context, *, report: Report = print_report) -> tuple[int, int]:
    """Set the panel's Width and Height to the camera's aspect (the scene's render size), keeping the longer of the
    two as it is. Returns the size."""
    scene = context.scene
    size = size_for_aspect(*camera_size(context), longest=max(scene.mtvcrafter_width, scene.mtvcrafter_height))
    scene.mtvcrafter_width, scene.mtvcrafter_height = size
    report({"INFO"}, f"Width × Height {size[0]}×{size[1]}: the camera's {aspect_text(*camera_size(context))}")
    return size


def auto_size_changed(scene, context) -> None:
    """*Backend's size* turned off: Width and Height start at the camera's aspect (not a square that would squash
    a portrait camera's view)."""
    if not scene.mtvcrafter_auto_size:
        width, height = scene.render.resolution_x, scene.render.resolution_y
        longest = max(scene.mtvcrafter_width, scene.mtvcrafter_height)
        scene.mtvcrafter_width, scene.mtvcrafter_height = size_for_aspect(width, height, longest)


# --- Check Motion ------------------------------------------------------------------------------------------------


def worst_joints(errors: list[float], count: int = 3) -> str:
    order = sorted(range(len(errors)), key=lambda j: -errors[j])[:count]
    return ", ".join(f"{JOINT_NAMES[j]} {errors[j]:.0f} mm" for j in order)


def add_ghost(context, armature, motion: Motion, reconstruction_mm) -> object:
    """The tokenizer's reconstruction ``(T, 24, 3)`` mm as a second armature drawn in front, through the scene
    camera (replacing an earlier one of ``armature``); ``armature`` stays active, in its mode."""
    scene = context.scene
    mode = armature.mode
    if mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    for old in [o for o in bpy.data.objects if o.get("mtvcrafter_ghost_of") == armature.name]:
        data = old.data
        bpy.data.objects.remove(old)
        if data is not None and data.users == 0:
            bpy.data.armatures.remove(data)
    ghost_motion = Motion(
        joints=np.asarray(reconstruction_mm, dtype=np.float32),
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
    return ghost


def check_motion(
    context,
    armature=None,
    *,
    server: Server | str | None = None,
    ghost: bool = True,
    report: Report = print_report,
) -> dict:
    """What the video model will see of ``armature``'s motion (default: the active SMPL armature): the server's
    motion tokenizer's vq loss, reconstruction error and worst joints, reported (a warning when the server warns)
    and kept on the scene (``mtvcrafter_vq_loss``, ``mtvcrafter_mpjpe_mm``, ``mtvcrafter_check``); with ``ghost``,
    the reconstruction as a second armature. Returns the server's answer."""
    server = usable_server(context, server)
    armature = armature_or_active(context, armature)
    motion = motion_from_scene(context, armature)
    with Client(server.url, token=server.token, timeout=max(server.timeout, 120.0)) as client:
        result = client.tokenize(motion, reconstruction=ghost)
    scene = context.scene
    scene["mtvcrafter_vq_loss"] = result["vq_loss"]
    scene["mtvcrafter_mpjpe_mm"] = result["mpjpe_mm"]
    summary = (
        f"vq loss {result['vq_loss']:.3f}, reconstruction error {result['mpjpe_mm']:.1f} mm; worst: "
        f"{worst_joints(result['joint_error_mm'])}"
    )
    scene["mtvcrafter_check"] = summary
    if ghost and result.get("reconstruction_mm"):
        add_ghost(context, armature, motion, result["reconstruction_mm"])
    report({"WARNING" if result.get("warning") else "INFO"}, summary)
    return result
