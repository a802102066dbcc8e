"""MTVCrafterPipeline: reference image + 3-D motion → video, with MV-DiT-7B on CogVideoX-5B's VAE.

Numerics follow the official 7B pipeline: the reference latents are a sample of the VAE's latent
distribution without the scaling factor; initial noise is scaled by the scheduler's initial sigma;
the scheduler's input scaling is applied to the noisy latents before the reference latents are
concatenated on the channel axis; the timestep goes in as an integer; motion classifier-free
guidance uses the learned unconditional motion tokens; final latents are divided by the VAE scaling
factor before decoding.

Beyond the official script: any motion length (overlapping 49-frame windows, each later window
guided by the previous one's last latent frames and blended across the overlap, decoded as one
video), any size that is a multiple of 16, any diffusers scheduler, cancel between steps, and the
reference image encoded once instead of 49 times (see :meth:`MTVCrafterPipeline.encode_reference`).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import diffusers
import numpy as np
import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDPMScheduler, DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from .. import official
from ..motion import NUM_JOINTS, Motion, NormStats
from ..tokenizer import VQ_LOSS_WARNING, MotionTokenizer
from .errors import DiTError
from .layout import PIPELINE_INDEX, is_saved_pipeline, load_components, load_saved_components
from .loading import check_torch_dtype, refuse_unknown_keywords
from .schedulers import check_scheduler
from .steps import StepState
from .transformer_7b import MVDiT7BTransformer
from .windows import TEMPORAL_COMPRESSION, WINDOW_LATENTS, WindowPlan, plan_windows

#: What ``output_type`` may be, as in diffusers' video pipelines.
OUTPUT_TYPES = ("pil", "np", "pt", "latent")

#: The official defaults (SPEC section 5).
DEFAULT_SIZE = official.SIZE
DEFAULT_STEPS = official.STEPS
DEFAULT_GUIDANCE = official.GUIDANCE
DEFAULT_SEED = official.SEED
DEFAULT_FPS = official.FPS


@dataclass
class MotionWindow:
    """One 49-frame window of a motion: where it sits and what MV-DiT is conditioned on."""

    latent_start: int
    frame_start: int
    tokens: torch.Tensor  #: (312, D) motion tokens
    codes: np.ndarray | None = None  #: (13, 24) 4DMoT codes (None if tokens were given)
    vq_loss: float | None = None


@dataclass
class MTVCrafterPipelineOutput(BaseOutput):
    """``frames``, batched as in diffusers' video pipelines (one video: batch size 1), or None if interrupted:

    - ``output_type="pil"`` (default): a list of one list of ``T`` PIL images;
    - ``"np"``: float32 ``(1, T, H, W, 3)`` in [0, 1];
    - ``"pt"``: float32 tensor ``(1, T, 3, H, W)`` in [0, 1];
    - ``"latent"``: the final latents ``(1, F', C, h, w)`` (not divided by the VAE scaling factor).

    ``diffusers.utils.export_to_video(out.frames[0], path, fps=…)`` writes the video ("pil" or "np").
    """

    frames: object
    interrupted: bool = False
    windows: list = field(default_factory=list)
    plan: WindowPlan | None = None

    @property
    def vq_losses(self) -> list[float]:
        return [w.vq_loss for w in self.windows if w.vq_loss is not None]

    def warnings(self) -> list[str]:
        """One line per window whose vq loss is above :data:`VQ_LOSS_WARNING`."""
        last = (self.plan.frames if self.plan else 10**9) - 1
        out = []
        for i, w in enumerate(self.windows):
            if w.vq_loss is not None and w.vq_loss > VQ_LOSS_WARNING:
                out.append(
                    f"window {i} (frames {w.frame_start}–{min(w.frame_start + 48, last)}): vq loss {w.vq_loss:.3f} > "
                    f"{VQ_LOSS_WARNING}; the motion is far from what the tokenizer knows and the video may be poor"
                )
        return out


def prepare_reference(image, height: int, width: int) -> torch.Tensor:
    """The reference image as ``(1, 3, H, W)`` in [−1, 1]: resized to cover ``height × width`` keeping
    its aspect ratio (bilinear), then centre-cropped. Accepts a PIL image, a path or an HWC uint8 array."""
    if isinstance(image, (str, Path)):
        try:
            with Image.open(image) as im:
                image = im.convert("RGB")
        except (OSError, ValueError) as exc:
            raise DiTError(f"{image}: cannot read the reference image ({exc}); use a PNG or JPEG file") from None
    elif isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
            raise DiTError(f"a reference image array must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
        image = Image.fromarray(image[..., :3])
    elif isinstance(image, Image.Image):
        image = image.convert("RGB")
    else:
        raise DiTError(f"the reference image must be a PIL image, a path or an array, got {type(image).__name__}")
    w0, h0 = image.size
    scale = max(width / w0, height / h0)
    new_w, new_h = max(width, round(w0 * scale)), max(height, round(h0 * scale))
    image = image.resize((new_w, new_h), Image.BILINEAR)
    left, top = (new_w - width) // 2, (new_h - height) // 2
    image = image.crop((left, top, left + width, top + height))
    x = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1) / 255.0
    return (x * 2 - 1)[None]


def _joints(motion: Motion | np.ndarray) -> np.ndarray:
    """A motion's joints ``(T, 24, 3)`` mm as float32, checked."""
    joints = motion.joints if isinstance(motion, Motion) else np.asarray(motion, dtype=np.float32)
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3) or len(joints) == 0:
        raise DiTError(f"motion joints must be (T, 24, 3) in mm, got {joints.shape}")
    return joints


def _token_windows(motion_tokens) -> int:
    """How many windows ``motion_tokens`` holds: a list (one per window), ``(W, 312, D)`` or one ``(312, D)``."""
    if isinstance(motion_tokens, (list, tuple)):
        return len(motion_tokens)
    tokens = torch.as_tensor(motion_tokens)
    return 1 if tokens.ndim == 2 else tokens.shape[0]


class MTVCrafterPipeline(StepState, DiffusionPipeline):
    """Animate a reference image with a 3-D motion.

    >>> pipe = MTVCrafterPipeline.from_pretrained("models/MTVCrafter", torch_dtype=torch.bfloat16).to("cuda")
    >>> out = pipe(image="human.png", motion=load_motion("dance.pkl"))
    >>> export_to_video(out.frames[0], "dance.mp4", fps=20)   # T frames, T = the motion's frame count
    >>> pipe.save_pretrained("saved/")                         # diffusers' layout; from_pretrained reads it back

    Components (all registered, so ``pipe.components``, ``save_pretrained`` and ``from_pretrained``
    see them): ``transformer`` (:class:`MVDiT7BTransformer`), ``vae`` (CogVideoX's), ``scheduler``
    (``CogVideoXDPMScheduler`` by default; any DDPM-family diffusers scheduler, see
    :mod:`mtvcrafter.dit.schedulers`), ``motion_tokenizer`` (4DMoT; optional: without it, pass
    ``motion_tokens``) and ``stats`` (the normalisation statistics, whose mean joint positions place
    the motion tokens' rotary embeddings; default: the tokenizer's, else the official ones). The
    tokenizer is not a ``torch.nn.Module``: ``pipe.to()`` leaves it on its own device.

    As in diffusers' video pipelines, ``frames`` are batched (``out.frames[0]`` is the video) and
    ``output_type="np"`` gives floats in [0, 1]; before, ``frames`` was one unbatched video and "np"
    was uint8. ``latents=`` takes the initial noise (see :meth:`prepare_latents`).
    """

    model_cpu_offload_seq = "transformer->vae"
    _optional_components = ["motion_tokenizer", "stats"]
    _callback_tensor_inputs = ["latents"]

    def __init__(
        self,
        transformer: MVDiT7BTransformer,
        vae: AutoencoderKLCogVideoX,
        scheduler,
        motion_tokenizer: MotionTokenizer | None = None,
        stats: NormStats | None = None,
    ):
        super().__init__()
        if stats is None:
            stats = motion_tokenizer.stats if motion_tokenizer is not None else NormStats.official()
        self.register_modules(
            transformer=transformer, vae=vae, scheduler=scheduler, motion_tokenizer=motion_tokenizer, stats=stats
        )
        self.vae_scale_factor_spatial = 2 ** (len(vae.config.block_out_channels) - 1)
        self.vae_scale_factor_temporal = vae.config.temporal_compression_ratio
        if self.vae_scale_factor_temporal != TEMPORAL_COMPRESSION:
            raise DiTError(f"the VAE must compress time 4×, got {self.vae_scale_factor_temporal}")
        if transformer.config.in_channels != 2 * vae.config.latent_channels:
            raise DiTError(
                f"the transformer takes {transformer.config.in_channels} channels but the VAE's latents give "
                f"2 × {vae.config.latent_channels}; the transformer and VAE do not belong together"
            )

    # -- loading and saving -------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        base_model_dir: str | Path | None = None,
        subfolder: str | None = None,
        torch_dtype: torch.dtype | None = torch.float32,
        scheduler=None,
        tokenizer_device: str | torch.device = "cpu",
        trust_checkpoint: bool = False,
        local_files_only: bool | None = None,
        **kwargs,
    ) -> MTVCrafterPipeline:
        """Load from a local folder (``subfolder`` inside it, if given); nothing is downloaded.

        The folder is either a :meth:`save_pretrained` folder (it has ``model_index.json``) or the
        official layout (a download of yanboding/MTVCrafter, with CogVideoX-5b inside, beside it or
        at ``base_model_dir``); see :mod:`mtvcrafter.dit.layout`. ``torch_dtype``: the transformer's
        and the VAE's dtype (None: as stored). ``scheduler``: a name (``dpm``, ``ddim``, a diffusers
        class name) or an instance; default the saved one, or ``dpm`` for the official layout.
        ``tokenizer_device``: where 4DMoT runs. ``trust_checkpoint``: allow pickle code in ``.bin``/``.pt``
        weights. ``local_files_only`` is accepted for compatibility and changes nothing. Any other
        keyword is refused with a :class:`DiTError` (diffusers would silently drop it).
        """
        where = f"{cls.__name__}.from_pretrained"
        known = ["base_model_dir", "subfolder", "torch_dtype", "scheduler", "tokenizer_device", "trust_checkpoint",
                 "local_files_only"]  # fmt: skip
        refuse_unknown_keywords(where, kwargs, known)
        check_torch_dtype(where, torch_dtype)
        folder = Path(pretrained_model_name_or_path)
        if subfolder:
            folder = folder / subfolder
        options = dict(
            torch_dtype=torch_dtype,
            scheduler=scheduler,
            tokenizer_device=tokenizer_device,
            trust_checkpoint=trust_checkpoint,
        )
        if is_saved_pipeline(folder):
            if base_model_dir is not None:
                raise DiTError(
                    f"{where}: {folder} is a saved pipeline (it has {PIPELINE_INDEX}) holding its own VAE and "
                    "scheduler; base_model_dir is only for the official layout"
                )
            return cls(**load_saved_components(folder, **options))
        return cls(**load_components(folder, base_model_dir, **options))

    def save_pretrained(
        self,
        save_directory: str | Path,
        safe_serialization: bool = True,
        max_shard_size: int | str | None = None,
        **kwargs,
    ) -> None:
        """Write every component in diffusers' pipeline layout (see :mod:`mtvcrafter.dit.layout`), which
        :meth:`from_pretrained` reads back to a pipeline that renders the same frames.

        ``safe_serialization`` and ``max_shard_size`` go to the transformer's and the VAE's
        ``save_pretrained``; anything else (``push_to_hub``, …) is refused: nothing is uploaded."""
        refuse_unknown_keywords(
            f"{type(self).__name__}.save_pretrained", kwargs, ["safe_serialization", "max_shard_size"]
        )
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        weights = {"safe_serialization": safe_serialization}
        if max_shard_size is not None:
            weights["max_shard_size"] = max_shard_size
        self.transformer.save_pretrained(folder / "transformer", **weights)
        self.vae.save_pretrained(folder / "vae", **weights)
        self.scheduler.save_pretrained(folder / "scheduler")
        if self.motion_tokenizer is not None:
            self.motion_tokenizer.save_pretrained(folder / "motion_tokenizer")
        self.stats.save(folder / "stats")
        # diffusers would record our components under a guessed library ("dit", its DiT pipeline's
        # folder, for the transformer), so the index names each class's own module
        index = {"_class_name": type(self).__name__, "_diffusers_version": diffusers.__version__}
        for name, component in self.components.items():
            cls = type(component)
            library = "diffusers" if cls.__module__.startswith("diffusers.") else cls.__module__
            index[name] = [None, None] if component is None else [library, cls.__name__]
        # written last: a folder without it is not taken for a saved pipeline
        (folder / PIPELINE_INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    # -- state, progress, cancel --------------------------------------------------------------------

    def _offload_vae(self) -> None:
        """Under model CPU offload, move the VAE off the GPU once the reference is encoded (its hook
        would otherwise keep it there through denoising, the transformer being first in the chain)."""
        for hook in getattr(self, "_all_hooks", None) or []:
            if getattr(hook, "model", None) is self.vae:
                hook.offload()

    # -- motion -------------------------------------------------------------------------------------

    def motion_windows(self, joints_mm: np.ndarray, plan: WindowPlan) -> list[MotionWindow]:
        """Tokenize each window of a motion ``(T, 24, 3)`` mm with 4DMoT (with its vq loss)."""
        if self.motion_tokenizer is None:
            raise DiTError("this pipeline has no motion tokenizer (4DMoT); pass motion_tokens, or load one")
        joints = np.asarray(joints_mm, dtype=np.float32)
        if len(joints) < plan.padded_frames:
            joints = np.concatenate([joints, np.repeat(joints[-1:], plan.padded_frames - len(joints), axis=0)])
        windows = []
        for w, start in enumerate(plan.starts):
            a, b = plan.frame_range(w)
            codes, loss = self.motion_tokenizer.encode(joints[a:b], return_vq_loss=True)
            if codes.shape[0] != WINDOW_LATENTS:
                raise DiTError(f"the tokenizer gave {codes.shape[0]} latent frames for 49 motion frames, expected 13")
            windows.append(MotionWindow(start, a, self.motion_tokenizer.tokens(codes), codes, loss))
        return windows

    def _windows_from_tokens(self, motion_tokens, plan: WindowPlan) -> list[MotionWindow]:
        tokens = motion_tokens if isinstance(motion_tokens, (list, tuple)) else [motion_tokens]
        if len(tokens) == 1 and torch.as_tensor(tokens[0]).ndim == 3:
            tokens = list(torch.as_tensor(tokens[0]))
        want = (WINDOW_LATENTS * NUM_JOINTS, self.transformer.unconditional_motion_token.shape[1])
        if len(tokens) != plan.num_windows:
            raise DiTError(f"{plan.frames} frames need {plan.num_windows} windows of motion tokens, got {len(tokens)}")
        out = []
        for w, t in enumerate(tokens):
            t = torch.as_tensor(t)
            if tuple(t.shape) != want:
                raise DiTError(f"motion tokens of window {w} must be {want}, got {tuple(t.shape)}")
            out.append(MotionWindow(plan.starts[w], plan.frame_range(w)[0], t))
        return out

    # -- reference ----------------------------------------------------------------------------------

    @torch.no_grad()
    def encode_reference(
        self, reference: torch.Tensor, latent_frames: int, generator, mode: str = "image"
    ) -> torch.Tensor:
        """Reference latents ``(1, latent_frames, C, h, w)``: a sample of the VAE's latent distribution
        (no scaling factor, as the official model was trained).

        ``mode="video"`` encodes the image repeated over ``4·(latent_frames−1)+1`` frames, as the
        official script does. ``mode="image"`` (default) encodes it once: CogVideoX's VAE is causal
        and pads time by repeating the first frame, so a still video gives every latent frame the
        same distribution (mean and variance) as the single image; sampling each frame independently
        from that distribution therefore gives latents distributed exactly as the official ones,
        for ~1/49 of the encoding cost (tests check the equality of the distributions).
        """
        vae = self.vae
        x = reference.to(device=self._execution_device, dtype=vae.dtype)
        if mode == "video":
            frames = TEMPORAL_COMPRESSION * (latent_frames - 1) + 1
            dist = vae.encode(x[:, :, None].expand(-1, -1, frames, -1, -1)).latent_dist
            latents = dist.sample(generator=generator)  # (1, C, F', h, w)
        elif mode == "image":
            dist = vae.encode(x[:, :, None]).latent_dist
            mean = dist.mean.expand(-1, -1, latent_frames, -1, -1)
            std = dist.std.expand(-1, -1, latent_frames, -1, -1)
            noise = randn_tensor(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            latents = mean + std * noise
        else:
            raise DiTError(f"reference_encoding must be 'image' or 'video', got {mode!r}")
        return latents.permute(0, 2, 1, 3, 4)

    # -- the call -----------------------------------------------------------------------------------

    def check_inputs(
        self,
        image,
        motion: Motion | np.ndarray | None,
        motion_tokens,
        height: int,
        width: int,
        num_frames: int | None,
        num_inference_steps: int,
        guidance_scale: float,
        seed: int | None,
        reference_encoding: str,
        output_type: str,
        latents: torch.Tensor | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> None:
        """Refuse, before any work, settings the call cannot use (a :class:`DiTError` naming the setting).

        The reference image is read, and ``latents``' shape checked, where they are used
        (:func:`prepare_reference`, :meth:`prepare_latents`)."""
        bad = [k for k in callback_on_step_end_tensor_inputs or [] if k not in self._callback_tensor_inputs]
        if bad:
            raise DiTError(f"callback tensor inputs must be among {self._callback_tensor_inputs}, got {bad}")
        if image is None:
            raise DiTError("give a reference image (a PIL image, a path or an (H, W, 3) uint8 array)")
        if output_type not in OUTPUT_TYPES:
            raise DiTError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
        if reference_encoding not in ("image", "video"):
            raise DiTError(f"reference_encoding must be 'image' or 'video', got {reference_encoding!r}")
        if num_inference_steps < 1:
            raise DiTError(f"num_inference_steps must be at least 1, got {num_inference_steps}")
        if not np.isfinite(guidance_scale) or guidance_scale < 0:
            raise DiTError(f"guidance_scale must be a finite number ≥ 0, got {guidance_scale}")
        if seed is not None and not 0 <= int(seed) < 2**63 - 1:
            raise DiTError(f"seed must be between 0 and 2**63 - 2, got {seed}")
        if latents is not None and not isinstance(latents, torch.Tensor):
            raise DiTError(f"latents must be a torch.Tensor (see prepare_latents), got {type(latents).__name__}")
        check_scheduler(self.scheduler)
        unit = self.vae_scale_factor_spatial * self.transformer.config.patch_size
        for name, v in (("height", height), ("width", width)):
            if not isinstance(v, int) or v < unit or v % unit:
                raise DiTError(f"{name} must be a positive multiple of {unit} pixels, got {v}")
        if motion is None and motion_tokens is None:
            raise DiTError("give a motion (joints) or motion_tokens")
        if num_frames is not None and num_frames < 1:
            raise DiTError(f"num_frames must be at least 1, got {num_frames}")
        if motion is not None:
            joints = _joints(motion)
            if num_frames is not None and num_frames > len(joints):
                raise DiTError(f"num_frames {num_frames} is longer than the motion ({len(joints)} frames)")

    def prepare_latents(
        self,
        num_frames: int,
        height: int,
        width: int,
        dtype: torch.dtype,
        device: torch.device | str,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The initial noise of a ``num_frames``-frame video: ``(1, F', C, height/8, width/8)`` with
        ``F' = plan_windows(num_frames).latent_frames`` (the video padded to whole windows: 13 for up
        to 49 frames), drawn from ``generator``, or ``latents`` checked and moved to ``device``/``dtype``.

        Not yet scaled by the scheduler's ``init_noise_sigma``: each window is scaled as it starts, and
        the overlap guidance noises the previous window's latents with this same noise.
        ``pipe(…, latents=pipe.prepare_latents(…, generator=torch.Generator(device).manual_seed(s)), seed=s)``
        renders what ``pipe(…, seed=s)`` renders. With a ``generator`` instead of ``seed``, the call draws
        the scheduler's noise from it as given, as diffusers' pipelines do: pass the generator that drew
        the latents to continue its stream.
        """
        shape = (
            1,
            plan_windows(num_frames).latent_frames,
            self.vae.config.latent_channels,
            height // self.vae_scale_factor_spatial,
            width // self.vae_scale_factor_spatial,
        )
        if latents is None:
            return randn_tensor(shape, generator=generator, device=torch.device(device), dtype=dtype)
        if tuple(latents.shape) != shape:
            raise DiTError(
                f"latents must be {shape} (batch, latent frames, channels, height/8, width/8) for {num_frames} "
                f"frames at {height}×{width}, got {tuple(latents.shape)}; pipe.prepare_latents makes them"
            )
        return latents.to(device=device, dtype=dtype)

    def _step(self, noise_pred, t, prev_t, latents, state, generator):
        if isinstance(self.scheduler, CogVideoXDPMScheduler):
            latents, state = self.scheduler.step(
                noise_pred, state, t, prev_t, latents, eta=0.0, generator=generator, return_dict=False
            )
            return latents, state
        kwargs = {}
        params = inspect.signature(self.scheduler.step).parameters
        if "generator" in params:
            kwargs["generator"] = generator
        if "eta" in params:
            kwargs["eta"] = 0.0
        return self.scheduler.step(noise_pred, t, latents, return_dict=False, **kwargs)[0], state

    @torch.no_grad()
    def __call__(
        self,
        image,
        motion: Motion | np.ndarray | None = None,
        motion_tokens=None,
        joint_mean: np.ndarray | None = None,
        height: int = DEFAULT_SIZE,
        width: int = DEFAULT_SIZE,
        num_frames: int | None = None,
        num_inference_steps: int = DEFAULT_STEPS,
        guidance_scale: float = DEFAULT_GUIDANCE,
        generator: torch.Generator | None = None,
        seed: int | None = DEFAULT_SEED,
        latents: torch.Tensor | None = None,
        reference_generator: torch.Generator | None = None,
        reference_encoding: str = "image",
        window_stride: int = 10,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ):
        """Render ``motion`` (a :class:`Motion`, or joints ``(T, 24, 3)`` mm) performed by ``image``.

        Or give ``motion_tokens`` (``(312, D)`` for one window, or one per window of the plan) instead.
        ``num_frames``: frames to render (default: the motion's; at most the motion's).

        Returns :class:`MTVCrafterPipelineOutput` (or ``(frames,)`` without ``return_dict``): ``frames``
        batched as in diffusers' video pipelines, ``frames[0]`` being the video (see ``output_type`` there).

        Randomness: ``generator`` (or, when None, one on the execution device seeded with ``seed``)
        draws the initial noise and every scheduler noise, in the official order, so a seed gives the
        official script's noise on the same kind of device (CUDA and CPU streams differ). ``latents``:
        the initial noise instead of drawing it, ``(1, F', C, h, w)`` (see :meth:`prepare_latents`: with
        ``seed``, the seeded noise's own latents give the seeded video). The
        reference latents' sample is drawn from ``reference_generator`` (default: seeded with
        ``seed + 1``; torch's global generator, as the official script uses, when neither is given).

        ``callback_on_step_end(pipe, step, timestep, {"latents": …})`` is called
        after every step, ``step`` counting over all windows (out of ``pipe.total_steps``); it may
        return replacement latents, or call ``pipe.request_interrupt()`` to stop: the call then
        returns at once with ``frames=None`` and ``interrupted=True``.
        """
        tensor_inputs = callback_on_step_end_tensor_inputs or ["latents"]
        self.check_inputs(
            image,
            motion,
            motion_tokens,
            height,
            width,
            num_frames,
            num_inference_steps,
            guidance_scale,
            seed,
            reference_encoding,
            output_type,
            latents,
            tensor_inputs,
        )
        self._interrupt = False
        device = self._execution_device

        # 1. Motion → windows of tokens
        joints = _joints(motion) if motion is not None else None
        if joints is not None:
            frames = num_frames if num_frames is not None else len(joints)
        else:
            frames = num_frames or 49 + 40 * (_token_windows(motion_tokens) - 1)
        plan = plan_windows(frames, window_stride)
        if joints is not None:
            windows = self.motion_windows(joints[:frames], plan)
        else:
            windows = self._windows_from_tokens(motion_tokens, plan)
        mean = np.asarray(joint_mean if joint_mean is not None else self.stats.mean, np.float32)

        # 2. Noise for the whole video, then the reference latents
        dtype = self.transformer.dtype
        if generator is None and seed is not None:
            generator = torch.Generator(device=device).manual_seed(int(seed))
            if reference_generator is None:
                reference_generator = torch.Generator(device=device).manual_seed(int(seed) + 1)
            if latents is not None:
                # the seed's initial noise is drawn and replaced, so the scheduler's noise (CogVideoX's DPM
                # draws at every step) is the seeded call's: same seed and same latents, same video
                self.prepare_latents(frames, height, width, dtype, device, generator)
        noise = self.prepare_latents(frames, height, width, dtype, device, generator, latents)
        h, w = noise.shape[-2:]
        reference = self.encode_reference(
            prepare_reference(image, height, width), WINDOW_LATENTS, reference_generator, reference_encoding
        ).to(dtype)
        self._offload_vae()

        if reference.shape[-2:] != noise.shape[-2:]:
            raise DiTError(
                f"the VAE encoded the {height}×{width} reference to {tuple(reference.shape[-2:])} latents, expected "
                f"{(h, w)}; its tiling does not suit this size: call pipe.vae.disable_tiling()"
            )
        do_cfg = guidance_scale > 1.0
        final = torch.zeros_like(noise)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        steps_per_window = len(self.scheduler.timesteps)
        self._num_timesteps = steps_per_window
        self._total_steps = steps_per_window * plan.num_windows
        done = 0
        with self.progress_bar(total=self._total_steps) as bar:
            for index, window in enumerate(windows):
                self._current_window = index
                s = window.latent_start
                overlap = plan.overlap(index)
                # Shared latent frames [1, overlap) of this window are exactly the previous window's frames
                # s+1 … s+overlap-1 (4 video frames each). Latent 0 is not: the causal VAE gives the first
                # frame its own latent, where the whole video's latent s stands for 4 frames. So latent 0
                # is left free and dropped, and [1, overlap) is guided and blended.
                shared = slice(1, overlap) if overlap else slice(0, 0)
                known = final[:, s + 1 : s + overlap].float()
                ramp = torch.arange(1, max(overlap, 1), device=device, dtype=torch.float32) / max(overlap, 1)
                ramp = ramp.view(1, -1, 1, 1, 1)
                cond = window.tokens.to(device=device, dtype=dtype)[None]
                tokens = (
                    torch.cat([self.transformer.unconditional_tokens(1, WINDOW_LATENTS).to(device, dtype), cond])
                    if do_cfg
                    else cond
                )
                ref = torch.cat([reference] * 2) if do_cfg else reference

                self.scheduler.set_timesteps(num_inference_steps, device=device)
                timesteps = self.scheduler.timesteps
                latents = noise[:, s : s + WINDOW_LATENTS] * self.scheduler.init_noise_sigma
                state = None
                self.new_trajectory()
                for i, t in enumerate(timesteps):
                    if self._interrupt:
                        break
                    x = torch.cat([latents] * 2) if do_cfg else latents
                    x = self.scheduler.scale_model_input(x, t)
                    x = torch.cat([x.to(dtype), ref], dim=2)
                    with self.step_context(i, len(timesteps), t):
                        pred = self.transformer(x, t.expand(x.shape[0]).long(), tokens, mean, return_dict=False)[0]
                    pred = pred.float()
                    if do_cfg:
                        uncond, cond_pred = pred.chunk(2)
                        pred = uncond + guidance_scale * (cond_pred - uncond)
                    prev_t = timesteps[i - 1] if i > 0 else None
                    latents, state = self._step(pred, t, prev_t, latents, state, generator)
                    latents = latents.to(dtype)
                    if overlap and i + 1 < len(timesteps):
                        # the previous window's finished latents, noised to the next level, guide the overlap
                        level = timesteps[i + 1 : i + 2]
                        target = self.scheduler.add_noise(known, noise[:, s + 1 : s + overlap].float(), level)
                        head = latents[:, shared].float()
                        latents[:, shared] = (head + (1 - ramp) * (target.float() - head)).to(dtype)
                    if callback_on_step_end is not None:
                        outputs = callback_on_step_end(self, done, t, {k: latents for k in tensor_inputs}) or {}
                        latents = outputs.pop("latents", latents)
                    done += 1
                    bar.update()
                if self._interrupt:
                    break
                final[:, s + 1 : s + overlap] = (known + ramp * (latents[:, shared].float() - known)).to(dtype)
                first = 0 if index == 0 else overlap
                final[:, s + first : s + WINDOW_LATENTS] = latents[:, first:]

        if self._interrupt:
            self.maybe_free_model_hooks()
            out = MTVCrafterPipelineOutput(frames=None, interrupted=True, windows=windows, plan=plan)
            return out if return_dict else (None,)

        if output_type == "latent":
            video = final
        else:
            video = self._postprocess(self.decode_latents(final)[:frames], output_type)
        self.maybe_free_model_hooks()
        out = MTVCrafterPipelineOutput(frames=video, windows=windows, plan=plan)
        return out if return_dict else (video,)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``(1, F', C, h, w)`` → frames ``(T, 3, H, W)`` in [0, 1] (float32)."""
        z = latents.permute(0, 2, 1, 3, 4).to(self.vae.dtype) / self.vae.config.scaling_factor
        video = self.vae.decode(z).sample  # (1, 3, T, H, W) in [-1, 1]
        return ((video[0].float().permute(1, 0, 2, 3) + 1) / 2).clamp(0, 1)

    @staticmethod
    def _postprocess(video: torch.Tensor, output_type: str):
        """Frames ``(T, 3, H, W)`` in [0, 1] → one batched video (see :class:`MTVCrafterPipelineOutput`)."""
        if output_type == "pt":
            return video.cpu()[None]
        if output_type == "np":
            return video.permute(0, 2, 3, 1).cpu().numpy()[None]
        frames = (video.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).cpu().numpy()
        return [[Image.fromarray(f) for f in frames]]


def load_pipeline(model_dir: str | Path, base_model_dir: str | Path | None = None, **kwargs) -> MTVCrafterPipeline:
    """:meth:`MTVCrafterPipeline.from_pretrained`, as a function."""
    return MTVCrafterPipeline.from_pretrained(model_dir, base_model_dir, **kwargs)
