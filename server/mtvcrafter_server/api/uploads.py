"""Reading what clients upload, within bounds: motion (our .npz or JSON, never a pickle), the reference
image (header checked before any pixel is decoded), and the job parameters; storing a job's inputs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image
from pydantic import ValidationError

from mtvcrafter.backends import Backend, RenderSettings, SettingsError
from mtvcrafter.motion import Motion, MotionError, save_motion
from mtvcrafter.motion.npz import read_npz
from mtvcrafter.render import flatten_reference

from ..jobs.params import JobParams
from .errors import ApiError

IMAGE_FORMATS = {"PNG", "JPEG", "WEBP", "BMP"}


def parse_params(text: str | None) -> JobParams:
    if not text:
        return JobParams()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(422, "invalid_params", f"params is not JSON: {exc}", field="params") from None
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_params", "params must be a JSON object", field="params")
    try:
        return JobParams(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ApiError(422, "invalid_params", f"params.{where}: {first['msg']}", field=f"params.{where}") from None


def read_motion(data: bytes, filename: str, workdir: Path, max_frames: int) -> Motion:
    """A motion from our ``.npz`` (``allow_pickle=False``) or JSON ``{"joints": [[[x, y, z] × 24] × T], "fps": …}``."""
    name = (filename or "").lower()
    if not data:
        raise ApiError(422, "invalid_motion", "the motion file is empty", field="motion")
    if data[:1] == b"\x80" or name.endswith((".pkl", ".pickle", ".pt")):
        raise ApiError(
            415,
            "unsupported_motion",
            "pickled motion files are not accepted by the server (unpickling runs code); convert it first: "
            "mtvcrafter motion convert IN.pkl OUT.npz",
            field="motion",
        )
    if data[:2] == b"PK":
        _check_zip(data, max_frames)
        path = workdir / "upload.npz"
        path.write_bytes(data)
        try:
            motion = read_npz(path)
        except MotionError as exc:
            message = str(exc).replace(str(path), "motion.npz")
            raise ApiError(422, "invalid_motion", message, field=f"motion.{exc.field or 'file'}") from None
        finally:
            path.unlink(missing_ok=True)
    elif data.lstrip()[:1] == b"{":
        motion = _motion_from_json(data)
    else:
        raise ApiError(
            415,
            "unsupported_motion",
            "the motion must be our .npz or JSON (pickles are not accepted; convert "
            "with: mtvcrafter motion convert IN OUT.npz)",
            field="motion",
        )
    if motion.num_frames > max_frames:
        raise ApiError(
            413,
            "motion_too_long",
            f"the motion has {motion.num_frames} frames; this server takes at most {max_frames}",
            field="motion.joints",
        )
    return motion


def _check_zip(data: bytes, max_frames: int) -> None:
    """Refuse an .npz whose members would expand beyond what ``max_frames`` of motion can need
    (a compressed file can declare gigabytes of zeros), from the zip directory alone."""
    import zipfile

    # joints float32, rotations up to float64 (T, 24, 4), root translation, small fields: generous bound
    budget = max_frames * 24 * 4 * 8 * 2 + (1 << 20)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ApiError(
            422, "invalid_motion", f"the motion .npz is not a valid zip file ({exc})", field="motion"
        ) from None
    total = sum(m.file_size for m in members)
    if len(members) > 64 or total > budget:
        raise ApiError(
            413,
            "motion_too_large",
            f"the motion .npz expands to {total:,} bytes in {len(members)} "
            f"member(s); this server reads at most {budget:,}",
            field="motion",
        )


def _motion_from_json(data: bytes) -> Motion:
    try:
        obj = json.loads(data)
    except RecursionError:
        raise ApiError(422, "invalid_motion", "motion JSON is nested too deeply", field="motion") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(422, "invalid_motion", f"motion JSON: {exc}", field="motion") from None
    if not isinstance(obj, dict) or "joints" not in obj:
        raise ApiError(
            422, "invalid_motion", 'motion JSON needs "joints": [[[x, y, z] × 24] × T] (mm)', field="motion.joints"
        )
    try:
        joints = np.asarray(obj["joints"], dtype=np.float32)
        fps = float(obj.get("fps", 30.0))
        if not isinstance(obj["joints"], list) or len(obj["joints"]) > 1_000_000:
            raise ApiError(422, "invalid_motion", "motion.joints must be a list of frames", field="motion.joints")
        frame_start = obj.get("frame_start")
        return Motion(
            joints=joints,
            fps=fps,
            frame_start=None if frame_start is None else int(frame_start),
            name=str(obj.get("name", "motion")),
            source="upload",
            source_format="array",
        )
    except MotionError as exc:
        raise ApiError(422, "invalid_motion", f"motion: {exc}", field=f"motion.{exc.field or 'joints'}") from None
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise ApiError(
            422, "invalid_motion", f"motion.joints: {type(exc).__name__}: {exc}"[:300], field="motion.joints"
        ) from None


def read_image(data: bytes, max_pixels: int) -> Image.Image:
    """The reference image as RGB, its size checked from the header before any decoding."""
    if not data:
        raise ApiError(422, "invalid_image", "the reference image is empty", field="reference")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:  # Pillow's own guard fires on the header for huge sizes
        raise ApiError(413, "image_too_large", f"the reference image is too large ({exc})", field="reference") from None
    except (OSError, ValueError) as exc:
        raise ApiError(
            415, "unsupported_image", f"the reference is not a readable image ({exc})", field="reference"
        ) from None
    if image.format not in IMAGE_FORMATS:
        raise ApiError(
            415,
            "unsupported_image",
            f"reference images must be PNG, JPEG, WebP or BMP, got {image.format}",
            field="reference",
        )
    width, height = image.size
    if width * height > max_pixels or max(width, height) > 16384:
        raise ApiError(
            413,
            "image_too_large",
            f"the reference image is {width}×{height}; this server takes at most "
            f"{max_pixels:,} pixels and 16384 per side",
            field="reference",
        )
    try:
        image.load()
        return flatten_reference(image)  # as every render path sees it: transparency over white
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ApiError(422, "invalid_image", f"the reference image is damaged ({exc})", field="reference") from None


def store_inputs(folder: Path, motion: Motion, image: Image.Image) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_motion(motion, folder / "motion.npz")
    image.save(folder / "reference.png")


def output_size(backend: Backend, settings: RenderSettings, image, max_side: int) -> tuple[int, int]:
    """The video's ``(width, height)`` for this reference (a backend may derive a side from its aspect),
    refused as 422 beyond this server's limit."""
    try:
        width, height = backend.output_size(settings, image)
    except SettingsError as exc:
        raise ApiError(422, "invalid_params", f"params.{exc}", field=f"params.{exc.field}") from None
    if max(width, height) > max_side:
        raise ApiError(
            422,
            "invalid_params",
            f"params.width/height: the video would be {width}x{height}, over this server's {max_side} pixels",
            field="params.width",
        )
    return width, height


def check_settings(backend: Backend, settings: RenderSettings, max_side: int) -> None:
    """Refuse, as 422 naming the param, what the backend cannot render or this server does not take."""
    if max(settings.width or 0, settings.height or 0) > max_side:
        raise ApiError(
            422,
            "invalid_params",
            f"params.width/height: at most {max_side} pixels on this server",
            field="params.width",
        )
    try:
        backend.check(settings)
    except SettingsError as exc:
        raise ApiError(422, "invalid_params", f"params.{exc}", field=f"params.{exc.field}") from None
