"""Where the 7B pipeline's files live on disk, and loading them (nothing is ever downloaded).

The layout mirrors the two Hugging Face repositories the weights come from::

    MODEL_DIR/                         ← a download of yanboding/MTVCrafter
      MV-DiT/CogVideoX/config.json     ← the MV-DiT-7B transformer
      MV-DiT/CogVideoX/diffusion_pytorch_model*.safetensors (or .bin, sharded or not)
      4DMoT/mp_rank_00_model_states.pt ← the motion tokenizer
      data/mean.npy, data/std.npy      ← optional; the official statistics are built in
      CogVideoX-5b/                    ← a download of THUDM/CogVideoX-5b (only these two folders are read)
        vae/config.json, vae/diffusion_pytorch_model.safetensors
        scheduler/scheduler_config.json

``CogVideoX-5b`` may instead sit beside ``MODEL_DIR`` or anywhere given as ``base_model_dir``.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXDPMScheduler
from diffusers.utils import logging as diffusers_logging

from ..motion import NormStats
from ..tokenizer import MotionTokenizer, TokenizerError
from .errors import ModelFileError
from .loading import read_config
from .transformer_7b import MVDiT7BTransformer

TRANSFORMER_DIR = "MV-DiT/CogVideoX"
TOKENIZER_DIR = "4DMoT"
STATS_DIR = "data"
BASE_DIR_NAME = "CogVideoX-5b"
MTVCRAFTER_REPO = "the Hugging Face repo yanboding/MTVCrafter"
BASE_REPO = "the Hugging Face repo THUDM/CogVideoX-5b"

#: Schedulers by short name; any other diffusers scheduler class name works too.
SCHEDULERS = {"dpm": CogVideoXDPMScheduler, "ddim": CogVideoXDDIMScheduler}


def find_base_dir(model_dir: Path, base_model_dir: str | Path | None = None) -> Path:
    """The CogVideoX-5b folder: ``base_model_dir`` if given, else ``MODEL_DIR/CogVideoX-5b`` or a sibling."""
    if base_model_dir is not None:
        base = Path(base_model_dir)
        if not (base / "vae").is_dir():
            raise ModelFileError(f"{base}: no vae/ folder; point base_model_dir at a download of {BASE_REPO}")
        return base
    for candidate in (model_dir / BASE_DIR_NAME, model_dir.parent / BASE_DIR_NAME):
        if (candidate / "vae").is_dir():
            return candidate
    raise ModelFileError(
        f"no {BASE_DIR_NAME}/vae/ found in {model_dir} or beside it: download vae/ and scheduler/ of {BASE_REPO} "
        f"into {model_dir / BASE_DIR_NAME}, or give its location (--base-model-dir)"
    )


@contextmanager
def _quiet():
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)


def check_scheduler(scheduler) -> None:
    """Refuse a scheduler that cannot drive MV-DiT: the model predicts v on CogVideoX's DDPM schedule
    with zero terminal SNR, and the pipeline needs the scheduler's noise scale, input scaling and
    ``add_noise`` (to guide overlapping windows)."""
    name = type(scheduler).__name__
    missing = [a for a in ("set_timesteps", "step", "scale_model_input", "init_noise_sigma", "add_noise")
               if not hasattr(scheduler, a)]  # fmt: skip
    config = getattr(scheduler, "config", {})
    problems = []
    if missing:
        problems.append(f"it has no {', '.join(missing)} (it is not a DDPM-family scheduler)")
    if config.get("prediction_type", "v_prediction") != "v_prediction" and "prediction_type" in config:
        problems.append(f"its prediction_type is {config['prediction_type']!r}, the model predicts 'v_prediction'")
    if "prediction_type" not in config:
        problems.append("it has no prediction_type setting (the model predicts v)")
    alphas = getattr(scheduler, "alphas_cumprod", None)
    if isinstance(alphas, torch.Tensor) and "beta_schedule" in config:
        with _quiet():
            expected = CogVideoXDDIMScheduler.from_config(dict(config)).alphas_cumprod
        if alphas.shape != expected.shape or not torch.allclose(alphas.cpu().double(), expected.double(), atol=1e-5):
            problems.append("its noise schedule differs from what its configuration describes (it ignores "
                            "rescale_betas_zero_snr, say), so it would not run CogVideoX's schedule")  # fmt: skip
    if problems:
        raise ModelFileError(
            f"scheduler {name} cannot drive MV-DiT: " + "; ".join(problems) + ". Use dpm (the official), ddim, or "
            "another DDPM-family diffusers scheduler (DDIMScheduler, EulerDiscreteScheduler, UniPCMultistepScheduler)"
        )


def make_scheduler(scheduler, base: Path | None = None, config: dict | None = None):
    """A scheduler instance from a name (``dpm``, ``ddim``, or a diffusers class name) or an instance,
    configured from ``base/scheduler/scheduler_config.json`` (or ``config``)."""
    if scheduler is not None and not isinstance(scheduler, str):
        check_scheduler(scheduler)
        return scheduler
    name = scheduler or "dpm"
    cls = SCHEDULERS.get(name.lower())
    if cls is None:
        import diffusers

        cls = getattr(diffusers, name, None)
        if cls is None or not hasattr(cls, "from_config") or "Scheduler" not in name:
            known = ", ".join(SCHEDULERS)
            raise ModelFileError(f"unknown scheduler {name!r}; use {known} or a diffusers scheduler class name")
    if config is None:
        if base is None:
            raise ModelFileError("a scheduler configuration is needed (base model folder)")
        path = base / "scheduler" / "scheduler_config.json"
        if not path.is_file():
            raise ModelFileError(f"{path}: missing; copy scheduler/scheduler_config.json from {BASE_REPO}")
        try:
            config = cls.load_config(str(path.parent))
        except (OSError, ValueError) as exc:
            raise ModelFileError(f"{path}: not a readable scheduler configuration ({exc})") from None
    with _quiet():  # CogVideoX's configuration has keys other schedulers do not take
        instance = cls.from_config(config)
    check_scheduler(instance)
    return instance


def load_vae(base: Path, torch_dtype: torch.dtype) -> AutoencoderKLCogVideoX:
    folder = base / "vae"
    read_config(folder, f"vae/ of {BASE_REPO}")
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise ModelFileError(f"{folder}: no weights; download vae/diffusion_pytorch_model.safetensors from {BASE_REPO}")
    try:
        return AutoencoderKLCogVideoX.from_pretrained(str(folder), torch_dtype=torch_dtype, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(
            f"{folder}: cannot load the CogVideoX VAE ({exc}); copy vae/ again from {BASE_REPO}"
        ) from None


def load_pipeline(
    model_dir: str | Path,
    base_model_dir: str | Path | None = None,
    torch_dtype: torch.dtype = torch.float32,
    scheduler=None,
    tokenizer_device: str | torch.device = "cpu",
    trust_checkpoint: bool = False,
):
    """Build :class:`MTVCrafterPipeline` from the folders described in this module."""
    from .pipeline_7b import MTVCrafterPipeline

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelFileError(f"{model_dir}: no such folder; it should be a download of {MTVCRAFTER_REPO}")
    transformer_dir = model_dir / TRANSFORMER_DIR
    if not transformer_dir.is_dir():
        raise ModelFileError(f"{transformer_dir}: missing; download {TRANSFORMER_DIR}/ from {MTVCRAFTER_REPO}")
    base = find_base_dir(model_dir, base_model_dir)
    scheduler = make_scheduler(scheduler, base)  # before the weights: a bad name fails in a second
    stats = None
    if (model_dir / STATS_DIR / "mean.npy").is_file():
        stats = NormStats.load(model_dir / STATS_DIR)
    tokenizer_path = model_dir / TOKENIZER_DIR
    if not tokenizer_path.exists():
        raise ModelFileError(
            f"{tokenizer_path}: missing; download {TOKENIZER_DIR}/mp_rank_00_model_states.pt from {MTVCRAFTER_REPO}"
        )
    try:
        tokenizer = MotionTokenizer.from_pretrained(
            tokenizer_path,
            stats=stats or NormStats.official(),
            device=tokenizer_device,
            trust_checkpoint=trust_checkpoint,
        )
    except TokenizerError as exc:
        raise ModelFileError(f"{tokenizer_path}: {exc}") from None
    transformer = MVDiT7BTransformer.from_pretrained(
        transformer_dir, torch_dtype=torch_dtype, trust_checkpoint=trust_checkpoint
    )
    vae = load_vae(base, torch_dtype)
    return MTVCrafterPipeline(transformer, vae, scheduler, tokenizer, tokenizer.stats)
