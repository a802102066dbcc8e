"""Where MV-DiT-17B's files live on disk, and loading them (nothing is ever downloaded)::

    MODEL_DIR/                          ← a download of yanboding/MTVCrafter
      MV-DiT/Wan-2-1/config.json        ← the MV-DiT-17B transformer (official names; sharded or not)
      MV-DiT/Wan-2-1/*.safetensors (or .bin)
      4DMoT/mp_rank_00_model_states.pt  ← the motion tokenizer (shared with the 7B)
      data/mean.npy, data/std.npy       ← optional; the official statistics are built in
      wan2.1/                           ← the Wan 2.1 base, official layout (Wan-AI/Wan2.1-I2V-14B-480P):
        Wan2.1_VAE.pth, models_t5_umt5-xxl-enc-bf16.pth, google/umt5-xxl/,
        models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth
        Wan2.1_I2V_14B_FusionX_LoRA.safetensors   ← optional LoRA (also MODEL_DIR/loras/)

``wan2.1`` may instead sit beside ``MODEL_DIR``, or be given as ``base_model_dir``; in place of the official
layout, the diffusers-format folder of Wan-AI/Wan2.1-I2V-14B-480P-Diffusers (model_index.json, vae/,
text_encoder/, tokenizer/, image_encoder/) works too.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..motion import NormStats
from .errors import ModelFileError
from .layout import STATS_DIR, TOKENIZER_DIR, load_stats, load_tokenizer
from .loading import read_config, weight_files
from .wan_base import ORIGIN as BASE_ORIGIN
from .wan_base import check_wan_base, load_wan_base

TRANSFORMER_DIR_17B = "MV-DiT/Wan-2-1"
BASE_DIR_NAMES = ("wan2.1", "Wan2.1-I2V-14B-480P-Diffusers", "Wan2.1-I2V-14B-480P")
MTVCRAFTER_REPO = "the Hugging Face repo yanboding/MTVCrafter"


def find_wan_base_dir(model_dir: Path, base_model_dir: str | Path | None = None) -> Path:
    """The Wan 2.1 base folder: ``base_model_dir`` if it is one, else ``MODEL_DIR/wan2.1`` or a sibling."""
    if base_model_dir is not None:
        base = Path(base_model_dir)
        check_wan_base(base)
        return base
    for parent in (model_dir, model_dir.parent):
        for name in BASE_DIR_NAMES:
            if (parent / name).is_dir():
                check_wan_base(parent / name)
                return parent / name
    raise ModelFileError(
        f"no wan2.1/ found in {model_dir} or beside it: download the Wan 2.1 base ({BASE_ORIGIN}) into "
        f"{model_dir / 'wan2.1'}, or give its location (--base-model-dir)"
    )


def check_model_dir(model_dir: str | Path, base_model_dir: str | Path | None = None) -> None:
    """Raise what loading would for a missing file, reading only names and configs (a backend's status)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelFileError(f"{model_dir}: no such folder; it should be a download of {MTVCRAFTER_REPO}")
    folder = model_dir / TRANSFORMER_DIR_17B
    read_config(folder, f"{TRANSFORMER_DIR_17B}/ of {MTVCRAFTER_REPO}")
    weight_files(folder, f"{TRANSFORMER_DIR_17B}/ of {MTVCRAFTER_REPO}")
    if not (model_dir / TOKENIZER_DIR).exists():
        raise ModelFileError(f"{model_dir / TOKENIZER_DIR}: missing (from {MTVCRAFTER_REPO})")
    find_wan_base_dir(model_dir, base_model_dir)


def load_components_17b(
    model_dir: str | Path,
    base_model_dir: str | Path | None = None,
    torch_dtype: torch.dtype | None = torch.float32,
    tokenizer_device: str | torch.device = "cpu",
    trust_checkpoint: bool = False,
    numerics: str = "official",
) -> dict:
    """The pipeline's components (``MTVCrafter17BPipeline(**components)``) from the layout above."""
    from .pipeline_17b import make_scheduler_17b
    from .transformer_17b import MVDiT17BTransformer

    model_dir = Path(model_dir)
    check_model_dir(model_dir, base_model_dir)
    stats = NormStats.official()
    if (model_dir / STATS_DIR / "mean.npy").is_file():
        stats = load_stats(model_dir / STATS_DIR)
    tokenizer = load_tokenizer(model_dir / TOKENIZER_DIR, stats, tokenizer_device, trust_checkpoint)
    base = load_wan_base(find_wan_base_dir(model_dir, base_model_dir), torch_dtype, trust_checkpoint)
    # the official script never casts its CLIP: the image encoder runs in float32 whatever the rest does
    base["image_encoder"] = base["image_encoder"].float()
    transformer = MVDiT17BTransformer.from_pretrained(
        model_dir / TRANSFORMER_DIR_17B, torch_dtype=torch_dtype, trust_checkpoint=trust_checkpoint, numerics=numerics
    )
    return {
        "transformer": transformer,
        **base,
        "scheduler": make_scheduler_17b(),
        "motion_tokenizer": tokenizer,
        "stats": tokenizer.stats,
    }


def load_pipeline_17b(model_dir: str | Path, base_model_dir: str | Path | None = None, **kwargs):
    """:class:`MTVCrafter17BPipeline` from the official layout (see the module docstring)."""
    from .pipeline_17b import MTVCrafter17BPipeline

    return MTVCrafter17BPipeline(**load_components_17b(model_dir, base_model_dir, **kwargs))


# -- the tiny variant -------------------------------------------------------------------------------------

TINY_17B = dict(
    num_attention_heads=2,
    attention_head_dim=36,
    in_channels=36,
    out_channels=16,
    ffn_dim=64,
    num_layers=5,
)


def tiny_transformer_17b(text_dim: int, image_dim: int, motion_token_dim: int, seed: int = 0):
    from .transformer_17b import MVDiT17BTransformer

    torch.manual_seed(seed)
    model = MVDiT17BTransformer(
        **TINY_17B,
        text_dim=text_dim,
        freq_dim=32,
        image_dim=image_dim,
        added_kv_proj_dim=72,
        motion_token_dim=motion_token_dim,
    )
    with torch.no_grad():  # gentle output weights, so a few steps stay in the VAE's range
        model.proj_out.weight.mul_(0.1)
    return model.eval()


def tiny_pipeline_17b(seed: int = 0):
    """The 17B pipeline with tiny random weights (CPU, seconds at 64 × 64; the video is noise), built in memory."""
    from .pipeline_17b import MTVCrafter17BPipeline, make_scheduler_17b
    from .tiny import tiny_tokenizer
    from .wan_base import tiny_wan_base

    base = tiny_wan_base(seed)
    tokenizer = tiny_tokenizer(seed)
    transformer = tiny_transformer_17b(
        base["text_encoder"].config.d_model,
        base["image_encoder"].config.hidden_size,
        tokenizer.config.code_dim,
        seed,
    )
    return MTVCrafter17BPipeline(
        transformer=transformer,
        **base,
        scheduler=make_scheduler_17b(),
        motion_tokenizer=tokenizer,
        stats=tokenizer.stats,
    )


def save_tiny_17b_model_dir(folder: str | Path, seed: int = 0) -> Path:
    """Write :func:`tiny_pipeline_17b`'s weights in the official layout above (official names and config keys)."""
    from safetensors.torch import save_file

    from .transformer_17b import to_official
    from .wan_base import save_tiny_wan_base

    folder = Path(folder)
    pipe = tiny_pipeline_17b(seed)
    model = pipe.transformer
    target = folder / TRANSFORMER_DIR_17B
    target.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    config = {
        "_class_name": "Transformer17B",
        "dim": cfg.num_attention_heads * cfg.attention_head_dim,
        "num_heads": cfg.num_attention_heads,
        "num_layers": cfg.num_layers,
        "ffn_dim": cfg.ffn_dim,
        "freq_dim": cfg.freq_dim,
        "in_dim": cfg.in_channels,
        "out_dim": cfg.out_channels,
        "text_dim": cfg.text_dim,
        "model_type": "i2v",
        "eps": cfg.eps,
        "patch_size": list(cfg.patch_size),
        "cross_attn_norm": cfg.cross_attn_norm,
        "motion_token_dim": cfg.motion_token_dim,
        "image_dim": cfg.image_dim,
    }
    (target / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    state = {to_official(k): v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(target / "diffusion_pytorch_model.safetensors"))
    pipe.motion_tokenizer.save_pretrained(folder / TOKENIZER_DIR)
    save_tiny_wan_base(folder / "wan2.1", seed)
    return folder
