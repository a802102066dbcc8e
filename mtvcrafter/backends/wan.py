"""Backends running MV-DiT-17B (:class:`mtvcrafter.dit.MTVCrafter17BPipeline`, on Wan2.1-I2V-14B, with a
text prompt): ``mvdit-17b`` (the authors' weights from ``model_dir``) and ``tiny-17b`` (seeded random
weights, CPU, seconds; the video is noise)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

from mtvcrafter import official

from .base import RenderRequest, file_stamp
from .errors import SettingsError
from .pipeline import OfficialWeightsBackend, PipelineBackend
from .settings import MAX_SIDE, MODEL_SETTINGS, RenderSettings

#: scheduler names the 17B takes (it was trained for flow matching; only the Euler solver is offered)
FLOW_SCHEDULERS = ("flow-euler", "FlowMatchEulerDiscreteScheduler")
LORA_SUFFIX = ".safetensors"


class Wan17BBackend(PipelineBackend):
    """What the 17B backends share: settings, defaults, sizes, the LoRA and the pipeline call."""

    default_steps = official.STEPS_17B
    default_guidance = official.GUIDANCE_17B
    default_seed = official.SEED_17B
    vae_tiling = False  # the official 17B script does not tile (tiling changes the latents)
    takes = (*MODEL_SETTINGS, "prompt", "negative_prompt", "lora")

    # -- settings -------------------------------------------------------------------------------------

    def steps(self, settings: RenderSettings) -> int | None:
        if settings.steps is None and settings.lora is not None:
            return official.STEPS_17B_LORA
        return super().steps(settings)

    def guidance(self, settings: RenderSettings) -> float | None:
        if settings.guidance is None and settings.lora is not None:
            return 1.0  # the FusionX LoRA is distilled to run without guidance
        return super().guidance(settings)

    def defaults(self) -> dict[str, object]:
        return {
            **super().defaults(),
            "prompt": official.PROMPT_17B,
            "negative_prompt": official.NEGATIVE_PROMPT_17B,
            "steps_with_lora": official.STEPS_17B_LORA,
        }

    def output_size(self, settings: RenderSettings, image=None) -> tuple[int, int]:
        """What was given; else the official aspect bucket of the reference image; one side given: the other
        from the reference's aspect, rounded to a multiple of 16."""
        if image is None:
            return settings.size
        size = official.size_17b(*image.size, settings.width, settings.height, self.size_multiple)
        if max(size) > MAX_SIDE:
            derived = "height" if settings.width else "width"
            raise SettingsError(
                derived,
                f"{derived}: the reference's aspect makes the video {size[0]}x{size[1]}, a side over {MAX_SIDE}; "
                "give both width and height",
            )
        return size

    def check(self, settings: RenderSettings) -> None:
        super().check(settings)
        if settings.scheduler is not None and settings.scheduler not in FLOW_SCHEDULERS:
            raise SettingsError(
                "scheduler", f"scheduler: {self.name} runs flow matching with the Euler solver (flow-euler) only"
            )
        if settings.lora is not None:
            self.lora_path(settings.lora)

    def lora_path(self, name: str) -> Path:
        """The LoRA file a render names, or :class:`SettingsError` saying where it was looked for."""
        if not name.endswith(LORA_SUFFIX):
            raise SettingsError("lora", f"lora: {name!r} is not a {LORA_SUFFIX} file (the only LoRA format read)")
        is_path = PurePosixPath(name).name != name or PureWindowsPath(name).name != name or name.startswith(".")
        if is_path and not self.config.lora_paths:
            raise SettingsError("lora", f"lora: give a file name from the server's LoRA folder, not a path: {name}")
        if is_path:
            path = Path(name).expanduser()
            if not path.is_file():
                raise SettingsError("lora", f"lora: {path}: no such file")
            return path
        folders = [self.config.lora_dir]
        if self.config.model_dir is not None:
            folders += [self.config.model_dir / "loras", self.config.model_dir / "wan2.1"]
        if self.config.lora_paths:
            folders.append(Path.cwd())
        folders = [f for f in folders if f is not None]
        for folder in folders:
            if (folder / name).is_file():
                return folder / name
        where = ", ".join(str(f) for f in folders) or "nowhere (no --lora-dir or --model-dir given)"
        raise SettingsError("lora", f"lora: {name} not found in {where}")

    def variant(self, settings: RenderSettings) -> str | None:
        return file_stamp(self.lora_path(settings.lora)) if settings.lora else None

    def loaded(self, pipe, settings: RenderSettings):
        """``pipe`` with the render's LoRA merged in (a pipeline is kept per LoRA: merging is not undone)."""
        if settings.lora:
            from mtvcrafter.dit import merge_lora

            merge_lora(pipe.transformer, self.lora_path(settings.lora))
        return pipe

    # -- the call -------------------------------------------------------------------------------------

    def call_arguments(self, pipe, request: RenderRequest) -> dict:
        settings = request.settings
        width, height = self.output_size(settings, request.image)
        return {
            "prompt": settings.prompt if settings.prompt is not None else official.PROMPT_17B,
            "negative_prompt": (
                settings.negative_prompt if settings.negative_prompt is not None else official.NEGATIVE_PROMPT_17B
            ),
            "height": height,
            "width": width,
            "num_inference_steps": self.steps(settings),
            "guidance_scale": self.guidance(settings),
            "seed": self.seed(settings),
        }


class Tiny17BBackend(Wan17BBackend):
    name = "tiny-17b"
    description = "the MV-DiT-17B pipeline with tiny random weights and a prompt (CPU, seconds; the video is noise)"
    default_steps = 4
    default_side = 64
    max_side = 256
    vq_warnings = False  # its tokenizer has random weights

    def output_size(self, settings: RenderSettings, image=None) -> tuple[int, int]:
        """As the 17B's, at an eighth of the size where none is given (the official bucket's aspect, 64 × 64 for a
        square image)."""
        if settings.width or settings.height or image is None:
            return super().output_size(settings, image)
        width, height = official.aspect_bucket(*image.size)
        return max(16, width // 8 // 16 * 16), max(16, height // 8 // 16 * 16)

    def steps(self, settings: RenderSettings) -> int | None:
        return settings.steps if settings.steps is not None else self.default_steps

    def defaults(self) -> dict[str, object]:
        return {k: v for k, v in super().defaults().items() if k != "steps_with_lora"}

    def load(self, torch_dtype, settings):
        from mtvcrafter.dit import tiny_pipeline_17b

        pipe = tiny_pipeline_17b()
        if torch_dtype != pipe.transformer.dtype:
            pipe.to(dtype=torch_dtype)
        return self.loaded(pipe, settings)


class MVDiT17BBackend(Wan17BBackend, OfficialWeightsBackend):
    name = "mvdit-17b"
    description = "MTVCrafter MV-DiT-17B on Wan2.1-I2V-14B, with a text prompt (GPU)"
    cpu_warning = "no GPU: MV-DiT-17B on the CPU needs about 90 GB of memory (fp32) and days per clip"
    transformer_dir = "MV-DiT/Wan-2-1"
    base_hint = "wan2.1/"

    def check_files(self, model_dir) -> None:
        from mtvcrafter.dit.layout_17b import check_model_dir

        check_model_dir(model_dir, self.config.base_model_dir)

    def load_pipeline(self, torch_dtype):
        from mtvcrafter.dit import load_pipeline_17b

        return load_pipeline_17b(
            self.config.model_dir,
            self.config.base_model_dir,
            torch_dtype=torch_dtype,
            trust_checkpoint=self.config.trust_checkpoint,
        )
