"""MTVCrafter17BPipeline: reference image + 3-D motion + text prompt → video, with MV-DiT-17B on Wan2.1.

Numerics follow the official 17B script (SPEC §6): umT5 features of the prompt (512 tokens, zeros after
the prompt) and of the negative prompt for text classifier-free guidance (uncond first, scale 6.0; the
motion tokens are the same in both branches); the reference resized to the output size (bicubic, no
crop); the InP condition: 4 mask channels (1 on the kept frames) and the VAE latents (mode, Wan's
per-channel normalisation) of the reference followed by zero frames; the CLIP features as the official
computes them (:func:`~mtvcrafter.dit.wan_base.clip_image_features`); flow-matching Euler with shift 5.0.

Any length: 49-frame windows every 40 frames. Window ``k > 0`` is conditioned on the previous window's
last 9 decoded frames: they are VAE-encoded (followed by zero frames) as its condition latents, its mask
marks their 3 latent frames, its CLIP image is the last of them, and after every step its first 3
latent frames are replaced by those latents noised to the next noise level (with seeded noise; the
official draws it unseeded). The video is each window's frames without its last 9, then the last
window whole, cut to the motion's length. Motions shorter than 49 frames are padded (last pose held)
and the video cut back. The official script stops after two windows and skips motions under 89 frames.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from diffusers import AutoencoderKLWan, DiffusionPipeline, FlowMatchEulerDiscreteScheduler
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from .. import official
from ..motion import Motion, NormStats
from ..tokenizer import VQ_LOSS_WARNING, MotionTokenizer
from .errors import DiTError
from .steps import StepState
from .transformer_17b import MVDiT17BTransformer
from .wan_base import clip_image_features, encode_text

OUTPUT_TYPES = ("pil", "np", "pt", "latent")
WINDOW = official.WINDOW_FRAMES_17B
OVERLAP = official.OVERLAP_FRAMES_17B
STRIDE = WINDOW - OVERLAP
TEMPORAL = 4
#: latent frames the previous window's overlap frames give (9 frames → 3)
OVERLAP_LATENTS = (OVERLAP - 1) // TEMPORAL + 1
#: the scheduler the 17B was trained for (the official configuration)
WAN_SCHEDULER = {"num_train_timesteps": 1000, "shift": official.SHIFT_17B, "use_dynamic_shifting": False}


def make_scheduler_17b() -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(**WAN_SCHEDULER)


def window_starts(frames: int) -> list[int]:
    """First frame of each 49-frame window for a video of ``frames`` frames (every 40 frames)."""
    if frames < 1:
        raise DiTError(f"a video needs at least one frame, got {frames}")
    count = 1 if frames <= WINDOW else -(-(frames - WINDOW) // STRIDE) + 1
    return [k * STRIDE for k in range(count)]


@dataclass
class Window17B:
    frame_start: int
    tokens: torch.Tensor  #: (13·24, 3072)
    vq_loss: float | None = None


@dataclass
class MTVCrafter17BPipelineOutput(BaseOutput):
    """``frames`` batched as in diffusers' video pipelines (``frames[0]`` is the video), or None if
    interrupted: "pil" a list of one list of PIL images, "np" float32 ``(1, T, H, W, 3)`` in [0, 1], "pt"
    ``(1, T, 3, H, W)``, "latent" the windows' final latents ``(W, 16, 13, h, w)``."""

    frames: object
    interrupted: bool = False
    windows: list = field(default_factory=list)

    def warnings(self) -> list[str]:
        return [
            f"window {i} (frames {w.frame_start}–{w.frame_start + WINDOW - 1}): vq loss {w.vq_loss:.3f} > "
            f"{VQ_LOSS_WARNING}; the motion is far from what the tokenizer knows and the video may be poor"
            for i, w in enumerate(self.windows)
            if w.vq_loss is not None and w.vq_loss > VQ_LOSS_WARNING
        ]


def _joints(motion) -> np.ndarray:
    joints = motion.joints if isinstance(motion, Motion) else np.asarray(motion, dtype=np.float32)
    if joints.ndim != 3 or joints.shape[1:] != (24, 3) or len(joints) == 0:
        raise DiTError(f"motion joints must be (T, 24, 3) in mm, got {joints.shape}")
    return joints


def _reference(image, width: int, height: int) -> torch.Tensor:
    """The reference as ``(1, 3, H, W)`` in [−1, 1], resized to the output size (bicubic, no crop, as official)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise DiTError(f"the reference image must be a PIL image or an (H, W, 3) uint8 array, got {type(image)}")
    resized = image.convert("RGB").resize((width, height), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(resized, dtype=np.float32)).permute(2, 0, 1) / 255.0
    return (x * 2 - 1)[None]


class MTVCrafter17BPipeline(StepState, DiffusionPipeline):
    """Animate a reference image with a 3-D motion and a text prompt (MV-DiT-17B).

    >>> pipe = load_pipeline_17b("models/MTVCrafter", torch_dtype=torch.bfloat16).to("cuda")
    >>> out = pipe(image, motion, prompt="A woman dances in a park.")
    >>> export_to_video(out.frames[0], "dance.mp4", fps=motion.fps)

    Components: ``transformer`` (:class:`MVDiT17BTransformer`), ``vae`` (``AutoencoderKLWan``),
    ``text_encoder`` (umT5), ``tokenizer``, ``image_encoder`` (CLIP ViT-H), ``scheduler``
    (flow-matching Euler, shift 5), ``motion_tokenizer`` (4DMoT; optional with ``motion_tokens``) and
    ``stats`` (whose mean joint positions place the motion tokens).
    """

    model_cpu_offload_seq = "text_encoder->image_encoder->transformer->vae"
    decodes_each_window = True
    _optional_components = ["motion_tokenizer", "stats"]
    _callback_tensor_inputs = ["latents"]

    def __init__(
        self,
        transformer: MVDiT17BTransformer,
        vae: AutoencoderKLWan,
        text_encoder,
        tokenizer,
        image_encoder,
        scheduler: FlowMatchEulerDiscreteScheduler,
        motion_tokenizer: MotionTokenizer | None = None,
        stats: NormStats | None = None,
    ):
        super().__init__()
        if stats is None:
            stats = motion_tokenizer.stats if motion_tokenizer is not None else NormStats.official()
        self.register_modules(
            transformer=transformer,
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            image_encoder=image_encoder,
            scheduler=scheduler,
            motion_tokenizer=motion_tokenizer,
            stats=stats,
        )
        self.vae_scale_factor_spatial = vae.config.scale_factor_spatial
        if vae.config.scale_factor_temporal != TEMPORAL:
            raise DiTError(f"the VAE must compress time 4×, got {vae.config.scale_factor_temporal}")
        self._prompt_cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._encoder_home: torch.device | None = None

    # -- memory ----------------------------------------------------------------------------------------

    def enable_encoder_release(self, home: str | torch.device = "cpu") -> None:
        """Keep the text encoder (umT5-XXL, 11 GB in bf16) and CLIP (2.5 GB) on ``home`` between uses: each
        moves to the execution device for its work and back right after, so denoising has the GPU to itself
        (``pipe.to("cuda")`` alone keeps both there for the whole render). The same modules compute the same
        numbers; a prompt is encoded once and cached, so umT5 moves only for a new prompt, CLIP once per window.
        Not needed with offloading (``enable_model_cpu_offload``, ``enable_group_offload``), which moves them."""
        self._encoder_home = torch.device(home)
        self.text_encoder.to(self._encoder_home)
        self.image_encoder.to(self._encoder_home)

    @contextmanager
    def _encoder_on(self, encoder: torch.nn.Module, device) -> Iterator[None]:
        """``encoder`` on ``device`` inside (when :meth:`enable_encoder_release` keeps it elsewhere), home after."""
        if self._encoder_home is None or torch.device(device) == self._encoder_home:
            yield
            return
        encoder.to(device)
        try:
            yield
        finally:
            encoder.to(self._encoder_home)
            if torch.device(device).type == "cuda":
                torch.cuda.empty_cache()

    # -- conditions ------------------------------------------------------------------------------------

    @torch.no_grad()
    def encode_prompt(self, prompt: str, device, dtype) -> torch.Tensor:
        """umT5 features ``(1, 512, 4096)`` of ``prompt``, cached (the same prompt is encoded once)."""
        key = (prompt, str(device), dtype)
        hit = self._prompt_cache.get(key)
        if hit is not None:
            return hit
        with self._encoder_on(self.text_encoder, device):
            embeds = encode_text(self.tokenizer, self.text_encoder, [prompt], device=device, dtype=dtype)
        self._prompt_cache[key] = embeds
        while len(self._prompt_cache) > 4:
            self._prompt_cache.popitem(last=False)
        return embeds

    def _latent_stats(self, device):
        """Wan's per-channel latent mean and inverse std, float32 ``(1, 16, 1, 1, 1)`` (its ``scale``)."""
        cfg = self.vae.config
        mean = torch.tensor(cfg.latents_mean, device=device, dtype=torch.float32).view(1, -1, 1, 1, 1)
        inv_std = 1.0 / torch.tensor(cfg.latents_std, device=device, dtype=torch.float32).view(1, -1, 1, 1, 1)
        return mean, inv_std

    @torch.no_grad()
    def encode_condition(self, video: torch.Tensor) -> torch.Tensor:
        """VAE latents (the distribution's mode, normalised as Wan's VAE does: ``(z − mean) · (1/std)`` in
        float32) of ``video (1, 3, T, H, W)`` in [−1, 1]."""
        device = self._execution_device
        latents = self.vae.encode(video.to(device=device, dtype=self.vae.dtype)).latent_dist.mode()
        mean, inv_std = self._latent_stats(latents.device)
        return (latents.float() - mean) * inv_std

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents ``(1, 16, F', h, w)`` → frames ``(T, 3, H, W)`` in [0, 1], float32."""
        mean, inv_std = self._latent_stats(latents.device)
        video = self.vae.decode((latents.float() / inv_std + mean).to(self.vae.dtype)).sample
        return ((video[0].float().permute(1, 0, 2, 3) + 1) / 2).clamp(0, 1)

    def motion_windows(self, joints: np.ndarray, starts: list[int]) -> list[Window17B]:
        if self.motion_tokenizer is None:
            raise DiTError("this pipeline has no motion tokenizer (4DMoT); pass motion_tokens, or load one")
        padded = starts[-1] + WINDOW
        if len(joints) < padded:
            joints = np.concatenate([joints, np.repeat(joints[-1:], padded - len(joints), axis=0)])
        out = []
        for start in starts:
            codes, loss = self.motion_tokenizer.encode(joints[start : start + WINDOW], return_vq_loss=True)
            out.append(Window17B(start, self.motion_tokenizer.tokens(codes), loss))
        return out

    # -- the call -------------------------------------------------------------------------------------

    def check_inputs(self, image, motion, motion_tokens, height, width, num_frames, steps, guidance, output_type):
        if image is None:
            raise DiTError("give a reference image (a PIL image or an (H, W, 3) uint8 array)")
        if output_type not in OUTPUT_TYPES:
            raise DiTError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
        if steps < 1:
            raise DiTError(f"num_inference_steps must be at least 1, got {steps}")
        if not np.isfinite(guidance) or guidance < 0:
            raise DiTError(f"guidance_scale must be a finite number ≥ 0, got {guidance}")
        unit = self.vae_scale_factor_spatial * self.transformer.config.patch_size[1]
        for name, v in (("height", height), ("width", width)):
            if v is not None and (not isinstance(v, int) or v < unit or v % unit):
                raise DiTError(f"{name} must be a positive multiple of {unit} pixels, got {v}")
        if motion is None and motion_tokens is None:
            raise DiTError("give a motion (joints) or motion_tokens")
        if num_frames is not None and num_frames < 1:
            raise DiTError(f"num_frames must be at least 1, got {num_frames}")
        if motion is not None and num_frames is not None and num_frames > len(_joints(motion)):
            raise DiTError(f"num_frames {num_frames} is longer than the motion ({len(_joints(motion))} frames)")

    @torch.no_grad()
    def __call__(
        self,
        image,
        motion: Motion | np.ndarray | None = None,
        prompt: str = official.PROMPT_17B,
        negative_prompt: str = official.NEGATIVE_PROMPT_17B,
        motion_tokens=None,
        joint_mean: np.ndarray | None = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_inference_steps: int = official.STEPS_17B,
        guidance_scale: float = official.GUIDANCE_17B,
        seed: int | None = official.SEED_17B,
        generator: torch.Generator | None = None,
        overlap_generator: torch.Generator | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ):
        """Render ``motion`` (a :class:`Motion` or joints ``(T, 24, 3)`` mm) performed by ``image`` as ``prompt``
        says; or give ``motion_tokens`` (one ``(312, 3072)`` tensor per 49-frame window) instead.

        ``height``/``width``: default the official 512-pixel aspect bucket nearest the image's aspect (one
        given: the other from the image's aspect).
        ``num_frames``: default the motion's. ``guidance_scale`` ≤ 1 turns text guidance off (as with the
        FusionX LoRA). ``generator`` (default: seeded with ``seed`` on the execution device) draws each
        window's initial noise, in the official order; ``overlap_generator`` (default: seeded with
        ``seed + 1``) the noise of the overlap conditioning, which the official draws unseeded, so the
        windows' initial noise is the official stream.
        ``callback_on_step_end(pipe, step, timestep, {"latents": …})`` runs after each step (``step`` over
        all windows, of ``pipe.total_steps``); ``pipe.request_interrupt()`` stops the call before the
        next step, which then returns ``frames=None, interrupted=True``.
        """
        tensor_inputs = callback_on_step_end_tensor_inputs or ["latents"]
        bad = [k for k in tensor_inputs if k not in self._callback_tensor_inputs]
        if bad:
            raise DiTError(f"callback tensor inputs must be among {self._callback_tensor_inputs}, got {bad}")
        self.check_inputs(
            image, motion, motion_tokens, height, width, num_frames, num_inference_steps, guidance_scale, output_type
        )
        if height is None or width is None:
            width, height = _size(image, width, height)
        self._interrupt = False
        device = self._execution_device
        dtype = self.transformer.dtype

        joints = _joints(motion) if motion is not None else None
        if joints is not None:
            frames = num_frames or len(joints)
            starts = window_starts(frames)
            windows = self.motion_windows(joints[:frames], starts)
        else:
            tokens = list(motion_tokens) if isinstance(motion_tokens, (list, tuple)) else [motion_tokens]
            frames = num_frames or WINDOW + STRIDE * (len(tokens) - 1)
            starts = window_starts(frames)
            if len(tokens) != len(starts):
                raise DiTError(f"{frames} frames need {len(starts)} windows of motion tokens, got {len(tokens)}")
            windows = [Window17B(s, torch.as_tensor(t)) for s, t in zip(starts, tokens, strict=True)]
        mean = np.asarray(joint_mean if joint_mean is not None else self.stats.mean, np.float32)
        if generator is None and seed is not None:
            generator = torch.Generator(device=device).manual_seed(int(seed))
        if overlap_generator is None and seed is not None:
            overlap_generator = torch.Generator(device=device).manual_seed(int(seed) + 1)

        do_cfg = guidance_scale > 1.0
        text = self.encode_prompt(prompt, device, dtype)
        if do_cfg:
            text = torch.cat([self.encode_prompt(negative_prompt, device, dtype), text])
        reference = _reference(image, width, height)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        steps = len(self.scheduler.timesteps)
        self._num_timesteps, self._total_steps = steps, steps * len(windows)
        h, w = height // self.vae_scale_factor_spatial, width // self.vae_scale_factor_spatial
        latent_frames = (WINDOW - 1) // TEMPORAL + 1
        mask = torch.zeros(1, 4, latent_frames, h, w, device=device, dtype=dtype)
        video_out: list[torch.Tensor] = []
        finals: list[torch.Tensor] = []
        previous: torch.Tensor | None = None  # the previous window's frames (T, 3, H, W) in [0, 1]
        done = 0
        with self.progress_bar(total=self._total_steps) as bar:
            for index, window in enumerate(windows):
                self._current_window = index
                # the condition: the reference then zeros, or the previous window's last 9 frames then zeros
                if previous is None:
                    kept, clip_source = 1, _clip_round_trip(reference)
                    condition_video = torch.cat([reference[:, :, None], torch.zeros_like(reference)[:, :, None]
                                                 .expand(-1, -1, WINDOW - 1, -1, -1)], dim=2)  # fmt: skip
                else:
                    kept = OVERLAP
                    # (1, 3, 9, H, W), in the model's dtype before ``* 2 − 1`` as the official
                    tail = previous[-OVERLAP:].to(device, dtype).permute(1, 0, 2, 3)[None] * 2 - 1
                    clip_source = tail[:, :, -1]
                    condition_video = torch.cat(
                        [tail, torch.zeros_like(tail[:, :, :1]).expand(-1, -1, WINDOW - OVERLAP, -1, -1)], dim=2
                    )
                condition = self.encode_condition(condition_video).to(dtype)
                mask.zero_()
                mask[:, :, : (kept - 1) // TEMPORAL + 1] = 1
                y = torch.cat([mask, condition], dim=1)
                # the official hands CLIP its input in the model's dtype
                with self._encoder_on(self.image_encoder, device):
                    clip = clip_image_features(self.image_encoder, clip_source.to(device, dtype)).to(device)
                if do_cfg:
                    y, clip = torch.cat([y, y]), torch.cat([clip, clip])
                tokens = window.tokens.to(device=device, dtype=dtype)[None]
                tokens = torch.cat([tokens, tokens]) if do_cfg else tokens

                latents = randn_tensor((1, 16, latent_frames, h, w), generator=generator, device=device, dtype=dtype)
                self.scheduler.set_timesteps(num_inference_steps, device=device)
                timesteps = self.scheduler.timesteps
                self.new_trajectory()
                for i, t in enumerate(timesteps):
                    if self._interrupt:
                        break
                    x = torch.cat([latents] * 2) if do_cfg else latents
                    with self.step_context(i, len(timesteps), t):
                        pred = self.transformer(
                            hidden_states=torch.cat([x, y], dim=1),
                            timestep=t.expand(x.shape[0]),
                            encoder_hidden_states=text,
                            encoder_hidden_states_image=clip,
                            motion_tokens=tokens,
                            joint_mean=mean,
                            return_dict=False,
                        )[0]
                    if do_cfg:
                        uncond, cond = pred.chunk(2)
                        pred = uncond + guidance_scale * (cond - uncond)
                    latents = self.scheduler.step(pred, t, latents, return_dict=False)[0]
                    if previous is not None:
                        # the overlap latents, noised to the next level (the last step: none), pinned
                        sigma = timesteps[i + 1] / 1000 if i + 1 < len(timesteps) else torch.zeros_like(t)
                        known = condition[:, :, :OVERLAP_LATENTS]
                        noise = randn_tensor(known.shape, generator=overlap_generator, device=device, dtype=known.dtype)
                        sigma = sigma.float()  # the official mixes in float32 and rounds once
                        mixed = (1 - sigma) * known.float() + sigma * noise.float()
                        latents[:, :, :OVERLAP_LATENTS] = mixed.to(latents.dtype)
                    if callback_on_step_end is not None:
                        outputs = callback_on_step_end(self, done, t, {k: latents for k in tensor_inputs}) or {}
                        latents = outputs.pop("latents", latents)
                    done += 1
                    bar.update()
                if self._interrupt:
                    break
                finals.append(latents)
                if output_type == "latent" and index == len(windows) - 1:
                    break
                previous = self.decode(latents)
                last = index == len(windows) - 1
                video_out.append((previous if last else previous[:-OVERLAP]).cpu())  # only the overlap stays

        self.maybe_free_model_hooks()
        if self._interrupt:
            out = MTVCrafter17BPipelineOutput(frames=None, interrupted=True, windows=windows)
            return out if return_dict else (None,)
        if output_type == "latent":
            result = torch.cat(finals)
        else:
            result = _postprocess(torch.cat(video_out)[:frames], output_type)
        out = MTVCrafter17BPipelineOutput(frames=result, windows=windows)
        return out if return_dict else (result,)


def _size(image, width: int | None = None, height: int | None = None) -> tuple[int, int]:
    """``(width, height)``: the official aspect bucket nearest the image's, or one side given and the other
    from the image's aspect (see :func:`mtvcrafter.official.size_17b`)."""
    size = image.size if isinstance(image, Image.Image) else (image.shape[1], image.shape[0])
    return official.size_17b(*size, width, height)


def _clip_round_trip(reference: torch.Tensor) -> torch.Tensor:
    """The reference as the official script hands it to CLIP in the first window: back to [0, 255] in float32,
    truncated to uint8 (a value a hair under an integer drops by one), then to [−1, 1] again."""
    pixels = ((reference * 0.5 + 0.5) * 255).numpy().astype(np.uint8)
    return (torch.from_numpy(pixels).float() / 255 - 0.5) / 0.5


def _postprocess(video: torch.Tensor, output_type: str):
    if output_type == "pt":
        return video.cpu()[None]
    if output_type == "np":
        return video.permute(0, 2, 3, 1).cpu().numpy()[None]
    frames = (video.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return [[Image.fromarray(f) for f in frames]]
