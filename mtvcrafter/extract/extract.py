"""Video → motion: a performer's SMPL-24 joints from a driving video, through NLF.

The steps of :func:`extract_motion`: read the video's header; decode the frames as RGB at a constant rate in
batches and find the people in each batch with one model call; choose and follow the main person
(:mod:`mtvcrafter.extract.track`); mark the frames they were not seen in, fill those from the frames
around them; refuse a video where they were seen too rarely; smooth without lag. The result is a
:class:`~mtvcrafter.motion.Motion` at the video's own frame rate, in the video camera's space.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtvcrafter.motion.camera import DEFAULT_FOV_DEG
from mtvcrafter.motion.filters import fill_gaps, one_euro, savgol, savgol_window, true_runs
from mtvcrafter.motion.motion import Motion

from .errors import ExtractionCancelled, ExtractionError
from .nlf import Detections, NLFModel, check_intrinsics, default_intrinsics, fov_from_intrinsics, load_nlf
from .track import track_person
from .video import iter_video_frames, probe_video

SMOOTHING = ("savgol", "one-euro", "none")
#: The progress phases, in order.
PHASES = ("decoding+detecting", "tracking", "smoothing")

#: ``progress(phase, fraction 0..1, message)``
ProgressCallback = Callable[[str, float, str], None]


@dataclass
class ExtractOptions:
    """How :func:`extract_motion` works.

    Attributes:
        person: follow the N-th largest person of the first second (0 = the largest); default: the largest.
        box: follow the person in this box ``(x, y, w, h)`` (pixels of the first frames) instead.
        smooth: ``"savgol"`` (Savitzky–Golay, order 2, over a third of a second: ``savgol_window(fps)``),
            ``"one-euro"`` (the One-Euro filter run forward then backward) — both without lag — or ``"none"``.
        batch_size: frames per model call.
        device: where the model runs when it is given as a path (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        max_gap_s: gaps up to this long (seconds) are filled by a smooth curve through the frames around them;
            longer ones by a straight line, and named in the notes. Filled frames stay marked not valid.
        min_valid: the least share of frames the performer must be seen in (else ExtractionError).
        intrinsics: the camera's ``(3, 3)`` pixel matrix; default NLF's (55° across the larger side, centred).
        detector_threshold: the person detector's minimum score.
    """

    person: int | None = None
    box: tuple[float, float, float, float] | None = None
    smooth: str = "savgol"
    batch_size: int = 8
    device: str = "cpu"
    max_gap_s: float = 0.5
    min_valid: float = 0.5
    intrinsics: np.ndarray | None = None
    detector_threshold: float = 0.3

    def check(self) -> None:
        """Raises ExtractionError naming the first option that cannot be used."""
        if self.smooth not in SMOOTHING:
            raise ExtractionError(
                f"unknown smoothing {self.smooth!r}; use one of {', '.join(SMOOTHING)}", field="smooth"
            )
        if self.person is not None and self.box is not None:
            raise ExtractionError("give either a person number or a box, not both", field="person")
        if self.person is not None and (
            isinstance(self.person, bool) or not isinstance(self.person, int | np.integer) or self.person < 0
        ):
            raise ExtractionError(f"must be a whole number from 0 (the largest), got {self.person!r}", field="person")
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int | np.integer)
            or self.batch_size < 1
        ):
            raise ExtractionError(f"must be a whole number from 1, got {self.batch_size!r}", field="batch_size")
        if not (isinstance(self.max_gap_s, int | float) and 0 <= self.max_gap_s < float("inf")):
            raise ExtractionError(f"must be seconds (0 or more), got {self.max_gap_s!r}", field="max_gap_s")
        if not (isinstance(self.min_valid, int | float) and 0 <= self.min_valid <= 1):
            raise ExtractionError(f"must be a share from 0 to 1, got {self.min_valid!r}", field="min_valid")
        if not (isinstance(self.detector_threshold, int | float) and 0 <= self.detector_threshold <= 1):
            raise ExtractionError(
                f"must be a score from 0 to 1, got {self.detector_threshold!r}", field="detector_threshold"
            )


def extract_motion(
    video: str | Path,
    model: NLFModel | str | Path,
    options: ExtractOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
    cancelled: Callable[[], bool] | None = None,
    max_pixels: int | None = None,
    max_duration_s: float | None = None,
) -> Motion:
    """The main performer's motion in ``video``.

    Args:
        video: a video file (any container ffmpeg reads; rotation metadata applied, a variable frame rate made
            constant).
        model: a loaded :class:`~mtvcrafter.extract.nlf.NLFModel`, or the path of NLF's TorchScript file
            (loaded onto ``options.device``).
        options: see :class:`ExtractOptions`.
        progress: called as ``progress(phase, fraction, message)`` after every batch of frames and at each
            phase (phases: ``"decoding+detecting"``, ``"tracking"``, ``"smoothing"``).
        cancelled: asked between batches; when it answers true, :class:`ExtractionCancelled` is raised.
        max_pixels, max_duration_s: refuse larger or longer videos (checked on the header, before decoding).

    Returns:
        a :class:`~mtvcrafter.motion.Motion`: joints ``(T, 24, 3)`` mm in the video camera's space (OpenCV
        axes), one per frame at the video's rate; ``image_size`` ``(H, W)`` as shown (after rotation);
        ``fov_deg`` (55, or from ``options.intrinsics``); ``frame_valid`` (False where the performer was not
        seen and the joints are filled in); ``joint_uncertainty`` (NLF's, in mm; filled frames carry the
        values interpolated from the frames around them, so tell them apart by ``frame_valid``); notes on the
        person followed, the frames filled and the smoothing.

    Raises:
        ExtractionError: an unusable video, model or option, nobody found, or the performer seen in fewer than
            ``options.min_valid`` of the frames.
        ExtractionCancelled: ``cancelled()`` answered true.
    """
    options = options or ExtractOptions()
    options.check()
    source = str(video)
    info = probe_video(video, max_pixels=max_pixels, max_duration_s=max_duration_s)
    size = (info.height, info.width)
    intrinsics = default_intrinsics(size) if options.intrinsics is None else check_intrinsics(options.intrinsics)
    if not isinstance(model, NLFModel):
        model = load_nlf(model, device=options.device)

    def report(phase: str, fraction: float, message: str) -> None:
        if progress is not None:
            progress(phase, min(max(fraction, 0.0), 1.0), message)

    def check_cancelled(done: int) -> None:
        if cancelled is not None and cancelled():
            raise ExtractionCancelled(f"{source}: cancelled after {done} frames")

    detections: list[Detections] = []
    expected = max(info.frames, 1)
    report("decoding+detecting", 0.0, f"0 of about {info.frames} frames")
    for frames in iter_video_frames(info, batch=options.batch_size, cancelled=cancelled):
        detections.extend(model.detect(frames, intrinsics=intrinsics, detector_threshold=options.detector_threshold))
        done = len(detections)
        report("decoding+detecting", done / max(expected, done), f"{done} of about {max(expected, done)} frames")
        check_cancelled(done)
    count = len(detections)
    report("decoding+detecting", 1.0, f"{count} frames")

    report("tracking", 0.0, "choosing the performer")
    try:
        track = track_person(detections, info.fps, person=options.person, box=options.box)
    except ExtractionError as exc:
        raise ExtractionError(str(exc), source=source) from None
    valid = track.valid
    seen = int(valid.sum())
    if seen < options.min_valid * count:
        raise ExtractionError(
            f"the performer was found in {100 * seen / count:.0f} % of the frames ({seen} of {count}), below the "
            f"{100 * options.min_valid:.0f} % needed; use a video where they stay in view, or choose them with a "
            "person number or a box",
            source=source,
        )
    joints = np.zeros((count, 24, 3), np.float64)
    uncertainty = np.zeros((count, 24), np.float64)
    for t, d in enumerate(track.indices):
        if d is not None:
            joints[t] = detections[t].joints[d]
            uncertainty[t] = detections[t].uncertainty[d]
    max_gap = int(round(options.max_gap_s * info.fps))
    joints, filled = fill_gaps(joints, valid, max_gap)
    uncertainty, _ = fill_gaps(uncertainty, valid, max_gap)
    notes = [track.description + (f"; lost and found again {track.resumed} time(s)" if track.resumed else "")]
    notes += _gap_notes(valid, filled, max_gap, info.fps)
    report("tracking", 1.0, f"the performer was seen in {seen} of {count} frames")

    report("smoothing", 0.0, options.smooth)
    if options.smooth == "savgol":
        window = savgol_window(info.fps)
        joints = savgol(joints, window, order=2, axis=0)
        notes.append(f"smoothed: Savitzky–Golay, {window} frames, order 2 (no lag)")
    elif options.smooth == "one-euro":
        joints = one_euro(joints, info.fps, zero_phase=True, axis=0)
        notes.append("smoothed: One-Euro, run forward and backward (no lag)")
    else:
        notes.append("not smoothed")
    if options.intrinsics is not None and not np.allclose(
        intrinsics[:2, 2], (info.width / 2, info.height / 2), atol=1.0
    ):
        notes.append("the camera's principal point is off the image centre; the motion's camera assumes it centred")
    motion = Motion(
        joints=joints.astype(np.float32),
        fps=info.fps,
        image_size=size,
        fov_deg=DEFAULT_FOV_DEG if options.intrinsics is None else fov_from_intrinsics(intrinsics, size),
        frame_valid=valid,
        joint_uncertainty=uncertainty.astype(np.float32),
        name=Path(video).stem,
        source=source,
        source_format="nlf-video",
        notes=tuple(notes),
        metadata={"video_path": Path(video).name},
    )
    report("smoothing", 1.0, f"{count} frames at {info.fps:g} fps")
    return motion


def _gap_notes(valid: np.ndarray, filled: np.ndarray, max_gap: int, fps: float) -> list[str]:
    """The motion's notes on the frames filled in: how many, and each gap too long for a smooth fill."""
    if not filled.any():
        return []
    gaps = true_runs(filled)
    notes = [
        f"the performer was not seen in {int(filled.sum())} frame(s) ({len(gaps)} gap(s)); their joints are "
        "filled from the frames around them and marked not valid"
    ]
    inner = [(a, b) for a, b in gaps if a > 0 and b < len(valid)]
    long = [(a, b) for a, b in inner if b - a > max_gap]
    if long:
        listed = ", ".join(f"{a}–{b - 1}" for a, b in long[:5]) + (" …" if len(long) > 5 else "")
        notes.append(
            f"{len(long)} gap(s) longer than {max_gap / fps:.2g} s (frames {listed}) are only a straight line "
            "between the frames around them"
        )
    ends = [(a, b) for a, b in gaps if a == 0 or b == len(valid)]
    if ends:
        notes.append("before the performer is first seen and after they are last seen, their pose is held")
    return notes
