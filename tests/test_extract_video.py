"""Reading driving videos: real files written by the bundled ffmpeg, decoded as a user's video would be."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from mtvcrafter.extract import (
    BACKGROUND,
    FIGURE_COLOURS,
    ExtractionCancelled,
    ExtractionError,
    Figure,
    figure_video,
    iter_video_frames,
    probe_video,
    vfr_timestamps,
    write_test_video,
)
from mtvcrafter.motion import MotionError

DRIVING_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "mtvcrafter-sample" / "driving_00001.mp4"
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def decode(path: Path, **limits) -> tuple[object, np.ndarray]:
    info = probe_video(path, **limits)
    return info, np.concatenate(list(iter_video_frames(info, batch=7)))


def colour_box(frame: np.ndarray, colour: str) -> tuple[int, int, int, int] | None:
    """x, y, w, h of the pixels near a figure colour (what a viewer would call the figure)."""
    distance = np.abs(frame.astype(int) - FIGURE_COLOURS[colour]).sum(-1)
    rows, cols = np.nonzero(distance < 90)
    if len(rows) == 0:
        return None
    return cols.min(), rows.min(), cols.max() + 1 - cols.min(), rows.max() + 1 - rows.min()


def edges(box) -> tuple[int, int, int, int]:
    """Left, top, right, bottom of an x, y, w, h box: each may move by a pixel where 4:2:0 chroma blurs it."""
    x, y, w, h = box
    return x, y, x + w, y + h


def walking_red(frames: int) -> Figure:
    """A red figure moving 2 px a frame to the right, so its x position tells the frame apart."""
    return Figure("red", np.array([(2 + 2 * i, 8, 10, 30) for i in range(frames)], float))


def ffmpeg_children() -> list[int]:
    """Process ids of ffmpeg processes started by this test process and still running."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
            name = fields[0].split("(", 1)[1]
            parent = int(fields[1].split()[1])
            state = fields[1].split()[0]
        except (OSError, IndexError, ValueError):
            continue
        if parent == os.getpid() and "ffmpeg" in name and state != "Z":
            found.append(int(stat.parent.name))
    return found


def assert_one_line_naming(error: pytest.ExceptionInfo, path: Path, *words: str) -> None:
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    assert "Stream #" not in message and "ffmpeg version" not in message and "===" not in message
    for word in words:
        assert word in message, message


# --- test videos -------------------------------------------------------------------------------------------


def test_figure_video_ground_truth_is_what_is_drawn():
    video = figure_video(frames=30, size=(48, 64))
    assert video.frames.shape == (30, 48, 64, 3) and video.order == ("red", "blue")
    for t in (0, 29):
        for colour in ("red", "blue"):
            assert colour_box(video.frames[t], colour) == tuple(video.boxes[colour][t])
    assert tuple(video.frames[0, 0, 0]) == BACKGROUND
    # Blue is drawn last: while they cross it hides part of red, never the other way round.
    assert video.visible["blue"].min() == 1.0
    assert video.visible["red"].min() < 0.5 and video.visible["red"][0] == 1.0
    red_pixels = (video.frames == FIGURE_COLOURS["red"]).all(-1).sum((1, 2))
    assert red_pixels == pytest.approx(red_pixels[0] * video.visible["red"], abs=0.5)


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_figures_decode_in_their_colours_rgb_not_bgr(tmp_path, codec):
    video = figure_video(frames=10, size=(48, 64))
    info, frames = decode(write_test_video(tmp_path / "f.mp4", video.frames, 25, codec=codec, quality=3))
    assert frames.dtype == np.uint8 and frames.shape == (10, 48, 64, 3)
    for colour, rgb in FIGURE_COLOURS.items():
        x, y, w, h = video.boxes[colour][0]
        inside = frames[0, y + h // 2 - 3 : y + h // 2 + 3, x + 3 : x + w - 3].reshape(-1, 3).astype(int)
        assert np.abs(inside - rgb).max() <= 12, (colour, inside.min(0), inside.max(0))
        assert edges(colour_box(frames[0], colour)) == pytest.approx(edges(video.boxes[colour][0]), abs=1)
    assert np.abs(frames[0, 40:, 30:34].astype(int) - BACKGROUND).max() <= 12


@pytest.mark.parametrize(
    ("fps", "rate", "count"),
    [(24, (24, 1), 37), (25, (25, 1), 50), (30000 / 1001, (30000, 1001), 60), (24000 / 1001, (24000, 1001), 48)],
)
def test_every_frame_once_at_the_video_rate(tmp_path, fps, rate, count):
    video = figure_video([walking_red(count)], frames=count, size=(48, 144))
    path = write_test_video(tmp_path / "v.mp4", video.frames, fps)
    info, frames = decode(path)
    assert (
        info.rate == rate
        and info.fps == pytest.approx(fps, rel=1e-9)
        and info.source_fps == pytest.approx(fps, abs=0.01)
    )
    assert not info.variable_frame_rate and info.rotation == 0 and info.codec == "h264"
    assert (info.width, info.height) == (144, 48) and info.frames == count
    assert len(frames) == count
    # No frame repeated or dropped: frame k shows the figure where frame k drew it.
    xs = [colour_box(frame, "red")[0] for frame in frames]
    assert xs == pytest.approx(list(video.boxes["red"][:, 0]), abs=1)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_phone_rotation_is_applied(tmp_path, rotation):
    # Stored landscape, a red figure near the top-left corner and a blue one at the bottom right.
    red = Figure("red", np.tile([4.0, 4.0, 12.0, 10.0], (6, 1)))
    blue = Figure("blue", np.tile([46.0, 34.0, 14.0, 10.0], (6, 1)))
    video = figure_video([red, blue], frames=6, size=(48, 64))
    info, frames = decode(write_test_video(tmp_path / "phone.mp4", video.frames, 30, rotation=rotation))
    assert info.rotation == rotation
    turned = np.rot90(video.frames[0], k=-rotation // 90)  # clockwise
    assert (info.width, info.height) == (turned.shape[1], turned.shape[0])
    assert frames.shape == (6, *turned.shape)
    for colour in ("red", "blue"):
        assert edges(colour_box(frames[3], colour)) == pytest.approx(edges(colour_box(turned, colour)), abs=1)


def test_variable_frame_rate_is_resampled_to_a_constant_rate(tmp_path):
    count, fps = 24, 25
    video = figure_video([walking_red(count)], frames=count, size=(48, 64))
    path = write_test_video(tmp_path / "vfr.mp4", video.frames, fps, vfr=True)
    info, frames = decode(path)
    assert info.variable_frame_rate and info.fps == fps and info.rate == (25, 1)
    assert info.source_fps != fps
    # ffmpeg's fps filter: output frame k holds the last source frame whose time rounds to slot k or before.
    slots = np.floor(vfr_timestamps(count, fps) * fps + 0.5)
    expected = [int(np.nonzero(slots <= k)[0].max()) for k in range(len(frames))]
    assert abs(len(frames) - info.frames) <= 1 and len(frames) >= slots[-1] + 1
    shown = [round((colour_box(frame, "red")[0] - 2) / 2) for frame in frames]
    assert shown == expected
    assert len(set(expected)) < count and any(b - a == 0 for a, b in zip(expected, expected[1:], strict=False))


def test_official_driving_video():
    info = probe_video(DRIVING_VIDEO)
    assert (info.width, info.height, info.fps, info.frames, info.rotation) == (604, 1080, 30.0, 127, 0)
    assert info.codec == "mpeg4" and not info.variable_frame_rate
    batches = list(iter_video_frames(info, batch=16))
    assert [len(b) for b in batches] == [16] * 7 + [15]
    assert batches[0].shape[1:] == (1080, 604, 3) and batches[0].dtype == np.uint8
    assert 40 < batches[3].mean() < 220 and batches[3].std() > 10


# --- files that are not what they claim ----------------------------------------------------------------------


def test_missing_empty_and_non_video_files_are_refused_in_one_line(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(ExtractionError) as error:
        probe_video(missing)
    assert_one_line_naming(error, missing, "no such file")
    assert isinstance(error.value, MotionError)  # one except clause catches every bad input file

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(ExtractionError) as error:
        probe_video(empty)
    assert_one_line_naming(error, empty, "empty")

    text = tmp_path / "notes.mp4"
    text.write_text("this is a shopping list, not a video\n" * 20)
    with pytest.raises(ExtractionError) as error:
        probe_video(text)
    assert_one_line_naming(error, text, "not a video")

    with pytest.raises(ExtractionError) as error:
        probe_video(tmp_path)
    assert_one_line_naming(error, tmp_path, "folder")

    playlist = tmp_path / "playlist.mp4"  # a playlist that would have ffmpeg open another file
    playlist.write_text(f"#EXTM3U\n#EXTINF:1,\n{DRIVING_VIDEO}\n#EXT-X-ENDLIST\n")
    with pytest.raises(ExtractionError) as error:
        probe_video(playlist)
    assert_one_line_naming(error, playlist, "not a video")


def test_audio_only_and_cut_files_are_refused_in_one_line(tmp_path):
    audio = tmp_path / "voice.m4a"
    subprocess.run(
        [FFMPEG, "-v", "error", "-f", "lavfi", "-i", "sine=duration=0.5", "-c:a", "aac", str(audio)], check=True
    )
    with pytest.raises(ExtractionError) as error:
        probe_video(audio)
    assert_one_line_naming(error, audio, "only audio")

    # An mp4 whose index (written last) was cut off by an interrupted copy.
    whole = write_test_video(tmp_path / "whole.mp4", figure_video(frames=10, size=(32, 32)).frames, 25)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ExtractionError) as error:
        probe_video(cut)
    assert_one_line_naming(error, cut)


def small_mkv(tmp_path: Path, name: str, size: int, codec: str = "libx264") -> bytearray:
    path = tmp_path / name
    subprocess.run(
        [FFMPEG, "-v", "error", "-f", "lavfi", "-i", f"color=gray:size={size}x{size}:rate=25", "-t", "0.2"]
        + ["-c:v", codec, "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )
    return bytearray(path.read_bytes())


def test_huge_declared_frame_size_is_refused_before_decoding(tmp_path):
    # FFV1 keeps the frame size only in the container, so this 2 kB file makes a decoder allocate
    # 16000x16000 frames: its Matroska PixelWidth/PixelHeight (2-byte values 256) are rewritten.
    data = small_mkv(tmp_path, "small.mkv", 256, codec="ffv1")
    for element in (b"\xb0\x82\x01\x00", b"\xba\x82\x01\x00"):
        at = data.index(element)
        data[at + 2 : at + 4] = (16000).to_bytes(2, "big")
    huge = tmp_path / "huge.mkv"
    huge.write_bytes(data)
    started = time.perf_counter()
    with pytest.raises(ExtractionError) as error:
        probe_video(huge)
    assert_one_line_naming(error, huge, "16000x16000", "frame size")
    assert time.perf_counter() - started < 2.0

    ordinary = tmp_path / "ordinary.mp4"
    write_test_video(ordinary, figure_video(frames=5, size=(48, 64)).frames, 25)
    assert probe_video(ordinary, max_pixels=64 * 48).width == 64
    with pytest.raises(ExtractionError) as error:
        probe_video(ordinary, max_pixels=64 * 47)
    assert_one_line_naming(error, ordinary, "64x48", "scale")


def test_ten_hour_declared_duration_is_refused_by_the_limit(tmp_path):
    # A 0.2 s Matroska file whose header's Duration (milliseconds, a float) is rewritten to 10 hours.
    data = small_mkv(tmp_path, "short.mkv", 32)
    at = data.index(b"\x44\x89\x88") + 3
    data[at : at + 8] = struct.pack(">d", 10 * 3600 * 1000.0)
    long = tmp_path / "long.mkv"
    long.write_bytes(data)
    started = time.perf_counter()
    with pytest.raises(ExtractionError) as error:
        probe_video(long, max_duration_s=600)
    assert_one_line_naming(error, long, "10:00:00", "duration", "-t 600")
    assert time.perf_counter() - started < 2.0
    info = probe_video(long)
    assert info.duration_s == 36000 and info.frames == 36000 * 25
    # Without a limit the header is believed for the estimate, not for the decoding: the real frames come.
    assert sum(len(batch) for batch in iter_video_frames(info)) == 5


def test_a_header_that_understates_the_duration_bounds_the_decoding(tmp_path):
    # 4 s of frames (100 at 25 fps) in a Matroska file whose header says 0.5 s.
    path = tmp_path / "long.mkv"
    subprocess.run(
        [FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=32x32:rate=25", "-t", "4"]
        + ["-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )
    data = bytearray(path.read_bytes())
    at = data.index(b"\x44\x89\x88") + 3
    assert struct.unpack(">d", data[at : at + 8])[0] == 4000.0
    data[at : at + 8] = struct.pack(">d", 500.0)
    path.write_bytes(data)
    info = probe_video(path, max_duration_s=1.0)
    assert info.duration_s == 0.5 and info.frames == 12
    delivered = sum(len(batch) for batch in iter_video_frames(info))
    assert 12 <= delivered <= (0.5 + 1.0) * 25 + 1


@pytest.mark.parametrize(("rate", "scale", "said"), [(1, 100000, "says 0 fps"), (100000, 1, "says 100000 fps")])
def test_absurd_frame_rate_is_refused(tmp_path, rate, scale, said):
    path = tmp_path / "x.avi"
    subprocess.run(
        [FFMPEG, "-v", "error", "-f", "lavfi", "-i", "color=gray:size=32x32:rate=25", "-t", "0.4"]
        + ["-c:v", "ffv1", str(path)],
        check=True,
    )
    data = bytearray(path.read_bytes())
    header = data.index(b"strh") + 8
    assert data[header : header + 4] == b"vids"
    data[header + 20 : header + 28] = struct.pack("<II", scale, rate)  # dwScale, dwRate
    path.write_bytes(data)
    with pytest.raises(ExtractionError) as error:
        probe_video(path)
    assert_one_line_naming(error, path, said, "frame rate", "-r 30")


# --- stopping ------------------------------------------------------------------------------------------------


def test_cancel_between_batches_stops_ffmpeg(tmp_path):
    path = write_test_video(tmp_path / "c.mp4", figure_video(frames=40, size=(32, 32)).frames, 25)
    info = probe_video(path)
    asked = []

    def cancelled() -> bool:
        asked.append(True)
        return len(asked) > 2

    got = []
    with pytest.raises(ExtractionCancelled):
        for batch in iter_video_frames(info, batch=8, cancelled=cancelled):
            got.append(len(batch))
            assert ffmpeg_children()
    assert got == [8, 8]
    assert ffmpeg_children() == []

    frames = iter_video_frames(info, batch=4)
    next(frames)
    assert ffmpeg_children()
    frames.close()  # a caller that stops early
    assert ffmpeg_children() == []

    with pytest.raises(ExtractionCancelled):
        next(iter_video_frames(info, cancelled=lambda: True))
    assert ffmpeg_children() == []


def test_fps_is_kept_not_forced(tmp_path):
    video = figure_video(frames=12, size=(32, 32))
    info = probe_video(write_test_video(tmp_path / "slow.mp4", video.frames, 12.5))
    assert info.fps == 12.5 and info.rate == (25, 2) and info.frames == 12
    assert Fraction(*info.rate) == Fraction(25, 2)


# --- the benchmark ---------------------------------------------------------------------------------------------


def test_bench_extract_quick_prints_batched_against_one_frame_per_call(capsys):
    from mtvcrafter.cli import main

    assert main(["bench", "extract", "--quick", "--video", str(DRIVING_VIDEO)]) == 0
    out = capsys.readouterr().out
    assert "the stand-in model" in out and "not NLF" in out and "CPU" in out
    videos = ("figures 128x128, 60 frames", "driving_00001.mp4 (1 s) 604x1080")
    rows = [re.split(r"\s{2,}", line.strip()) for line in out.splitlines() if line.startswith(videos)]
    per_video = [
        "decoding only (RGB frames, batches of 16)",
        "1 frame per model call (baseline)",
        "8 frames per model call",
        "16 frames per model call",
    ]
    assert [(row[0], row[1]) for row in rows] == [(video, setting) for video in videos for setting in per_video]
    for video, setting, frames, total, fps, in_model, ratio in rows:
        assert int(frames) == (60 if video.startswith("figures") else 30)
        assert float(fps) == pytest.approx(int(frames) / float(total.rstrip("s")), rel=0.02)
        if "per model call" in setting:
            assert 0 < float(in_model.rstrip("s")) < float(total.rstrip("s"))
        if "frames per model call" in setting:
            assert ratio.endswith("x") and float(ratio.rstrip("x")) > 0


def test_bench_extract_times_a_given_nlf_file_too(tmp_path, capsys):
    from mtvcrafter.cli import main
    from mtvcrafter.extract import write_standin_model

    model = write_standin_model(tmp_path / "model.torchscript", "foreground")
    assert (
        main(["bench", "extract", "--quick", "--video", str(DRIVING_VIDEO), "--nlf", str(model), "--device", "cpu"])
        == 0
    )
    out = capsys.readouterr().out
    label = "driving_00001.mp4 (1 s) 604x1080 [NLF, cpu]"
    rows = [re.split(r"\s{2,}", line.strip()) for line in out.splitlines() if line.startswith(label)]
    assert [row[1] for row in rows] == [
        "1 frame per model call (baseline)",
        "8 frames per model call",
        "16 frames per model call",
    ]
    assert all(int(row[2]) == 30 for row in rows)
    assert f"the real model {model.name} on cpu" in out
    assert main(["bench", "motion", "--nlf", str(model)]) == 2  # an option of bench extract only


def test_reading_a_header_does_not_load_torch():
    """The server checks every uploaded video with probe_video in its API process: that must not pull in torch
    (the models run in the worker, or on Ray replicas)."""
    code = (
        "import sys; from mtvcrafter.extract import probe_video; "
        f"info = probe_video({str(DRIVING_VIDEO)!r}); print(info.frames, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["127", "False"]
