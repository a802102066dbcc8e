"""Animate in blocking mode against a real server on loopback (the preview backend): one movie strip at the
motion's first frame with the motion's length; with the server stopped, a clear error and no strip."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import bpy
import httpx
import numpy as np
import pytest

from mtvcrafter_server.local import free_port, local_server

ROOT = Path(__file__).resolve().parents[2]
SERVER_PYTHON = ROOT / ".venv" / "bin" / "python"  # the server runs in the main environment, as it would


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not SERVER_PYTHON.exists():
        pytest.skip("the main environment (.venv) is needed to run the server")
    folder = tmp_path_factory.mktemp("server")
    tokenizer = folder / "tokenizer"  # a tiny random 4DMoT, for /v1/tokenize
    subprocess.run(
        [
            str(SERVER_PYTHON),
            "-c",
            "import sys; from mtvcrafter.dit.tiny import tiny_tokenizer; tiny_tokenizer().save_pretrained(sys.argv[1])",
            str(tokenizer),
        ],
        check=True,
    )
    with local_server(folder / "data", "--tokenizer", str(tokenizer), log=folder / "log", python=SERVER_PYTHON) as url:
        yield url


@pytest.fixture(autouse=True)
def addon():
    import mtvcrafter_bridge

    bpy.ops.wm.read_factory_settings(use_empty=True)
    mtvcrafter_bridge.register()
    yield
    mtvcrafter_bridge.unregister()


def strips(scene):
    editor = scene.sequence_editor
    if editor is None:
        return []
    return list(editor.strips if hasattr(editor, "strips") else editor.sequences)  # Blender 4.4+ / 4.2


def placed() -> list:
    """The strips of the add-on's own sequencer scene, where Animate puts the video by default ([] before its first
    video: the scene is made with it)."""
    from mtvcrafter_bridge.videos import video_scene

    scene = video_scene()
    return strips(scene) if scene is not None else []


def span(strip) -> tuple[int, int]:
    """A strip's first frame and length (``left_handle``/``right_handle`` in 5.1+, ``frame_final_*`` before)."""
    from mtvcrafter_bridge.videos import strip_span

    first, after = strip_span(strip)
    return first, after - first


def prepare(sample_pkl, reference_image, url, tmp_path, start=10, frames=40, backend="preview", size=(128, 96)):
    """An imported armature, the panel set up; ``backend``: chosen in the Backend menu, which lists what the server
    offers once asked (as the panel's Refresh does), so None for a server that does not answer; ``size``: the
    panel's Width and Height, sent (*Backend's size* off; small, so that CPU renders are quick), or None: the
    backend's size."""
    import mtvcrafter_bridge.animate as animate

    animate.server_settings = lambda context: (url, None, 30.0)  # no preferences outside the extension system
    assert bpy.ops.import_anim.mtvcrafter_motion(filepath=str(sample_pkl), clip_index=0) == {"FINISHED"}
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = start, start + frames - 1
    scene.mtvcrafter_reference = str(reference_image)
    if backend:
        assert bpy.ops.mtvcrafter.refresh_backends() == {"FINISHED"}
        scene.mtvcrafter_backend = backend
    assert scene.mtvcrafter_auto_size  # the default: the backend's size
    if size is not None:
        scene.mtvcrafter_auto_size = False
        scene.mtvcrafter_width, scene.mtvcrafter_height = size
    return scene


def test_blocking_animate_adds_one_strip_at_the_first_frame(server, sample_pkl, reference_image, tmp_path):
    """By default in a sequencer scene of the add-on's own, made with the first video (at the scene's rate, the
    video's size, frames covering the strip): the scene animated still renders the armature."""
    from mtvcrafter_bridge.videos import video_scene

    scene = prepare(sample_pkl, reference_image, server, tmp_path, start=10, frames=40)
    assert video_scene() is None  # made on first use
    assert bpy.ops.mtvcrafter.animate(wait=True) == {"FINISHED"}
    assert strips(scene) == []  # the scene animated: its render is still the armature's
    (strip,) = placed()
    assert strip.type == "MOVIE" and span(strip) == (10, 40)  # one video frame per scene frame: the scene's fps
    assert Path(strip.filepath).is_file()
    own = video_scene()
    assert own.name == "MTVCrafter Videos" and own != scene
    assert (own.render.fps, own.render.fps_base) == (scene.render.fps, scene.render.fps_base)
    assert (own.render.resolution_x, own.render.resolution_y) == (128, 96)  # the video's size
    assert (own.frame_start, own.frame_end) == (10, 49) and own.view_settings.view_transform == "Standard"
    assert bpy.context.scene == scene  # the user stays in the scene they animate
    # a second run goes on a free channel, never over the first strip, in the same scene
    scene.frame_start, scene.frame_end = 20, 69
    assert bpy.ops.mtvcrafter.animate(wait=True) == {"FINISHED"}
    channels = sorted(s.channel for s in placed())
    assert len(channels) == 2 and channels[0] != channels[1]
    assert [s for s in bpy.data.scenes if s.get("mtvcrafter_videos")] == [own]
    assert (own.frame_start, own.frame_end) == (10, 69)  # grown to show both


def test_with_video_strips_on_sequencer_scene_the_strip_goes_into_the_scene_animated(
    server, sample_pkl, reference_image, tmp_path, monkeypatch
):
    """The preferences' other choice: the scene animated (no workspace sequencer scene in background mode), and the
    report says that its render is now the video."""
    from mtvcrafter_bridge import animate

    scene = prepare(sample_pkl, reference_image, server, tmp_path, start=1, frames=8)
    monkeypatch.setattr(animate, "video_destination", lambda context: animate.SEQUENCER_SCENE)
    reports = []
    animate.animate(bpy.context, wait=True, report=lambda kind, text: reports.append((set(kind), text)))
    (strip,) = strips(scene)
    assert span(strip) == (1, 8) and placed() == []
    assert reports[-2][1].startswith(
        f"{strip.name}: 8 frames from frame 1 in the scene 'Scene' (rendering 'Scene' now renders the video: "
        "Post Processing › Sequencer)"
    )


def test_with_the_server_stopped_there_is_an_error_and_no_strip(sample_pkl, reference_image, tmp_path):
    scene = prepare(sample_pkl, reference_image, f"http://127.0.0.1:{free_port()}", tmp_path, backend=None)
    with pytest.raises(RuntimeError, match="cannot reach the server"):
        bpy.ops.mtvcrafter.animate(wait=True)
    assert strips(scene) == [] and placed() == []


def test_a_remote_server_needs_online_access(sample_pkl, reference_image, tmp_path):
    scene = prepare(sample_pkl, reference_image, "http://192.0.2.10:8765", tmp_path, backend=None)
    assert not bpy.app.online_access
    with pytest.raises(RuntimeError, match="online access"):
        bpy.ops.mtvcrafter.animate(wait=True)
    assert strips(scene) == [] and placed() == []


def test_check_motion_reports_the_tokenizer_view_and_adds_a_ghost(server, sample_pkl, reference_image, tmp_path):
    scene = prepare(sample_pkl, reference_image, server, tmp_path, start=1, frames=49)
    original = bpy.context.active_object
    assert bpy.ops.mtvcrafter.check_motion(ghost=True) == {"FINISHED"}
    assert isinstance(scene["mtvcrafter_vq_loss"], float) and scene["mtvcrafter_mpjpe_mm"] > 0
    assert "worst:" in scene["mtvcrafter_check"]
    ghosts = [o for o in bpy.data.objects if o.get("mtvcrafter_ghost_of") == original.name]
    assert len(ghosts) == 1
    ghost = ghosts[0]
    assert len(ghost.data.bones) == 24 and ghost.show_in_front
    from mtvcrafter_bridge.armature import fcurves

    assert len(fcurves(ghost)[0].keyframe_points) == 49
    assert len([o for o in bpy.data.objects if o.type == "CAMERA"]) == 1  # placed through the scene camera
    bpy.ops.object.mode_set(mode="POSE")
    assert bpy.ops.mtvcrafter.check_motion(ghost=True) == {"FINISHED"}
    assert len([o for o in bpy.data.objects if o.get("mtvcrafter_ghost_of") == original.name]) == 1  # replaced
    assert bpy.context.active_object == original and original.mode == "POSE"  # the user's mode is kept


def test_the_preview_range_is_what_gets_animated(server, sample_pkl, reference_image, tmp_path):
    scene = prepare(sample_pkl, reference_image, server, tmp_path, start=1, frames=120)
    scene.use_preview_range = True
    scene.frame_preview_start, scene.frame_preview_end = 30, 59
    assert bpy.ops.mtvcrafter.animate(wait=True) == {"FINISHED"}
    (strip,) = placed()
    assert span(strip) == (30, 30)


def test_a_sequencer_scene_at_another_rate_gets_a_video_at_its_rate(server, sample_pkl, reference_image, tmp_path):
    """Blender 5 can edit in another scene (the workspace's sequencer scene); at 24 fps against the motion's
    30, the video is rendered at 24 fps over the same span of time, and starts at the same moment."""
    import mtvcrafter_bridge.animate as animate

    scene = prepare(sample_pkl, reference_image, server, tmp_path, start=31, frames=60)
    scene.render.fps, scene.render.fps_base = 30, 1.0
    edit = bpy.data.scenes.new("Edit")
    edit.render.fps, edit.render.fps_base = 24, 1.0
    # background Blender has no workspace to set the sequencer scene on: stand it in for the context's
    original = animate.target_scene
    animate.target_scene = lambda context: edit
    try:
        assert bpy.ops.mtvcrafter.animate(wait=True) == {"FINISHED"}
    finally:
        animate.target_scene = original
    assert strips(scene) == [] and placed() == []
    (strip,) = strips(edit)
    # frame 31 at 30 fps is 1 s after frame 1; at 24 fps that moment is frame 25. 60 frames (2 s) → 48 frames
    assert span(strip) == (25, 48)
    assert abs(strip.fps - 24.0) < 1e-3  # the file itself runs at the editing rate: no retiming needed
    # the sub-frame samples are the armature's pose in between frames: frame 31 + 1.25 k
    motion = animate.motion_from_scene(bpy.context, bpy.context.active_object, fps=24.0)
    every_frame = animate.motion_from_scene(bpy.context, bpy.context.active_object)
    assert motion.num_frames == 48 and motion.fps == 24.0 and every_frame.num_frames == 60
    np.testing.assert_allclose(motion.joints[4], every_frame.joints[5], atol=1e-3)  # 31 + 5 = 31 + 1.25·4
    # 31 + 1.25: a quarter of the way from the pose at 32 to the one at 33 (curves, not straight lines)
    between = 0.75 * every_frame.joints[1] + 0.25 * every_frame.joints[2]
    step = np.abs(every_frame.joints[2] - every_frame.joints[1]).max()
    assert np.abs(motion.joints[1] - between).max() < 0.25 * step


QUIT_MID_JOB = """
import sys, threading, time
import bpy
sys.path.insert(0, sys.argv[1])
import mtvcrafter_bridge
from mtvcrafter_bridge import animate
from mtvcrafter.motion import load_motion
mtvcrafter_bridge.register()
animate.STATE = state = animate.JobState(url=sys.argv[2], status="submitting")
motion = load_motion(sys.argv[3], clip=0)
params = {"backend": "tiny", "steps": 1000, "width": 64, "height": 64}
threading.Thread(target=animate.run_job, args=(sys.argv[2], None, 30.0, motion, sys.argv[4], sys.argv[5] + "/out.mp4",
                 params, state), daemon=True).start()
deadline = time.time() + 60
while state.status != "running" and time.time() < deadline:
    time.sleep(0.05)
print("JOB", state.job_id, state.status, flush=True)
sys.exit(0)  # Blender quits with the job still running
"""


def test_quitting_blender_mid_job_cancels_it_on_the_server(server, sample_pkl, reference_image, tmp_path):
    blender_python = Path(sys.executable)
    result = subprocess.run(
        [str(blender_python), "-c", QUIT_MID_JOB, str(ROOT / "blender_addon"), server, str(sample_pkl),
         str(reference_image), str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    line = next(line for line in result.stdout.splitlines() if line.startswith("JOB"))
    _, job_id, status = line.split()
    assert status == "running"
    deadline = time.time() + 30
    while (job := httpx.get(f"{server}/v1/jobs/{job_id}").json())["status"] == "running" and time.time() < deadline:
        time.sleep(0.1)
    assert job["status"] == "cancelled"  # the server stopped the work of a Blender that is gone


def test_a_server_that_does_not_speak_json_gives_one_message_and_animate_stays_usable(
    sample_pkl, reference_image, tmp_path
):
    import http.server
    import threading

    class Html(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self._html()

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self._html()

        def _html(self):
            body = b"<html>captive portal</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        scene = prepare(sample_pkl, reference_image, f"http://127.0.0.1:{httpd.server_port}", tmp_path, backend=None)
        with pytest.raises(RuntimeError, match="not JSON"):
            bpy.ops.mtvcrafter.animate(wait=True)
        assert strips(scene) == [] and placed() == []
        assert bpy.ops.mtvcrafter.animate.poll()  # not stuck "submitting"
    finally:
        httpd.shutdown()


def test_a_render_preset_decides_backend_and_settings(server, sample_pkl, reference_image, tmp_path):
    from mtvcrafter_bridge.presets import load_presets

    presets = load_presets()
    assert {"preview-512", "mvdit-7b-official", "mvdit-7b-draft", "tiny-smoke"} <= set(presets)
    assert presets["mvdit-7b-official"]["steps"] == 50 and presets["mvdit-7b-official"]["guidance"] == 3.0
    scene = prepare(sample_pkl, reference_image, server, tmp_path, start=1, frames=20)
    scene.mtvcrafter_preset = "tiny-smoke"
    assert bpy.ops.mtvcrafter.animate(wait=True) == {"FINISHED"}
    (strip,) = placed()
    assert span(strip)[1] == 20
    latest = httpx.get(f"{server}/v1/jobs", params={"limit": 1}).json()[0]
    assert latest["backend"] == "tiny" and (latest["width"], latest["height"]) == (64, 64)
    assert latest["params"]["steps"] == 4


def test_a_fast_render_preset_renders_in_fast_mode(server, sample_pkl, reference_image, tmp_path, monkeypatch):
    """The fast presets ask for fast mode, and a preset's ``fast`` reaches the job the server runs (shown with the
    tiny backend: the bundled fast presets need the MV-DiT weights)."""
    from mtvcrafter_bridge import animate, panels
    from mtvcrafter_bridge.presets import load_presets

    presets = load_presets()
    assert presets["mvdit-7b-fast"]["fast"] is True and presets["mvdit-17b-fast"]["fast"] is True
    assert "fast" not in presets["mvdit-7b-official"]
    with_fast = {**presets, "tiny-fast": {**presets["tiny-smoke"], "name": "tiny, fast", "fast": True}}
    monkeypatch.setattr(animate, "load_presets", lambda: with_fast)
    monkeypatch.setattr(panels, "load_presets", lambda: with_fast)
    scene = prepare(sample_pkl, reference_image, server, tmp_path, start=1, frames=12)
    scene.mtvcrafter_preset = "tiny-fast"
    assert bpy.ops.mtvcrafter.animate(wait=True) == {"FINISHED"}
    latest = httpx.get(f"{server}/v1/jobs", params={"limit": 1}).json()[0]
    assert latest["backend"] == "tiny" and latest["params"]["fast"] is True
    scene.mtvcrafter_preset = "tiny-smoke"
    assert bpy.ops.mtvcrafter.animate(wait=True) == {"FINISHED"}
    latest = httpx.get(f"{server}/v1/jobs", params={"limit": 1}).json()[0]
    assert not latest["params"].get("fast")


@pytest.mark.parametrize("packed", [False, True])
def test_an_image_in_the_blend_file_can_be_the_reference(server, sample_pkl, reference_image, tmp_path, packed):
    scene = prepare(sample_pkl, reference_image, server, tmp_path, start=5, frames=12)
    scene.mtvcrafter_reference = ""
    image = bpy.data.images.load(str(reference_image))
    if packed:  # no file to send: its pixels are written out
        image.pack()
        image.filepath = ""
    scene.mtvcrafter_reference_image = image
    assert bpy.ops.mtvcrafter.animate(wait=True) == {"FINISHED"}
    (strip,) = placed()
    assert span(strip) == (5, 12)


def test_without_a_reference_image_nothing_is_sent(server, sample_pkl, reference_image, tmp_path):
    scene = prepare(sample_pkl, reference_image, server, tmp_path)
    scene.mtvcrafter_reference = ""
    with pytest.raises(RuntimeError, match="choose a reference image"):
        bpy.ops.mtvcrafter.animate(wait=True)
    assert strips(scene) == [] and placed() == []


def test_a_render_preset_that_is_gone_is_one_error_and_leaves_no_temporary_folder(
    sample_pkl, reference_image, tmp_path, monkeypatch
):
    import tempfile

    import mtvcrafter_bridge.animate as animate

    scene = prepare(sample_pkl, reference_image, f"http://127.0.0.1:{free_port()}", tmp_path, backend=None)
    scene.mtvcrafter_preset = "tiny-smoke"
    made, mkdtemp = [], tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *args, **kwargs: made.append(mkdtemp(*args, **kwargs)) or made[-1])
    monkeypatch.setattr(animate, "load_presets", dict)  # the preset's file was removed meanwhile
    with pytest.raises(RuntimeError, match="render preset .* is gone"):
        bpy.ops.mtvcrafter.animate(wait=True)
    assert strips(scene) == [] and placed() == []
    assert not [folder for folder in made if Path(folder).exists()]  # no scratch folder (image copies) left behind


# --- the plain functions a script calls, and the Backend menu from the server -------------------------------------


def test_animate_and_check_motion_called_from_a_script(server, sample_pkl, reference_image):
    """The functions under the operators: import, Animate with wait (a strip, the job's state, the report), and Check
    Motion, with their arguments instead of the panel's settings."""
    from mtvcrafter_bridge.animate import Server, animate, check_motion
    from mtvcrafter_bridge.import_export import import_motion

    reports = []
    context = bpy.context
    armature = import_motion(context, sample_pkl, 0, report=lambda kind, text: reports.append((set(kind), text)))
    scene = context.scene
    scene.frame_start, scene.frame_end = 5, 24
    job = animate(
        context,
        reference=reference_image,
        server=server,
        params={"backend": "preview", "width": 128, "height": 96},
        wait=True,
        report=lambda kind, text: reports.append((set(kind), text)),
    )
    (strip,) = placed()
    assert job.status == "succeeded" and job.strip == strip.name and Path(job.result).is_file()
    assert span(strip) == (5, 20)
    where, size = reports[-2:]
    assert where == (
        {"INFO"},
        f"{strip.name}: 20 frames from frame 5 in the scene 'MTVCrafter Videos' (the add-on's own; 'Scene' still "
        f"renders the armature); the video is in {Path(job.result).parent} (a temporary folder: save the .blend to "
        "keep videos beside it)",
    )
    assert size == (
        {"WARNING"},
        "rendered 128×96 by preview: the size given; the camera's render size is 604×1080, another aspect (4:3 "
        "against 0.56:1)",
    )
    latest = httpx.get(f"{server}/v1/jobs", params={"limit": 1}).json()[0]
    assert latest["backend"] == "preview" and (latest["width"], latest["height"]) == (128, 96)

    result = check_motion(
        context, armature, server=Server(server), ghost=False, report=lambda k, t: reports.append((set(k), t))
    )
    assert reports[-1][0] <= {"INFO", "WARNING"} and reports[-1][1].startswith(f"vq loss {result['vq_loss']:.3f}")
    assert scene["mtvcrafter_check"] == reports[-1][1]
    assert not [o for o in bpy.data.objects if o.get("mtvcrafter_ghost_of")]


def backend_menu(scene) -> list[str]:
    """The Backend menu's identifiers, as Blender lists them when a value is not among them."""
    import re

    with pytest.raises(TypeError) as refused:
        scene.mtvcrafter_backend = "no such backend"
    return re.findall(r"'([^']*)'", str(refused.value).split("not found in", 1)[1])


def test_after_a_refresh_the_backend_menu_is_server_default_and_what_the_server_lists(server):
    from mtvcrafter_bridge import animate

    reports = []
    backends = animate.refresh_backends(bpy.context, server, report=lambda kind, text: reports.append((kind, text)))
    listed = httpx.get(f"{server}/v1/backends").json()
    assert [b["name"] for b in backends] == [b["name"] for b in listed]
    scene = bpy.context.scene
    assert backend_menu(scene) == ["DEFAULT"] + [b["name"] for b in listed]
    assert scene.mtvcrafter_backend == "DEFAULT"
    for backend in listed:
        scene.mtvcrafter_backend = backend["name"]
        assert scene.mtvcrafter_backend == backend["name"]
    # a backend the server cannot run now is listed with its reason
    descriptions = {item[0]: item[2] for item in animate.backend_items(scene, bpy.context)}
    for backend in listed:
        if not backend["available"]:
            assert descriptions[backend["name"]] == f"Unavailable: {backend['reason']}"
    assert reports[-1][1].startswith(f"{server}: ")


def test_a_backend_the_server_no_longer_offers_falls_back_to_server_default(
    server, sample_pkl, reference_image, tmp_path
):
    from mtvcrafter_bridge import animate

    scene = prepare(sample_pkl, reference_image, server, tmp_path, start=1, frames=10)
    listed = httpx.get(f"{server}/v1/backends").json()
    animate.BACKENDS.backends = [*listed, {"name": "retired", "available": True, "reason": "", "description": ""}]
    scene.mtvcrafter_backend = "retired"  # offered by the server when it was chosen
    reports = []
    animate.refresh_backends(bpy.context, report=lambda kind, text: reports.append((set(kind), text)))
    assert scene.mtvcrafter_backend == "DEFAULT"
    assert ({"WARNING"}, f"the server at {server} no longer offers the backend 'retired': Server default is used") in (
        reports
    )
    # chosen again, then gone by the time Animate asks: the job goes to the server's default, with the warning
    animate.BACKENDS.backends = [*listed, {"name": "retired", "available": True, "reason": "", "description": ""}]
    scene.mtvcrafter_backend = "retired"
    reports.clear()
    state = animate.animate(bpy.context, wait=True, report=lambda kind, text: reports.append((set(kind), text)))
    assert state.status == "succeeded" and scene.mtvcrafter_backend == "DEFAULT"
    assert reports[0][0] == {"WARNING"} and "'retired'" in reports[0][1]
    default = next(b["name"] for b in listed if b["default"])
    assert httpx.get(f"{server}/v1/jobs", params={"limit": 1}).json()[0]["backend"] == default
    (strip,) = placed()
    assert span(strip)[1] == 10


# --- the prompt fields (backends with a text prompt: the 17B) -----------------------------------------------------


class Drawn:
    """A stand-in for the panel's layout: records which properties it draws, with their placeholders, and whether
    each is drawn enabled (a row's ``enabled``)."""

    def __init__(self, parent: Drawn | None = None):
        self.props: dict[str, str] = parent.props if parent else {}
        self.enabled_props: dict[str, bool] = parent.enabled_props if parent else {}
        self.parent = parent
        self.enabled = True

    def is_enabled(self) -> bool:
        return self.enabled and (self.parent is None or self.parent.is_enabled())

    def prop(self, data, name, placeholder="", **kwargs):
        self.props[name] = placeholder
        self.enabled_props[name] = self.is_enabled()

    def row(self, **kwargs):
        return Drawn(self)

    column = row

    def label(self, **kwargs):
        pass

    def operator(self, *args, **kwargs):
        import types

        return types.SimpleNamespace()


def drawn(context) -> Drawn:
    """What the MTVCrafter panel draws now."""
    import types

    from mtvcrafter_bridge import panels

    layout = Drawn()
    panels.MTVCRAFTER_PT_panel.draw(types.SimpleNamespace(layout=layout), context)
    return layout


def drawn_text_fields(context) -> dict[str, str]:
    """The prompt fields the MTVCrafter panel draws now, with their placeholders."""
    from mtvcrafter_bridge import animate

    return {name: text for name, text in drawn(context).props.items() if name in animate.TEXT_FIELDS.values()}


def test_the_prompt_fields_show_for_a_backend_that_takes_a_prompt(server, monkeypatch):
    from mtvcrafter_bridge import animate

    monkeypatch.setattr(animate, "BACKENDS", animate.BackendList())  # the server not asked yet
    scene = bpy.context.scene
    assert scene.mtvcrafter_preset == "CUSTOM"
    assert animate.panel_text_fields(scene) == {} and drawn_text_fields(bpy.context) == {}
    animate.refresh_backends(bpy.context, server, report=lambda kind, text: None)
    listed = httpx.get(f"{server}/v1/backends").json()
    assert {b["name"] for b in listed if "prompt" in b["settings"]} >= {"tiny-17b", "mvdit-17b"}
    for backend in listed:  # each backend: the fields of the settings it reads, in the panel and in its draw
        scene.mtvcrafter_backend = backend["name"]
        expected = [name for name in ("prompt", "negative_prompt", "lora") if name in backend["settings"]]
        assert list(animate.panel_text_fields(scene)) == expected, backend["name"]
        assert list(drawn_text_fields(bpy.context)) == [animate.TEXT_FIELDS[name] for name in expected]
    for name in ("preview", "tiny", "mvdit-7b", "DEFAULT"):  # Server default: preview here
        scene.mtvcrafter_backend = name
        assert drawn_text_fields(bpy.context) == {}, name
    scene.mtvcrafter_backend = "tiny-17b"
    defaults = next(b for b in listed if b["name"] == "tiny-17b")["defaults"]
    assert drawn_text_fields(bpy.context) == {  # empty fields show what they stand for: the backend's defaults
        "mtvcrafter_prompt": defaults["prompt"],
        "mtvcrafter_negative_prompt": defaults["negative_prompt"],
        "mtvcrafter_lora": "",
    }
    assert defaults["prompt"] == "The character is dancing."
    # a preset's backend decides too; the preset's prompt is what an empty field stands for
    scene.mtvcrafter_preset = "tiny-17b-smoke"
    assert drawn_text_fields(bpy.context)["mtvcrafter_prompt"] == "A character dances in a sunny park."
    scene.mtvcrafter_preset = "mvdit-17b-fusionx"
    fields = drawn_text_fields(bpy.context)
    assert fields["mtvcrafter_lora"] == "Wan2.1_I2V_14B_FusionX_LoRA.safetensors"
    assert fields["mtvcrafter_prompt"] == "The character is dancing."
    for preset in ("tiny-smoke", "preview-512", "mvdit-7b-official"):
        scene.mtvcrafter_preset = preset
        assert drawn_text_fields(bpy.context) == {}, preset


def animate_and_read_job(server) -> tuple[Exception | None, dict]:
    """Animate from the panel in blocking mode; what it raised, and the job as the server recorded it."""
    from mtvcrafter_bridge import animate

    error = None
    try:
        bpy.ops.mtvcrafter.animate(wait=True)
    except RuntimeError as exc:
        error = exc
    assert animate.STATE.job_id, f"no job was submitted: {error}"
    return error, httpx.get(f"{server}/v1/jobs/{animate.STATE.job_id}").json()


def test_animate_sends_the_prompt_to_a_backend_that_takes_it(server, sample_pkl, reference_image, tmp_path):
    scene = prepare(
        sample_pkl, reference_image, server, tmp_path, start=1, frames=12, backend="tiny-17b", size=(64, 64)
    )
    scene.mtvcrafter_prompt = "  A robot dances in the rain. "
    scene.mtvcrafter_negative_prompt = "blurry"
    error, job = animate_and_read_job(server)
    assert job["backend"] == "tiny-17b"
    assert job["params"]["prompt"] == "A robot dances in the rain."
    assert job["params"]["negative_prompt"] == "blurry" and job["params"]["lora"] is None  # empty: not sent
    assert (job["params"]["width"], job["params"]["height"]) == (64, 64)  # Backend's size off: the panel's
    # the video, once the server renders tiny-17b: one strip of the motion's length
    assert error is None, f"the tiny-17b job {job['status']}: {job['message']}"
    (strip,) = placed()
    assert span(strip) == (1, 12)


def test_a_backend_without_a_prompt_is_sent_none(server, sample_pkl, reference_image, tmp_path):
    """Fields the backend does not take are hidden and not sent (the server would refuse them)."""
    scene = prepare(sample_pkl, reference_image, server, tmp_path, start=1, frames=8, backend="preview")
    scene.mtvcrafter_prompt, scene.mtvcrafter_lora = "A robot dances.", "style.safetensors"
    error, job = animate_and_read_job(server)
    assert error is None and job["status"] == "succeeded"
    assert (job["params"]["prompt"], job["params"]["lora"]) == (None, None)
    (strip,) = placed()
    assert span(strip)[1] == 8


def test_a_render_preset_with_a_prompt_fills_the_job_params(server, sample_pkl, reference_image, tmp_path):
    from mtvcrafter_bridge.presets import job_params, load_presets

    from mtvcrafter.backends.settings import RenderSettings

    presets = load_presets()
    official, fusionx = presets["mvdit-17b-official"], presets["mvdit-17b-fusionx"]
    # no size in the official one: the backend's, the official size nearest the reference image's aspect
    assert job_params(official) == {
        "backend": "mvdit-17b", "steps": 50, "guidance": 6.0, "seed": 42, "prompt": "The character is dancing."
    }  # fmt: skip
    assert job_params(fusionx) == {
        "backend": "mvdit-17b", "lora": "Wan2.1_I2V_14B_FusionX_LoRA.safetensors", "steps": 10, "guidance": 1.0,
        "seed": 42,
    }  # fmt: skip
    # every preset sets only what its backend reads (as the server lists it), with values the settings take
    listed = {b["name"]: b for b in httpx.get(f"{server}/v1/backends").json()}
    for name, preset in presets.items():
        params = job_params(preset)
        assert set(params) - {"backend"} <= set(listed[params["backend"]]["settings"]), name
        RenderSettings.from_dict({k: v for k, v in params.items() if k != "backend"})

    scene = prepare(sample_pkl, reference_image, server, tmp_path, start=1, frames=10, backend=None)
    scene.mtvcrafter_preset = "tiny-17b-smoke"
    error, job = animate_and_read_job(server)
    assert job["backend"] == "tiny-17b" and (job["width"], job["height"]) == (64, 64)
    assert job["params"]["prompt"] == "A character dances in a sunny park." and job["params"]["steps"] == 2
    first_error = error
    scene.mtvcrafter_prompt = "The panel's own prompt."  # typed in the panel: it wins over the preset's
    error, job = animate_and_read_job(server)
    assert job["params"]["prompt"] == "The panel's own prompt." and job["params"]["steps"] == 2
    # the videos, once the server renders tiny-17b
    assert first_error is None and error is None, f"the tiny-17b job {job['status']}: {job['message']}"
    assert [span(s)[1] for s in placed()] == [10, 10]


# --- the size in Custom: the backend's, or the panel's Width and Height -------------------------------------------


def portrait_png(path: Path, width: int = 54, height: int = 96) -> Path:
    """A ``width`` × ``height`` PNG (9:16 by default), written by Blender."""
    image = bpy.data.images.new("portrait", width, height)
    image.pixels.foreach_set(np.tile(np.float32([0.8, 0.4, 0.2, 1.0]), width * height))
    image.filepath_raw, image.file_format = str(path), "PNG"
    image.save()
    bpy.data.images.remove(image)
    return path


def submit_and_cancel(server, sample_pkl, reference) -> dict:
    """Animate from the panel in the background and return the job as the server recorded it at submission, where
    it decides the size; then cancel it. It waits behind a long job of the server's one worker, so it is cancelled
    while queued, before any rendering (a 17B render at the size the server picks is slow on a CPU)."""
    from mtvcrafter_bridge import animate

    from mtvcrafter.client import Client
    from mtvcrafter.motion import load_motion

    with Client(server, timeout=30.0) as client:
        blocker = client.submit(
            load_motion(sample_pkl, clip=0), reference, {"backend": "tiny", "steps": 1000, "width": 64, "height": 64}
        )
    try:
        state = animate.animate(bpy.context, report=lambda kind, text: None)
        deadline = time.time() + 60
        while not state.job_id and not state.error and time.time() < deadline:
            time.sleep(0.02)
        assert state.job_id, f"no job was submitted: {state.error}"
        job = httpx.get(f"{server}/v1/jobs/{state.job_id}").json()
        assert job["status"] == "queued", job
        assert animate.cancel(report=lambda kind, text: None)
        while animate.job_running() and time.time() < deadline:  # the worker follows the job until it ends
            time.sleep(0.02)
        assert state.status == "cancelled" and not animate.job_running()
    finally:  # the server's worker free again for the next test
        httpx.delete(f"{server}/v1/jobs/{blocker['id']}")
        deadline = time.time() + 60
        while httpx.get(f"{server}/v1/jobs/{blocker['id']}").json()["status"] in animate.RUNNING:
            assert time.time() < deadline, "the server did not cancel the long job"
            time.sleep(0.05)
    return job


def test_custom_size_is_the_backends_unless_width_and_height_are_set(server, sample_pkl, tmp_path):
    """*Backend's size* (on by default) sends no size: tiny-17b, as mvdit-17b, then renders the official size
    nearest the reference image's aspect (a 9:16 portrait: 384 × 672; tiny-17b an eighth of it), where a size in the
    panel would squash it. Off, the panel's Width and Height are sent."""
    from mtvcrafter_bridge import animate

    from mtvcrafter.official import aspect_bucket

    portrait = portrait_png(tmp_path / "portrait.png")
    scene = prepare(sample_pkl, portrait, server, tmp_path, start=1, frames=12, backend="tiny-17b", size=None)
    assert scene.mtvcrafter_auto_size and scene.mtvcrafter_preset == "CUSTOM"
    assert animate.panel_params(scene) == {}
    layout = drawn(bpy.context)  # above Width and Height, which are greyed out
    names = list(layout.props)
    assert names.index("mtvcrafter_auto_size") < names.index("mtvcrafter_width") < names.index("mtvcrafter_height")
    assert layout.enabled_props["mtvcrafter_auto_size"]
    assert not layout.enabled_props["mtvcrafter_width"] and not layout.enabled_props["mtvcrafter_height"]

    job = submit_and_cancel(server, sample_pkl, portrait)
    assert job["backend"] == "tiny-17b"
    assert job["params"]["width"] is None and job["params"]["height"] is None  # not sent
    assert aspect_bucket(54, 96) == (384, 672)  # the server's choice: for tiny-17b an eighth, in multiples of 16
    assert (job["width"], job["height"]) == (384 // 8, 672 // 8 // 16 * 16) == (48, 80)

    scene.mtvcrafter_auto_size = False
    scene.mtvcrafter_width, scene.mtvcrafter_height = 96, 160
    assert animate.panel_params(scene) == {"width": 96, "height": 160}
    layout = drawn(bpy.context)
    assert layout.enabled_props["mtvcrafter_width"] and layout.enabled_props["mtvcrafter_height"]
    job = submit_and_cancel(server, sample_pkl, portrait)
    assert (job["params"]["width"], job["params"]["height"]) == (96, 160)
    assert (job["width"], job["height"]) == (96, 160)

    # a render preset decides the size itself: the switch is for Custom only
    scene.mtvcrafter_auto_size = True
    scene.mtvcrafter_preset = "tiny-smoke"
    assert "mtvcrafter_auto_size" not in drawn(bpy.context).props
    assert (animate.panel_params(scene)["width"], animate.panel_params(scene)["height"]) == (64, 64)


# --- the size rendered, against the camera's; the video behind the armature ---------------------------------------


def test_the_report_says_which_size_was_rendered_and_why(server, sample_pkl, reference_image, tmp_path):
    """The camera of sample clip 0 renders 604×1080 (a portrait); preview with no size sent renders 512×512: the
    report says so, why, and warns of the other aspect. Backend's size turned off starts Width × Height at the
    camera's aspect (288×512), and the report then has no warning."""
    from mtvcrafter_bridge import animate

    scene = prepare(sample_pkl, reference_image, server, tmp_path, start=1, frames=6, size=None)
    assert (scene.render.resolution_x, scene.render.resolution_y) == (604, 1080)
    reports = []
    animate.animate(bpy.context, wait=True, report=lambda kind, text: reports.append((set(kind), text)))
    assert reports[-1] == (
        {"WARNING"},
        "rendered 512×512 by preview: no size sent (Backend's size on), the backend's own: 512×512 (tiny: 64×64); "
        "MV-DiT-17B the official 512-pixel size nearest the reference image's aspect (tiny-17b an eighth of it); "
        "the camera's render size is 604×1080, another aspect (1:1 against 0.56:1): turn Backend's size off for a "
        "Width × Height of the camera's aspect",
    )
    assert animate.STATE.summary == [text for _, text in reports[-2:]]  # what the panel shows

    scene.mtvcrafter_auto_size = False
    assert (scene.mtvcrafter_width, scene.mtvcrafter_height) == (288, 512)  # 604:1080, sides in multiples of 16
    reports.clear()
    animate.animate(bpy.context, wait=True, report=lambda kind, text: reports.append((set(kind), text)))
    assert reports[-1] == (
        {"INFO"},
        "rendered 288×512 by preview: the panel's Width × Height (Backend's size off); the camera's render size is "
        "604×1080",
    )
    # the button beside Width and Height: the camera's aspect again, keeping the longer side
    scene.mtvcrafter_width, scene.mtvcrafter_height = 640, 64
    assert bpy.ops.mtvcrafter.size_from_camera() == {"FINISHED"}
    assert (scene.mtvcrafter_width, scene.mtvcrafter_height) == (352, 640)  # 640 · 604 / 1080 = 358 → 352


def test_show_video_behind_puts_the_clip_behind_the_armature_in_time(server, sample_pkl, reference_image, tmp_path):
    """One click after Animate: the video as the camera's background movie clip, at the opacity chosen, starting at
    the motion's first frame; a second click replaces it, Hide hides it. The panel offers it once there is a video."""
    from mtvcrafter_bridge.panels import MTVCRAFTER_PT_panel
    from test_retarget import draw_panel

    scene = prepare(sample_pkl, reference_image, server, tmp_path, start=10, frames=12)
    armature = bpy.context.active_object

    def offered():
        calls = draw_panel(bpy.context, MTVCRAFTER_PT_panel)  # checked against the real UILayout API
        return [args.get("text", "") for name, args in calls if args.get("operator") == "mtvcrafter.video_behind"]

    assert offered() == [] and "mtvcrafter_video" not in armature
    with pytest.raises(RuntimeError, match="has no video yet: Animate it first"):
        bpy.ops.mtvcrafter.video_behind()
    assert bpy.ops.mtvcrafter.animate(wait=True) == {"FINISHED"}
    (strip,) = placed()
    assert offered() == [""]  # its label: Show Video Behind the Armature
    assert bpy.ops.mtvcrafter.video_behind(opacity=0.4) == {"FINISHED"}
    camera = scene.camera
    (background,) = camera.data.background_images
    clip = background.clip
    assert background.source == "MOVIE_CLIP" and not background.use_camera_clip and background.show_background_image
    assert Path(bpy.path.abspath(clip.filepath)) == Path(bpy.path.abspath(strip.filepath))
    assert (clip.frame_start, clip.frame_offset, clip.frame_duration) == (10, 0, 12)  # scene frames 10–21
    assert abs(clip.fps - 30.0) < 1e-3  # the scene's rate: in time with the armature
    assert abs(background.alpha - 0.4) < 1e-6 and background.display_depth == "BACK"
    assert camera.data.show_background_images
    assert offered() == ["Hide Video Behind"]

    assert bpy.ops.mtvcrafter.video_behind(opacity=0.7) == {"FINISHED"}  # again: replaced, not stacked
    assert len(camera.data.background_images) == 1 and abs(camera.data.background_images[0].alpha - 0.7) < 1e-6
    assert bpy.ops.mtvcrafter.video_behind(show=False) == {"FINISHED"}
    assert not camera.data.background_images[0].show_background_image
    assert offered() == [""]


def test_a_background_job_places_its_strip_and_keeps_the_reports_for_the_panel(
    server, sample_pkl, reference_image, tmp_path, capfd
):
    """Without wait, the timer places the strip (called here by hand: background Blender runs no timers); with no
    operator left to report to, the lines are printed and kept for the panel."""
    from mtvcrafter_bridge import animate

    prepare(sample_pkl, reference_image, server, tmp_path, start=3, frames=6)
    state = animate.animate(bpy.context, report=lambda kind, text: None)
    deadline = time.time() + 60
    while not (state.result or state.error) and time.time() < deadline:
        time.sleep(0.05)
    assert state.result and not state.error
    capfd.readouterr()
    assert animate._poll_job() is None  # done: the timer stops
    (strip,) = placed()
    assert span(strip) == (3, 6) and state.strip == strip.name
    assert len(state.summary) == 2 and state.summary[0].startswith(f"{strip.name}: 6 frames from frame 3 in the scene")
    out = capfd.readouterr().out
    assert all(line in out for line in state.summary)


def test_every_bundled_render_preset_is_offered_and_sets_only_job_params():
    """A preset file the add-on skips (a key it does not know) would vanish from the menu without a word."""
    import json

    from mtvcrafter_bridge.presets import JOB_KEYS, load_presets

    from mtvcrafter.backends.settings import SETTINGS

    files = sorted((ROOT / "presets" / "render").glob("*.json"))
    assert {path.stem for path in files} == set(load_presets())
    taken = {"backend", "prompt", "negative_prompt", "lora"} | {setting.name for setting in SETTINGS}
    assert JOB_KEYS <= taken  # what a preset may set is what a job takes
    for path in files:
        assert set(json.loads(path.read_text())) - {"name", "description"} <= JOB_KEYS, path.name
