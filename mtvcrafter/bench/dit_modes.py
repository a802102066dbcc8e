"""``mtvcrafter bench dit --model 7b|17b [--fast] [--offload MODE]``: whole clips in exact mode, fast mode and each
offload mode, against the plain path measured in the same run, with the goals each is held to.

Every clip is one 49-frame window of random weights at the chosen size, rendered from the same seed, so the
final latents of two runs can be compared: exact mode and every offload mode must match the plain path (the
bench prints the largest difference), fast mode's options are reported with their relative error
``‖fast − exact‖ / ‖exact‖`` next to their speed. The step cache's speed-up comes from the blocks it skips, so
``--size thin`` (8 narrow blocks) shows it on a CPU; ``--size full`` is the official model on a GPU.
"""

from __future__ import annotations

import contextlib
import io
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..motion import NormStats
from .dit import DiTRow, _construct, _sync

GIB = 2**30
#: the offload targets, judged at full size (512×512×49) on a GPU: peak GiB, and the time against no offloading
#: (the 7B in under 16 GiB at no more than 1.3× the time; the 17B in under 24 GiB)
GOALS = {"7b": (16.0, 1.3), "17b": (24.0, None)}


@dataclass
class Clip:
    """One timed render: seconds, peak GPU memory (None on the CPU) and the final latents (float32, CPU)."""

    seconds: float
    peak_gib: float | None
    latents: torch.Tensor
    #: block evaluations that ran (a step cache skips some), and steps on which the last block ran (full steps)
    blocks_run: int = 0
    full_steps: int = 0


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """``‖a − b‖ / ‖b‖``."""
    return float((a.float() - b.float()).norm() / b.float().norm())


# -- pipelines of random weights -----------------------------------------------------------------------------


def _small_weights(model: torch.nn.Module) -> None:
    """Small random matrices keep a deep random stack finite in bf16."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim >= 2 and "unconditional" not in name:
                param.normal_(0.0, 0.02)


def video_size(model: str, size: str) -> tuple[int, int, int]:
    """(height, width, frames) a size is timed at."""
    from .dit import SIZES
    from .dit_17b import SIZES_17B

    return (SIZES if model == "7b" else SIZES_17B)[size][1]


def build_7b(size: str, device: torch.device, dtype: torch.dtype, seed: int = 0):
    """MTVCrafterPipeline with random weights at ``size``, built on ``device`` (no motion tokenizer: the bench gives
    motion tokens)."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDPMScheduler

    from ..dit import COGVIDEOX_5B_SCHEDULER, MTVCrafterPipeline, MVDiT7BTransformer
    from .dit import SIZES

    config = SIZES[size][0]
    model = _construct(lambda: MVDiT7BTransformer(**config), device, dtype, seed)
    _small_weights(model)
    if size == "full":  # CogVideoX-5B's VAE, tiled as the official script
        vae = _construct(lambda: AutoencoderKLCogVideoX(scaling_factor=0.7), device, dtype, seed)
        vae.enable_tiling()
    else:
        channels = model.config.in_channels // 2
        vae = _construct(
            lambda: AutoencoderKLCogVideoX(block_out_channels=(8, 8, 16, 16), latent_channels=channels,
                                           layers_per_block=1, norm_num_groups=4, scaling_factor=0.7),
            device, dtype, seed,
        )  # fmt: skip
    pipe = MTVCrafterPipeline(model, vae, CogVideoXDPMScheduler(**COGVIDEOX_5B_SCHEDULER), None, NormStats.official())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _place(module, device: torch.device, dtype: torch.dtype | None):
    """``module`` (float32) on ``device`` in ``dtype``; the tokenizer (``dtype`` None) as it is."""
    if dtype is None:
        return module
    return module.to(device) if dtype == torch.float32 else module.to(device=device, dtype=dtype)


def _wan_encoders(size: str, device: torch.device, dtype: torch.dtype, seed: int) -> dict:
    """The 17B's VAE, umT5 and CLIP with random weights: the official sizes at ``full``, two-layer ones of the
    official widths at ``small``, the tiny base otherwise (its word-level tokenizer serves every size)."""
    from diffusers import AutoencoderKLWan
    from transformers import CLIPVisionModelWithProjection, UMT5EncoderModel

    from ..dit.wan_base import encoder_configs, tiny_wan_base

    base = tiny_wan_base(seed)
    if size in ("tiny", "thin"):
        kept = {"vae": torch.float32, "image_encoder": torch.float32, "text_encoder": dtype}  # built in float32
        return {name: _place(m, device, kept.get(name)) for name, m in base.items()}
    full = size == "full"
    text, image = encoder_configs(full)
    return {
        "vae": _construct(lambda: AutoencoderKLWan(base_dim=96 if full else 8), device, torch.float32, seed),
        "text_encoder": _construct(lambda: UMT5EncoderModel(text), device, dtype, seed),
        "tokenizer": base["tokenizer"],
        "image_encoder": _construct(lambda: CLIPVisionModelWithProjection(image), device, torch.float32, seed),
    }


def build_17b(size: str, device: torch.device, dtype: torch.dtype, seed: int = 0):
    """MTVCrafter17BPipeline with random weights at ``size``, built on ``device`` (the VAE and CLIP in float32, as
    the official script runs them)."""
    from ..dit import MTVCrafter17BPipeline, MVDiT17BTransformer
    from ..dit.pipeline_17b import make_scheduler_17b
    from .dit_17b import SIZES_17B

    base = _wan_encoders(size, device, dtype, seed)
    if size in ("tiny", "thin"):
        text_dim, image_dim = base["text_encoder"].config.d_model, base["image_encoder"].config.hidden_size
        config = {**SIZES_17B[size][0], "text_dim": text_dim, "image_dim": image_dim}
    else:
        config = SIZES_17B[size][0]
    model = _construct(lambda: MVDiT17BTransformer(**config), device, dtype, seed)
    _small_weights(model)
    model.set_numerics("official")
    pipe = MTVCrafter17BPipeline(transformer=model, **base, scheduler=make_scheduler_17b())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build(model: str, size: str, device: torch.device, dtype: torch.dtype, seed: int = 0):
    return (build_7b if model == "7b" else build_17b)(size, device, dtype, seed)


# -- one clip --------------------------------------------------------------------------------------------------


def _blocks(pipe):
    transformer = pipe.transformer
    return getattr(transformer, "transformer_blocks", None) or transformer.blocks


def render_clip(
    pipe,
    model: str,
    size: str,
    steps: int,
    warm_up: bool = True,
    seed: int = 0,
    fresh_prompts: bool = False,
    repeats: int = 1,
) -> Clip:
    """A whole clip (reference or condition encoding, ``steps`` denoising steps of one window with guidance,
    decoding) from ``seed``, after a one-step warm-up call; the median time of ``repeats`` renders. The blocks that
    ran are counted (a step cache skips some). ``fresh_prompts``: the 17B encodes its prompts again before each
    render, as the plain path does for every render."""
    device = pipe._execution_device
    height, width, frames = video_size(model, size)
    image = np.full((height, width, 3), 128, np.uint8)
    gen = torch.Generator().manual_seed(1234)
    tokens = torch.randn(13 * 24, pipe.transformer.config.motion_token_dim or _width(pipe), generator=gen)
    final: list[torch.Tensor] = []

    def keep(p, step, timestep, tensors):
        if step + 1 == p.total_steps:
            final.append(tensors["latents"].float().cpu())
        return tensors

    def call(n: int):
        motion = {"motion_tokens": tokens} if model == "7b" else {"motion_tokens": [tokens]}
        return pipe(image, **motion, height=height, width=width, num_inference_steps=n, seed=seed,
                    output_type="np", callback_on_step_end=keep)  # fmt: skip

    # a block a step cache skips is entered, but its first layer never runs: those are counted, and the last block's
    counter = [0, 0]
    firsts = [next(iter(block.children())) for block in _blocks(pipe)]
    handles = [m.register_forward_pre_hook(lambda *a: counter.__setitem__(0, counter[0] + 1)) for m in firsts]
    handles.append(firsts[-1].register_forward_pre_hook(lambda *a: counter.__setitem__(1, counter[1] + 1)))
    try:
        if warm_up:  # first calls allocate, pick kernels, compile and trace offloading's order
            call(1)
            _sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for _ in range(repeats):
            if fresh_prompts:
                pipe._prompt_cache.clear()
            counter[:] = [0, 0]
            start = time.perf_counter()
            call(steps)
            _sync(device)
            times.append(time.perf_counter() - start)
    finally:
        for handle in handles:
            handle.remove()
    peak = torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None
    return Clip(statistics.median(times), peak, final[-1], counter[0], counter[1])


def repeats_for(size: str, quick: bool) -> int:
    """Renders timed per row (their median): one at full size (a minute each), more where a shared CPU's noise
    is larger than a clip."""
    return 1 if size == "full" else 2 if quick else 3


def _width(pipe) -> int:
    cfg = pipe.transformer.config
    return cfg.num_attention_heads * cfg.attention_head_dim


# -- fast mode -------------------------------------------------------------------------------------------------


def calibrate_magcache(pipe, model: str, size: str, steps: int) -> list[float]:
    """MagCache's magnitude ratios for this model and schedule, from one full run (diffusers prints them)."""
    from ..dit.speed import cache_config, enable_step_cache

    enable_step_cache(pipe.transformer, cache_config("magcache-0.06", steps))
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            render_clip(pipe, model, size, steps, warm_up=False)
    finally:
        pipe.transformer.disable_cache()
    text = printed.getvalue()
    listed = text[text.rindex("[") + 1 : text.rindex("]")]
    return [float(v) for v in listed.split(",")]


def fast_rows(
    pipe, model: str, size: str, steps: int, exact: Clip, flops: float, repeats: int = 1
) -> tuple[list[DiTRow], list[str]]:
    """Every step cache of :data:`~mtvcrafter.dit.speed.CACHES` on ``pipe`` (exact mode), then fast mode as the
    backend runs it: rows with speed-up, relative error and blocks run; and notes (fp8 skipped, and why)."""
    from ..dit.speed import CACHES, FAST_CACHE, cache_config, enable_fp8, enable_step_cache, fp8_unavailable

    rows, notes = [], []
    all_blocks = exact.blocks_run
    for name in CACHES:
        calibration = calibrate_magcache(pipe, model, size, steps) if name.startswith("magcache") else None
        enable_step_cache(pipe.transformer, cache_config(name, steps, calibration))
        try:
            clip = render_clip(pipe, model, size, steps, repeats=repeats)
        finally:
            pipe.transformer.disable_cache()
        chosen = " (fast mode's)" if name == FAST_CACHE else ""
        rows.append(_fast_row(f"clip, step cache {name}{chosen}", clip, exact, all_blocks, flops))
    device = pipe._execution_device
    reason = fp8_unavailable(device)
    if reason is None:
        enable_fp8(pipe.transformer, device)
        clip = render_clip(pipe, model, size, steps, repeats=repeats)
        rows.append(_fast_row("clip, fp8 matmuls", clip, exact, all_blocks, flops))
        enable_step_cache(pipe.transformer, cache_config(FAST_CACHE, steps))
        clip = render_clip(pipe, model, size, steps, repeats=repeats)
        pipe.transformer.disable_cache()
        rows.append(_fast_row(f"clip, fast mode ({FAST_CACHE} + fp8)", clip, exact, all_blocks, flops))
    else:
        notes.append(f"fp8: {reason}; fast mode here is the step cache alone")
    return rows, notes


def _fast_row(task: str, clip: Clip, exact: Clip, all_blocks: int, flops: float) -> DiTRow:
    """A fast-mode row: the time, and in the note the error against exact mode, the steps that ran every block
    and the block evaluations saved (what the speed-up is made of where the blocks dominate: at full size on a
    GPU; a shared CPU's wall times vary more than that)."""
    error = relative_error(clip.latents, exact.latents)
    saved = all_blocks / max(clip.blocks_run, 1)
    note = (f"{exact.seconds / clip.seconds:.2f}x exact, error {error:.1e}, {clip.full_steps}/{exact.full_steps} "
            f"full steps, {saved:.1f}x fewer block runs")  # fmt: skip
    return DiTRow(task, clip.seconds, clip.peak_gib, flops / clip.seconds / 1e12, note)


# -- offload modes ---------------------------------------------------------------------------------------------


def offload_rows(
    model: str,
    size: str,
    device: torch.device,
    dtype: torch.dtype,
    modes: list[str],
    steps: int,
    flops: float,
    repeats: int = 1,
) -> tuple[list[DiTRow], list[str], bool]:
    """Whole clips without offloading and in each of ``modes``, each from a pipeline built on the CPU as a
    backend loads it: rows, goal lines, and whether a goal was missed."""
    from ..dit.speed import prepare_pipeline

    runs: dict[str, tuple[Clip, str]] = {}
    for mode in ["none", *[m for m in modes if m != "none"]]:
        pipe = build(model, size, torch.device("cpu"), dtype)
        used, _ = prepare_pipeline(pipe, device, offload=mode, compile_blocks=False, size=video_size(model, size))
        runs[mode] = (render_clip(pipe, model, size, steps, repeats=repeats), used)
        del pipe
        _free(device)
    none = runs["none"][0]
    rows, goals, missed = [], [], False
    for mode, (clip, used) in runs.items():
        label = f"offload {mode}" + (f" (chose {used})" if mode == "auto" else "")
        differs = float((clip.latents - none.latents).abs().max())
        note = (
            "baseline"
            if mode == "none"
            else f"{clip.seconds / none.seconds:.2f}x the time, latents differ by {differs:.0e}"
        )
        rows.append(DiTRow(f"clip, {label}", clip.seconds, clip.peak_gib, flops / clip.seconds / 1e12, note))
    peak_goal, time_goal = GOALS[model]
    judged = size == "full" and device.type == "cuda"
    for mode, (clip, _) in runs.items():
        if mode == "none":
            continue
        if not judged:
            continue
        ratio = clip.seconds / none.seconds
        met = clip.peak_gib < peak_goal and (time_goal is None or ratio <= time_goal)
        within = f" at {ratio:.2f}x the time (goal ≤ {time_goal}x)" if time_goal else ""
        goals.append(f"offload {mode}: peak {clip.peak_gib:.1f} GiB (goal < {peak_goal:g} GiB){within}: "
                     f"{'met' if met else 'not met'}")  # fmt: skip
        missed = missed or (mode == "group" and not met)
    if not judged:
        goals.append(f"offload goals (peak < {peak_goal:g} GiB" + (f", ≤ {time_goal}x the time" if time_goal else "")
                     + ") are judged at --size full on a GPU")  # fmt: skip
    return rows, goals, missed


def _free(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# -- the command -------------------------------------------------------------------------------------------------


def exact_rows(
    model: str, size: str, device: torch.device, dtype: torch.dtype, steps: int, compile_blocks: bool, repeats: int = 1
) -> tuple[list[DiTRow], list[str], Clip, object]:
    """The plain path and exact mode, whole clips from the same seed: rows, lines (agreement, the compile's
    one-time cost), exact mode's clip and its pipeline (for fast mode's rows)."""
    from ..dit.speed import prepare_pipeline

    pipe = build(model, size, device, dtype)
    plain = render_clip(pipe, model, size, steps, fresh_prompts=model == "17b", repeats=repeats)
    _, notes = prepare_pipeline(pipe, device, compile_blocks=compile_blocks, size=video_size(model, size))
    start = time.perf_counter()
    render_clip(pipe, model, size, 1, warm_up=False)
    first = time.perf_counter() - start
    exact = render_clip(pipe, model, size, steps, repeats=repeats)
    what = " (prompts encoded per render)" if model == "17b" else ""
    rows = [
        DiTRow(f"clip, plain path{what}", plain.seconds, plain.peak_gib, None, "baseline"),
        DiTRow("clip, exact mode", exact.seconds, exact.peak_gib, None, f"{plain.seconds / exact.seconds:.2f}x"),
    ]
    differs = float((exact.latents - plain.latents).abs().max())
    same = "bit for bit" if differs == 0 else "compiled blocks round differently"
    lines = [f"exact mode vs the plain path: final latents differ by at most {differs:.1e} ({same})"]
    if any(n.startswith("compiling") for n in notes):
        lines.append(f"torch.compile's one-time cost: {max(first - exact.seconds / steps, 0):.1f} s at the first step")
    return rows, lines, exact, pipe


def clip_flops(model: str, size: str, pipe, steps: int) -> float:
    from .dit import step_flops
    from .dit_17b import step_flops_17b

    cfg = pipe.transformer.config
    height, width, frames = video_size(model, size)
    lf = (frames - 1) // 4 + 1
    n, m = lf * (height // 16) * (width // 16), lf * 24
    dim = cfg.num_attention_heads * cfg.attention_head_dim
    if model == "7b":
        return steps * step_flops(cfg.num_layers, dim, n, m, batch=2)
    return steps * step_flops_17b(cfg.num_layers, dim, cfg.ffn_dim, n, m, batch=2)


def modes_benchmark(
    model: str = "7b",
    size: str | None = None,
    fast: bool = False,
    offload: str | None = None,
    compile_blocks: bool | None = None,
    quick: bool = False,
    steps: int | None = None,
) -> tuple[list[DiTRow], list[str], bool]:
    """Rows, lines under the table (agreement, compile cost, fp8, goals) and whether a goal was missed."""
    from ..dit.offload import OFFLOAD_MODES

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    size = size or ("full" if device.type == "cuda" else "thin")
    compile_blocks = device.type == "cuda" if compile_blocks is None else compile_blocks
    steps = steps or (50 if not quick else 20)
    repeats = repeats_for(size, quick)
    rows, lines, exact, pipe = exact_rows(model, size, device, dtype, steps, compile_blocks, repeats)
    flops = clip_flops(model, size, pipe, steps)
    for row in rows:
        row.tflops = flops / row.seconds / 1e12
    missed = False
    if fast:
        fast_list, notes = fast_rows(pipe, model, size, steps, exact, flops, repeats)
        rows += fast_list
        lines += notes
    del pipe
    _free(device)
    if offload:
        modes = [*OFFLOAD_MODES[1:], "auto"] if offload == "all" else [offload]
        offload_list, goals, missed = offload_rows(model, size, device, dtype, modes, steps, flops, repeats)
        rows += offload_list
        lines += goals
    return rows, lines, missed


def print_modes(title: str, rows: list[DiTRow], lines: list[str], print_table: Callable) -> None:
    print_table(title, rows)
    for line in lines:
        print(line)


def dit_command(
    model: str = "7b",
    size: str | None = None,
    quick: bool = False,
    compile_blocks: bool | None = None,
    fast: bool = False,
    offload: str | None = None,
) -> int:
    """``mtvcrafter bench dit``: one denoising step (ours against the plain baseline), then whole clips (the plain
    path, exact mode, and fast mode and offloading when asked). Exit status 1 when a goal judged here is missed."""
    from .dit import dit_benchmarks, print_dit_table
    from .dit_17b import dit17b_benchmarks

    if model == "17b":
        step_rows, title, missed = dit17b_benchmarks(size=size, quick=quick, compile_blocks=compile_blocks)
    else:
        step_rows, title, missed = dit_benchmarks(size=size, quick=quick, compile_blocks=compile_blocks)
    print_dit_table(title, step_rows)
    print()
    rows, lines, clip_missed = modes_benchmark(model, size, fast, offload, compile_blocks, quick)
    device = "a GPU" if torch.cuda.is_available() else "the CPU"
    clip_size = size or ("full" if torch.cuda.is_available() else "thin")
    height, width, frames = video_size(model, clip_size)
    steps = 20 if quick else 50
    clip_title = (
        f"mtvcrafter bench dit, whole clips — MV-DiT-{model.upper()}, {clip_size} size, {height}×{width}×{frames}, "
        f"{steps} steps with guidance, random weights, same seed, on {device}"
    )
    print_modes(clip_title, rows, lines, print_dit_table)
    return 1 if missed or clip_missed else 0
