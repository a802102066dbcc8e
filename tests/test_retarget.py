"""Bone maps (``presets/bones``) and retargeting: any rig's joints onto SMPL-24, units, axes, the default
camera, BVH files through the library and the command line, and the bone maps inside the wheel."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mtvcrafter.cli import main
from mtvcrafter.motion import JOINT_NAMES, MotionError, inverse_kinematics, load_motion, load_motions, project
from mtvcrafter.motion.bone_map_detection import detect_bone_map, fit_bone_map
from mtvcrafter.motion.bone_maps import (
    BONE_MAPS_ENV,
    BoneMap,
    bone_map_folders,
    bundled_bone_map_folder,
    load_bone_maps,
    read_bone_map,
    save_bone_map,
    shared_prefix,
)
from mtvcrafter.motion.bvh import write_bvh
from mtvcrafter.motion.bvh_motion import motion_from_bvh
from mtvcrafter.motion.camera import default_camera, read_camera, world_to_camera_mm
from mtvcrafter.motion.rig import with_skeleton
from mtvcrafter.motion.skeleton import NEUTRAL_REST_JOINTS_M
from mtvcrafter.motion.skeleton_mapping import axes_matrix, choose_axes, map_points, rig_to_world
from mtvcrafter.motion.units import UNITS, choose_unit, skeleton_size

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ("cmu", "generic", "mixamo", "motionbuilder", "rokoko", "smpl")
J = {name: i for i, name in enumerate(JOINT_NAMES)}


@pytest.fixture(autouse=True)
def no_user_bone_maps(tmp_path, monkeypatch):
    """Only the bundled maps: a bone map in the user's own folder must not change these tests."""
    empty = tmp_path / "user-bones"
    empty.mkdir()
    monkeypatch.setenv(BONE_MAPS_ENV, str(empty))


@pytest.fixture(scope="module")
def maps():
    return load_bone_maps([bundled_bone_map_folder()])


@pytest.fixture(scope="module")
def clip_m(sample_motions):
    """40 frames of a real clip as SMPL joints in a Y-up body frame, metres (camera y down → up)."""
    joints = sample_motions[1].joints[:40].astype(np.float64) / 1000.0
    return joints * np.array([1.0, -1.0, -1.0])


# --- presets ------------------------------------------------------------------------------------------------


def test_every_bundled_preset_loads_and_places_all_24_joints(maps):
    assert sorted(maps) == list(PRESETS)
    assert bundled_bone_map_folder() == ROOT / "presets" / "bones"  # a checkout reads presets/bones itself
    for ident, bone_map in maps.items():
        assert bone_map.id == ident and bone_map.path.parent == bundled_bone_map_folder()
        assert list(bone_map.joints) == list(JOINT_NAMES)
        assert bone_map.name and bone_map.description
        assert (bone_map.up, bone_map.forward) == ("Y", "Z")
        assert bone_map.fallback == (ident == "generic")
        # what is written back reads the same
        again = BoneMap.from_dict(json.loads(json.dumps(bone_map.to_dict())))
        assert again.joints == bone_map.joints and again.unit == bone_map.unit
    assert maps["cmu"].unit == "cmu" and maps["mixamo"].unit == "cm"


def solve_rig(bone_map, joints, rng):
    """Heads and ends of rig bones placed so that the first alternative of every joint of ``bone_map`` gives
    ``joints`` back: points are the joints themselves, lerp partners are solved as a linear system."""
    fixed: dict[tuple[str, bool], np.ndarray] = {}
    lerps = []
    for name in JOINT_NAMES:
        alternative = bone_map.alternatives[name][0]
        if len(alternative) == 1:
            ref = alternative[0][0]
            fixed[(ref.bone, ref.end)] = joints[:, J[name]]
        else:
            lerps.append((alternative, joints[:, J[name]]))
    unknown = sorted({(ref.bone, ref.end) for alt, _ in lerps for ref, _ in alt} - set(fixed))
    if unknown:
        index = {u: i for i, u in enumerate(unknown)}
        a = np.zeros((len(lerps), len(unknown)))
        b = np.zeros((len(lerps), joints.shape[0] * 3))
        for row, (alternative, target) in enumerate(lerps):
            rhs = target.reshape(-1).copy()
            for ref, weight in alternative:
                key = (ref.bone, ref.end)
                if key in fixed:
                    rhs -= weight * fixed[key].reshape(-1)
                else:
                    a[row, index[key]] += weight
            b[row] = rhs
        solution, *_ = np.linalg.lstsq(a, b, rcond=None)
        for key, i in index.items():
            fixed[key] = solution[i].reshape(-1, 3)
    heads = {bone: p for (bone, end), p in fixed.items() if not end}
    ends = {bone: p for (bone, end), p in fixed.items() if end}
    for bone in ends:  # a bone with an end has a head too
        heads.setdefault(bone, ends[bone] + rng.normal(size=3) * 0.1)
    return heads, ends


@pytest.mark.parametrize("ident", PRESETS)
def test_map_points_gives_back_the_joints_a_rig_was_built_from(maps, clip_m, ident):
    rng = np.random.default_rng(len(ident))
    bone_map = maps[ident]
    heads, ends = solve_rig(bone_map, clip_m, rng)
    extra = {f"Extra{k}": rng.normal(size=(len(clip_m), 3)) for k in range(5)}  # fingers, twist bones, props …
    prefix = {"mixamo": "mixamorig:", "cmu": "Armature|", "rokoko": "Actor:"}.get(ident, "")
    names = [prefix + n for n in [*heads, *extra]]
    order = rng.permutation(len(names))
    names = [names[i] for i in order]
    stacked = np.stack([[*heads.values(), *extra.values()][i] for i in order], axis=1)
    got = map_points(names, (stacked, {prefix + k: v for k, v in ends.items()}), bone_map)
    np.testing.assert_allclose(got, clip_m, atol=1e-9)
    # the same through the dict form, in upper case, and frame by frame
    as_dict = {n.upper(): stacked[:, i] for i, n in enumerate(names)} | {f"{k}@end": v for k, v in ends.items()}
    np.testing.assert_allclose(map_points(None, as_dict, bone_map), clip_m, atol=1e-9)
    single = map_points(names, stacked[3], bone_map, ends={prefix + k: v[3] for k, v in ends.items()})
    np.testing.assert_allclose(single, clip_m[3], atol=1e-9)


def test_alternatives_lerps_and_end_points(maps):
    mixamo = maps["mixamo"]
    rng = np.random.default_rng(0)
    names = [n for alts in mixamo.joints.values() for n in (alts if isinstance(alts, list) else [alts])]
    bones = sorted({n for n in names if isinstance(n, str) and "@" not in n} | {"Spine1", "Spine2"})
    bones.remove("LeftToeBase")  # no toe bone: the foot's End Site stands in
    bones.remove("LeftHandMiddle1")  # no middle finger: between index and ring finger
    bones += ["LeftHandIndex1", "LeftHandRing1"]
    heads = rng.normal(size=(3, len(bones), 3))
    at = {b: heads[:, i] for i, b in enumerate(bones)}
    foot_end = rng.normal(size=(3, 3))
    got = map_points(bones, heads, mixamo, ends={bones.index("LeftFoot"): foot_end})  # ends by column index
    np.testing.assert_allclose(got[:, J["left_foot"]], foot_end)
    np.testing.assert_allclose(got[:, J["right_foot"]], at["RightToeBase"])
    np.testing.assert_allclose(got[:, J["left_hand"]], (at["LeftHandIndex1"] + at["LeftHandRing1"]) / 2)
    np.testing.assert_allclose(got[:, J["spine2"]], at["Spine1"] + 0.3 * (at["Spine2"] - at["Spine1"]))
    # t outside [0, 1] extrapolates: without fingers the hand lies a third of a forearm beyond the wrist
    no_fingers = [b for b in bones if "Hand" not in b or b in ("LeftHand", "RightHand")]
    h = np.stack([at[b] for b in no_fingers], axis=1)
    got = map_points(no_fingers, h, mixamo, ends={"LeftFoot": foot_end})
    np.testing.assert_allclose(got[:, J["left_hand"]], at["LeftForeArm"] + 1.33 * (at["LeftHand"] - at["LeftForeArm"]))
    # no End Site either: the joint cannot be placed, and the message says what was looked for
    with pytest.raises(MotionError, match=r"left_foot \(LeftToeBase or LeftFoot@end\)"):
        map_points(no_fingers, h, mixamo)


# --- detection ----------------------------------------------------------------------------------------------

MIXAMO = (
    "Hips Spine Spine1 Spine2 Neck Head HeadTop_End LeftEye RightEye LeftShoulder LeftArm LeftForeArm LeftHand "
    "LeftHandThumb1 LeftHandIndex1 LeftHandMiddle1 LeftHandMiddle2 LeftHandRing1 LeftHandPinky1 RightShoulder "
    "RightArm RightForeArm RightHand RightHandThumb1 RightHandIndex1 RightHandMiddle1 RightHandRing1 RightHandPinky1 "
    "LeftUpLeg LeftLeg LeftFoot LeftToeBase LeftToe_End RightUpLeg RightLeg RightFoot RightToeBase RightToe_End"
).split()
CGSPEED = (
    "Hips LHipJoint LeftUpLeg LeftLeg LeftFoot LeftToeBase RHipJoint RightUpLeg RightLeg RightFoot RightToeBase "
    "LowerBack Spine Spine1 Neck Neck1 Head LeftShoulder LeftArm LeftForeArm LeftHand LeftFingerBase LeftHandIndex1 "
    "LThumb RightShoulder RightArm RightForeArm RightHand RightFingerBase RightHandIndex1 RThumb"
).split()
CMU_ASF = (
    "root lhipjoint lfemur ltibia lfoot ltoes rhipjoint rfemur rtibia rfoot rtoes lowerback upperback thorax "
    "lowerneck upperneck head lclavicle lhumerus lradius lwrist lhand lfingers lthumb rclavicle rhumerus rradius "
    "rwrist rhand rfingers rthumb"
).split()
ROKOKO = (
    "Hips LeftThigh LeftShin LeftFoot LeftToe LeftToeEnd RightThigh RightShin RightFoot RightToe RightToeEnd Spine1 "
    "Spine2 Spine3 Spine4 Neck Head LeftShoulder LeftArm LeftForeArm LeftHand LeftFinger3Metacarpal "
    "LeftFinger3Proximal RightShoulder RightArm RightForeArm RightHand RightFinger3Metacarpal RightFinger3Proximal"
).split()
SMPL_ADDON = (
    [f"m_avg_{n}" for n in "Pelvis L_Hip R_Hip Spine1 L_Knee R_Knee Spine2 L_Ankle R_Ankle Spine3".split()]
    + [f"m_avg_{n}" for n in "L_Foot R_Foot Neck L_Collar R_Collar Head L_Shoulder R_Shoulder L_Elbow R_Elbow".split()]
    + [f"m_avg_{n}" for n in "L_Wrist R_Wrist L_Hand R_Hand".split()]
)
UNITY = (
    "Hips Spine Chest UpperChest Neck Head LeftShoulder LeftUpperArm LeftLowerArm LeftHand LeftMiddleProximal "
    "RightShoulder RightUpperArm RightLowerArm RightHand RightMiddleProximal LeftUpperLeg LeftLowerLeg LeftFoot "
    "LeftToes RightUpperLeg RightLowerLeg RightFoot RightToes"
).split()
UNREAL = (
    "root pelvis spine_01 spine_02 spine_03 neck_01 head clavicle_l upperarm_l lowerarm_l hand_l middle_01_l "
    "clavicle_r upperarm_r lowerarm_r hand_r middle_01_r thigh_l calf_l foot_l ball_l thigh_r calf_r foot_r ball_r"
).split()

#: The SMPL names as smpl2bvh writes them (its hand joints are "palms").
SMPL2BVH = (
    "Pelvis Left_hip Right_hip Spine1 Left_knee Right_knee Spine2 Left_ankle Right_ankle Spine3 Left_foot Right_foot "
    "Neck Left_collar Right_collar Head Left_shoulder Right_shoulder Left_elbow Right_elbow Left_wrist Right_wrist "
    "Left_palm Right_palm"
).split()


def _daz_rest():
    """cgspeed's Daz-friendly conversion of the CMU database (Poser/DAZ names, centimetres): joint, parent,
    offset; the right side mirrors the left."""
    rest = [
        ("hip", None, (0, 0, 0)),
        ("abdomen", "hip", (0, 20.6881, -0.73152)),
        ("chest", "abdomen", (0, 11.7043, -0.48768)),
        ("neck", "chest", (0, 22.1894, -2.19456)),
        ("head", "neck", (-0.24384, 7.07133, 1.2192)),
        ("leftEye", "head", (4.14528, 8.04674, 8.04672)),
        ("rightEye", "head", (-3.6576, 8.04674, 8.04672)),
    ]
    for s, x in (("l", 1.0), ("r", -1.0)):
        rest += [
            (f"{s}Collar", "chest", (2.68224 * x, 19.2634, -4.8768)),
            (f"{s}Shldr", f"{s}Collar", (8.77824 * x, -1.95073, 1.46304)),
            (f"{s}ForeArm", f"{s}Shldr", (28.1742 * x, -1.7115, 0.48768)),
            (f"{s}Hand", f"{s}ForeArm", (22.5879 * x, 0.773209, 7.07136)),
            (f"{s}Thumb1", f"{s}Hand", (1.2192 * x, -0.487915, 3.41376)),
            (f"{s}Index1", f"{s}Hand", (7.75947 * x, 0.938293, 5.60832)),
            (f"{s}Mid1", f"{s}Hand", (8.24714 * x, 1.18213, 3.41376)),
            (f"{s}Ring1", f"{s}Hand", (8.82822 * x, 0.546677, 1.51678)),
            (f"{s}Pinky1", f"{s}Hand", (8.27202 * x, -0.0477905, -0.4584)),
            (f"{s}Buttock", "hip", (8.77824 * x, 4.35084, 1.2192)),
            (f"{s}Thigh", f"{s}Buttock", (0, -1.70687, -2.19456)),
            (f"{s}Shin", f"{s}Thigh", (0, -36.8199, 0.73152)),
            (f"{s}Foot", f"{s}Shin", (-0.73152 * x, -45.1104, -5.12064)),
        ]
    ends = {f"{s}Foot": (1.1221 * x, -3.69964, 12.103) for s, x in (("l", 1.0), ("r", -1.0))}
    ends |= {
        f"{s}{f}1": (2.0 * x, 0, 0) for s, x in (("l", 1.0), ("r", -1.0)) for f in "Thumb Index Mid Ring Pinky".split()
    }
    ends |= {"leftEye": (1, 0, 0), "rightEye": (1, 0, 0)}
    return rest, ends


DAZ_FRIENDLY_REST, DAZ_FRIENDLY_ENDS = _daz_rest()


@pytest.mark.parametrize(
    "names, expected",
    [
        ([f"mixamorig:{n}" for n in MIXAMO], "mixamo"),
        ([f"mixamorig1:{n}" for n in MIXAMO], "mixamo"),
        ([f"Armature|mixamorig:{n}".upper() for n in MIXAMO], "mixamo"),
        ([n.lower() for n in MIXAMO], "mixamo"),
        (CGSPEED, "cmu"),
        (CMU_ASF, "cmu"),
        ([n.upper() for n in CMU_ASF], "cmu"),
        (ROKOKO, "rokoko"),
        ([f"Rokoko:{n}" for n in ROKOKO], "rokoko"),
        (list(JOINT_NAMES), "smpl"),
        (SMPL_ADDON, "smpl"),
        (SMPL2BVH, "smpl"),
        ([name for name, _, _ in DAZ_FRIENDLY_REST], "cmu"),
        (UNITY, "generic"),
        (UNREAL, "generic"),
    ],
)
def test_detection_picks_the_family_of_the_names(maps, names, expected):
    detection = detect_bone_map(names, maps)
    assert detection.bone_map.id == expected
    assert detection.complete and len(detection.mapped) == 24
    assert detection.confidence == (0.8 if expected == "generic" else 1.0)
    assert detection.ranking[0] == (expected, detection.confidence)
    used = set(names) - set(detection.unmapped_bones)
    assert all(any(u.lower() in m.lower() for u in used) for m in detection.mapped.values())


@pytest.mark.parametrize("prefix", ["mixamorig_", "Character1_", "Bip01 ", "DEF-"])
def test_a_prefix_every_bone_shares_is_stripped_like_a_namespace(maps, clip_m, prefix):
    """Exporters that flatten the namespace (mixamorig_Hips), characters named before every bone
    (Character1_Hips, Bip01 …): the shared prefix is dropped for matching; the rig's names are kept."""
    rng = np.random.default_rng(3)
    heads, ends = solve_rig(maps["mixamo"], clip_m, rng)
    names = [prefix + n for n in heads] + [prefix.rstrip("_ -")]  # Bip01 itself, say
    stacked = np.stack([*heads.values(), rng.normal(size=(len(clip_m), 3))], axis=1)
    detection = detect_bone_map(names, maps)
    assert detection.bone_map.id == "mixamo" and detection.confidence == 1.0
    assert detection.mapped["left_knee"] == f"{prefix}LeftLeg"  # in the rig's own spelling
    assert prefix.rstrip("_ -") in detection.unmapped_bones and f"{prefix}LeftUpLeg" not in detection.unmapped_bones
    got = map_points(names, (stacked, {prefix + k: v for k, v in ends.items()}), maps["mixamo"])
    np.testing.assert_allclose(got, clip_m, atol=1e-9)
    # a prefix only some bones have is no prefix: "Left" is not stripped from a rig's left side
    assert shared_prefix(["Left_arm", "Left_leg", "Right_arm", "Right_leg", "Spine"]) == ""


def test_detection_reports_unused_bones_and_names_in_the_rigs_spelling(maps):
    names = [f"mixamorig:{n}" for n in MIXAMO] + ["Sword", "mixamorig:LeftForeArmTwist"]
    detection = detect_bone_map(names, maps)
    assert detection.mapped["left_hip"] == "mixamorig:LeftUpLeg"
    assert detection.mapped["spine2"] == "lerp(mixamorig:Spine1, mixamorig:Spine2, 0.3)"
    assert detection.mapped["left_hand"] == "mixamorig:LeftHandMiddle1"
    assert {"Sword", "mixamorig:LeftForeArmTwist", "mixamorig:HeadTop_End", "mixamorig:LeftToe_End"} <= set(
        detection.unmapped_bones
    )
    assert "mixamorig:LeftHandRing1" in detection.unmapped_bones  # an alternative not taken is not "used"
    cg = detect_bone_map(CGSPEED, maps)
    assert cg.unmapped_bones == (
        "LHipJoint",
        "RHipJoint",
        "Neck",
        "LeftFingerBase",
        "LThumb",
        "RightFingerBase",
        "RThumb",
    )
    # how a map fits bones it was not chosen for
    fit = fit_bone_map(maps["mixamo"], CGSPEED)
    assert fit.missing_joints == ("spine2", "spine3")  # cgspeed has no Spine2
    assert fit.mapped["left_hand"] == "lerp(LeftForeArm, LeftHand, 1.33)"  # nor Mixamo's fingers


def test_detection_fails_clearly_when_nothing_fits(maps):
    with pytest.raises(MotionError, match="does not look like a human skeleton") as error:
        detect_bone_map(["Body", "Wheel_FL", "Wheel_FR", "Door"], maps, source="car.bvh")
    assert "car.bvh" in str(error.value) and "--preset" in str(error.value)
    legless = [f"mixamorig:{n}" for n in MIXAMO if "Leg" not in n and "Foot" not in n and "Toe" not in n]
    with pytest.raises(MotionError) as error:
        detect_bone_map(legless, maps)
    message = str(error.value)
    assert "the closest, Mixamo (mixamo), places 16 of 24 joints" in message
    assert "left_hip (LeftUpLeg)" in message and "--preset ID" in message and "presets/README.md" in message


# --- bone-map files -----------------------------------------------------------------------------------------


def test_bad_bone_map_files_name_the_file_and_the_field(tmp_path, maps):
    good = maps["mixamo"].to_dict()
    cases = {
        "not json": ("{", "not valid JSON"),
        "unknown joint": ({**good, "joints": {**good["joints"], "tail": "Tail"}}, "unknown SMPL joint"),
        "missing joint": ({**good, "joints": {k: v for k, v in good["joints"].items() if k != "neck"}}, "neck"),
        "bad lerp": ({**good, "joints": {**good["joints"], "neck": {"lerp": ["A", "B"]}}}, "joints.neck"),
        "bad factor": ({**good, "joints": {**good["joints"], "neck": {"lerp": ["A", "B", "x"]}}}, "lerp factor"),
        "bad unit": ({**good, "unit": "furlong"}, "field 'unit'"),
        "bad axes": ({**good, "up": "Z", "forward": "-Z"}, "different axes"),
        "typo": ({**good, "joint": {}}, "unknown key"),
    }
    for label, (content, expected) in cases.items():
        path = tmp_path / f"{label.replace(' ', '_')}.json"
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        with pytest.raises(MotionError, match=expected) as error:
            read_bone_map(path)
        assert str(path) in str(error.value), label
    commented = {**good, "_comment": "keys starting with _ are free"}
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "mine.json").write_text(json.dumps(commented))
    assert read_bone_map(tmp_path / "ok" / "mine.json").name == "Mixamo"


def test_user_folders_come_first_and_a_saved_map_reads_back(tmp_path, monkeypatch, maps):
    mine = tmp_path / "mine"
    custom = replace(maps["smpl"], name="My rig", path=None)
    saved = save_bone_map(BoneMap.from_dict({**custom.to_dict(), "unit": "cm"}), mine / "mixamo.json")
    monkeypatch.setenv(BONE_MAPS_ENV, str(mine))
    assert bone_map_folders()[0] == mine and bone_map_folders()[-1] == bundled_bone_map_folder()
    assert bone_map_folders(extra=[tmp_path / "addon"])[:2] == [tmp_path / "addon", mine]
    found = load_bone_maps()
    assert found["mixamo"].name == "My rig" and found["mixamo"].path == saved  # the user's wins
    assert found["cmu"].path.parent == bundled_bone_map_folder()


def test_a_broken_user_bone_map_is_skipped_with_a_warning_unless_it_is_asked_for(
    tmp_path, monkeypatch, y_up_bvh, capsys
):
    path, _ = y_up_bvh
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "studio.json").write_text('{"name": "Studio", "joints": {')  # cut while saving
    (mine / "smpl.json").write_text(json.dumps({"name": "My SMPL"}))  # replaces the bundled one, but is incomplete
    monkeypatch.setenv(BONE_MAPS_ENV, str(mine))
    with pytest.raises(MotionError, match="smpl.json: field .joints.: missing"):  # read strictly, the first bad file
        load_bone_maps()
    skipped = {}
    found = load_bone_maps(skipped=skipped)
    assert sorted(skipped) == ["smpl", "studio"] and str(mine / "studio.json") in str(skipped["studio"])
    assert found["smpl"].path.parent == bundled_bone_map_folder()  # the bundled map stands in for the broken one
    # auto-detection still works, and says which files it left out
    motion = motion_from_bvh(path)
    notes = "\n".join(motion.notes)
    assert "bone map: SMPL (smpl, detected, confidence 1.00)" in notes
    assert f"warning: a bone map file was skipped ({mine / 'studio.json'}: not valid JSON" in notes
    assert f"warning: a bone map file was skipped ({mine / 'smpl.json'}: field 'joints': missing" in notes
    assert detect_bone_map(list(JOINT_NAMES)).skipped and load_motion(path).num_frames == 45
    # asked for by id, a broken map is an error naming its file
    for ident in ("studio", "smpl"):
        with pytest.raises(MotionError, match=f"the bone map '{ident}' cannot be used: {mine / ident}.json"):
            motion_from_bvh(path, bone_map=ident)
    out = tmp_path / "dance.npz"
    assert main(["motion", "convert", str(path), str(out)]) == 0
    assert "warning: a bone map file was skipped" in capsys.readouterr().err
    assert main(["motion", "convert", str(path), str(out), "--preset", "studio"]) == 1
    assert f"cannot be used: {mine / 'studio.json'}: not valid JSON" in capsys.readouterr().err


def test_a_bone_map_file_can_be_given_by_its_path(tmp_path, y_up_bvh, capsys):
    path, _ = y_up_bvh
    own = save_bone_map(replace(load_bone_maps([bundled_bone_map_folder()])["smpl"], name="Mine"), tmp_path / "my.json")
    motion = motion_from_bvh(path, bone_map=str(own))
    assert "bone map: Mine (my, as chosen)" in motion.notes
    assert main(["motion", "convert", str(path), str(tmp_path / "out.npz"), "--preset", str(own)]) == 0
    assert "bone map: Mine (my, as chosen)" in capsys.readouterr().err
    with pytest.raises(MotionError, match="or the path of a bone-map .json file"):
        motion_from_bvh(path, bone_map=str(tmp_path / "nope.json"))


# --- units and axes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", ["m", "cm", "mm", "inch", "cmu"])
def test_the_unit_is_detected_from_the_skeletons_size(clip_m, unit):
    points = clip_m / UNITS[unit]
    assert 1.3 < skeleton_size(clip_m) < 1.7
    scale, note = choose_unit(points)
    assert scale == UNITS[unit] and f"unit: {unit} (detected" in note
    # the bone map's unit stands when it gives a human size; an explicit unit always wins
    assert choose_unit(points, None, unit)[0] == UNITS[unit]
    assert choose_unit(points, "mm", unit)[0] == UNITS["mm"]
    assert choose_unit(points, 0.5, unit)[0] == 0.5


def test_a_preset_unit_is_overridden_only_when_the_size_clearly_disagrees(clip_m):
    scale, note = choose_unit(clip_m, None, "cm")  # a Blender export with Mixamo names: metres
    assert scale == 1.0 and "the bone map says cm" in note
    giant = clip_m * 300.0  # nothing gives a human: the preferred unit, with a warning
    scale, note = choose_unit(giant, None, "cm")
    assert scale == 0.01 and note.startswith("warning:") and "--unit" in note
    with pytest.raises(MotionError, match="unknown unit"):
        choose_unit(clip_m, "furlong")


#: Blender 5.0.1's ``bpy_extras.io_utils.axis_conversion(from_forward=−facing, from_up=up, to_forward="Y",
#: to_up="Z")`` for every pair (up, the axis the character faces), as its BVH importer applies it.
BLENDER_AXIS_CONVERSION = {
    "X,Y": [[0, 0, 1], [0, -1, 0], [1, 0, 0]], "X,Z": [[0, -1, 0], [0, 0, -1], [1, 0, 0]],
    "X,-Y": [[0, 0, -1], [0, 1, 0], [1, 0, 0]], "X,-Z": [[0, 1, 0], [0, 0, 1], [1, 0, 0]],
    "Y,X": [[0, 0, -1], [-1, 0, 0], [0, 1, 0]], "Y,Z": [[1, 0, 0], [0, 0, -1], [0, 1, 0]],
    "Y,-X": [[0, 0, 1], [1, 0, 0], [0, 1, 0]], "Y,-Z": [[-1, 0, 0], [0, 0, 1], [0, 1, 0]],
    "Z,X": [[0, 1, 0], [-1, 0, 0], [0, 0, 1]], "Z,Y": [[-1, 0, 0], [0, -1, 0], [0, 0, 1]],
    "Z,-X": [[0, -1, 0], [1, 0, 0], [0, 0, 1]], "Z,-Y": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
    "-X,Y": [[0, 0, -1], [0, -1, 0], [-1, 0, 0]], "-X,Z": [[0, 1, 0], [0, 0, -1], [-1, 0, 0]],
    "-X,-Y": [[0, 0, 1], [0, 1, 0], [-1, 0, 0]], "-X,-Z": [[0, -1, 0], [0, 0, 1], [-1, 0, 0]],
    "-Y,X": [[0, 0, 1], [-1, 0, 0], [0, -1, 0]], "-Y,Z": [[-1, 0, 0], [0, 0, -1], [0, -1, 0]],
    "-Y,-X": [[0, 0, -1], [1, 0, 0], [0, -1, 0]], "-Y,-Z": [[1, 0, 0], [0, 0, 1], [0, -1, 0]],
    "-Z,X": [[0, -1, 0], [-1, 0, 0], [0, 0, -1]], "-Z,Y": [[1, 0, 0], [0, -1, 0], [0, 0, -1]],
    "-Z,-X": [[0, 1, 0], [1, 0, 0], [0, 0, -1]], "-Z,-Y": [[-1, 0, 0], [0, 1, 0], [0, 0, -1]],
}  # fmt: skip


def test_rig_axes_map_to_blenders_world_as_blenders_importer_maps_them(clip_m, maps):
    for pair, expected in BLENDER_AXIS_CONVERSION.items():
        np.testing.assert_array_equal(axes_matrix(*pair.split(",")), expected, err_msg=pair)
    cm = clip_m * 100.0
    x, y, z = np.moveaxis(cm, -1, 0)
    expected = np.stack([x, -z, y], axis=-1) / 100.0  # Y up → Z up, in metres
    np.testing.assert_allclose(rig_to_world(cm, maps["mixamo"]), expected, atol=1e-12)  # the map's unit: cm
    np.testing.assert_allclose(rig_to_world(cm, ("Y", "Z"), "cm"), expected, atol=1e-12)
    np.testing.assert_allclose(rig_to_world(cm, ("Y", "Z")), expected, atol=1e-12)  # detected
    world = rig_to_world(cm, ("Y", "Z"), "cm")
    assert (world[:, J["head"], 2] > world[:, J["left_ankle"], 2]).all()  # upright in a Z-up world


def test_the_up_axis_is_the_bone_maps_unless_rest_pose_and_clip_both_stand_along_another(clip_m, maps):
    mixamo = maps["mixamo"]  # Y up, facing Z
    turn = {  # rotations of the Y-up clip: standing along Z (as Blender's exporter writes Z-up rigs), along -X …
        "Z": np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]),
        "-X": np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]),
    }
    z_up = clip_m @ turn["Z"].T
    assert choose_axes(mixamo, clip_m, clip_m[:1]) == ("Y", "Z", "axes: Y up, facing Z (the bone map's)")
    up, forward, note = choose_axes(mixamo, z_up, z_up[:1])
    assert (up, forward) == ("Z", "-Y") and "detected: the skeleton stands along Z; the bone map says Y" in note
    x_down = clip_m @ turn["-X"].T
    assert choose_axes(mixamo, x_down, x_down[:1])[:2] == ("-X", "Z")  # facing from the rest pose's hips and shoulders
    # a rest pose that does not stand (datasets whose zero pose is folded or lying) leaves the bone map's axes …
    assert choose_axes(mixamo, clip_m, x_down[:1])[:2] == ("Y", "Z")
    # … and so does a clip lying on the floor from a standing rest pose
    assert choose_axes(mixamo, z_up, clip_m[:1])[:2] == ("Y", "Z")
    # an explicit up axis wins
    assert choose_axes(mixamo, z_up, z_up[:1], up="y") == ("Y", "Z", "axes: Y up (as given), facing Z")
    assert choose_axes(mixamo, clip_m, clip_m[:1], up="Z")[:2] == ("Z", "-Y")  # their left stays their left
    assert choose_axes(mixamo, clip_m, None, up="Z")[:2] == ("Z", "-Y")  # no rest pose: the map's axes turned
    with pytest.raises(MotionError, match="an axis is one of"):
        choose_axes(mixamo, clip_m, clip_m[:1], up="up")


def z_up_cgspeed(tmp_path) -> Path:
    """A CMU rest pose in metres written Z up, facing −Y (what Blender's exporter writes for a Z-up rig)."""
    z_up = [(n, p, (o[0] * 0.0564, -o[2] * 0.0564, o[1] * 0.0564)) for n, p, o in CGSPEED_REST]
    ends = {n: (e[0] * 0.0564, -e[2] * 0.0564, e[1] * 0.0564) for n, e in CGSPEED_ENDS.items()}
    path = tmp_path / "z_up.bvh"
    path.write_text(rest_bvh(z_up, ends, (0.0, 0.0, 0.93)))
    return path


def test_a_z_up_export_stands_in_front_of_the_camera(tmp_path, capsys):
    path = z_up_cgspeed(tmp_path)
    motion = motion_from_bvh(path)
    joints = motion.joints[0]
    assert joints[J["head"], 1] < joints[J["pelvis"], 1] < joints[J["left_ankle"], 1]  # upright: image y is down
    assert joints[J["left_hip"], 0] > joints[J["right_hip"], 0]  # facing the camera
    assert "axes: Z up, facing -Y (detected: the skeleton stands along Z; the bone map says Y)" in "\n".join(
        motion.notes
    )
    assert "unit: m (detected" in "\n".join(motion.notes)
    # told Y, it lies down as told: head to ankle is no longer the image's vertical
    lying = motion_from_bvh(path, up="Y")
    body = lying.joints[0, J["head"]] - lying.joints[0, J["left_ankle"]]
    assert abs(body[1]) < 0.3 * np.linalg.norm(body) and "axes: Y up (as given), facing Z" in "\n".join(lying.notes)
    out = tmp_path / "z.npz"
    assert main(["motion", "convert", str(path), str(out), "--up", "z"]) == 0
    assert "axes: Z up, facing -Y (up as given)" in capsys.readouterr().err
    np.testing.assert_allclose(load_motion(out).joints, motion.joints, atol=1e-3)
    with pytest.raises(SystemExit):
        main(["motion", "convert", str(path), str(out), "--up", "W"])
    assert "expected X, Y, Z, -X, -Y, -Z or auto" in capsys.readouterr().err
    with pytest.raises(MotionError, match="applies to BVH, joint-position .npy and SMPL parameter files only"):
        load_motions(ROOT / "examples" / "sampled_data.pkl", up="Z")


# --- cameras ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("turn_deg", [0.0, 90.0, 200.0])
def test_the_default_camera_is_level_in_front_and_sees_the_whole_clip(clip_m, turn_deg):
    world = rig_to_world(clip_m, ("Y", "Z"), "m")
    c, s = np.cos(np.radians(turn_deg)), np.sin(np.radians(turn_deg))
    world = world @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]).T + [3.0, -2.0, 0.0]
    camera = default_camera(world)
    np.testing.assert_allclose(camera.rotation.T @ camera.rotation, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(camera.rotation[:, 1], [0.0, 0.0, -1.0], atol=1e-12)  # level: image down = −Z
    joints = world_to_camera_mm(world, camera)
    assert (joints[..., 2] > 0).all()
    uv = project(joints, (1024, 1024), 55.0)
    assert uv.min() >= 1024 * 0.075 - 1e-6 and uv.max() <= 1024 * 0.925 + 1e-6  # within 85 % of the view
    assert (joints[0, J["left_hip"], 0] > joints[0, J["right_hip"], 0]).all()  # facing it: their left on the right
    assert (joints[0, J["left_shoulder"], 0] > joints[0, J["right_shoulder"], 0]).all()


def test_camera_files_by_look_at_and_by_blenders_matrix_world(tmp_path):
    look = tmp_path / "look.json"
    look.write_text(
        json.dumps({"position": [0, -5, 1], "look_at": [0, 0, 1], "fov_deg": 40, "width": 1280, "height": 720})
    )
    a = read_camera(look)
    assert a.fov_deg == 40.0 and a.image_size == (720, 1280)
    # a Blender camera at (0, −5, 1) turned 90° about X looks along +Y, image up = +Z
    matrix = [[1, 0, 0, 0], [0, 0, -1, -5], [0, 1, 0, 1], [0, 0, 0, 1]]
    (tmp_path / "blender.json").write_text(json.dumps({"matrix_world": matrix}))
    b = read_camera(tmp_path / "blender.json")
    assert b.fov_deg is None and b.image_size is None
    np.testing.assert_allclose(a.placement.rotation, b.placement.rotation, atol=1e-12)
    np.testing.assert_allclose(a.placement.position, b.placement.position)
    np.testing.assert_allclose(b.placement.blender_rotation, np.array(matrix)[:3, :3], atol=1e-12)
    np.testing.assert_allclose(world_to_camera_mm(np.array([0.0, 0.0, 1.0]), a.placement), [0, 0, 5000], atol=1e-9)
    for content, expected in [
        ({"position": [0, 0, 0]}, "look_at"),
        ({"position": [0, 0, 0], "look_at": [0, 0, 5]}, "parallel"),
        ({"position": [0, 0], "look_at": [0, 1, 0]}, "position"),
        ({"position": [0, -1, 0], "look_at": [0, 0, 0], "fov_deg": 0}, "fov_deg"),
        ({"position": [0, -1, 0], "look_at": [0, 0, 0], "width": 100}, "width and height"),
        ({"matrix_world": [[1, 0, 0]]}, "matrix_world"),
        ({"pos": [0, 0, 0]}, "unknown key"),
    ]:
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(content))
        with pytest.raises(MotionError, match=expected):
            read_camera(bad)


# --- BVH files ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def y_up_bvh(sample_motions, tmp_path_factory):
    """A real clip fitted with a skeleton and written as BVH (SMPL names, centimetres) in a Y-up world
    facing +Z, as mocap files are (the writer turns the camera frame so); and the fitted joints it holds
    (camera frame, mm)."""
    motion = sample_motions[0].slice(0, 45)
    fit = inverse_kinematics(motion.joints, mode="fit")
    path = write_bvh(with_skeleton(motion, fit), tmp_path_factory.mktemp("bvh") / "dance.bvh")
    return path, fit.joints()


def pairwise(joints):
    return np.linalg.norm(joints[:, :, None] - joints[:, None], axis=-1)


def test_a_bvh_becomes_the_motion_it_was_written_from(y_up_bvh):
    path, source = y_up_bvh
    motion = motion_from_bvh(path)
    assert motion.source_format == "bvh" and motion.name == "dance" and motion.num_frames == 45
    assert motion.fps == 30.0  # Frame Time 0.033333
    assert motion.image_size == (1024, 1024) and motion.fov_deg == 55.0
    notes = "\n".join(motion.notes)
    assert "bone map: SMPL (smpl, detected, confidence 1.00)" in notes and "unit: cm (detected" in notes
    assert "default camera" in notes
    # the same body (every distance between joints), up to the rounding of the file's numbers
    np.testing.assert_allclose(pairwise(motion.joints), pairwise(source), atol=0.05)
    joints = motion.joints
    assert (joints[:, J["head"], 1] < joints[:, J["pelvis"], 1]).all()  # upright (image y is down)
    assert joints[0, J["left_hip"], 0] > joints[0, J["right_hip"], 0]  # facing the camera
    # a chosen map, a unit and a camera
    world = rig_to_world(map_points_of(path, "smpl"), ("Y", "Z"), "cm")
    placement = default_camera(world)
    placement = replace(placement, position=placement.position + [0.0, 0.0, 0.5])
    moved = motion_from_bvh(path, bone_map="smpl", unit="cm", camera=placement, image_size=(720, 1280), fov_deg=40)
    np.testing.assert_allclose(moved.joints, world_to_camera_mm(world, placement), atol=1e-3)
    assert moved.image_size == (720, 1280) and moved.fov_deg == 40.0
    assert "bone map: SMPL (smpl, as chosen)" in moved.notes and "unit: cm (as given)" in moved.notes


def map_points_of(path, ident):
    from mtvcrafter.motion.bvh import bvh_end_positions, bvh_forward_kinematics, read_bvh

    bvh = read_bvh(path)
    positions, rotations = bvh_forward_kinematics(bvh)
    maps = load_bone_maps([bundled_bone_map_folder()])
    return map_points(bvh.skeleton.names, positions, maps[ident], ends=bvh_end_positions(bvh, positions, rotations))


#: The rest pose of a CMU subject as cgspeed's BVH conversion writes it: joint, parent, offset (file units).
CGSPEED_REST = [
    ("Hips", None, (0, 0, 0)),
    ("LHipJoint", "Hips", (0, 0, 0)),
    ("LeftUpLeg", "LHipJoint", (1.64549, -1.70879, 0.84566)),
    ("LeftLeg", "LeftUpLeg", (2.24963, -6.18082, 0)),
    ("LeftFoot", "LeftLeg", (2.71775, -7.46697, 0)),
    ("LeftToeBase", "LeftFoot", (0.18768, -0.51564, 2.24737)),
    ("RHipJoint", "Hips", (0, 0, 0)),
    ("RightUpLeg", "RHipJoint", (-1.5883, -1.70879, 0.84566)),
    ("RightLeg", "RightUpLeg", (-2.25006, -6.18201, 0)),
    ("RightFoot", "RightLeg", (-2.72829, -7.49593, 0)),
    ("RightToeBase", "RightFoot", (-0.21541, -0.59185, 2.10643)),
    ("LowerBack", "Hips", (0, 0, 0)),
    ("Spine", "LowerBack", (0.03142, 2.10496, -0.11038)),
    ("Spine1", "Spine", (-0.01863, 2.10897, -0.06956)),
    ("Neck", "Spine1", (0, 0, 0)),
    ("Neck1", "Neck", (-0.02267, 1.73238, 0.00451)),
    ("Head", "Neck1", (-0.05808, 1.54724, -0.61749)),
    ("LeftShoulder", "Spine1", (0, 0, 0)),
    ("LeftArm", "LeftShoulder", (3.44898, 0.50298, 0.2192)),
    ("LeftForeArm", "LeftArm", (5.41917, 0, 0)),
    ("LeftHand", "LeftForeArm", (2.44373, 0, 0)),
    ("LeftFingerBase", "LeftHand", (0, 0, 0)),
    ("LeftHandIndex1", "LeftFingerBase", (0.7275, 0, 0)),
    ("LThumb", "LeftHand", (0, 0, 0)),
    ("RightShoulder", "Spine1", (0, 0, 0)),
    ("RightArm", "RightShoulder", (-3.23015, 0.5583, 0.31051)),
    ("RightForeArm", "RightArm", (-5.58976, -0.0001, 0.00014)),
    ("RightHand", "RightForeArm", (-2.4806, 0, 0)),
    ("RightFingerBase", "RightHand", (0, 0, 0)),
    ("RightHandIndex1", "RightFingerBase", (-0.81601, 0, 0)),
    ("RThumb", "RightHand", (0, 0, 0)),
]
CGSPEED_ENDS = {
    "LeftToeBase": (0, 0, 1.15935),
    "RightToeBase": (0, 0, 1.09838),
    "Head": (-0.01396, 1.71468, -0.21082),
    "LeftHandIndex1": (0.58653, 0, 0),
    "LThumb": (0.59549, 0, 0.59549),
    "RightHandIndex1": (-0.65789, 0, 0),
    "RThumb": (-0.66793, 0, 0.66793),
}


def rest_bvh(joints, ends, root_position, frame_time=1 / 120) -> str:
    """A one-frame BVH of a rest pose (ZYX rotation channels, all zero)."""
    lines = ["HIERARCHY"]

    def write(name, depth):
        pad = "\t" * depth
        parent, offset = next((p, o) for n, p, o in joints if n == name)
        lines.append(f"{pad}{'ROOT' if parent is None else 'JOINT'} {name}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}\tOFFSET {' '.join(map(str, offset))}")
        position = "Xposition Yposition Zposition " if parent is None else ""
        lines.append(f"{pad}\tCHANNELS {6 if parent is None else 3} {position}Zrotation Yrotation Xrotation")
        for child, p, _ in joints:
            if p == name:
                write(child, depth + 1)
        if name in ends:
            end = " ".join(map(str, ends[name]))
            lines.extend([f"{pad}\tEnd Site", f"{pad}\t{{", f"{pad}\t\tOFFSET {end}", f"{pad}\t}}"])
        lines.append(f"{pad}}}")

    write(joints[0][0], 0)
    values = [*map(str, root_position), *["0"] * (3 * len(joints))]  # root: 6 channels, the others 3
    lines += ["MOTION", "Frames: 1", f"Frame Time: {frame_time:.7f}", " ".join(values)]
    return "\n".join(lines) + "\n"


def test_a_cmu_file_lands_on_an_anatomical_smpl_skeleton(tmp_path):
    path = tmp_path / "01_01.bvh"
    path.write_text(rest_bvh(CGSPEED_REST, CGSPEED_ENDS, (0.0, 16.5, 0.0)))
    motion = motion_from_bvh(path)
    notes = "\n".join(motion.notes)
    assert "(cmu, detected, confidence 1.00)" in notes and "unit: cmu (the bone map's" in notes
    assert motion.fps == 120.0
    world = rig_to_world(map_points_of(path, "cmu")[0], ("Y", "Z"), "cmu")  # Z up, metres
    height = dict(zip(JOINT_NAMES, world[:, 2], strict=True))
    chain = ["left_ankle", "left_knee", "left_hip", "pelvis", "spine1", "spine2", "spine3", "neck", "head"]
    assert all(height[a] < height[b] for a, b in zip(chain, chain[1:], strict=False))  # bottom to top, in order
    assert height["left_shoulder"] < height["neck"] and height["left_collar"] < height["neck"]
    lateral = np.abs(world[:, 0] - world[J["pelvis"], 0])
    assert 0.06 < lateral[J["left_hip"]] < 0.12 and 0.05 < lateral[J["left_collar"]] < 0.12
    assert lateral[J["left_collar"]] < lateral[J["left_shoulder"]] < lateral[J["left_elbow"]]
    hand = np.linalg.norm(world[J["left_hand"]] - world[J["left_wrist"]])
    assert 0.06 < hand < 0.11  # the knuckles, about 8 cm beyond the wrist
    assert 1.2 < skeleton_size(world) < 1.7  # an adult, in metres


def test_cmus_daz_friendly_files_are_cmu_in_centimetres_on_an_anatomical_skeleton(tmp_path):
    path = tmp_path / "01_01_daz.bvh"
    path.write_text(rest_bvh(DAZ_FRIENDLY_REST, DAZ_FRIENDLY_ENDS, (0.0, 90.0, 0.0)))
    motion = motion_from_bvh(path)
    notes = "\n".join(motion.notes)
    assert "(cmu, detected, confidence 1.00)" in notes and "unit: cm (detected" in notes
    world = rig_to_world(map_points_of(path, "cmu")[0], ("Y", "Z"), "cm")
    # against the neutral SMPL body scaled to this skeleton: every joint but the forearms and hands (held forward in
    # this rest pose) within 7 cm — the ankles and shoulders differ most (this subject's shoulders are narrower)
    neutral = NEUTRAL_REST_JOINTS_M @ axes_matrix("Y", "Z").T
    neutral = (neutral - neutral[J["pelvis"]]) * skeleton_size(world) / skeleton_size(neutral)
    error = np.linalg.norm(world - world[J["pelvis"]] - neutral, axis=-1)
    torso = [J[n] for n in JOINT_NAMES if not n.endswith(("wrist", "hand", "elbow"))]
    assert error[torso].max() < 0.07, dict(zip(JOINT_NAMES, error.round(3), strict=True))
    lateral = np.abs(world[:, 0] - world[J["pelvis"], 0])
    assert 0.05 < lateral[J["left_collar"]] < 0.09  # between the sternum end (2.7 cm) and the shoulder (11.5 cm)
    assert 0.07 < np.linalg.norm(world[J["left_hand"]] - world[J["left_wrist"]]) < 0.11  # the middle knuckle
    assert world[J["left_hip"], 2] < world[J["pelvis"], 2] < world[J["spine1"], 2]  # pelvis above the hips


def test_a_bvh_that_fits_no_map_or_the_wrong_map_is_refused(tmp_path, y_up_bvh):
    path, _ = y_up_bvh
    renamed = tmp_path / "renamed.bvh"  # a human skeleton whose names no map knows is mapped by its structure
    renamed.write_text(path.read_text().replace("ROOT pelvis", "ROOT chassis").replace("JOINT left_", "JOINT wheel_"))
    assert any("mapped by the skeleton's structure" in note for note in motion_from_bvh(renamed).notes)
    snake = tmp_path / "snake.bvh"
    segments = [(f"segment{i}", f"segment{i - 1}" if i else None, (0.0, 0.0, 10.0 if i else 0.0)) for i in range(12)]
    snake.write_text(rest_bvh(segments, {"segment11": (0.0, 0.0, 5.0)}, (0.0, 0.0, 0.0)))
    with pytest.raises(MotionError, match="no bone map finds a single SMPL joint") as error:
        motion_from_bvh(snake)
    assert str(snake) in str(error.value) and "Not read by its structure either" in str(error.value)
    with pytest.raises(MotionError, match="finds no bone for pelvis") as error:
        motion_from_bvh(path, bone_map="mixamo")
    assert str(path) in str(error.value)
    with pytest.raises(
        MotionError, match="no bone map 'nope'; known: cmu, generic, mixamo, motionbuilder, rokoko, smpl"
    ):
        motion_from_bvh(path, bone_map="nope")
    with pytest.raises(MotionError, match="applies to BVH files only"):
        load_motions(ROOT / "examples" / "sampled_data.pkl", bone_map="smpl")


def test_a_file_without_frames_or_with_a_joint_kilometres_away_is_refused_naming_the_line(tmp_path, capsys):
    text = rest_bvh(CGSPEED_REST, CGSPEED_ENDS, (0.0, 16.5, 0.0))
    empty = tmp_path / "empty.bvh"
    lines = text.rstrip("\n").split("\n")
    frames_line = lines.index("Frames: 1") + 1
    empty.write_text("\n".join(lines[:-3] + ["Frames: 0", lines[-2]]) + "\n")  # a hierarchy without motion
    with pytest.raises(MotionError, match=f"line {frames_line}: 'Frames: 0': the file holds a skeleton but no motion"):
        motion_from_bvh(empty)
    assert main(["motion", "info", str(empty)]) == 1
    assert f"line {frames_line}: 'Frames: 0'" in capsys.readouterr().err
    # a glitch 113 km away in one frame would put the camera kilometres back and the performer out of sight
    row = lines[-1].split()
    glitch = row.copy()
    glitch[0] = "2000000"  # CMU units: 113 km
    far = tmp_path / "far.bvh"
    far.write_text("\n".join(lines[:-3] + ["Frames: 3", lines[-2], lines[-1], " ".join(glitch), lines[-1]]) + "\n")
    with pytest.raises(MotionError, match=rf"frame 1 \(line {len(lines) + 1}\): a joint lies 1.13e\+05 m from where"):
        motion_from_bvh(far)
    assert main(["motion", "convert", str(far), str(tmp_path / "far.npz")]) == 1
    assert "more than 10 km" in capsys.readouterr().err


def test_a_camera_given_that_misses_the_performer_is_warned(tmp_path, y_up_bvh, capsys):
    path, _ = y_up_bvh
    away = tmp_path / "away.json"
    away.write_text(json.dumps({"position": [0, 4, 1], "look_at": [0, 8, 1]}))  # looking away from them
    motion = motion_from_bvh(path, camera=away)
    assert motion.notes[-1].startswith("warning: the camera given sees 0% of the joint positions (100% are behind")
    assert main(["motion", "convert", str(path), str(tmp_path / "away.npz"), "--camera", str(away)]) == 0
    assert "warning: the camera given sees 0%" in capsys.readouterr().err
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"position": [0, -6, 0], "look_at": [0, 0, 0]}))
    assert not any("warning" in note for note in motion_from_bvh(path, camera=good).notes)
    far = tmp_path / "far.json"
    far.write_text(json.dumps({"position": [0, -300, 0], "look_at": [0, 0, 0]}))  # a dot in the image
    assert "warning: the performer is only 0.4% of the image's height" in motion_from_bvh(path, camera=far).notes[-1]
    for distance in (1e5, 1e37):  # kilometres away (and beyond float32 millimetres): an error, not an overflow
        far.write_text(json.dumps({"position": [0, -distance, 0], "look_at": [0, 0, 0]}))
        said = f"{distance:.3g}".replace("+", r"\+")
        with pytest.raises(MotionError, match=f"field 'camera': the camera given is {said} m from the"):
            motion_from_bvh(path, camera=far)


# --- command line and packaging -----------------------------------------------------------------------------


def test_the_command_line_converts_and_describes_a_bvh(tmp_path, y_up_bvh, capsys):
    path, source = y_up_bvh
    out = tmp_path / "dance.npz"
    assert main(["motion", "convert", str(path), str(out)]) == 0
    err = capsys.readouterr().err
    assert "dance: bone map: SMPL (smpl, detected, confidence 1.00)" in err and "unit: cm" in err
    converted = load_motion(out)
    np.testing.assert_allclose(pairwise(converted.joints), pairwise(source), atol=0.05)

    camera = tmp_path / "camera.json"
    camera.write_text(json.dumps({"position": [0, -4, 0.9], "look_at": [0, 0, 0.9], "width": 1280, "height": 720}))
    assert (
        main(["motion", "convert", str(path), str(out), "--preset", "auto", "--unit", "cm", "--camera", str(camera)])
        == 0
    )
    capsys.readouterr()
    seen = load_motion(out)
    assert seen.image_size == (720, 1280)
    world = rig_to_world(map_points_of(path, "smpl"), ("Y", "Z"), "cm")
    np.testing.assert_allclose(seen.joints, world_to_camera_mm(world, read_camera(camera).placement), atol=1e-3)

    assert main(["motion", "info", str(path)]) == 0
    info = capsys.readouterr().out
    assert "format bvh" in info and "45 frames x 24 joints, 30 fps" in info and "note: bone map: SMPL" in info

    assert main(["motion", "convert", str(path), str(out), "--preset", "mixamo"]) == 1
    assert "finds no bone for pelvis" in capsys.readouterr().err
    assert main(["motion", "convert", str(path), str(out), "--unit", "m"]) == 1  # 100× too large
    assert "median bone length" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["motion", "convert", str(path), str(out), "--unit", "furlong"])
    assert "metres per unit" in capsys.readouterr().err


def test_the_wheel_carries_the_bone_maps(tmp_path):
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)]
    # with the setuptools already here (fast, offline) where it is recent enough, else isolated (as blender build)
    build = subprocess.run([*command[:5], "--no-build-isolation", *command[5:]], capture_output=True, text=True)
    if build.returncode != 0:
        build = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("mtvcrafter-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"mtvcrafter/motion/bones/{p}.json" for p in PRESETS} <= names


def test_a_bone_map_file_given_as_a_path_object_is_read_as_its_name_is(tmp_path):
    from mtvcrafter.motion.bone_maps import get_bone_map

    source = Path(__file__).resolve().parents[1] / "presets" / "bones" / "mixamo.json"
    own = tmp_path / "my_rig.json"
    own.write_text(source.read_text())
    by_object, by_name = get_bone_map(own), get_bone_map(str(own))
    assert (by_object.name, by_object.joints) == (by_name.name, by_name.joints)
    bvh = Path(__file__).resolve().parents[2] / "shared" / "data" / "realworld" / "mixamo_test_freebvh.bvh"
    if bvh.is_file():
        by_path, by_text = load_motion(bvh, bone_map=own), load_motion(bvh, bone_map=str(own))
        assert np.array_equal(by_path.joints, by_text.joints)
