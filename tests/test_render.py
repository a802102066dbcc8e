"""The preview renderer: the mp4 a user gets, and what is drawn where."""

from __future__ import annotations

import struct
import warnings
import zlib

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from mtvcrafter.motion import Motion, load_motion
from mtvcrafter.render import RenderError, load_reference, read_mp4_info, render_preview, screen_points
from mtvcrafter.render.preview import LEFT_COLOURS, RIGHT_COLOURS


@pytest.fixture(scope="module")
def short_clip(sample_pkl) -> Motion:
    return load_motion(sample_pkl, clip=0).slice(0, 24)


def test_preview_mp4_has_every_frame_at_the_motion_fps(tmp_path, short_clip, reference_image):
    out = render_preview(short_clip, reference_image, tmp_path / "out" / "p.mp4", size=(320, 256))
    info = read_mp4_info(out)
    assert info == {"frames": 24, "fps": 30.0, "size": (320, 256)}
    assert not list((tmp_path / "out").glob("*.part*"))
    half_speed = Motion(short_clip.joints, fps=12.5)
    assert read_mp4_info(render_preview(half_speed, reference_image, tmp_path / "h.mp4"))["fps"] == 12.5


def test_skeleton_lies_over_the_reference_and_sides_differ(tmp_path, short_clip, reference_image):
    size = (512, 512)
    out = render_preview(short_clip, reference_image, tmp_path / "p.mp4", size=size)
    frame = iio.imread(out, index=10).astype(int)
    background = load_reference(reference_image, size).astype(int)
    points = screen_points(short_clip, size)[10]

    def colour_near(a: int, b: int) -> np.ndarray:
        """Mean colour of the pixels the bone a-b changed, around its middle."""
        mid = (points[a] + points[b]) / 2
        x, y = int(mid[0]), int(mid[1])
        patch, base = frame[y - 3 : y + 4, x - 3 : x + 4], background[y - 3 : y + 4, x - 3 : x + 4]
        changed = np.abs(patch - base).sum(axis=-1) > 60
        assert changed.sum() >= 5, "the bone is not drawn where it projects"
        return patch[changed].mean(axis=0)

    left_shin, right_shin = colour_near(4, 7), colour_near(5, 8)
    assert left_shin[0] > left_shin[2] + 80  # warm: the person's left
    assert right_shin[2] > right_shin[0] + 80  # cool: the person's right
    assert max(LEFT_COLOURS[0][:1]) > 200 and max(RIGHT_COLOURS[0][2:]) > 200
    # "fit" placement: the figure is centred and fills most of the height on a typical frame.
    all_points = screen_points(short_clip, size)
    heights = np.nanmax(all_points[..., 1], axis=1) - np.nanmin(all_points[..., 1], axis=1)
    assert 0.8 * 512 < np.median(heights) < 0.95 * 512
    # Far from the skeleton the picture is the reference image.
    corner = np.abs(frame[:40, :40] - background[:40, :40]).mean()
    assert corner < 6


def test_camera_placement_follows_the_source_video_framing(short_clip):
    size = (302, 540)  # the source video 604x1080, halved
    points = screen_points(short_clip, size, placement="camera")
    # SPEC: f = max(H, W) / (2 tan(55°/2)), u = f x / z + W / 2, v = f y / z + H / 2.
    joints = short_clip.joints.astype(np.float64)
    f = 1080 / (2 * np.tan(np.radians(55) / 2))
    u = f * joints[..., 0] / joints[..., 2] + 604 / 2
    v = f * joints[..., 1] / joints[..., 2] + 1080 / 2
    np.testing.assert_allclose(points, np.stack([u, v], axis=-1) / 2.0, atol=1e-4)


def test_frames_behind_the_camera_are_skipped_quietly(tmp_path, short_clip, reference_image):
    joints = short_clip.joints.copy()
    joints[3:6, :, 2] *= -1  # three frames wholly behind the camera
    motion = Motion(joints, fps=30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        points = screen_points(motion, (64, 64))
        out = render_preview(motion, reference_image, tmp_path / "b.mp4", size=(64, 64))
    assert np.isnan(points[3:6]).all() and np.isfinite(points[:3]).all()
    assert read_mp4_info(out)["frames"] == short_clip.num_frames


@pytest.mark.parametrize("image", [(4000, 6000), (121, 517), (517, 121), (1001, 999), (33, 4000)])
@pytest.mark.parametrize("size", [(480, 720), (720, 1280), (512, 512), (1280, 720)])
def test_centre_crop_stays_inside_any_image(image, size):
    from mtvcrafter.render.preview import _centre_crop

    left, top, width, height = _centre_crop(*image, size)
    assert left >= 0 and top >= 0 and left + width <= image[0] and top + height <= image[1]
    assert width / height == pytest.approx(size[0] / size[1], rel=1e-9)
    assert width == image[0] or height == image[1]


def test_photo_sizes_that_round_badly_still_load(tmp_path):
    Image.new("RGB", (121, 517), (10, 200, 30)).save(tmp_path / "narrow.png")
    assert load_reference(tmp_path / "narrow.png", (720, 1280)).shape == (1280, 720, 3)


def test_reference_image_handling(tmp_path):
    rgba = np.zeros((100, 300, 4), dtype=np.uint8)
    rgba[:, 100:200] = [255, 0, 0, 255]  # an opaque red square in the middle, transparent elsewhere
    Image.fromarray(rgba).save(tmp_path / "a.png")
    ref = load_reference(tmp_path / "a.png", (64, 64))
    assert ref.shape == (64, 64, 3)
    assert (ref[32, 32] == [255, 0, 0]).all()  # centre-cropped: the square fills the output
    with pytest.raises(RenderError, match="no such reference image"):
        load_reference(tmp_path / "missing.png", (64, 64))
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(RenderError, match="not a readable image"):
        load_reference(tmp_path / "text.png", (64, 64))


def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [50_000, 9_000])
def test_decompression_bombs_are_refused_before_decoding(tmp_path, side):
    (tmp_path / "bomb.png").write_bytes(png_header_only(side, side))
    with pytest.raises(RenderError, match="pixels; scale it down"):
        load_reference(tmp_path / "bomb.png", (64, 64))


def test_bad_output_sizes(tmp_path, short_clip, reference_image):
    with pytest.raises(RenderError, match="even"):
        render_preview(short_clip, reference_image, tmp_path / "x.mp4", size=(511, 512))
    assert not (tmp_path / "x.mp4").exists()
