"""Mapping a skeleton onto SMPL-24 by its structure (hierarchy and rest pose), not its bone names: real BVH files
from other tools, the same files with their names scrambled or their sides swapped, the MotionBuilder/HumanIK/Biped
name map, and skeletons that are not a human's."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from mtvcrafter.cli import main
from mtvcrafter.motion import JOINT_NAMES, MotionError, load_motion
from mtvcrafter.motion.bone_map_detection import structure_detection
from mtvcrafter.motion.bone_maps import BONE_MAPS_ENV, get_bone_map
from mtvcrafter.motion.bvh import read_bvh
from mtvcrafter.motion.bvh_motion import motion_from_bvh, rest_points
from mtvcrafter.motion.camera import CameraPlacement
from mtvcrafter.motion.skeleton import NEUTRAL_REST_JOINTS_M, PARENTS
from mtvcrafter.motion.skeleton_mapping import map_points
from mtvcrafter.motion.structure_mapping import map_by_structure
from mtvcrafter.motion.units import skeleton_size

ROOT = Path(__file__).resolve().parents[1]
REALWORLD = ROOT.parent / "shared" / "data" / "realworld"
REAL_BVH = sorted(REALWORLD.glob("*.bvh")) if REALWORLD.is_dir() else []
J = {name: i for i, name in enumerate(JOINT_NAMES)}
SIDED = [name for name in JOINT_NAMES if name.startswith("left_")]
needs_real_files = pytest.mark.skipif(not REAL_BVH, reason="the real-world BVH files are not beside the checkout")

#: A level camera looking along the world's +Y (OpenCV axes → world: x → X, y → −Z, z → Y), so that two loads of
#: one file can be compared joint by joint (the default camera is placed from the joints themselves).
FIXED_CAMERA = CameraPlacement(rotation=np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]]), position=np.zeros(3))


@pytest.fixture(autouse=True)
def no_user_bone_maps(tmp_path, monkeypatch):
    empty = tmp_path / "user-bones"
    empty.mkdir()
    monkeypatch.setenv(BONE_MAPS_ENV, str(empty))


def real(name: str) -> Path:
    path = REALWORLD / name
    if not path.is_file():
        pytest.skip(f"{path} is not beside the checkout")
    return path


# --- what a motion looks like, from its joints alone ----------------------------------------------------------


def body_frame(joints_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: the body's up (pelvis → neck) and its left, ``up × forward`` with forward where the feet point
    (both feet together: no joint's side is used). Camera space is right-handed, as SMPL's body frame (Y up,
    facing +Z, left +X), so the left comes out on the body's left."""
    up = joints_mm[:, J["neck"]] - joints_mm[:, J["pelvis"]]
    up /= np.linalg.norm(up, axis=-1, keepdims=True)
    toes = sum(joints_mm[:, J[f"{s}_foot"]] - joints_mm[:, J[f"{s}_ankle"]] for s in ("left", "right"))
    forward = toes - np.sum(toes * up, axis=-1, keepdims=True) * up
    left = np.cross(up, forward)
    return up, left / np.maximum(np.linalg.norm(left, axis=-1, keepdims=True), 1e-9)


def check_looks_human(joints_mm: np.ndarray, what: str) -> None:
    """Upright (the head above the pelvis through the level default camera, whose y points down), handed (SMPL's
    left hip and shoulder on the body's left in most frames) and of an adult's stature."""
    rise = joints_mm[:, J["pelvis"], 1] - joints_mm[:, J["head"], 1]  # mm upwards, the camera being level
    assert np.median(rise) > 300.0, f"{what}: the head is not above the pelvis ({np.median(rise):.0f} mm)"
    _, left = body_frame(joints_mm)
    for a, b in (("left_hip", "right_hip"), ("left_shoulder", "right_shoulder")):
        on_left = np.sum((joints_mm[:, J[a]] - joints_mm[:, J[b]]) * left, axis=-1) > 0
        assert on_left.mean() > 0.8, f"{what}: {a} is on the body's left in only {on_left.mean():.0%} of the frames"
    # the ankle-to-head chain of SMPL joints, plus about 0.2 m below the ankle and above the skull base (the
    # neutral SMPL body: 1.51 m + 0.2 m = 1.71 m tall)
    stature = skeleton_size(joints_mm / 1000.0) + 0.2
    assert 1.3 < stature < 2.1, f"{what}: stature {stature:.2f} m"


@needs_real_files
@pytest.mark.parametrize("path", REAL_BVH, ids=[p.stem for p in REAL_BVH])
def test_every_real_bvh_loads_by_structure_and_by_auto_upright_handed_and_adult(path, tmp_path, capsys):
    out = tmp_path / "structure.npz"
    assert main(["motion", "convert", str(path), str(out), "--preset", "structure"]) == 0
    err = capsys.readouterr().err
    assert "bone map: by the skeleton (structure, as chosen, confidence" in err and "found by structure" in err
    check_looks_human(load_motion(out).joints, f"{path.name} --preset structure")
    auto = load_motion(path)
    check_looks_human(auto.joints, f"{path.name} auto")
    assert any(note.startswith("bone map: ") and "detected" in note for note in auto.notes)


# --- structure against names ------------------------------------------------------------------------------------

#: Real files that a bundled map names completely, that map, and the rig family mapping by structure recognises
#: from the topology alone (so that it places every joint with that family's map).
NAMED = {
    "mixamo_test_freebvh.bvh": ("mixamo", "Mixamo"),
    "cmu_cgspeed_01_01.bvh": ("cmu", "CMU (cgspeed)"),
    "smpl2bvh_aistpp_gBR_sBM_cAll_d04_mBR0_ch01.bvh": ("smpl", "SMPL"),
}
SPINE = ("spine1", "spine2", "spine3")


def compare_with_named(by_structure: np.ndarray, named: np.ndarray) -> None:
    """Equal within 1 mm at all 24 joints: the family's own map places the spine, collars and hands."""
    error = np.linalg.norm(by_structure - named, axis=-1).max(axis=0)  # (24,) mm
    assert error.max() < 1.0, {name: round(float(error[j]), 3) for j, name in enumerate(JOINT_NAMES)}


def family_note(motion) -> str:
    return next(note for note in motion.notes if note.startswith("structure matches"))


@needs_real_files
@pytest.mark.parametrize("name", list(NAMED))
def test_structure_places_the_joints_a_complete_name_map_places(name):
    path = real(name)
    ident, family = NAMED[name]
    named = motion_from_bvh(path, camera=FIXED_CAMERA)
    assert f"({ident}, detected, confidence 1.00)" in "\n".join(named.notes)
    structure = motion_from_bvh(path, bone_map="structure", camera=FIXED_CAMERA)
    assert unit_of(structure) == unit_of(named)  # the unit the bone map prefers is found from the size alone
    assert family_note(structure).startswith(f"structure matches the {family} skeleton: its map's ({ident})")
    compare_with_named(structure.joints, named.joints)


def unit_of(motion) -> str:
    return next(note for note in motion.notes if note.startswith("unit:")).split(" (")[0]


def rename_joints(text: str, rename) -> str:
    """The same BVH with each ``ROOT``/``JOINT`` name replaced by ``rename(name)``."""
    return re.sub(r"^(\s*(?:ROOT|JOINT)\s+)(\S.*?)\s*$", lambda m: m.group(1) + rename(m.group(2)), text, flags=re.M)


@needs_real_files
@pytest.mark.parametrize("name", list(NAMED))
def test_scrambled_names_map_by_structure_onto_the_named_joints(name, tmp_path):
    path = real(name)
    rng = np.random.default_rng(7)
    tokens: dict[str, str] = {}

    def scramble(joint: str) -> str:
        return tokens.setdefault(joint, "b" + "".join(rng.choice(list("0123456789abcdef"), 9)))

    scrambled = tmp_path / "scrambled.bvh"
    scrambled.write_text(rename_joints(path.read_text(), scramble))
    assert len(set(tokens.values())) == len(tokens) == read_bvh(path).skeleton.num_joints
    motion = motion_from_bvh(scrambled, camera=FIXED_CAMERA)
    notes = "\n".join(motion.notes)
    assert "(structure, detected, confidence" in notes and "mapped by the skeleton's structure" in notes
    ident, family = NAMED[name]
    assert family_note(motion).startswith(f"structure matches the {family} skeleton")
    named = motion_from_bvh(path, bone_map=ident, camera=FIXED_CAMERA)
    compare_with_named(motion.joints, named.joints)
    # the same as the structure of the original names
    np.testing.assert_allclose(motion.joints, motion_from_bvh(path, bone_map="structure", camera=FIXED_CAMERA).joints)


@needs_real_files
@pytest.mark.parametrize("name", ["games105_walk60.bvh", "pymo_AV_8Walk_Meredith_HVHA_Rep1.bvh"])
def test_a_rig_of_no_known_family_maps_by_the_proportional_rule(name, tmp_path):
    """games105 (no neck joint) and pymo (one spine joint, a head straight from it) are no bundled map's family:
    scrambled, they map by SMPL's proportions, the same as by structure with their names, upright and handed."""
    path = real(name)
    tokens: dict[str, str] = {}
    scrambled = tmp_path / "scrambled.bvh"
    scrambled.write_text(rename_joints(path.read_text(), lambda joint: tokens.setdefault(joint, f"q{len(tokens)}zx")))
    motion = motion_from_bvh(scrambled)
    assert family_note(motion).startswith("structure matches no rig family a bundled map names")
    check_looks_human(motion.joints, f"{name} scrambled")
    np.testing.assert_allclose(
        motion_from_bvh(scrambled, camera=FIXED_CAMERA).joints,
        motion_from_bvh(path, bone_map="structure", camera=FIXED_CAMERA).joints,
    )


def swap_sides(name: str) -> str:
    return re.sub("Left|Right", lambda m: {"Left": "Right", "Right": "Left"}[m.group(0)], name)


@needs_real_files
@pytest.mark.parametrize("name", ["mixamo_test_freebvh.bvh", "smpl2bvh_aistpp_gBR_sBM_cAll_d04_mBR0_ch01.bvh"])
def test_left_and_right_names_swapped_are_mapped_by_the_rest_pose_with_a_warning(name, tmp_path):
    path = real(name)
    swapped = tmp_path / "swapped.bvh"
    swapped.write_text(rename_joints(path.read_text(), swap_sides))
    assert "RightUpLeg" in swapped.read_text() or "Right_hip" in swapped.read_text()
    motion = motion_from_bvh(swapped, camera=FIXED_CAMERA)
    warnings = [n for n in motion.notes if n.startswith("warning: the bone names' left and right are swapped")]
    assert len(warnings) == 1 and "legs and arms" in warnings[0] and "names' sides ignored" in warnings[0]
    original = motion_from_bvh(path, camera=FIXED_CAMERA)
    np.testing.assert_allclose(motion.joints, original.joints, atol=1e-6)
    # only one side's names swapped (the legs): only the legs are exchanged
    legs_only = tmp_path / "legs.bvh"
    leg_words = ("UpLeg", "Leg", "Foot", "Toe", "_hip", "_knee", "_ankle", "_foot")
    legs_only.write_text(
        rename_joints(path.read_text(), lambda n: swap_sides(n) if any(w in n for w in leg_words) else n)
    )
    partly = motion_from_bvh(legs_only, camera=FIXED_CAMERA)
    assert any("the legs named left lie on the body's right" in n for n in partly.notes)
    np.testing.assert_allclose(partly.joints, original.joints, atol=1e-6)


# --- the MotionBuilder / HumanIK / Biped name map ---------------------------------------------------------------

MOTIONBUILDER_NAMES = {"Pelvis": "Hips", "Spine1": "Chest", "Spine2": "Chest2", "Spine3": "Chest3"} | {
    f"{side}_{part}": f"{side}{new}"
    for side in ("Left", "Right")
    for part, new in (
        ("hip", "Hip"),
        ("knee", "Knee"),
        ("ankle", "Ankle"),
        ("foot", "Toe"),
        ("collar", "Collar"),
        ("shoulder", "Shoulder"),
        ("elbow", "Elbow"),
        ("wrist", "Wrist"),
        ("palm", "Fingers"),
    )
}
BIPED_NAMES = {
    "Pelvis": "Bip01 Pelvis",
    "Spine1": "Bip01 Spine",
    "Spine2": "Bip01 Spine1",
    "Spine3": "Bip01 Spine2",
    "Neck": "Bip01 Neck",
    "Head": "Bip01 Head",
} | {
    f"{side}_{part}": f"Bip01 {side[0]} {new}"
    for side in ("Left", "Right")
    for part, new in (
        ("hip", "Thigh"),
        ("knee", "Calf"),
        ("ankle", "Foot"),
        ("foot", "Toe0"),
        ("collar", "Clavicle"),
        ("shoulder", "UpperArm"),
        ("elbow", "Forearm"),
        ("wrist", "Hand"),
        ("palm", "Finger2"),
    )
}


@needs_real_files
@pytest.mark.parametrize(
    "family, names, differ",
    [
        # the collar 45 % out along LeftCollar, the hand a third of a forearm beyond the wrist (no fingers)
        ("MotionBuilder", MOTIONBUILDER_NAMES, ("collar", "hand")),
        # the collar along the clavicle; the spine along Spine–Spine1–Spine2 as on a Mixamo rig
        ("Biped", BIPED_NAMES, ("collar", "spine2", "spine3")),
    ],
)
def test_motionbuilder_and_biped_names_map_through_their_map(family, names, differ, tmp_path):
    path = real("smpl2bvh_aistpp_gBR_sBM_cAll_d04_mBR0_ch01.bvh")
    renamed = tmp_path / f"{family}.bvh"
    renamed.write_text(rename_joints(path.read_text(), lambda n: names.get(n, n)))
    motion = motion_from_bvh(renamed, camera=FIXED_CAMERA)
    assert "bone map: MotionBuilder / HumanIK / Biped (motionbuilder, detected, confidence 1.00)" in motion.notes
    smpl = motion_from_bvh(path, camera=FIXED_CAMERA)
    error = np.linalg.norm(motion.joints - smpl.joints, axis=-1).max(axis=0)
    same = [j for j, n in enumerate(JOINT_NAMES) if not any(d in n for d in differ)]
    assert error[same].max() < 1e-3, {JOINT_NAMES[j]: float(error[j]) for j in same}
    check_looks_human(motion_from_bvh(renamed).joints, family)


# --- skeletons that are not a human's ---------------------------------------------------------------------------


def bvh_text(joints: list[tuple[str, str | None, tuple[float, float, float]]], ends: dict) -> str:
    """A one-frame BVH of ``(name, parent, offset)`` joints at rest."""
    lines = ["HIERARCHY"]

    def write(name: str, depth: int) -> None:
        pad = "  " * depth
        parent, offset = next((p, o) for n, p, o in joints if n == name)
        lines.append(f"{pad}{'ROOT' if parent is None else 'JOINT'} {name}")
        lines.extend([f"{pad}{{", f"{pad}  OFFSET {' '.join(map(str, offset))}"])
        lines.append(f"{pad}  CHANNELS 3 Zrotation Xrotation Yrotation")
        for child, p, _ in joints:
            if p == name:
                write(child, depth + 1)
        if name in ends:
            lines.extend([f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET {' '.join(map(str, ends[name]))}"])
            lines.append(f"{pad}  }}")
        lines.append(f"{pad}}}")

    write(joints[0][0], 0)
    return "\n".join([*lines, "MOTION", "Frames: 1", "Frame Time: 0.033333", " ".join(["0"] * 3 * len(joints))]) + "\n"


def quadruped() -> tuple[list, dict]:
    """A dog: hind legs and a tail from the hips, a level spine forward to the chest, front legs and a neck."""
    joints = [("hips", None, (0.0, 55.0, 0.0))]
    ends = {}
    for side, x in (("a", 9.0), ("b", -9.0)):
        for girdle, parent in (("hind", "hips"), ("fore", "chest")):
            chain = [
                (f"{girdle}_{side}_1", parent, (x, -4.0, 0.0)),
                (f"{girdle}_{side}_2", f"{girdle}_{side}_1", (0.0, -22.0, 0.0)),
            ]
            chain += [(f"{girdle}_{side}_3", f"{girdle}_{side}_2", (0.0, -22.0, 0.0))]
            chain += [(f"{girdle}_{side}_4", f"{girdle}_{side}_3", (0.0, -5.0, 5.0))]
            joints += chain
            ends[f"{girdle}_{side}_4"] = (0.0, 0.0, 4.0)
    joints += [("tail_1", "hips", (0.0, 3.0, -8.0)), ("tail_2", "tail_1", (0.0, 2.0, -15.0))]
    joints += [
        ("back_1", "hips", (0.0, 1.0, 20.0)),
        ("back_2", "back_1", (0.0, 0.0, 20.0)),
        ("chest", "back_2", (0.0, 0.0, 15.0)),
    ]
    joints += [("neck_1", "chest", (0.0, 10.0, 8.0)), ("skull", "neck_1", (0.0, 8.0, 8.0))]
    ends |= {"tail_2": (0.0, 0.0, -15.0), "skull": (0.0, 0.0, 15.0)}
    return joints, ends


@pytest.mark.parametrize(
    "kind, expected",
    [("quadruped", "four-legged animal"), ("chain", "single chain")],
)
def test_a_quadruped_and_a_single_chain_are_refused_in_one_line(kind, expected, tmp_path):
    if kind == "quadruped":
        joints, ends = quadruped()
    else:
        joints = [(f"link{i}", f"link{i - 1}" if i else None, (0.0, 0.0, 12.0 if i else 0.0)) for i in range(10)]
        ends = {"link9": (0.0, 0.0, 6.0)}
    path = tmp_path / f"{kind}.bvh"
    path.write_text(bvh_text(joints, ends))
    with pytest.raises(MotionError) as chosen:
        load_motion(path, bone_map="structure")
    message = str(chosen.value)
    assert "\n" not in message and str(path) in message and expected in message and "not read as a human's" in message
    with pytest.raises(MotionError) as auto:
        load_motion(path)
    message = str(auto.value)
    assert "\n" not in message and expected in message and "Not read by its structure either" in message
    assert main(["motion", "info", str(path), "--preset", "structure"]) == 1


# --- what the mapping reports, and a Blender-style armature -------------------------------------------------------


def rig_of(path: Path) -> tuple[list[str], np.ndarray, np.ndarray, dict]:
    skeleton = read_bvh(path).skeleton
    heads, ends = rest_points(skeleton)
    return list(skeleton.names), skeleton.parents, heads[0], {j: e[0] for j, e in ends.items()}


@needs_real_files
def test_the_mapping_reports_its_confidence_and_what_it_inferred():
    names, parents, heads, ends = rig_of(real("cmu_cgspeed_01_01.bvh"))
    detection = structure_detection(names, parents, heads, ends)
    assert detection.bone_map.id == "structure" and detection.complete
    assert 0.5 < detection.confidence <= 0.9  # never as sure as a map that names every joint
    assert detection.mapped["left_hip"] == "LeftUpLeg" and detection.mapped["right_knee"] == "RightLeg"
    assert detection.mapped["left_collar"] == "lerp(LeftShoulder, LeftArm, 0.45)"  # CMU's clavicle starts mid-chest
    assert "LHipJoint" in detection.unmapped_bones  # the bone before the hip is passed over
    found, sides, axes = detection.notes[:3]
    assert found.startswith("found by structure, not by bone names: pelvis Hips")
    assert "left leg LeftUpLeg–LeftLeg–LeftFoot" in found and "right arm RightArm–RightForeArm–RightHand" in found
    assert sides.startswith("left and right from the rest pose")
    assert axes.startswith("axes from the rest pose: up Y") and "forward Z" in axes

    # a rest pose that does not stand: read from poses of the motion, said so, and less sure
    path = real("rokoko_video_mixamo_preset_jesse_dance.bvh")
    motion = load_motion(path, bone_map="structure")
    notes = "\n".join(motion.notes)
    assert "the rest pose cannot be read as a standing body" in notes and "poses of the motion" in notes
    confidence = float(re.search(r"confidence (\d\.\d\d)", notes).group(1))
    assert confidence < detection.confidence


def test_an_armature_given_as_names_parents_heads_and_tails_maps_in_its_own_axes():
    """What the Blender add-on hands over: bone names, parent indices, rest heads and tails, in Blender's world
    (Z up, facing −Y). Built here from the neutral SMPL skeleton (heads: its joints; tails: the child's head, or a
    short step on for a leaf), with names no map knows."""
    to_blender = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])  # (x, y, z) → (x, −z, y)
    heads = NEUTRAL_REST_JOINTS_M @ to_blender.T
    tails = np.empty_like(heads)
    for j in range(24):
        kids = [k for k in range(24) if PARENTS[k] == j]
        if j in (J["pelvis"], J["spine3"]):  # a bone with several children points up the spine
            kids = [J["spine1"] if j == J["pelvis"] else J["neck"]]
        tails[j] = heads[kids[0]] if kids else heads[j] + (heads[j] - heads[PARENTS[j]]) * 0.3
    names = [f"bone.{j:03d}" for j in range(24)]
    mapped = map_by_structure(names, list(PARENTS), heads, tails)
    assert (mapped.up, mapped.forward) == ("Z", "-Y")
    assert any(note.startswith("structure matches the SMPL skeleton") for note in mapped.notes)
    got = map_points(names, (heads, {j: t for j, t in enumerate(tails)}), mapped.bone_map)
    assert np.linalg.norm(got - heads, axis=-1).max() < 1e-9  # SMPL's tree: every joint is its own, spine too
    assert {names[j] for j in (J["left_hip"], J["left_knee"])} <= set(mapped.limbs["left_leg"])


def motionbuilder_rig() -> tuple[list[str], list[int], np.ndarray, np.ndarray]:
    """MotionBuilder's BVH skeleton on the neutral SMPL body: Hips, Chest, Chest2, Chest3, Neck, Head, collars from
    the chest's midline, no fingers; names, parents, heads and tails (a leaf's: a short step on)."""
    rest = {name: NEUTRAL_REST_JOINTS_M[j] for j, name in enumerate(JOINT_NAMES)}
    bones = [("Hips", None, "pelvis"), ("Chest", "Hips", "spine1"), ("Chest2", "Chest", "spine2")]
    bones += [("Chest3", "Chest2", "spine3"), ("Neck", "Chest3", "neck"), ("Head", "Neck", "head")]
    for side in ("Left", "Right"):
        s = side.lower()
        bones += [(f"{side}Hip", "Hips", f"{s}_hip"), (f"{side}Knee", f"{side}Hip", f"{s}_knee")]
        bones += [(f"{side}Ankle", f"{side}Knee", f"{s}_ankle"), (f"{side}Toe", f"{side}Ankle", f"{s}_foot")]
        bones += [(f"{side}Collar", "Chest3", "spine3"), (f"{side}Shoulder", f"{side}Collar", f"{s}_shoulder")]
        bones += [(f"{side}Elbow", f"{side}Shoulder", f"{s}_elbow"), (f"{side}Wrist", f"{side}Elbow", f"{s}_wrist")]
    names = [name for name, _, _ in bones]
    parents = [names.index(parent) if parent else -1 for _, parent, _ in bones]
    heads = np.array([rest[joint] for _, _, joint in bones])
    tails = np.full_like(heads, np.nan)
    for j in range(len(names)):
        if j not in parents:  # a chain's end: Blender hands over only those
            tails[j] = heads[j] + (heads[j] - heads[parents[j]]) * 0.3
    return names, parents, heads, tails


def test_a_motionbuilder_skeleton_with_any_names_maps_as_the_motionbuilder_map():
    names, parents, heads, tails = motionbuilder_rig()
    ends = {j: t for j, t in enumerate(tails) if np.isfinite(t).all()}
    named = map_points(names, (heads, ends), get_bone_map("motionbuilder"))
    scrambled = [f"t{j}x{len(names) - j}" for j in range(len(names))]
    mapped = map_by_structure(scrambled, parents, heads, tails)
    assert any(note.startswith("structure matches the MotionBuilder skeleton") for note in mapped.notes)
    got = map_points(scrambled, (heads, ends), mapped.bone_map)
    assert np.linalg.norm(got - named, axis=-1).max() < 1e-9
    # without its neck joint the skeleton is no family's: SMPL's proportions along the spine
    keep = [j for j, name in enumerate(names) if name != "Neck"]
    renumber = {j: k for k, j in enumerate(keep)}
    parents_without = [renumber.get(parents[j] if names[j] != "Head" else parents[parents[j]], -1) for j in keep]
    without = map_by_structure([scrambled[j] for j in keep], parents_without, heads[keep], tails[keep])
    assert any(note.startswith("structure matches no rig family") for note in without.notes)
