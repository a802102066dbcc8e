"""``mtvcrafter bench extract``: video → motion (decoding, detection, tracking, smoothing) on this machine's CPU.

Whole :func:`~mtvcrafter.extract.extract_motion` calls are timed with the model called on batches of 8 and 16
frames, against the same extraction with one frame per model call (what the official script does), in the
same run. The model is the stand-in of :mod:`mtvcrafter.extract.standin` (pixel rules in TorchScript with
NLF's interface — not NLF), so the figures measure the pipeline around the model — decoding, the model
calls' overhead, tracking, gap filling, smoothing — not NLF's own speed.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

#: The official sample driving video, where the official sample data sits beside the checkout.
OFFICIAL_DRIVING_VIDEO = (
    Path(__file__).resolve().parents[3] / "shared" / "data" / "mtvcrafter-sample" / "driving_00001.mp4"
)
BATCH_SIZES = (8, 16)


@dataclass
class ExtractRow:
    """One configuration's median timing: whole extraction, and the part spent in the model's calls."""

    video: str
    setting: str
    frames: int
    seconds: float
    model_seconds: float | None
    baseline_seconds: float | None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds

    @property
    def ratio(self) -> float | None:
        return None if self.baseline_seconds is None else self.baseline_seconds / self.seconds


class _TimedModel:
    """Wraps a loaded model's ``detect`` to add up the time spent in it."""

    def __init__(self, model) -> None:
        self.model = model
        self.seconds = 0.0
        detect = model.detect

        def timed(frames, **kwargs):
            start = time.perf_counter()
            try:
                return detect(frames, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        model.detect = timed


def _median_runs(run: _Extraction, repeats: int) -> tuple[float, float]:
    """Median wall time and median time in the model of ``repeats`` extractions, after one warm-up call
    (TorchScript optimises a function on its first calls with each input shape)."""
    run()
    totals, in_model = [], []
    for _ in range(repeats):
        model_before = run.timer.seconds
        start = time.perf_counter()
        run()
        totals.append(time.perf_counter() - start)
        in_model.append(run.timer.seconds - model_before)
    return statistics.median(totals), statistics.median(in_model)


class _Extraction:
    def __init__(self, video: Path, timer: _TimedModel, batch_size: int) -> None:
        self.video = video
        self.timer = timer
        self.batch_size = batch_size
        self.frames = 0

    def __call__(self) -> None:
        from mtvcrafter.extract import ExtractOptions, extract_motion

        motion = extract_motion(self.video, self.timer.model, ExtractOptions(batch_size=self.batch_size))
        self.frames = motion.num_frames


def _video_rows(
    label: str, video: Path, model_path: Path, repeats: int, device: str = "cpu", decoding: bool = True
) -> list[ExtractRow]:
    from mtvcrafter.extract import iter_video_frames, load_nlf, probe_video

    info = probe_video(video)

    def decode() -> int:
        return sum(len(batch) for batch in iter_video_frames(info, batch=16))

    rows = []
    if decoding:
        decoded = decode()
        decode_s = statistics.median(_timed(decode) for _ in range(repeats))
        rows.append(ExtractRow(label, "decoding only (RGB frames, batches of 16)", decoded, decode_s, None, None))
    timer = _TimedModel(load_nlf(model_path, device=device))
    baseline = _Extraction(video, timer, 1)
    baseline_s, baseline_model_s = _median_runs(baseline, repeats)
    rows.append(
        ExtractRow(label, "1 frame per model call (baseline)", baseline.frames, baseline_s, baseline_model_s, None)
    )
    for batch_size in BATCH_SIZES:
        run = _Extraction(video, timer, batch_size)
        seconds, model_s = _median_runs(run, repeats)
        rows.append(ExtractRow(label, f"{batch_size} frames per model call", run.frames, seconds, model_s, baseline_s))
    return rows


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _first_second(video: Path, out: Path) -> Path:
    """The first second of ``video`` (stream copied, nothing re-encoded)."""
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", str(video)]
    subprocess.run(command + ["-t", "1", "-an", "-c", "copy", str(out)], check=True, capture_output=True)
    return out


def extract_benchmarks(
    quick: bool = False, video: Path | None = None, nlf: Path | None = None, device: str = "cpu"
) -> tuple[list[ExtractRow], list[str]]:
    """Rows for a synthetic figure video and the driving ``video`` (default: the official sample when present)
    with the stand-in model on the CPU, and with the real NLF file ``nlf`` on ``device`` when given; notes on
    what was left out. ``quick``: smaller videos, one timed run each."""
    import torch

    from mtvcrafter.extract import figure_video, write_standin_model, write_test_video

    repeats = 1 if quick else 5
    frames, side = (60, 128) if quick else (300, 256)
    notes = []
    rows = []
    with tempfile.TemporaryDirectory(prefix="mtvcrafter-bench-extract-") as folder:
        folder = Path(folder)
        figures = figure_video(frames=frames, size=(side, side), fps=30.0)
        synthetic = write_test_video(folder / "figures.mp4", figures.frames, figures.fps)
        label = f"figures {side}x{side}, {frames} frames"
        rows += _video_rows(label, synthetic, write_standin_model(folder / "figures.pt", "figures"), repeats)

        driving = video or (OFFICIAL_DRIVING_VIDEO if OFFICIAL_DRIVING_VIDEO.is_file() else None)
        if driving is None:
            notes.append(f"no driving video: {OFFICIAL_DRIVING_VIDEO} is not there; give one with --video")
        else:
            driving = Path(driving)
            if quick:
                driving = _first_second(driving, folder / f"first-second{driving.suffix}")
            from mtvcrafter.extract import probe_video

            info = probe_video(driving)
            label = (
                f"{Path(video or OFFICIAL_DRIVING_VIDEO).name}{' (1 s)' if quick else ''} {info.width}x{info.height}"
            )
            model_path = write_standin_model(folder / "foreground.pt", "foreground")
            rows += _video_rows(label, driving, model_path, repeats)
            if nlf is not None:
                rows += _video_rows(f"{label} [NLF, {device}]", driving, nlf, repeats, device, decoding=False)
        if nlf is not None:
            notes.append(f"[NLF, {device}]: the real model {Path(nlf).name} on {device}")
    notes.append(
        f"stand-in rows: CPU, torch {torch.__version__} with {torch.get_num_threads()} threads; median of "
        f"{repeats} run(s) after a warm-up; 'in model' is the time inside the model's calls, the rest is "
        "decoding, tracking, gap filling and smoothing"
    )
    return rows, notes


def print_extract_table(rows: list[ExtractRow], notes: list[str]) -> None:
    print(
        "mtvcrafter bench extract: video -> motion (decoding + detection + tracking + smoothing); rows without "
        "[NLF]: the stand-in model (pixel rules with NLF's interface, not NLF) on the CPU"
    )
    header = (
        f"{'video':<44} {'setting':<42} {'frames':>6} {'total':>8} {'frames/s':>9} {'in model':>9} {'vs 1/call':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        in_model = f"{r.model_seconds:8.3f}s" if r.model_seconds is not None else f"{'-':>9}"
        ratio = f"{r.ratio:8.2f}x" if r.ratio is not None else f"{'-':>9}"
        print(f"{r.video:<44} {r.setting:<42} {r.frames:>6} {r.seconds:7.3f}s {r.fps:9.1f} {in_model} {ratio}")
    for note in notes:
        print(note)


def extract_benchmark(
    quick: bool = False, video: str | Path | None = None, nlf: str | Path | None = None, device: str = "cpu"
) -> int:
    """Run and print the benchmark; exit status 0 (it has no goal: it shows where the time goes)."""
    rows, notes = extract_benchmarks(
        quick=quick, video=None if video is None else Path(video), nlf=None if nlf is None else Path(nlf), device=device
    )
    print_extract_table(rows, notes)
    return 0


__all__ = ["ExtractRow", "extract_benchmark", "extract_benchmarks", "print_extract_table"]
