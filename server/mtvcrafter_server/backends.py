"""Backends behind one interface: ``preview`` (CPU skeleton renderer), ``tiny`` (the tiny random MV-DiT
pipeline, CPU) and ``mvdit-7b`` (the real model from ``--model-dir``). Models load once and stay warm."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mtvcrafter.motion import Motion

from .config import ServerConfig
from .errors import Cancelled

#: report(phase, progress 0–1, message, eta_s=None)
Report = Callable[..., None]


@dataclass
class RunResult:
    path: Path
    frames: int
    fps: float
    size: tuple[int, int]
    warnings: list[str] = field(default_factory=list)


class Backend:
    name = ""
    description = ""
    uses_gpu = False

    def __init__(self, config: ServerConfig):
        self.config = config
        self._lock = threading.Lock()

    def status(self) -> tuple[bool, str]:
        """(available, why not)."""
        return True, ""

    def identity(self) -> str:
        """What besides a job's inputs decides its video (weights, device, version): part of the cache key."""
        from mtvcrafter import __version__

        return f"{self.name} {__version__}"

    def run(self, motion: Motion, image, params, out: Path, report: Report, cancelled: Callable[[], bool]) -> RunResult:
        raise NotImplementedError


def _file_stamp(path) -> str:
    if path is None:
        return "none"
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        return f"{path} (missing)"
    return f"{path.resolve()}@{stat.st_size}:{stat.st_mtime_ns}"


def _tokenizer_path(config: ServerConfig) -> Path | None:
    if config.tokenizer is not None:
        return Path(config.tokenizer)
    if config.model_dir is not None and (Path(config.model_dir) / "4DMoT").exists():
        return Path(config.model_dir) / "4DMoT"
    return None


class PreviewBackend(Backend):
    name = "preview"
    description = "the skeleton drawn over the reference image (CPU); with a tokenizer, its reconstruction too"

    def __init__(self, config: ServerConfig):
        super().__init__(config)
        self._tokenizer = None

    def tokenizer(self):
        path = _tokenizer_path(self.config)
        if path is None:
            return None
        with self._lock:
            if self._tokenizer is None:
                from mtvcrafter.tokenizer import MotionTokenizer

                self._tokenizer = MotionTokenizer.from_pretrained(path)
        return self._tokenizer

    def identity(self) -> str:
        path = _tokenizer_path(self.config)
        return f"{super().identity()} tokenizer={_file_stamp(path)}"

    def run(self, motion, image, params, out, report, cancelled):
        from mtvcrafter.render import render_preview

        if params.num_frames is not None and params.num_frames < motion.num_frames:
            motion = motion.slice(0, params.num_frames)
        overlay = None
        warnings: list[str] = []
        tokenizer = self.tokenizer()
        if tokenizer is not None:
            report("tokenizing", 0.0, "4DMoT reconstruction for the overlay")
            result = tokenizer.reconstruct(motion.joints)
            overlay = motion.with_joints(result.reconstruction_mm)
            if result.vq_loss > 0.1:
                warnings.append(f"vq loss {result.vq_loss:.3f} > 0.1: the video model may render this motion poorly")

        def progress(done: int, total: int | None) -> None:
            if cancelled():
                raise Cancelled()
            report("rendering", done / max(total or motion.num_frames, 1), f"frame {done}/{total}")

        render_preview(
            motion,
            image,
            out,
            size=(params.width, params.height),
            placement=params.placement,
            overlay=overlay,
            progress=progress,
        )
        return RunResult(out, motion.num_frames, motion.fps, (params.width, params.height), warnings)


class PipelineBackend(Backend):
    """A backend running :class:`mtvcrafter.dit.MTVCrafterPipeline`."""

    uses_gpu = True
    default_steps = 50

    def __init__(self, config: ServerConfig):
        super().__init__(config)
        self._pipe = None
        self._device = None

    def load(self):
        raise NotImplementedError

    def pipeline(self, report: Report):
        with self._lock:
            if self._pipe is None:
                report("loading model", 0.0, f"loading {self.name} (once; it stays loaded)")
                self._pipe = self.load()
                if self._pipe.device.type == "cpu":
                    import os

                    import torch

                    # leave a core to the HTTP API so status polls stay fast while a CPU job runs
                    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
                self._pipe.set_progress_bar_config(disable=True)
        return self._pipe

    def device(self) -> str:
        import torch

        return self.config.device or ("cuda" if torch.cuda.is_available() else "cpu")

    def run(self, motion, image, params, out, report, cancelled):
        import time

        from mtvcrafter.dit.layout import make_scheduler
        from mtvcrafter.render import write_mp4

        pipe = self.pipeline(report)
        scheduler = make_scheduler(params.scheduler, config=dict(pipe.scheduler.config))
        pipe.register_modules(scheduler=scheduler)
        frames = min(params.num_frames or motion.num_frames, motion.num_frames)
        report("tokenizing", 0.0, "4DMoT motion tokens")
        start = time.perf_counter()

        def on_step(pipeline, step, timestep, tensors):
            if cancelled():
                pipeline.request_interrupt()
            done = step + 1
            total = pipeline.total_steps
            elapsed = time.perf_counter() - start
            eta = elapsed / done * (total - done)
            window = f", window {pipeline.current_window + 1}" if total > pipeline.num_timesteps else ""
            report("denoising", 0.9 * done / total, f"step {done}/{total}{window}", eta_s=eta)
            return tensors

        result = pipe(
            image,
            motion,
            height=params.height,
            width=params.width,
            num_frames=frames,
            num_inference_steps=params.steps or self.default_steps,
            guidance_scale=params.guidance,
            seed=params.seed,
            reference_encoding=params.reference_encoding,
            callback_on_step_end=on_step,
        )
        if result.interrupted or cancelled():
            raise Cancelled()
        report("encoding video", 0.95, "writing the mp4")
        write_mp4(result.frames, out, fps=motion.fps, total=len(result.frames))
        return RunResult(out, len(result.frames), motion.fps, (params.width, params.height), result.warnings())

    def release(self) -> None:
        """Free memory after a failure (out of memory) or on shutdown."""
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class TinyBackend(PipelineBackend):
    name = "tiny"
    description = "the MV-DiT pipeline with tiny random weights (CPU, seconds; the video is noise)"
    default_steps = 4

    def load(self):
        from mtvcrafter.dit import tiny_pipeline

        return tiny_pipeline()


class MVDiT7BBackend(PipelineBackend):
    name = "mvdit-7b"
    description = "MTVCrafter MV-DiT-7B on CogVideoX-5B (GPU)"

    def status(self) -> tuple[bool, str]:
        if self.config.model_dir is None:
            return False, "no --model-dir given (a download of yanboding/MTVCrafter with CogVideoX-5b; see README)"
        try:
            from mtvcrafter.dit.layout import TOKENIZER_DIR, TRANSFORMER_DIR, find_base_dir
            from mtvcrafter.dit.loading import read_config, weight_files
        except ImportError as exc:
            return False, f"the model stack is not installed ({exc}); pip install 'mtvcrafter[ml]'"
        model_dir = Path(self.config.model_dir)
        try:
            read_config(model_dir / TRANSFORMER_DIR, "yanboding/MTVCrafter")
            weight_files(model_dir / TRANSFORMER_DIR, "yanboding/MTVCrafter")
            if not (model_dir / TOKENIZER_DIR).exists():
                return False, f"{model_dir / TOKENIZER_DIR}: missing (from yanboding/MTVCrafter)"
            base = find_base_dir(model_dir, self.config.base_model_dir)
            read_config(base / "vae", "THUDM/CogVideoX-5b")
        except Exception as exc:  # noqa: BLE001 - any reason is shown to the user as the reason
            return False, str(exc)
        return True, ""

    def identity(self) -> str:
        model_dir = Path(self.config.model_dir) if self.config.model_dir else None
        config = model_dir / "MV-DiT" / "CogVideoX" / "config.json" if model_dir else None
        return (
            f"{super().identity()} model={_file_stamp(model_dir)} config={_file_stamp(config)} "
            f"base={_file_stamp(self.config.base_model_dir)} device={self.config.device}"
        )

    def load(self):
        import torch

        from mtvcrafter.dit import load_pipeline

        device = self.device()
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        pipe = load_pipeline(self.config.model_dir, self.config.base_model_dir, torch_dtype=dtype)
        pipe.to(device)
        pipe.enable_vae_tiling()
        return pipe


BACKENDS = {"preview": PreviewBackend, "tiny": TinyBackend, "mvdit-7b": MVDiT7BBackend}
#: Best first: the default is the first available.
PREFERENCE = ("mvdit-7b", "preview")
