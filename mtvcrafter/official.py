"""The authors' settings for MV-DiT-7B (SPEC §5), named once: the pipeline's defaults and the render
defaults of every path (:mod:`mtvcrafter.backends`) come from here. Plain constants, no imports."""

#: Output side in pixels (a 512x512 centre crop).
SIZE = 512
#: Denoising steps.
STEPS = 50
#: Motion classifier-free guidance scale.
GUIDANCE = 3.0
#: Random seed.
SEED = 6666
#: Scheduler: CogVideoX's DPM scheduler.
SCHEDULER = "dpm"
#: Frame rate the official script saves at (ours keeps the motion's own rate).
FPS = 20
