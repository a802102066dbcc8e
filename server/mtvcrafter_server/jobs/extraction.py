"""Extraction jobs (``POST /v1/extract``): the server's NLF model, named by ``--nlf`` (``MTVCRAFTER_NLF``),
loaded by the first extraction and kept loaded; whether extraction is available here and why not; the run of
one job, its video through :func:`mtvcrafter.extract.extract_motion` to a :class:`Motion` (cleaned by
:func:`mtvcrafter.motion.clean.clean_motion` when the params ask).

:mod:`mtvcrafter.extract` (torch) is imported by the first extraction, not when the server starts."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from mtvcrafter import __version__
from mtvcrafter.motion import Motion

from ..paths import hide_server_paths, server_folders
from ..settings import Settings
from .params import ExtractParams

#: the name extraction jobs carry as their backend
NLF = "nlf"
DESCRIPTION = "NLF pose estimator: a performer's 3D motion (SMPL-24 joints) from a video (POST /v1/extract)"
#: the share of a job's progress each phase of :func:`mtvcrafter.extract.extract_motion` takes (it reports each
#: phase from 0 to 1; a job's progress goes once from 0 to 1)
PHASE_SHARES = {"decoding+detecting": (0.0, 0.9), "tracking": (0.9, 0.95), "smoothing": (0.95, 1.0)}
#: then, with the params' ``clean``, the phase "cleaning" (at 1.0: :func:`~mtvcrafter.motion.clean.clean_motion` takes
#: a few seconds at most), its last message the note the motion gains


class Extractor:
    """The server's NLF model: available or why not (cheap, never loads it), loaded once and kept."""

    name = NLF
    description = DESCRIPTION

    def __init__(self, settings: Settings):
        self.settings = settings
        self.path: Path | None = settings.nlf
        self._model = None
        self._loaded_stamp: tuple[int, int] | None = None
        #: the model file's stamp when it failed to load, and why (shown until the file changes)
        self._failure: tuple[tuple[int, int], str] | None = None
        self._lock = threading.Lock()

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = Path(self.path).stat()
        except (OSError, TypeError):
            return None
        return stat.st_size, stat.st_mtime_ns

    def status(self) -> tuple[bool, str]:
        """``(available, why not)``."""
        if self.path is None:
            return False, (
                "no NLF model: start the server with --nlf PATH (or MTVCRAFTER_NLF), PATH the NLF TorchScript file "
                "(nlf_l_multi.torchscript, downloaded from the NLF project's releases)"
            )
        if not Path(self.path).is_file():
            return False, (
                f"the NLF model file {Path(self.path).name} does not exist on the server: start it with --nlf "
                "naming the downloaded TorchScript file"
            )
        failure = self._failure
        if failure is not None and failure[0] == self._stamp():
            return False, failure[1]
        return True, ""

    def failure(self) -> tuple | None:
        """Why the model last failed to load, with the file's stamp then: ``(stamp, reason)``; None when it did not."""
        return self._failure

    def remember_failure(self, failure: tuple) -> None:
        """Take a failure to load the model met elsewhere (a Ray replica's copy of this extractor, the same file) as
        the reason extraction is unavailable until the file changes."""
        self._failure = failure

    def identity(self) -> str:
        """What besides a video and its params decides the motion (the model file, the device, the version): part
        of an extraction's cache key."""
        size, mtime = self._stamp() or (0, 0)
        name = Path(self.path).name if self.path is not None else "none"
        return f"{NLF} {__version__} model={name}:{size}:{mtime} device={self.settings.device or 'auto'}"

    def device(self) -> str:
        """The server's device (``--device``), else the GPU when there is one."""
        if self.settings.device:
            return self.settings.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def model(self, progress: Callable[..., None]):
        """The loaded model (loaded now if it is not yet; a failure is remembered as the reason extraction is
        unavailable until the file changes)."""
        with self._lock:
            stamp = self._stamp()
            if self._model is not None and self._loaded_stamp == stamp:
                return self._model
            self._model = None
            from mtvcrafter.extract import load_nlf

            device = self.device()
            progress("loading model", 0.0, f"loading the NLF model on {device} (once; it stays loaded)")
            try:
                model = load_nlf(self.path, device=device)
            except Exception as exc:
                text = " ".join(str(exc).split()) or type(exc).__name__
                reason = hide_server_paths(f"the NLF model cannot be loaded: {text}", server_folders(self.settings))
                self._failure = (stamp, reason) if stamp is not None else None
                raise
            if device == "cpu":  # a core left to the HTTP API, as the render backends do
                import torch

                torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
            self._model, self._loaded_stamp, self._failure = model, stamp, None
            return model

    def run(
        self,
        video: Path,
        params: ExtractParams,
        progress: Callable[..., None],
        cancelled: Callable[[], bool],
    ) -> Motion:
        """The motion of the performer in ``video`` (its name: the video's). ``progress(phase, fraction, message)``
        is told the job's progress (each phase's share of it)."""
        from mtvcrafter.extract import ExtractOptions, extract_motion, probe_video
        from mtvcrafter.extract.nlf import default_intrinsics

        model = self.model(progress)
        limits = dict(max_pixels=self.settings.max_video_pixels, max_duration_s=self.settings.max_video_s)
        intrinsics = None
        if params.fov_deg is not None:
            info = probe_video(video, **limits)
            intrinsics = default_intrinsics((info.height, info.width), params.fov_deg)
        options = ExtractOptions(
            person=params.person,
            box=params.box,
            smooth=params.smooth,
            batch_size=params.batch_size,
            device=str(model.device),
            max_gap_s=params.max_gap_s,
            min_valid=params.min_valid,
            intrinsics=intrinsics,
            detector_threshold=params.detector_threshold,
        )

        def report(phase: str, fraction: float, message: str) -> None:
            start, end = PHASE_SHARES.get(phase, (0.0, 1.0))
            progress(phase, start + (end - start) * fraction, message)

        motion = extract_motion(video, model, options, progress=report, cancelled=cancelled, **limits)
        if params.clean is None:
            return motion
        from mtvcrafter.motion.clean import clean_motion

        # as `motion extract --clean S`: smoothing of strength S and the feet planted; the motion gains the note
        # "cleaned: …" (how far the joints moved), which the job's last progress event says too
        progress("cleaning", 1.0, f"cleaning the motion: smoothing of strength {params.clean:g}, the feet planted")
        motion, summary = clean_motion(motion, smooth=params.clean)
        progress("cleaning", 1.0, f"cleaned: {summary.summary()}")
        return motion
