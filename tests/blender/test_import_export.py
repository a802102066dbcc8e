"""Importing motion as an editable SMPL armature and exporting it back, in real Blender (headless)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import bpy  # collected only where bpy is installed (tests/conftest.py)
import numpy as np
import pytest
from conftest import report
from mathutils import Quaternion, Vector

from mtvcrafter.motion import JOINT_NAMES, MotionError, load_motion, load_motions, save_motion
from mtvcrafter.motion.skeleton import PARENTS

HEADING = f"Blender add-on: import and export (bpy {bpy.app.version_string}, headless)"


@pytest.fixture(scope="module", autouse=True)
def addon():
    import mtvcrafter_bridge

    mtvcrafter_bridge.register()
    yield
    mtvcrafter_bridge.unregister()


def fcurves_of(obj):
    from mtvcrafter_bridge.armature import fcurves

    return fcurves(obj)


def export(tmp_path, name="out.npz"):
    path = tmp_path / name
    assert bpy.ops.export_anim.mtvcrafter_motion(filepath=str(path)) == {"FINISHED"}
    return load_motions(path)[0]


@pytest.mark.parametrize("clip", range(5))
def test_each_sample_clip_imports_keyed_every_frame_and_exports_back(clean_scene, sample_pkl, tmp_path, clip):
    motion = load_motions(sample_pkl)[clip]
    start = time.perf_counter()
    assert bpy.ops.import_anim.mtvcrafter_motion(filepath=str(sample_pkl), clip_index=clip) == {"FINISHED"}
    elapsed = time.perf_counter() - start
    obj = bpy.context.active_object
    assert obj.type == "ARMATURE" and sorted(b.name for b in obj.data.bones) == sorted(JOINT_NAMES)
    for bone in obj.data.bones:
        parent = PARENTS[JOINT_NAMES.index(bone.name)]
        assert (bone.parent.name if bone.parent else None) == (JOINT_NAMES[parent] if parent >= 0 else None)
    curves = fcurves_of(obj)
    assert len(curves) == 24 * 4 + 3
    assert all(len(c.keyframe_points) == motion.num_frames for c in curves)  # one key per frame
    scene = bpy.context.scene
    assert (scene.frame_start, scene.frame_end) == (1, motion.num_frames)
    assert scene.render.fps == 30 and scene.camera is not None
    assert (scene.render.resolution_y, scene.render.resolution_x) == motion.image_size
    assert math.isclose(math.degrees(scene.camera.data.angle), 55.0, rel_tol=1e-6)

    exported = export(tmp_path)
    error = np.linalg.norm(exported.joints - motion.joints, axis=-1).mean()
    report(HEADING, f"clip {clip}: {motion.num_frames} frames imported in {elapsed:.2f} s, round trip {error:.2f} mm")
    assert error < 15.0
    assert exported.num_frames == motion.num_frames and exported.fps == 30 and exported.frame_start == 1
    assert exported.image_size == motion.image_size


def test_rotating_the_left_elbow_moves_only_the_left_forearm(clean_scene, sample_pkl, tmp_path):
    assert bpy.ops.import_anim.mtvcrafter_motion(filepath=str(sample_pkl), clip_index=0) == {"FINISHED"}
    obj = bpy.context.active_object
    before = export(tmp_path, "before.npz").joints
    frame = 40
    bone = obj.pose.bones["left_elbow"]
    bpy.context.scene.frame_set(frame)
    bone.rotation_quaternion = Quaternion(Vector((1.0, 0.0, 0.0)), math.radians(30)) @ bone.rotation_quaternion
    bone.keyframe_insert("rotation_quaternion", frame=frame)
    after = export(tmp_path, "after.npz").joints
    moved = np.linalg.norm(after - before, axis=-1) > 1e-3  # mm
    changed = {(t, JOINT_NAMES[j]) for t, j in zip(*np.nonzero(moved), strict=True)}
    assert changed == {(frame - 1, "left_wrist"), (frame - 1, "left_hand")}


def test_a_second_import_adds_a_new_armature_and_undo_is_available(clean_scene, sample_pkl, tmp_path):
    bpy.ops.import_anim.mtvcrafter_motion(filepath=str(sample_pkl), clip_index=0)
    first = bpy.context.active_object.name
    bpy.ops.import_anim.mtvcrafter_motion(filepath=str(sample_pkl), clip_index=1)
    second = bpy.context.active_object.name
    assert first != second and first in bpy.data.objects and second in bpy.data.objects
    assert len(fcurves_of(bpy.data.objects[first])[0].keyframe_points) == 127  # untouched by the second import
    cameras = [o for o in bpy.data.objects if o.type == "CAMERA"]
    assert len(cameras) == 2  # clips 0 and 1 were filmed differently
    bpy.ops.import_anim.mtvcrafter_motion(filepath=str(sample_pkl), clip_index=0)
    assert len([o for o in bpy.data.objects if o.type == "CAMERA"]) == 2  # the same view: its camera is reused
    assert "UNDO" in bpy.types.IMPORT_ANIM_OT_mtvcrafter_motion.bl_options


def test_bad_files_are_reported_not_raised(clean_scene, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a motion")
    with pytest.raises(RuntimeError, match="bad.npz"):  # operator errors surface as RuntimeError in scripts
        bpy.ops.import_anim.mtvcrafter_motion(filepath=str(bad))
    assert not [o for o in bpy.data.objects if o.type == "ARMATURE"]


def test_import_of_a_10000_frame_motion(clean_scene, sample_pkl, tmp_path):
    motions = load_motions(sample_pkl)
    joints = np.concatenate([m.joints for m in motions] * 6)[:10_000]
    long = motions[0].with_joints(joints)
    path = tmp_path / "long.npz"
    save_motion(long, path)
    start = time.perf_counter()
    assert bpy.ops.import_anim.mtvcrafter_motion(filepath=str(path)) == {"FINISHED"}
    elapsed = time.perf_counter() - start
    report(HEADING, f"10,000-frame import: {elapsed:.2f} s")
    assert len(fcurves_of(bpy.context.active_object)[0].keyframe_points) == 10_000


def test_the_import_report_says_rotations_came_from_the_file_only_when_they_did(
    clean_scene, sample_motions, tmp_path, capfd
):
    """Rotations without the rest skeleton and root translation they go with are fitted again (skeleton_of): the
    report must say so, with the fit error, rather than 'rotations from the file'."""
    from dataclasses import replace

    from mtvcrafter.motion import inverse_kinematics
    from mtvcrafter.motion.rig import with_skeleton

    motion = sample_motions[0]
    whole = with_skeleton(motion, inverse_kinematics(motion.joints))
    reports = {}
    for name, carried in (("whole", whole), ("rotations_only", replace(whole, rest_offsets=None))):
        save_motion(carried, tmp_path / f"{name}.npz")
        capfd.readouterr()
        assert bpy.ops.import_anim.mtvcrafter_motion(filepath=str(tmp_path / f"{name}.npz")) == {"FINISHED"}
        reports[name] = capfd.readouterr().out
    assert "rotations from the file" in reports["whole"]
    fitted = reports["rotations_only"]
    assert "rotations fitted" in fitted and "rotations from the file" not in fitted


def test_blenders_bvh_importer_reads_our_bvh_of_the_same_skeleton(clean_scene, sample_motions, tmp_path):
    from mtvcrafter.motion import inverse_kinematics
    from mtvcrafter.motion.bvh import write_bvh
    from mtvcrafter.motion.rig import with_skeleton

    motion = sample_motions[4]
    fit = inverse_kinematics(motion.joints)
    rotated = with_skeleton(motion, fit)
    path = write_bvh(rotated, tmp_path / "m.bvh")
    assert bpy.ops.import_anim.bvh(filepath=str(path)) == {"FINISHED"}
    armature = bpy.context.active_object
    assert sorted(b.name for b in armature.data.bones) == sorted(JOINT_NAMES)
    assert len(fcurves_of(armature)[0].keyframe_points) == motion.num_frames


@pytest.mark.parametrize("clip", [0, 3])
def test_blenders_bvh_importer_shows_our_bvh_standing_upright(clean_scene, sample_motions, tmp_path, clip):
    """Our BVH is Y up, as BVH files are: Blender's importer (Y up → its Z up, the file's +Z → its −Y) shows the
    figure standing — the head above the pelvis, the feet below it — and facing its front view (−Y, left at +X)."""
    from mtvcrafter.motion import inverse_kinematics
    from mtvcrafter.motion.bvh import write_bvh
    from mtvcrafter.motion.rig import with_skeleton

    motion = sample_motions[clip]
    path = write_bvh(with_skeleton(motion, inverse_kinematics(motion.joints)), tmp_path / "m.bvh")
    assert bpy.ops.import_anim.bvh(filepath=str(path)) == {"FINISHED"}
    armature = bpy.context.active_object
    scene = bpy.context.scene
    frames = np.linspace(1, motion.num_frames, 6).round().astype(int)
    for frame in frames:
        scene.frame_set(int(frame))
        at = {name: armature.matrix_world @ armature.pose.bones[name].head for name in JOINT_NAMES}
        pelvis = at["pelvis"]
        assert at["head"].z > pelvis.z + 30.0, (frame, at["head"], pelvis)  # centimetres: the file's unit
        assert at["neck"].z > pelvis.z
        for foot in ("left_ankle", "right_ankle", "left_foot", "right_foot"):
            assert at[foot].z < pelvis.z - 30.0, (frame, foot, at[foot], pelvis)
        assert at["left_hip"].x > at["right_hip"].x  # facing −Y: the body's left at +X
    report(
        HEADING,
        f"clip {clip}: our BVH through Blender's importer: head above, feet below the pelvis on {len(frames)} frames",
    )


def test_export_goes_through_the_armatures_own_camera_in_a_default_scene(sample_pkl, tmp_path):
    bpy.ops.wm.read_factory_settings(use_empty=False)  # the startup file: cube, light and its own camera
    motions = load_motions(sample_pkl)
    assert bpy.ops.import_anim.mtvcrafter_motion(filepath=str(sample_pkl), clip_index=0) == {"FINISHED"}
    first = bpy.context.active_object
    assert bpy.context.scene.camera.name == first["mtvcrafter_camera_name"]
    assert bpy.ops.import_anim.mtvcrafter_motion(filepath=str(sample_pkl), clip_index=3) == {"FINISHED"}
    bpy.context.view_layer.objects.active = first
    bpy.context.scene.frame_start, bpy.context.scene.frame_end = 1, motions[0].num_frames
    exported = export(tmp_path, "first.npz")
    assert np.linalg.norm(exported.joints - motions[0].joints, axis=-1).mean() < 15.0


@pytest.mark.parametrize("fit", ["HORIZONTAL", "VERTICAL"])
def test_the_exported_field_of_view_is_across_the_larger_side_for_any_sensor_fit(
    clean_scene, sample_pkl, tmp_path, fit
):
    assert bpy.ops.import_anim.mtvcrafter_motion(filepath=str(sample_pkl), clip_index=0) == {"FINISHED"}
    scene = bpy.context.scene
    data = scene.camera.data
    width, height = scene.render.resolution_x, scene.render.resolution_y  # 604 × 1080: portrait
    half = math.tan(math.radians(55.0) / 2)  # the same view, described along the other side
    data.sensor_fit = fit
    if fit == "HORIZONTAL":
        data.sensor_width = 36.0
        data.angle_x = 2 * math.atan(half * width / height)
    else:
        data.sensor_height = 24.0
        data.angle_y = 2 * math.atan(half)
    exported = export(tmp_path, f"{fit}.npz")
    assert math.isclose(exported.fov_deg, 55.0, abs_tol=1e-4)


def test_import_motion_and_export_motion_called_from_a_script(clean_scene, sample_pkl, tmp_path):
    """The functions under File › Import/Export: an armature keyed on every frame and its report; the exported
    file holds the motion; a bad clip index is one error naming the file, and nothing is left half-made."""
    from mtvcrafter_bridge.import_export import export_motion, import_motion

    motion = load_motions(sample_pkl)[2]
    reports = []
    obj = import_motion(clean_scene, sample_pkl, 2, report=lambda kind, text: reports.append((set(kind), text)))
    assert obj == bpy.context.active_object and obj.type == "ARMATURE" and len(obj.data.bones) == 24
    assert all(len(c.keyframe_points) == motion.num_frames for c in fcurves_of(obj))
    (kind, text), changed = reports
    assert kind == {"INFO"} and text.startswith(f"{obj.name}: {motion.num_frames} frames, rotations fitted, ")
    height, width = motion.image_size
    assert changed == (  # an empty factory scene: 24 fps, frames 1–250, 1920×1080, no camera
        {"INFO"},
        f"scene settings changed: fps 24 → 30, frames 1–250 → 1–{motion.num_frames}, render size 1920×1080 → "
        f"{width}×{height}, camera none → {bpy.context.scene.camera.name} (Keep Scene Settings imports without "
        "changing them)",
    )
    reports.clear()

    path = tmp_path / "script.pkl"  # the official layout: the suffix decides
    written = export_motion(clean_scene, path, obj, report=lambda kind, text: reports.append((set(kind), text)))
    (exported,) = load_motions(path)
    assert exported.num_frames == written.num_frames == motion.num_frames
    assert np.linalg.norm(exported.joints - motion.joints, axis=-1).mean() < 15.0
    assert reports == [({"INFO"}, f"wrote {path}: {motion.num_frames} frames at 30 fps")]

    armatures = [o for o in bpy.data.objects if o.type == "ARMATURE"]
    with pytest.raises(MotionError, match=rf"{sample_pkl.name}: clip 9 requested, the file holds 5"):
        import_motion(clean_scene, sample_pkl, 9)
    assert [o for o in bpy.data.objects if o.type == "ARMATURE"] == armatures


# --- the scene's settings: what an import changes, and Keep Scene Settings ----------------------------------------


def settings_of(scene) -> tuple:
    render = scene.render
    return (
        render.fps,
        render.fps_base,
        scene.frame_start,
        scene.frame_end,
        render.resolution_x,
        render.resolution_y,
        render.resolution_percentage,
        scene.camera,
    )


def test_an_import_into_the_startup_scene_reports_every_setting_it_changed(sample_pkl, capfd):
    """A first run: the startup file (24 fps, frames 1–250, 1920×1080, its own camera). The import asks nothing but
    says what it changed, old → new; the startup camera stays, no longer the scene camera."""
    bpy.ops.wm.read_factory_settings(use_empty=False)
    motion = load_motions(sample_pkl)[0]
    capfd.readouterr()
    assert bpy.ops.import_anim.mtvcrafter_motion(filepath=str(sample_pkl), clip_index=0) == {"FINISHED"}
    out = capfd.readouterr().out
    scene = bpy.context.scene
    height, width = motion.image_size
    line = (
        f"Info: scene settings changed: fps 24 → 30, frames 1–250 → 1–{motion.num_frames}, render size 1920×1080 → "
        f"{width}×{height}, camera Camera → {scene.camera.name} (Keep Scene Settings imports without changing them)"
    )
    assert line in out.splitlines()
    assert "Camera" in bpy.data.objects and scene.camera.name != "Camera"


def test_keep_scene_settings_resamples_the_motion_to_the_scene_and_changes_nothing(sample_pkl, tmp_path, capfd):
    """Keep Scene Settings: frame rate, range, render size and scene camera as they were; the 30 fps motion is keyed
    at the scene's 24 fps over the same time (as Animate samples for another rate), seen through the scene camera.
    Each kept frame is the motion at that moment: frame 1 + 4k is the motion's frame 1 + 5k, equal to an ordinary
    import's key there."""
    motion = load_motions(sample_pkl)[0]  # 127 frames at 30 fps
    bpy.ops.wm.read_factory_settings(use_empty=False)
    assert bpy.ops.import_anim.mtvcrafter_motion(filepath=str(sample_pkl), clip_index=0) == {"FINISHED"}
    ordinary = export(tmp_path, "ordinary.npz")

    bpy.ops.wm.read_factory_settings(use_empty=False)
    scene = bpy.context.scene
    scene.render.resolution_percentage = 50
    before = settings_of(scene)
    cameras = {o.name for o in bpy.data.objects if o.type == "CAMERA"}
    capfd.readouterr()
    result = bpy.ops.import_anim.mtvcrafter_motion(filepath=str(sample_pkl), clip_index=0, keep_scene_settings=True)
    assert result == {"FINISHED"}
    out = capfd.readouterr().out
    obj = bpy.context.active_object
    assert settings_of(scene) == before and scene.camera.name == "Camera"
    assert {o.name for o in bpy.data.objects if o.type == "CAMERA"} == cameras  # no camera added
    frames = round(motion.num_frames * 24 / 30)  # 102: the same 4.23 s at 24 fps
    curves = fcurves_of(obj)
    assert all(len(c.keyframe_points) == frames for c in curves)
    keys = np.empty(2 * frames)
    curves[0].keyframe_points.foreach_get("co", keys)
    np.testing.assert_array_equal(keys[0::2], np.arange(1, frames + 1))  # one key per whole scene frame
    assert f"Info: {obj.name}: {frames} frames, resampled from 127 at 30 fps, rotations fitted, " in out
    assert "Info: scene settings kept: fps 24, frames 1–250, render size 1920×1080 at 50%, camera Camera" in out

    scene.frame_start, scene.frame_end = 1, frames
    kept = export(tmp_path, "kept.npz")
    assert kept.fps == 24 and kept.num_frames == frames
    same_moments = np.arange(0, frames, 4)  # 24 fps frame 4k = 30 fps frame 5k
    assert np.abs(kept.joints[same_moments] - ordinary.joints[same_moments * 5 // 4]).max() < 0.5  # mm
    error = np.linalg.norm(kept.joints[same_moments] - motion.joints[same_moments * 5 // 4], axis=-1).mean()
    report(
        HEADING, f"Keep Scene Settings (30 → 24 fps, scene camera): {error:.2f} mm from the motion at the same moments"
    )
    assert error < 15.0


def test_keep_scene_settings_in_a_scene_without_a_camera_adds_only_the_camera(clean_scene, sample_pkl, capfd):
    scene = clean_scene.scene
    scene.render.fps = 30
    capfd.readouterr()
    assert bpy.ops.import_anim.mtvcrafter_motion(filepath=str(sample_pkl), clip_index=1, keep_scene_settings=True)
    out = capfd.readouterr().out
    assert (scene.frame_start, scene.frame_end, scene.render.resolution_x, scene.render.resolution_y) == (
        1,
        250,
        1920,
        1080,
    )
    assert scene.camera is not None  # the motion's camera: there was none to keep
    obj = bpy.context.active_object
    assert len(fcurves_of(obj)[0].keyframe_points) == 299  # the same rate: nothing resampled
    assert (
        f"Info: scene settings kept: fps 30, frames 1–250, render size 1920×1080; changed: camera none → "
        f"{scene.camera.name}; the motion's frames 1–299 reach past the scene's range"
    ) in out


# --- motion from other tools: HumanML3D joint positions, AIST++ SMPL parameters, MDM's results.npy ----------------

REALWORLD = Path(__file__).resolve().parents[3] / "shared" / "data" / "realworld"
HUMANML3D = REALWORLD / "humanml3d_new_joints_012314.npy"
AISTPP = REALWORLD / "aistpp_gBR_sBM_cAll_d04_mBR0_ch01.pkl"
needs_realworld = pytest.mark.skipif(
    not (HUMANML3D.is_file() and AISTPP.is_file()), reason="the real-world motion files are not beside the checkout"
)
#: Blender's camera axes (x right, y up, looking down −z) to OpenCV's (x right, y down, z ahead), the motions'.
BLENDER_TO_OPENCV = np.diag([1.0, -1.0, -1.0])


def seen_through_the_scene_camera(context, obj) -> tuple[np.ndarray, np.ndarray]:
    """The armature's evaluated bone heads (SMPL joint order) on every frame of the scene's range, as Blender's own
    matrices place them: in the scene camera's OpenCV axes, mm ``(F, 24, 3)``, and in its view (0..1 across the
    frame, y up; Blender's ``world_to_camera_view``) ``(F, 24, 2)``."""
    from bpy_extras.object_utils import world_to_camera_view

    scene = context.scene
    camera = scene.camera
    frames = range(scene.frame_start, scene.frame_end + 1)
    camera_mm, view = np.empty((len(frames), 24, 3)), np.empty((len(frames), 24, 2))
    for t, frame in enumerate(frames):
        scene.frame_set(frame)
        depsgraph = context.evaluated_depsgraph_get()
        evaluated, lens = obj.evaluated_get(depsgraph), camera.evaluated_get(depsgraph)
        to_camera = lens.matrix_world.inverted()
        for j, name in enumerate(JOINT_NAMES):
            world = evaluated.matrix_world @ evaluated.pose.bones[name].head
            camera_mm[t, j] = BLENDER_TO_OPENCV @ np.array(to_camera @ world) * 1000.0
            view[t, j] = world_to_camera_view(scene, lens, world)[:2]
    return camera_mm, view


def lean_deg(view: np.ndarray) -> np.ndarray:
    """Per frame, how far the line from the ankles' midpoint to the head leans from the frame's up, degrees
    (180: upside down)."""
    ankles = (view[:, JOINT_NAMES.index("left_ankle")] + view[:, JOINT_NAMES.index("right_ankle")]) / 2
    up = view[:, JOINT_NAMES.index("head")] - ankles
    return np.degrees(np.arctan2(np.abs(up[:, 0]), up[:, 1]))


@needs_realworld
@pytest.mark.parametrize(("path", "fps"), [(HUMANML3D, 20), (AISTPP, 60)], ids=["humanml3d-npy", "aistpp-pkl"])
def test_humanml3d_joints_and_aistpp_parameters_import_as_their_motion_upright(clean_scene, path, fps, capfd):
    """A real HumanML3D ``new_joints`` .npy (22 joints, metres, Y up, 20 fps) and a real AIST++ SMPL pickle (60 fps):
    an armature keyed once per frame, the scene at the file's rate, its joints as Blender evaluates them equal to
    the motion the library reads, and the performer standing up in the camera view."""
    motion = load_motion(path)
    capfd.readouterr()
    start = time.perf_counter()
    assert bpy.ops.import_anim.mtvcrafter_motion(filepath=str(path)) == {"FINISHED"}
    elapsed = time.perf_counter() - start
    out = capfd.readouterr().out
    obj = bpy.context.active_object
    scene = bpy.context.scene
    assert obj.type == "ARMATURE" and sorted(b.name for b in obj.data.bones) == sorted(JOINT_NAMES)
    curves = fcurves_of(obj)
    keys = np.empty(2 * motion.num_frames)
    curves[0].keyframe_points.foreach_get("co", keys)
    np.testing.assert_array_equal(keys[0::2], np.arange(1, motion.num_frames + 1))  # one key per frame
    assert all(len(c.keyframe_points) == motion.num_frames for c in curves)
    assert scene.render.fps / scene.render.fps_base == fps
    assert (scene.frame_start, scene.frame_end) == (1, motion.num_frames)
    assert f"Info: {obj.name}: {motion.num_frames} frames, rotations from the file;" in out

    joints_mm, view = seen_through_the_scene_camera(bpy.context, obj)
    error = np.linalg.norm(joints_mm - motion.joints, axis=-1)
    lean = lean_deg(view)
    report(
        HEADING,
        f"{path.name}: {motion.num_frames} frames at {fps} fps imported in {elapsed:.2f} s; evaluated joints max "
        f"{error.max():.3f} mm from the library's; lean in the camera view median {np.median(lean):.1f}°, max "
        f"{lean.max():.1f}°",
    )
    assert error.max() < 1.0
    assert np.median(lean) < 15.0 and lean.max() < 45.0  # standing up in the camera view, never upside down
    assert ((view > 0.0) & (view < 1.0)).all()  # and inside the frame


def mdm_results(source: np.ndarray, starts: list[int], lengths: list[int], texts: list[str]) -> dict:
    """MDM's ``results.npy`` dict: ``motion (samples, 22, 3, frames)`` in metres, Y up, each sample a stretch of
    ``source (F, 22, 3)`` padded with its last pose to the longest."""
    frames = max(lengths)
    motion = np.empty((len(lengths), 22, 3, frames), dtype=np.float32)
    for i, (first, length) in enumerate(zip(starts, lengths, strict=True)):
        clip = source[first : first + length]
        padded = np.concatenate([clip, np.repeat(clip[-1:], frames - length, axis=0)])
        motion[i] = np.moveaxis(padded, 0, -1)
    return {"motion": motion, "text": texts, "lengths": np.array(lengths), "num_samples": len(lengths),
            "num_repetitions": 1}  # fmt: skip


@needs_realworld
def test_clip_1_of_an_mdm_results_npy_imports_as_that_sample(clean_scene, tmp_path):
    """MDM writes several samples into one ``results.npy``: the Clip option picks one; it is imported at its own
    length (not the padded one), at 20 fps, as the library reads that sample; a clip past the last is one error."""
    source = np.load(HUMANML3D)
    texts = ["a person walks forward", "a person turns around and sits down", "a person jumps"]
    path = tmp_path / "results.npy"
    np.save(path, mdm_results(source, [0, 40, 100], [120, 90, 60], texts), allow_pickle=True)
    motion = load_motions(path)[1]
    assert bpy.ops.import_anim.mtvcrafter_motion(filepath=str(path), clip_index=1) == {"FINISHED"}
    obj = bpy.context.active_object
    scene = bpy.context.scene
    assert obj.name.startswith(texts[1][:20])  # named after its text
    assert all(len(c.keyframe_points) == 90 for c in fcurves_of(obj))
    assert scene.render.fps == 20 and (scene.frame_start, scene.frame_end) == (1, 90)
    joints_mm, view = seen_through_the_scene_camera(bpy.context, obj)
    error = np.linalg.norm(joints_mm - motion.joints, axis=-1)
    # the sample itself: its bones as long as in the file's frames 40–129, in metres
    pairs = [(j, p) for j, p in enumerate(PARENTS[:22]) if p >= 0]
    in_file = np.linalg.norm(source[40:130, [j for j, _ in pairs]] - source[40:130, [p for _, p in pairs]], axis=-1)
    imported = np.linalg.norm(joints_mm[:, [j for j, _ in pairs]] - joints_mm[:, [p for _, p in pairs]], axis=-1)
    report(HEADING, f"MDM results.npy, clip 1 of 3 (90 frames): evaluated joints max {error.max():.3f} mm off")
    assert error.max() < 1.0
    assert np.abs(imported / 1000.0 - in_file).max() < 0.01
    assert np.median(lean_deg(view)) < 15.0

    with pytest.raises(RuntimeError, match=r"results\.npy: clip 3 requested, the file holds 3"):
        bpy.ops.import_anim.mtvcrafter_motion(filepath=str(path), clip_index=3)


@needs_realworld
def test_up_and_unit_reach_the_files_they_apply_to_and_are_ignored_by_the_others(sample_pkl, tmp_path):
    """The import's Up and Unit options: Up turns a joint-position .npy and an AIST++ pickle as the library turns them
    (told Z up, a Y-up performer lies down); Unit scales a .npy (centimetres read as inches: 2.54 times as tall);
    an official pickle, seen through its camera, takes neither: set, they are ignored and the import is the
    ordinary one."""
    from mtvcrafter_bridge.import_export import import_motion

    in_cm = tmp_path / "joints_cm.npy"
    np.save(in_cm, np.load(HUMANML3D) * 100.0)
    statures = {}
    for path, options, library in (
        (HUMANML3D, {"up_axis": "Z"}, {"up": "Z"}),
        (AISTPP, {"up_axis": "Z"}, {"up": "Z"}),
        (in_cm, {}, {}),
        (in_cm, {"unit": "inch"}, {"unit": "inch"}),
        (sample_pkl, {"up_axis": "Z", "unit": "inch"}, {}),
    ):
        bpy.ops.wm.read_factory_settings(use_empty=True)
        expected = load_motion(path, **library)
        obj = import_motion(bpy.context, path, **options, report=lambda kind, text: None)
        joints_mm, view = seen_through_the_scene_camera(bpy.context, obj)
        error = np.linalg.norm(joints_mm - expected.joints, axis=-1).mean()
        assert error < (15.0 if path == sample_pkl else 1.0), (path.name, options, error)
        lying = np.median(lean_deg(view)) > 45.0
        assert lying == ("up" in library), (path.name, options)  # lying only where told Z up
        pelvis_to_head = joints_mm[:, JOINT_NAMES.index("head")] - joints_mm[:, JOINT_NAMES.index("pelvis")]
        statures[path.name, options.get("unit")] = np.median(np.linalg.norm(pelvis_to_head, axis=-1))
    assert statures["joints_cm.npy", "inch"] / statures["joints_cm.npy", None] == pytest.approx(2.54, rel=1e-3)


@needs_realworld
def test_the_import_report_gives_the_motions_quality_and_warns_of_a_wrong_up_axis(clean_scene):
    """The first report line says the body's stature and that it stands upright; a BVH read with the wrong up axis
    imports (a warning, not a refusal) and its last report line, a warning, names the Up option to try."""
    from mtvcrafter_bridge.import_export import import_motion

    bvh = REALWORLD / "mixamo_test_freebvh.bvh"
    reports = []
    import_motion(clean_scene, bvh, report=lambda kind, text: reports.append((set(kind), text)))
    first = reports[0][1]
    assert "upright" in first and " m, " in first and not any("WARNING" in kind for kind, _ in reports)
    reports.clear()
    obj = import_motion(clean_scene, bvh, up_axis="-Y", report=lambda kind, text: reports.append((set(kind), text)))
    assert obj is not None and obj.type == "ARMATURE"
    kind, last = reports[-1]
    assert kind == {"WARNING"} and "upside down" in last and "Up" in last
