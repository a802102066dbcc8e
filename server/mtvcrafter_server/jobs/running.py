"""A job's own code, where the models are: a render (a motion and an image through a backend to a video) or an
extraction (a video through the NLF model to a motion), from the job's input folder to a result file, and a
tokenize request. The in-process executor runs it in the server's worker thread; each Ray replica runs it in its
own process (:mod:`.ray_executor`). Neither the job store nor the data folder is touched here: what the job ends
as comes back as an :class:`Outcome`, and the executor records it.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mtvcrafter.backends import Backend, BackendConfig, Cancelled, Progress, RenderRequest

from ..paths import hide_server_paths, server_folders
from ..settings import Settings
from .extraction import Extractor
from .files import StorageError
from .params import ExtractParams, JobParams
from .store import CANCELLED, EXTRACT, FAILED, SUCCEEDED, Job

log = logging.getLogger("mtvcrafter_server")

#: at most this many progress events a second within a phase reach the job store
PROGRESS_PER_S = 10
NO_TOKENIZER = "no 4DMoT checkpoint configured: start the server with --tokenizer or --model-dir"


def backend_config(settings: Settings) -> BackendConfig:
    """Where the server's backends find their models; a CPU job leaves one core to the HTTP API, so status polls
    stay fast while it runs (a Ray replica renders with the same threads, so its videos are the same)."""
    return BackendConfig(
        model_dir=settings.model_dir,
        base_model_dir=settings.base_model_dir,
        tokenizer=settings.tokenizer,
        device=settings.device,
        trust_checkpoint=settings.trust_checkpoint,
        cpu_threads=max(1, (os.cpu_count() or 2) - 1),
        lora_dir=settings.lora_dir,
        lora_paths=False,  # a client names a file of the server's LoRA folders, never a path on the server
    )


@dataclass
class Outcome:
    """How a job's code ended: its final status and message, what the store records of its result (frames, fps,
    width, height, warnings), and the result file it wrote (succeeded only)."""

    status: str
    message: str
    fields: dict = field(default_factory=dict)
    made: Path | None = None
    #: an extraction whose NLF model failed to load: (the model file's stamp, the reason), for the server's
    #: extractor to show as the reason extraction is unavailable until the file changes
    extractor_failure: tuple | None = None


class TokenizerUnavailable(Exception):
    """No 4DMoT checkpoint is configured, or it cannot be loaded: the message says which, and the fix."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Throttle:
    """Whether a progress report is worth passing on: at most :data:`PROGRESS_PER_S` a second within a phase,
    unless it moves the job on by a tenth or more (so a fast job still shows its steps: at most ten such reports
    over a whole job); a new phase and the job's end always pass (the executor writes a phase's last held-back
    report when the next phase starts)."""

    def __init__(self) -> None:
        self._last = 0.0
        self._phase = ""
        self._progress = 0.0

    def passes(self, phase: str, progress: float) -> bool:
        now = time.monotonic()
        if (
            now - self._last < 1.0 / PROGRESS_PER_S
            and progress < 1.0
            and phase == self._phase
            and progress - self._progress < 0.1
        ):
            return False
        self._last, self._phase, self._progress = now, phase, progress
        return True


class JobRunner:
    """Runs one job's code with a server's backends and NLF model (kept loaded between jobs). ``storage_problem()``
    says whether the folder results are written to takes writes (a full disk shows as a broken pipe to the video
    encoder: a failure is reported as the disk's, not the job's)."""

    def __init__(
        self,
        settings: Settings,
        backends: dict[str, Backend],
        extractor: Extractor,
        storage_problem: Callable[[], StorageError | None],
    ):
        self.settings = settings
        self.backends = backends
        self.extractor = extractor
        self.storage_problem = storage_problem

    def run(self, job: Job, folder: Path, out_dir: Path, report: Progress, cancelled: Callable[[], bool]) -> Outcome:
        """Run ``job`` from its inputs in ``folder``; its result is written into ``out_dir``."""
        if job.kind == EXTRACT:
            return self.extract(job, folder, out_dir, report, cancelled)
        return self.render(job, folder, out_dir, report, cancelled)

    def _failure(self, job: Job, exc: Exception) -> str:
        """What a client reads of a job's failure (logged with its traceback)."""
        problem = self.storage_problem()
        if problem is not None:  # the storage error names the data folder on purpose: the operator's fix
            message = problem.message
        else:  # an exception's text may name any of the server's files: clients read it, so names only
            message = hide_server_paths(failure_message(exc), server_folders(self.settings))
        log.error("job %s failed: %s\n%s", job.id, message, traceback.format_exc())
        return message

    def render(self, job: Job, folder: Path, out_dir: Path, report: Progress, cancelled: Callable[[], bool]) -> Outcome:
        from PIL import Image

        from mtvcrafter.motion import load_motion

        backend = self.backends[job.backend]
        params = JobParams(**job.params)
        out = out_dir / f"{job.id}.mp4"
        try:
            motion = load_motion(folder / "motion.npz")
            with Image.open(folder / "reference.png") as im:
                image = im.convert("RGB")
            request = RenderRequest(motion, image, params.render_settings(), out)
            result = backend.run(request, report, cancelled)
        except Cancelled:
            out.unlink(missing_ok=True)
            backend.release()
            return Outcome(CANCELLED, "cancelled")
        except Exception as exc:
            out.unlink(missing_ok=True)
            message = self._failure(job, exc)
            backend.release()
            return Outcome(FAILED, message)
        except BaseException:  # it ends the worker thread (the executor replaces it): what it held goes
            out.unlink(missing_ok=True)
            backend.release()
            raise
        finally:
            return_memory()
        fields = dict(
            frames=result.frames, fps=result.fps, width=result.size[0], height=result.size[1], warnings=result.warnings
        )
        return Outcome(SUCCEEDED, "done", fields, made=Path(result.path))

    def extract(
        self, job: Job, folder: Path, out_dir: Path, report: Progress, cancelled: Callable[[], bool]
    ) -> Outcome:
        """Extract the motion of a job's video (the one file of its ``video`` folder, under the client's name)."""
        from mtvcrafter.extract import ExtractionCancelled, ExtractionError
        from mtvcrafter.motion import save_motion

        params = ExtractParams(**job.params)
        started = time.monotonic()

        def progress(phase: str, fraction: float, message: str = "") -> None:
            elapsed = time.monotonic() - started
            eta = elapsed * (1.0 - fraction) / fraction if 0.05 <= fraction < 1.0 and elapsed > 1.0 else None
            report(phase, fraction, message, eta)

        out = out_dir / f"{job.id}.npz"
        try:
            videos = [p for p in (folder / "video").iterdir() if p.is_file()] if (folder / "video").is_dir() else []
            if len(videos) != 1:
                raise FileNotFoundError(f"the video of job {job.id} is missing from its folder")
            motion = self.extractor.run(videos[0], params, progress, cancelled)
            motion.notes = tuple(hide_server_paths(n, server_folders(self.settings)) for n in motion.notes)
            save_motion(motion, out)
        except ExtractionCancelled:
            out.unlink(missing_ok=True)
            return Outcome(CANCELLED, "cancelled")
        except ExtractionError as exc:  # the video or the model: one line for the client, no traceback needed
            out.unlink(missing_ok=True)
            message = hide_server_paths(" ".join(str(exc).split()), server_folders(self.settings))
            log.error("job %s failed: %s", job.id, message)
            return Outcome(FAILED, message, extractor_failure=self.extractor.failure())
        except Exception as exc:
            out.unlink(missing_ok=True)
            return Outcome(FAILED, self._failure(job, exc), extractor_failure=self.extractor.failure())
        except BaseException:  # it ends the worker thread (the executor replaces it)
            out.unlink(missing_ok=True)
            raise
        finally:
            return_memory()
        valid = motion.frame_valid
        seen = int(valid.sum()) if valid is not None else motion.num_frames
        height, width = motion.camera_image_size
        fields = dict(frames=motion.num_frames, fps=motion.fps, width=width, height=height, warnings=motion.warnings())
        message = f"done: the performer was found in {seen} of {motion.num_frames} frames"
        return Outcome(SUCCEEDED, message, fields, made=out)

    def tokenize(self, joints_mm, reconstruction: bool = False) -> dict:
        """What 4DMoT makes of ``joints_mm`` ``(T, 24, 3)``: the answer of ``POST /v1/tokenize``. A
        :class:`TokenizerUnavailable` when no checkpoint is configured or it cannot be loaded."""
        try:
            tokenizer = self.backends["preview"].tokenizer()
        except Exception as exc:  # a missing or unreadable checkpoint: the server's setting, not the request
            raise TokenizerUnavailable(f"the configured 4DMoT checkpoint cannot be loaded: {exc}") from None
        if tokenizer is None:
            raise TokenizerUnavailable(NO_TOKENIZER)
        result = tokenizer.reconstruct(joints_mm)
        return {
            "frames": int(joints_mm.shape[0]),
            "latent_frames": int(result.codes.shape[0]),
            "codes": result.codes.tolist(),
            "vq_loss": result.vq_loss,
            "mpjpe_mm": result.mpjpe_mm,
            "joint_error_mm": [float(v) for v in result.joint_error_mm],
            "warning": result.warning,
            "reconstruction_mm": result.reconstruction_mm.round(2).tolist() if reconstruction else None,
        }


def failure_message(exc: Exception) -> str:
    name = type(exc).__name__
    if name == "OutOfMemoryError" or "out of memory" in str(exc).lower():
        return "out of GPU memory: try a smaller size or fewer frames; the server goes on with the next job"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    return f"{name}: {text}"[:500]


def return_memory() -> None:
    """Give the memory a job freed back to the system (glibc keeps freed heap pages, so the server's resident
    size would swing by hundreds of MB between jobs without growing)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to do
        pass
