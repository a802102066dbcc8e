"""BVH mocap and rig retargeting in real Blender (headless): BVHs written by Blender's own exporter from rigs
with SMPL, Mixamo and CMU bone names read back equal to what Blender evaluates; File › Import of a BVH; the
Retarget Rig operator; bone-map presets saved by the user."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import bpy  # collected only where bpy is installed (tests/conftest.py)
import numpy as np
import pytest
from conftest import report
from mathutils import Euler, Matrix

from mtvcrafter.motion import JOINT_NAMES, MotionError, load_motions
from mtvcrafter.motion.bone_map_detection import detect_bone_map
from mtvcrafter.motion.bone_maps import load_bone_maps
from mtvcrafter.motion.bvh import bvh_end_positions, bvh_forward_kinematics, read_bvh
from mtvcrafter.motion.camera import world_to_camera_mm
from mtvcrafter.motion.skeleton import NEUTRAL_REST_JOINTS_M, PARENTS
from mtvcrafter.motion.skeleton_mapping import map_points, rig_to_world
from mtvcrafter.motion.units import UNITS

HEADING = f"Blender add-on: BVH import and rig retargeting (bpy {bpy.app.version_string}, headless)"
FRAMES = 40
#: SMPL's rest joints (body frame: Y up, facing +Z, left +X), standing on the floor, metres.
REST = {name: NEUTRAL_REST_JOINTS_M[j] + [0.0, 1.16, 0.0] for j, name in enumerate(JOINT_NAMES)}
UP, FORWARD, LEFT = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])


@pytest.fixture(scope="module", autouse=True)
def addon():
    import mtvcrafter_bridge

    mtvcrafter_bridge.register()
    yield
    mtvcrafter_bridge.unregister()


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    """The user's bone-map folder, here a temporary one (the extension's user folder when installed)."""
    from mtvcrafter_bridge import bone_maps

    folder = tmp_path / "user" / "bones"
    monkeypatch.setattr(bone_maps, "user_bone_folder", lambda create=False: folder)
    return folder


# --- rigs as the real ones are built ---------------------------------------------------------------------------

Bone = tuple[str, "str | None", np.ndarray, np.ndarray]  # name, parent, head, tail (body frame, metres)

#: Mixamo's thumb and fingers: base along the arm, forward and down from the wrist; direction (along, fwd, down)
MIXAMO_FINGERS = {
    "Thumb": (0.025, 0.03, 0.015, (0.6, 0.7, 0.3)),
    "Index": (0.09, 0.025, 0.0, (1.0, 0.05, 0.0)),
    "Middle": (0.095, 0.005, 0.0, (1.0, 0.0, 0.0)),
    "Ring": (0.09, -0.015, 0.0, (1.0, -0.05, 0.0)),
    "Pinky": (0.08, -0.033, 0.0, (1.0, -0.1, 0.0)),
}


def mixamo_bones(prefix: str = "mixamorig:") -> list[Bone]:
    """A Mixamo character's skeleton (65 bones: spine, head with HeadTop_End, fingers, toes with Toe_End)."""
    p = prefix
    head_top = REST["head"] + UP * 0.17
    bones = [
        (f"{p}Hips", None, REST["pelvis"], REST["spine1"]),
        (f"{p}Spine", f"{p}Hips", REST["spine1"], REST["spine2"]),
        (f"{p}Spine1", f"{p}Spine", REST["spine2"], REST["spine3"]),
        (f"{p}Spine2", f"{p}Spine1", REST["spine3"], REST["neck"]),
        (f"{p}Neck", f"{p}Spine2", REST["neck"], REST["head"]),
        (f"{p}Head", f"{p}Neck", REST["head"], head_top),
        (f"{p}HeadTop_End", f"{p}Head", head_top, head_top + UP * 0.02),
    ]
    for side, s, sign in (("Left", "left", 1.0), ("Right", "right", -1.0)):
        wrist = REST[f"{s}_wrist"]
        bones += [
            (f"{p}{side}Shoulder", f"{p}Spine2", REST[f"{s}_collar"], REST[f"{s}_shoulder"]),
            (f"{p}{side}Arm", f"{p}{side}Shoulder", REST[f"{s}_shoulder"], REST[f"{s}_elbow"]),
            (f"{p}{side}ForeArm", f"{p}{side}Arm", REST[f"{s}_elbow"], wrist),
            (f"{p}{side}Hand", f"{p}{side}ForeArm", wrist, REST[f"{s}_hand"]),
        ]
        for finger, (along, forward, down, direction) in MIXAMO_FINGERS.items():
            head = wrist + LEFT * sign * along + FORWARD * forward - UP * down
            d = np.array(direction) @ np.stack([LEFT * sign, FORWARD, -UP])
            d /= np.linalg.norm(d)
            parent = f"{p}{side}Hand"
            for k, length in enumerate((0.035, 0.025, 0.02, 0.018)):
                name = f"{p}{side}Hand{finger}{k + 1}"
                bones.append((name, parent, head, head + d * length))
                head, parent = head + d * length, name
        toe_end = REST[f"{s}_foot"] + FORWARD * 0.07
        bones += [
            (f"{p}{side}UpLeg", f"{p}Hips", REST[f"{s}_hip"], REST[f"{s}_knee"]),
            (f"{p}{side}Leg", f"{p}{side}UpLeg", REST[f"{s}_knee"], REST[f"{s}_ankle"]),
            (f"{p}{side}Foot", f"{p}{side}Leg", REST[f"{s}_ankle"], REST[f"{s}_foot"]),
            (f"{p}{side}ToeBase", f"{p}{side}Foot", REST[f"{s}_foot"], toe_end),
            (f"{p}{side}Toe_End", f"{p}{side}ToeBase", toe_end, toe_end + FORWARD * 0.02),
        ]
    return bones


def cmu_bones() -> list[Bone]:
    """The CMU mocap (ASF) skeleton: each bone starts where its ASF segment starts (hip joints, lower back,
    clavicles from the thorax, wrist → hand → fingers and a thumb)."""
    neck_base, neck_mid = REST["neck"] - UP * 0.03, (REST["neck"] + REST["head"]) / 2
    bones = [
        ("hip", None, REST["pelvis"], REST["pelvis"] + UP * 0.05),
        ("lowerback", "hip", REST["pelvis"], REST["spine2"]),
        ("upperback", "lowerback", REST["spine2"], REST["spine3"]),
        ("thorax", "upperback", REST["spine3"], neck_base),
        ("lowerneck", "thorax", neck_base, neck_mid),
        ("upperneck", "lowerneck", neck_mid, REST["head"]),
        ("head", "upperneck", REST["head"], REST["head"] + UP * 0.15),
    ]
    for s, name, sign in (("l", "left", 1.0), ("r", "right", -1.0)):
        wrist, hand, along = REST[f"{name}_wrist"], REST[f"{name}_hand"], LEFT * sign
        bones += [
            (f"{s}hipjoint", "hip", REST["pelvis"], REST[f"{name}_hip"]),
            (f"{s}femur", f"{s}hipjoint", REST[f"{name}_hip"], REST[f"{name}_knee"]),
            (f"{s}tibia", f"{s}femur", REST[f"{name}_knee"], REST[f"{name}_ankle"]),
            (f"{s}foot", f"{s}tibia", REST[f"{name}_ankle"], REST[f"{name}_foot"]),
            (f"{s}toes", f"{s}foot", REST[f"{name}_foot"], REST[f"{name}_foot"] + FORWARD * 0.06),
            (f"{s}clavicle", "thorax", neck_base, REST[f"{name}_shoulder"]),
            (f"{s}humerus", f"{s}clavicle", REST[f"{name}_shoulder"], REST[f"{name}_elbow"]),
            (f"{s}radius", f"{s}humerus", REST[f"{name}_elbow"], wrist),
            (f"{s}wrist", f"{s}radius", wrist, wrist + along * 0.04),
            (f"{s}hand", f"{s}wrist", wrist + along * 0.04, hand + along * 0.02),
            (f"{s}fingers", f"{s}hand", hand + along * 0.02, hand + along * 0.06),
            (f"{s}thumb", f"{s}wrist", wrist + along * 0.04, wrist + along * 0.07 + FORWARD * 0.04),
        ]
    return bones


def smpl_bones() -> list[Bone]:
    """The SMPL skeleton with our joint names (as the SMPL add-ons name them), bones towards the main child."""
    bones = []
    for j, name in enumerate(JOINT_NAMES):
        children = [c for c in range(24) if PARENTS[c] == j]
        if children:
            tail = REST[JOINT_NAMES[{0: 3, 9: 12}.get(j, children[0])]]
        else:
            direction = REST[name] - REST[JOINT_NAMES[PARENTS[j]]]
            tail = REST[name] + direction / np.linalg.norm(direction) * 0.08
        bones.append((name, JOINT_NAMES[PARENTS[j]] if PARENTS[j] >= 0 else None, REST[name], tail))
    return bones


RIGS = {"smpl": smpl_bones, "mixamo": mixamo_bones, "cmu": cmu_bones}
#: Connected bones (a BVH exporter writes them with rotation channels only)
CONNECTED = {"cmu": {"lfemur", "ltibia", "rfemur", "rtibia", "upperback", "thorax"}, "smpl": {"left_knee"}}


def build_rig(context, name: str, bones: list[Bone], up: str = "Y", unit: str = "cm", connect=frozenset()):
    """An armature as an importer leaves it: bone data in the rig's own axes and unit (``up`` "Y": the body
    frame, as FBX/BVH rigs are; "Z": Blender's), the object turned and scaled so the world is Blender's metres."""
    scale = 1.0 / UNITS.get(unit, 1.0)  # "auto": metres
    to_data = np.eye(3) if up == "Y" else np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])
    data = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, data)
    context.scene.collection.objects.link(obj)
    context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    for bone_name, parent, head, tail in bones:
        bone = data.edit_bones.new(bone_name)
        bone.head, bone.tail = (to_data @ head * scale).tolist(), (to_data @ tail * scale).tolist()
        if parent is not None:
            bone.parent = data.edit_bones[parent]
            bone.use_connect = bone_name in connect
    bpy.ops.object.mode_set(mode="OBJECT")
    turn = Matrix.Rotation(math.radians(90.0), 4, "X") if up == "Y" else Matrix.Identity(4)
    obj.matrix_world = turn @ Matrix.Diagonal((1 / scale, 1 / scale, 1 / scale, 1.0))
    return obj


def new_fcurves(obj):
    """The F-curve collection of a new action on ``obj`` (its slot's channelbag in 4.4+, the action's in 4.2)."""
    anim = obj.animation_data_create()
    action = anim.action = bpy.data.actions.new(f"{obj.name}Action")
    if not hasattr(action, "slots"):
        return action.fcurves
    from bpy_extras import anim_utils

    anim.action_slot = action.slots.new(id_type="OBJECT", name=obj.name)
    return anim_utils.action_ensure_channelbag_for_slot(action, anim.action_slot).fcurves


ROTATION_MODES = ("QUATERNION", "XYZ", "ZXY", "YXZ", "ZYX", "XZY", "YZX")


def animate(obj, seed: int = 0, amplitude_deg: float = 35.0) -> None:
    """Smooth rotations on every bone (all rotation modes and Euler orders) and a root that travels a metre and
    bobs, keyed on every frame through F-curves."""
    rng = np.random.default_rng(seed)
    curves = new_fcurves(obj)
    t = np.arange(FRAMES, dtype=np.float64)
    co = np.empty(2 * FRAMES, np.float32)
    co[0::2] = t + 1

    def key(path, values):
        for index, column in enumerate(np.asarray(values).T):
            curve = curves.new(path, index=index)
            curve.keyframe_points.add(FRAMES)
            co[1::2] = column
            curve.keyframe_points.foreach_set("co", co)
            curve.update()

    units_per_metre = 1.0 / obj.matrix_world.to_scale()[0]
    for b, pose_bone in enumerate(obj.pose.bones):
        mode = pose_bone.rotation_mode = ROTATION_MODES[b % len(ROTATION_MODES)]
        phase, speed = rng.uniform(0, 2 * np.pi, 3), rng.uniform(0.08, 0.25, 3)
        angles = np.radians(amplitude_deg) * rng.uniform(0.3, 1.0, 3) * np.sin(speed * t[:, None] + phase)
        path = f'pose.bones["{pose_bone.name}"]'
        if mode == "QUATERNION":
            key(f"{path}.rotation_quaternion", [list(Euler(a.tolist()).to_quaternion()) for a in angles])
        else:
            key(f"{path}.rotation_euler", angles)
        if pose_bone.parent is None:
            travel = np.stack([0.3 * np.sin(0.15 * t), 0.05 * np.sin(0.3 * t), t / FRAMES], axis=1)
            key(f"{path}.location", travel * units_per_metre)


def export_bvh(context, rig, path) -> None:
    context.view_layer.objects.active = rig
    assert bpy.ops.export_anim.bvh(filepath=str(path), frame_start=1, frame_end=FRAMES) == {"FINISHED"}


def evaluated_bones(context, rig) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """Blender's evaluated bone heads and tails in world space, per frame, bone by bone."""
    names = [b.name for b in rig.pose.bones]
    heads, tails = np.empty((FRAMES, len(names), 3)), np.empty((FRAMES, len(names), 3))
    for t in range(FRAMES):
        context.scene.frame_set(t + 1)
        evaluated = rig.evaluated_get(context.evaluated_depsgraph_get())
        for j, bone in enumerate(evaluated.pose.bones):
            heads[t, j] = evaluated.matrix_world @ bone.head
            tails[t, j] = evaluated.matrix_world @ bone.tail
    return names, heads, {name: tails[:, j] for j, name in enumerate(names)}


def scene_with_rig(context, family: str = "mixamo", seed: int = 0):
    scene = context.scene
    scene.frame_start, scene.frame_end = 1, FRAMES
    scene.render.fps = 24
    preset = load_bone_maps()[family]
    rig = build_rig(context, family.capitalize(), RIGS[family](), preset.up, preset.unit, CONNECTED.get(family, ()))
    animate(rig, seed)
    return rig


# --- a. Blender's BVH exporter → our reader ----------------------------------------------------------------------


@pytest.mark.parametrize("family", ["smpl", "mixamo", "cmu"])
def test_bvh_from_blenders_exporter_reads_as_blender_evaluates_it(clean_scene, tmp_path, family):
    context = clean_scene
    rig = scene_with_rig(context, family, seed=len(family))
    path = tmp_path / f"{family}.bvh"
    export_bvh(context, rig, path)

    start = time.perf_counter()
    bvh = read_bvh(path)
    positions, rotations = bvh_forward_kinematics(bvh)
    ends = bvh_end_positions(bvh, positions, rotations)
    names = list(bvh.skeleton.names)
    detection = detect_bone_map(names, ends=[names[j] for j in ends])
    bone_map = detection.bone_map
    ours = rig_to_world(map_points(names, positions, bone_map, ends=ends), bone_map)  # unit: detected
    elapsed = time.perf_counter() - start

    assert bone_map.id == family  # auto-detection picks the right preset
    blender_names, heads, tails = evaluated_bones(context, rig)
    expected = map_points(blender_names, (heads, tails), bone_map)
    error_mm = np.linalg.norm(ours - expected, axis=-1) * 1000
    report(
        HEADING,
        f"{family} rig ({len(names)} bones) → Blender's BVH exporter → our reader: detected {bone_map.name} "
        f"(confidence {detection.confidence:.2f}), max {error_mm.max():.4f} mm from Blender's evaluated joints "
        f"over {FRAMES} frames (read + map {elapsed * 1000:.0f} ms)",
    )
    assert ours.shape == (FRAMES, 24, 3)
    assert error_mm.max() < 0.5
    # the animation is really there: the root travels and the limbs move
    assert np.linalg.norm(expected[-1, 0] - expected[0, 0]) > 0.5


# --- b. Retarget Rig ---------------------------------------------------------------------------------------------


def add_camera(context, location=(0.4, -6.0, 1.0)):
    data = bpy.data.cameras.new("Camera")
    camera = bpy.data.objects.new("Camera", data)
    context.scene.collection.objects.link(camera)
    camera.location = location
    camera.rotation_euler = (math.radians(88.0), 0.0, math.radians(4.0))
    context.scene.camera = camera
    return camera


def rig_joints_mm(context, rig, bone_map, camera) -> np.ndarray:
    """The rig's SMPL joints (the bone map on Blender's evaluated bones) through ``camera`` as it stands on each
    frame (it may move), mm."""
    from mtvcrafter_bridge.armature import camera_placement

    names, heads, tails = evaluated_bones(context, rig)
    world = map_points(names, (heads, tails), bone_map)
    out = np.empty_like(world)
    for t in range(FRAMES):
        context.scene.frame_set(t + 1)
        out[t] = world_to_camera_mm(world[t], camera_placement(camera.evaluated_get(context.evaluated_depsgraph_get())))
    return out


def fcurve_values(obj) -> np.ndarray:
    from mtvcrafter_bridge.armature import fcurves

    return np.array([[k.co[1] for k in curve.keyframe_points] for curve in fcurves(obj)])


def test_retarget_turns_an_animated_mixamo_rig_into_an_smpl_armature(clean_scene, capfd):
    from mtvcrafter_bridge.armature import export_joints

    context = clean_scene
    rig = scene_with_rig(context, "mixamo")
    # evaluated, not keyed: a constraint turns the left forearm further (lengths stay those of the rig)
    constraint = rig.pose.bones["mixamorig:LeftForeArm"].constraints.new("COPY_ROTATION")
    constraint.target, constraint.subtarget = rig, "mixamorig:RightForeArm"
    constraint.mix_mode, constraint.influence = "ADD", 0.5
    constraint.target_space = constraint.owner_space = "LOCAL"
    camera = add_camera(context)
    keys_before = fcurve_values(rig)
    context.view_layer.objects.active = rig

    start = time.perf_counter()
    assert bpy.ops.mtvcrafter.retarget_rig() == {"FINISHED"}  # auto-detected bone map
    elapsed = time.perf_counter() - start
    smpl = context.active_object
    assert smpl is not rig and smpl.type == "ARMATURE" and len(smpl.data.bones) == 24
    assert re.search(r"Mixamo \(detected, confidence [\d.]+", capfd.readouterr().out)

    got = export_joints(context, smpl, camera, 1, FRAMES)
    expected = rig_joints_mm(context, rig, load_bone_maps()["mixamo"], camera)
    error = np.linalg.norm(got - expected, axis=-1)
    report(
        HEADING,
        f"Retarget Rig (65-bone Mixamo rig, {FRAMES} frames, a constraint): SMPL armature's exported joints "
        f"max {error.max():.3f} mm, mean {error.mean():.3f} mm from the rig's mapped joints; {elapsed:.2f} s",
    )
    assert error.max() < 5.0
    assert [o for o in bpy.data.objects if o.type == "CAMERA"] == [camera]  # the scene camera, no new one
    np.testing.assert_array_equal(fcurve_values(rig), keys_before)  # the source rig is untouched
    assert len(rig.pose.bones["mixamorig:LeftForeArm"].constraints) == 1


def test_retarget_rig_fill_bone_map_and_save_as_preset_called_from_a_script(clean_scene, user_folder):
    """The functions under the Retarget Rig panel: fill a rig's mapping from a preset, save it as a preset, retarget
    through it; the new armature performs the rig's motion, and each step reports what it did."""
    from mtvcrafter_bridge.armature import export_joints
    from mtvcrafter_bridge.retarget import fill_bone_map, retarget_rig, save_as_preset

    context = clean_scene
    rig = scene_with_rig(context, "mixamo", seed=4)
    camera = add_camera(context)
    reports = []

    def remember(kind, text):
        reports.append((set(kind), text))

    assert fill_bone_map(context, rig, "mixamo", report=remember) == []
    assert rig.mtvcrafter_retarget.source == "CUSTOM" and len(rig.mtvcrafter_retarget.joints) == 24
    assert reports[-1][0] == {"INFO"} and reports[-1][1].startswith(
        f"{rig.name}: mapping from Mixamo; 41 bone(s) not used"
    )
    path = save_as_preset(context, rig.name, "Studio hero", report=remember)
    assert path == user_folder / "studio_hero.json" and path.is_file()
    assert rig.mtvcrafter_retarget.source == "studio_hero" and reports[-1] == ({"INFO"}, f"saved {path}")

    smpl = retarget_rig(context, rig, name="HeroSMPL", report=remember)  # the rig's own choice: the saved preset
    assert smpl == context.active_object and smpl.name == "HeroSMPL" and smpl["mtvcrafter_retargeted_from"] == rig.name
    kind, text = reports[-1]
    assert kind == {"INFO"} and text.startswith(f"{rig.name} → HeroSMPL: {FRAMES} frames through {camera.name}")
    assert "bone map Studio hero" in text
    got = export_joints(context, smpl, camera, 1, FRAMES)
    expected = rig_joints_mm(context, rig, load_bone_maps()["mixamo"], camera)
    assert np.linalg.norm(got - expected, axis=-1).max() < 5.0

    with pytest.raises(MotionError, match="Camera is not an armature"):
        retarget_rig(context, camera)


def test_retarget_without_a_camera_adds_one_and_follows_the_preview_range(clean_scene):
    from mtvcrafter_bridge.armature import export_joints, fcurves

    context = clean_scene
    rig = scene_with_rig(context, "mixamo", seed=3)
    scene = context.scene
    scene.use_preview_range = True
    scene.frame_preview_start, scene.frame_preview_end = 11, 30
    assert scene.camera is None
    assert bpy.ops.mtvcrafter.retarget_rig(armature=rig.name, bone_map="mixamo") == {"FINISHED"}
    smpl = context.active_object
    assert scene.camera is not None and smpl["mtvcrafter_camera_name"] == scene.camera.name
    frames = [k.co[0] for k in fcurves(smpl)[0].keyframe_points]
    assert frames == list(range(11, 31))
    got = export_joints(context, smpl, scene.camera, 11, 30)
    expected = rig_joints_mm(context, rig, load_bone_maps()["mixamo"], scene.camera)[10:30]
    assert got[:, :, 2].min() > 500  # the whole clip in front of the new camera
    error = np.linalg.norm(got - expected, axis=-1)
    report(HEADING, f"Retarget Rig (Mixamo rig, preview range 11–30, new camera): max {error.max():.3f} mm")
    assert error.max() < 5.0


def test_retarget_errors_are_reported_and_create_nothing(clean_scene):
    context = clean_scene
    rig = scene_with_rig(context, "mixamo")
    rig.mtvcrafter_retarget.joints.clear()
    objects = set(bpy.data.objects)
    with pytest.raises(RuntimeError, match="the mapping has no bone for pelvis"):
        bpy.ops.mtvcrafter.retarget_rig(armature=rig.name, bone_map="CUSTOM")
    assert set(bpy.data.objects) == objects


def test_retarget_through_a_moving_camera_keeps_the_rigs_motion_and_the_users_frame(clean_scene):
    """The SMPL armature performs the rig's motion in the world, so a camera that moves sees it as it sees the rig
    (a rig parented to a moved, turned and scaled empty, in pose mode, with its animation in an NLA strip)."""
    from mtvcrafter_bridge.armature import export_joints

    context = clean_scene
    scene = context.scene
    scene.frame_start, scene.frame_end = 1, FRAMES
    rig = build_rig(context, "Hero", mixamo_bones("Hero_ns:"), "Y", "cm")
    animate(rig, seed=2)
    anim = rig.animation_data
    anim.nla_tracks.new().strips.new("Dance", 1, anim.action)
    anim.action = None
    parent = bpy.data.objects.new("Mover", None)
    scene.collection.objects.link(parent)
    parent.location, parent.rotation_euler, parent.scale = (1.0, 2.0, 0.3), (0.0, 0.0, 0.7), (1.2, 1.2, 1.2)
    rig.parent, rig.location = parent, (0.5, 0.0, 0.0)
    camera = add_camera(context, location=(1.5, -8.0, 1.5))
    camera.keyframe_insert("location", frame=1)
    camera.location = (5.0, -5.0, 2.0)
    camera.rotation_euler.z = math.radians(30.0)
    camera.keyframe_insert("location", frame=FRAMES)
    camera.keyframe_insert("rotation_euler", frame=FRAMES)
    context.view_layer.objects.active = rig
    bpy.ops.object.mode_set(mode="POSE")
    scene.frame_set(17)

    assert bpy.ops.mtvcrafter.retarget_rig() == {"FINISHED"}
    assert scene.frame_current == 17  # where the animator left it
    smpl = context.active_object
    assert smpl.get("mtvcrafter_retargeted_from") == rig.name and smpl.mode == "OBJECT"
    got = export_joints(context, smpl, camera, 1, FRAMES)
    expected = rig_joints_mm(context, rig, load_bone_maps()["mixamo"], camera)
    error = np.linalg.norm(got - expected, axis=-1)
    report(
        HEADING,
        f"Retarget Rig (namespaced Mixamo rig in an NLA strip, parented to a turned and scaled empty, a moving "
        f"camera): max {error.max():.3f} mm",
    )
    assert error.max() < 5.0


def test_retarget_of_a_one_frame_range_undoably(clean_scene):
    """One frame is a clip too; what the operator makes is one undo step (Ctrl+Z removes armature and camera:
    undo itself needs a window, which headless Blender has not)."""
    from mtvcrafter_bridge.operators import (
        IMPORT_ANIM_OT_mtvcrafter_motion,
        MTVCRAFTER_OT_fill_bone_map,
        MTVCRAFTER_OT_retarget_rig,
    )

    for operator in (MTVCRAFTER_OT_retarget_rig, MTVCRAFTER_OT_fill_bone_map, IMPORT_ANIM_OT_mtvcrafter_motion):
        assert {"REGISTER", "UNDO"} <= operator.bl_options
    context = clean_scene
    rig = scene_with_rig(context, "mixamo")
    context.scene.frame_start = context.scene.frame_end = 12
    assert bpy.ops.mtvcrafter.retarget_rig(armature=rig.name) == {"FINISHED"}
    from mtvcrafter_bridge.armature import fcurves

    assert [k.co[0] for k in fcurves(context.active_object)[0].keyframe_points] == [12.0]


def link_rig(context, tmp_path, family: str = "mixamo"):
    """The rig of ``scene_with_rig``, linked from a library file into an empty scene (read-only here)."""
    rig = scene_with_rig(context, family)
    name, library = rig.name, tmp_path / "characters.blend"
    bpy.data.libraries.write(str(library), {rig}, fake_user=True)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    context = bpy.context
    context.scene.frame_start, context.scene.frame_end = 1, FRAMES
    with bpy.data.libraries.load(str(library), link=True) as (_, linked):
        linked.objects = [name]
    rig = linked.objects[0]
    context.scene.collection.objects.link(rig)
    context.view_layer.objects.active = rig
    return rig


@pytest.mark.parametrize("how", ["hidden", "disabled in viewports", "excluded collection", "another scene"])
def test_a_rig_the_view_layer_does_not_evaluate_is_one_error(clean_scene, how):
    """A rig hidden with H is still evaluated and retargets; one the depsgraph leaves out would give a frozen pose
    on every frame: that is one error, and nothing is created."""
    context = clean_scene
    scene = context.scene
    rig = scene_with_rig(context, "mixamo")
    camera = add_camera(context)
    folder = bpy.data.collections.new("Characters")
    scene.collection.children.link(folder)
    folder.objects.link(rig)
    scene.collection.objects.unlink(rig)
    if how == "hidden":
        rig.hide_set(True)
    elif how == "disabled in viewports":
        rig.hide_viewport = True
    elif how == "excluded collection":
        context.view_layer.layer_collection.children[folder.name].exclude = True
    else:
        scene.collection.children.unlink(folder)
        bpy.data.scenes.new("Other").collection.children.link(folder)
        scene.collection.objects.link(bpy.data.objects.new("Other rig", bpy.data.armatures.new("Other rig")))
    before = {kind: set(getattr(bpy.data, kind)) for kind in ("objects", "armatures", "actions", "cameras")}
    if how == "hidden":
        assert bpy.ops.mtvcrafter.retarget_rig(armature=rig.name) == {"FINISHED"}
        from mtvcrafter_bridge.armature import export_joints

        got = export_joints(context, context.active_object, camera, 1, FRAMES)
        rig.hide_set(False)
        expected = rig_joints_mm(context, rig, load_bone_maps()["mixamo"], camera)
        assert np.linalg.norm(got - expected, axis=-1).max() < 5.0
        return
    with pytest.raises(RuntimeError, match=r"Mixamo is not evaluated in the view layer"):
        bpy.ops.mtvcrafter.retarget_rig(armature=rig.name)
    assert {kind: set(getattr(bpy.data, kind)) for kind in before} == before


def test_a_scene_camera_that_is_not_a_camera_is_one_error(clean_scene):
    context = clean_scene
    rig = scene_with_rig(context, "mixamo")
    viewpoint = bpy.data.objects.new("Viewpoint", None)  # an empty can be the scene camera
    context.scene.collection.objects.link(viewpoint)
    context.scene.camera = viewpoint
    context.view_layer.objects.active = rig
    objects = set(bpy.data.objects)
    with pytest.raises(RuntimeError, match=r"the scene camera 'Viewpoint' is not a camera") as error:
        bpy.ops.mtvcrafter.retarget_rig()
    assert "Traceback" not in str(error.value)
    assert set(bpy.data.objects) == objects


@pytest.mark.parametrize("where", ["keying", "building bones"])
def test_an_unexpected_error_is_one_report_and_leaves_nothing_half_made(clean_scene, monkeypatch, where):
    """Whatever fails while the armature is built (here: a simulated failure after its keys were written, or in
    edit mode while its bones are made), one error, no armature, camera or action left, the rig active again in
    the mode it was in."""
    from mtvcrafter_bridge import armature, retarget

    def fail(*args, **kwargs):
        raise ValueError("simulated failure")

    if where == "keying":
        build = retarget.build_armature

        def build_then_fail(*args, **kwargs):
            build(*args, **kwargs)
            fail()

        monkeypatch.setattr(retarget, "build_armature", build_then_fail)
    else:
        monkeypatch.setattr(armature, "rest_bones", fail)
    context = clean_scene
    rig = scene_with_rig(context, "mixamo")
    context.view_layer.objects.active = rig
    bpy.ops.object.mode_set(mode="POSE")
    before = {kind: set(getattr(bpy.data, kind)) for kind in ("objects", "armatures", "actions", "cameras")}
    with pytest.raises(RuntimeError, match=r"ValueError: simulated failure") as error:
        bpy.ops.mtvcrafter.retarget_rig(bone_map="mixamo")
    assert "Traceback" not in str(error.value)
    assert {kind: set(getattr(bpy.data, kind)) for kind in before} == before
    assert context.scene.camera is None  # the camera it added is gone with the rest
    assert context.view_layer.objects.active == rig and rig.mode == "POSE"


@pytest.mark.parametrize("kind", ["linked", "library override"])
def test_a_linked_rig_is_only_read(clean_scene, tmp_path, kind):
    """A rig linked from a library (or its library override) retargets: it is only read, also when a local object
    has the linked rig's name. A mapping cannot be kept on it (Blender neither lets the user edit nor saves the
    add-on's properties there), so Fill from Preset refuses and the panel offers the bone maps on the button."""
    from mtvcrafter_bridge.armature import export_joints

    rig = link_rig(clean_scene, tmp_path)
    context = bpy.context
    assert rig.library is not None
    if kind == "linked":
        namesake = bpy.data.objects.new(rig.name, None)  # a local object may share the linked one's name
        context.scene.collection.objects.link(namesake)
        assert namesake.name == rig.name and bpy.data.objects.get(rig.name) == namesake
    else:
        rig = rig.override_create(remap_local_usages=True)
        context.view_layer.objects.active = rig
        assert rig.override_library is not None and rig.name in context.scene.objects
    camera = add_camera(context)

    assert bpy.ops.mtvcrafter.retarget_rig(armature=rig.name) == {"FINISHED"}  # as the panel calls it
    got = export_joints(context, context.active_object, camera, 1, FRAMES)
    expected = rig_joints_mm(context, rig, load_bone_maps()["mixamo"], camera)
    assert np.linalg.norm(got - expected, axis=-1).max() < 5.0

    context.view_layer.objects.active = rig
    refusal = r"Mixamo is linked from .*characters\.blend" if kind == "linked" else "Mixamo is a library override"
    with pytest.raises(RuntimeError, match=refusal):
        bpy.ops.mtvcrafter.fill_bone_map(armature=rig.name, bone_map="mixamo")
    assert len(rig.mtvcrafter_retarget.joints) == 0
    calls = draw_panel(context)
    assert ("operator_menu_enum", "mtvcrafter.retarget_rig") in [(name, args.get("operator")) for name, args in calls]
    assert "template_list" not in [name for name, _ in calls]


def test_the_operator_carries_no_rig_over_and_uses_the_rigs_own_bone_map(clean_scene, capfd):
    """Armature, name and bone map are not carried over to the next call from the menus (they belong to one rig);
    called without a bone map, the operator uses the rig's own choice in the panel."""
    context = clean_scene
    properties = bpy.ops.mtvcrafter.retarget_rig.get_rna_type().properties
    assert all(properties[name].is_skip_save for name in ("armature", "name", "bone_map"))
    save = bpy.ops.mtvcrafter.save_bone_map.get_rna_type().properties  # its dialog proposes this rig's name
    assert all(save[name].is_skip_save for name in ("armature", "preset_name", "description"))
    assert bpy.ops.mtvcrafter.fill_bone_map.get_rna_type().properties["armature"].is_skip_save
    rig = scene_with_rig(context, "mixamo")
    rig.mtvcrafter_retarget.source = "mixamo"
    context.view_layer.objects.active = rig
    capfd.readouterr()
    assert bpy.ops.mtvcrafter.retarget_rig() == {"FINISHED"}
    out = capfd.readouterr().out
    assert "bone map Mixamo;" in out and "detected" not in out, out


# --- c. File › Import of a BVH -----------------------------------------------------------------------------------


def test_import_of_a_mixamo_bvh_from_blenders_exporter(clean_scene, tmp_path, capfd):
    from mtvcrafter_bridge.armature import export_joints, fcurves
    from mtvcrafter_bridge.import_export import motion_camera

    context = clean_scene
    rig = scene_with_rig(context, "mixamo", seed=5)
    path = tmp_path / "dance.bvh"
    export_bvh(context, rig, path)
    bpy.data.objects.remove(rig)
    capfd.readouterr()

    start = time.perf_counter()
    assert bpy.ops.import_anim.mtvcrafter_motion(filepath=str(path)) == {"FINISHED"}
    elapsed = time.perf_counter() - start
    out = capfd.readouterr().out
    armatures = [o for o in bpy.data.objects if o.type == "ARMATURE"]
    assert len(armatures) == 1
    smpl = armatures[0]
    assert sorted(b.name for b in smpl.data.bones) == sorted(JOINT_NAMES)
    curves = fcurves(smpl)
    assert len(curves) == 24 * 4 + 3 and all(len(c.keyframe_points) == FRAMES for c in curves)
    # the report: the bone map, how sure, and the bones no joint uses (fingers, ends)
    assert re.search(r"bone map: Mixamo \(mixamo, detected, confidence 1\.00\)", out), out
    assert re.search(r"rig bone\(s\) not used: [^;]*mixamorig:HeadTop_End", out), out

    # what was imported is the file's motion: the exporter's joints through the import's camera
    motion = load_motions(path)[0]
    scene = context.scene
    got = export_joints(context, smpl, motion_camera(scene, smpl), scene.frame_start, scene.frame_end)
    error = np.linalg.norm(got - motion.joints, axis=-1)
    report(HEADING, f"File › Import of a Mixamo BVH ({FRAMES} frames): {elapsed:.2f} s, max {error.max():.2f} mm")
    assert error.max() < 5.0


@pytest.mark.parametrize("up_axis", ["AUTO", "Z"])
def test_import_of_a_bvh_exported_from_a_z_up_rig_stands(clean_scene, tmp_path, up_axis):
    """A rig built in Blender (Z up, metres) exports a Z-up BVH: detected (the Mixamo map says Y up) or set
    with the importer's Up option, the performer stands."""
    context = clean_scene
    context.scene.frame_start, context.scene.frame_end = 1, FRAMES
    rig = build_rig(context, "Rig", mixamo_bones(), up="Z", unit="m")
    animate(rig, seed=6)
    path = tmp_path / "z_up.bvh"
    export_bvh(context, rig, path)
    assert bpy.ops.import_anim.mtvcrafter_motion(filepath=str(path), up_axis=up_axis) == {"FINISHED"}
    smpl = context.active_object

    names, heads, tails = evaluated_bones(context, rig)
    expected = map_points(names, (heads, tails), load_bone_maps()["mixamo"])
    smpl_names, smpl_heads, _ = evaluated_bones(context, smpl)
    got = smpl_heads[:, [smpl_names.index(n) for n in JOINT_NAMES]]
    # the import stands the performer in front of its own camera: the same motion, turned about Z and moved
    a, b = expected.reshape(-1, 3), got.reshape(-1, 3)
    u, _, vt = np.linalg.svd((a - a.mean(0)).T @ (b - b.mean(0)))
    turn = (u @ vt).T
    aligned = (a - a.mean(0)) @ turn.T + b.mean(0)
    error_mm = np.linalg.norm(aligned - b, axis=-1).max() * 1000
    tilt = math.degrees(math.acos(min(1.0, turn[2, 2])))
    report(HEADING, f"BVH of a Z-up rig, Up: {up_axis} — tilt {tilt:.2f}°, max {error_mm:.2f} mm after the turn")
    assert tilt < 0.5 and error_mm < 5.0


def test_import_of_a_malformed_bvh_names_the_line_and_creates_nothing(clean_scene, tmp_path):
    context = clean_scene
    rig = scene_with_rig(context, "mixamo")
    good = tmp_path / "good.bvh"
    export_bvh(context, rig, good)
    lines = good.read_text().splitlines()
    bad_line = len(lines) - 5
    lines[bad_line - 1] = lines[bad_line - 1].rsplit(" ", 3)[0]  # a motion row that lost values
    bad = tmp_path / "bad.bvh"
    bad.write_text("\n".join(lines) + "\n")
    objects, actions = set(bpy.data.objects), set(bpy.data.actions)
    with pytest.raises(RuntimeError, match=rf"bad\.bvh.*line {bad_line}\b"):
        bpy.ops.import_anim.mtvcrafter_motion(filepath=str(bad))
    assert set(bpy.data.objects) == objects and set(bpy.data.actions) == actions


def test_an_import_that_fails_while_building_is_one_error_and_creates_nothing(clean_scene, tmp_path, monkeypatch):
    from mtvcrafter_bridge import armature

    context = clean_scene
    rig = scene_with_rig(context, "mixamo")
    path = tmp_path / "dance.bvh"
    export_bvh(context, rig, path)

    def fail(*args, **kwargs):
        raise ValueError("simulated failure")

    monkeypatch.setattr(armature, "rest_bones", fail)  # fails in edit mode, while the bones are made
    before = {kind: set(getattr(bpy.data, kind)) for kind in ("objects", "armatures", "actions", "cameras")}
    with pytest.raises(RuntimeError, match=r"ValueError: simulated failure") as error:
        bpy.ops.import_anim.mtvcrafter_motion(filepath=str(path))
    assert "Traceback" not in str(error.value)
    assert {kind: set(getattr(bpy.data, kind)) for kind in before} == before
    assert context.view_layer.objects.active == rig


# --- d. Save as preset --------------------------------------------------------------------------------------------


def test_a_saved_preset_is_in_the_user_folder_in_the_menus_and_retargets_the_same(clean_scene, user_folder):
    from mtvcrafter_bridge import bone_maps
    from mtvcrafter_bridge.armature import export_joints

    context = clean_scene
    rig = scene_with_rig(context, "mixamo", seed=7)
    camera = add_camera(context)
    assert bpy.ops.mtvcrafter.fill_bone_map(armature=rig.name, bone_map="mixamo") == {"FINISHED"}
    rows = rig.mtvcrafter_retarget.joints
    assert [r.joint for r in rows] == list(JOINT_NAMES)
    assert rows[0].bone == "mixamorig:Hips"  # resolved to the rig's own names
    spine2 = rows[JOINT_NAMES.index("spine2")]  # a lerp: a blend towards a second bone
    assert (spine2.bone, spine2.blend_bone, round(spine2.blend, 6)) == ("mixamorig:Spine1", "mixamorig:Spine2", 0.3)
    assert rows[JOINT_NAMES.index("left_hand")].bone == "mixamorig:LeftHandMiddle1"  # the first alternative
    assert bpy.ops.mtvcrafter.save_bone_map(armature=rig.name, preset_name="My Studio Rig") == {"FINISHED"}

    path = user_folder / "my_studio_rig.json"
    assert path.is_file()
    saved = load_bone_maps([user_folder])["my_studio_rig"]  # a valid bone map for the library too
    assert saved.name == "My Studio Rig" and set(saved.joints) == set(JOINT_NAMES)
    assert (saved.up, saved.forward, saved.unit) == ("Y", "Z", "cm")  # the rig's own axes, as its BVH has them
    identifiers = [item[0] for item in bone_maps.source_items(None, context)]
    assert "my_studio_rig" in identifiers and "mixamo" in identifiers
    assert rig.mtvcrafter_retarget.source == "my_studio_rig"

    results = {}
    for choice in ("my_studio_rig", "mixamo"):
        context.view_layer.objects.active = rig
        assert bpy.ops.mtvcrafter.retarget_rig(armature=rig.name, bone_map=choice) == {"FINISHED"}
        results[choice] = export_joints(context, context.active_object, camera, 1, FRAMES)
    difference = np.abs(results["my_studio_rig"] - results["mixamo"]).max()
    report(HEADING, f"a saved preset retargets as the built-in one: max difference {difference:.2e} mm")
    assert difference < 1e-3
    json.loads(path.read_text())  # plain JSON, editable by hand


# --- e. UI code paths and registration ----------------------------------------------------------------------------

UI_FUNCTIONS = bpy.types.UILayout.bl_rna.functions
ICONS = set(UI_FUNCTIONS["prop"].parameters["icon"].enum_items.keys())


def _rna_properties(data):
    return (data if isinstance(data, bpy.types.Struct) else data.bl_rna).properties


def operator_properties(idname: str):
    """An operator's properties, by its ``category.name`` (the public ``get_rna_type``: Blender 5.1 removed the
    private ``bpy.ops._op_get_rna_type``)."""
    category, name = idname.split(".")
    return getattr(getattr(bpy.ops, category), name).get_rna_type().properties


class OperatorButton:
    """What ``layout.operator`` returns: its properties, checked against the operator's."""

    def __init__(self, idname):
        object.__setattr__(self, "properties", operator_properties(idname))
        object.__setattr__(self, "values", {})

    def __setattr__(self, name, value):
        assert name in self.properties, name
        self.values[name] = value


class FakeLayout:
    """A stand-in for ``UILayout`` (headless Blender cannot draw): every call is checked against the real
    UILayout's RNA — function, argument names, icons, the properties it names — and recorded."""

    def __init__(self, calls):
        self.calls = calls

    def __getattr__(self, name):
        function = UI_FUNCTIONS.get(name)
        assert function is not None, f"UILayout has no {name}()"
        accepted = [p.identifier for p in function.parameters if not p.is_output]

        def call(*args, **kwargs):
            assert len(args) <= len(accepted) and all(key in accepted for key in kwargs), (name, args, kwargs)
            bound = {**dict(zip(accepted[: len(args)], args, strict=True)), **kwargs}
            assert bound.get("icon", "NONE") in ICONS, bound["icon"]
            for data, prop in (("data", "property"), ("dataptr", "propname"), ("active_dataptr", "active_propname")):
                if data in bound:
                    assert bound[prop] in _rna_properties(bound[data]), (name, bound[prop])
            if "search_data" in bound:
                assert bound["search_property"] in _rna_properties(bound["search_data"])
            if name in ("operator", "operator_menu_enum"):
                assert "." in bound["operator"]
                properties = operator_properties(bound["operator"])
                assert name == "operator" or bound["property"] in properties
            self.calls.append((name, bound))
            if name in ("row", "column", "box", "split"):
                return FakeLayout(self.calls)
            if name == "operator":
                return OperatorButton(bound["operator"])
            return None

        return call


def draw_panel(context, panel=None):
    """The calls a panel's draw makes (default: the Retarget Rig panel, for the active object)."""
    from types import SimpleNamespace

    from mtvcrafter_bridge.panels import MTVCRAFTER_PT_retarget

    calls = []
    (panel or MTVCRAFTER_PT_retarget).draw(SimpleNamespace(layout=FakeLayout(calls)), context)
    return calls


@pytest.mark.parametrize("source", ["AUTO", "mixamo", "CUSTOM", "structure"])
def test_the_panel_list_and_dialogs_draw_with_the_real_layout_api(clean_scene, source):
    from types import SimpleNamespace

    from mtvcrafter_bridge.operators import IMPORT_ANIM_OT_mtvcrafter_motion
    from mtvcrafter_bridge.panels import MTVCRAFTER_PT_panel, MTVCRAFTER_PT_retarget, MTVCRAFTER_UL_joint_bones

    context = clean_scene
    rig = scene_with_rig(context, "mixamo")
    context.view_layer.objects.active = rig
    settings = rig.mtvcrafter_retarget
    if source == "CUSTOM":
        assert bpy.ops.mtvcrafter.fill_bone_map(armature=rig.name, bone_map="mixamo") == {"FINISHED"}
        settings.active = JOINT_NAMES.index("spine2")  # a row blended towards a second bone
    settings.source = source
    assert MTVCRAFTER_PT_retarget.poll(context)
    calls = draw_panel(context)
    names = [name for name, _ in calls]
    assert ("template_list" in names) == (source == "CUSTOM")
    button = next(args for name, args in calls if name == "operator" and args["operator"] == "mtvcrafter.retarget_rig")
    assert button is not None
    for row in settings.joints:
        layout = FakeLayout([])
        MTVCRAFTER_UL_joint_bones.draw_item(None, context, layout, settings, row, 0, settings, "active", 0)
    draw_panel(context, MTVCRAFTER_PT_panel)
    dialog = SimpleNamespace(
        layout=FakeLayout([]), bl_rna=bpy.ops.import_anim.mtvcrafter_motion.get_rna_type(), filepath=""
    )
    IMPORT_ANIM_OT_mtvcrafter_motion.draw(dialog, context)


@pytest.mark.parametrize(
    ("name", "heading", "shown"),
    [
        ("dance.bvh", "BVH", ["bone_map", "unit", "up_axis"]),
        ("012314.NPY", "Joint Positions", ["unit", "up_axis"]),
        ("results.npy", "Joint Positions", ["unit", "up_axis"]),
        ("gBR_sBM.pkl", "SMPL Parameters", ["up_axis"]),
        ("poses.npz", "SMPL Parameters", ["up_axis"]),
        ("", "BVH", ["bone_map", "unit", "up_axis"]),  # no file selected yet
    ],
)
def test_the_import_dialog_shows_the_options_that_apply_to_the_file_selected(clean_scene, name, heading, shown):
    """File › Import's sidebar: clip, scene and Clean Motion options always; below them, under the format's heading,
    only the options that format takes (the file browser keeps the operator's filepath on the selected file)."""
    from types import SimpleNamespace

    from mtvcrafter_bridge.operators import IMPORT_ANIM_OT_mtvcrafter_motion

    rna = bpy.ops.import_anim.mtvcrafter_motion.get_rna_type()
    assert rna.properties["filter_glob"].default == "*.pkl;*.npz;*.npy;*.bvh"
    calls = []
    dialog = SimpleNamespace(layout=FakeLayout(calls), bl_rna=rna, filepath=f"/motions/{name}" if name else "")
    IMPORT_ANIM_OT_mtvcrafter_motion.draw(dialog, clean_scene)
    headings = [args["heading"] for call, args in calls if call == "column" and args.get("heading")]
    drawn = [args["property"] for call, args in calls if call == "prop"]
    always = ["clip_index", "keep_scene_settings", "clean", "clean_smooth", "clean_feet"]
    assert headings == ["Clean Motion", heading] and drawn == always + shown


def test_register_unregister_register_in_one_session(clean_scene):
    import mtvcrafter_bridge

    context = clean_scene
    rig = scene_with_rig(context, "mixamo")
    rig.mtvcrafter_retarget.source = "mixamo"
    mtvcrafter_bridge.unregister()
    try:
        assert not hasattr(bpy.types.Object, "mtvcrafter_retarget")
        assert not hasattr(bpy.types, "MTVCRAFTER_OT_retarget_rig")
        assert not hasattr(bpy.types.Scene, "mtvcrafter_preset")
    finally:
        mtvcrafter_bridge.register()
    assert rig.mtvcrafter_retarget.source == "mixamo"  # stored on the rig, read again after registering
    mtvcrafter_bridge.unregister()
    mtvcrafter_bridge.register()
    context.view_layer.objects.active = rig
    assert bpy.ops.mtvcrafter.fill_bone_map(bone_map="mixamo") == {"FINISHED"}
    assert bpy.ops.mtvcrafter.retarget_rig(armature=rig.name) == {"FINISHED"}


def test_enum_items_are_kept_alive_and_stable(clean_scene, user_folder):
    """Blender keeps pointers into the strings an items callback returns: the same list object comes back while the
    files are unchanged, and an item keeps its number when a preset is added."""
    from mtvcrafter_bridge import bone_maps

    first = bone_maps.source_items(None, None)
    assert bone_maps.source_items(None, None) is first
    assert bone_maps.preset_items(None, None) is bone_maps.preset_items(None, None)
    identifiers = [item[0] for item in first]
    assert len(set(identifiers)) == len(identifiers) and len({item[3] for item in first}) == len(first)
    user_folder.mkdir(parents=True)
    (user_folder / "aaa.json").write_text((bone_maps.bone_maps()["mixamo"].path).read_text())
    second = bone_maps.source_items(None, None)
    assert "aaa" in [item[0] for item in second]
    numbers = {item[0]: item[3] for item in second}
    assert all(numbers[item[0]] == item[3] for item in first)


def test_save_as_preset_refuses_the_id_of_a_bundled_map(clean_scene, user_folder):
    context = clean_scene
    rig = scene_with_rig(context, "mixamo")
    assert bpy.ops.mtvcrafter.fill_bone_map(armature=rig.name, bone_map="mixamo") == {"FINISHED"}
    with pytest.raises(RuntimeError, match=r"'mixamo' is the id of the bone map .*mixamo\.json; choose another"):
        bpy.ops.mtvcrafter.save_bone_map(armature=rig.name, preset_name="  MIXAMO ")
    assert not user_folder.exists() or not list(user_folder.iterdir())
    assert rig.mtvcrafter_retarget.source == "CUSTOM"


# --- f. Rigs with any bone names: mapping by structure ------------------------------------------------------------

REALWORLD = Path(__file__).resolve().parents[3] / "shared" / "data" / "realworld"
#: Real BVH files (Mixamo's export; CMU's cgspeed conversion) and their unit, which Blender's importer scales to metres.
REAL_BVH = {"mixamo": ("mixamo_test_freebvh.bvh", "cm"), "cmu": ("cmu_cgspeed_01_01.bvh", "cmu")}
needs_real_bvh = pytest.mark.skipif(
    not all((REALWORLD / name).is_file() for name, _ in REAL_BVH.values()),
    reason="the real-world motion files are not beside the checkout",
)
#: The rig family mapping by structure recognises from each real file's topology (its map then places every joint).
FAMILY = {"mixamo": "Mixamo", "cmu": "CMU (cgspeed)"}


def import_real_bvh(context, family: str):
    """A real BVH file through Blender's own importer (in metres, the scene at the file's frame rate), and the file."""
    name, unit = REAL_BVH[family]
    path = REALWORLD / name
    result = bpy.ops.import_anim.bvh(filepath=str(path), global_scale=UNITS[unit], update_scene_fps=True)
    assert result == {"FINISHED"}
    return context.active_object, path


def scramble_bone_names(rig, seed: int) -> dict[str, str]:
    """Every bone renamed to a random token (Blender renames its F-curves with it); returns token → old name."""
    rng = np.random.default_rng(seed)
    letters = list("abcdefghijklmnopqrstuvwxyz")
    old = {}
    for bone in rig.data.bones:
        token = "".join(rng.choice(letters, 8))
        old[token], bone.name = bone.name, token
    return old


def joint_errors(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Per SMPL joint, the largest distance over the frames."""
    worst = np.linalg.norm(a - b, axis=-1).max(axis=0)
    return {name: float(worst[j]) for j, name in enumerate(JOINT_NAMES)}


@needs_real_bvh
@pytest.mark.parametrize("family", ["mixamo", "cmu"])
def test_a_real_rig_with_scrambled_bone_names_retargets_by_structure_as_with_its_names(clean_scene, family, capfd):
    """A rig Blender's BVH importer built from a real file, every bone renamed to a random token: no bone map names
    a joint, so Retarget Rig (auto) maps it by its skeleton's structure, reports so with its confidence and what it
    inferred, and the SMPL armature performs as the same rig with its names does — by structure, to the micrometre;
    by the bone map of its names (the family its structure is recognised as), on all 24 joints, within 1 mm."""
    from mtvcrafter_bridge.armature import export_joints

    context = clean_scene
    named, path = import_real_bvh(context, family)
    scrambled, _ = import_real_bvh(context, family)
    old_names = scramble_bone_names(scrambled, seed=len(family))
    assert not {b.name for b in scrambled.data.bones} & {b.name for b in named.data.bones}
    frames = min(read_bvh(path).num_frames, 60)
    context.scene.frame_start, context.scene.frame_end = 1, frames
    camera = add_camera(context, location=(0.0, -7.0, 1.0))

    joints, out = {}, {}
    for label, rig, choice in (("names", named, "AUTO"), ("structure", named, "structure"), ("any", scrambled, "AUTO")):
        context.view_layer.objects.active = rig
        capfd.readouterr()
        assert bpy.ops.mtvcrafter.retarget_rig(armature=rig.name, bone_map=choice) == {"FINISHED"}
        out[label] = capfd.readouterr().out
        joints[label] = export_joints(context, context.active_object, camera, 1, frames)

    bone_map = load_bone_maps()[family]
    assert f"bone map {bone_map.name} (detected, confidence 1.00)" in out["names"], out["names"]
    assert re.search(r"bone map by structure \(confidence 0\.\d\d\); found by structure", out["structure"])
    found = re.search(
        r"bone map by structure \(detected, confidence (0\.\d\d)\); no bone map names all 24 joints", out["any"]
    )
    assert found, out["any"]
    pelvis = re.search(r"found by structure, not by bone names: pelvis (\w+)", out["any"])
    assert pelvis and old_names[pelvis[1]].endswith("Hips")  # what it inferred, in the rig's (random) names
    assert "left and right from the rest pose" in out["any"]
    assert f"structure matches the {FAMILY[family]} skeleton: its map's ({family})" in out["any"], out["any"]

    same_rig = joint_errors(joints["any"], joints["structure"])
    against_names = joint_errors(joints["any"], joints["names"])
    worst = max(against_names, key=against_names.get)
    report(
        HEADING,
        f"{path.name} ({len(scrambled.data.bones)} bones renamed to random tokens, {frames} frames): retargeted by "
        f"structure (confidence {found[1]}, the {FAMILY[family]} skeleton recognised); max "
        f"{max(same_rig.values()):.4f} mm from the named rig by structure; from the named rig through the "
        f"{bone_map.name} map: max {against_names[worst]:.4f} mm over all 24 joints ({worst})",
    )
    assert max(same_rig.values()) < 1.0
    assert against_names[worst] < 1.0
    assert np.ptp(joints["any"], axis=0).max() > 100.0  # the rig's motion came along with its renamed F-curves (mm)


@needs_real_bvh
def test_a_bvh_blender_exports_from_a_rig_with_scrambled_names_loads_as_the_named_file(clean_scene, tmp_path, capfd):
    """Blender's BVH exporter writes a rig whose bones were renamed to random tokens: the library reads that file
    (auto) by its structure, and its joints equal the named file's — by structure, and through the Mixamo map on
    all 24 joints (the Mixamo skeleton recognised) — within 1 mm. File › Import takes it too, and By structure in
    its Bone map menu reaches the reader."""
    from mtvcrafter.motion import load_motion

    context = clean_scene
    rig, path = import_real_bvh(context, "mixamo")
    old_names = scramble_bone_names(rig, seed=7)
    frames = read_bvh(path).num_frames
    exported = tmp_path / "scrambled.bvh"
    context.view_layer.objects.active = rig
    assert bpy.ops.export_anim.bvh(filepath=str(exported), frame_start=1, frame_end=frames) == {"FINISHED"}
    text = exported.read_text()
    assert "mixamorig" not in text and all(token in text for token in old_names)

    scrambled = load_motion(exported)
    named, by_structure = load_motion(path), load_motion(path, bone_map="structure")
    assert "bone map: by the skeleton (structure, detected, confidence 0.88)" in scrambled.notes
    assert scrambled.num_frames == named.num_frames == frames and scrambled.fps == named.fps == 30
    assert any(note.startswith("structure matches the Mixamo skeleton") for note in scrambled.notes)
    same = joint_errors(scrambled.joints, by_structure.joints)
    against_names = joint_errors(scrambled.joints, named.joints)
    alike = max(against_names.values())
    report(
        HEADING,
        f"Blender's BVH export of the Mixamo rig with scrambled names, read back (auto, by structure): max "
        f"{max(same.values()):.4f} mm from the named file by structure, {alike:.4f} mm from it through the Mixamo map "
        "on all 24 joints",
    )
    assert max(same.values()) < 1.0 and alike < 1.0

    capfd.readouterr()
    assert bpy.ops.import_anim.mtvcrafter_motion(filepath=str(exported)) == {"FINISHED"}
    assert "bone map: by the skeleton (structure, detected, confidence 0.88)" in capfd.readouterr().out
    assert bpy.ops.import_anim.mtvcrafter_motion(filepath=str(path), bone_map="structure") == {"FINISHED"}
    assert "bone map: by the skeleton (structure, as chosen, confidence 0.88)" in capfd.readouterr().out


def v(*xyz) -> np.ndarray:
    return np.array(xyz, dtype=np.float64)


def four_legged_bones() -> list[Bone]:
    """A dog's skeleton (body frame: Y up, facing +Z): a level spine, neck and head, a tail, four legs hanging."""
    bones = [
        ("q0", None, v(0, 0.6, -0.4), v(0, 0.6, 0.0)),
        ("q1", "q0", v(0, 0.6, 0.0), v(0, 0.6, 0.4)),
        ("q2", "q1", v(0, 0.6, 0.4), v(0, 0.8, 0.6)),
        ("q3", "q2", v(0, 0.8, 0.6), v(0, 0.8, 0.8)),
        ("q4", "q0", v(0, 0.6, -0.4), v(0, 0.5, -0.8)),
    ]
    for k, (x, z, parent) in enumerate(
        [(0.15, 0.35, "q1"), (-0.15, 0.35, "q1"), (0.15, -0.35, "q0"), (-0.15, -0.35, "q0")]
    ):
        bones += [
            (f"p{k}a", parent, v(x, 0.6, z), v(x, 0.3, z)),
            (f"p{k}b", f"p{k}a", v(x, 0.3, z), v(x, 0.05, z)),
            (f"p{k}c", f"p{k}b", v(x, 0.05, z), v(x, 0.0, z + 0.08)),
        ]
    return bones


def chain_bones() -> list[Bone]:
    """A snake: one chain of ten bones."""
    return [(f"s{k}", f"s{k - 1}" if k else None, v(0, 0.1, 0.2 * k), v(0, 0.1, 0.2 * k + 0.2)) for k in range(10)]


@pytest.mark.parametrize("choice", ["AUTO", "structure"])
@pytest.mark.parametrize(
    ("bones", "why"),
    [
        (four_legged_bones, r"its four limbs hang the same way, at \d+° to its spine, as a four-legged animal's"),
        (chain_bones, r"no joint has two alike chains going down from it \(legs\), as in a single chain"),
    ],
    ids=["four-legged", "one-chain"],
)
def test_a_rig_that_is_not_a_human_is_refused_in_one_line_and_nothing_is_made(clean_scene, choice, bones, why):
    context = clean_scene
    context.scene.frame_start, context.scene.frame_end = 1, FRAMES
    rig = build_rig(context, "Creature", bones(), "Y", "m")
    animate(rig)
    before = {kind: set(getattr(bpy.data, kind)) for kind in ("objects", "armatures", "actions", "cameras")}
    with pytest.raises(RuntimeError, match=rf"Creature: .*not read as a human's.*{why}") as error:
        bpy.ops.mtvcrafter.retarget_rig(armature=rig.name, bone_map=choice)
    message = str(error.value).strip()
    assert "\n" not in message and "Traceback" not in message
    assert message.endswith("choose a bone map, or fill the mapping list and edit it")  # what to do, in Blender
    assert ("no bone map names all 24 joints" in message) == (choice == "AUTO")
    assert {kind: set(getattr(bpy.data, kind)) for kind in before} == before


def test_fill_from_structure_fills_every_row_and_retargets_as_by_structure(clean_scene, user_folder):
    """By structure in Fill from Preset: the 24 rows from the skeleton (a start to edit), equal to retargeting by
    structure; auto-fill of a rig no bone map names maps it by structure too; the preset name "structure" is the
    menu's own."""
    from mtvcrafter_bridge.armature import export_joints

    context = clean_scene
    rig = scene_with_rig(context, "mixamo", seed=8)
    scramble_bone_names(rig, seed=8)
    camera = add_camera(context)
    for choice in ("structure", "AUTO"):
        rig.mtvcrafter_retarget.joints.clear()
        assert bpy.ops.mtvcrafter.fill_bone_map(armature=rig.name, bone_map=choice) == {"FINISHED"}
        rows = rig.mtvcrafter_retarget.joints
        assert [r.joint for r in rows] == list(JOINT_NAMES) and all(r.bone in rig.data.bones for r in rows)
    spine2 = rows[JOINT_NAMES.index("spine2")]
    assert spine2.blend_bone in rig.data.bones and 0.0 < spine2.blend < 1.0  # a lerp along the spine
    results = {}
    for choice in ("CUSTOM", "structure"):
        context.view_layer.objects.active = rig
        assert bpy.ops.mtvcrafter.retarget_rig(armature=rig.name, bone_map=choice) == {"FINISHED"}
        results[choice] = export_joints(context, context.active_object, camera, 1, FRAMES)
    assert np.abs(results["CUSTOM"] - results["structure"]).max() < 1e-3
    with pytest.raises(RuntimeError, match=r"'structure' is the menus' By structure; choose another name"):
        bpy.ops.mtvcrafter.save_bone_map(armature=rig.name, preset_name="Structure")
