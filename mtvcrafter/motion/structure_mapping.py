"""Skeleton mapping by structure: where the 24 SMPL joints lie on a rig, found from its hierarchy and rest
pose alone — never from its bone names. numpy only.

Used when no bone map places all 24 joints by name, and on request (the preset id ``structure``). The result
is an ordinary :class:`~mtvcrafter.motion.bone_maps.BoneMap` in the rig's own names, so
:func:`~mtvcrafter.motion.skeleton_mapping.map_points` and
:func:`~mtvcrafter.motion.skeleton_mapping.rig_to_world` use it as they use the bundled maps.

How :func:`map_by_structure` reads a skeleton:

1. **Limbs** (lengths only). A joint holds a pair of limbs where two of its child chains are alike: the ratio
   of their reaches times the likeness of their runs of bone lengths is at least 0.8. The two largest such
   pairs, neither inside the other, are the legs and the arms; the legs are the pair nearer the root, and
   their joint is the pelvis.
2. **Along a limb** (lengths only; joints at their parent's place are passed over). The ankle (wrist) is the
   first joint, at least two down the chain, beyond which less hangs than 0.9 of the bone leading to it
   (the foot, the hand), or that forks into three chains or more (fingers); the two joints before it are
   the knee and hip (elbow and shoulder). Whatever comes before the hip (CMU's ``LHipJoint``) is left out.
   The foot is the next joint after the ankle (the toe's head), else the ankle's end. The collar is the
   shoulder's parent — 45 % of the way out to the shoulder when both collars start at the midline (CMU,
   a clavicle starting at the sternum, or no collar bone at all). The hand is the knuckles: the first
   point of the longest chain beyond the wrist that lies 0.25–0.6 forearm lengths beyond it, else the point
   a third of a forearm beyond it along that chain, else (no fingers) along the forearm.
3. **Spine, neck and head.** The neck and head are the points of the chain above the arms' joint nearest
   to the neutral SMPL body's heights above the shoulders (0.08 and 0.163 leg lengths), within 0.06;
   farther than that, the point at that height on the chain. SMPL's spine1–3 lie at 22 %, 50 % and 60 % of
   the path from the pelvis to the neck (lerps between the rig's spine joints, whatever their number).
4. **Geometry** (the rest pose). Up is from the feet to the arms' joint; forward is where the toes point;
   the body's left is where ``up × forward`` points (SMPL's body frame: Y up, facing +Z, left +X), and
   each limb pair's left one is the one on that side. The bone map's ``up``/``forward`` are the axes
   nearest to those.
5. **A human?** The legs must hang opposite the spine, the toes must point somewhere, and the two legs and
   the two arms must lie apart. A rest pose that fails (Rokoko's exports: offsets along the bones, so every
   limb points the same way) is read from poses of the motion instead, when given, and the notes say so;
   anything else — a four-legged animal, a single chain — is refused with one MotionError.
6. **Rig families.** Where the parts found have the topology of a family a bundled bone map names (SMPL's tree,
   Mixamo's, CMU's cgspeed conversion, MotionBuilder's BVH; the fingers told apart by where they start), the bones
   get that family's names internally and its map places all 24 joints in place of steps 2–3's proportions, so a rig
   with any names maps as that map maps the named rig; the notes say which family.

Also for Blender armatures: :func:`map_by_structure` takes bone names, parents, heads and tails.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from .bone_maps import (
    BoneMap,
    bone_key,
    bundled_bone_map_folder,
    read_bone_map,
    resolve_alternatives,
    rig_lookup,
    split_reference,
)
from .errors import MotionError
from .skeleton import JOINT_NAMES

#: The preset id that asks for mapping by structure (``bone_map="structure"``, ``--preset structure``).
STRUCTURE_ID = "structure"
#: Confidence of a mapping by structure at best: below a bone map that names every joint (1.0).
STRUCTURE_CONFIDENCE = 0.9
#: SMPL's spine1, spine2, spine3 as shares of the path from the pelvis to the neck (the neutral body's).
SPINE_SHARES = (0.22, 0.50, 0.60)
#: The neck and the head (skull base) above the line between the shoulders, in leg lengths (hip → knee →
#: ankle, along the bones), on the neutral SMPL body; a joint within the tolerance of one is taken as it is.
NECK_HEIGHT, HEAD_HEIGHT, HEIGHT_TOLERANCE = 0.08, 0.163, 0.06
#: The hand (the knuckles) beyond the wrist, in forearm lengths: the neutral body's, and the window in which
#: a point of a finger chain is taken as it is.
HAND_REACH, HAND_WINDOW = 0.33, (0.25, 0.6)
#: How far out along the clavicle the collar lies when the clavicle starts at the midline (as the CMU map).
COLLAR_SHARE = 0.45
#: Two child chains are a pair of limbs when their likeness (reach ratio × likeness of their bone lengths) is
#: at least this.
PAIR_LIKENESS = 0.8
#: Poses of the motion read when the rest pose is not a standing one (spread over the clip).
POSES_READ = 16

_SIDES = ("left", "right")


@dataclass(frozen=True)
class StructureMap:
    """A rig mapped by its structure.

    Attributes:
        bone_map: where the 24 joints lie, in the rig's bone names (id :data:`STRUCTURE_ID`, unit ``auto``,
            ``up``/``forward`` the axes found).
        confidence: 0..1, at most :data:`STRUCTURE_CONFIDENCE`; lower where the skeleton is less clear (limbs
            of unequal lengths, sides close together, toes hardly pointing, the rest pose unusable).
        notes: what was inferred and how (for the user).
        limbs: ``"left_leg"``, ``"right_leg"``, ``"left_arm"``, ``"right_arm"`` → the rig's bones of that
            limb (its whole chain from the pelvis or the arms' joint, fingers and toes included).
        up, forward: the rig's up axis and the axis it faces (``"Y"``, ``"-Z"`` …).
        from_rest: False when the geometry came from poses of the motion (the rest pose did not stand).
    """

    bone_map: BoneMap
    confidence: float
    notes: tuple[str, ...]
    limbs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    up: str = "Y"
    forward: str = "Z"
    from_rest: bool = True


# --- the rig ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Point:
    """A joint's head, or its end (BVH End Site, Blender tail)."""

    joint: int
    end: bool = False


#: A joint's place: a point, or ``(a, b, t)`` = ``a + t·(b − a)``.
_Spec = Any


class NotHumanSkeleton(MotionError):
    """A skeleton that mapping by structure does not read as a human's; ``reason`` says why."""

    def __init__(self, reason: str, *, source: str | None = None, bones: int = 0):
        self.reason = reason
        super().__init__(
            f"mapping by structure: this skeleton of {bones} bones is not read as a human's: {reason}; choose a "
            "bone map (--preset) or write one for it (presets/README.md)",
            source=source,
            field="bone_map",
        )


class _NotHuman(Exception):
    """Why a skeleton (or one of its poses) is not read as a human's."""


class _Rig:
    """The hierarchy and its lengths (which no rotation changes)."""

    def __init__(self, names: Sequence[str], parents: Sequence[int], heads: np.ndarray, ends: dict[int, np.ndarray]):
        self.names = list(names)
        self.parents = [int(p) for p in parents]
        count = len(self.names)
        self.children: list[list[int]] = [[] for _ in range(count)]
        for j, p in enumerate(self.parents):
            if p >= 0:
                self.children[p].append(j)
        self.order = _tree_order(self.parents, self.children)
        self.bone = np.zeros(count)
        for j, p in enumerate(self.parents):
            if p >= 0:
                self.bone[j] = float(np.linalg.norm(heads[j] - heads[p]))
        self.end_length = {j: float(np.linalg.norm(e - heads[j])) for j, e in ends.items()}
        self.reach = np.zeros(count)  # the longest path down from the joint (its end included)
        for j in reversed(self.order):
            below = [self.bone[c] + self.reach[c] for c in self.children[j]]
            self.reach[j] = max([self.end_length.get(j, 0.0), *below])
        self.from_root = np.zeros(count)  # path length from the root of its tree
        for j in self.order:
            p = self.parents[j]
            self.from_root[j] = self.from_root[p] + self.bone[j] if p >= 0 else 0.0
        size = float(max(self.reach.max(initial=0.0), self.from_root.max(initial=0.0)))
        self.eps = max(size * 1e-6, 1e-12)
        self._runs: dict[int, np.ndarray] = {}

    def subtree(self, j: int) -> list[int]:
        out, stack = [], [j]
        while stack:
            k = stack.pop()
            out.append(k)
            stack.extend(self.children[k])
        return out

    def is_ancestor(self, a: int, b: int) -> bool:
        """Whether ``a`` is ``b`` or above it."""
        while b >= 0:
            if b == a:
                return True
            b = self.parents[b]
        return False

    def down(self, j: int) -> int | None:
        """The child with the longest reach (the chain's way on), None for a leaf."""
        kids = self.children[j]
        return max(kids, key=lambda c: (self.bone[c] + self.reach[c], -c)) if kids else None

    def chain(self, j: int) -> list[int]:
        """``j`` and the joints below it along the longest reach, leaf last."""
        out = [j]
        while (k := self.down(out[-1])) is not None:
            out.append(k)
        return out

    def distinct(self, joints: Sequence[int]) -> list[int]:
        """The joints of a chain that lie away from the one before them (zero-length links passed over)."""
        return [j for j in joints if self.bone[j] > self.eps]

    def lengths(self, root: int) -> np.ndarray:
        """The run of bone lengths along a chain (the end last): what two limbs of a pair share."""
        if root not in self._runs:
            chain = self.chain(root)
            run = [float(self.bone[j]) for j in self.distinct(chain)]
            self._runs[root] = np.array(run + [self.end_length.get(chain[-1], 0.0)])
        return self._runs[root]

    def path(self, a: int, b: int) -> list[int]:
        """The joints from ``a`` to ``b`` through the lowest joint above both."""
        above_a = []
        while a >= 0:
            above_a.append(a)
            a = self.parents[a]
        above_b = []
        while b >= 0 and b not in above_a:
            above_b.append(b)
            b = self.parents[b]
        if b < 0:
            raise _NotHuman("its legs and its arms belong to separate skeletons (several roots)")
        return above_a[: above_a.index(b) + 1] + above_b[::-1]


def _tree_order(parents: list[int], children: list[list[int]]) -> list[int]:
    """Every joint after its parent; MotionError for a parent out of range or a loop."""
    count = len(parents)
    bad = [j for j, p in enumerate(parents) if not -1 <= p < count or p == j]
    if bad:
        raise MotionError(f"joint {bad[0]} has the parent {parents[bad[0]]}, not a joint index or -1", field="parents")
    order = []
    stack = [j for j, p in enumerate(parents) if p < 0][::-1]
    while stack:
        j = stack.pop()
        order.append(j)
        stack.extend(children[j][::-1])
    if len(order) != count:
        raise MotionError("the parents form a loop: a skeleton is a tree", field="parents")
    return order


@dataclass(frozen=True)
class _Shape:
    """Joint positions to read geometry from: the rest pose (one) or poses of the motion, ``(K, J, 3)``."""

    heads: np.ndarray
    ends: dict[int, np.ndarray]

    def at(self, spec: _Spec) -> np.ndarray:
        if isinstance(spec, _Point):
            return self.ends[spec.joint] if spec.end else self.heads[:, spec.joint]
        a, b, t = spec
        return (1.0 - t) * self.at(a) + t * self.at(b)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-300)


# --- the skeleton's parts -----------------------------------------------------------------------------------


@dataclass
class _Limb:
    root: int  # the chain's first joint (a child of the pelvis or of the arms' joint)
    top: int  # hip / shoulder
    middle: int  # knee / elbow
    bottom: int  # ankle / wrist
    tail: list[int]  # the chain's joints after the bottom one (toes, fingers along the longest reach)


@dataclass
class _Parts:
    pelvis: int
    chest: int  # where the arms branch
    legs: tuple[_Limb, _Limb]
    arms: tuple[_Limb, _Limb]
    spine: list[tuple[int, float]]  # the distinct joints from the pelvis to the chest and their path lengths
    head_chain: list[int]  # the chain above the chest, along its longest reach


def _pairs(rig: _Rig) -> list[tuple[float, float, int, int, int]]:
    """``(likeness, reach, joint, a, b)`` for two children of a joint alike enough to be a pair of limbs; each
    child in one pair at most, the likeliest pairs taken first."""
    found = []
    for p, kids in enumerate(rig.children):
        for i, a in enumerate(kids):
            for b in kids[i + 1 :]:
                ra, rb = rig.bone[a] + rig.reach[a], rig.bone[b] + rig.reach[b]
                if min(ra, rb) <= rig.eps:
                    continue
                la, lb = rig.lengths(a), rig.lengths(b)
                width = max(len(la), len(lb))
                la, lb = np.pad(la, (0, width - len(la))), np.pad(lb, (0, width - len(lb)))
                alike = 1.0 - np.abs(la - lb).sum() / max(float(np.maximum(la, lb).sum()), 1e-300)
                likeness = min(ra, rb) / max(ra, rb) * alike
                if likeness >= PAIR_LIKENESS:
                    found.append((float(likeness), float(min(ra, rb)), p, a, b))
    found.sort(key=lambda f: (-f[0], -f[1]))
    used: set[int] = set()
    pairs = []
    for item in found:
        if item[3] not in used and item[4] not in used:
            used |= {item[3], item[4]}
            pairs.append(item)
    return pairs


def _limb(rig: _Rig, root: int, what: str) -> _Limb:
    chain = rig.chain(root)
    joints = rig.distinct(chain)
    for k in range(2, len(joints)):
        j = joints[k]
        leading = rig.from_root[j] - rig.from_root[joints[k - 1]]
        forks = sum(1 for c in rig.children[j] if rig.bone[c] + rig.reach[c] > rig.eps)
        if forks >= 3 or rig.reach[j] < 0.9 * leading:
            return _Limb(root, joints[k - 2], joints[k - 1], j, chain[chain.index(j) + 1 :])
    raise _NotHuman(
        f"the chain from {rig.names[root]} has {len(joints)} joint(s) apart, too few for {what} (hip, knee, "
        "ankle; shoulder, elbow, wrist)"
    )


def _find_parts(rig: _Rig) -> _Parts:
    pairs = sorted(_pairs(rig), key=lambda f: -f[1])
    if not pairs:
        raise _NotHuman("no joint has two alike chains going down from it (legs), as in a single chain")
    first = pairs[0]
    below_first = set(rig.subtree(first[3])) | set(rig.subtree(first[4]))
    second = next(
        (q for q in pairs[1:] if q[2] not in below_first and first[2] not in rig.subtree(q[3]) + rig.subtree(q[4])),
        None,
    )
    if second is None:
        raise _NotHuman(
            f"it has one pair of limbs ({rig.names[first[3]]}, {rig.names[first[4]]}), a human two (legs and arms)"
        )
    if first[2] == second[2]:
        raise _NotHuman(f"both pairs of limbs branch from {rig.names[first[2]]}, with no spine between them")
    if rig.is_ancestor(second[2], first[2]) or (
        not rig.is_ancestor(first[2], second[2]) and rig.from_root[second[2]] < rig.from_root[first[2]]
    ):
        first, second = second, first  # the legs' joint is the one nearer the root
    pelvis, chest = first[2], second[2]
    legs = (_limb(rig, first[3], "a leg"), _limb(rig, first[4], "a leg"))
    arms = (_limb(rig, second[3], "an arm"), _limb(rig, second[4], "an arm"))
    path = rig.path(pelvis, chest)
    spine, arc = [(pelvis, 0.0)], 0.0
    for a, j in zip(path, path[1:], strict=False):
        step = float(rig.bone[j] if rig.parents[j] == a else rig.bone[a])
        arc += step
        if step > rig.eps:
            spine.append((j, arc))
    if spine[-1][0] != chest:  # the chest lies where the joint before it does: it stands for that point
        if len(spine) > 1:
            spine.pop()
        spine.append((chest, arc))
    towards_pelvis = path[-2] if len(path) > 1 else None
    above = [c for c in rig.children[chest] if c not in (second[3], second[4], towards_pelvis)]
    if not above:
        raise _NotHuman(f"nothing goes on above {rig.names[chest]}, where the arms branch: no neck or head")
    head_root = max(above, key=lambda c: (rig.bone[c] + rig.reach[c], -c))
    return _Parts(pelvis, chest, legs, arms, spine, rig.chain(head_root))


def _foot(rig: _Rig, leg: _Limb) -> _Point:
    beyond = rig.distinct(leg.tail)
    if beyond:
        return _Point(beyond[0])
    if rig.end_length.get(leg.bottom, 0.0) > rig.eps:
        return _Point(leg.bottom, end=True)
    raise _NotHuman(f"its leg ends at {rig.names[leg.bottom]}, with no foot (no joint or end beyond the ankle)")


def _limb_names(rig: _Rig, limbs: Sequence[_Limb]) -> str:
    return " and ".join("–".join(rig.names[j] for j in (limb.top, limb.middle, limb.bottom)) for limb in limbs)


# --- geometry -----------------------------------------------------------------------------------------------


@dataclass
class _Frame:
    """The body's frame in a shape, and how clearly the shape shows it."""

    up: np.ndarray  # (3,)
    forward: np.ndarray  # (3,)
    left_leg: int  # 0 or 1: which of the legs is the left one
    left_arm: int
    clarity: float  # 0..1


def _body_frame(rig: _Rig, parts: _Parts, shape: _Shape, feet: tuple[_Point, _Point]) -> _Frame:
    """Up, forward and the sides from a shape; _NotHuman where it is not a standing human's."""
    pelvis, chest = shape.at(_Point(parts.pelvis)), shape.at(_Point(parts.chest))
    ankles = [shape.at(_Point(leg.bottom)) for leg in parts.legs]
    spine = _unit(chest - pelvis)
    legs = _unit((ankles[0] + ankles[1]) / 2.0 - pelvis)
    along = float(np.mean(np.sum(spine * legs, axis=-1)))
    if not along < -0.5:
        angle = float(np.degrees(np.arccos(np.clip(along, -1.0, 1.0))))
        wrists = [shape.at(_Point(arm.bottom)) for arm in parts.arms]
        arms = _unit((wrists[0] + wrists[1]) / 2.0 - chest)
        if abs(along) < 0.5 and float(np.mean(np.sum(arms * legs, axis=-1))) > 0.7:
            raise _NotHuman(
                f"its four limbs hang the same way, at {angle:.0f}° to its spine, as a four-legged animal's (a "
                "standing human's legs hang opposite the spine)"
            )
        raise _NotHuman(
            f"its legs ({_limb_names(rig, parts.legs)}) point {angle:.0f}° away from its spine, not opposite it "
            "as a standing human's"
        )
    up = _unit(chest - (ankles[0] + ankles[1]) / 2.0)
    toes = sum(shape.at(foot) - ankle for foot, ankle in zip(feet, ankles, strict=True))
    toes = toes - np.sum(toes * up, axis=-1, keepdims=True) * up
    feet_length = sum(np.linalg.norm(shape.at(foot) - ankle, axis=-1) for foot, ankle in zip(feet, ankles, strict=True))
    pointing = float(np.mean(np.linalg.norm(toes, axis=-1) / np.maximum(feet_length, 1e-300)))
    if not pointing >= 0.3:
        raise _NotHuman("its feet point along its legs, so its front cannot be told from its back")
    forward = _unit(toes)
    left = np.cross(up, forward)
    scale = float(np.mean([rig.from_root[leg.bottom] - rig.from_root[leg.top] for leg in parts.legs]))
    clarity = min((pointing - 0.3) / 0.5, (-along - 0.5) / 0.4)
    sides = []
    for what, limbs in (("legs", parts.legs), ("arms", parts.arms)):
        across = [
            np.mean([np.sum(shape.at(_Point(j)) * left, axis=-1) for j in (limb.top, limb.middle, limb.bottom)], axis=0)
            for limb in limbs
        ]
        apart = float(np.mean(across[0] - across[1])) / scale
        if not abs(apart) >= 0.02:
            raise _NotHuman(f"its two {what} lie on top of each other, so left cannot be told from right")
        sides.append(0 if apart > 0 else 1)
        clarity = min(clarity, abs(apart) / 0.1)
    return _Frame(_unit(up.mean(axis=0)), _unit(forward.mean(axis=0)), sides[0], sides[1], min(max(clarity, 0.0), 1.0))


def _nearest_axis(vector: np.ndarray, besides: str | None = None) -> tuple[str, float]:
    """The signed axis nearest to a direction (other than ``besides``), and the angle to it in degrees."""
    best = ("", -2.0)
    for k, axis in enumerate("XYZ"):
        if besides is not None and besides[-1] == axis:
            continue
        for sign in (1.0, -1.0):
            cos = float(sign * vector[k] / max(float(np.linalg.norm(vector)), 1e-300))
            if cos > best[1]:
                best = (("-" if sign < 0 else "") + axis, cos)
    return best[0], float(np.degrees(np.arccos(np.clip(best[1], -1.0, 1.0))))


def _axis(name: str) -> np.ndarray:
    v = np.zeros(3)
    v["XYZ".index(name[-1])] = -1.0 if name.startswith("-") else 1.0
    return v


# --- placing the joints -------------------------------------------------------------------------------------


class _Polyline:
    """The points from the pelvis up the spine, neck and head: path lengths along the bones and heights above
    the shoulders' line (in leg lengths)."""

    def __init__(self, points: list[_Point], arcs: list[float], heights: list[float]):
        self.points, self.arc, self.height = points, arcs, heights

    def at_arc(self, arc: float) -> _Spec:
        for i in range(len(self.points) - 1):
            a, b = self.arc[i], self.arc[i + 1]
            if arc <= b and b > a:
                t = min(max((arc - a) / (b - a), 0.0), 1.0)
                return (
                    self.points[i] if t < 1e-9 else self.points[i + 1] if t > 1 - 1e-9 else (*self.points[i : i + 2], t)
                )
        return self.points[-1]

    def arc_of(self, spec: _Spec) -> float:
        if isinstance(spec, _Point):
            return self.arc[self.points.index(spec)]
        i = self.points.index(spec[0])
        return self.arc[i] + spec[2] * (self.arc[i + 1] - self.arc[i])

    def at_height(self, target: float, first: int, last: int) -> tuple[_Spec, bool]:
        """Among the joints ``points[first:last]`` the one nearest ``target`` (within the tolerance; a leaf's end
        only where no joint is: an End Site need not point along the bone in a pose); else the point at that
        height on the line from ``points[first]`` to ``points[last]`` (the nearer end when it is not that high);
        also whether a joint was taken as it is."""
        for ends in (False, True):
            indices = [i for i in range(first, last) if self.points[i].end == ends]
            near = min(indices, key=lambda i: abs(self.height[i] - target), default=None)
            if near is not None and abs(self.height[near] - target) <= HEIGHT_TOLERANCE:
                return self.points[near], True
        for i in range(first, min(last, len(self.points) - 1)):
            low, high = self.height[i], self.height[i + 1]
            if low <= target <= high and high > low:
                t = (target - low) / (high - low)
                return (self.points[i], self.points[i + 1], t), False
        end = min(last, len(self.points) - 1)
        return self.points[end if self.height[end] < target else first], False


def _hand(rig: _Rig, arm: _Limb) -> tuple[_Spec, bool]:
    """The knuckles on the longest chain beyond the wrist, else along the forearm; and whether fingers were used."""
    forearm = rig.from_root[arm.bottom] - rig.from_root[arm.middle]
    wrist = _Point(arm.bottom)
    kids = rig.children[arm.bottom]
    if kids:
        finger = max(kids, key=lambda c: (rig.bone[c] + rig.reach[c], rig.bone[c], -c))
        chain = rig.chain(finger)
        points = [_Point(j) for j in chain]
        if rig.end_length.get(chain[-1], 0.0) > rig.eps:
            points.append(_Point(chain[-1], True))
    else:
        points = [_Point(arm.bottom, True)] if rig.end_length.get(arm.bottom, 0.0) > rig.eps else []
    reached, before, travelled = 0.0, wrist, []
    for point in points:
        step = rig.end_length[point.joint] if point.end else float(rig.bone[point.joint])
        reached += step
        travelled.append((reached, before, point, step))
        before = point
    low, high = HAND_WINDOW
    for distance, _, point, _ in travelled:
        if low * forearm <= distance <= high * forearm:
            return point, True
    for distance, start, point, step in travelled:
        if distance > high * forearm and step > 0:
            t = 1.0 - (distance - HAND_REACH * forearm) / step
            if t > 0:
                return (start, point, t), True
    return (_Point(arm.middle), wrist, 1.0 + HAND_REACH), False


def _collars(rig: _Rig, shape: _Shape, arms: Sequence[_Limb]) -> list[_Spec]:
    """Each collar: its clavicle's head, or 45 % of the way out to the shoulder when both clavicles start at the
    midline (together)."""
    clavicles = [rig.parents[arm.top] for arm in arms]
    apart = float(np.mean(np.linalg.norm(shape.at(_Point(clavicles[0])) - shape.at(_Point(clavicles[1])), axis=-1)))
    if apart < 0.5 * float(np.mean([rig.bone[arm.top] for arm in arms])):
        return [(_Point(c), _Point(arm.top), COLLAR_SHARE) for c, arm in zip(clavicles, arms, strict=True)]
    return [_Point(c) for c in clavicles]


def _neck_and_head(
    rig: _Rig, parts: _Parts, shape: _Shape, legs: Sequence[_Limb], arms: Sequence[_Limb]
) -> tuple[_Spec, _Spec, float, bool, _Polyline]:
    """Neck and head, the path length from the pelvis to the neck, whether both are joints of the rig, and the
    line from the pelvis up (on which the spine's joints are placed)."""
    points = [_Point(j) for j, _ in parts.spine]
    arcs = [arc for _, arc in parts.spine]
    chest_arc = arcs[-1]
    for j in rig.distinct(parts.head_chain):
        points.append(_Point(j))
        arcs.append(chest_arc + rig.from_root[j] - rig.from_root[parts.chest])
    top = parts.head_chain[-1]
    if rig.end_length.get(top, 0.0) > rig.eps and top in shape.ends:
        points.append(_Point(top, True))
        arcs.append(chest_arc + rig.from_root[top] - rig.from_root[parts.chest] + rig.end_length[top])
    chest_index = len(parts.spine) - 1
    if len(points) == chest_index + 1:
        raise _NotHuman(f"nothing goes on above {rig.names[parts.chest]}, where the arms branch: no neck or head")
    up = _unit(shape.at(_Point(parts.chest)) - sum(shape.at(_Point(leg.bottom)) for leg in legs) / 2.0)
    shoulders = sum(shape.at(_Point(arm.top)) for arm in arms) / 2.0
    leg_length = float(np.mean([rig.from_root[leg.bottom] - rig.from_root[leg.top] for leg in legs]))
    heights = [float(np.mean(np.sum((shape.at(p) - shoulders) * up, axis=-1))) / leg_length for p in points]
    line = _Polyline(points, arcs, heights)
    head, head_joint = line.at_height(HEAD_HEIGHT, chest_index + 1, len(points))
    head_index = points.index(head if isinstance(head, _Point) else head[1])
    neck, neck_joint = line.at_height(NECK_HEIGHT, chest_index, head_index)
    if not line.arc_of(neck) < line.arc_of(head):
        raise _NotHuman(f"the chain above {rig.names[parts.chest]} is too short to hold a neck and a head")
    return neck, head, line.arc_of(neck), head_joint and neck_joint, line


def _source(rig: _Rig, spec: _Spec) -> Any:
    """A joint's place in the bone-map JSON form, in the rig's names."""

    def point(p: _Point) -> str:
        return f"{rig.names[p.joint]}@end" if p.end else rig.names[p.joint]

    if isinstance(spec, _Point):
        return point(spec)
    a, b, t = spec
    return {"lerp": [point(a), point(b), float(t)]}


def _check_names(rig: _Rig, specs: Mapping[str, _Spec]) -> None:
    """A bone map finds bones by :func:`bone_key`; refuse a bone it would confuse with another."""
    lookup = rig_lookup(rig.names)
    used = {p.joint for spec in specs.values() for p in ([spec] if isinstance(spec, _Point) else spec[:2])}
    for j in sorted(used):
        name = rig.names[j]
        if lookup.get(bone_key(name)) != name or split_reference(name)[1]:
            raise MotionError(
                f"the bone {name!r} cannot be told apart from {lookup.get(bone_key(name), name)!r} by a bone map "
                "(names compare without namespace and case, and '@end' marks an end); rename one of them",
                field="bone_map",
            )


def _as_ends(tails: Any, names: Sequence[str], count: int, frames: bool) -> dict[int, np.ndarray]:
    """Ends by joint index from None, an array (a row per joint, NaN for none) or a mapping (index or name)."""
    if tails is None:
        return {}
    index = {name: j for j, name in enumerate(names)}
    if isinstance(tails, Mapping):
        items = list(tails.items())
    else:
        array = np.asarray(tails, dtype=np.float64)
        if array.shape[-2:] != (count, 3):
            raise MotionError(
                f"tails must be ({count}, 3), a row per bone (NaN where none), got {array.shape}", field="tails"
            )
        items = [(j, array[..., j, :]) for j in range(count)]
    out: dict[int, np.ndarray] = {}
    for key, value in items:
        j = int(key) if isinstance(key, int | np.integer) else index.get(str(key))
        if j is None or not 0 <= j < count:
            raise MotionError(f"an end for {key!r}, which is not one of the bones", field="tails")
        value = np.asarray(value, dtype=np.float64)
        value = value.reshape(-1, 3) if frames else value.reshape(3)
        if np.isfinite(value).all():
            out[j] = value
    return out


# --- rig families -------------------------------------------------------------------------------------------

#: Where the bones found have the topology of a rig family that a bundled bone map names, the bones are given that
#: family's names (internally) and the family's map places the joints: its spine, collar and hand points, lerps and
#: alternatives as written there. ``_Roles`` → rig index → the family's bone name, or None where the topology
#: differs.


@dataclass
class _Roles:
    """The parts found, their sides known (left first)."""

    pelvis: int
    chest: int
    spine: list[int]  # the joints from the pelvis up to the chest, both included (parent before child)
    neck: int  # the chest's child the neck and head are on
    legs: tuple[_Limb, _Limb]
    arms: tuple[_Limb, _Limb]
    collars_together: bool  # both clavicles start at the midline


def _straight(rig: _Rig, joints: Sequence[int]) -> bool:
    """Each joint the parent of the next."""
    return all(rig.parents[b] == a for a, b in zip(joints, joints[1:], strict=False))


def _only_chain(rig: _Rig, j: int) -> list[int] | None:
    """``j`` and everything below it when that is one chain (each joint at most one child); else None."""
    out = [j]
    while rig.children[out[-1]]:
        if len(rig.children[out[-1]]) != 1:
            return None
        out.append(rig.children[out[-1]][0])
    return out


def _chain_lengths(rig: _Rig, joints: Sequence[int]) -> list[int] | None:
    """How many joints each of these chains has (None where one forks)."""
    chains = [_only_chain(rig, j) for j in joints]
    return None if any(c is None for c in chains) else [len(c) for c in chains if c is not None]


def _body_shape(rig: _Rig, roles: _Roles, *, hip_joint: bool, spine: Sequence[int], neck: Sequence[int]) -> bool:
    """The parts every family shares, of the given shape: the legs and the spine branch from the pelvis (a hip
    joint before each hip, or none), ``spine`` joints from the pelvis to the chest, the neck and two collars from
    the chest, each leg hip → knee → ankle and each arm collar → shoulder → elbow → wrist, ``neck`` joints in the
    chain from the chest to the head (the head's children leaves: ends, eyes)."""
    if len(roles.spine) not in spine or not _straight(rig, roles.spine):
        return False
    if sorted(rig.children[roles.pelvis]) != sorted([leg.root for leg in roles.legs] + [roles.spine[1]]):
        return False
    if sorted(rig.children[roles.chest]) != sorted([arm.root for arm in roles.arms] + [roles.neck]):
        return False
    for leg in roles.legs:
        start = [leg.root, leg.top] if hip_joint else [leg.top]
        if (leg.root != leg.top) != hip_joint or not _straight(rig, [*start, leg.middle, leg.bottom]):
            return False
    for arm in roles.arms:
        if arm.root == arm.top or not _straight(rig, [arm.root, arm.top, arm.middle, arm.bottom]):
            return False
    head_line = [roles.neck]
    while len(head_line) < max(neck) and len(rig.children[head_line[-1]]) == 1:
        head_line.append(rig.children[head_line[-1]][0])
    return len(head_line) in neck and all(not rig.children[c] for c in rig.children[head_line[-1]])


def _toes(rig: _Rig, leg: _Limb, counts: Sequence[int]) -> list[int] | None:
    """The chain beyond the ankle when it is one chain of ``counts`` joints (0: the ankle a leaf)."""
    kids = rig.children[leg.bottom]
    if not kids:
        return [] if 0 in counts else None
    chain = _only_chain(rig, kids[0]) if len(kids) == 1 else None
    return chain if chain is not None and len(chain) in counts else None


def _limbs_named(roles: _Roles, leg: Sequence[str], arm: Sequence[str]) -> dict[int, str]:
    """The limbs' joints by the family's names: ``leg`` hip, knee, ankle; ``arm`` collar, shoulder, elbow, wrist
    (``{side}``: Left / Right)."""
    names = {}
    for side, limb in zip(("Left", "Right"), roles.legs, strict=True):
        names |= {j: n.format(side=side) for j, n in zip((limb.top, limb.middle, limb.bottom), leg, strict=True)}
    for side, limb in zip(("Left", "Right"), roles.arms, strict=True):
        joints = (limb.root, limb.top, limb.middle, limb.bottom)
        names |= {j: n.format(side=side) for j, n in zip(joints, arm, strict=True)}
    return names


def _fingers_across(shape: _Shape, bases: Sequence[int]) -> list[int]:
    """Five finger chains' first joints as thumb, index, middle, ring, pinky: the thumb's lies farthest from the
    others (nearer the wrist), the others in order across the hand from the one nearer the thumb."""
    at = {b: shape.heads[:, b] for b in bases}

    def apart(a: int, b: int) -> float:
        return float(np.mean(np.linalg.norm(at[a] - at[b], axis=-1)))

    thumb = max(bases, key=lambda b: (sum(apart(b, c) for c in bases), -b))
    knuckles = [b for b in bases if b != thumb]
    ends = max(((a, b) for i, a in enumerate(knuckles) for b in knuckles[i + 1 :]), key=lambda ab: apart(*ab))
    index = min(ends, key=lambda b: apart(b, thumb))
    pinky = ends[1] if index == ends[0] else ends[0]
    across = at[pinky] - at[index]
    return [thumb, *sorted(knuckles, key=lambda b: float(np.mean(np.sum((at[b] - at[index]) * across, axis=-1))))]


def _smpl_names(rig: _Rig, shape: _Shape, roles: _Roles) -> dict[int, str] | None:
    """smpl2bvh and other SMPL rigs: SMPL's own tree of 24 joints (a hand joint beyond each wrist)."""
    if not _body_shape(rig, roles, hip_joint=False, spine=(4,), neck=(2,)):
        return None
    toes = [_toes(rig, leg, (1,)) for leg in roles.legs]
    hands = [_chain_lengths(rig, rig.children[arm.bottom]) for arm in roles.arms]
    if None in toes or any(h != [1] for h in hands) or rig.children[rig.children[roles.neck][0]]:
        return None
    names = {roles.pelvis: "pelvis", roles.neck: "neck", rig.children[roles.neck][0]: "head"}
    names |= dict(zip(roles.spine[1:], ("spine1", "spine2", "spine3"), strict=True))
    names |= _limbs_named(
        roles,
        ("{side}_hip", "{side}_knee", "{side}_ankle"),
        ("{side}_collar", "{side}_shoulder", "{side}_elbow", "{side}_wrist"),
    )
    for side, toe, arm in zip(("Left", "Right"), toes, roles.arms, strict=True):
        names |= {toe[0]: f"{side}_foot", rig.children[arm.bottom][0]: f"{side}_hand"}
    return names


def _mixamo_names(rig: _Rig, shape: _Shape, roles: _Roles) -> dict[int, str] | None:
    """Mixamo: Hips, Spine, Spine1, Spine2 (the arms' joint), Neck, Head; a collar per arm; five fingers per hand,
    chains of 3 joints (4 with their ends); a toe (with its end)."""
    if not _body_shape(rig, roles, hip_joint=False, spine=(4,), neck=(2,)):
        return None
    toes = [_toes(rig, leg, (1, 2)) for leg in roles.legs]
    hands = [_chain_lengths(rig, rig.children[arm.bottom]) for arm in roles.arms]
    if None in toes or any(h is None or len(h) != 5 or len(set(h)) != 1 or h[0] not in (3, 4) for h in hands):
        return None
    names = {roles.pelvis: "Hips", roles.neck: "Neck", rig.children[roles.neck][0]: "Head"}
    names |= dict(zip(roles.spine[1:], ("Spine", "Spine1", "Spine2"), strict=True))
    names |= _limbs_named(
        roles,
        ("{side}UpLeg", "{side}Leg", "{side}Foot"),
        ("{side}Shoulder", "{side}Arm", "{side}ForeArm", "{side}Hand"),
    )
    for side, toe, arm in zip(("Left", "Right"), toes, roles.arms, strict=True):
        names[toe[0]] = f"{side}ToeBase"
        fingers = _fingers_across(shape, rig.children[arm.bottom])
        names |= {
            j: f"{side}Hand{f}1" for j, f in zip(fingers, ("Thumb", "Index", "Middle", "Ring", "Pinky"), strict=True)
        }
    return names


def _cmu_names(rig: _Rig, shape: _Shape, roles: _Roles) -> dict[int, str] | None:
    """CMU's cgspeed conversion: Hips, LHipJoint before each hip, LowerBack, Spine, Spine1 (the arms' joint), Neck,
    Neck1, Head; a collar per arm; LeftHand → LeftFingerBase → its finger, and LThumb; a toe.

    The finger beyond the base keeps no name: cgspeed's releases call it LFingers or LeftHandIndex1 (the same bone,
    the same length), and the cmu map places the hand along the forearm for the first, along the finger for the
    second; the skeleton does not tell them apart, so the hand is placed as for LFingers."""
    if not _body_shape(rig, roles, hip_joint=True, spine=(4,), neck=(3,)):
        return None
    toes = [_toes(rig, leg, (1,)) for leg in roles.legs]
    hands = [sorted(_chain_lengths(rig, rig.children[arm.bottom]) or []) for arm in roles.arms]
    if None in toes or any(h != [1, 2] for h in hands):
        return None
    neck1 = rig.children[roles.neck][0]
    names = {roles.pelvis: "Hips", roles.neck: "Neck", neck1: "Neck1", rig.children[neck1][0]: "Head"}
    names |= dict(zip(roles.spine[1:], ("LowerBack", "Spine", "Spine1"), strict=True))
    names |= _limbs_named(
        roles,
        ("{side}UpLeg", "{side}Leg", "{side}Foot"),
        ("{side}Shoulder", "{side}Arm", "{side}ForeArm", "{side}Hand"),
    )
    for side, leg, toe, arm in zip(("Left", "Right"), roles.legs, toes, roles.arms, strict=True):
        names |= {leg.root: f"{side[0]}HipJoint", toe[0]: f"{side}ToeBase"}
        base, thumb = sorted(rig.children[arm.bottom], key=lambda c: -len(rig.children[c]))
        names |= {base: f"{side}FingerBase", thumb: f"{side[0]}Thumb"}
    return names


def _motionbuilder_names(rig: _Rig, shape: _Shape, roles: _Roles) -> dict[int, str] | None:
    """MotionBuilder's BVH: Hips, Chest … Chest4 (two to four; the last the arms' joint), Neck, Head; LeftCollar
    starting at the midline; no fingers (or one bone beyond the wrist); a toe, or the ankle's end."""
    if not roles.collars_together or not _body_shape(rig, roles, hip_joint=False, spine=(3, 4, 5), neck=(2,)):
        return None
    toes = [_toes(rig, leg, (0, 1)) for leg in roles.legs]
    hands = [_chain_lengths(rig, rig.children[arm.bottom]) for arm in roles.arms]
    if None in toes or any(h not in ([], [1]) for h in hands):
        return None
    names = {roles.pelvis: "Hips", roles.neck: "Neck", rig.children[roles.neck][0]: "Head"}
    names |= dict(zip(roles.spine[1:], ("Chest", "Chest2", "Chest3", "Chest4"), strict=False))
    names |= _limbs_named(
        roles,
        ("{side}Hip", "{side}Knee", "{side}Ankle"),
        ("{side}Collar", "{side}Shoulder", "{side}Elbow", "{side}Wrist"),
    )
    for side, toe in zip(("Left", "Right"), toes, strict=True):
        if toe:
            names[toe[0]] = f"{side}Toe"
    return names


#: The families tried, in order: (bundled map id, the family's name, its bones' names by role).
_FAMILIES: tuple[tuple[str, str, Callable[[_Rig, _Shape, _Roles], dict[int, str] | None]], ...] = (
    ("smpl", "SMPL", _smpl_names),
    ("mixamo", "Mixamo", _mixamo_names),
    ("cmu", "CMU (cgspeed)", _cmu_names),
    ("motionbuilder", "MotionBuilder", _motionbuilder_names),
)


@cache
def _family_map(ident: str) -> BoneMap | None:
    """A bundled bone map (read once), None where it cannot be read."""
    try:
        return read_bone_map(bundled_bone_map_folder() / f"{ident}.json")
    except MotionError:
        return None


def _by_family(rig: _Rig, shape: _Shape, roles: _Roles) -> tuple[str, str, dict[str, _Spec]] | None:
    """The first family whose topology the roles have, and the joints its bone map places on the rig's bones
    given that family's names; None where none matches (or its map does not place all 24 joints)."""
    for ident, label, naming in _FAMILIES:
        names = naming(rig, shape, roles)
        bone_map = _family_map(ident) if names is not None else None
        if names is None or bone_map is None:
            continue
        index = {bone_key(name): j for j, name in names.items()}
        heads = {key: key for key in index}
        ends = {key: key for key, j in index.items() if j in rig.end_length}
        chosen, missing = resolve_alternatives(bone_map, heads, ends)
        if missing:
            continue
        specs: dict[str, _Spec] = {}
        for joint, alternative in chosen.items():
            points = [_Point(index[ref.key], ref.end) for ref, _ in alternative]
            specs[joint] = points[0] if len(points) == 1 else (points[0], points[1], alternative[1][1])
        return ident, label, specs
    return None


# --- the mapping --------------------------------------------------------------------------------------------


def map_by_structure(
    names: Sequence[str],
    parents: Sequence[int],
    heads: np.ndarray,
    tails: np.ndarray | Mapping[Any, np.ndarray] | None = None,
    *,
    poses: tuple[np.ndarray, Mapping[Any, np.ndarray]] | None = None,
    source: str | None = None,
) -> StructureMap:
    """Map a rig onto the 24 SMPL joints by its structure (hierarchy and rest pose), not its names.

    Args:
        names: the bones (BVH joints), as the bone map will name them.
        parents: ``(J,)`` each bone's parent index, −1 for a root.
        heads: ``(J, 3)`` rest-pose heads (BVH: every joint at its ``OFFSET``, no rotation; Blender: the
            armature's bone heads), any unit and axes.
        tails: bone ends — a ``(J, 3)`` array (Blender's tails; NaN rows where none) or index/name → ``(3,)``
            (BVH End Sites). Optional, but a leaf's end is the only foot or head top some rigs have.
        poses: ``(heads (K, J, 3), ends index → (K, 3))`` of frames of the motion, read (16 of them, spread
            over the clip) where the rest pose does not stand (Rokoko's exports: offsets along the bones).
        source: the file, for messages.

    Returns:
        :class:`StructureMap`: the bone map, its confidence and notes on what was inferred.

    Raises:
        NotHumanSkeleton: a skeleton that is not read as a human's (a MotionError; the one-line message says
            why).
        MotionError: input of the wrong shape, or bones that a bone map cannot tell apart.
    """
    names = [str(n) for n in names]
    count = len(names)
    rest = np.asarray(heads, dtype=np.float64)
    if rest.shape != (count, 3) or len(parents) != count:
        raise MotionError(
            f"heads must be ({count}, 3) and parents ({count},) for {count} bones, got {rest.shape} and "
            f"{len(parents)} parents",
            source=source,
            field="heads",
        )
    if not np.isfinite(rest).all():
        raise MotionError("the rest pose holds values that are not numbers", source=source, field="heads")
    try:
        ends = _as_ends(tails, names, count, frames=False)
        rig = _Rig(names, parents, rest, ends)
        shapes = [_Shape(rest[None], {j: e[None] for j, e in ends.items()})]
        if poses is not None:
            pose_heads, pose_ends = poses
            pose_heads = np.asarray(pose_heads, dtype=np.float64).reshape(-1, count, 3)
            step = max(1, len(pose_heads) // POSES_READ)
            picked = _as_ends(pose_ends, names, count, frames=True)
            shapes.append(
                _Shape(pose_heads[::step][:POSES_READ], {j: e[::step][:POSES_READ] for j, e in picked.items()})
            )
        return _map(rig, shapes)
    except _NotHuman as exc:
        raise NotHumanSkeleton(str(exc), source=source, bones=count) from None
    except MotionError as exc:
        if exc.source is not None:
            raise
        raise MotionError(str(exc).split(": ", 1)[-1], source=source, field=exc.field) from None


def _map(rig: _Rig, shapes: list[_Shape]) -> StructureMap:
    parts = _find_parts(rig)
    feet = (_foot(rig, parts.legs[0]), _foot(rig, parts.legs[1]))
    frame = shape = reason = None
    for candidate in shapes:
        if any(f.end and f.joint not in candidate.ends for f in feet):
            continue
        try:
            frame, shape = _body_frame(rig, parts, candidate, feet), candidate
            break
        except _NotHuman as exc:
            reason = reason or exc
    if frame is None or shape is None:
        raise reason or _NotHuman("its rest pose does not show where its feet point")
    from_rest = shape is shapes[0]
    legs = parts.legs if frame.left_leg == 0 else parts.legs[::-1]
    arms = parts.arms if frame.left_arm == 0 else parts.arms[::-1]
    feet = feet if frame.left_leg == 0 else feet[::-1]

    specs: dict[str, _Spec] = {"pelvis": _Point(parts.pelvis)}
    for side, leg, foot in zip(_SIDES, legs, feet, strict=True):
        specs |= {f"{side}_hip": _Point(leg.top), f"{side}_knee": _Point(leg.middle)}
        specs |= {f"{side}_ankle": _Point(leg.bottom), f"{side}_foot": foot}
    fingers = True
    collars = _collars(rig, shape, arms)
    for side, arm, collar in zip(_SIDES, arms, collars, strict=True):
        specs |= {f"{side}_collar": collar, f"{side}_shoulder": _Point(arm.top)}
        specs |= {f"{side}_elbow": _Point(arm.middle), f"{side}_wrist": _Point(arm.bottom)}
        specs[f"{side}_hand"], on_fingers = _hand(rig, arm)
        fingers = fingers and on_fingers
    specs["neck"], specs["head"], neck_arc, on_joints, line = _neck_and_head(rig, parts, shape, legs, arms)
    for joint, share in zip(("spine1", "spine2", "spine3"), SPINE_SHARES, strict=True):
        specs[joint] = line.at_arc(share * neck_arc)
    roles = _Roles(
        parts.pelvis,
        parts.chest,
        rig.path(parts.pelvis, parts.chest),
        parts.head_chain[0],
        legs,
        arms,
        not isinstance(collars[0], _Point),
    )
    family = _by_family(rig, shape, roles)
    if family is not None:
        specs = family[2]
    _check_names(rig, specs)

    up, up_off = _nearest_axis(frame.up)
    facing = frame.forward - (frame.forward @ _axis(up)) * _axis(up)
    forward, forward_off = _nearest_axis(facing, besides=up)
    likeness = min(
        min(a, b) / max(a, b)
        for a, b in (
            [rig.from_root[leg.bottom] - rig.from_root[leg.top] for leg in parts.legs],
            [rig.from_root[arm.bottom] - rig.from_root[arm.top] for arm in parts.arms],
        )
    )
    confidence = STRUCTURE_CONFIDENCE * likeness * (0.5 + 0.5 * frame.clarity) * (1.0 if from_rest else 0.9)

    names = rig.names
    where = "the rest pose" if from_rest else "poses of the motion"
    limbs_text = "; ".join(
        f"{side} {what} " + "–".join(names[j] for j in (limb.top, limb.middle, limb.bottom))
        for what, pair in (("leg", legs), ("arm", arms))
        for side, limb in zip(_SIDES, pair, strict=True)
    )
    spine_text = ", ".join(names[j] for j, _ in parts.spine[1:-1])
    notes = [
        f"found by structure, not by bone names: pelvis {names[parts.pelvis]} (where the legs branch); {limbs_text}; "
        f"spine {spine_text + ' to ' if spine_text else ''}{names[parts.chest]} (where the arms branch); neck and "
        f"head on {', '.join(names[j] for j in rig.distinct(parts.head_chain)) or names[parts.head_chain[-1]]}",
        f"left and right from {where}: the left limbs are those on the body's left (up × forward)",
        f"axes from {where}: up {up} (from the feet to the chest, {up_off:.0f}° off the axis), forward {forward} "
        f"(where the toes point, {forward_off:.0f}° off)",
    ]
    if not from_rest:
        notes.append(
            f"the rest pose cannot be read as a standing body ({reason}), so sides and axes come from "
            f"{len(shape.heads)} poses of the motion"
        )
    if family is not None:
        notes.append(
            f"structure matches the {family[1]} skeleton: its map's ({family[0]}) spine, neck, collar and hand "
            "points used, on the bones found"
        )
    else:
        if not fingers:
            notes.append("hands: no finger bones, so placed a third of a forearm beyond the wrists")
        if not on_joints:
            notes.append("neck or head placed between the rig's joints, at the SMPL body's heights above the shoulders")
        notes.append(
            "structure matches no rig family a bundled map names: spine1–3 at SMPL's proportions of the way to the neck"
        )
    bone_map = BoneMap(
        name=STRUCTURE_ID,
        description="Joints placed by the skeleton's structure (hierarchy and rest pose), not by bone names.",
        joints={joint: _source(rig, specs[joint]) for joint in JOINT_NAMES},
        up=up,
        forward=forward,
        unit="auto",
    )
    limbs = {
        f"{side}_{what}": tuple(names[j] for j in sorted(rig.subtree(limb.root)))
        for what, pair in (("leg", legs), ("arm", arms))
        for side, limb in zip(_SIDES, pair, strict=True)
    }
    return StructureMap(bone_map, round(float(confidence), 4), tuple(notes), limbs, up, forward, from_rest)
