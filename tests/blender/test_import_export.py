"""Importing motion as an editable SMPL armature and exporting it back, in real Blender (headless)."""

from __future__ import annotations

import math
import time

import bpy  # collected only where bpy is installed (tests/conftest.py)
import numpy as np
import pytest
from conftest import report
from mathutils import Quaternion, Vector

from mtvcrafter.motion import JOINT_NAMES, MotionError, load_motions, save_motion
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
