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
    ((kind, text),) = reports
    assert kind == {"INFO"} and text.startswith(f"{obj.name}: {motion.num_frames} frames, rotations fitted, ")

    path = tmp_path / "script.pkl"  # the official layout: the suffix decides
    written = export_motion(clean_scene, path, obj, report=lambda kind, text: reports.append((set(kind), text)))
    (exported,) = load_motions(path)
    assert exported.num_frames == written.num_frames == motion.num_frames
    assert np.linalg.norm(exported.joints - motion.joints, axis=-1).mean() < 15.0
    assert reports[-1] == ({"INFO"}, f"wrote {path}: {motion.num_frames} frames at 30 fps")

    armatures = [o for o in bpy.data.objects if o.type == "ARMATURE"]
    with pytest.raises(MotionError, match=rf"{sample_pkl.name}: clip 9 requested, the file holds 5"):
        import_motion(clean_scene, sample_pkl, 9)
    assert [o for o in bpy.data.objects if o.type == "ARMATURE"] == armatures
