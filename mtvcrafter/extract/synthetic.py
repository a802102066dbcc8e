"""Test videos with a known answer: coloured figures along known box trajectories, written as real files.

The figures are flat colours on a grey background so that a stand-in detector can find each one from the
pixels of its colour (:mod:`mtvcrafter.extract.standin`), and the colours are chosen to survive H.264 and
MPEG-4 compression (4:2:0 chroma). :func:`write_test_video` writes what phones and editors write: a display
rotation in the metadata, irregular timestamps.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from .video import exact_frame_rate

#: RGB colour of each figure the stand-in detector knows, by name.
FIGURE_COLOURS: dict[str, tuple[int, int, int]] = {"red": (230, 20, 20), "blue": (20, 40, 230)}
#: RGB colour of the background behind the figures.
BACKGROUND: tuple[int, int, int] = (128, 128, 128)

# Frame durations (in frames of the nominal rate) of the repeating pattern of a variable-frame-rate video:
# a long frame, a short one and one shorter than a frame at the nominal rate's grid — four frames in four
# frame times, so the average rate stays the nominal one as it does on a phone.
_VFR_DURATIONS = (1.0, 2.0, 0.6, 0.4)


def vfr_timestamps(count: int, fps: float) -> np.ndarray:
    """Presentation times in seconds ``(count,)`` of the frames :func:`write_test_video` writes with ``vfr=True``."""
    durations = np.resize(np.asarray(_VFR_DURATIONS), count)
    return np.concatenate([[0.0], np.cumsum(durations)[:-1]]) / float(fps)


def write_test_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float,
    *,
    rotation: int = 0,
    vfr: bool = False,
    codec: str = "libx264",
    quality: int = 12,
) -> Path:
    """Encode ``frames`` ``(T, H, W, 3)`` uint8 RGB as a video file (mp4, mkv, mov…; H and W even).

    ``fps`` may be an NTSC rate such as ``30000 / 1001``: it is written as the exact rational.
    ``rotation`` (0, 90, 180, 270, clockwise) is written as the display-matrix metadata a phone writes for
    a video held upright, the frames themselves stored as given; a player shows them turned by that much.
    ``vfr`` gives the frames the irregular presentation times of :func:`vfr_timestamps`.
    ``codec``: ``"libx264"`` (yuv420p) or ``"mpeg4"``; ``quality``: x264's CRF or MPEG-4's q scale.
    """
    import imageio_ffmpeg

    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be a non-empty (T, H, W, 3) uint8 array, got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"the video needs an even width and height (4:2:0 chroma), got {width}x{height}")
    if rotation % 90 or rotation not in (0, 90, 180, 270):
        raise ValueError(f"rotation must be 0, 90, 180 or 270 degrees, got {rotation}")
    rate = exact_frame_rate(fps)
    if codec == "libx264":
        output = ["-preset", "veryfast", "-crf", str(quality)]
    elif codec == "mpeg4":
        output = ["-q:v", str(quality)]
    else:
        raise ValueError(f"codec must be 'libx264' or 'mpeg4', got {codec!r}")
    if vfr:
        output += ["-vf", f"settb={rate.denominator}/{rate.numerator * 10},setpts='{_vfr_pts_expression(rate)}'"]
        output += ["-fps_mode", "passthrough"]
    encoded = path if rotation == 0 else path.with_name(f".{path.stem}.{os.getpid()}.unrotated{path.suffix}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        writer = imageio_ffmpeg.write_frames(
            str(encoded),
            (width, height),
            fps=rate,
            codec=codec,
            quality=None,
            pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p",
            macro_block_size=1,
            ffmpeg_log_level="error",
            output_params=output,
        )
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
        if rotation:
            # -display_rotation is counter-clockwise; the stream is copied so that the matrix stays metadata
            # (re-encoding would turn the pixels and drop it).
            _run_ffmpeg(["-display_rotation", str(-rotation), "-i", str(encoded), "-c", "copy", str(path)])
    finally:
        if encoded != path:
            encoded.unlink(missing_ok=True)
    return path


def _vfr_pts_expression(rate: Fraction) -> str:
    """An ffmpeg ``setpts`` expression giving frame ``N`` the time of :func:`vfr_timestamps`, in ticks of ``TB``."""
    period = len(_VFR_DURATIONS)
    offsets = np.concatenate([[0.0], np.cumsum(_VFR_DURATIONS)[:-1]])
    offset = "0"
    for k in range(period - 1, 0, -1):
        offset = f"if(eq(mod(N\\,{period})\\,{k})\\,{offsets[k]:g}\\,{offset})"
    frames = f"({sum(_VFR_DURATIONS):g}*floor(N/{period})+{offset})"
    return f"{frames}*{rate.denominator}/{rate.numerator}/TB"


def _run_ffmpeg(arguments: list[str]) -> None:
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", *arguments]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode:
        first = (result.stderr.strip().splitlines() or ["no message"])[0][:200]
        raise RuntimeError(f"ffmpeg could not write {arguments[-1]}: {first}")


@dataclass(frozen=True)
class Figure:
    """One flat-coloured upright figure: a head over a body, filling the box ``(x, y, w, h)`` of each frame.

    ``colour`` is a key of :data:`FIGURE_COLOURS`; ``boxes`` is ``(T, 4)`` in pixels.
    """

    colour: str
    boxes: np.ndarray

    @classmethod
    def moving(
        cls,
        colour: str,
        start: tuple[float, float, float, float],
        end: tuple[float, float, float, float],
        frames: int,
    ) -> Figure:
        """A figure whose box goes in a straight line from ``start`` to ``end`` over ``frames`` frames."""
        t = np.linspace(0.0, 1.0, frames)[:, None]
        return cls(colour, (1 - t) * np.asarray(start, float) + t * np.asarray(end, float))


@dataclass(frozen=True)
class FigureVideo:
    """Frames of coloured figures and their ground truth.

    ``frames``: ``(T, H, W, 3)`` uint8 RGB. ``boxes[colour]``: ``(T, 4)`` int ``x, y, w, h`` of the pixels the
    figure covers (inside the frame; hidden parts included). ``visible[colour]``: ``(T,)`` fraction of those
    pixels not hidden by a figure in front. ``order``: colours back to front.
    """

    frames: np.ndarray
    fps: float
    boxes: dict[str, np.ndarray] = field(default_factory=dict)
    visible: dict[str, np.ndarray] = field(default_factory=dict)
    order: tuple[str, ...] = ()


def crossing_figures(frames: int, size: tuple[int, int]) -> list[Figure]:
    """Red walking left to right behind blue walking right to left; they cross (blue hides red) mid-video."""
    height, width = size
    h = 0.7 * height
    w = 0.22 * width
    y = 0.15 * height
    return [
        Figure.moving("red", (0.05 * width, y, w, h), (0.95 * width - w, y, w, h), frames),
        Figure.moving("blue", (0.95 * width - w, y + 0.05 * height, w, h * 0.9), (0.05 * width, y, w, h), frames),
    ]


def figure_video(
    figures: Sequence[Figure] | None = None,
    *,
    frames: int = 48,
    size: tuple[int, int] = (64, 64),
    fps: float = 25.0,
) -> FigureVideo:
    """Draw ``figures`` (back to front: a later one hides an earlier one) on :data:`BACKGROUND`.

    ``size`` is ``(H, W)``. Without ``figures``: :func:`crossing_figures`. Each figure's ``boxes`` must have
    ``frames`` rows. Returns the frames and the ground truth (:class:`FigureVideo`).
    """
    height, width = size
    figures = list(crossing_figures(frames, size) if figures is None else figures)
    colours = [figure.colour for figure in figures]
    for figure in figures:
        if figure.colour not in FIGURE_COLOURS:
            raise ValueError(f"unknown figure colour {figure.colour!r}; use one of {sorted(FIGURE_COLOURS)}")
        if np.shape(figure.boxes) != (frames, 4):
            raise ValueError(f"the {figure.colour} figure needs ({frames}, 4) boxes, got {np.shape(figure.boxes)}")
    if len(set(colours)) != len(colours):
        raise ValueError(f"each figure needs its own colour, got {colours}")

    video = np.empty((frames, height, width, 3), np.uint8)
    video[:] = BACKGROUND
    boxes = {colour: np.zeros((frames, 4), np.int64) for colour in colours}
    visible = {colour: np.zeros(frames) for colour in colours}
    owner = np.full((height, width), -1)
    for t in range(frames):
        owner[:] = -1
        drawn = []
        for index, figure in enumerate(figures):
            mask = _figure_mask(figure.boxes[t], height, width)
            owner[mask] = index
            drawn.append(mask)
            video[t][mask] = FIGURE_COLOURS[figure.colour]
        for index, (figure, mask) in enumerate(zip(figures, drawn, strict=True)):
            rows, cols = np.nonzero(mask)
            if len(rows):
                boxes[figure.colour][t] = (
                    cols.min(),
                    rows.min(),
                    cols.max() + 1 - cols.min(),
                    rows.max() + 1 - rows.min(),
                )
                visible[figure.colour][t] = np.count_nonzero(owner[mask] == index) / len(rows)
    return FigureVideo(video, float(fps), boxes, visible, tuple(colours))


def _figure_mask(box: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(H, W)`` bool: a head (the box's top fifth, half its width, centred) over a body (the rest, full width)."""
    x, y, w, h = (float(v) for v in box)
    mask = np.zeros((height, width), bool)
    x0, x1 = round(x), round(x + w)
    y0, y1 = round(y), round(y + h)
    neck = max(y0 + 1, round(y + 0.2 * h))
    head0, head1 = round(x + 0.25 * w), max(round(x + 0.75 * w), round(x + 0.25 * w) + 1)
    mask[max(y0, 0) : max(neck, 0), max(head0, 0) : max(head1, 0)] = True
    mask[max(neck, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
    return mask
