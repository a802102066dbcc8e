"""Backends that run the MV-DiT diffusers pipeline: ``tiny`` (seeded random weights, CPU, seconds) and
``mvdit-7b`` (the authors' MV-DiT-7B on CogVideoX-5B from ``model_dir``). The pipeline is built once per
precision and offload mode and then kept loaded."""

from __future__ import annotations

import gc
import time

from mtvcrafter import official

from .base import Backend, RenderRequest, RenderResult, file_stamp, never_cancelled, no_progress
from .errors import BackendError, Cancelled
from .settings import MODEL_SETTINGS, RenderSettings

#: share of the progress bar the denoising steps take (the rest: tokenizing, decoding, encoding the mp4)
DENOISING_SHARE = 0.9


class PipelineBackend(Backend):
    """A backend running an MTVCrafter diffusers pipeline; subclasses say how it is built and called
    (:meth:`load`, :meth:`call_arguments`). This one runs :class:`mtvcrafter.dit.MTVCrafterPipeline` (7B)."""

    default_steps = official.STEPS
    default_guidance = official.GUIDANCE
    default_seed = official.SEED
    size_multiple = 16
    takes = (*MODEL_SETTINGS, "reference_encoding")
    #: said when the backend runs on the CPU anyway (None: the CPU is fine for it)
    cpu_warning: str | None = None
    #: tile the VAE, as the official 7B script does (the official 17B script does not: its numerics differ)
    vae_tiling: bool = True
    #: warn when the tokenizer's vq loss says the motion is far from what it knows (not for random weights)
    vq_warnings: bool = True

    def __init__(self, config=None):
        super().__init__(config)
        self._pipe = None
        self._loaded_as: tuple | None = None
        self._scheduler_config: dict | None = None
        #: the offload mode the loaded pipeline runs in (``auto`` decided), and what a render should be told
        self._offload: str | None = None
        self._notes: list[str] = []

    def load(self, torch_dtype, settings: RenderSettings):
        """The pipeline with its weights in ``torch_dtype``, on the CPU, for ``settings``' :meth:`variant`."""
        raise NotImplementedError

    def device(self) -> str:
        import torch

        device = self.config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"device {device}: this machine or torch build has no CUDA GPU; use the cpu device")
        return device

    def dtype_name(self, settings: RenderSettings, device: str) -> str:
        return settings.dtype or ("bf16" if device.startswith("cuda") else "fp32")

    def pipeline(self, settings: RenderSettings, progress=no_progress, image=None):
        """The loaded pipeline for these settings' precision, offload mode and speed mode (built on first use;
        ``offload="auto"`` is decided then, for this render's size)."""
        import torch

        from mtvcrafter.dit.speed import prepare_pipeline

        device = self.device()
        dtype_name = self.dtype_name(settings, device)
        wanted = (device, dtype_name, settings.offload, settings.fast, self.variant(settings))
        with self._lock:
            if self._pipe is None or self._loaded_as != wanted:
                self._pipe = None  # the old one goes before the new one loads: never two in memory
                self.release()
                progress("loading model", 0.0, f"loading {self.name} in {dtype_name} (once; it stays loaded)")
                dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype_name]
                pipe = self.load(dtype, settings)
                width, height = self.output_size(settings, image)
                frames = min(settings.num_frames or 49, 49)
                offload, notes = prepare_pipeline(
                    pipe,
                    device,
                    offload=settings.offload,
                    fast=settings.fast,
                    compile_blocks=self.config.compile,
                    size=(height, width, frames),
                    guidance=(self.guidance(settings) or 0) > 1,
                )
                for note in notes:
                    progress("loading model", 0.0, note)
                if self.vae_tiling:
                    pipe.enable_vae_tiling()  # as the official script
                pipe.set_progress_bar_config(disable=True)
                if device == "cpu" and self.config.cpu_threads:
                    torch.set_num_threads(self.config.cpu_threads)
                self._scheduler_config = dict(pipe.scheduler.config)
                self._pipe, self._loaded_as = pipe, wanted
                self._offload, self._notes = offload, [n for n in notes if n.startswith("fp8")]
            return self._pipe

    def call_arguments(self, pipe, request: RenderRequest) -> dict:
        """The pipeline's keyword arguments for ``request`` besides the image, motion, frames and callback."""
        from mtvcrafter.dit import make_scheduler

        settings = request.settings
        scheduler = settings.scheduler or official.SCHEDULER
        pipe.register_modules(scheduler=make_scheduler(scheduler, config=self._scheduler_config))
        width, height = self.output_size(settings, request.image)
        return {
            "height": height,
            "width": width,
            "num_inference_steps": self.steps(settings),
            "guidance_scale": self.guidance(settings),
            "seed": self.seed(settings),
            "reference_encoding": settings.reference_encoding,
        }

    def run(self, request: RenderRequest, progress=no_progress, cancelled=never_cancelled) -> RenderResult:
        from mtvcrafter.render import write_mp4

        settings = request.settings
        self.check(settings)
        motion = request.motion
        pipe = self.pipeline(settings, progress, request.image)
        arguments = self.call_arguments(pipe, request)
        frames = min(settings.num_frames or motion.num_frames, motion.num_frames)
        progress("tokenizing", 0.0, "4DMoT motion tokens")
        start = time.perf_counter()

        def on_step(pipeline, step, timestep, tensors):
            if cancelled():
                pipeline.request_interrupt()
            done = step + 1
            total = pipeline.total_steps
            eta = (time.perf_counter() - start) / done * (total - done)
            window = f", window {pipeline.current_window + 1}" if total > pipeline.num_timesteps else ""
            progress("denoising", DENOISING_SHARE * done / total, f"step {done}/{total}{window}", eta)
            if done == total or (pipe.decodes_each_window and done % pipeline.num_timesteps == 0):
                progress("decoding", DENOISING_SHARE * done / total, f"VAE decode{window}")
            return tensors

        from mtvcrafter.dit.errors import StepInterrupted

        try:
            with pipe.interruptible(cancelled):  # cancel lands between transformer blocks, not only between steps
                result = pipe(request.image, motion, num_frames=frames, callback_on_step_end=on_step, **arguments)
        except StepInterrupted:
            pipe.maybe_free_model_hooks()
            raise Cancelled() from None
        if result.interrupted or cancelled():
            raise Cancelled()
        video = result.frames[0]
        progress("encoding video", 0.95, "writing the mp4")
        write_mp4(video, request.out, fps=motion.fps, total=len(video))
        warnings = [*self._notes, *(result.warnings() if self.vq_warnings else [])]
        if self.cpu_warning and self._loaded_as[0] == "cpu":
            warnings.insert(0, self.cpu_warning)
        return RenderResult(request.out, len(video), motion.fps, (arguments["width"], arguments["height"]), warnings)

    def release(self) -> None:
        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class TinyBackend(PipelineBackend):
    name = "tiny"
    description = "the MV-DiT pipeline with tiny random weights (CPU, seconds; the video is noise)"
    default_steps = 4
    default_side = 64
    max_side = 256
    vq_warnings = False  # its tokenizer has random weights: any motion is "far from what it knows"

    def load(self, torch_dtype, settings):
        from mtvcrafter.dit import tiny_pipeline

        return tiny_pipeline().to(dtype=torch_dtype)


class OfficialWeightsBackend(PipelineBackend):
    """A backend whose weights are a download of yanboding/MTVCrafter (``model_dir``) plus a base model."""

    #: the transformer's folder inside ``model_dir``, and the base model users are told to add
    transformer_dir: str = ""
    base_hint: str = ""

    def check_files(self, model_dir) -> None:
        """Raise (any exception; its message is the reason shown) when a file the backend needs is missing."""
        raise NotImplementedError

    def load_pipeline(self, torch_dtype):
        raise NotImplementedError

    def loaded(self, pipe, settings: RenderSettings):
        """``pipe`` prepared for ``settings`` before it moves to its device (nothing here)."""
        return pipe

    def status(self) -> tuple[bool, str]:
        model_dir = self.config.model_dir
        if model_dir is None:
            return (
                False,
                f"no model folder given (--model-dir: a download of yanboding/MTVCrafter with {self.base_hint})",
            )
        try:
            self.check_files(model_dir)
        except ImportError as exc:
            return False, f"the model stack is not installed ({exc}); pip install 'mtvcrafter[ml]'"
        except Exception as exc:  # noqa: BLE001 - any reason is shown to the user as the reason
            return False, str(exc)
        return True, ""

    def identity(self) -> str:
        model_dir = self.config.model_dir
        config = model_dir / self.transformer_dir / "config.json" if model_dir else None
        return (
            f"{super().identity()} model={file_stamp(model_dir)} config={file_stamp(config)} "
            f"base={file_stamp(self.config.base_model_dir)} device={self.config.device}"
        )

    def load(self, torch_dtype, settings):
        if self.config.model_dir is None:
            raise BackendError(
                f"{self.name} needs a model folder (--model-dir: a download of yanboding/MTVCrafter; see README)"
            )
        return self.loaded(self.load_pipeline(torch_dtype), settings)


class MVDiT7BBackend(OfficialWeightsBackend):
    name = "mvdit-7b"
    description = "MTVCrafter MV-DiT-7B on CogVideoX-5B (GPU)"
    cpu_warning = "no GPU: MV-DiT-7B on the CPU needs about 30 GB of memory (fp32) and hours per clip"
    transformer_dir = "MV-DiT/CogVideoX"
    base_hint = "CogVideoX-5b"

    def check_files(self, model_dir) -> None:
        from mtvcrafter.dit.layout import TOKENIZER_DIR, TRANSFORMER_DIR, find_base_dir
        from mtvcrafter.dit.loading import read_config, weight_files

        read_config(model_dir / TRANSFORMER_DIR, "yanboding/MTVCrafter")
        weight_files(model_dir / TRANSFORMER_DIR, "yanboding/MTVCrafter")
        if not (model_dir / TOKENIZER_DIR).exists():
            raise BackendError(f"{model_dir / TOKENIZER_DIR}: missing (from yanboding/MTVCrafter)")
        base = find_base_dir(model_dir, self.config.base_model_dir)
        read_config(base / "vae", "THUDM/CogVideoX-5b")

    def load_pipeline(self, torch_dtype):
        from mtvcrafter.dit import load_pipeline

        return load_pipeline(
            self.config.model_dir,
            self.config.base_model_dir,
            torch_dtype=torch_dtype,
            trust_checkpoint=self.config.trust_checkpoint,
        )
