"""A tiny random MTVCrafter 7B pipeline: the real code paths, small enough to run on a CPU in seconds.

Used by tests and by the server's ``tiny`` backend. The structure is the official one (same module
names, VAE block layout with 8× spatial and 4× temporal compression, scheduler configuration of
CogVideoX-5b); only widths and depths are small and the weights random, so the video is noise.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDPMScheduler

from ..motion import NormStats
from ..tokenizer import FourDMoT, MotionTokenizer, TokenizerConfig
from .layout import BASE_DIR_NAME, TOKENIZER_DIR, TRANSFORMER_DIR
from .schedulers import COGVIDEOX_5B_SCHEDULER
from .transformer_7b import MVDiT7BTransformer

TINY_LATENT_CHANNELS = 4


def tiny_transformer(motion_token_dim: int, seed: int = 0) -> MVDiT7BTransformer:
    torch.manual_seed(seed)
    return MVDiT7BTransformer(
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=2,
        in_channels=2 * TINY_LATENT_CHANNELS,
        out_channels=TINY_LATENT_CHANNELS,
        time_embed_dim=32,
        text_embed_dim=8,
        motion_token_dim=motion_token_dim,
    ).eval()


def tiny_vae(seed: int = 0) -> AutoencoderKLCogVideoX:
    # CogVideoX-5b's sample size, so that tiling (enabled as for the real VAE) uses the same tiles and overlaps
    torch.manual_seed(seed)
    return AutoencoderKLCogVideoX(
        block_out_channels=(8, 8, 16, 16),
        latent_channels=TINY_LATENT_CHANNELS,
        layers_per_block=1,
        norm_num_groups=4,
        scaling_factor=0.7,
        sample_height=480,
        sample_width=720,
    ).eval()


def tiny_tokenizer(seed: int = 0) -> MotionTokenizer:
    torch.manual_seed(seed)
    return MotionTokenizer(FourDMoT(TokenizerConfig.tiny()).eval(), NormStats.official())


def tiny_pipeline(seed: int = 0):
    """The tiny pipeline, built in memory with seeded random weights."""
    from .pipeline_7b import MTVCrafterPipeline

    tokenizer = tiny_tokenizer(seed)
    transformer = tiny_transformer(tokenizer.config.code_dim, seed)
    scheduler = CogVideoXDPMScheduler(**COGVIDEOX_5B_SCHEDULER)
    return MTVCrafterPipeline(transformer, tiny_vae(seed), scheduler, tokenizer, tokenizer.stats)


def save_tiny_model_dir(folder: str | Path, seed: int = 0) -> Path:
    """Write the tiny pipeline in the official folder layout (see :mod:`mtvcrafter.dit.layout`)."""
    folder = Path(folder)
    pipe = tiny_pipeline(seed)
    pipe.transformer.save_pretrained(folder / TRANSFORMER_DIR)
    pipe.motion_tokenizer.save_pretrained(folder / TOKENIZER_DIR)
    pipe.vae.save_pretrained(folder / BASE_DIR_NAME / "vae")
    pipe.scheduler.save_pretrained(folder / BASE_DIR_NAME / "scheduler")
    return folder
