"""Building the SMPL armature, keying it fast, reading it back (bpy side of :mod:`mtvcrafter.motion.rig`)."""

from __future__ import annotations

import math

import bpy
import numpy as np
from mathutils import Matrix, Vector

from mtvcrafter.motion import Motion
from mtvcrafter.motion.camera import (
    BLENDER_CAMERA_AXES,
    DEFAULT_FOV_DEG,
    CameraPlacement,
    camera_for_motion,
    world_to_camera_mm,
)
from mtvcrafter.motion.kinematics import SkeletonFit
from mtvcrafter.motion.rig import BODY_TO_BLENDER, pose_channels, rest_bones, skeleton_of
from mtvcrafter.motion.skeleton import JOINT_NAMES, NUM_JOINTS, PARENTS

#: Custom properties marking our objects (and the camera an armature belongs to).
SMPL_TAG = "mtvcrafter_smpl"
CAMERA_TAG = "mtvcrafter_camera"


def _ensure_fcurves(obj, paths: list[tuple[str, int, str]]):
    """F-curves for ``(data_path, index, group)`` on the object's action: layered actions (4.4+) or
    ``Action.fcurves`` (4.2)."""
    anim = obj.animation_data or obj.animation_data_create()
    action = anim.action
    if action is None:
        action = bpy.data.actions.new(f"{obj.name}Action")
        anim.action = action
    if hasattr(action, "slots"):
        from bpy_extras import anim_utils

        slot = anim.action_slot
        if slot is None:
            slot = action.slots.new(id_type="OBJECT", name=obj.name)
            anim.action_slot = slot
        bag = anim_utils.action_ensure_channelbag_for_slot(action, slot)
        curves = bag.fcurves

        def new(path, index, group):
            return curves.find(path, index=index) or curves.new(path, index=index, group_name=group)
    else:  # Blender 4.2 / 4.3

        def new(path, index, group):
            return action.fcurves.find(path, index=index) or action.fcurves.new(path, index=index, action_group=group)

    return [new(p, i, g) for p, i, g in paths]


def fcurves(obj) -> list:
    """The F-curves animating ``obj`` through its action (its slot's channelbag in 4.4+, ``Action.fcurves`` in 4.2)."""
    anim = obj.animation_data
    action = anim.action if anim is not None else None
    if action is None:
        return []
    if hasattr(action, "slots"):
        from bpy_extras import anim_utils

        bag = anim_utils.action_get_channelbag_for_slot(action, anim.action_slot)
        return list(bag.fcurves) if bag is not None else []
    return list(action.fcurves)


def write_keys(obj, frames: np.ndarray, paths: list[tuple[str, int, str]], values: np.ndarray) -> None:
    """Key every channel ``paths[i]`` = (data path, index, group) at ``frames`` (increasing, a frame or more
    apart) with ``values[i]`` (``(channels, frames)``), in one bulk write per curve (``keyframe_points.add`` +
    ``foreach_set``); the keys there before on those channels are replaced."""
    frames = np.asarray(frames, dtype=np.float64)
    if np.any(np.diff(frames) < 1.0):
        raise ValueError("keys are written one per frame, in increasing order of frame")
    curves = _ensure_fcurves(obj, paths)
    count = len(frames)
    # (frame, value) pairs of every curve, laid out once so each curve's write is a contiguous view
    co = np.empty((len(paths), count, 2), dtype=np.float32)
    co[:, :, 0] = frames
    co[:, :, 1] = values
    co = co.reshape(len(paths), 2 * count)
    # Blender's default interpolation (Bézier, auto-clamped handles): with a key on every frame it passes through
    # every key exactly, holds its extremes flat (no overshoot past them), and stays smooth between frames (motion
    # blur, retiming). The handles are the classic local ones (F-curve smoothing "None": each key's from its two
    # neighbours, so editing a key reshapes only the curve next to it). Blender's preference for new curves,
    # "Continuous Acceleration", solves a system along each stretch between extremes instead: halfway between the
    # keys of the sample clips the bones' rotations differ by under 0.08° at each clip's median (at most 3.8°, in a
    # fast turn), and it takes twice the storing time (40 ms more for 10,000 frames).
    for curve, pairs in zip(curves, co, strict=True):
        points = curve.keyframe_points
        if len(points):
            points.clear()
        curve.auto_smoothing = "NONE"
        points.add(count)
        points.foreach_set("co", pairs)
        # the handles computed as if keyed by hand; FCurve.update() would also sort the keys and merge those
        # under 0.01 frame apart, which keys in order a frame apart never need
        points.handles_recalc()


def _matching_camera(scene, angle: float, matrix: Matrix):
    """One of our cameras in the scene with this field of view and placement, if any."""
    for obj in scene.objects:
        if obj.type == "CAMERA" and obj.get(CAMERA_TAG) and abs(obj.data.angle - angle) < 1e-6:
            if all(
                abs(a - b) < 1e-5
                for row_a, row_b in zip(obj.matrix_world, matrix, strict=True)
                for a, b in zip(row_a, row_b, strict=True)
            ):
                return obj
    return None


def ensure_camera(scene, motion: Motion, placement: CameraPlacement, name: str, resolution: bool = True):
    """A camera matching the motion's (field of view on the larger side, render size = source video size unless
    ``resolution`` is False): an existing one of ours with the same view, else a new one; the scene camera."""
    angle = math.radians(motion.fov_deg or DEFAULT_FOV_DEG)
    rotation = Matrix(placement.blender_rotation.tolist()).to_4x4()
    matrix = Matrix.Translation(Vector(placement.position.tolist())) @ rotation
    existing = _matching_camera(scene, angle, matrix)
    if existing is not None:
        scene.camera = existing
        if resolution:
            _set_resolution(scene, motion)
        return existing
    data = bpy.data.cameras.new(name)
    data.sensor_fit = "AUTO"
    data.angle = angle
    camera = bpy.data.objects.new(name, data)
    scene.collection.objects.link(camera)
    camera.matrix_world = matrix
    camera[CAMERA_TAG] = True
    scene.camera = camera  # the motion is seen, and exported, through it
    if resolution:
        _set_resolution(scene, motion)
    return camera


def _set_resolution(scene, motion: Motion) -> None:
    if motion.image_size is not None:
        height, width = motion.image_size
        scene.render.resolution_x, scene.render.resolution_y = int(width), int(height)
        scene.render.resolution_percentage = 100


def build_armature(
    context,
    motion: Motion,
    name: str | None = None,
    frame_start: int | None = None,
    camera=None,
    *,
    keep_scene: bool = False,
):
    """An editable SMPL-24 armature keyed with the motion (IK fit), and its camera. Returns (armature, camera, fit).

    ``camera``: place the motion as seen by this existing camera (no new camera, scene settings kept).
    ``keep_scene``: the scene's frame rate, frame range and render size are left as they are (the keys stay one
    per motion frame: :func:`retime_keys` resamples them); a camera matching the motion's is still made (the scene
    camera when there is none to see it through)."""
    scene = context.scene
    fit = skeleton_of(motion)
    placement = camera_placement(camera) if camera is not None else camera_for_motion(motion.joints)
    name = name or (motion.name or "SMPL")
    data = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, data)
    scene.collection.objects.link(obj)
    obj[SMPL_TAG] = True
    view_layer = context.view_layer
    previous_active = view_layer.objects.active
    view_layer.objects.active = obj
    previous_mode = obj.mode
    bpy.ops.object.mode_set(mode="EDIT")
    edit_bones = data.edit_bones
    for bone_name, parent, head, tail in rest_bones(fit.rest_offsets):
        bone = edit_bones.new(bone_name)
        bone.head, bone.tail = Vector(head.tolist()), Vector(tail.tolist())
        direction = tail - head
        # rolls: bone Z towards the character's front (−Y), or up for bones lying along Y (feet)
        axis = Vector((0.0, 0.0, 1.0)) if abs(direction[1]) > 0.7 * np.linalg.norm(direction) else Vector((0, -1, 0))
        bone.align_roll(axis)
        if parent >= 0:
            bone.parent = edit_bones[JOINT_NAMES[parent]]
            bone.use_connect = False
    bpy.ops.object.mode_set(mode=previous_mode if previous_mode != "EDIT" else "OBJECT")
    view_layer.objects.active = previous_active or obj

    start = frame_start if frame_start is not None else (motion.frame_start if motion.frame_start is not None else 1)
    key_pose(obj, fit, placement, start)

    if camera is not None:
        obj["mtvcrafter_camera_name"] = camera.name
        return obj, camera, fit
    camera = ensure_camera(scene, motion, placement, f"{name}Camera", resolution=not keep_scene)
    obj["mtvcrafter_camera_name"] = camera.name
    obj["mtvcrafter_fps"] = float(motion.fps)
    if not keep_scene:
        scene.render.fps, scene.render.fps_base = fps_fraction(motion.fps)
        scene.frame_start, scene.frame_end = int(start), int(start + motion.num_frames - 1)
    return obj, camera, fit


def key_pose(obj, fit: SkeletonFit, placement: CameraPlacement, frame_start: int) -> None:
    """Key the SMPL armature ``obj`` with ``fit``'s pose on every frame from ``frame_start`` (one per fitted frame;
    quaternion rotations, the root's location), seen through a camera at ``placement``; keys there before on
    those channels are replaced."""
    data = obj.data
    rest_rot = np.array([[list(r) for r in data.bones[n].matrix_local.to_3x3()] for n in JOINT_NAMES])
    rest_heads = np.array([list(data.bones[n].head_local) for n in JOINT_NAMES])
    quats, location = pose_channels(fit, rest_rot, rest_heads, placement)
    for pose_bone in obj.pose.bones:
        pose_bone.rotation_mode = "QUATERNION"
    frames = np.arange(len(location), dtype=np.float64) + frame_start
    paths = [(f'pose.bones["{name}"].rotation_quaternion', k, name) for name in JOINT_NAMES for k in range(4)]
    paths += [(f'pose.bones["{JOINT_NAMES[0]}"].location', k, JOINT_NAMES[0]) for k in range(3)]
    # (24·4 + 3, frames) in the keys' float32, a channel per row: the one transposing copy of the channels
    values = np.empty((len(paths), len(frames)), dtype=np.float32)
    values[: 4 * NUM_JOINTS] = quats.transpose(1, 2, 0).reshape(4 * NUM_JOINTS, len(frames))
    values[4 * NUM_JOINTS :] = location.T
    write_keys(obj, frames, paths, values)


def rest_offsets_mm(obj) -> np.ndarray:
    """The SMPL armature ``obj``'s rest skeleton as joint offsets from each parent ``(24, 3)`` mm in the SMPL body
    frame (what :func:`~mtvcrafter.motion.rig.rest_bones` built it from)."""
    heads = np.array([list(obj.data.bones[name].head_local) for name in JOINT_NAMES], dtype=np.float64)
    offsets = np.zeros((NUM_JOINTS, 3))
    offsets[1:] = heads[1:] - heads[np.array(PARENTS[1:])]
    return offsets @ BODY_TO_BLENDER * 1000.0


def keyed_range(obj) -> tuple[int, int] | None:
    """The first and last frame ``obj``'s action keys (rounded to whole frames), or None without keys."""
    ends = [curve.range() for curve in fcurves(obj) if len(curve.keyframe_points)]
    if not ends:
        return None
    return int(round(min(e[0] for e in ends))), int(round(max(e[1] for e in ends)))


def fps_fraction(fps: float) -> tuple[int, float]:
    """``(render.fps, render.fps_base)`` for a frame rate (29.97 → 30 / 1.001)."""
    whole = round(fps)
    if abs(whole - fps) < 1e-6:
        return int(whole), 1.0
    return int(math.ceil(fps)), math.ceil(fps) / fps


def fov_on_larger_side(data, width: int, height: int) -> float:
    """The camera's field of view across the larger side of a ``width × height`` render, degrees
    (the motion convention), whatever its sensor fit."""
    fit = data.sensor_fit
    if fit == "AUTO":
        return math.degrees(data.angle)
    along_width = fit == "HORIZONTAL"
    angle = data.angle_x if along_width else data.angle_y
    ratio = (height / width if along_width else width / height) if (height > width) == along_width else 1.0
    return math.degrees(2.0 * math.atan(math.tan(angle / 2.0) * ratio))


def camera_placement(camera) -> CameraPlacement:
    """The OpenCV-axes placement of a Blender camera object (as :func:`world_to_camera_mm` takes it)."""
    world = np.array(camera.matrix_world.normalized())
    rotation = world[:3, :3] @ BLENDER_CAMERA_AXES
    return CameraPlacement(rotation, world[:3, 3].copy())


def scene_fps(scene) -> float:
    """The scene's frame rate (``fps / fps_base``)."""
    return scene.render.fps / scene.render.fps_base


def sample_times(frame_start: int, frame_end: int, frame_fps: float, fps: float) -> np.ndarray:
    """Frames (fractional where needed) of a timeline running at ``frame_fps`` at which to sample
    ``frame_start..frame_end`` at ``fps``: the samples cover the same span of time, the first at ``frame_start``."""
    step = frame_fps / fps  # timeline frames per sample
    count = max(1, int(round((frame_end - frame_start + 1) / step)))
    return frame_start + step * np.arange(count)


def sample_frames(scene, frame_start: int, frame_end: int, fps: float | None = None) -> np.ndarray:
    """Scene frames (fractional where needed) at which to sample ``frame_start..frame_end`` at ``fps``
    (default: the scene's own, one sample per frame); the samples cover the same span of time."""
    if fps is None:
        return np.arange(frame_start, frame_end + 1, dtype=np.float64)
    return sample_times(frame_start, frame_end, scene_fps(scene), fps)


def retime_keys(obj, frame_start: int, num_frames: int, key_fps: float, fps: float) -> int:
    """Resample ``obj``'s keys — one per frame from ``frame_start``, ``num_frames`` of them, at ``key_fps`` — to
    one per frame at ``fps`` from the same first frame, over the same span of time. The samples are those Animate
    takes for a sequencer scene at another rate (:func:`sample_frames`), read from the F-curves between their keys
    (Blender's own interpolation; for an armature that only its keys move, the depsgraph gives the same, slower).
    Returns the number of frames keyed."""
    times = sample_times(frame_start, frame_start + num_frames - 1, key_fps, fps)
    curves = fcurves(obj)
    paths = [(c.data_path, c.array_index, c.group.name if c.group else "") for c in curves]
    values = np.array([[curve.evaluate(t) for t in times] for curve in curves], dtype=np.float64)
    write_keys(obj, frame_start + np.arange(len(times), dtype=np.float64), paths, values)
    return len(times)


def sample_evaluated(context, frames, read) -> list:
    """``read(depsgraph)`` with the scene at each of ``frames`` (fractional ones as sub-frames), in order: one
    depsgraph evaluation per frame (constraints, drivers, NLA included). The scene's frame, sub-frame
    included, is put back afterwards."""
    scene = context.scene
    current, subframe = scene.frame_current, scene.frame_subframe
    out = []
    try:
        for time in frames:
            whole = math.floor(time + 1e-9)
            scene.frame_set(int(whole), subframe=max(0.0, float(time - whole)))
            out.append(read(context.evaluated_depsgraph_get()))
    finally:
        scene.frame_set(current, subframe=subframe)
    return out


def world_bone_points(evaluated, prop: str = "head") -> np.ndarray:
    r"""An evaluated armature's bone heads (or ``"tail"``\s) in world space, ``(bones, 3)`` in pose-bone order,
    read in bulk."""
    bones = evaluated.pose.bones
    buffer = np.empty(len(bones) * 3, dtype=np.float32)
    bones.foreach_get(prop, buffer)
    world = np.array(evaluated.matrix_world)
    return buffer.reshape(-1, 3) @ world[:3, :3].T + world[:3, 3]


def export_joints(context, obj, camera, frame_start: int, frame_end: int, fps: float | None = None) -> np.ndarray:
    """Evaluated bone heads (constraints, drivers, NLA included) through ``camera``: ``(T, 24, 3)`` mm, one
    sample per scene frame, or at ``fps`` (sub-frames evaluated) when given."""
    names = [bone.name for bone in obj.pose.bones]
    order = [names.index(name) for name in JOINT_NAMES]

    def read(depsgraph) -> np.ndarray:
        placement = camera_placement(camera.evaluated_get(depsgraph))  # the camera may move too
        return world_to_camera_mm(world_bone_points(obj.evaluated_get(depsgraph))[order], placement)

    samples = sample_evaluated(context, sample_frames(context.scene, frame_start, frame_end, fps), read)
    return np.reshape(samples, (len(samples), NUM_JOINTS, 3))
