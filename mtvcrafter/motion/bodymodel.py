"""Rest skeletons for SMPL-family parameters: the licensed body-model files, or the built-in one.

The joints of SMPL, SMPL-H and SMPL-X depend on the body shape only through
``J = J_regressor @ (v_template + shapedirs @ betas)``; posing then moves them by forward
kinematics alone (pose blend shapes change the surface, not the joints). So the exact joints need
just those three arrays, read here in numpy from the body-model ``.npz`` files distributed by the
SMPL/SMPL-H/SMPL-X websites (not included: they are licensed separately).
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import MotionError
from .skeleton import NEUTRAL_REST_JOINTS_M, PARENTS

#: Index of the joint used as SMPL's hand joint in each family (the middle finger's first joint
#: for models with articulated hands, whose parent is the wrist like SMPL's hand).
_HAND_JOINTS = {"smpl": (22, 23), "smplh": (25, 40), "smplx": (28, 43)}
_FAMILIES = {24: "smpl", 52: "smplh", 55: "smplx"}


@dataclass(frozen=True)
class RestSkeleton:
    """SMPL-24 rest joint positions ``(24, 3)`` in metres (body frame, Y up) and what they came from."""

    joints_m: np.ndarray
    description: str
    family: str | None = None  # "smpl", "smplh" or "smplx" for a body-model file


def neutral_skeleton() -> RestSkeleton:
    return RestSkeleton(
        NEUTRAL_REST_JOINTS_M.copy(),
        "the built-in neutral skeleton (average proportions; body shape ignored)",
    )


def _words(path: Path) -> list[str]:
    return re.split(r"[^a-z0-9]+", path.as_posix().lower())


def find_body_model_file(location: str | Path, gender: str, family: str | None = None) -> Path:
    """The model file for ``gender`` in a folder of body models (or ``location`` itself if a file),
    preferring files of ``family`` ("smpl", "smplh", "smplx") where the folder holds several."""
    location = Path(location)
    if location.is_file():
        return location
    if not location.is_dir():
        raise MotionError("no such file or folder", source=str(location), field="body_model")
    files = sorted(location.rglob("*.npz"))

    def named(word: str) -> list[Path]:
        # Whole words of the path below the folder: 'male' must not match 'female'.
        return [p for p in files if word in _words(p.relative_to(location))]

    candidates = named(gender.lower())
    if not candidates and gender != "neutral":
        candidates = named("neutral")
    if family is not None:
        candidates = sorted(candidates, key=lambda p: family not in _words(p.relative_to(location)))
    if not candidates:
        found = ", ".join(p.relative_to(location).as_posix() for p in files[:8]) or "no .npz files"
        raise MotionError(
            f"no body model for gender '{gender}' (looked for .npz files whose path contains '{gender}'; "
            f"found: {found})",
            source=str(location),
            field="body_model",
        )
    return candidates[0]


def load_body_model_skeleton(path: str | Path, betas: np.ndarray | None) -> RestSkeleton:
    """Exact SMPL-24 rest joints of a licensed SMPL / SMPL-H / SMPL-X ``.npz`` model for ``betas``."""
    source = str(path)
    try:
        model = np.load(path, allow_pickle=False)
        arrays = {k: np.asarray(model[k]) for k in ("J_regressor", "v_template", "shapedirs", "kintree_table")}
    except KeyError as exc:
        raise MotionError(
            f"not a body-model file: {exc.args[0]} is missing", source=source, field="body_model"
        ) from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise MotionError(
            f"cannot read the body model ({exc}); use the .npz release of SMPL/SMPL-H/SMPL-X",
            source=source,
            field="body_model",
        ) from None
    regressor = arrays["J_regressor"].astype(np.float64)
    template = arrays["v_template"].astype(np.float64)
    shapedirs = arrays["shapedirs"].astype(np.float64)
    family = _FAMILIES.get(regressor.shape[0])
    if family is None or regressor.shape[1] != template.shape[0]:
        raise MotionError(
            f"unexpected J_regressor of shape {regressor.shape} for {template.shape[0]} vertices",
            source=source,
            field="body_model",
        )
    parents = arrays["kintree_table"][0].astype(np.int64)
    if list(parents[1:22]) != list(PARENTS[1:22]):
        raise MotionError("the body model's joint hierarchy is not SMPL's", source=source, field="body_model")
    shaped = template
    used = 0
    betas = None if betas is None else np.asarray(betas, dtype=np.float64).reshape(-1)
    if betas is not None and betas.size:
        used = min(betas.size, shapedirs.shape[-1])
        shaped = template + shapedirs[:, :, :used] @ betas[:used]
    joints = regressor @ shaped
    left_hand, right_hand = _HAND_JOINTS[family]
    rest = np.concatenate([joints[:22], joints[[left_hand, right_hand]]], axis=0)
    return RestSkeleton(
        rest, f"the {family.upper()} body model {Path(path).name} with {used} shape coefficients", family
    )
