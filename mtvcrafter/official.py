"""The authors' settings for MV-DiT-7B (SPEC §5) and MV-DiT-17B (SPEC §6), named once: the pipelines'
defaults and the render defaults of every path (:mod:`mtvcrafter.backends`) come from here. Plain
constants, no imports."""

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

# -- MV-DiT-17B (Wan2.1-I2V-14B) ------------------------------------------------------------------

#: Denoising steps (flow-matching Euler).
STEPS_17B = 50
#: Steps with the optional FusionX LoRA merged (which also turns text guidance off).
STEPS_17B_LORA = 10
#: Text classifier-free guidance scale.
GUIDANCE_17B = 6.0
#: Random seed.
SEED_17B = 42
#: Flow-matching shift of the Euler scheduler.
SHIFT_17B = 5.0
#: The prompt the official script renders with.
PROMPT_17B = "The character is dancing."
#: The official negative prompt.
NEGATIVE_PROMPT_17B = "bad hands, extra limbs, fused fingers, blurry, low quality"
#: Output sizes ``(height, width)`` by aspect ratio ``height / width`` (the nearest one to the reference image's).
ASPECT_BUCKETS_512 = {
    0.25: (256, 1024), 0.26: (256, 992), 0.27: (256, 960), 0.28: (256, 928),
    0.32: (288, 896), 0.33: (288, 864), 0.35: (288, 832), 0.4: (320, 800),
    0.42: (320, 768), 0.48: (352, 736), 0.5: (352, 704), 0.52: (352, 672),
    0.57: (384, 672), 0.6: (384, 640), 0.68: (416, 608), 0.72: (416, 576),
    0.78: (448, 576), 0.82: (448, 544), 0.88: (480, 544), 0.94: (480, 512),
    1.0: (512, 512), 1.07: (512, 480), 1.13: (544, 480), 1.21: (544, 448),
    1.29: (576, 448), 1.38: (576, 416), 1.46: (608, 416), 1.67: (640, 384),
    1.75: (672, 384), 2.0: (704, 352), 2.09: (736, 352), 2.4: (768, 320),
    2.5: (800, 320), 2.89: (832, 288), 3.0: (864, 288), 3.11: (896, 288),
    3.62: (928, 256), 3.75: (960, 256), 3.88: (992, 256), 4.0: (1024, 256),
}  # fmt: skip


def aspect_bucket(width: int, height: int) -> tuple[int, int]:
    """``(width, height)`` of the bucket nearest an image's ``height / width`` (the first of equals, as the
    official script's numpy argmin)."""
    aspect = height / width
    key = min(ASPECT_BUCKETS_512, key=lambda r: abs(r - aspect))
    bucket_height, bucket_width = ASPECT_BUCKETS_512[key]
    return bucket_width, bucket_height


def size_17b(
    image_width: int, image_height: int, width: int | None = None, height: int | None = None, multiple: int = 16
) -> tuple[int, int]:
    """``(width, height)`` of a 17B render: what was given; neither: the aspect bucket of the reference image;
    one: the other from the image's aspect, rounded to ``multiple``."""
    if width and height:
        return width, height
    if not width and not height:
        return aspect_bucket(image_width, image_height)
    aspect = image_height / image_width
    if width:
        return width, max(multiple, round(width * aspect / multiple) * multiple)
    return max(multiple, round(height / aspect / multiple) * multiple), height


#: Frames per window, and frames a window shares with the one before it.
WINDOW_FRAMES_17B = 49
OVERLAP_FRAMES_17B = 9
