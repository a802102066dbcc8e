"""MV-DiT-17B: Wan2.1-I2V-14B's video transformer with MTVCrafter's motion attention every fourth block.

Built from diffusers' Wan building blocks (``WanAttention`` with swappable processors,
``WanTimeTextImageEmbedding``, ``WanRotaryPosEmbed``, ``FeedForward``, ``FP32LayerNorm``) and named as
diffusers' ``WanTransformer3DModel``, so diffusers-format Wan weights and tools fit; the official
``MV-DiT/Wan-2-1`` folder loads unchanged (its names are mapped at load, :func:`to_ours`).

What MTVCrafter adds to Wan (SPEC §6), in blocks 0, 4, 8, …: after the text/image cross-attention,
``x + motion_attn(norm4(x), motion tokens)``, ungated. Motion tokens (3072 wide) are zero-padded to the
model width. Inside the motion attention, queries are ``norm_q(to_q(x))`` split into heads and rotated
with the video tokens' 3-D table (44 + 42 + 42 channels of the 128-wide head); keys are
``norm_k(to_k(motion))`` (RMS norm over the full width) **reinterpreted in memory order as (batch,
heads, tokens, 128)**, rotated there with the motion tokens' "4D" table (44 channels for the latent
frame, 28 each for x, y, z of the joint's mean position), then transposed to (batch, tokens, heads,
128); values are split per token as usual. This layout is what the weights were trained with.

Two numerics modes (``model.numerics``), identical in float32:

- ``"official"`` (default): the authors' casts. The whole model in the load dtype; the sinusoidal
  time embedding in float64 and the time MLP in float32 (from the stored weights), its outputs cast
  to the model dtype; modulation sums, modulated norms and residual adds in the model dtype; norms
  computed in float32 and rounded back; RMS norms as ``round(norm(x)) · weight``; the video rotary
  product in float64, as the official's complex128 product.
- ``"diffusers"``: diffusers' float32 islands (time embedder, modulation tables and the three block
  norms kept in float32; modulation and gated residuals computed in float32).
"""

from __future__ import annotations

import inspect
import math
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import AttentionMixin, FeedForward
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.cache_utils import CacheMixin
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import FP32LayerNorm
from diffusers.models.transformers.transformer_wan import (
    WanAttention,
    WanAttnProcessor,
    WanRotaryPosEmbed,
    WanTimeTextImageEmbedding,
)
from torch import nn

from ..motion import NUM_JOINTS
from .errors import DiTError
from .loading import check_torch_dtype, model_from_folder, refuse_unknown_keywords
from .rotary import apply_rotary, motion_rotary
from .speed import SavesSeparateProjections, split_linear

NUMERICS = ("official", "diffusers")
#: Text tokens the model reads (umT5 features zero-padded to this length).
TEXT_TOKENS = 512
#: Every how many blocks a motion attention sits (blocks 0, 4, 8, …).
MOTION_EVERY = 4


def motion_time_channels(head_dim: int) -> int:
    """Channels of a head given to the latent frame in the motion keys' rotary table: Wan's time band,
    ``head_dim − 4·(head_dim // 6)`` (44 of 128); the rest is split equally between x, y and z (28 each)."""
    return head_dim - 4 * (head_dim // 6)


ORIGIN = "MV-DiT/Wan-2-1 in the Hugging Face repo yanboding/MTVCrafter"

Rotary = tuple[torch.Tensor, torch.Tensor]

# -- official names ↔ ours ------------------------------------------------------------------------------

_TOP = {
    "text_embedding.0.": "condition_embedder.text_embedder.linear_1.",
    "text_embedding.2.": "condition_embedder.text_embedder.linear_2.",
    "time_embedding.0.": "condition_embedder.time_embedder.linear_1.",
    "time_embedding.2.": "condition_embedder.time_embedder.linear_2.",
    "time_projection.1.": "condition_embedder.time_proj.",
    "img_emb.proj.0.": "condition_embedder.image_embedder.norm1.",
    "img_emb.proj.1.": "condition_embedder.image_embedder.ff.net.0.proj.",
    "img_emb.proj.3.": "condition_embedder.image_embedder.ff.net.2.",
    "img_emb.proj.4.": "condition_embedder.image_embedder.norm2.",
    "head.head.": "proj_out.",
}
_TOP_TENSORS = {"head.modulation": "scale_shift_table"}
_ATTENTION = {"self_attn": "attn1", "cross_attn": "attn2", "motion_attn": "motion_attn"}
_PROJECTION = {
    "q": "to_q",
    "k": "to_k",
    "v": "to_v",
    "o": "to_out.0",
    "k_img": "add_k_proj",
    "v_img": "add_v_proj",
    "norm_k_img": "norm_added_k",
}
_BLOCK = {"norm3": "norm2", "norm2": "norm3", "ffn.0": "ffn.net.0.proj", "ffn.2": "ffn.net.2", "modulation": None}
_BLOCK_NAME = re.compile(r"blocks\.(\d+)\.(.+)")


def to_ours(name: str) -> str:
    """An official ``MV-DiT/Wan-2-1`` parameter name → this model's (diffusers' Wan names)."""
    if name in _TOP_TENSORS:
        return _TOP_TENSORS[name]
    for old, new in _TOP.items():
        if name.startswith(old):
            return new + name[len(old) :]
    match = _BLOCK_NAME.fullmatch(name)
    if not match:
        return name
    index, rest = match.groups()
    head, _, tail = rest.partition(".")
    if head in _ATTENTION:
        part, _, leaf = tail.rpartition(".")
        return f"blocks.{index}.{_ATTENTION[head]}.{_PROJECTION.get(part, part)}.{leaf}"
    if rest == "modulation":
        return f"blocks.{index}.scale_shift_table"
    for old, new in _BLOCK.items():
        if new is not None and rest.startswith(old + "."):
            return f"blocks.{index}.{new}{rest[len(old) :]}"
    return name


def to_official(name: str) -> str:
    """This model's parameter name → the official one (the inverse of :func:`to_ours`)."""
    for old, new in _TOP_TENSORS.items():
        if name == new:
            return old
    for old, new in _TOP.items():
        if name.startswith(new):
            return old + name[len(new) :]
    match = _BLOCK_NAME.fullmatch(name)
    if not match:
        return name
    index, rest = match.groups()
    head, _, tail = rest.partition(".")
    inverse_attention = {v: k for k, v in _ATTENTION.items()}
    if head in inverse_attention:
        part, _, leaf = tail.rpartition(".")
        inverse = {v: k for k, v in _PROJECTION.items()}
        return f"blocks.{index}.{inverse_attention[head]}.{inverse.get(part, part)}.{leaf}"
    if rest == "scale_shift_table":
        return f"blocks.{index}.modulation"
    for old, new in _BLOCK.items():
        if new is not None and rest.startswith(new + "."):
            return f"blocks.{index}.{old}{rest[len(new) :]}"
    return name


def config_from_official(config: dict) -> dict:
    """The constructor's keywords from a ``config.json``: the official class's keys (``dim``, ``num_heads``,
    ``in_dim`` …) or diffusers' Wan keys (``num_attention_heads``, ``attention_head_dim`` …)."""
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    if "dim" not in config:
        known = set(inspect.signature(MVDiT17BTransformer.__init__).parameters)
        return {k: v for k, v in config.items() if k in known}
    dim, heads = int(config["dim"]), int(config["num_heads"])
    if dim % heads:
        raise DiTError(f"dim {dim} is not divisible by num_heads {heads}")
    i2v = config.get("model_type", "i2v") == "i2v"
    return {
        "patch_size": tuple(config.get("patch_size", (1, 2, 2))),
        "num_attention_heads": heads,
        "attention_head_dim": dim // heads,
        "in_channels": int(config.get("in_dim", 36)),
        "out_channels": int(config.get("out_dim", 16)),
        "text_dim": int(config.get("text_dim", 4096)),
        "freq_dim": int(config.get("freq_dim", 256)),
        "ffn_dim": int(config["ffn_dim"]),
        "num_layers": int(config["num_layers"]),
        "cross_attn_norm": bool(config.get("cross_attn_norm", True)),
        "eps": float(config.get("eps", 1e-6)),
        "image_dim": int(config.get("image_dim", 1280)) if i2v else None,
        "added_kv_proj_dim": dim if i2v else None,
        # ours, for small test configurations (the official tokens are 3072 wide)
        "motion_token_dim": int(config.get("motion_token_dim", 3072)),
    }


# -- attention --------------------------------------------------------------------------------------------


def rms_norm(norm: nn.RMSNorm, x: torch.Tensor) -> torch.Tensor:
    """The official RMS norm: normalised in float32, rounded to ``x``'s dtype, then scaled by the weight."""
    xf = x.float()
    normed = (xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + norm.eps)).type_as(x)
    return normed * norm.weight


def apply_wan_rotary(x: torch.Tensor, table: Rotary) -> torch.Tensor:
    """Rotate ``x (B, tokens, heads, head_dim)`` by Wan's interleaved table ``(1, tokens, 1, head_dim)``,
    computed in the table's precision (float32, or float64 as the official complex product), then
    through float32 to ``x``'s dtype."""
    cos, sin = table
    work = torch.float64 if cos.dtype == torch.float64 else torch.float32
    pairs = x.to(work).unflatten(-1, (-1, 2))
    a, b = pairs[..., 0], pairs[..., 1]
    c, s = cos[..., 0::2], sin[..., 1::2]
    return torch.stack((a * c - b * s, a * s + b * c), dim=-1).flatten(-2).float().to(x.dtype)


def video_rotary_f64(frames: int, rows: int, cols: int, head_dim: int, device) -> Rotary:
    """Wan's 3-D video table in float64, ``(1, F·H·W, 1, head_dim)`` cos and sin, pairs interleaved: the time,
    row and column bands (44 + 42 + 42 of 128) with frequencies ``10000^(−2i/band)``, as the official's
    complex ``rope_params``."""
    h_dim = 2 * (head_dim // 6)
    out = []
    for size, dim in ((frames, head_dim - 2 * h_dim), (rows, h_dim), (cols, h_dim)):
        freqs = 1.0 / torch.pow(10000.0, torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        out.append(torch.outer(torch.arange(size, dtype=torch.float64), freqs))
    grid = torch.cat(
        [
            out[0][:, None, None].expand(frames, rows, cols, -1),
            out[1][None, :, None].expand(frames, rows, cols, -1),
            out[2][None, None].expand(frames, rows, cols, -1),
        ],
        dim=-1,
    ).reshape(1, frames * rows * cols, 1, -1)
    angles = grid.repeat_interleave(2, dim=-1).to(device)
    return torch.cos(angles), torch.sin(angles)


class OfficialWanAttnProcessor:
    """Wan's self- and cross-attention (with the reference image's keys and values on ``attn2``) with the
    official casts: official RMS norms, rotary in the table's precision (float64 in the official numerics).
    Equal to diffusers' ``WanAttnProcessor`` in float32."""

    _attention_backend = None
    _parallel_config = None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        image = None
        if attn.add_k_proj is not None or getattr(attn, "to_added_kv", None) is not None:
            split = encoder_hidden_states.shape[1] - TEXT_TOKENS
            # contiguous, as the official's cast copies of its float32 context (a matmul's summation order follows)
            image = encoder_hidden_states[:, :split].contiguous()
            encoder_hidden_states = encoder_hidden_states[:, split:].contiguous()
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if attn.fused_projections and encoder_hidden_states is None:
            query, key, value = attn.to_qkv(hidden_states).chunk(3, dim=-1)
        elif attn.fused_projections:
            query = attn.to_q(hidden_states)
            key, value = attn.to_kv(context).chunk(2, dim=-1)
        else:
            query, key, value = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        query, key = rms_norm(attn.norm_q, query), rms_norm(attn.norm_k, key)
        query, key, value = (t.unflatten(2, (attn.heads, -1)) for t in (query, key, value))
        if rotary_emb is not None:
            query, key = apply_wan_rotary(query, rotary_emb), apply_wan_rotary(key, rotary_emb)
        out = dispatch_attention_fn(query, key, value, backend=self._attention_backend)
        out = out.flatten(2, 3).type_as(query)
        if image is not None:
            if attn.fused_projections:
                key_img, value_img = attn.to_added_kv(image).chunk(2, dim=-1)
            else:
                key_img, value_img = attn.add_k_proj(image), attn.add_v_proj(image)
            key_img = rms_norm(attn.norm_added_k, key_img).unflatten(2, (attn.heads, -1))
            value_img = value_img.unflatten(2, (attn.heads, -1))
            out_img = dispatch_attention_fn(query, key_img, value_img, backend=self._attention_backend)
            out = out + out_img.flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))


class MotionAttnProcessor:
    """MTVCrafter's motion attention (see the module docstring for the key layout).

    ``official=True`` uses the official RMS norm casts (the ``"official"`` numerics); False, torch's
    ``RMSNorm`` as diffusers does. Uses the fused ``to_kv`` when :meth:`fuse_projections` made it."""

    _attention_backend = None

    def __init__(self, official: bool = True):
        self.official = official

    def __call__(self, attn, hidden_states, motion_tokens, video_rotary: Rotary, motion_rotary_emb: Rotary):
        batch, heads = hidden_states.shape[0], attn.heads
        query = attn.to_q(hidden_states)
        if attn.fused_projections:
            key, value = attn.to_kv(motion_tokens).chunk(2, dim=-1)
        else:
            key, value = attn.to_k(motion_tokens), attn.to_v(motion_tokens)
        if self.official:
            query, key = rms_norm(attn.norm_q, query), rms_norm(attn.norm_k, key)
        else:
            query, key = attn.norm_q(query), attn.norm_k(key)
        query = apply_wan_rotary(query.unflatten(2, (heads, -1)), video_rotary)
        # the official layout: (B, M, heads·d) memory read as (B, heads, M, d), rotated there, then transposed
        key = apply_rotary(key.reshape(batch, heads, -1, key.shape[-1] // heads), motion_rotary_emb)
        key = key.transpose(1, 2)
        value = value.unflatten(2, (heads, -1))
        out = dispatch_attention_fn(query, key, value, backend=self._attention_backend)
        out = out.flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))


class MotionAttention(WanAttention):
    """The motion attention module: Wan's attention parameters (``to_q/k/v``, ``to_out.0``, RMS ``norm_q/k``
    over the full width), its math in :class:`MotionAttnProcessor`."""

    _default_processor_cls = MotionAttnProcessor
    _available_processors = [MotionAttnProcessor]

    def __init__(self, dim: int, heads: int, eps: float):
        super().__init__(
            dim=dim,
            heads=heads,
            dim_head=dim // heads,
            eps=eps,
            cross_attention_dim_head=dim // heads,
            processor=MotionAttnProcessor(),
        )

    def forward(self, hidden_states, motion_tokens, video_rotary, motion_rotary_emb, **kwargs):
        return self.processor(self, hidden_states, motion_tokens, video_rotary, motion_rotary_emb)


class FusedAway(nn.Module):
    """Where a projection was before :meth:`MVDiT17BTransformer.fuse_qkv_projections` merged it into a fused one:
    no weights (so an ``attn.add_k_proj is not None`` test still finds an image attention), not callable."""

    def forward(self, *args, **kwargs):
        raise DiTError("this projection is fused with others; call unfuse_qkv_projections() to use it alone")


def _fused_groups(attn: WanAttention) -> list[tuple[str, tuple[str, ...]]]:
    """The fused projections of an attention module and the separate ones each replaces (as diffusers fuses)."""
    groups = [("to_kv", ("to_k", "to_v")) if attn.is_cross_attention else ("to_qkv", ("to_q", "to_k", "to_v"))]
    if attn.added_kv_proj_dim is not None:
        groups.append(("to_added_kv", ("add_k_proj", "add_v_proj")))
    return groups


# -- blocks and model -------------------------------------------------------------------------------------


class MVDiT17BBlock(nn.Module):
    """Wan's block (self-attention, text/image cross-attention, feed-forward) with, when ``motion``, the
    motion attention after the cross-attention. Norm names as diffusers': ``norm2`` before the
    cross-attention (the official ``norm3``), ``norm3`` before the feed-forward (the official ``norm2``)."""

    def __init__(self, dim, ffn_dim, heads, cross_attn_norm, eps, added_kv_proj_dim, motion: bool):
        super().__init__()
        head_dim = dim // heads
        self.norm1 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.attn1 = WanAttention(dim=dim, heads=heads, dim_head=head_dim, eps=eps, processor=WanAttnProcessor())
        self.attn2 = WanAttention(
            dim=dim,
            heads=heads,
            dim_head=head_dim,
            eps=eps,
            added_kv_proj_dim=added_kv_proj_dim,
            cross_attention_dim_head=head_dim,
            processor=WanAttnProcessor(),
        )
        self.norm2 = FP32LayerNorm(dim, eps, elementwise_affine=True) if cross_attn_norm else nn.Identity()
        if motion:
            self.norm4 = FP32LayerNorm(dim, eps, elementwise_affine=True) if cross_attn_norm else nn.Identity()
            self.motion_attn = MotionAttention(dim, heads, eps)
        self.has_motion = motion
        self.ffn = FeedForward(dim, inner_dim=ffn_dim, activation_fn="gelu-approximate")
        self.norm3 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)
        self.official = True

    def _norm(self, norm, x):
        return norm(x.float()).type_as(x) if not isinstance(norm, nn.Identity) else x

    def forward(self, hidden_states, context, modulation, video_rotary, motion_tokens, motion_rotary_emb):
        x = hidden_states  # named as diffusers' blocks, so its step caches find the block's input
        if self.official:
            shift, scale, gate, c_shift, c_scale, c_gate = (self.scale_shift_table + modulation).chunk(6, dim=1)
            h = self._norm(self.norm1, x) * (1 + scale) + shift
            x = x + self.attn1(h, None, None, video_rotary) * gate
            x = x + self.attn2(self._norm(self.norm2, x), context, None, None)
            if self.has_motion:
                x = x + self.motion_attn(self._norm(self.norm4, x), motion_tokens, video_rotary, motion_rotary_emb)
            h = self._norm(self.norm3, x) * (1 + c_scale) + c_shift
            return x + self.ffn(h) * c_gate
        shift, scale, gate, c_shift, c_scale, c_gate = (self.scale_shift_table + modulation.float()).chunk(6, dim=1)
        h = (self.norm1(x.float()) * (1 + scale) + shift).type_as(x)
        x = (x.float() + self.attn1(h, None, None, video_rotary) * gate).type_as(x)
        x = x + self.attn2(self._norm(self.norm2, x), context, None, None)
        if self.has_motion:
            x = x + self.motion_attn(self._norm(self.norm4, x), motion_tokens, video_rotary, motion_rotary_emb)
        h = (self.norm3(x.float()) * (1 + c_scale) + c_shift).type_as(x)
        return (x.float() + self.ffn(h).float() * c_gate).type_as(x)


def sinusoid_f64(dim: int, timestep: torch.Tensor) -> torch.Tensor:
    """The official sinusoidal time embedding (cos then sin, frequencies ``10000^(−i/half)``) in float64."""
    half = dim // 2
    position = timestep.to(torch.float64)
    freqs = torch.pow(10000.0, -torch.arange(half, device=position.device, dtype=torch.float64) / half)
    angles = torch.outer(position, freqs)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


def _linear_f32(linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x.float(), linear.weight.float(), None if linear.bias is None else linear.bias.float())


class MVDiT17BTransformer(SavesSeparateProjections, ModelMixin, AttentionMixin, CacheMixin, ConfigMixin):
    """The MV-DiT-17B transformer (40 heads × 128, 40 blocks, motion attention in 10 of them, officially).

    ``model(hidden_states=, timestep=, encoder_hidden_states=, encoder_hidden_states_image=,
    motion_tokens=, joint_mean=, joint_std=).sample`` with ``hidden_states (B, 36, F', h, w)`` = channels
    [noisy latents 16 | mask 4 | condition latents 16], ``timestep (B,)``, ``encoder_hidden_states
    (B, 512, 4096)`` umT5 features zero-padded to 512, ``encoder_hidden_states_image (B, 257, 1280)``
    CLIP features, ``motion_tokens (B, F'·24, 3072)``, ``joint_mean`` and ``joint_std`` ``(24, 3)`` mm
    (the statistics; only the mean places the motion tokens, the std is accepted for the official
    signature); returns ``(B, 16, F', h, w)``.

    The constructor takes diffusers' Wan configuration keys; ``motion_token_dim`` (3072) and
    ``motion_every`` (4) are ours. :meth:`from_pretrained` also reads the official class's keys.
    """

    _supports_gradient_checkpointing = True
    _no_split_modules = ["MVDiT17BBlock"]
    _repeated_blocks = ["MVDiT17BBlock"]
    _keep_in_fp32_modules = None
    #: kept in float32 under the "diffusers" numerics
    FP32_ISLANDS = ("time_embedder", "scale_shift_table", "norm1", "norm2", "norm3")

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 40,
        attention_head_dim: int = 128,
        in_channels: int = 36,
        out_channels: int = 16,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 13824,
        num_layers: int = 40,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        image_dim: int | None = 1280,
        added_kv_proj_dim: int | None = 5120,
        rope_max_seq_len: int = 1024,
        motion_token_dim: int = 3072,
        motion_every: int = MOTION_EVERY,
    ):
        super().__init__()
        dim = num_attention_heads * attention_head_dim
        if qk_norm != "rms_norm_across_heads":
            raise DiTError(f"MV-DiT-17B normalises q and k with rms_norm_across_heads, got qk_norm={qk_norm!r}")
        if motion_token_dim > dim:
            raise DiTError(f"motion tokens ({motion_token_dim}) are wider than the model ({dim})")
        time_dim = motion_time_channels(attention_head_dim)
        spatial = (attention_head_dim - time_dim) // 3
        if spatial < 2 or spatial % 2 or time_dim + 3 * spatial != attention_head_dim:
            raise DiTError(
                f"attention_head_dim {attention_head_dim} does not split into the motion rotary table's time "
                f"{time_dim} + 3 equal even spatial parts (128: 44 + 3 × 28; tiny sizes: 18, 36, 72)"
            )
        self.rope = WanRotaryPosEmbed(attention_head_dim, tuple(patch_size), rope_max_seq_len)
        self.patch_embedding = nn.Conv3d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.condition_embedder = WanTimeTextImageEmbedding(
            dim=dim,
            time_freq_dim=freq_dim,
            time_proj_dim=dim * 6,
            text_embed_dim=text_dim,
            image_embed_dim=image_dim,
        )
        self.blocks = nn.ModuleList(
            [
                MVDiT17BBlock(
                    dim,
                    ffn_dim,
                    num_attention_heads,
                    cross_attn_norm,
                    eps,
                    added_kv_proj_dim,
                    motion=i % motion_every == 0,
                )
                for i in range(num_layers)
            ]
        )
        self.norm_out = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.proj_out = nn.Linear(dim, out_channels * math.prod(patch_size))
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)
        self.gradient_checkpointing = False
        self._numerics = "official"
        self._motion_rotary_cache: OrderedDict[tuple, Rotary] = OrderedDict()
        self._video_rotary_cache: OrderedDict[tuple, Rotary] = OrderedDict()
        self.set_numerics("official")

    # -- numerics -------------------------------------------------------------------------------------

    @property
    def numerics(self) -> str:
        return self._numerics

    def set_numerics(self, mode: str) -> None:
        """``"official"`` (the authors' casts) or ``"diffusers"`` (float32 islands); see the module docstring.

        Switching to ``"diffusers"`` moves the float32 islands' parameters to float32; to ``"official"``,
        to the dtype of the other weights (rounding them, as the official model is cast)."""
        if mode not in NUMERICS:
            raise DiTError(f"numerics must be one of {', '.join(NUMERICS)}, got {mode!r}")
        self._numerics = mode
        official = mode == "official"
        dtype = self.proj_out.weight.dtype
        for module in self.modules():
            if isinstance(module, MVDiT17BBlock):
                module.official = official
            if isinstance(module, WanAttention) and not isinstance(module, MotionAttention):
                module.set_processor(OfficialWanAttnProcessor() if official else WanAttnProcessor())
            if isinstance(module, MotionAttention):
                module.processor.official = official
        with torch.no_grad():
            for name, param in self.named_parameters():
                island = any(part in name.split(".") for part in self.FP32_ISLANDS)
                if island and param.device.type != "meta":
                    param.data = param.data.to(dtype if official else torch.float32)

    # -- rotary tables ------------------------------------------------------------------------------------

    def motion_rotary(self, latent_frames: int, joint_mean, device) -> Rotary:
        """The motion keys' rotary table ``(F'·24, head_dim)`` (float32), cached per shape and statistics."""
        mean = np.asarray(joint_mean.detach().cpu() if isinstance(joint_mean, torch.Tensor) else joint_mean, np.float32)
        key = (latent_frames, mean.tobytes(), str(device))
        hit = self._motion_rotary_cache.get(key)
        if hit is not None:
            return hit
        head_dim = self.config.attention_head_dim
        table = motion_rotary(latent_frames, mean, head_dim, time_dim=motion_time_channels(head_dim))
        table = tuple(t.to(device) for t in table)
        self._motion_rotary_cache[key] = table
        while len(self._motion_rotary_cache) > 8:
            self._motion_rotary_cache.popitem(last=False)
        return table

    def video_rotary(self, frames: int, rows: int, cols: int, device) -> Rotary:
        """The video tokens' float64 table of the official numerics (:func:`video_rotary_f64`), cached per grid and
        device: built once per render instead of at every step (at 512 × 512 × 49, 3.4 M float64 sines and cosines
        and their copy to the GPU)."""
        key = (frames, rows, cols, str(device))
        hit = self._video_rotary_cache.get(key)
        if hit is None:
            hit = video_rotary_f64(frames, rows, cols, self.config.attention_head_dim, device)
            self._video_rotary_cache[key] = hit
            while len(self._video_rotary_cache) > 2:
                self._video_rotary_cache.popitem(last=False)
        return hit

    # -- forward --------------------------------------------------------------------------------------

    def _time(self, timestep: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``(temb (B, D), modulation (B, 6, D))`` in ``dtype``."""
        embedder = self.condition_embedder
        if self._numerics == "official":
            t = sinusoid_f64(self.config.freq_dim, timestep).float()
            emb = embedder.time_embedder
            temb = _linear_f32(emb.linear_2, F.silu(_linear_f32(emb.linear_1, t)))
            modulation = _linear_f32(embedder.time_proj, F.silu(temb))
        else:
            t = embedder.timesteps_proj(timestep)
            weight = embedder.time_embedder.linear_1.weight
            temb = embedder.time_embedder(t.to(weight.dtype)).to(dtype)
            modulation = embedder.time_proj(embedder.act_fn(temb))
        return temb.to(dtype), modulation.unflatten(1, (6, -1)).to(dtype)

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_hidden_states_image: torch.Tensor | None = None,
        motion_tokens: torch.Tensor | None = None,
        joint_mean: np.ndarray | torch.Tensor | None = None,
        joint_std: np.ndarray | torch.Tensor | None = None,
        return_dict: bool = True,
        attention_kwargs: dict | None = None,
    ):
        cfg = self.config
        if hidden_states.ndim != 5 or hidden_states.shape[1] != cfg.in_channels:
            raise DiTError(
                f"hidden_states must be (B, {cfg.in_channels}, F', h, w) = [noisy 16 | mask 4 | condition 16] "
                f"latents, got {tuple(hidden_states.shape)}"
            )
        batch, _, frames, height, width = hidden_states.shape
        p_t, p_h, p_w = cfg.patch_size
        if frames % p_t or height % p_h or width % p_w:
            raise DiTError(f"latent frames, height and width must be multiples of {tuple(cfg.patch_size)}")
        if motion_tokens is None or joint_mean is None:
            raise DiTError("MV-DiT-17B needs motion_tokens (B, F'·24, 3072) and joint_mean (24, 3) mm")
        token_dim = cfg.motion_token_dim
        if motion_tokens.shape != (batch, frames // p_t * NUM_JOINTS, token_dim):
            raise DiTError(
                f"motion_tokens must be (B={batch}, F'·24={frames // p_t * NUM_JOINTS}, {token_dim}) for "
                f"{frames} latent frames, got {tuple(motion_tokens.shape)}"
            )
        if encoder_hidden_states.ndim != 3 or encoder_hidden_states.shape[1] != TEXT_TOKENS:
            raise DiTError(
                f"encoder_hidden_states must be (B, {TEXT_TOKENS}, {cfg.text_dim}) text features zero-padded to "
                f"{TEXT_TOKENS}, got {tuple(encoder_hidden_states.shape)}"
            )
        if (encoder_hidden_states_image is None) != (cfg.image_dim is None):
            raise DiTError("encoder_hidden_states_image (CLIP features of the reference) is needed by this model")
        dtype = self.proj_out.weight.dtype
        timestep = torch.as_tensor(timestep, device=hidden_states.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(batch)

        if self._numerics == "official":  # the official rotates in float64 (a complex128 product)
            video_rotary = self.video_rotary(frames // p_t, height // p_h, width // p_w, hidden_states.device)
        else:
            video_rotary = self.rope(hidden_states)
        motion_rotary_emb = self.motion_rotary(frames // p_t, joint_mean, hidden_states.device)
        x = self.patch_embedding(hidden_states.to(dtype)).flatten(2).transpose(1, 2).contiguous()
        temb, modulation = self._time(timestep, dtype)
        context = self.condition_embedder.text_embedder(encoder_hidden_states.to(dtype))
        if encoder_hidden_states_image is not None:
            embedder = self.condition_embedder.image_embedder
            if self._numerics == "official":  # the CLIP features in float32 through the first norm, as the official
                image = embedder.norm1(encoder_hidden_states_image.float()).to(dtype)
                image = embedder.norm2(embedder.ff(image).float()).to(dtype)
            else:
                image = embedder(encoder_hidden_states_image.to(dtype)).to(dtype)
            context = torch.cat([image, context], dim=1)
        dim = x.shape[-1]
        motion = F.pad(motion_tokens.to(dtype), (0, dim - token_dim))

        for block in self.blocks:
            args = (x, context, modulation, video_rotary, motion, motion_rotary_emb)
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                x = self._gradient_checkpointing_func(block, *args)
            else:
                x = block(*args)

        if self._numerics == "official":
            shift, scale = (self.scale_shift_table + temb.unsqueeze(1)).chunk(2, dim=1)
            x = self.norm_out(x.float()).type_as(x) * (1 + scale) + shift
        else:
            shift, scale = (self.scale_shift_table.float() + temb.float().unsqueeze(1)).chunk(2, dim=1)
            x = (self.norm_out(x.float()) * (1 + scale) + shift).type_as(x)
        x = self.proj_out(x)
        x = x.reshape(batch, frames // p_t, height // p_h, width // p_w, p_t, p_h, p_w, -1)
        out = x.permute(0, 7, 1, 4, 2, 5, 3, 6).flatten(6, 7).flatten(4, 5).flatten(2, 3)
        if not return_dict:
            return (out,)
        return Transformer2DModelOutput(sample=out)

    # -- speed ----------------------------------------------------------------------------------------

    @property
    def fused_projections(self) -> bool:
        """Whether :meth:`fuse_qkv_projections` is in effect."""
        return any(m.fused_projections for m in self.modules() if isinstance(m, WanAttention))

    @torch.no_grad()
    def fuse_qkv_projections(self) -> None:
        """One linear for q, k and v of the self-attention, for k and v of the text and motion attentions and of
        the reference image's keys and values. The separate projections are dropped, not kept beside the fused
        ones as diffusers' ``WanAttention`` keeps them (at full size that would hold 7 B parameters twice); the
        products are the same. :meth:`save_pretrained` still writes the separate ones."""
        for module in self.modules():
            if isinstance(module, WanAttention) and not module.fused_projections:
                module.fuse_projections()
                for _, names in _fused_groups(module):
                    for name in names:
                        setattr(module, name, FusedAway())

    @torch.no_grad()
    def unfuse_qkv_projections(self) -> None:
        """Back to the separate projections (the official parameter names), split from the fused ones."""
        for module in self.modules():
            if not isinstance(module, WanAttention) or not module.fused_projections:
                continue
            for fused_name, names in _fused_groups(module):
                for name, part in zip(names, split_linear(getattr(module, fused_name), len(names)), strict=True):
                    setattr(module, name, part)
                delattr(module, fused_name)
            module.fused_projections = False

    def compile_blocks(self, **options) -> None:
        """``torch.compile`` each block (regional compilation)."""
        for block in self.blocks:
            block.compile(**options)

    # -- loading --------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        subfolder: str | None = None,
        torch_dtype: torch.dtype | None = None,
        device: str | torch.device = "cpu",
        trust_checkpoint: bool = False,
        numerics: str = "official",
        local_files_only: bool | None = None,
        **kwargs,
    ) -> MVDiT17BTransformer:
        """Load an ``MV-DiT/Wan-2-1`` folder as the authors published it (or as :meth:`save_pretrained` writes).

        The folder holds ``config.json`` (the official class's keys or diffusers' Wan keys) and the
        weights under the official names or ours: ``diffusion_pytorch_model.safetensors`` or ``.bin``,
        sharded (with its ``.index.json``) or not, or any single ``*.safetensors``/``*.bin``. Names and
        shapes are checked strictly: every missing, unexpected and mis-shaped tensor is listed by its
        stored name. ``torch_dtype`` converts as tensors are read (None: as stored); ``.bin`` files
        load with ``weights_only=True`` unless ``trust_checkpoint``. ``numerics``: ``"official"`` or
        ``"diffusers"`` (see :meth:`set_numerics`). Nothing is downloaded; other keywords are refused.
        """
        where = f"{cls.__name__}.from_pretrained"
        refuse_unknown_keywords(
            where, kwargs, ["subfolder", "torch_dtype", "device", "trust_checkpoint", "numerics", "local_files_only"]
        )
        check_torch_dtype(where, torch_dtype)
        if numerics not in NUMERICS:
            raise DiTError(f"{where}: numerics must be one of {', '.join(NUMERICS)}, got {numerics!r}")
        folder = Path(pretrained_model_name_or_path)
        if subfolder:
            folder = folder / subfolder
        official_names = _stores_official_names(folder) if (folder / "config.json").is_file() else False
        model = model_from_folder(
            cls,
            folder,
            ORIGIN,
            "MV-DiT-17B",
            torch_dtype,
            device,
            trust_checkpoint,
            make_config=config_from_official,
            rename=to_ours if official_names else None,
            stored_name=to_official if official_names else None,
        )
        # the rotary tables are buffers computed at construction (on the meta device here)
        model.rope = WanRotaryPosEmbed(model.config.attention_head_dim, tuple(model.config.patch_size),
                                       model.config.rope_max_seq_len).to(device)  # fmt: skip
        model._motion_rotary_cache = OrderedDict()
        model._video_rotary_cache = OrderedDict()
        model.set_numerics(numerics)
        return model.eval()


def _stores_official_names(folder: Path) -> bool:
    """Whether a folder's weights use the official names (else ours, as :meth:`save_pretrained` writes)."""
    from .loading import weight_files

    index = list(folder.glob("*.index.json"))
    if index:
        import json

        names = list(json.loads(index[0].read_text(encoding="utf-8")).get("weight_map", {}))
    else:
        path = weight_files(folder, ORIGIN)[0]
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                names = list(f.keys())
        else:
            return not any(n.startswith("condition_embedder.") for n in _bin_names(path))
    return not any(n.startswith("condition_embedder.") for n in names)


def _bin_names(path: Path) -> list[str]:
    try:
        state = torch.load(path, map_location="meta", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - load_weights reports the real problem with the file
        return []
    return list(state) if isinstance(state, dict) else []
