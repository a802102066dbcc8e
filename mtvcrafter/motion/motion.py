"""The Motion type: one person's 24 SMPL joints per frame, in millimetres, in camera space."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .camera import DEFAULT_FOV_DEG, DEFAULT_IMAGE_SIZE
from .errors import MotionError
from .quality import QualityReport, check_quality
from .skeleton import NUM_JOINTS, bone_lengths
from .units import PLAUSIBLE_BONE_MM, millimetre_hint

#: Longest motion accepted (about 9 hours at 30 fps); longer ones should be split.
MAX_FRAMES = 1_000_000


def _number(value: Any, source: str | None, name: str) -> float:
    """A finite real number from a field, or a MotionError naming it."""
    try:
        number = float(np.asarray(value).reshape(-1)[0]) if np.size(value) == 1 else float("nan")
    except (TypeError, ValueError):
        number = float("nan")
    if not math.isfinite(number):
        raise MotionError(f"must be a finite number, got {value!r:.40}", source=source, field=name)
    return number


@dataclass
class Motion:
    """A human motion as MTVCrafter consumes it.

    Attributes:
        joints: ``(T, 24, 3)`` float32, millimetres, camera space with OpenCV axes
            (x right, y down, z forward), SMPL-24 joint order.
        fps: frames per second of the samples.
        image_size: ``(H, W)`` of the source video the camera belongs to, if known.
        fov_deg: field of view across the larger image side.
        frame_start: the Blender frame of the first sample, if the motion came from a scene.
        rotations: optional ``(T, 24, 4)`` quaternions (w, x, y, z), each joint's rotation relative
            to its parent (the root's relative to the camera), for ``rest_offsets``.
        root_translation: optional ``(T, 3)`` root (pelvis) position, millimetres, camera space.
        rest_offsets: optional ``(24, 3)`` rest skeleton (offset of each joint from its parent, mm,
            body frame: Y up, facing +Z, left +X) that ``rotations`` pose.
        betas: optional SMPL shape coefficients.
        frame_valid: optional ``(T,)`` bool, False where the frame was not observed but filled in (e.g. a video
            frame in which the performer was not detected: its joints are interpolated).
        joint_uncertainty: optional ``(T, 24)`` float32, the estimator's per-joint uncertainty (mm) where the
            joints came from a pose estimator (NLF).
        name: a short label (clip name).
        source: where it was read from, for messages.
        source_format: ``"official-pkl"``, ``"mtvcrafter-npz"``, ``"amass-npz"``, ``"bvh"`` or ``"array"``.
        notes: facts about how it was made that a user should know (e.g. which skeleton was used).
        metadata: fields of the source file kept for writing it back (e.g. ``video_path``).
    """

    joints: np.ndarray
    fps: float = 30.0
    image_size: tuple[int, int] | None = None
    fov_deg: float = DEFAULT_FOV_DEG
    frame_start: int | None = None
    rotations: np.ndarray | None = None
    root_translation: np.ndarray | None = None
    rest_offsets: np.ndarray | None = None
    betas: np.ndarray | None = None
    frame_valid: np.ndarray | None = None
    joint_uncertainty: np.ndarray | None = None
    name: str = ""
    source: str | None = None
    source_format: str = "array"
    notes: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        src = self.source
        joints = np.asarray(self.joints)
        if joints.dtype.kind not in "fiu":
            raise MotionError(f"joints must be numbers, got dtype {joints.dtype}", source=src, field="joints")
        if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3):
            raise MotionError(
                f"expected shape (frames, 24, 3), got {joints.shape}; MTVCrafter motion has the 24 SMPL joints "
                "per frame in millimetres",
                source=src,
                field="joints",
            )
        if joints.shape[0] < 1:
            raise MotionError("the motion has no frames", source=src, field="joints")
        if joints.shape[0] > MAX_FRAMES:
            raise MotionError(
                f"{joints.shape[0]:,} frames is more than the {MAX_FRAMES:,} accepted; split the motion",
                source=src,
                field="joints",
            )
        with np.errstate(over="ignore"):  # beyond float32's range is as unusable as infinite: said so below
            joints = np.ascontiguousarray(joints, dtype=np.float32)
        bad = ~np.isfinite(joints).all(axis=(1, 2))
        if bad.any():
            frames = np.flatnonzero(bad)
            listed = ", ".join(str(i) for i in frames[:10]) + (" …" if len(frames) > 10 else "")
            raise MotionError(
                f"{len(frames)} frame(s) hold NaN or infinite values (frames {listed}); fill or trim them before use",
                source=src,
                field="joints",
            )
        self.joints = joints
        sample = self.joints[:: max(1, len(self.joints) // 1000)]  # a median needs no more than ~1000 frames
        typical = float(np.median(bone_lengths(sample.astype(np.float64))[:, 1:]))
        low, high = PLAUSIBLE_BONE_MM
        if not low <= typical <= high:
            raise MotionError(
                f"median bone length is {typical:.4g}, expected millimetres ({low:g}–{high:g}); "
                f"{millimetre_hint(typical)}",
                source=src,
                field="joints",
            )
        fps = _number(self.fps, src, "fps")
        if not 0 < fps <= 1000:
            raise MotionError(f"must be between 0 and 1000, got {fps:g}", source=src, field="fps")
        self.fps = fps
        if self.image_size is not None:
            size = np.asarray(self.image_size).reshape(-1)
            if (
                size.dtype.kind not in "fiu"
                or size.shape != (2,)
                or not np.isfinite(size).all()
                or (size != np.round(size)).any()
                or size.min() < 1
                or size.max() > 65536
            ):
                raise MotionError(
                    f"must be (height, width) in whole pixels, got {self.image_size!r:.40}",
                    source=src,
                    field="image_size",
                )
            self.image_size = (int(size[0]), int(size[1]))
        fov = _number(self.fov_deg, src, "fov_deg")
        if not 1.0 <= fov <= 179.0:
            raise MotionError(f"must be between 1 and 179 degrees, got {fov:g}", source=src, field="fov_deg")
        self.fov_deg = fov
        if self.frame_start is not None:
            start = _number(self.frame_start, src, "frame_start")
            if start != round(start) or abs(start) > 1_048_574:  # Blender's frame range
                raise MotionError(
                    f"must be a whole Blender frame number, got {start:g}", source=src, field="frame_start"
                )
            self.frame_start = int(start)
        n = self.num_frames
        self.rotations = self._optional(self.rotations, (n, NUM_JOINTS, 4), "rotations")
        self.root_translation = self._optional(self.root_translation, (n, 3), "root_translation")
        self.rest_offsets = self._optional(self.rest_offsets, (NUM_JOINTS, 3), "rest_offsets")
        if self.betas is not None:
            self.betas = self._optional(self.betas, (int(np.asarray(self.betas).size),), "betas")
        if self.frame_valid is not None:
            valid = np.asarray(self.frame_valid)
            if valid.shape != (n,) or valid.dtype.kind not in "biu" or not np.isin(valid, (0, 1)).all():
                raise MotionError(
                    f"expected {n} values of 0 or 1 (one per frame), got shape {valid.shape}",
                    source=src,
                    field="frame_valid",
                )
            self.frame_valid = np.ascontiguousarray(valid, dtype=bool)
        self.joint_uncertainty = self._optional(self.joint_uncertainty, (n, NUM_JOINTS), "joint_uncertainty")
        self.notes = tuple(self.notes)

    def _optional(self, value: Any, shape: tuple[int, ...], name: str) -> np.ndarray | None:
        if value is None:
            return None
        array = np.asarray(value)
        if array.dtype.kind not in "fiu" or array.shape != shape:
            raise MotionError(f"expected shape {shape}, got {array.shape}", source=self.source, field=name)
        if not np.isfinite(array).all():
            raise MotionError("holds NaN or infinite values", source=self.source, field=name)
        return np.ascontiguousarray(array, dtype=np.float32)

    @property
    def num_frames(self) -> int:
        return int(self.joints.shape[0])

    @property
    def duration(self) -> float:
        """Seconds covered by the samples (frames / fps)."""
        return self.num_frames / self.fps

    @property
    def camera_image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the camera the joints are expressed in (a square when unknown)."""
        return self.image_size or DEFAULT_IMAGE_SIZE

    def quality(self) -> QualityReport:
        """Plausibility checks (stature, upright, left/right, handedness, feet, unit):
        :func:`~mtvcrafter.motion.quality.check_quality`."""
        return check_quality(self)

    def warnings(self) -> list[str]:
        """Things that make the motion unlikely to render well, in plain words (empty when fine): joints behind
        the camera, and the warnings of :meth:`quality` (a wrong up axis, unit or bone map)."""
        out = []
        depth = self.joints[:, :, 2]
        behind = np.flatnonzero((depth <= 0).any(axis=1))
        if len(behind):
            out.append(
                f"{len(behind)} frame(s) have joints at or behind the camera (first: frame {behind[0]}); "
                "the person must stand in front of the camera"
            )
        out.extend(self.quality().warnings)
        return out

    @property
    def valid_fraction(self) -> float:
        """The share of frames observed (1.0 when the motion has no per-frame valid mask)."""
        return 1.0 if self.frame_valid is None else float(self.frame_valid.mean())

    def with_joints(self, joints: np.ndarray, **changes: Any) -> Motion:
        """A copy with new joints; rotation data no longer matching them is dropped, and the per-frame valid mask
        and uncertainties too when the number of frames changes."""
        same_frames = np.shape(joints)[:1] == (self.num_frames,)
        changes.setdefault("frame_valid", self.frame_valid if same_frames else None)
        changes.setdefault("joint_uncertainty", self.joint_uncertainty if same_frames else None)
        return replace(self, joints=joints, rotations=None, root_translation=None, rest_offsets=None, **changes)

    def slice(self, start: int, stop: int | None = None) -> Motion:
        """Frames ``[start, stop)`` as a new motion (``frame_start`` moves with them)."""
        stop = self.num_frames if stop is None else stop
        if not 0 <= start < stop <= self.num_frames:
            raise MotionError(
                f"frame range [{start}, {stop}) is outside the motion's {self.num_frames} frames",
                source=self.source,
                field="frames",
            )

        def cut(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[start:stop]

        return replace(
            self,
            joints=self.joints[start:stop],
            rotations=cut(self.rotations),
            root_translation=cut(self.root_translation),
            frame_valid=cut(self.frame_valid),
            joint_uncertainty=cut(self.joint_uncertainty),
            frame_start=None if self.frame_start is None else self.frame_start + start,
        )
