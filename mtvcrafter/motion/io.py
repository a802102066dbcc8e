"""Reading and writing motion files, whatever their format."""

from __future__ import annotations

from pathlib import Path

from .amass import is_amass, read_amass
from .bone_maps import BoneMap
from .bvh_motion import motion_from_bvh
from .camera import CameraFile, CameraPlacement
from .errors import MotionError
from .joint_positions import read_joints_npy, read_npy_header
from .mdm import read_mdm_results
from .motion import Motion
from .npz import is_our_npz, read_npz, write_npz
from .npz_archive import NpzArchive, list_names
from .official import PICKLE_LAYOUTS, read_official_pickle, write_official_pickle
from .safe_pickle import safe_load_pickle
from .smpl_params import read_smpl_parameters, smpl_parameter_kind

PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth")
READABLE = (
    "official motion pickle (.pkl), our motion .npz, AMASS/SMPL parameters .npz, AIST++/SMPL parameters .pkl, "
    "joint positions .npy (HumanML3D), MDM results.npy, BVH mocap (.bvh)"
)
#: The options that apply to some formats only: which (in words), and the suffixes they may have.
_ONLY_FOR = {
    "bone_map": ("BVH files", (".bvh",)),
    "camera": ("BVH files", (".bvh",)),
    "unit": ("BVH and joint-position .npy files", (".bvh", ".npy")),
    "up": ("BVH, joint-position .npy and SMPL parameter files", (".bvh", ".npy", ".npz", *PICKLE_SUFFIXES)),
}


def _refuse_up(up: str | None, path: Path, what: str) -> None:
    if up is not None:
        raise MotionError(f"applies to {_ONLY_FOR['up'][0]} only (this is {what})", source=str(path), field="up")


def _refuse_body_model(body_model: str | Path | None, path: Path, what: str) -> None:
    """A body model gives exact joints of SMPL parameters; any other file has its joints already."""
    if body_model is not None:
        raise MotionError(
            f"applies to SMPL parameter files only (AMASS, AIST++, fitting outputs); this is {what}, whose joints "
            "it already holds",
            source=str(path),
            field="body_model",
        )


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
        path: an official pickle (``.pkl``; every clip), our ``.npz``, an AMASS ``.npz``, SMPL parameters
            (AIST++ ``.pkl``, fitting outputs ``.pkl``/``.npz``), joint positions ``.npy``, MDM's ``results.npy``
            (every sample) or a ``.bvh``. Pickles and ``.npy`` files are told apart by what they hold.
        fps: frame rate for files that do not store one (official pickle 30, AIST++ 60, joint positions and MDM
            20, other SMPL parameters 30; BVH files always store one).
        body_model: SMPL/SMPL-H/SMPL-X model ``.npz`` (or a folder of them) for exact joints of SMPL parameters.
        bone_map, camera: BVH only (see :func:`~mtvcrafter.motion.bvh_motion.motion_from_bvh`): the bone map
            (id, ``"auto"``, a BoneMap or a bone-map ``.json`` path; default auto) and the camera (a placement or
            a camera JSON file; default: one in front of the performer).
        unit: BVH and joint positions (``.npy``, MDM): the file's unit (default: detected from the skeleton's
            size — the bone map's for BVH, metres for HumanML3D).
        up: BVH, joint positions and SMPL parameters: the file's up axis (default: the format's — the bone
            map's, Y for joints and AIST++, Z for AMASS — unless the skeleton clearly stands along another;
            AMASS and AIST++ worlds are taken as they are).
    """
    path = Path(path)
    if not path.is_file():
        raise MotionError("no such file" if not path.exists() else "not a file", source=str(path))
    suffix = path.suffix.lower()
    if suffix == ".bvh":
        _refuse_body_model(body_model, path, "a BVH file")
        return [motion_from_bvh(path, bone_map=bone_map, unit=unit, camera=camera, up=up)]
    for name, value in (("bone_map", bone_map), ("unit", unit), ("camera", camera), ("up", up)):
        formats, suffixes = _ONLY_FOR[name]
        if value is not None and suffix not in suffixes:
            raise MotionError(
                f"applies to {formats} only (this is a '{path.suffix}' file)", source=str(path), field=name
            )
    if suffix == ".npy":
        _refuse_body_model(body_model, path, "a joint-position .npy file")
        header = read_npy_header(path)
        if header.dtype.hasobject:
            return read_mdm_results(path, header, fps=fps, unit=unit, up=up)
        return [read_joints_npy(path, header, fps=fps, unit=unit, up=up)]
    if suffix in PICKLE_SUFFIXES:
        data = safe_load_pickle(path)
        if isinstance(data, dict) and smpl_parameter_kind(data) is not None:
            return [read_smpl_parameters(path, data, body_model=body_model, fps=fps, up=up)]
        if isinstance(data, dict) and "pose" not in data:
            found = list_names([str(k) for k in data])
            raise MotionError(
                f"a pickle with neither the official motion fields (pose, video_path …) nor SMPL parameters "
                f"(smpl_poses, global_orient + body_pose, poses + trans); it has: {found}; readable: {READABLE}",
                source=str(path),
            )
        _refuse_up(up, path, "an official motion pickle")
        _refuse_body_model(body_model, path, "an official motion pickle")
        return read_official_pickle(path, fps=fps, data=data)
    if suffix == ".npz":
        with NpzArchive(path) as data:
            keys = set(data.files)
            if is_our_npz(keys):
                _refuse_up(up, path, "our motion .npz")
                _refuse_body_model(body_model, path, "our motion .npz")
                return [read_npz(path, data)]
            if is_amass(keys):
                return [read_amass(path, data, body_model=body_model, fps=fps, up=up)]
            if smpl_parameter_kind(keys) is not None:
                return [read_smpl_parameters(path, data, body_model=body_model, fps=fps, up=up)]
        raise MotionError(
            f"an .npz with neither our motion fields (format, joints) nor SMPL parameters (AMASS poses + trans, "
            f"smpl_poses, global_orient + body_pose); it has: {list_names(keys)}",
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
