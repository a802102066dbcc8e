"""The preview renderer: the motion's skeleton drawn over the reference image.

It shows, without any model, what motion a job will follow and how it sits over the character.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from ..motion import BONES, SIDES, Motion, project
from .video import RenderError, write_mp4

Placement = Literal["fit", "camera"]

#: Limb colours (RGB) by side of the body: the person's left warm, right cool, midline green.
LEFT_COLOURS = ((255, 80, 40), (255, 150, 30), (255, 210, 60))
RIGHT_COLOURS = ((40, 120, 255), (40, 200, 255), (120, 90, 255))
MIDLINE_COLOUR = (60, 220, 90)
#: A second motion drawn over the first (e.g. the tokenizer's reconstruction), in one colour.
OVERLAY_COLOUR = (255, 255, 255)

#: Largest reference image accepted, in pixels (a guard against decompression bombs).
MAX_IMAGE_PIXELS = 64_000_000


#: What a damaged image file makes Pillow's decoders raise.
DAMAGED_IMAGE = (
    OSError,
    ValueError,
    EOFError,
    SyntaxError,
    struct.error,
    IndexError,
    TypeError,
    ZeroDivisionError,
    KeyError,
    RuntimeError,
)


def _reason(exc: BaseException) -> str:
    """Pillow's message as one short line, without the repr of a file object."""
    text = " ".join(re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "the data", str(exc)).split())
    return (text[:159] + "…" if len(text) > 160 else text) or type(exc).__name__


def open_reference(path: str | Path) -> Image.Image:
    """The reference image file as RGB (:func:`flatten_reference`), or :class:`RenderError` of one line naming
    the file and the problem."""
    path = Path(path)
    try:
        with Image.open(path) as opened:
            if opened.width * opened.height > MAX_IMAGE_PIXELS:
                raise RenderError(
                    f"{path}: the image is {opened.width}x{opened.height}, more than "
                    f"{MAX_IMAGE_PIXELS:,} pixels; scale it down first"
                )
            opened.load()
            return flatten_reference(opened)
    except RenderError:
        raise
    except FileNotFoundError:
        raise RenderError(f"{path}: no such reference image") from None
    except IsADirectoryError:
        raise RenderError(f"{path}: is a folder, not a reference image") from None
    except Image.DecompressionBombError:
        raise RenderError(
            f"{path}: the image declares more than {MAX_IMAGE_PIXELS:,} pixels; scale it down first"
        ) from None
    except UnidentifiedImageError:
        raise RenderError(
            f"{path}: not a readable image: not an image file (reference images are PNG, JPEG, WebP, BMP …)"
        ) from None
    except PermissionError as exc:
        raise RenderError(f"{path}: cannot read the image ({exc.strerror})") from None
    except DAMAGED_IMAGE as exc:
        raise RenderError(f"{path}: not a readable image: the image is damaged ({_reason(exc)})") from None


def flatten_reference(picture: Image.Image) -> Image.Image:
    """``picture`` as RGB, transparency composited over white (every render path sees the same pixels)."""
    if picture.mode in ("RGBA", "LA", "P", "PA"):
        picture = picture.convert("RGBA")
        canvas = Image.new("RGBA", picture.size, (255, 255, 255, 255))
        picture = Image.alpha_composite(canvas, picture)
    return picture.convert("RGB")


def load_reference(image: str | Path | Image.Image | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The reference image as uint8 RGB ``(H, W, 3)`` for an output ``size = (W, H)``: centre-cropped
    to the output's aspect ratio, then resized (transparency is composited over white)."""
    if isinstance(image, np.ndarray):
        picture = Image.fromarray(image)
    elif isinstance(image, Image.Image):
        picture = image
    else:
        picture = open_reference(image)
    picture = flatten_reference(picture)
    left, top, width, height = _centre_crop(picture.width, picture.height, size)
    picture = picture.resize(size, Image.Resampling.LANCZOS, box=(left, top, left + width, top + height))
    return np.asarray(picture)


def _centre_crop(width: int, height: int, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """The largest box of the output's aspect ratio centred in a ``width x height`` image."""
    out_w, out_h = size
    # The limiting side spans the image exactly (no rounding can push the box outside it).
    if width * out_h <= height * out_w:
        crop_w, crop_h = float(width), min(float(height), width * out_h / out_w)
    else:
        crop_w, crop_h = min(float(width), height * out_w / out_h), float(height)
    return max(0.0, (width - crop_w) / 2.0), max(0.0, (height - crop_h) / 2.0), crop_w, crop_h


def screen_points(
    motion: Motion, size: tuple[int, int], placement: Placement = "fit", margin: float = 0.9
) -> np.ndarray:
    """Pixel positions ``(T, 24, 2)`` of the joints in an output of ``size = (W, H)``.

    ``"camera"``: projected by the motion's own camera and mapped like its source video would be
    (centre crop to the output's aspect, then scale), so the skeleton lands where the person stood
    in that video. ``"fit"``: the same projection, then scaled and centred so that the skeleton's
    extent over the whole clip fills ``margin`` of the output — right for a reference image of a
    person standing in the middle of the frame, whatever the source video's framing.
    """
    points = project(motion.joints, motion.camera_image_size, motion.fov_deg)
    out_w, out_h = size
    if placement == "camera":
        height, width = motion.camera_image_size
        left, top, crop_w, crop_h = _centre_crop(width, height, size)
        return (points - np.array([left, top])) * np.array([out_w / crop_w, out_h / crop_h])
    if placement != "fit":
        raise RenderError(f"unknown placement {placement!r}; use 'fit' or 'camera'")
    visible = np.isfinite(points).all(axis=-1).any(axis=-1)  # frames with a joint in front of the camera
    lo = np.full((len(points), 2), np.nan)  # (T, 2) per-frame bounding boxes
    hi = np.full((len(points), 2), np.nan)
    lo[visible] = np.nanmin(points[visible], axis=1)
    hi[visible] = np.nanmax(points[visible], axis=1)
    valid = np.isfinite(lo).all(axis=-1) & np.isfinite(hi).all(axis=-1)
    if not valid.any():
        return points
    # The typical frame sets the mapping, so a few wild frames (a kick, an estimator slip) do not
    # shrink the figure; the body's height sets the scale unless the width would overflow.
    extent = np.maximum(np.median(hi[valid] - lo[valid], axis=0), 1e-6)
    centre = np.median((lo[valid] + hi[valid]) / 2.0, axis=0)
    scale = min(margin * out_h / extent[1], margin * out_w / extent[0])
    return (points - centre) * scale + np.array([out_w / 2.0, out_h / 2.0])


def _bone_colours() -> list[tuple[int, int, int]]:
    colours = []
    for parent, child in BONES:
        side = SIDES[child] or SIDES[parent]
        depth = sum(1 for b in BONES if b[1] in _ancestors(child)) % 3
        colours.append(LEFT_COLOURS[depth] if side > 0 else RIGHT_COLOURS[depth] if side < 0 else MIDLINE_COLOUR)
    return colours


def _ancestors(joint: int) -> list[int]:
    out = []
    while joint > 0:
        joint = [b[0] for b in BONES if b[1] == joint][0]
        out.append(joint)
    return out


def draw_skeleton(canvas: Image.Image, points: np.ndarray, colours: list | None = None, width: int = 4) -> None:
    """Draw one frame's skeleton ``(24, 2)`` on ``canvas``; joints behind the camera are skipped."""
    draw = ImageDraw.Draw(canvas)
    colours = colours or _bone_colours()
    radius = max(2, width)
    for (parent, child), colour in zip(BONES, colours, strict=True):
        a, b = points[parent], points[child]
        if np.isfinite(a).all() and np.isfinite(b).all():
            draw.line([tuple(a), tuple(b)], fill=colour, width=width)
    for joint, point in enumerate(points):
        if np.isfinite(point).all():
            side = SIDES[joint]
            fill = LEFT_COLOURS[0] if side > 0 else RIGHT_COLOURS[0] if side < 0 else MIDLINE_COLOUR
            x, y = point
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=fill, outline=(255, 255, 255))


def preview_frames(
    motion: Motion,
    reference: str | Path | Image.Image | np.ndarray,
    size: tuple[int, int] = (512, 512),
    placement: Placement = "fit",
    overlay: Motion | None = None,
) -> Iterator[np.ndarray]:
    """The preview frames, uint8 RGB ``(H, W, 3)``, one per motion frame.

    ``overlay``: a second motion of the same length (e.g. the tokenizer's reconstruction) drawn
    thinner in :data:`OVERLAY_COLOUR`, placed by the same mapping as the main motion.
    """
    background = Image.fromarray(load_reference(reference, size))
    points = screen_points(motion, size, placement)
    overlay_points = None
    if overlay is not None:
        if overlay.num_frames != motion.num_frames:
            raise RenderError(f"the overlay has {overlay.num_frames} frames, the motion {motion.num_frames}")
        # Map the overlay with the main motion's fit so the two line up.
        both = screen_points(
            motion.with_joints(np.concatenate([motion.joints, overlay.joints], axis=0)), size, placement
        )
        points, overlay_points = both[: motion.num_frames], both[motion.num_frames :]
    colours = _bone_colours()
    width = max(2, round(min(size) / 128))
    for t in range(motion.num_frames):
        canvas = background.copy()
        draw_skeleton(canvas, points[t], colours, width)
        if overlay_points is not None:
            draw_skeleton(canvas, overlay_points[t], [OVERLAY_COLOUR] * len(BONES), max(1, width // 2))
        yield np.asarray(canvas)


def render_preview(
    motion: Motion,
    reference: str | Path | Image.Image | np.ndarray,
    out: str | Path,
    size: tuple[int, int] = (512, 512),
    placement: Placement = "fit",
    overlay: Motion | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Render the preview video (H.264 mp4, one frame per motion frame, at the motion's fps)."""
    width, height = size
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise RenderError(f"output size must be even and at least 16 pixels, got {width}x{height}")
    frames = preview_frames(motion, reference, size, placement, overlay)
    return write_mp4(frames, out, motion.fps, total=motion.num_frames, progress=progress)
