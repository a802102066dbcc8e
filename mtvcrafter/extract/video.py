"""Reading a driving video: what its header says (:func:`probe_video`), then RGB frames at a constant rate.

Frames are decoded by the ffmpeg of imageio-ffmpeg as RGB (pose estimators expect RGB; OpenCV's BGR is the
classic mistake), turned upright as the display-matrix metadata of phone videos asks, and resampled to a
constant frame rate with ffmpeg's ``fps`` filter (a phone's variable-rate video gives evenly spaced frames;
NTSC rates are kept as exact rationals so a 29.97 fps video of N frames gives N frames). The source rate is
kept — never forced to a fixed one.

Files come from users and, through the server, from anyone: the header is read first and refused when it
declares a frame or a duration over the caller's limits, before a frame is decoded; only container formats
of videos are opened (no playlists or image sequences that would open other files); where the stream lies
about its header, decoding still stops a second past the declared duration and refuses pictures far larger
than the declared size. Every error is one line naming the file and the fix, never ffmpeg's log.
"""

from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import ExtractionCancelled, ExtractionError

#: The demuxers a driving video may be read with: containers of videos, nothing that opens further files.
VIDEO_DEMUXERS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts,mpeg,flv,asf,ogg,gif"
#: Frames larger than this are refused whatever the caller's limit: 8192x8192 RGB is 200 MB a frame.
LARGEST_FRAME_PIXELS = 8192 * 8192
#: Frame rates outside this range are taken as a damaged header.
PLAUSIBLE_FPS = (1.0, 1000.0)
# Common rates a variable-rate video is resampled to when its average is within 2 % of one.
_COMMON_RATES = (
    Fraction(24000, 1001),
    Fraction(24),
    Fraction(25),
    Fraction(30000, 1001),
    Fraction(30),
    Fraction(50),
    Fraction(60000, 1001),
    Fraction(60),
    Fraction(120),
    Fraction(240),
)
_PROBE_TIMEOUT_S = 30.0
_DECODER_PIXELS_FLOOR = 1 << 22
_FIX_REENCODE = "re-encode it (ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p OUT.mp4)"


@dataclass(frozen=True)
class VideoInfo:
    """What a video's header says, and how its frames will be delivered.

    ``width``/``height`` are after rotation (as the video is shown); ``fps`` is the constant rate the frames
    are delivered at, ``source_fps`` the average rate the file declares; ``frames`` is the number of frames
    that will be delivered, estimated from ``duration_s × fps`` (0 when the duration is unknown);
    ``rotation`` is the clockwise turn (0, 90, 180, 270) applied to the stored frames; ``codec`` is
    ffmpeg's name for the video codec.
    """

    path: str
    width: int
    height: int
    fps: float
    source_fps: float
    frames: int
    duration_s: float
    rotation: int
    variable_frame_rate: bool
    codec: str
    # How the frames are asked of ffmpeg: the stream's index in the file and the delivered rate as a rational.
    stream_index: int = 0
    rate: tuple[int, int] = (0, 1)


def probe_video(path: str | Path, *, max_pixels: int | None = None, max_duration_s: float | None = None) -> VideoInfo:
    """Read the header of the video at ``path`` (fast: nothing is decoded) and check it against the limits.

    ``max_pixels`` bounds ``width × height``, ``max_duration_s`` the declared duration (a video that does
    not declare one is refused under a duration limit). Raises :class:`ExtractionError` for a missing or
    empty file, a file that is not a video or has no video stream, a frame or duration over the limits, and
    a frame rate that is missing or absurd with no other to fall back on.
    """
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise ExtractionError("no such file; check the path", source=source)
    if path.is_dir():
        raise ExtractionError("is a folder; give a video file (mp4, mov, mkv, webm)", source=source)
    if path.stat().st_size == 0:
        raise ExtractionError("is empty (0 bytes); give a video file (mp4, mov, mkv, webm)", source=source)

    header = _read_header(path)
    if "Input #0" not in header:
        if "whitelist" in header.lower() or "Invalid data" in header:
            raise ExtractionError(
                "is not a video ffmpeg can read; give a video file (mp4, mov, mkv, webm, avi)", source=source
            )
        raise ExtractionError(f"cannot be read ({_first_error(header)}); check the file", source=source)
    stream = _video_stream(header)
    if stream is None:
        kind = "only audio" if " Audio: " in header else "no video stream"
        raise ExtractionError(f"has {kind}; give a video file with moving pictures", source=source)
    index, line, side_data = stream
    codec = line.split(" Video: ", 1)[1].split()[0].rstrip(",")

    size = re.search(r" (\d+)x(\d+)[, \[]", line.split(" Video: ", 1)[1] + " ")
    if size is None or min(int(size[1]), int(size[2])) == 0:
        raise ExtractionError(f"does not say its frame size (codec {codec}); {_FIX_REENCODE}", source=source)
    stored_w, stored_h = int(size[1]), int(size[2])
    pixels = stored_w * stored_h
    limit = min(max_pixels, LARGEST_FRAME_PIXELS) if max_pixels is not None else LARGEST_FRAME_PIXELS
    if pixels > limit:
        raise ExtractionError(
            f"declares {stored_w}x{stored_h} frames ({pixels / 1e6:.1f} megapixels), over the limit of "
            f"{limit / 1e6:.1f}; scale it down first (ffmpeg -i IN -vf scale=-2:1080 OUT.mp4)",
            source=source,
            field="frame size",
        )

    duration = _duration_s(header)
    if max_duration_s is not None:
        if duration is None:
            raise ExtractionError(
                f"does not say how long it is, so the limit of {max_duration_s:g} s cannot be checked; "
                "remux it (ffmpeg -i IN -c copy OUT.mp4)",
                source=source,
                field="duration",
            )
        if duration > max_duration_s:
            raise ExtractionError(
                f"lasts {_clock(duration)}, over the limit of {_clock(max_duration_s)}; cut it first "
                f"(ffmpeg -i IN -t {max_duration_s:g} -c copy OUT.mp4)",
                source=source,
                field="duration",
            )

    source_fps = _number_before(line, "fps")
    tbr = _number_before(line, "tbr")
    rate = _delivery_rate(source_fps, tbr)
    if rate is None:
        said = f"says {source_fps:g} fps" if re.search(r"[\d.]+k? fps", line) else "does not say its frame rate"
        raise ExtractionError(
            f"{said}; re-encode it at a fixed rate (ffmpeg -i IN -r 30 -c:v libx264 OUT.mp4)",
            source=source,
            field="frame rate",
        )
    variable = bool(source_fps and tbr and abs(source_fps - tbr) > 0.01 * tbr)
    if variable:
        rate = _variable_rate_target(source_fps, tbr)

    rotation = _rotation(side_data)
    width, height = (stored_h, stored_w) if rotation in (90, 270) else (stored_w, stored_h)
    fps = float(rate)
    return VideoInfo(
        path=source,
        width=width,
        height=height,
        fps=fps,
        source_fps=float(source_fps or tbr or fps),
        frames=round(duration * fps) if duration else 0,
        duration_s=float(duration or 0.0),
        rotation=rotation,
        variable_frame_rate=variable,
        codec=codec,
        stream_index=index,
        rate=(rate.numerator, rate.denominator),
    )


def iter_video_frames(
    info: VideoInfo, *, batch: int = 16, cancelled: Callable[[], bool] | None = None
) -> Iterator[np.ndarray]:
    """Decode the video of ``info`` into batches ``(n, H, W, 3)`` uint8 RGB (n ≤ ``batch``; the last may be short).

    Frames are upright (rotation applied), ``info.width × info.height``, at the constant rate ``info.fps``.
    ``cancelled`` is asked before each batch; when it answers true :class:`ExtractionCancelled` is raised.
    The ffmpeg process ends with the iterator: when it is exhausted, closed, or left by an exception.
    """
    import imageio_ffmpeg

    if batch < 1:
        raise ValueError(f"batch must be 1 or more, got {batch}")
    source = info.path
    num, den = info.rate
    if num <= 0:
        raise ExtractionError("has no frame rate to deliver frames at; read it with probe_video", source=source)
    # The decoder refuses pictures far larger than the header declared (its own tables take up to ~20x a
    # small frame's pixels, hence the margin and the floor), and decoding stops a second past the declared
    # duration: a stream whose frames or length lie about its header costs about what the header says.
    decoder_pixels = max(16 * info.width * info.height, _DECODER_PIXELS_FLOOR)
    input_params = ["-format_whitelist", VIDEO_DEMUXERS, "-max_pixels", str(decoder_pixels)]
    output_params = ["-map", f"0:{info.stream_index}", "-vf", f"fps={num}/{den}", "-an", "-sn", "-dn"]
    if info.duration_s > 0:
        output_params += ["-t", f"{info.duration_s + 1.0:.3f}"]
    frame_bytes = info.width * info.height * 3
    delivered = 0
    if cancelled is not None and cancelled():
        raise ExtractionCancelled(f"{source}: cancelled before decoding")
    reader = imageio_ffmpeg.read_frames(
        _ffmpeg_url(Path(source)), pix_fmt="rgb24", input_params=input_params, output_params=output_params
    )
    try:
        try:
            meta = next(reader)
        except (OSError, RuntimeError, StopIteration, IndexError, AttributeError, ValueError) as exc:
            raise ExtractionError(
                f"cannot be decoded ({_first_error(str(exc))}); {_FIX_REENCODE}", source=source
            ) from None
        if tuple(meta["size"]) != (info.width, info.height):
            raise ExtractionError(
                f"decodes to {meta['size'][0]}x{meta['size'][1]} frames but its header says "
                f"{info.width}x{info.height}; {_FIX_REENCODE}",
                source=source,
                field="frame size",
            )
        while True:
            if delivered and cancelled is not None and cancelled():
                raise ExtractionCancelled(f"{source}: cancelled after {delivered} frames")
            frames = np.empty((batch, info.height, info.width, 3), np.uint8)
            count = 0
            try:
                for raw in reader:
                    frames[count] = np.frombuffer(raw, np.uint8, frame_bytes).reshape(info.height, info.width, 3)
                    count += 1
                    if count == batch:
                        break
            except (OSError, RuntimeError) as exc:
                raise ExtractionError(
                    f"decoding stopped after frame {delivered + count} ({_first_error(str(exc))}); "
                    f"the file may be cut or damaged: {_FIX_REENCODE}",
                    source=source,
                ) from None
            if count == 0:
                if delivered == 0:
                    raise ExtractionError(f"holds no frame that can be decoded; {_FIX_REENCODE}", source=source)
                return
            delivered += count
            yield frames[:count]
            if count < batch:
                return
    finally:
        reader.close()


def _ffmpeg_url(path: Path) -> str:
    # The file protocol named explicitly: a name such as "http:…" or "pipe:1" is then a file name, not a source.
    return f"file:{path.resolve()}"


def _read_header(path: Path) -> str:
    """ffmpeg's description of the input (its stderr when asked for no output): the header, nothing decoded."""
    import imageio_ffmpeg

    command = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        "-format_whitelist",
        VIDEO_DEMUXERS,
        "-i",
        _ffmpeg_url(path),
    ]
    try:
        result = subprocess.run(command, capture_output=True, timeout=_PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise ExtractionError(
            f"its header could not be read in {_PROBE_TIMEOUT_S:g} s; {_FIX_REENCODE}", source=str(path)
        ) from None
    return result.stderr.decode("utf-8", "replace")


def _video_stream(header: str) -> tuple[int, str, str] | None:
    """(index, line, side data text) of the first video stream of input 0 that is not cover art."""
    lines = header.splitlines()
    for number, line in enumerate(lines):
        found = re.match(r"\s*Stream #0:(\d+)\S*: Video: ", line)
        if found is None or "(attached pic)" in line:
            continue
        block = []
        for following in lines[number + 1 :]:
            if re.match(r"\s*(Stream #|Input #|Output #)", following):
                break
            block.append(following)
        return int(found[1]), line, "\n".join(block)
    return None


def _number_before(line: str, unit: str) -> float:
    """The number ffmpeg prints before ``unit`` ("29.97 fps", "1k tbr"), 0.0 when absent."""
    found = re.search(rf"([\d.]+)(k?) {unit}\b", line)
    if found is None:
        return 0.0
    return float(found[1]) * (1000 if found[2] else 1)


def _delivery_rate(fps: float, tbr: float) -> Fraction | None:
    """The constant rate to deliver frames at: the average rate, else the base rate, as an exact rational."""
    for candidate in (fps, tbr):
        if PLAUSIBLE_FPS[0] <= candidate <= PLAUSIBLE_FPS[1]:
            return exact_frame_rate(candidate)
    return None


def exact_frame_rate(fps: float) -> Fraction:
    """The rational behind a frame rate: NTSC rates exactly (29.97 → 30000/1001, 23.976 → 24000/1001, as ffmpeg
    prints them or as floats), others to a hundredth (12.5 → 25/2)."""
    ntsc = Fraction(round(fps * 1.001) * 1000, 1001)
    if ntsc.denominator != 1 and abs(float(ntsc) - fps) < 0.006:
        return ntsc
    return Fraction(fps).limit_denominator(100)


def _variable_rate_target(average: float, base: float) -> Fraction:
    """The constant rate a variable-rate video is resampled to.

    ffmpeg's base rate (tbr) is the rate most frames were shot at — a phone's nominal 30 where dropped
    frames make the average 29.6 — unless the timestamps are so irregular that it came out far above the
    average; then the average, snapped to a common rate within 2 %.
    """
    if PLAUSIBLE_FPS[0] <= base <= PLAUSIBLE_FPS[1] and 0.8 * base <= average <= 1.1 * base:
        return exact_frame_rate(base)
    rate = exact_frame_rate(average)
    best = min(_COMMON_RATES, key=lambda common: abs(float(common) - average))
    return best if abs(float(best) - average) <= 0.02 * float(best) else rate


def _duration_s(header: str) -> float | None:
    found = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", header)
    if found is None:
        return None
    return int(found[1]) * 3600 + int(found[2]) * 60 + float(found[3])


def _rotation(side_data: str) -> int:
    """Clockwise turn to show the frames upright, from the display matrix (ffmpeg prints it counter-clockwise).

    imageio-ffmpeg's ``meta["rotate"]`` is always 0 with ffmpeg 7 and later (it looks for the old ``rotate``
    tag, which ffmpeg now shows as a display matrix); its ``meta["size"]`` is right (after autorotation).
    """
    found = re.search(r"rotation of (-?[\d.]+) degrees", side_data, re.IGNORECASE)
    if found is None:
        return 0
    return round(-float(found[1]) / 90) * 90 % 360


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}" if whole >= 3600 else f"{seconds:g} s"


def _first_error(text: str) -> str:
    """One line of ffmpeg's output worth showing: the last line that says what went wrong, shortened."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("===")]
    telling = [line for line in lines if re.search(r"error|invalid|could not|cannot|not found|denied", line, re.I)]
    chosen = (telling or lines or ["no message"])[-1]
    return re.sub(r"^\[[^\]]*\]\s*", "", chosen)[:160]


class _RotatedSizeNote(logging.Filter):
    """imageio-ffmpeg warns when the frames' size differs from the stored one; with rotation that is intended."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("The frame size for reading")


logging.getLogger("imageio_ffmpeg").addFilter(_RotatedSizeNote())
