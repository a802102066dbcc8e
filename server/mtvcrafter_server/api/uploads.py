"""Reading what clients upload, within bounds: motion (our .npz or JSON, never a pickle), the reference
image (header checked before any pixel is decoded), and the job parameters; storing a job's inputs."""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ValidationError

from mtvcrafter.backends import Backend, RenderSettings, SettingsError
from mtvcrafter.motion import Motion, MotionError, save_motion
from mtvcrafter.motion.errors import MotionLimitError
from mtvcrafter.motion.json_motion import MAX_NAME_CHARS, read_json_motion
from mtvcrafter.motion.npz import read_npz
from mtvcrafter.motion.npz_archive import NpzArchive, one_line
from mtvcrafter.render import flatten_reference
from mtvcrafter.render.preview import DAMAGED_IMAGE

from ..jobs.params import JobParams
from .errors import ApiError

IMAGE_FORMATS = {"PNG", "JPEG", "WEBP", "BMP"}


def parse_params(text: str | None, model: type[BaseModel] = JobParams) -> BaseModel:
    """The ``params`` form field (JSON) as ``model`` (a render's :data:`JobParams` by default); 422 naming the
    field at fault."""
    if not text:
        return model()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(422, "invalid_params", f"params is not JSON: {exc}", field="params") from None
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_params", "params must be a JSON object", field="params")
    try:
        return model(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(["params", *(str(p) for p in first["loc"])])
        message = first["msg"].removeprefix("Value error, ")  # a check of the whole model says what it is
        raise ApiError(422, "invalid_params", f"{where}: {message}", field=where) from None


#: Most bytes of a motion's notes and source fields (the ``info`` of the stored ``motion.npz``) a job may carry.
MAX_INFO_BYTES = 64 * 2**10
#: What a damaged image makes Pillow raise (the renderer's list), and a decompression bomb.
_DAMAGED_IMAGE = (*DAMAGED_IMAGE, Image.DecompressionBombError)


def read_motion(data: bytes, filename: str, workdir: Path, max_frames: int) -> Motion:
    """A motion from our ``.npz`` (never a pickle) or JSON ``{"joints": [[[x, y, z] × 24] × T], "fps": …}``
    (:mod:`mtvcrafter.motion.json_motion`, read as it streams), every field checked; refused as 413 beyond
    ``max_frames``, 415 in another format, 422 naming the field otherwise. Nothing is written (``workdir`` is
    not used), and no message holds a path of this server."""
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
    try:
        if data[:2] == b"PK":
            _check_zip(data, max_frames)
            with NpzArchive(data, source="motion.npz") as archive:
                motion = read_npz("motion.npz", archive)
        elif data.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] == b"{":
            motion = read_json_motion(data, source="motion.json", max_frames=max_frames)
        else:
            raise ApiError(
                415,
                "unsupported_motion",
                "the motion must be our .npz or JSON (pickles are not accepted; convert "
                "with: mtvcrafter motion convert IN OUT.npz)",
                field="motion",
            )
    except MotionLimitError:
        raise _too_long(f"more than {max_frames}", max_frames) from None
    except MotionError as exc:
        raise ApiError(
            422, "invalid_motion", str(exc), field=f"motion.{exc.field}" if exc.field else "motion"
        ) from None
    if motion.num_frames > max_frames:
        raise _too_long(str(motion.num_frames), max_frames)
    _check_storable(motion)
    return motion


def _too_long(frames: str, max_frames: int) -> ApiError:
    return ApiError(
        413,
        "motion_too_long",
        f"the motion has {frames} frames; this server takes at most {max_frames}",
        field="motion.joints",
    )


def _check_storable(motion: Motion) -> None:
    """Refuse, at submit, what the job's stored ``motion.npz`` could not be read back with (a name or notes
    beyond what a motion file holds), so that a job never fails later for its input."""
    if len(motion.name) > MAX_NAME_CHARS:
        raise ApiError(
            422,
            "invalid_motion",
            f"motion: the name has {len(motion.name):,} characters; at most {MAX_NAME_CHARS}",
            field="motion.name",
        )
    info = json.dumps([motion.notes, motion.metadata], ensure_ascii=False, default=str)
    if len(info.encode()) > MAX_INFO_BYTES:
        raise ApiError(
            422,
            "invalid_motion",
            f"motion: its notes and source fields (info) take {len(info.encode()):,} bytes; at most {MAX_INFO_BYTES:,}",
            field="motion.info",
        )


def _check_zip(data: bytes, max_frames: int) -> None:
    """Refuse an .npz whose members would expand beyond what ``max_frames`` of motion can need
    (a compressed file can declare gigabytes of zeros), from the zip directory alone."""
    # joints float32, rotations up to float64 (T, 24, 4), root translation, small fields: generous bound
    budget = max_frames * 24 * 4 * 8 * 2 + (1 << 20)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError, struct.error) as exc:
        raise ApiError(
            422, "invalid_motion", f"motion.npz: not a readable .npz file: {one_line(exc)}", field="motion"
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


def read_image(data: bytes, max_pixels: int) -> Image.Image:
    """The reference image as RGB (PNG, JPEG, WebP or BMP; no other decoder is tried), its size checked from
    the header before any decoding."""
    if not data:
        raise ApiError(422, "invalid_image", "the reference image is empty", field="reference")
    accepted = "PNG, JPEG, WebP or BMP"
    try:
        image = Image.open(io.BytesIO(data), formats=sorted(IMAGE_FORMATS))
    except Image.DecompressionBombError:  # Pillow's own guard fires on the header for huge sizes
        raise ApiError(
            413, "image_too_large", f"the reference image declares more than {max_pixels:,} pixels", field="reference"
        ) from None
    except UnidentifiedImageError:
        raise ApiError(
            415, "unsupported_image", f"the reference is not an image this server reads ({accepted})", field="reference"
        ) from None
    except _DAMAGED_IMAGE as exc:
        raise ApiError(
            415,
            "unsupported_image",
            f"the reference is not a readable {accepted} image: {one_line(exc)}",
            field="reference",
        ) from None
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
    except _DAMAGED_IMAGE as exc:
        raise ApiError(
            422, "invalid_image", f"the reference {image.format} image is damaged: {one_line(exc)}", field="reference"
        ) from None


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
