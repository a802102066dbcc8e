"""MV-DiT-17B benchmark: one denoising step with text CFG (batch 2), ours against a baseline in the same run.

The baseline is the same model run the plain way: separate q/k/v projections, eager PyTorch. Ours adds
the fused projections and, on a GPU, ``torch.compile`` of the blocks (regional compilation). Both run the
official numerics on the same random weights; their outputs are compared.
"""

from __future__ import annotations

import torch

from ..motion import NormStats
from .dit import DiTRow, _construct, _timed

#: transformer configuration (besides the official defaults) and the video (height, width, frames)
SIZES_17B = {
    "full": (dict(), (512, 512, 49)),
    "small": (dict(num_attention_heads=24, num_layers=1, ffn_dim=8192, added_kv_proj_dim=3072), (128, 128, 49)),
    "tiny": (
        dict(num_attention_heads=2, attention_head_dim=36, num_layers=2, ffn_dim=64, text_dim=32, freq_dim=32,
             image_dim=24, added_kv_proj_dim=72, motion_token_dim=48),
        (64, 64, 49),
    ),
    # many narrow blocks: where a step cache has blocks to skip, on a CPU
    "thin": (
        dict(num_attention_heads=4, attention_head_dim=36, num_layers=8, ffn_dim=288, text_dim=32, freq_dim=32,
             image_dim=32, added_kv_proj_dim=144, motion_token_dim=48),
        (128, 128, 49),
    ),
}  # fmt: skip


def step_flops_17b(layers: int, dim: int, ffn: int, n: int, m: int, batch: int, every: int = 4) -> float:
    """2 × multiply-adds of one forward: projections, attentions (self, text 512 + image 257, motion), FFN."""
    context = 512 + 257
    block = 2 * (4 * n * dim * dim + 2 * n * dim * dim + 2 * context * dim * dim + 2 * n * dim * ffn)
    block += 2 * (2 * n * n * dim + 2 * n * context * dim)
    motion = 2 * (2 * n * dim * dim + 2 * m * dim * dim + 2 * n * m * dim)
    return float(batch * (layers * block + -(-layers // every) * motion))


def dit17b_benchmarks(size: str | None = None, quick: bool = False, compile_blocks: bool | None = None):
    """Rows, a title line, and whether a goal was missed (no goal is set for the 17B yet)."""
    from ..dit import MVDiT17BTransformer

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    size = size or ("full" if device.type == "cuda" else "tiny")
    compile_blocks = device.type == "cuda" if compile_blocks is None else compile_blocks
    config, (height, width, frames) = SIZES_17B[size]
    model = _construct(lambda: MVDiT17BTransformer(**config), device, dtype)
    with torch.no_grad():  # small weights keep a random 40-block stack finite in bf16
        for param in model.parameters():
            if param.ndim >= 2:
                param.normal_(0.0, 0.02)
    model.set_numerics("official")
    cfg = model.config
    dim = cfg.num_attention_heads * cfg.attention_head_dim
    lf, lh, lw = (frames - 1) // 4 + 1, height // 8, width // 8
    gen = torch.Generator(device).manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=gen, device=device).to(dtype)

    x = rand(2, cfg.in_channels, lf, lh, lw)
    text = rand(2, 512, cfg.text_dim)
    image = rand(2, 257, cfg.image_dim)
    tokens = rand(2, lf * 24, cfg.motion_token_dim)
    t = torch.tensor([999.0, 999.0], device=device)
    mean = NormStats.official().mean
    n, m = lf * (lh // 2) * (lw // 2), lf * 24
    flops = step_flops_17b(cfg.num_layers, dim, cfg.ffn_dim, n, m, batch=2)
    repeats = 2 if quick else 5
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"

    def step():
        return model(x, t, text, image, tokens, mean, return_dict=False)[0]

    rows = []
    with torch.inference_mode():
        base_s, base_mem = _timed(step, device, repeats)
        rows.append(DiTRow("17B step with CFG, baseline (unfused, eager)", base_s, base_mem, flops / base_s / 1e12,
                           "baseline"))  # fmt: skip
        plain = step().float()
        model.fuse_qkv_projections()
        label = "17B step with CFG, ours fused"
        if compile_blocks:
            model.compile_blocks()
            label += " + compiled"
        s, mem = _timed(step, device, repeats)
        rows.append(DiTRow(label, s, mem, flops / s / 1e12, f"{base_s / s:.2f}x"))
        agreement = float((step().float() - plain).norm() / plain.norm())
    title = (
        f"mtvcrafter bench dit --model 17b — {size} size ({cfg.num_layers} blocks × {dim} wide), "
        f"{height}×{width}×{frames}, {str(dtype).removeprefix('torch.')}, random weights, on {gpu}; output "
        f"agreement ours vs baseline: {agreement:.1e} relative"
    )
    return rows, title, False
