"""Motion from Video against a real server on loopback (its NLF model the stand-in TorchScript file, its video a
synthetic one of coloured figures: the extraction's answer is known), and Clean Motion, in real Blender (headless).

Blender's Python has no torch: the stand-in model and the video are written by the main environment, as the server
runs in it."""

from __future__ import annotations

import json
import math
import subprocess
import time
from pathlib import Path

import bpy
import httpx
import numpy as np
import pytest
from bpy_extras.object_utils import world_to_camera_view

from mtvcrafter.client import Client
from mtvcrafter.motion import JOINT_NAMES, load_motion
from mtvcrafter_server.local import free_port, local_server

ROOT = Path(__file__).resolve().parents[2]
SERVER_PYTHON = ROOT / ".venv" / "bin" / "python"  # torch, the server: the main environment
#: The test video: (H, W), frames, fps; a tall red figure walking left to right, a smaller blue one on the right.
SIZE, FRAMES, FPS = (96, 160), 36, 25.0

MAKE_VIDEO = """
import json, sys
import numpy as np
from mtvcrafter.extract.standin import write_standin_model
from mtvcrafter.extract.synthetic import Figure, figure_video, write_test_video

folder = sys.argv[1]
(height, width), frames, fps = json.loads(sys.argv[2])
write_standin_model(folder + "/standin.torchscript", mode="figures")
red = Figure.moving("red", (4, 10, 30, 76), (90, 10, 30, 76), frames)
blue = Figure.moving("blue", (126, 30, 22, 54), (130, 30, 22, 54), frames)
video = figure_video([red, blue], frames=frames, size=(height, width), fps=fps)
write_test_video(folder + "/walk.mp4", video.frames, fps)
np.save(folder + "/red_boxes.npy", video.boxes["red"])
# a phone's video: a portrait video stored landscape (turned a quarter left), the file asking for a quarter turn right
standing = Figure.moving("red", (10, 20, 40, 110), (40, 20, 40, 110), 12)
upright = figure_video([standing], frames=12, size=(160, 96), fps=fps)
stored = np.ascontiguousarray(np.rot90(upright.frames, 1, axes=(1, 2)))
write_test_video(folder + "/turned.mp4", stored, fps, rotation=90)
np.save(folder + "/turned_boxes.npy", upright.boxes["red"])
np.save(folder + "/blue_boxes.npy", video.boxes["blue"])
"""


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """The stand-in NLF model, the video, and the figures' boxes in it (ground truth)."""
    if not SERVER_PYTHON.exists():
        pytest.skip("the main environment (.venv) is needed to run the server")
    folder = tmp_path_factory.mktemp("media")
    subprocess.run([str(SERVER_PYTHON), "-c", MAKE_VIDEO, str(folder), json.dumps([SIZE, FRAMES, FPS])], check=True)
    return folder


@pytest.fixture(scope="module")
def server(media, tmp_path_factory):
    folder = tmp_path_factory.mktemp("server")
    nlf = ("--nlf", str(media / "standin.torchscript"))
    with local_server(folder / "data", *nlf, log=folder / "log", python=SERVER_PYTHON) as url:
        yield url


@pytest.fixture(autouse=True)
def addon(tmp_path, monkeypatch):
    import mtvcrafter_bridge
    from mtvcrafter_bridge import animate

    bpy.ops.wm.read_factory_settings(use_empty=True)
    mtvcrafter_bridge.register()
    monkeypatch.setattr(animate, "output_folder", lambda context: tmp_path / "out")  # the motion files go here
    yield
    mtvcrafter_bridge.unregister()
    from mtvcrafter_bridge import video_import

    video_import.IMPORT = video_import.VideoImport()  # the panel of a later test shows no import's progress


def use_server(monkeypatch, url: str) -> None:
    from mtvcrafter_bridge import animate

    # no preferences outside the extension system: the server's URL as the preferences would give it
    monkeypatch.setattr(animate, "server_settings", lambda context: animate.Server(url, None, 30.0))


def collect():
    reports = []
    return reports, lambda kind, text: reports.append((set(kind), text))


def keys_per_curve(obj) -> set[int]:
    from mtvcrafter_bridge.armature import fcurves

    return {len(curve.keyframe_points) for curve in fcurves(obj)}


def scene_state(scene) -> tuple:
    """What an import changes: objects, frame rate and range, render size, camera, movie clips."""
    render = scene.render
    return (
        sorted(o.name for o in bpy.data.objects),
        (render.fps, render.fps_base, scene.frame_start, scene.frame_end),
        (render.resolution_x, render.resolution_y),
        scene.camera,
        sorted(c.name for c in bpy.data.movieclips),
    )


def pelvis_pixels(scene, armature) -> np.ndarray:
    """The armature's pelvis on each frame, in the camera's picture: ``(T, 2)`` pixels, x right, y down."""
    width, height = scene.render.resolution_x, scene.render.resolution_y
    out = []
    for frame in range(scene.frame_start, scene.frame_end + 1):
        scene.frame_set(frame)
        head = armature.matrix_world @ armature.pose.bones["pelvis"].head
        x, y, _ = world_to_camera_view(scene, scene.camera, head)
        out.append((x * width, (1.0 - y) * height))
    return np.array(out)


def box_centres(boxes: np.ndarray) -> np.ndarray:
    return boxes[:, :2] + boxes[:, 2:] / 2.0


# --- Motion from Video ---------------------------------------------------------------------------------------------


def test_motion_from_video_builds_the_armature_over_the_video_in_its_camera(server, media, tmp_path, monkeypatch):
    """File › Import › Motion from Video (blocking, as scripts and background Blender run it): one key per video
    frame at the video's rate, a camera of the video's size and 55° field of view, the video behind the armature as
    that camera's background clip from the armature's first key — and the armature stands where the performer is
    in the video."""
    use_server(monkeypatch, server)
    video = media / "walk.mp4"
    assert bpy.ops.import_anim.mtvcrafter_video(filepath=str(video), wait=True) == {"FINISHED"}
    scene, armature = bpy.context.scene, bpy.context.active_object
    assert armature.type == "ARMATURE" and armature.get("mtvcrafter_smpl") and armature.name == "walk"
    assert keys_per_curve(armature) == {FRAMES}
    assert (scene.frame_start, scene.frame_end) == (1, FRAMES)
    assert scene.render.fps / scene.render.fps_base == FPS

    camera = scene.camera
    height, width = SIZE
    assert (scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage) == (
        width,
        height,
        100,
    )
    assert camera.data.sensor_fit == "AUTO" and math.isclose(math.degrees(camera.data.angle), 55.0, rel_tol=1e-6)
    (background,) = camera.data.background_images
    clip = background.clip
    assert background.source == "MOVIE_CLIP" and not background.use_camera_clip
    assert background.show_background_image and camera.data.show_background_images
    assert background.display_depth == "BACK"
    assert Path(bpy.path.abspath(clip.filepath)) == video
    assert (clip.frame_start, clip.frame_offset, clip.frame_duration) == (1, 0, FRAMES)  # clip frame 1 = key 1
    assert tuple(clip.size) == (width, height)

    # the stand-in puts the pelvis on the ray through the centre of the figure's box: in the camera view the
    # armature's pelvis is over the red figure (the largest person) on every frame
    centres = box_centres(np.load(media / "red_boxes.npy"))
    error = np.linalg.norm(pelvis_pixels(scene, armature) - centres, axis=-1)
    assert error.max() < 1.0, error  # the figure moves 2.5 pixels a frame: one frame out of time is seen
    # the motion extracted is kept in the output folder (beside the .blend, as Animate's videos)
    (saved,) = (tmp_path / "out").glob("walk_*.npz")
    assert load_motion(saved).num_frames == FRAMES


def test_in_the_background_the_timer_builds_the_armature_of_the_person_chosen(server, media, monkeypatch, capfd):
    """Without wait the extraction runs on a thread, and the timer builds the armature once the motion is there
    (called here by hand: background Blender runs no timers); with no operator left to report to, the lines are
    printed and kept for the panel. Person 1: the second largest, the blue figure."""
    from mtvcrafter_bridge import video_import

    use_server(monkeypatch, server)
    state = video_import.import_video(
        bpy.context, media / "walk.mp4", person=1, smoothing="none", report=lambda kind, text: None
    )
    assert video_import.job_running() and bpy.app.timers.is_registered(video_import._poll_import)
    deadline = time.time() + 60
    while not (state.result or state.error) and time.time() < deadline:
        time.sleep(0.05)
    assert state.result and not state.error
    assert "walk" not in bpy.data.objects  # not before the timer
    capfd.readouterr()
    assert video_import._poll_import() is None  # done: the timer stops
    scene, armature = bpy.context.scene, bpy.data.objects[state.armature]
    assert bpy.context.active_object == armature and keys_per_curve(armature) == {FRAMES}
    centres = box_centres(np.load(media / "blue_boxes.npy"))
    assert np.linalg.norm(pelvis_pixels(scene, armature) - centres, axis=-1).max() < 1.0

    texts = state.summary
    assert texts[0].startswith(f"walk: {FRAMES} frames, rotations fitted")
    assert "followed person 1" in texts[0]
    assert texts[1].startswith("Clean Motion: moved joints by ") and "feet planted in L " in texts[1]
    assert texts[2] == (  # the scene takes the video's settings (Keep Scene Settings is not offered)
        f"scene settings changed: fps 24 → 25, frames 1–250 → 1–{FRAMES}, render size 1920×1080 → 160×96, camera none "
        "→ walkCamera"
    )
    assert texts[3] == f"the motion is in {state.result}"
    assert texts[-1] == f"walk.mp4 behind walk in {scene.camera.name}'s view, from frame 1, opacity 50%"
    out = capfd.readouterr().out
    assert all(f"Info: {text}" in out for text in texts)
    saved = load_motion(state.result)
    assert saved.num_frames == FRAMES and saved.image_size == SIZE and saved.fov_deg == 55.0


def test_a_phone_video_is_behind_the_armature_upright_or_the_report_says_how_to_turn_it(server, media, monkeypatch):
    """A video whose file asks for a quarter turn: the motion, the camera and the render size are upright (portrait);
    Blender 5 shows the clip turned as the file asks, Blender 4.2 does not — and the report says so, and what to do."""
    from mtvcrafter_bridge.video_import import import_video

    use_server(monkeypatch, server)
    reports, report = collect()
    import_video(bpy.context, media / "turned.mp4", wait=True, report=report)
    scene = bpy.context.scene
    assert (scene.render.resolution_x, scene.render.resolution_y) == (96, 160)
    centres = box_centres(np.load(media / "turned_boxes.npy"))  # the armature stands where the upright figure is
    assert np.linalg.norm(pelvis_pixels(scene, bpy.context.active_object) - centres, axis=-1).max() < 1.0
    clip = scene.camera.data.background_images[0].clip
    warnings = [text for kind, text in reports if kind == {"WARNING"}]
    if bpy.app.version >= (5, 0, 0):
        assert tuple(clip.size) == (96, 160) and warnings == []
    else:
        assert tuple(clip.size) == (160, 96)
        assert warnings == [
            "Blender shows turned.mp4 unturned (160×96) while its file asks for it to be turned to 96×160: turn the "
            "camera's background image with its Rotation (90°)"
        ]


def test_cancel_stops_the_extraction_on_the_server_and_nothing_is_imported(
    server, media, sample_pkl, reference_image, monkeypatch
):
    """Cancelled while it waits behind a long render on the server's one worker: the job ends cancelled, the timer
    that would build the armature stops, the scene is as it was; the panel offers Cancel while it runs."""
    from mtvcrafter_bridge import animate, video_import
    from mtvcrafter_bridge.panels import MTVCRAFTER_PT_panel
    from test_retarget import draw_panel

    use_server(monkeypatch, server)
    scene = bpy.context.scene
    before = scene_state(scene)
    with Client(server, timeout=30.0) as client:
        blocker = client.submit(
            load_motion(sample_pkl, clip=0),
            reference_image,
            {"backend": "tiny", "steps": 1000, "width": 64, "height": 64},
        )
    try:
        state = video_import.import_video(
            bpy.context, media / "walk.mp4", smoothing="one-euro", report=lambda k, t: None
        )
        deadline = time.time() + 30
        while not state.job_id and not state.error and time.time() < deadline:
            time.sleep(0.02)
        assert state.job_id, state.error
        assert httpx.get(f"{server}/v1/jobs/{state.job_id}").json()["status"] == "queued"
        operators = [
            args["operator"] for name, args in draw_panel(bpy.context, MTVCRAFTER_PT_panel) if name == "operator"
        ]
        assert "mtvcrafter.cancel_video_import" in operators
        assert bpy.ops.mtvcrafter.cancel_video_import() == {"FINISHED"}
        while video_import.job_running() and time.time() < deadline:
            time.sleep(0.02)
        assert state.status == "cancelled" and not video_import.job_running()
        assert httpx.get(f"{server}/v1/jobs/{state.job_id}").json()["status"] == "cancelled"
        assert video_import._poll_import() is None  # the timer stops, having built nothing
        assert scene_state(scene) == before and not state.result
    finally:
        httpx.delete(f"{server}/v1/jobs/{blocker['id']}")
        deadline = time.time() + 60
        while httpx.get(f"{server}/v1/jobs/{blocker['id']}").json()["status"] in animate.RUNNING:
            assert time.time() < deadline, "the server did not cancel the long job"
            time.sleep(0.05)


def test_a_server_without_a_pose_model_is_one_clear_error_and_the_scene_is_unchanged(
    media, tmp_path, monkeypatch, capfd
):
    scene = bpy.context.scene
    before = scene_state(scene)
    with local_server(tmp_path / "data", log=tmp_path / "log", python=SERVER_PYTHON) as url:
        use_server(monkeypatch, url)
        with pytest.raises(RuntimeError) as raised:
            bpy.ops.import_anim.mtvcrafter_video(filepath=str(media / "walk.mp4"), wait=True)
    message = str(raised.value).strip()
    assert message.startswith("Error: the server refused the request: this server cannot extract motion from videos")
    assert "start the server with --nlf PATH" in message and "HTTP 409" in message and "\n" not in message
    assert scene_state(scene) == before

    use_server(monkeypatch, f"http://127.0.0.1:{free_port()}")  # nobody there
    with pytest.raises(RuntimeError, match="cannot reach the server"):
        bpy.ops.import_anim.mtvcrafter_video(filepath=str(media / "walk.mp4"), wait=True)
    with pytest.raises(RuntimeError, match="the video does not exist"):
        bpy.ops.import_anim.mtvcrafter_video(filepath=str(media / "missing.mp4"), wait=True)
    assert scene_state(scene) == before


# --- Clean Motion ------------------------------------------------------------------------------------------------


def joints_of(armature):
    from mtvcrafter_bridge.import_export import motion_from_scene

    return motion_from_scene(bpy.context, armature).joints


def test_clean_motion_rewrites_the_keys_on_the_same_frames_and_reports_the_movement(sample_pkl, capfd):
    from mtvcrafter_bridge.clean import clean_armature

    assert bpy.ops.import_anim.mtvcrafter_motion(filepath=str(sample_pkl), clip_index=0) == {"FINISHED"}
    armature = bpy.context.active_object
    frames = load_motion(sample_pkl, clip=0).num_frames
    before = joints_of(armature)

    # nothing asked: the keys pose the armature as before (the fit on its own skeleton gives its pose back)
    result = clean_armature(bpy.context, smooth=0.0, feet=False, report=lambda kind, text: None)
    assert result.max_move_mm == 0.0 and np.abs(joints_of(armature) - before).max() < 0.05

    capfd.readouterr()
    assert bpy.ops.mtvcrafter.clean_motion(smooth=1.0, feet=True) == {"FINISHED"}
    out = capfd.readouterr().out
    after = joints_of(armature)
    moved = np.linalg.norm(after - before, axis=-1)
    assert keys_per_curve(armature) == {frames} and after.shape == before.shape
    assert moved.mean() > 2.0  # the keys changed
    line = next(line for line in out.splitlines() if line.startswith(f"Info: {armature.name}, frames 1–{frames}: "))
    reported = float(line.split("moved joints by ")[1].split(" mm")[0])
    assert abs(reported - moved.mean()) < 0.1 * reported + 0.1  # what the report says is what the armature shows
    assert "feet planted in L " in line
    # the feet: planted frames keep the ankles still (slower than before)
    ankles = [JOINT_NAMES.index("left_ankle"), JOINT_NAMES.index("right_ankle")]
    speed_before, speed_after = (np.linalg.norm(np.diff(j[:, ankles], axis=0), axis=-1) for j in (before, after))
    assert np.median(speed_after) < np.median(speed_before)


def test_clean_motion_as_an_import_option(sample_pkl, capfd):
    assert bpy.ops.import_anim.mtvcrafter_motion(filepath=str(sample_pkl), clip_index=0) == {"FINISHED"}
    plain = joints_of(bpy.context.active_object)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    capfd.readouterr()
    result = bpy.ops.import_anim.mtvcrafter_motion(filepath=str(sample_pkl), clip_index=0, clean=True, clean_smooth=0.5)
    assert result == {"FINISHED"}
    out = capfd.readouterr().out
    armature = bpy.context.active_object
    cleaned = joints_of(armature)
    assert cleaned.shape == plain.shape and keys_per_curve(armature) == {len(plain)}
    assert np.linalg.norm(cleaned - plain, axis=-1).mean() > 2.0
    assert "Info: Clean Motion: moved joints by " in out and "smoothing: Savitzky–Golay, 11 frames" in out


def test_the_import_menu_offers_motion_from_video_and_the_dialogs_draw():
    from types import SimpleNamespace

    from mtvcrafter_bridge.operators import IMPORT_ANIM_OT_mtvcrafter_video, menu_import
    from test_retarget import FakeLayout

    calls = []
    menu_import(SimpleNamespace(layout=FakeLayout(calls)), bpy.context)
    entries = {args["operator"]: args.get("text") for name, args in calls if name == "operator"}
    assert entries["import_anim.mtvcrafter_video"] == "MTVCrafter Motion from Video"
    rna = bpy.ops.import_anim.mtvcrafter_video.get_rna_type()
    assert {"person", "smoothing", "clean", "clean_smooth", "clean_feet", "wait"} <= set(rna.properties.keys())
    assert rna.properties["clean"].default is True  # a video's feet slide: planted by default
    assert bpy.ops.import_anim.mtvcrafter_motion.get_rna_type().properties["clean"].default is False
    IMPORT_ANIM_OT_mtvcrafter_video.draw(SimpleNamespace(layout=FakeLayout([]), bl_rna=rna), bpy.context)
