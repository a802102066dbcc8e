"""MV-DiT-17B against an independent float64 re-computation of SPEC §6.

The folders are built here under the OFFICIAL parameter names and shapes (the full 5120 width, 40 heads
of 128 and the 13,824-wide feed-forward, with few blocks), written as the authors publish them (sharded
safetensors with an index, or one ``.bin``), loaded through ``MVDiT17BTransformer.from_pretrained`` and
compared with :func:`reference`, written below with plain torch ops in float64 from the official names:
complex rotary products, the official block order (self-attention, text/image cross-attention, motion
attention, feed-forward), the motion keys reinterpreted in memory order as (batch, heads, tokens, 128).
Plausible misreadings, switched on in the reference, move the output far past the limit.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_dispatch import dispatch_attention_fn
from safetensors.torch import save_file

from mtvcrafter.dit.errors import ModelFileError
from mtvcrafter.dit.transformer_17b import MVDiT17BTransformer
from mtvcrafter.motion import NormStats

LIMIT = 1e-5
FULL = dict(dim=5120, heads=40, ffn=13824, text=4096, image=1280, freq=256, tokens=3072, in_dim=36, out_dim=16)
SMALL = dict(dim=144, heads=2, ffn=96, text=40, image=24, freq=32, tokens=48, in_dim=36, out_dim=16)


def official_state(cfg: dict, layers: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under the official names and shapes (blocks 0, 4, … with motion attention)."""
    g = torch.Generator().manual_seed(seed)
    dim, ffn = cfg["dim"], cfg["ffn"]

    def lin(out, inp, prefix, bias=True):
        sd[prefix + ".weight"] = torch.randn(out, inp, generator=g) / math.sqrt(inp)
        if bias:
            sd[prefix + ".bias"] = torch.randn(out, generator=g) * 0.02

    def norm(prefix, n, bias=True):
        sd[prefix + ".weight"] = 1 + 0.1 * torch.randn(n, generator=g)
        if bias:
            sd[prefix + ".bias"] = 0.1 * torch.randn(n, generator=g)

    sd: dict[str, torch.Tensor] = {}
    sd["patch_embedding.weight"] = torch.randn(dim, cfg["in_dim"], 1, 2, 2, generator=g) / math.sqrt(4 * cfg["in_dim"])
    sd["patch_embedding.bias"] = torch.randn(dim, generator=g) * 0.02
    lin(dim, cfg["text"], "text_embedding.0")
    lin(dim, dim, "text_embedding.2")
    lin(dim, cfg["freq"], "time_embedding.0")
    lin(dim, dim, "time_embedding.2")
    lin(6 * dim, dim, "time_projection.1")
    norm("img_emb.proj.0", cfg["image"])
    lin(cfg["image"], cfg["image"], "img_emb.proj.1")
    lin(dim, cfg["image"], "img_emb.proj.3")
    norm("img_emb.proj.4", dim)
    for i in range(layers):
        b = f"blocks.{i}"
        sd[b + ".modulation"] = torch.randn(1, 6, dim, generator=g) / math.sqrt(dim)
        for attn in ["self_attn", "cross_attn"] + (["motion_attn"] if i % 4 == 0 else []):
            for p in "qkvo":
                lin(dim, dim, f"{b}.{attn}.{p}")
            norm(f"{b}.{attn}.norm_q", dim, bias=False)
            norm(f"{b}.{attn}.norm_k", dim, bias=False)
        lin(dim, dim, f"{b}.cross_attn.k_img")
        lin(dim, dim, f"{b}.cross_attn.v_img")
        norm(f"{b}.cross_attn.norm_k_img", dim, bias=False)
        norm(f"{b}.norm3", dim)
        if i % 4 == 0:
            norm(f"{b}.norm4", dim)
        lin(ffn, dim, f"{b}.ffn.0")
        lin(dim, ffn, f"{b}.ffn.2")
    sd["head.modulation"] = torch.randn(1, 2, dim, generator=g) / math.sqrt(dim)
    lin(cfg["out_dim"] * 4, dim, "head.head")
    return sd


def official_config(cfg: dict, layers: int) -> dict:
    """A ``config.json`` as the official class saves it (its keys, not diffusers')."""
    return {
        "_class_name": "Transformer17B",
        "_diffusers_version": "0.31.0",
        "dim": cfg["dim"],
        "eps": 1e-06,
        "ffn_dim": cfg["ffn"],
        "freq_dim": cfg["freq"],
        "in_dim": cfg["in_dim"],
        "model_type": "i2v",
        "num_heads": cfg["heads"],
        "num_layers": layers,
        "out_dim": cfg["out_dim"],
        "patch_size": [1, 2, 2],
        "qk_norm": True,
        "cross_attn_norm": True,
        "text_dim": cfg["text"],
        "text_len": 512,
        "use_2d": False,
        "window_size": [-1, -1],
        "hidden_size": cfg["dim"],
        "in_channels": cfg["in_dim"],
        # small test sizes only (the official tokens are 3072 wide, CLIP features 1280)
        **({"motion_token_dim": cfg["tokens"], "image_dim": cfg["image"]} if cfg["tokens"] != 3072 else {}),
    }


def write_folder(folder, sd, config, kind: str = "sharded"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    if kind == "bin":
        torch.save(sd, folder / "diffusion_pytorch_model.bin")
        return folder
    if kind == "single":
        save_file(sd, str(folder / "diffusion_pytorch_model.safetensors"))
        return folder
    names = list(sd)
    shards = [names[: len(names) // 2], names[len(names) // 2 :]]
    weight_map = {}
    for k, part in enumerate(shards, 1):
        shard = f"diffusion_pytorch_model-{k:05d}-of-00002.safetensors"
        save_file({n: sd[n].contiguous() for n in part}, str(folder / shard))
        weight_map.update({n: shard for n in part})
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return folder


# -- the float64 reference (SPEC §6, official names) ---------------------------------------------------


class Float64:
    """The state dict's tensors in float64, converted when read (a full-width block is 4 GB in float64)."""

    def __init__(self, sd, prefix=""):
        self.sd, self.prefix = sd, prefix

    def __getitem__(self, name):
        return self.sd[self.prefix + name].double()


def reference(sd, cfg, layers, x, t, text, image, motion, joint_mean, misread: str | None = None):
    """The MV-DiT-17B forward in float64 from the official state dict ``sd``; ``misread`` switches on one
    plausible misreading."""
    d = Float64(sd)
    dim, heads = cfg["dim"], cfg["heads"]
    hd = dim // heads
    x, text, image, motion = (a.double() for a in (x, text, image, motion))
    if misread == "channel order":  # [latents | condition 16 | mask 4] instead of [latents | mask 4 | condition 16]
        x = torch.cat([x[:, :16], x[:, 20:], x[:, 16:20]], dim=1)
    B, _, F_, H, W = x.shape
    f, h, w = F_, H // 2, W // 2

    def linear(a, p, dd):
        return a @ dd[p + ".weight"].T + dd[p + ".bias"]

    def layer_norm(a, eps, weight=None, bias=None):
        mu = a.mean(-1, keepdim=True)
        var = ((a - mu) ** 2).mean(-1, keepdim=True)
        out = (a - mu) / torch.sqrt(var + eps)
        return out if weight is None else out * weight + bias

    def rms(a, weight, eps=1e-6):
        return a / torch.sqrt((a * a).mean(-1, keepdim=True) + eps) * weight

    gelu_tanh = torch.nn.GELU(approximate="tanh")

    # patch embedding: 1×2×2 patches, tokens in (frame, row, column) order
    patches = x.reshape(B, -1, f, h, 2, w, 2).permute(0, 2, 3, 5, 1, 4, 6).reshape(B, f * h * w, -1)
    tokens = patches @ d["patch_embedding.weight"].reshape(dim, -1).T + d["patch_embedding.bias"]

    # time: float64 sinusoid (cos, sin), MLP → e; SiLU + linear → six modulations
    half = cfg["freq"] // 2
    angles = t.double()[:, None] * torch.pow(10000.0, -torch.arange(half, dtype=torch.float64) / half)
    sinus = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    e = linear(torch.nn.functional.silu(linear(sinus, "time_embedding.0", d)), "time_embedding.2", d)
    e0 = linear(torch.nn.functional.silu(e), "time_projection.1", d).reshape(B, 6, dim)

    ctx_text = linear(gelu_tanh(linear(text, "text_embedding.0", d)), "text_embedding.2", d)
    im = layer_norm(image, 1e-5, d["img_emb.proj.0.weight"], d["img_emb.proj.0.bias"])
    im = linear(torch.nn.functional.gelu(linear(im, "img_emb.proj.1", d)), "img_emb.proj.3", d)
    ctx_img = layer_norm(im, 1e-5, d["img_emb.proj.4.weight"], d["img_emb.proj.4.bias"])

    # video rotary: complex pairs; split of the 64 pairs 22 / 21 / 21 (time, rows, columns)
    c = hd // 2
    split = [c - 2 * (c // 3), c // 3, c // 3]
    if misread == "rotary split":
        split = [c // 3, c // 3, c - 2 * (c // 3)]

    def band(n_pairs, positions):
        freqs = 1.0 / torch.pow(10000.0, torch.arange(0, 2 * n_pairs, 2, dtype=torch.float64) / (2 * n_pairs))
        return torch.polar(torch.ones(len(positions), n_pairs, dtype=torch.float64), torch.outer(positions, freqs))

    ft, fh, fw = (band(n, torch.arange(m, dtype=torch.float64)) for n, m in zip(split, (f, h, w), strict=True))
    video = torch.cat(
        [
            ft[:, None, None].expand(f, h, w, -1),
            fh[None, :, None].expand(f, h, w, -1),
            fw[None, None, :].expand(f, h, w, -1),
        ],
        dim=-1,
    ).reshape(f * h * w, 1, c)

    def rotate_video(a):  # a (B, N, heads, hd)
        z = torch.view_as_complex(a.reshape(*a.shape[:-1], -1, 2).contiguous())
        return torch.view_as_real(z * video).reshape(a.shape)

    # motion keys' rotary: 44 channels for the latent frame, 28 each for x, y, z of the centred joint mean
    time_channels = hd - 4 * (hd // 6) if misread != "rotary split" else hd // 4
    space = (hd - time_channels) // 3
    mean64 = np.asarray(joint_mean, np.float32)
    centred = torch.from_numpy((mean64 - mean64.mean(axis=0, dtype=np.float32)).astype(np.float64))

    def real_band(dim_band, positions):
        freqs = 1.0 / torch.pow(10000.0, torch.arange(0, dim_band, 2, dtype=torch.float64) / dim_band)
        ang = torch.outer(positions, freqs).repeat_interleave(2, dim=1)
        return torch.cos(ang), torch.sin(ang)

    tc, ts = real_band(time_channels, torch.arange(f, dtype=torch.float64))
    spatial = [real_band(space, centred[:, a]) for a in range(3)]
    sc = torch.cat([s[0] for s in spatial], dim=1)
    ss = torch.cat([s[1] for s in spatial], dim=1)
    mcos = torch.cat([tc[:, None].expand(f, 24, -1), sc[None].expand(f, 24, -1)], -1).reshape(f * 24, hd)
    msin = torch.cat([ts[:, None].expand(f, 24, -1), ss[None].expand(f, 24, -1)], -1).reshape(f * 24, hd)

    def rotate_pairs(a, cos, sin):
        pairs = a.reshape(*a.shape[:-1], -1, 2)
        rot = torch.stack([-pairs[..., 1], pairs[..., 0]], -1).reshape(a.shape)
        return a * cos + rot * sin

    def attention(q, k, v):  # (B, N, heads, hd)
        q, k, v = (a.transpose(1, 2) for a in (q, k, v))
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1)
        return (weights @ v).transpose(1, 2).reshape(q.shape[0], -1, dim)

    mo = torch.cat([motion, torch.zeros(*motion.shape[:-1], dim - motion.shape[-1], dtype=torch.float64)], -1)
    x = tokens
    for i in range(layers):
        b = Float64(sd, f"blocks.{i}.")
        mod = (b["modulation"] + e0).unbind(1)
        h1 = layer_norm(x, 1e-6) * (1 + mod[1][:, None]) + mod[0][:, None]
        q = rms(linear(h1, "self_attn.q", b), b["self_attn.norm_q.weight"]).reshape(B, -1, heads, hd)
        k = rms(linear(h1, "self_attn.k", b), b["self_attn.norm_k.weight"]).reshape(B, -1, heads, hd)
        v = linear(h1, "self_attn.v", b).reshape(B, -1, heads, hd)
        y = linear(attention(rotate_video(q), rotate_video(k), v), "self_attn.o", b)
        x = x + y * mod[2][:, None]

        cross_norm, ffn_norm = ("norm3", None) if misread != "norm swap" else (None, "norm3")
        hc = (
            layer_norm(x, 1e-6, b[cross_norm + ".weight"], b[cross_norm + ".bias"])
            if cross_norm
            else layer_norm(x, 1e-6)
        )
        q = rms(linear(hc, "cross_attn.q", b), b["cross_attn.norm_q.weight"]).reshape(B, -1, heads, hd)
        k = rms(linear(ctx_text, "cross_attn.k", b), b["cross_attn.norm_k.weight"]).reshape(B, -1, heads, hd)
        v = linear(ctx_text, "cross_attn.v", b).reshape(B, -1, heads, hd)
        ki = rms(linear(ctx_img, "cross_attn.k_img", b), b["cross_attn.norm_k_img.weight"]).reshape(B, -1, heads, hd)
        vi = linear(ctx_img, "cross_attn.v_img", b).reshape(B, -1, heads, hd)
        x = x + linear(attention(q, k, v) + attention(q, ki, vi), "cross_attn.o", b)

        if i % 4 == 0:
            hm = layer_norm(x, 1e-6, b["norm4.weight"], b["norm4.bias"])
            q = rms(linear(hm, "motion_attn.q", b), b["motion_attn.norm_q.weight"]).reshape(B, -1, heads, hd)
            k = rms(linear(mo, "motion_attn.k", b), b["motion_attn.norm_k.weight"])
            if misread == "motion keys per token":
                k = rotate_pairs(k.reshape(B, -1, heads, hd).transpose(1, 2), mcos, msin).transpose(1, 2)
            else:  # the official: memory read as (B, heads, M, hd), rotated, then transposed
                k = rotate_pairs(k.reshape(B, heads, -1, hd), mcos, msin).transpose(1, 2)
            v = linear(mo, "motion_attn.v", b).reshape(B, -1, heads, hd)
            x = x + linear(attention(rotate_video(q), k, v), "motion_attn.o", b)

        hf = layer_norm(x, 1e-6, b[ffn_norm + ".weight"], b[ffn_norm + ".bias"]) if ffn_norm else layer_norm(x, 1e-6)
        hf = hf * (1 + mod[4][:, None]) + mod[3][:, None]
        x = x + linear(gelu_tanh(linear(hf, "ffn.0", b)), "ffn.2", b) * mod[5][:, None]

    shift, scale = (d["head.modulation"] + e[:, None]).unbind(1)
    out = linear(layer_norm(x, 1e-6) * (1 + scale[:, None]) + shift[:, None], "head.head", d)
    # (tokens f, h, w) × (p_t 1, p_h 2, p_w 2, channels) → (B, C, F, H, W)
    out = out.reshape(B, f, h, w, 1, 2, 2, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
    return out.reshape(B, -1, F_, H, W)


def inputs(cfg, frames=2, size=4, seed=1, batch=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cfg["in_dim"], frames, size, size, generator=g)
    t = torch.tensor([937.5, 412.0][:batch])
    text = torch.randn(batch, 512, cfg["text"], generator=g)
    text[:, 20:] = 0  # umT5 features zero-padded after the prompt
    image = torch.randn(batch, 257, cfg["image"], generator=g)
    motion = torch.randn(batch, frames * 24, cfg["tokens"], generator=g)
    return x, t, text, image, motion


def relative(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.fixture(scope="module")
def full_width(tmp_path_factory):
    """The full 5120 width (40 heads × 128, feed-forward 13,824) with one block: block 0, with motion attention."""
    sd = official_state(FULL, layers=1)
    folder = write_folder(tmp_path_factory.mktemp("wan17b") / "MV-DiT" / "Wan-2-1", sd, official_config(FULL, 1))
    model = MVDiT17BTransformer.from_pretrained(folder, torch_dtype=torch.float32)
    return sd, model


def test_full_width_official_folder_matches_the_float64_reference(full_width):
    sd, model = full_width
    assert len(sd) == 23 + 32 + 12  # top level, one block, its motion module
    mean = NormStats.official().mean
    x, t, text, image, motion = inputs(FULL)
    with torch.no_grad():
        ours = model(x, t, text, image, motion, mean).sample
    ref = reference(sd, FULL, 1, x, t, text, image, motion, mean)
    assert ours.shape == (2, 16, 2, 4, 4)
    assert relative(ours, ref) < LIMIT
    # the motion path matters: zeroed motion tokens and a scaled joint mean change the output, and still match
    with torch.no_grad():
        zeroed = model(x, t, text, image, torch.zeros_like(motion), mean).sample
        scaled = model(x, t, text, image, motion, mean * 3).sample
    assert relative(zeroed, ours) > 1e-2 and relative(scaled, ours) > 1e-3
    assert relative(zeroed, reference(sd, FULL, 1, x, t, text, image, torch.zeros_like(motion), mean)) < LIMIT
    assert relative(scaled, reference(sd, FULL, 1, x, t, text, image, motion, mean * 3)) < LIMIT


@pytest.mark.parametrize("misread", ["motion keys per token", "channel order", "rotary split", "norm swap"])
def test_plausible_misreadings_move_the_output_far_past_the_limit(full_width, misread):
    sd, model = full_width
    mean = NormStats.official().mean
    x, t, text, image, motion = inputs(FULL)
    with torch.no_grad():
        ours = model(x, t, text, image, motion, mean).sample
    wrong = reference(sd, FULL, 1, x, t, text, image, motion, mean, misread=misread)
    assert relative(ours, wrong) > 100 * LIMIT


@pytest.mark.parametrize("kind", ["sharded", "single", "bin"])
def test_five_blocks_motion_every_fourth_any_file_kind(tmp_path, kind):
    sd = official_state(SMALL, layers=5, seed=3)
    folder = write_folder(tmp_path / "Wan-2-1", sd, official_config(SMALL, 5), kind)
    model = MVDiT17BTransformer.from_pretrained(folder)
    assert [hasattr(b, "motion_attn") for b in model.blocks] == [True, False, False, False, True]
    mean = NormStats.official().mean
    x, t, text, image, motion = inputs(SMALL, frames=3, size=6, seed=4)
    with torch.no_grad():
        ours = model(x, t, text, image, motion, mean).sample
    assert relative(ours, reference(sd, SMALL, 5, x, t, text, image, motion, mean)) < LIMIT
    # the diffusers numerics are the same in float32
    model.set_numerics("diffusers")
    with torch.no_grad():
        assert relative(model(x, t, text, image, motion, mean).sample, ours) < LIMIT


def test_a_folder_saved_with_our_names_loads_back(tmp_path):
    sd = official_state(SMALL, layers=1, seed=5)
    model = MVDiT17BTransformer.from_pretrained(write_folder(tmp_path / "a", sd, official_config(SMALL, 1)))
    model.save_pretrained(tmp_path / "b")
    again = MVDiT17BTransformer.from_pretrained(tmp_path / "b")
    x, t, text, image, motion = inputs(SMALL, seed=6)
    mean = NormStats.official().mean
    with torch.no_grad():
        assert torch.equal(model(x, t, text, image, motion, mean).sample, again(x, t, text, image, motion, mean).sample)


def test_the_key_report_lists_missing_unexpected_and_misshaped_by_official_name(tmp_path):
    sd = official_state(SMALL, layers=1, seed=7)
    del sd["blocks.0.motion_attn.k.weight"]
    sd["blocks.0.extra.weight"] = torch.zeros(3)
    sd["blocks.0.norm4.bias"] = torch.zeros(7)
    folder = write_folder(tmp_path / "w", sd, official_config(SMALL, 1), "single")
    with pytest.raises(ModelFileError) as info:
        MVDiT17BTransformer.from_pretrained(folder)
    message = str(info.value)
    assert "1 missing (blocks.0.motion_attn.k.weight)" in message
    assert "1 unexpected (blocks.0.extra.weight)" in message
    assert "1 mis-shaped (blocks.0.norm4.bias (7,) ≠ (144,))" in message


def test_bin_weights_load_safely(tmp_path):
    sd = official_state(SMALL, layers=1, seed=8)
    folder = write_folder(tmp_path / "w", sd, official_config(SMALL, 1), "bin")
    torch.save({**sd, "evil": {"not": "a tensor"}, "fn": print}, folder / "diffusion_pytorch_model.bin")
    with pytest.raises(ModelFileError, match="weights_only"):
        MVDiT17BTransformer.from_pretrained(folder)


# -- the official bf16 casts -------------------------------------------------------------------------------


def official_bf16(sd, cfg, layers, x, t, text, image, motion, joint_mean):
    """The official forward as its code runs it in bfloat16 (the model cast to bf16, under bf16 autocast):
    time MLP in float32 from the bf16 weights, then cast; modulation sums, modulated norms and residuals in
    bf16; norms computed in float32 and rounded back; RMS norms as ``round(norm(x)) · weight``; complex
    rotary in float64 then rounded; the CLIP projection's norms in float32. Written from the official
    statements, independently of the model's code."""
    bf = torch.bfloat16
    w = {k: v.to(bf) for k, v in sd.items()}
    dim, heads = cfg["dim"], cfg["heads"]
    hd = dim // heads

    def lin(a, p):  # autocast: a bf16 matmul
        return F.linear(a.to(bf), w[p + ".weight"], w[p + ".bias"])

    def lin32(a, p):  # autocast(float32): the bf16 weights used in float32
        return F.linear(a.float(), w[p + ".weight"].float(), w[p + ".bias"].float())

    def layer_norm(a, p=None, eps=1e-6):  # WanLayerNorm: float32, then back to the input's dtype
        weight = None if p is None else w[p + ".weight"].float()
        bias = None if p is None else w[p + ".bias"].float()
        return F.layer_norm(a.float(), (a.shape[-1],), weight, bias, eps).type_as(a)

    def rms(a, p, eps=1e-6):
        af = a.float()
        return (af * torch.rsqrt(af.pow(2).mean(-1, keepdim=True) + eps)).type_as(a) * w[p + ".weight"]

    B, _, F_, H, W_ = x.shape
    f, h, ww = F_, H // 2, W_ // 2
    tokens = F.conv3d(x.to(bf), w["patch_embedding.weight"], w["patch_embedding.bias"], stride=(1, 2, 2))
    tokens = tokens.flatten(2).transpose(1, 2)

    half = cfg["freq"] // 2
    angles = torch.outer(t.double(), torch.pow(10000.0, -torch.arange(half, dtype=torch.float64) / half))
    sinus = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1).float()
    e = lin32(F.silu(lin32(sinus, "time_embedding.0")), "time_embedding.2")
    e0 = lin32(F.silu(e), "time_projection.1").unflatten(1, (6, dim)).to(bf)
    e = e.to(bf)

    ctx_text = lin(F.gelu(lin(text, "text_embedding.0"), approximate="tanh"), "text_embedding.2")
    im = F.layer_norm(
        image.float(), (cfg["image"],), w["img_emb.proj.0.weight"].float(), w["img_emb.proj.0.bias"].float()
    )
    im = lin(F.gelu(lin(im, "img_emb.proj.1")), "img_emb.proj.3")
    ctx_img = F.layer_norm(im.float(), (dim,), w["img_emb.proj.4.weight"].float(), w["img_emb.proj.4.bias"].float())
    context = torch.cat([ctx_img, ctx_text.float()], dim=1)  # float32, cast back where used

    c = hd // 2
    split = [c - 2 * (c // 3), c // 3, c // 3]
    bands = []
    for n, m in zip(split, (f, h, ww), strict=True):
        freqs = 1.0 / torch.pow(10000.0, torch.arange(0, 2 * n, 2, dtype=torch.float64) / (2 * n))
        bands.append(torch.polar(torch.ones(m, n, dtype=torch.float64), torch.outer(torch.arange(m).double(), freqs)))
    video = torch.cat(
        [bands[0][:, None, None].expand(f, h, ww, -1), bands[1][None, :, None].expand(f, h, ww, -1),
         bands[2][None, None].expand(f, h, ww, -1)], dim=-1,
    ).reshape(f * h * ww, 1, c)  # fmt: skip

    def rope(a):  # official rope_apply: complex product in float64, then float32, then the model dtype
        z = torch.view_as_complex(a.float().reshape(*a.shape[:-1], -1, 2).contiguous())
        return torch.view_as_real(z * video).flatten(-2).float().to(bf)

    from mtvcrafter.dit.rotary import motion_rotary  # the 7B-verified table (float32), 44 + 3 × 28 channels

    mcos, msin = motion_rotary(f, joint_mean, hd, time_dim=hd - 4 * (hd // 6))

    def attention(q, k, v):  # (B, N, heads, hd), bf16; the attention kernel is the model's (not what this checks)
        return dispatch_attention_fn(q, k, v).flatten(2).to(bf)

    mo = torch.cat([motion.to(bf), torch.zeros(*motion.shape[:-1], dim - motion.shape[-1], dtype=bf)], -1)
    x = tokens
    for i in range(layers):
        p = f"blocks.{i}."
        mod = (w[p + "modulation"] + e0).chunk(6, dim=1)
        h1 = layer_norm(x) * (1 + mod[1]) + mod[0]
        q = rms(lin(h1, p + "self_attn.q"), p + "self_attn.norm_q").view(B, -1, heads, hd)
        k = rms(lin(h1, p + "self_attn.k"), p + "self_attn.norm_k").view(B, -1, heads, hd)
        v = lin(h1, p + "self_attn.v").view(B, -1, heads, hd)
        x = x + lin(attention(rope(q), rope(k), v), p + "self_attn.o") * mod[2]
        hc = layer_norm(x, p + "norm3")
        text_ctx, img_ctx = context[:, 257:].to(bf), context[:, :257].to(bf)
        q = rms(lin(hc, p + "cross_attn.q"), p + "cross_attn.norm_q").view(B, -1, heads, hd)
        k = rms(lin(text_ctx, p + "cross_attn.k"), p + "cross_attn.norm_k").view(B, -1, heads, hd)
        v = lin(text_ctx, p + "cross_attn.v").view(B, -1, heads, hd)
        ki = rms(lin(img_ctx, p + "cross_attn.k_img"), p + "cross_attn.norm_k_img").view(B, -1, heads, hd)
        vi = lin(img_ctx, p + "cross_attn.v_img").view(B, -1, heads, hd)
        x = x + lin(attention(q, k, v) + attention(q, ki, vi), p + "cross_attn.o")
        if i % 4 == 0:
            hm = layer_norm(x, p + "norm4")
            q = rms(lin(hm, p + "motion_attn.q"), p + "motion_attn.norm_q").view(B, -1, heads, hd)
            k = rms(lin(mo, p + "motion_attn.k"), p + "motion_attn.norm_k").view(B, heads, -1, hd)
            pairs = k.reshape(*k.shape[:-1], -1, 2)
            rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], -1).flatten(-2)
            k = (k.float() * mcos + rotated.float() * msin).to(bf).transpose(1, 2)
            v = lin(mo, p + "motion_attn.v").view(B, -1, heads, hd)
            x = x + lin(attention(rope(q), k, v), p + "motion_attn.o")
        hf = layer_norm(x) * (1 + mod[4]) + mod[3]
        x = x + lin(F.gelu(lin(hf, p + "ffn.0"), approximate="tanh"), p + "ffn.2") * mod[5]
    head = (w["head.modulation"] + e.unsqueeze(1)).chunk(2, dim=1)
    out = lin(layer_norm(x) * (1 + head[1]) + head[0], "head.head")
    out = out.reshape(B, f, h, ww, 1, 2, 2, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
    return out.reshape(B, -1, F_, H, W_)


def test_official_numerics_follow_the_official_bf16_casts(tmp_path):
    """In bfloat16 the "official" numerics give the official casts' output bit for bit (the same attention
    kernel on both sides); diffusers' float32 islands do not."""
    sd = official_state(SMALL, layers=5, seed=11)
    folder = write_folder(tmp_path / "w", sd, official_config(SMALL, 5), "single")
    model = MVDiT17BTransformer.from_pretrained(folder, torch_dtype=torch.bfloat16)
    mean = NormStats.official().mean
    x, t, text, image, motion = inputs(SMALL, frames=3, size=6, seed=12)
    with torch.no_grad():
        expected = official_bf16(sd, SMALL, 5, x, t, text, image, motion, mean)
        ours = model(x, t, text, image, motion, mean).sample
        model.set_numerics("diffusers")
        islands = model(x, t, text, image, motion, mean).sample
    assert ours.dtype == torch.bfloat16 and torch.equal(ours, expected)
    assert relative(islands, expected) > 1e-3
