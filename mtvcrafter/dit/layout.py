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

from pathlib import Path

import torch
from diffusers import AutoencoderKLCogVideoX

from ..motion import NormStats
from ..tokenizer import MotionTokenizer, TokenizerError
from .errors import ModelFileError
from .loading import read_config
from .schedulers import make_scheduler
from .transformer_7b import MVDiT7BTransformer

TRANSFORMER_DIR = "MV-DiT/CogVideoX"
TOKENIZER_DIR = "4DMoT"
STATS_DIR = "data"
BASE_DIR_NAME = "CogVideoX-5b"
MTVCRAFTER_REPO = "the Hugging Face repo yanboding/MTVCrafter"
BASE_REPO = "the Hugging Face repo THUDM/CogVideoX-5b"


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


def load_scheduler(base: Path, scheduler=None):
    """``scheduler`` (a name, default ``dpm``, or an instance), configured from
    ``base/scheduler/scheduler_config.json`` when given by name."""
    config = None
    if scheduler is None or isinstance(scheduler, str):
        config = read_config(base / "scheduler", f"scheduler/ of {BASE_REPO}", name="scheduler_config.json")
    return make_scheduler(scheduler, config)


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


def load_components(
    model_dir: str | Path,
    base_model_dir: str | Path | None = None,
    torch_dtype: torch.dtype = torch.float32,
    scheduler=None,
    tokenizer_device: str | torch.device = "cpu",
    trust_checkpoint: bool = False,
) -> dict:
    """The pipeline's components (``MTVCrafterPipeline(**components)``) from the folders described in this module."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelFileError(f"{model_dir}: no such folder; it should be a download of {MTVCRAFTER_REPO}")
    transformer_dir = model_dir / TRANSFORMER_DIR
    if not transformer_dir.is_dir():
        raise ModelFileError(f"{transformer_dir}: missing; download {TRANSFORMER_DIR}/ from {MTVCRAFTER_REPO}")
    base = find_base_dir(model_dir, base_model_dir)
    scheduler = load_scheduler(base, scheduler)  # before the weights: a bad name fails in a second
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
    return {
        "transformer": transformer,
        "vae": vae,
        "scheduler": scheduler,
        "motion_tokenizer": tokenizer,
        "stats": tokenizer.stats,
    }
