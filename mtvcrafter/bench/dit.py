"""MV-DiT-7B benchmarks: one denoising step with motion CFG, and a whole clip, against a plain baseline.

The baseline is the same math written plainly here, the way the official code does it: separate
q/k/v projections, rotary embeddings applied in float32 by slice assignment, the 6-way adaptive
norm chunked for every block. Both run the same random weights at the chosen size.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..motion import NormStats

#: Sizes: transformer configuration and the video it is timed on (height, width, frames).
SIZES = {
    "full": (dict(), (512, 512, 49)),
    "small": (dict(num_attention_heads=16, num_layers=2), (256, 256, 49)),
    "tiny": (
        dict(num_attention_heads=2, attention_head_dim=16, num_layers=2, time_embed_dim=32, text_embed_dim=8),
        (64, 64, 49),
    ),
    # many narrow blocks: where a step cache has blocks to skip, on a CPU
    "thin": (
        dict(num_attention_heads=4, attention_head_dim=32, num_layers=8, time_embed_dim=64, text_embed_dim=8),
        (128, 128, 49),
    ),
}

#: The authors' code, measured on an H100 (bf16, 512×512×49, CFG): seconds per denoising step.
OFFICIAL_H100_STEP_S = 1.39
GOAL_H100_STEP_S = 0.9


def step_flops(layers: int, dim: int, video_tokens: int, motion_tokens: int, batch: int) -> float:
    """Multiply-adds ×2 of one forward: projections, feed-forward and both attentions."""
    n, m, d = video_tokens, motion_tokens, dim
    per_block = 28 * n * d * d + 4 * m * d * d + 4 * n * n * d + 4 * n * m * d
    return float(batch * layers * per_block)


# -- the plain baseline ------------------------------------------------------------------------------


def _rope_plain(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    real, imag = x.reshape(*x.shape[:-1], -1, 2).unbind(-1)
    rotated = torch.stack([-imag, real], dim=-1).flatten(3)
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)


def _attention_plain(p, prefix, heads, hidden, context, rope_q, rope_k):
    b = hidden.shape[0]
    q = F.linear(hidden, p[f"{prefix}.to_q.weight"], p[f"{prefix}.to_q.bias"])
    k = F.linear(context, p[f"{prefix}.to_k.weight"], p[f"{prefix}.to_k.bias"])
    v = F.linear(context, p[f"{prefix}.to_v.weight"], p[f"{prefix}.to_v.bias"])
    hd = q.shape[-1] // heads
    q = q.view(b, -1, heads, hd).transpose(1, 2)
    k = k.view(b, -1, heads, hd).transpose(1, 2)
    v = v.view(b, -1, heads, hd).transpose(1, 2)
    q = F.layer_norm(q, (hd,), p[f"{prefix}.norm_q.weight"], p[f"{prefix}.norm_q.bias"], 1e-6)
    k = F.layer_norm(k, (hd,), p[f"{prefix}.norm_k.weight"], p[f"{prefix}.norm_k.bias"], 1e-6)
    n = rope_q[0].shape[0]
    q[:, :, :n] = _rope_plain(q[:, :, :n], *rope_q)
    k[:, :, : rope_k[0].shape[0]] = _rope_plain(k[:, :, : rope_k[0].shape[0]], *rope_k)
    out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, -1, heads * hd)
    return F.linear(out, p[f"{prefix}.to_out.0.weight"], p[f"{prefix}.to_out.0.bias"])


def plain_forward(model, hidden_states, timestep, motion_tokens, video_rope, motion_rope) -> torch.Tensor:
    """MV-DiT-7B's forward written plainly from the model's parameters (rotary tables given)."""
    cfg = model.config
    p = dict(model.named_parameters())
    heads, dim, ps = cfg.num_attention_heads, cfg.num_attention_heads * cfg.attention_head_dim, cfg.patch_size
    b, f, c, h, w = hidden_states.shape
    temb = model.time_proj(timestep).to(hidden_states.dtype)
    temb = F.linear(
        F.silu(F.linear(temb, p["time_embedding.linear_1.weight"], p["time_embedding.linear_1.bias"])),
        p["time_embedding.linear_2.weight"],
        p["time_embedding.linear_2.bias"],
    )
    x = F.conv2d(
        hidden_states.reshape(-1, c, h, w), p["patch_embed.proj.weight"], p["patch_embed.proj.bias"], stride=ps
    )
    x = x.view(b, f, *x.shape[1:]).flatten(3).transpose(2, 3).flatten(1, 2).contiguous()
    for i in range(cfg.num_layers):
        pre = f"transformer_blocks.{i}"

        def ada(name, x, pre=pre):
            mod = F.linear(F.silu(temb), p[f"{pre}.{name}.linear.weight"], p[f"{pre}.{name}.linear.bias"])
            shift, scale, gate, _, _, _ = mod.chunk(6, dim=1)
            y = F.layer_norm(x, (dim,), p[f"{pre}.{name}.norm.weight"], p[f"{pre}.{name}.norm.bias"], cfg.norm_eps)
            return y * (1 + scale)[:, None, :] + shift[:, None, :], gate[:, None, :]

        y, gate = ada("norm1", x)
        x = x + gate * _attention_plain(p, f"{pre}.attn1", heads, y, y, video_rope, video_rope)
        x = x + _attention_plain(p, f"{pre}.attn0", heads, x, motion_tokens, video_rope, motion_rope)
        y, gate = ada("norm2", x)
        y = F.gelu(F.linear(y, p[f"{pre}.ff.net.0.proj.weight"], p[f"{pre}.ff.net.0.proj.bias"]), approximate="tanh")
        x = x + gate * F.linear(y, p[f"{pre}.ff.net.2.weight"], p[f"{pre}.ff.net.2.bias"])
    x = F.layer_norm(x, (dim,), p["norm_final.weight"], p["norm_final.bias"], cfg.norm_eps)
    shift, scale = F.linear(F.silu(temb), p["norm_out.linear.weight"], p["norm_out.linear.bias"]).chunk(2, dim=1)
    x = F.layer_norm(x, (dim,), p["norm_out.norm.weight"], p["norm_out.norm.bias"], cfg.norm_eps)
    x = F.linear(x * (1 + scale[:, None]) + shift[:, None], p["proj_out.weight"], p["proj_out.bias"])
    x = x.reshape(b, f, h // ps, w // ps, -1, ps, ps)
    return x.permute(0, 1, 4, 2, 5, 3, 6).flatten(5, 6).flatten(3, 4)


# -- measuring ---------------------------------------------------------------------------------------


@dataclass
class DiTRow:
    task: str
    seconds: float
    peak_gib: float | None
    tflops: float | None
    note: str = ""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device, repeats: int) -> tuple[float, float | None]:
    fn()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return statistics.median(times), peak


def _construct(build, device: torch.device, dtype: torch.dtype, seed: int = 0):
    """A module built directly on ``device`` in ``dtype`` (no full-precision copy first)."""
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return build().eval()
    finally:
        torch.set_default_dtype(previous)


def build_transformer(size: str, device: torch.device, dtype: torch.dtype, seed: int = 0):
    from ..dit import MVDiT7BTransformer

    config, _ = SIZES[size]
    model = _construct(lambda: MVDiT7BTransformer(**config), device, dtype, seed)
    with torch.no_grad():  # small weights keep a random 42-layer stack finite in bf16
        for name, param in model.named_parameters():
            if param.ndim >= 2 and "unconditional" not in name:
                param.normal_(0.0, 0.02)
    return model.eval()


def dit_benchmarks(
    size: str | None = None, quick: bool = False, compile_blocks: bool | None = None, clip_steps: int | None = None
) -> tuple[list[DiTRow], str, bool]:
    """Rows, a title line, and whether a goal was missed (only judged at full size on an H100)."""
    from ..dit import COGVIDEOX_5B_SCHEDULER, MTVCrafterPipeline

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    size = size or ("full" if device.type == "cuda" else "small")
    compile_blocks = device.type == "cuda" if compile_blocks is None else compile_blocks
    model = build_transformer(size, device, dtype)
    cfg = model.config
    dim = cfg.num_attention_heads * cfg.attention_head_dim
    height, width, frames = SIZES[size][1]
    latent_f, lh, lw = (frames - 1) // 4 + 1, height // 8, width // 8
    gen = torch.Generator(device).manual_seed(0)
    x = torch.randn(2, latent_f, cfg.in_channels, lh, lw, generator=gen, device=device).to(dtype)
    tokens = torch.randn(2, latent_f * 24, model.unconditional_motion_token.shape[1], generator=gen, device=device)
    tokens = tokens.to(dtype)
    t = torch.tensor([999, 999], device=device)
    mean = NormStats.official().mean
    video_rope, motion_rope = model.rotary_tables(latent_f, lh // 2, lw // 2, mean, device, dtype)
    flops = step_flops(cfg.num_layers, dim, latent_f * (lh // 2) * (lw // 2), latent_f * 24, batch=2)
    repeats = 2 if quick else 5
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    rows = []

    with torch.inference_mode():
        base_s, base_mem = _timed(lambda: plain_forward(model, x, t, tokens, video_rope, motion_rope), device, repeats)
        rows.append(DiTRow("step with CFG, plain baseline", base_s, base_mem, flops / base_s / 1e12, "baseline"))
        ours = lambda: model(x, t, tokens, mean, return_dict=False)  # noqa: E731
        s, mem = _timed(ours, device, repeats)
        rows.append(DiTRow("step with CFG, ours", s, mem, flops / s / 1e12, f"{base_s / s:.2f}x"))
        plain = plain_forward(model, x, t, tokens, video_rope, motion_rope).float()
        agreement = float((ours()[0].float() - plain).norm() / plain.norm())
        if compile_blocks:
            model.fuse_qkv_projections()
            model.compile_blocks()
            s, mem = _timed(ours, device, repeats)
            rows.append(DiTRow("step with CFG, ours fused + compiled", s, mem, flops / s / 1e12, f"{base_s / s:.2f}x"))
            agreement = max(agreement, float((ours()[0].float() - plain).norm() / plain.norm()))
        best_step = min(r.seconds for r in rows[1:])

    # a whole clip: reference encoding, every denoising step of one window, decoding
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDPMScheduler

    if size == "full":  # CogVideoX-5B's VAE (its default configuration), tiled as the official script
        vae = _construct(lambda: AutoencoderKLCogVideoX(scaling_factor=0.7), device, dtype)
        vae.enable_tiling()
    else:  # a small VAE of the same structure: the transformer is what is measured
        vae = _construct(
            lambda: AutoencoderKLCogVideoX(
                block_out_channels=(8, 8, 16, 16),
                latent_channels=cfg.in_channels // 2,
                layers_per_block=1,
                norm_num_groups=4,
                scaling_factor=0.7,
            ),
            device,
            dtype,
        )
    pipe = MTVCrafterPipeline(model, vae, CogVideoXDPMScheduler(**COGVIDEOX_5B_SCHEDULER), None, NormStats.official())
    pipe.set_progress_bar_config(disable=True)
    steps = clip_steps or (50 if device.type == "cuda" and not quick else 4)
    image = np.full((height, width, 3), 128, np.uint8)
    window_tokens = tokens[1]

    def clip(warm_up: bool = True) -> tuple[float, float | None]:
        if warm_up:  # first calls allocate, pick kernels and (compiled) trace
            pipe(image, motion_tokens=window_tokens, height=height, width=width, num_inference_steps=1)
            _sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        pipe(image, motion_tokens=window_tokens, height=height, width=width, num_inference_steps=steps)
        _sync(device)
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        return time.perf_counter() - start, peak

    clip_flops = flops * steps
    label = f"whole clip ({frames} frames, {steps} steps, VAE)"
    ours_clip, ours_mem = clip()
    if model.fused_projections:  # the baseline reads the official parameter names
        model.unfuse_qkv_projections()

    def plain_adapter(hidden_states, timestep, motion_tokens, joint_mean, return_dict=True):
        return (plain_forward(model, hidden_states, timestep, motion_tokens, video_rope, motion_rope),)

    model.forward = plain_adapter
    try:
        base_clip, base_mem = clip()
    finally:
        del model.forward
    rows.append(DiTRow(f"{label}, plain baseline", base_clip, base_mem, clip_flops / base_clip / 1e12, "baseline"))
    rows.append(
        DiTRow(f"{label}, ours", ours_clip, ours_mem, clip_flops / ours_clip / 1e12, f"{base_clip / ours_clip:.2f}x")
    )
    goal = ""
    if size == "full" and "H100" in gpu:
        met = best_step <= GOAL_H100_STEP_S
        goal = (f"; goal: a step under {GOAL_H100_STEP_S} s on an H100 (the authors' code: {OFFICIAL_H100_STEP_S} s): "
                f"{'met' if met else 'NOT met'}")  # fmt: skip
    title = (
        f"mtvcrafter bench dit — {size} size ({cfg.num_layers} layers × {dim} wide), {height}×{width}×{frames}, "
        f"{str(dtype).removeprefix('torch.')}, random weights, on {gpu}; output agreement ours vs plain: "
        f"{agreement:.1e} relative{goal}"
    )
    missed = bool(goal) and "NOT met" in goal
    return rows, title, missed


def print_dit_table(title: str, rows: list[DiTRow]) -> None:
    print(title)
    header = f"{'task':<52} {'time':>10} {'peak GiB':>9} {'TFLOP/s':>8}  vs baseline"
    print(header)
    print("-" * len(header))
    for r in rows:
        mem = f"{r.peak_gib:9.1f}" if r.peak_gib is not None else f"{'-':>9}"
        tf = f"{r.tflops:8.2f}" if r.tflops is not None else f"{'-':>8}"
        print(f"{r.task:<52} {r.seconds:9.3f}s {mem} {tf}  {r.note}")
