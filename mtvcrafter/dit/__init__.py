"""MV-DiT, MTVCrafter's motion-aware video transformer, and its diffusers pipeline.

Needs torch and diffusers (the ``ml`` extra).
"""

from .errors import DiTError, ModelFileError

# MV-DiT-17B (Wan2.1)
from .layout_17b import load_pipeline_17b, save_tiny_17b_model_dir, tiny_pipeline_17b  # noqa: E402
from .lora import merge_lora  # noqa: E402
from .pipeline_7b import MotionWindow, MTVCrafterPipeline, MTVCrafterPipelineOutput, load_pipeline, prepare_reference
from .pipeline_17b import MTVCrafter17BPipeline, MTVCrafter17BPipelineOutput  # noqa: E402
from .rotary import motion_rotary, video_rotary
from .schedulers import COGVIDEOX_5B_SCHEDULER, make_scheduler
from .speed import prepare_pipeline
from .tiny import save_tiny_model_dir, tiny_pipeline
from .transformer_7b import UNCONDITIONAL_TOKENS, WINDOW_LATENT_FRAMES, MVDiT7BTransformer
from .transformer_17b import MVDiT17BTransformer  # noqa: E402
from .windows import WindowPlan, plan_windows

__all__ = [
    "COGVIDEOX_5B_SCHEDULER",
    "UNCONDITIONAL_TOKENS",
    "WINDOW_LATENT_FRAMES",
    "DiTError",
    "MTVCrafter17BPipeline",
    "MTVCrafter17BPipelineOutput",
    "MVDiT17BTransformer",
    "load_pipeline_17b",
    "merge_lora",
    "save_tiny_17b_model_dir",
    "tiny_pipeline_17b",
    "MTVCrafterPipeline",
    "MTVCrafterPipelineOutput",
    "MVDiT7BTransformer",
    "ModelFileError",
    "MotionWindow",
    "WindowPlan",
    "load_pipeline",
    "make_scheduler",
    "motion_rotary",
    "plan_windows",
    "prepare_pipeline",
    "prepare_reference",
    "save_tiny_model_dir",
    "tiny_pipeline",
    "video_rotary",
]
