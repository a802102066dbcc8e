"""MV-DiT, MTVCrafter's motion-aware video transformer, and its diffusers pipeline.

Needs torch and diffusers (the ``ml`` extra).
"""

from .errors import DiTError, ModelFileError
from .pipeline_7b import MotionWindow, MTVCrafterPipeline, MTVCrafterPipelineOutput, load_pipeline, prepare_reference
from .rotary import motion_rotary, video_rotary
from .schedulers import COGVIDEOX_5B_SCHEDULER, make_scheduler
from .tiny import save_tiny_model_dir, tiny_pipeline
from .transformer_7b import UNCONDITIONAL_TOKENS, WINDOW_LATENT_FRAMES, MVDiT7BTransformer
from .windows import WindowPlan, plan_windows

__all__ = [
    "COGVIDEOX_5B_SCHEDULER",
    "UNCONDITIONAL_TOKENS",
    "WINDOW_LATENT_FRAMES",
    "DiTError",
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
    "prepare_reference",
    "save_tiny_model_dir",
    "tiny_pipeline",
    "video_rotary",
]
