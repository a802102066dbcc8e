"""Video → motion through NLF's interface: a real TorchScript stand-in file loaded by load_nlf, real video files.

The stand-in (mtvcrafter.extract.standin) finds the coloured figures of synthetic test videos and places a
fixed body by the camera from each figure's box: depth = f · height / box height, the pelvis on the ray
through the box centre. The expected pelvis of each frame is computed here from the figures' true boxes.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_SAMPLE

from mtvcrafter.extract import (
    BACKGROUND,
    ExtractionCancelled,
    ExtractionError,
    ExtractOptions,
    Figure,
    extract_motion,
    figure_video,
    iter_video_frames,
    load_nlf,
    probe_video,
    write_standin_model,
    write_test_video,
)
from mtvcrafter.extract.standin import FIGURE_HEIGHTS_M, FIGURE_SCORES
from mtvcrafter.extract.track import LINK_GAP_S

SIZE = (96, 128)  # (H, W) of the test videos
FPS = 25.0
FRAMES = 50


def expected_pelvis_mm(boxes: np.ndarray, colour: str, size=SIZE, fov_deg: float = 55.0) -> np.ndarray:
    """The stand-in's pelvis ``(T, 3)`` for a figure's true boxes ``(T, 4)``, by the pinhole camera."""
    height, width = size
    f = max(height, width) / (2 * math.tan(math.radians(fov_deg) / 2))
    boxes = np.asarray(boxes, dtype=np.float64)
    z = f * FIGURE_HEIGHTS_M[colour] / boxes[:, 3]
    x = (boxes[:, 0] + boxes[:, 2] / 2 - width / 2) * z / f
    y = (boxes[:, 1] + boxes[:, 3] / 2 - height / 2) * z / f
    return np.stack([x, y, z], axis=1) * 1000


def pelvis_error(motion, truth: np.ndarray) -> np.ndarray:
    return np.linalg.norm(motion.joints[:, 0] - truth, axis=1)


def walking(colour: str, x0: float, x1: float, frames: int = FRAMES, height: float = 64, width: float = 24) -> Figure:
    return Figure.moving(colour, (x0, 16, width, height), (x1, 16, width, height), frames)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("extract")


@pytest.fixture(scope="module")
def model_path(folder) -> Path:
    return write_standin_model(folder / "standin.torchscript", mode="figures")


@pytest.fixture(scope="module")
def model(model_path):
    return load_nlf(model_path)


@pytest.fixture(scope="module")
def crossing(folder):
    """Red walks left to right behind blue walking right to left; blue hides red in the middle."""
    video = figure_video(frames=FRAMES, size=SIZE, fps=FPS)
    return video, write_test_video(folder / "crossing.mp4", video.frames, FPS)


def decoded(path: Path) -> np.ndarray:
    return np.concatenate(list(iter_video_frames(probe_video(path), batch=64)))


# --- the model file and its output --------------------------------------------------------------------------------


def test_standin_output_has_nlf_structure_sorted_by_score(model, crossing):
    video, _ = crossing
    frames = np.concatenate([video.frames[:2], np.full((1, *SIZE, 3), BACKGROUND, np.uint8)])
    images = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()
    out = model.module.detect_smpl_batched(images=images, detector_threshold=0.3)

    widths = {"boxes": (5,), "joints3d_nonparam": (24, 3), "joints3d": (24, 3), "joint_uncertainties": (24,)}
    widths |= {"pose": (72,), "betas": (10,), "trans": (3,)}
    assert set(out) == set(widths)
    for key, tail in widths.items():
        assert len(out[key]) == 3, key  # one entry per image
        assert [tuple(t.shape) for t in out[key]] == [(2, *tail), (2, *tail), (0, *tail)], key
    boxes = out["boxes"][0].numpy()
    # sorted by score, not size: the smaller blue figure comes first
    assert boxes[0, 4] > boxes[1, 4]
    assert boxes[0, 2] * boxes[0, 3] < boxes[1, 2] * boxes[1, 3]
    np.testing.assert_allclose(boxes[0, :4], video.boxes["blue"][0], atol=1)
    np.testing.assert_allclose(boxes[1, :4], video.boxes["red"][0], atol=1)

    found = model.detect(frames)
    assert [len(d) for d in found] == [2, 2, 0]
    assert found[2].boxes.shape == (0, 5) and found[2].joints.shape == (0, 24, 3)
    assert found[2].uncertainty.shape == (0, 24)
    assert (found[0].uncertainty > 0).all()


def test_load_nlf_refuses_unusable_files_in_one_line(folder, model_path):
    messages = []
    for path, says in [
        (folder / "missing.torchscript", "download"),
        (folder, "folder"),
        (Path(__file__), "not a TorchScript file"),
    ]:
        with pytest.raises(ExtractionError, match=says) as caught:
            load_nlf(path)
        messages.append(str(caught.value))
    linear = folder / "linear.torchscript"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch deprecates TorchScript, NLF's format
        torch.jit.script(torch.nn.Linear(2, 2)).save(str(linear))
    with pytest.raises(ExtractionError, match="detect_smpl_batched") as caught:
        load_nlf(linear)
    messages.append(str(caught.value))
    for message in messages:
        assert "\n" not in message and "Traceback" not in message
    if not torch.cuda.is_available():
        with pytest.raises(ExtractionError, match="no CUDA GPU"):
            load_nlf(model_path, device="cuda")


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed here")
def test_a_model_needing_torchvision_ops_says_to_install_torchvision(folder, model_path):
    # The stand-in's file with one call turned into torchvision's NMS, as the real model's detector has.
    patched = folder / "needs_torchvision.torchscript"
    with zipfile.ZipFile(model_path) as source, zipfile.ZipFile(patched, "w") as target:
        replaced = 0
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.endswith(".py") and b"torch.argsort(" in data:
                data = data.replace(b"torch.argsort(", b"ops.torchvision.nms(", 1)
                replaced += 1
            target.writestr(item, data)
    assert replaced == 1
    with pytest.raises(ExtractionError) as caught:
        load_nlf(patched)
    torch_version = ".".join(torch.__version__.split(".")[:2])
    assert "install" in str(caught.value) and "torchvision" in str(caught.value)
    assert f"torch {torch_version}" in str(caught.value)
    assert "\n" not in str(caught.value)


# --- what extraction gives ---------------------------------------------------------------------------------------


def test_frames_reach_the_model_as_rgb(model, folder):
    video = figure_video([walking("red", 10, 90, frames=20)], frames=20, size=SIZE, fps=FPS)
    path = write_test_video(folder / "red.mp4", video.frames, FPS)
    truth = expected_pelvis_mm(video.boxes["red"], "red")

    motion = extract_motion(path, model, ExtractOptions(smooth="none"))
    assert motion.frame_valid.all()
    assert pelvis_error(motion, truth).max() < 50

    # The same frames handed over in BGR order: red reads as the other figure, at its height, so the
    # performer lands at the wrong depth, far beyond the tolerance above.
    bgr = model.detect(decoded(path)[..., ::-1])
    assert all(len(d) == 1 for d in bgr)
    assert all(d.boxes[0, 4] == pytest.approx(FIGURE_SCORES["blue"]) for d in bgr)
    wrong = np.linalg.norm(np.stack([d.joints[0, 0] for d in bgr]) - truth, axis=1)
    assert wrong.min() > 200


def test_the_track_stays_on_the_main_person_across_a_crossing(model, crossing):
    video, path = crossing
    red = expected_pelvis_mm(video.boxes["red"], "red")
    blue = expected_pelvis_mm(video.boxes["blue"], "blue")
    # The first (highest-scoring) detection is blue's: taking it, as the official script does, would follow blue.
    first = model.detect(video.frames[:1])[0]
    np.testing.assert_allclose(first.boxes[0, :4], video.boxes["blue"][0], atol=1)

    motion = extract_motion(path, model, ExtractOptions(smooth="none"))
    assert motion.num_frames == FRAMES
    error = pelvis_error(motion, red)
    visible = video.visible["red"]
    assert motion.frame_valid[visible > 0.99].all()
    assert error[visible > 0.99].max() < 50
    hidden = visible < 0.2  # red all but hidden behind blue: missing, not taken from blue
    assert hidden.any() and not motion.frame_valid[hidden].any()
    assert error[~motion.frame_valid].max() < 60  # filled along red's path
    # never on blue: everywhere the two are apart the motion is on red, and never far from red's path
    apart = np.linalg.norm(red - blue, axis=1) > 300
    assert (error[apart] < pelvis_error(motion, blue)[apart]).all()
    assert error.max() < 150  # (partly hidden red: its visible part's box is narrower)
    assert any("largest person" in note for note in motion.notes)


def test_a_hidden_performer_is_missing_not_replaced_and_found_again(model, folder):
    frames = 60
    red = Figure.moving("red", (4, 20, 20, 56), (100, 20, 20, 56), frames)
    blue = Figure.moving("blue", (42, 12, 44, 72), (42, 12, 44, 72), frames)  # standing in front of red's path
    video = figure_video([red, blue], frames=frames, size=SIZE, fps=FPS)
    path = write_test_video(folder / "hidden.mp4", video.frames, FPS)
    first_box = tuple(float(v) for v in video.boxes["red"][0])

    motion = extract_motion(path, model, ExtractOptions(box=first_box, smooth="none"))
    visible = video.visible["red"]
    hidden = visible < 0.05
    assert hidden.sum() / FPS > LINK_GAP_S  # hidden for longer than a track waits for its person
    assert not motion.frame_valid[hidden].any()  # missing, not taken from blue
    whole = visible > 0.99
    assert whole[np.flatnonzero(hidden)[-1] :].any()  # red comes out on the other side…
    assert motion.frame_valid[whole].all()  # …and is found again
    error = pelvis_error(motion, expected_pelvis_mm(video.boxes["red"], "red"))
    assert error[whole].max() < 60
    assert (error < pelvis_error(motion, expected_pelvis_mm(video.boxes["blue"], "blue"))).all()
    assert any("found again" in note for note in motion.notes)


def test_gaps_are_marked_and_short_ones_filled_close_to_the_truth(model, folder):
    red = walking("red", 6, 80)
    blue = Figure.moving("blue", (100, 20, 22, 60), (100, 20, 22, 60), FRAMES)  # standing still, away from red
    both = figure_video([red, blue], frames=FRAMES, size=SIZE, fps=FPS)
    blue_only = figure_video([blue], frames=FRAMES, size=SIZE, fps=FPS)
    short, long = range(10, 14), range(25, 40)  # 0.16 s and 0.6 s at 25 fps
    frames = both.frames.copy()
    for t in [*short, *long]:
        frames[t] = blue_only.frames[t]
    path = write_test_video(folder / "gaps.mp4", frames, FPS)

    motion = extract_motion(path, model, ExtractOptions(smooth="none", max_gap_s=0.5))
    hidden = np.zeros(FRAMES, bool)
    hidden[list(short) + list(long)] = True
    np.testing.assert_array_equal(motion.frame_valid, ~hidden)
    assert motion.valid_fraction == pytest.approx(1 - hidden.mean())
    error = pelvis_error(motion, expected_pelvis_mm(both.boxes["red"], "red"))
    assert error[list(short)].max() < 40
    assert error[list(long)].max() < 60  # red walks a straight line: the straight fill is near it too
    assert np.isfinite(motion.joint_uncertainty).all() and (motion.joint_uncertainty > 0).all()
    notes = " ".join(motion.notes)
    assert "19 frame(s)" in notes and "2 gap(s)" in notes
    assert "frames 25–39" in notes  # only the long gap is named as a straight-line guess
    assert "10–13" not in notes


def test_a_performer_seen_in_too_few_frames_is_refused(model, folder):
    red = walking("red", 6, 80)
    video = figure_video([red], frames=FRAMES, size=SIZE, fps=FPS)
    frames = video.frames.copy()
    frames[20:] = BACKGROUND  # seen in 20 of 50 frames
    path = write_test_video(folder / "mostly-empty.mp4", frames, FPS)
    with pytest.raises(ExtractionError) as caught:
        extract_motion(path, model)
    message = str(caught.value)
    assert "mostly-empty.mp4" in message and "40 % of the frames (20 of 50)" in message and "50 %" in message
    assert "\n" not in message
    assert extract_motion(path, model, ExtractOptions(min_valid=0.3)).valid_fraction == pytest.approx(0.4)

    empty = write_test_video(folder / "empty.mp4", np.full((10, *SIZE, 3), BACKGROUND, np.uint8), FPS)
    with pytest.raises(ExtractionError, match="nobody was detected"):
        extract_motion(empty, model)


def test_smoothing_removes_jitter_without_lag(model, folder):
    frames = 60
    t = np.arange(frames)
    centre = 52 + 30 * np.sin(2 * np.pi * t / 50)  # one sway every 2 s
    jitter = np.random.default_rng(7).integers(-2, 3, size=frames)  # ±2 px, the estimator's frame noise
    boxes = np.stack([centre + jitter, np.full(frames, 16), np.full(frames, 24), np.full(frames, 64)], axis=1)
    video = figure_video([Figure("red", boxes)], frames=frames, size=SIZE, fps=FPS)
    path = write_test_video(folder / "sway.mp4", video.frames, FPS)
    steady = boxes.astype(np.float64)
    steady[:, 0] = centre
    truth = expected_pelvis_mm(steady, "red")[:, 0]
    speed = np.gradient(truth)
    inner = slice(5, frames - 5)

    def error(x):
        return float(np.sqrt(np.mean((x - truth)[inner] ** 2)))

    def roughness(x):
        return float(np.sqrt(np.mean(np.diff(x[inner], 2) ** 2)))

    def lag(x):
        """Frames by which ``x`` trails the truth (least squares on x(t) ≈ truth(t − lag))."""
        return float(-np.sum(((x - truth) * speed)[inner]) / np.sum((speed * speed)[inner]))

    raw = extract_motion(path, model, ExtractOptions(smooth="none")).joints[:, 0, 0]
    for method in ("savgol", "one-euro"):
        smoothed = extract_motion(path, model, ExtractOptions(smooth=method)).joints[:, 0, 0]
        assert roughness(smoothed) < 0.5 * roughness(raw), method
        assert error(smoothed) < 0.75 * error(raw), method
        assert abs(lag(smoothed)) < 0.2, method
    # the measure sees a lag where there is one: a trailing mean over the same window comes 4 frames late
    trailing = np.convolve(raw, np.ones(9) / 9)[:frames]
    assert lag(trailing) > 3


@pytest.mark.parametrize(
    ("fps", "rotation"), [(24.0, 0), (25.0, 0), (30000 / 1001, 0), (30.0, 90)], ids=["24", "25", "29.97", "phone"]
)
def test_motion_keeps_the_videos_rate_and_shown_size(model, folder, fps, rotation):
    frames = 12
    stored = (64, 96)  # (H, W) as stored; the phone video is shown turned a quarter
    if rotation:  # stored on its side, so that it is shown upright
        figure = Figure.moving("red", (40, 10, 44, 16), (40, 40, 44, 16), frames)
    else:
        figure = walking("red", 10, 40, frames, height=44, width=16)
    video = figure_video([figure], frames=frames, size=stored, fps=fps)
    path = write_test_video(folder / f"rate-{fps:.3f}-{rotation}.mp4", video.frames, fps, rotation=rotation)
    motion = extract_motion(path, model)
    assert motion.fps == pytest.approx(fps, abs=1e-3)
    assert motion.num_frames == frames
    assert motion.image_size == (stored if rotation == 0 else stored[::-1])
    assert motion.frame_valid.all()
    assert motion.fov_deg == 55
    assert motion.source_format == "nlf-video" and motion.name == path.stem
    assert motion.metadata == {"video_path": path.name}


def test_given_intrinsics_set_the_field_of_view_and_depth(model, folder):
    video = figure_video([walking("red", 10, 90, frames=8)], frames=8, size=SIZE, fps=FPS)
    path = write_test_video(folder / "fov.mp4", video.frames, FPS)
    height, width = SIZE
    f = max(height, width) / (2 * math.tan(math.radians(40) / 2))
    intrinsics = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]])
    motion = extract_motion(path, model, ExtractOptions(intrinsics=intrinsics, smooth="none"))
    assert motion.fov_deg == pytest.approx(40)
    truth = expected_pelvis_mm(video.boxes["red"], "red", fov_deg=40)
    assert pelvis_error(motion, truth).max() < 50


def test_person_number_and_box_choose_who_is_followed(model, crossing):
    video, path = crossing
    red = expected_pelvis_mm(video.boxes["red"], "red")
    blue = expected_pelvis_mm(video.boxes["blue"], "blue")

    def on(motion, truth):  # (a figure's box after compression is within 2 px: 3 % of its depth)
        return bool((pelvis_error(motion, truth)[motion.frame_valid] < 120).all())

    second = extract_motion(path, model, ExtractOptions(person=1, smooth="none"))
    assert second.frame_valid.all()  # blue, in front, is never hidden
    assert on(second, blue) and not on(second, red)
    assert on(extract_motion(path, model, ExtractOptions(person=0, smooth="none")), red)
    with pytest.raises(ExtractionError, match="person 2 asked for, but 2 people are seen"):
        extract_motion(path, model, ExtractOptions(person=2))

    blue_box = tuple(float(v) for v in video.boxes["blue"][0])
    boxed = extract_motion(path, model, ExtractOptions(box=blue_box, smooth="none"))
    assert on(boxed, blue) and not on(boxed, red)
    red_box = tuple(float(v) + 2 for v in video.boxes["red"][0])  # roughly drawn
    assert on(extract_motion(path, model, ExtractOptions(box=red_box, smooth="none")), red)
    with pytest.raises(ExtractionError, match="nobody was detected in the box"):
        extract_motion(path, model, ExtractOptions(box=(50, 0, 20, 8)))


def test_progress_each_batch_and_cancel_between_batches(model, crossing):
    _, path = crossing
    calls = []
    extract_motion(path, model, ExtractOptions(batch_size=8), progress=lambda *call: calls.append(call))
    batches = math.ceil(FRAMES / 8)
    detecting = [fraction for phase, fraction, _ in calls if phase == "decoding+detecting"]
    assert len(detecting) >= batches
    assert detecting == sorted(detecting) and detecting[-1] == 1.0
    phases = [phase for phase, _, _ in calls]
    assert sorted(set(phases), key=phases.index) == ["decoding+detecting", "tracking", "smoothing"]

    seen = []

    def progress(phase, fraction, message):
        seen.append(fraction)

    with pytest.raises(ExtractionCancelled):
        extract_motion(path, model, ExtractOptions(batch_size=8), progress=progress, cancelled=lambda: len(seen) >= 3)
    assert max(seen) < 0.5  # stopped after two of the seven batches


def test_unknown_options_are_refused(model, crossing):
    _, path = crossing
    with pytest.raises(ExtractionError, match="smooth"):
        extract_motion(path, model, ExtractOptions(smooth="wobbly"))
    with pytest.raises(ExtractionError, match="intrinsics"):
        extract_motion(path, model, ExtractOptions(intrinsics=np.eye(2)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_the_gpu_gives_the_cpus_motion(model_path, crossing):
    _, path = crossing
    cpu = extract_motion(path, model_path, ExtractOptions(device="cpu"))
    gpu = extract_motion(path, model_path, ExtractOptions(device="cuda"))
    np.testing.assert_allclose(gpu.joints, cpu.joints, atol=1e-2)
    np.testing.assert_array_equal(gpu.frame_valid, cpu.frame_valid)


DRIVING = SHARED_SAMPLE / "driving_00001.mp4"


@pytest.mark.skipif(not DRIVING.is_file(), reason="the official driving video is not beside the checkout")
def test_the_official_driving_video_with_the_foreground_standin(folder):
    model = load_nlf(write_standin_model(folder / "foreground.torchscript", mode="foreground"))
    motion = extract_motion(DRIVING, model, ExtractOptions(batch_size=16))
    assert motion.num_frames == 127
    assert motion.fps == 30
    assert motion.image_size == (1080, 604)
    assert motion.frame_valid.shape == (127,) and motion.valid_fraction > 0.9
    assert motion.metadata == {"video_path": "driving_00001.mp4"}
