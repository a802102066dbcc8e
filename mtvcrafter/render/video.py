"""Writing H.264 mp4 files with imageio-ffmpeg, atomically."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np


class RenderError(RuntimeError):
    """A video or image that cannot be read or written, with the file and the fix."""


def check_output_path(path: str | Path) -> Path:
    """``path`` if a video can be written there, else :class:`RenderError` (checked before any work)."""
    path = Path(path)
    if path.is_dir():
        raise RenderError(f"{path}: is a folder; give a file name such as {path / 'animation.mp4'}")
    if path.suffix.lower() != ".mp4":
        raise RenderError(f"{path}: the video is written as H.264 MP4; name the file {path.with_suffix('.mp4').name}")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise RenderError(f"{path}: {folder} is not a folder; choose another place for the video")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RenderError(f"{path}: {folder} is not writable; choose another place for the video")
    return path


def write_mp4(
    frames: Iterable[np.ndarray],
    path: str | Path,
    fps: float,
    total: int | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    quality: int = 18,
) -> Path:
    """Encode ``(H, W, 3)`` uint8 RGB frames as H.264 (yuv420p, plays everywhere) at ``fps``.

    The file appears only when complete: it is written beside the target and renamed, so a
    failure or an interruption never leaves a truncated video under the final name.
    ``quality`` is x264's CRF (lower is better; 18 is visually lossless).
    """
    import imageio_ffmpeg

    path = check_output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.part.mp4")
    writer = None
    count = 0
    try:
        for frame in frames:
            frame = np.ascontiguousarray(frame, dtype=np.uint8)
            if writer is None:
                height, width = frame.shape[:2]
                if height % 2 or width % 2:
                    raise RenderError(f"{path}: H.264 needs an even width and height, got {width}x{height}")
                writer = imageio_ffmpeg.write_frames(
                    str(tmp),
                    (width, height),
                    fps=fps,
                    codec="libx264",
                    pix_fmt_in="rgb24",
                    pix_fmt_out="yuv420p",
                    macro_block_size=1,
                    ffmpeg_log_level="error",
                    output_params=["-crf", str(quality), "-movflags", "+faststart"],
                )
                writer.send(None)
            writer.send(frame)
            count += 1
            if progress is not None:
                progress(count, total)
        if writer is None:
            raise RenderError(f"{path}: no frames to write")
        writer.close()
        writer = None
        tmp.replace(path)
    except (OSError, RuntimeError) as exc:  # ffmpeg stopped (disk full, folder gone, …): one line, not its log
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise RenderError(f"{path}: cannot write the video ({first})") from None
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return path


def read_mp4_info(path: str | Path) -> dict[str, float | int | tuple[int, int]]:
    """Frame count, fps and ``(W, H)`` size of a video, by decoding it."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    count = sum(1 for _ in reader)
    return {"frames": count, "fps": float(meta["fps"]), "size": tuple(meta["size"])}
