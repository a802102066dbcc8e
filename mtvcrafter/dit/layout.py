"""Where the 7B pipeline's files live on disk, and loading them (nothing is ever downloaded).

Two layouts load. The official one mirrors the two Hugging Face repositories the weights come from::

    MODEL_DIR/                         ← a download of yanboding/MTVCrafter
      MV-DiT/CogVideoX/config.json     ← the MV-DiT-7B transformer
      MV-DiT/CogVideoX/diffusion_pytorch_model*.safetensors (or .bin, sharded or not)
      4DMoT/mp_rank_00_model_states.pt ← the motion tokenizer
      data/mean.npy, data/std.npy      ← optional; the official statistics are built in
      CogVideoX-5b/                    ← a download of THUDM/CogVideoX-5b (only these two folders are read)
        vae/config.json, vae/diffusion_pytorch_model.safetensors
        scheduler/scheduler_config.json

``CogVideoX-5b`` may instead sit beside ``MODEL_DIR`` or anywhere given as ``base_model_dir``.

The other is diffusers' pipeline layout, as :meth:`MTVCrafterPipeline.save_pretrained` writes it::

    SAVED_DIR/
      model_index.json                 ← component name → (module, class)
      transformer/, vae/, scheduler/   ← each as its own save_pretrained writes it
      motion_tokenizer/                ← MotionTokenizer.save_pretrained (absent if the pipeline had none)
      stats/mean.npy, stats/std.npy    ← the normalisation statistics whose mean places the motion tokens
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKLCogVideoX

from ..motion import MotionError, NormStats
from ..tokenizer import MotionTokenizer, TokenizerError
from . import schedulers
from .errors import ModelFileError
from .loading import read_config
from .transformer_7b import MVDiT7BTransformer

TRANSFORMER_DIR = "MV-DiT/CogVideoX"
TOKENIZER_DIR = "4DMoT"
STATS_DIR = "data"
BASE_DIR_NAME = "CogVideoX-5b"
MTVCRAFTER_REPO = "the Hugging Face repo yanboding/MTVCrafter"
BASE_REPO = "the Hugging Face repo THUDM/CogVideoX-5b"
#: The file that marks a folder written by MTVCrafterPipeline.save_pretrained.
PIPELINE_INDEX = "model_index.json"
SAVED_ORIGIN = "MTVCrafterPipeline.save_pretrained"


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
    return schedulers.make_scheduler(scheduler, config)


def load_vae(base: Path, torch_dtype: torch.dtype | None, origin: str = BASE_REPO) -> AutoencoderKLCogVideoX:
    """CogVideoX's VAE from ``base/vae``."""
    folder = base / "vae"
    read_config(folder, f"vae/ of {origin}")
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise ModelFileError(f"{folder}: no weights; download vae/diffusion_pytorch_model.safetensors from {origin}")
    try:
        return AutoencoderKLCogVideoX.from_pretrained(str(folder), torch_dtype=torch_dtype, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(
            f"{folder}: cannot load the CogVideoX VAE ({exc}); copy vae/ again from {origin}"
        ) from None


def load_stats(folder: Path) -> NormStats:
    try:
        return NormStats.load(folder)
    except MotionError as exc:
        raise ModelFileError(f"{folder}: {exc}") from None


def load_tokenizer(path: Path, stats: NormStats | None, device, trust_checkpoint: bool) -> MotionTokenizer:
    try:
        return MotionTokenizer.from_pretrained(path, stats=stats, device=device, trust_checkpoint=trust_checkpoint)
    except TokenizerError as exc:
        raise ModelFileError(f"{path}: {exc}") from None


def load_components(
    model_dir: str | Path,
    base_model_dir: str | Path | None = None,
    torch_dtype: torch.dtype | None = torch.float32,
    scheduler=None,
    tokenizer_device: str | torch.device = "cpu",
    trust_checkpoint: bool = False,
) -> dict:
    """The pipeline's components (``MTVCrafterPipeline(**components)``) from the official layout."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelFileError(f"{model_dir}: no such folder; it should be a download of {MTVCRAFTER_REPO}")
    transformer_dir = model_dir / TRANSFORMER_DIR
    if not transformer_dir.is_dir():
        raise ModelFileError(f"{transformer_dir}: missing; download {TRANSFORMER_DIR}/ from {MTVCRAFTER_REPO}")
    base = find_base_dir(model_dir, base_model_dir)
    scheduler = load_scheduler(base, scheduler)  # before the weights: a bad name fails in a second
    stats = NormStats.official()
    if (model_dir / STATS_DIR / "mean.npy").is_file():
        stats = load_stats(model_dir / STATS_DIR)
    tokenizer_path = model_dir / TOKENIZER_DIR
    if not tokenizer_path.exists():
        raise ModelFileError(
            f"{tokenizer_path}: missing; download {TOKENIZER_DIR}/mp_rank_00_model_states.pt from {MTVCRAFTER_REPO}"
        )
    tokenizer = load_tokenizer(tokenizer_path, stats, tokenizer_device, trust_checkpoint)
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


def is_saved_pipeline(folder: Path) -> bool:
    return (folder / PIPELINE_INDEX).is_file()


def _saved_class(index: dict, name: str, path: Path, expected: str | None, optional: bool = False) -> str | None:
    """The class name ``model_index.json`` gives component ``name``; checked against ``expected`` if given."""
    entry = index.get(name)
    if optional and (entry is None or entry == [None, None]):
        return None
    if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], str)):
        raise ModelFileError(
            f"{path}: no {name!r} entry as [module, class]; write the folder again with {SAVED_ORIGIN}"
        )
    if expected is not None and entry[1] != expected:
        raise ModelFileError(f"{path}: {name} is a {entry[1]}, MTVCrafterPipeline needs a {expected}")
    return entry[1]


def load_saved_components(
    folder: str | Path,
    torch_dtype: torch.dtype | None = torch.float32,
    scheduler=None,
    tokenizer_device: str | torch.device = "cpu",
    trust_checkpoint: bool = False,
) -> dict:
    """The pipeline's components from a folder :meth:`MTVCrafterPipeline.save_pretrained` wrote.

    ``scheduler``: None for the saved scheduler's class, or a name or instance as :func:`make_scheduler`
    takes; named ones are configured from the saved ``scheduler/scheduler_config.json``."""
    folder = Path(folder)
    path = folder / PIPELINE_INDEX
    index = read_config(folder, SAVED_ORIGIN, name=PIPELINE_INDEX)
    if index.get("_class_name") != "MTVCrafterPipeline":
        raise ModelFileError(
            f"{path}: written for {index.get('_class_name')!r}, not MTVCrafterPipeline; load it with that pipeline"
        )
    _saved_class(index, "transformer", path, "MVDiT7BTransformer")
    _saved_class(index, "vae", path, "AutoencoderKLCogVideoX")
    saved_scheduler = _saved_class(index, "scheduler", path, None)
    has_tokenizer = _saved_class(index, "motion_tokenizer", path, "MotionTokenizer", optional=True)
    has_stats = _saved_class(index, "stats", path, "NormStats", optional=True)
    if scheduler is None or isinstance(scheduler, str):
        config = read_config(folder / "scheduler", SAVED_ORIGIN, name="scheduler_config.json")
        scheduler = schedulers.make_scheduler(scheduler or saved_scheduler, config)
    else:
        scheduler = schedulers.make_scheduler(scheduler)
    stats = load_stats(folder / "stats") if has_stats else None
    tokenizer = None
    if has_tokenizer:
        tokenizer = load_tokenizer(folder / "motion_tokenizer", None, tokenizer_device, trust_checkpoint)
    transformer = MVDiT7BTransformer.from_pretrained(
        folder, subfolder="transformer", torch_dtype=torch_dtype, trust_checkpoint=trust_checkpoint
    )
    return {
        "transformer": transformer,
        "vae": load_vae(folder, torch_dtype, SAVED_ORIGIN),
        "scheduler": scheduler,
        "motion_tokenizer": tokenizer,
        "stats": stats,
    }
