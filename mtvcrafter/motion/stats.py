"""Normalisation statistics: per-joint, per-axis mean and standard deviation in millimetres."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import MotionError
from .motion import Motion
from .skeleton import NUM_JOINTS


@dataclass(frozen=True)
class NormStats:
    """``mean`` and ``std``, float32 ``(24, 3)`` mm, camera space. Model input is ``(joints - mean) / std``."""

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            value = np.asarray(getattr(self, name), dtype=np.float32)
            if value.shape != (NUM_JOINTS, 3) or not np.isfinite(value).all():
                raise MotionError(f"expected finite (24, 3) values, got shape {value.shape}", field=name)
            object.__setattr__(self, name, value)
        if (self.std <= 0).any():
            raise MotionError("standard deviations must be positive", field="std")

    @classmethod
    def official(cls) -> NormStats:
        """The statistics published with MTVCrafter (bundled; what the official checkpoints expect)."""
        folder = resources.files("mtvcrafter.motion") / "data"
        with resources.as_file(folder / "mean.npy") as mean, resources.as_file(folder / "std.npy") as std:
            return cls.load(mean, std)

    @classmethod
    def load(cls, mean: str | Path, std: str | Path | None = None) -> NormStats:
        """Load ``mean.npy`` and ``std.npy``; given a folder, both are read from it."""
        mean = Path(mean)
        if std is None:
            if not mean.is_dir():
                raise MotionError("expected a folder holding mean.npy and std.npy", source=str(mean))
            mean, std = mean / "mean.npy", mean / "std.npy"
        values = []
        for path in (mean, Path(std)):
            try:
                value = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise MotionError(f"cannot read statistics ({exc})", source=str(path)) from None
            if value.shape != (NUM_JOINTS, 3) or value.dtype.kind != "f" or not np.isfinite(value).all():
                raise MotionError(f"expected finite (24, 3) floats, got {value.dtype} {value.shape}", source=str(path))
            values.append(value)
        if (values[1] <= 0).any():
            raise MotionError("standard deviations must be positive", source=str(std))
        return cls(values[0], values[1])

    @classmethod
    def compute(cls, motions: Iterable[Motion]) -> NormStats:
        """Statistics over every frame of every motion (float64 accumulation)."""
        count = 0
        total = np.zeros((NUM_JOINTS, 3))
        squares = np.zeros((NUM_JOINTS, 3))
        for motion in motions:
            joints = motion.joints.astype(np.float64)
            count += joints.shape[0]
            total += joints.sum(axis=0)
            squares += (joints**2).sum(axis=0)
        if count == 0:
            raise MotionError("no frames to compute statistics from")
        mean = total / count
        variance = np.maximum(squares / count - mean**2, 0.0)
        return cls(mean, np.sqrt(variance))

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise MotionError("is a file; statistics are written to a folder (mean.npy, std.npy)", source=str(folder))
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "mean.npy", self.mean)
        np.save(folder / "std.npy", self.std)

    def normalize(self, joints_mm: np.ndarray) -> np.ndarray:
        return (np.asarray(joints_mm, dtype=np.float32) - self.mean) / self.std

    def denormalize(self, normalized: np.ndarray) -> np.ndarray:
        return np.asarray(normalized, dtype=np.float32) * self.std + self.mean

    @property
    def joint_offsets_mm(self) -> np.ndarray:
        """Mean joint positions minus their mean over joints, per axis: the 4D rotary positions."""
        return self.mean - self.mean.mean(axis=0, keepdims=True)
