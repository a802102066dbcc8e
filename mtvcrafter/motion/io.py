"""Reading and writing motion files, whatever their format."""

from __future__ import annotations

from pathlib import Path

from .amass import is_amass, read_amass
from .bone_maps import BoneMap
from .bvh_motion import motion_from_bvh
from .camera import CameraFile, CameraPlacement
from .errors import MotionError
from .motion import Motion
from .npz import is_our_npz, read_npz, write_npz
from .npz_archive import NpzArchive, list_names
from .official import PICKLE_LAYOUTS, read_official_pickle, write_official_pickle

PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth")
READABLE = "official motion pickle (.pkl), our motion .npz, AMASS/SMPL parameters .npz, BVH mocap (.bvh)"


def load_motions(
    path: str | Path,
    *,
    fps: float | None = None,
    body_model: str | Path | None = None,
    bone_map: str | BoneMap | None = None,
    unit: str | float | None = None,
    camera: CameraPlacement | CameraFile | str | Path | None = None,
    up: str | None = None,
) -> list[Motion]:
    """Every clip in a motion file.

    Args:
        path: an official pickle (``.pkl``; every clip), our ``.npz``, an AMASS ``.npz`` or a ``.bvh``.
        fps: frame rate for files that do not store one (30 otherwise; BVH files always store one).
        body_model: SMPL/SMPL-H/SMPL-X model ``.npz`` (or a folder of them) for exact AMASS joints.
        bone_map, unit, camera, up: BVH only (see :func:`~mtvcrafter.motion.bvh_motion.motion_from_bvh`):
            the bone map (id, ``"auto"``, a BoneMap or a bone-map ``.json`` path; default auto), the file's
            unit (default: detected), the camera (a placement or a camera JSON file; default: one in front
            of the performer) and the file's up axis (default: the bone map's, unless the skeleton clearly
            stands along another).
    """
    path = Path(path)
    if not path.is_file():
        raise MotionError("no such file" if not path.exists() else "not a file", source=str(path))
    suffix = path.suffix.lower()
    if suffix == ".bvh":
        return [motion_from_bvh(path, bone_map=bone_map, unit=unit, camera=camera, up=up)]
    for name, value in (("bone_map", bone_map), ("unit", unit), ("camera", camera), ("up", up)):
        if value is not None:
            raise MotionError(
                f"applies to BVH files only (this is a '{path.suffix}' file)", source=str(path), field=name
            )
    if suffix in PICKLE_SUFFIXES:
        return read_official_pickle(path, fps=fps)
    if suffix == ".npz":
        with NpzArchive(path) as data:
            keys = set(data.files)
            if is_our_npz(keys):
                return [read_npz(path, data)]
            if is_amass(keys):
                return [read_amass(path, data, body_model=body_model, fps=fps)]
        raise MotionError(
            f"an .npz with neither our motion fields (format, joints) nor AMASS fields (poses, trans); "
            f"it has: {list_names(keys)}",
            source=str(path),
        )
    raise MotionError(f"unknown motion file type '{path.suffix}'; readable: {READABLE}", source=str(path))


def load_motion(path: str | Path, clip: int = 0, **options: object) -> Motion:
    """One clip of a motion file (the first by default); see :func:`load_motions` for ``options``."""
    motions = load_motions(path, **options)  # type: ignore[arg-type]
    if not -len(motions) <= clip < len(motions):
        raise MotionError(
            f"clip {clip} requested but the file holds {len(motions)} clip(s) (0–{len(motions) - 1})",
            source=str(path),
            field="clip",
        )
    return motions[clip]


def save_motion(motion: Motion, path: str | Path, *, layout: str = "array") -> None:
    """Write a motion as our ``.npz`` or, for ``.pkl``, in the official pickle layout (``layout``: see
    :func:`save_motions`)."""
    save_motions([motion], path, layout=layout)


def save_motions(motions: list[Motion], path: str | Path, *, layout: str = "array") -> None:
    """Write motions: several clips only fit an official ``.pkl``; ``.npz`` holds one.

    ``layout`` (``.pkl`` only): ``"array"``, a ``(T, 24, 3)`` array per clip as in the released sample file, or
    ``"per-frame"``, a ``(1, 24, 3)`` array per frame as the official extraction script writes.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        raise MotionError("is a folder; give a file name such as motion.npz", source=str(path))
    if layout not in PICKLE_LAYOUTS:
        raise MotionError(f"unknown layout {layout!r}; choose {' or '.join(PICKLE_LAYOUTS)}", field="layout")
    if layout != "array" and suffix not in (".pkl", ".pickle"):
        raise MotionError(
            f"the {layout} layout is the official pickle's; write a .pkl, or leave the layout out",
            source=str(path),
            field="layout",
        )
    if suffix in (".npz", ".pkl", ".pickle"):
        path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npz":
        if len(motions) != 1:
            raise MotionError(
                f"an .npz holds one motion, got {len(motions)}; write a .pkl for several", source=str(path)
            )
        write_npz(motions[0], path)
    elif suffix in (".pkl", ".pickle"):
        write_official_pickle(motions, path, layout=layout)
    else:
        raise MotionError(
            f"cannot write '{path.suffix}' files; use .npz (ours) or .pkl (official layout)", source=str(path)
        )
