"""MV-DiT-7B: CogVideoX-5B's video transformer with motion attention in every block.

Parameter names and the configuration are those of the official ``MV-DiT/CogVideoX`` folder, so it
loads unchanged. What MTVCrafter adds to CogVideoX is written here; the rest is diffusers' building
blocks (feed-forward, timestep embedding, adaptive output norm) and protocols: attention modules whose
math is a swappable processor (``model.attn_processors``, ``model.set_attn_processor``,
``fuse_qkv_projections``, ``set_attention_backend``), as in diffusers' own transformers.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import AttentionMixin, AttentionModuleMixin, FeedForward
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.cache_utils import CacheMixin
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import AdaLayerNorm
from torch import nn

from ..motion import NUM_JOINTS
from .errors import DiTError
from .loading import check_torch_dtype, model_from_folder, refuse_unknown_keywords
from .rotary import apply_rotary, motion_rotary, video_rotary
from .speed import SavesSeparateProjections, split_linear

#: Latent frames of one MV-DiT window (49 video frames); the learned unconditional tokens cover them.
WINDOW_LATENT_FRAMES = 13
#: Rows of the learned unconditional motion tokens: 13 latent frames × 24 joints.
UNCONDITIONAL_TOKENS = WINDOW_LATENT_FRAMES * NUM_JOINTS

Rotary = tuple[torch.Tensor, torch.Tensor]


class MVDiTAttnProcessor:
    """MV-DiT's attention: q/k/v projections, per-head q/k LayerNorm, rotary embeddings, scaled-dot-product
    attention, output projection.

    Self-attention (``attn1``, no ``encoder_hidden_states``) rotates q and k with ``image_rotary_emb``.
    Motion attention (``attn0``) takes keys and values from the motion tokens: q is rotated with
    ``image_rotary_emb`` (the video tokens' table) and k with ``motion_rotary_emb`` (the motion
    tokens'). Uses the module's fused projections (``to_qkv``; ``to_kv`` for motion attention) when
    :meth:`MVDiTAttention.fuse_projections` made them. The attention itself goes through diffusers'
    ``dispatch_attention_fn``, so ``set_attention_backend`` chooses the kernel.
    """

    _attention_backend = None

    def __call__(
        self,
        attn: MVDiTAttention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        image_rotary_emb: Rotary | None = None,
        motion_rotary_emb: Rotary | None = None,
    ) -> torch.Tensor:
        """``hidden_states`` ``(B, N, D)`` video tokens, ``encoder_hidden_states`` ``(B, M, D_motion)`` motion
        tokens or None; rotary tables ``(cos, sin)`` of shape ``(N, head_dim)`` and ``(M, head_dim)``.
        Returns ``(B, N, D)``."""
        batch = hidden_states.shape[0]
        if attn.fused_projections and encoder_hidden_states is None:
            query, key, value = attn.to_qkv(hidden_states).chunk(3, dim=-1)
        elif attn.fused_projections:
            query = attn.to_q(hidden_states)
            key, value = attn.to_kv(encoder_hidden_states).chunk(2, dim=-1)
        else:
            context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
            query, key, value = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        # (B, tokens, heads, head_dim) → (B, heads, tokens, head_dim): the layout the rotary tables broadcast over
        query, key, value = (t.unflatten(-1, (attn.heads, -1)).transpose(1, 2) for t in (query, key, value))
        query = attn.norm_q(query)
        key = attn.norm_k(key)
        key_rotary = image_rotary_emb if encoder_hidden_states is None else motion_rotary_emb
        if image_rotary_emb is not None:
            query = apply_rotary(query, image_rotary_emb)
        if key_rotary is not None:
            key = apply_rotary(key, key_rotary)
        out = dispatch_attention_fn(
            query.transpose(1, 2),
            key.transpose(1, 2),
            value.transpose(1, 2),
            backend=self._attention_backend,
        )
        out = out.reshape(batch, -1, attn.heads * out.shape[-1])
        return attn.to_out[1](attn.to_out[0](out))


class MVDiTAttention(nn.Module, AttentionModuleMixin):
    """Multi-head attention with per-head q/k LayerNorm, its math in a swappable processor.

    ``cross_attention_dim`` given: keys and values come from ``encoder_hidden_states`` of that width
    (motion attention). Parameter names are those of diffusers' ``Attention`` (``to_q``, ``to_k``,
    ``to_v``, ``norm_q``, ``norm_k``, ``to_out.0``), so the official checkpoint loads unchanged.
    """

    _default_processor_cls = MVDiTAttnProcessor
    _available_processors = [MVDiTAttnProcessor]

    def __init__(
        self,
        query_dim: int,
        heads: int,
        dim_head: int,
        cross_attention_dim: int | None = None,
        bias: bool = True,
        eps: float = 1e-6,
        processor=None,
    ):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.is_cross_attention = cross_attention_dim is not None
        self.to_q = nn.Linear(query_dim, inner, bias=bias)
        self.to_k = nn.Linear(cross_attention_dim or query_dim, inner, bias=bias)
        self.to_v = nn.Linear(cross_attention_dim or query_dim, inner, bias=bias)
        self.norm_q = nn.LayerNorm(dim_head, eps=eps)
        self.norm_k = nn.LayerNorm(dim_head, eps=eps)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim, bias=True), nn.Dropout(0.0)])
        self.set_processor(processor if processor is not None else self._default_processor_cls())

    def _fusable(self) -> tuple[tuple[str, ...], str]:
        """The projections fused together and the fused one's name: q, k, v of self-attention; k, v of
        cross-attention (its queries come from other tokens)."""
        return (("to_k", "to_v"), "to_kv") if self.is_cross_attention else (("to_q", "to_k", "to_v"), "to_qkv")

    @torch.no_grad()
    def fuse_projections(self) -> None:
        """One linear for q, k and v (k and v for cross-attention). Unlike diffusers' default, the separate
        projections are replaced, not kept beside it: at 7B that saves 4 GB in bf16."""
        if self.fused_projections:
            return
        names, fused = self._fusable()
        parts = [getattr(self, n) for n in names]
        bias = parts[0].bias is not None
        weight = parts[0].weight
        width = sum(p.out_features for p in parts)
        linear = nn.Linear(parts[0].in_features, width, bias=bias, device=weight.device, dtype=weight.dtype)
        linear.weight.copy_(torch.cat([p.weight for p in parts]))
        if bias:
            linear.bias.copy_(torch.cat([p.bias for p in parts]))
        for n in names:
            delattr(self, n)
        setattr(self, fused, linear)
        self.fused_projections = True

    @torch.no_grad()
    def unfuse_projections(self) -> None:
        """Back to the separate projections (the official parameter names), split from the fused one."""
        if not self.fused_projections:
            return
        names, fused = self._fusable()
        for n, part in zip(names, split_linear(getattr(self, fused), len(names)), strict=True):
            setattr(self, n, part)
        delattr(self, fused)
        self.fused_projections = False

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        image_rotary_emb: Rotary | None = None,
        motion_rotary_emb: Rotary | None = None,
        **kwargs,
    ) -> torch.Tensor:
        return self.processor(
            self,
            hidden_states,
            encoder_hidden_states,
            image_rotary_emb=image_rotary_emb,
            motion_rotary_emb=motion_rotary_emb,
            **kwargs,
        )


class AdaLayerNormZero(nn.Module):
    """LayerNorm modulated by the time embedding: ``norm(x)·(1+scale)+shift``, and a gate.

    The linear produces six chunks (CogVideoX's layout, which also modulates text tokens); MV-DiT
    has no text tokens and uses only the first three: shift, scale, gate.
    """

    def __init__(self, conditioning_dim: int, dim: int, elementwise_affine: bool = True, eps: float = 1e-5):
        super().__init__()
        self.silu = nn.SiLU()
        self.linear = nn.Linear(conditioning_dim, 6 * dim, bias=True)
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=elementwise_affine)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shift, scale, gate = self.linear(self.silu(temb)).chunk(6, dim=1)[:3]
        return self.norm(x) * (1 + scale[:, None]) + shift[:, None], gate[:, None]


class PatchEmbed(nn.Module):
    """2×2 patches of the (noisy ‖ reference) latents to tokens in (frame, row, column) order.

    ``text_proj`` exists only because the official checkpoint holds it (CogVideoX's text input); it
    is loaded and never used.
    """

    def __init__(self, patch_size: int, in_channels: int, dim: int, text_embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size, bias=True)
        self.text_proj = nn.Linear(text_embed_dim, dim)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        batch, frames = latents.shape[:2]
        x = self.proj(latents.flatten(0, 1))  # (B·F, D, h/p, w/p)
        return x.flatten(2).transpose(1, 2).reshape(batch, -1, x.shape[1])


class MVDiTBlock(nn.Module):
    """Self-attention (gated) → motion attention (ungated) → feed-forward (gated)."""

    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int,
        time_embed_dim: int,
        motion_token_dim: int,
        activation_fn: str,
        attention_bias: bool,
        norm_elementwise_affine: bool,
        norm_eps: float,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.attn0 = MVDiTAttention(dim, heads, head_dim, cross_attention_dim=motion_token_dim, bias=attention_bias)
        self.norm1 = AdaLayerNormZero(time_embed_dim, dim, norm_elementwise_affine, norm_eps)
        self.attn1 = MVDiTAttention(dim, heads, head_dim, bias=attention_bias)
        self.norm2 = AdaLayerNormZero(time_embed_dim, dim, norm_elementwise_affine, norm_eps)
        self.ff = FeedForward(dim, dropout=dropout, activation_fn=activation_fn, final_dropout=True, bias=True)

    def forward(
        self,
        hidden_states: torch.Tensor,
        motion_tokens: torch.Tensor,
        temb: torch.Tensor,
        video_rope: Rotary,
        motion_rope: Rotary,
    ) -> torch.Tensor:
        x, gate = self.norm1(hidden_states, temb)
        hidden_states = hidden_states + gate * self.attn1(hidden_states=x, image_rotary_emb=video_rope)
        hidden_states = hidden_states + self.attn0(
            hidden_states=hidden_states,
            encoder_hidden_states=motion_tokens,
            image_rotary_emb=video_rope,
            motion_rotary_emb=motion_rope,
        )
        x, gate = self.norm2(hidden_states, temb)
        return hidden_states + gate * self.ff(x)


class MVDiT7BTransformer(SavesSeparateProjections, ModelMixin, AttentionMixin, CacheMixin, ConfigMixin):
    """The MV-DiT-7B transformer (48 heads × 64, 42 blocks in the official configuration).

    ``model(hidden_states, timestep, motion_tokens, joint_mean).sample`` with ``hidden_states``
    ``(B, F', 32, h, w)`` (16 noisy latent channels then 16 reference latent channels), ``timestep``
    ``(B,)`` integers, ``motion_tokens`` ``(B, F'·24, 3072)`` and ``joint_mean`` ``(24, 3)`` mm;
    returns ``(B, F', 16, h, w)``. Rotary tables are computed inside from the shapes and
    ``joint_mean`` and cached per shape.

    The constructor takes every key of the authors' ``config.json`` (most only describe CogVideoX's
    text and positional-embedding options, unused with rotary embeddings and no text);
    ``motion_token_dim`` (default: the model width) is ours, for small test configurations.

    diffusers' step caches attach as to its own transformers (``model.enable_cache(FirstBlockCacheConfig(…))``;
    see :mod:`mtvcrafter.dit.speed`).
    """

    _supports_gradient_checkpointing = True
    _no_split_modules = ["MVDiTBlock"]

    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 48,
        attention_head_dim: int = 64,
        in_channels: int = 32,
        out_channels: int = 16,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        time_embed_dim: int = 512,
        text_embed_dim: int = 4096,
        motion_dim: int = 168,
        num_layers: int = 42,
        dropout: float = 0.0,
        attention_bias: bool = True,
        sample_width: int = 90,
        sample_height: int = 60,
        sample_frames: int = 49,
        patch_size: int = 2,
        temporal_compression_ratio: int = 4,
        max_text_seq_length: int = 226,
        activation_fn: str = "gelu-approximate",
        timestep_activation_fn: str = "silu",
        norm_elementwise_affine: bool = True,
        norm_eps: float = 1e-5,
        spatial_interpolation_scale: float = 1.875,
        temporal_interpolation_scale: float = 1.0,
        use_rotary_positional_embeddings: bool = True,
        motion_token_dim: int | None = None,
    ):
        super().__init__()
        dim = num_attention_heads * attention_head_dim
        if not use_rotary_positional_embeddings:
            raise DiTError("MV-DiT uses rotary position embeddings; use_rotary_positional_embeddings must be true")
        if attention_head_dim % 8:
            raise DiTError(f"attention_head_dim must be divisible by 8 for the rotary tables, got {attention_head_dim}")
        token_dim = motion_token_dim or dim
        self.unconditional_motion_token = nn.Parameter(torch.randn(UNCONDITIONAL_TOKENS, token_dim))
        self.patch_embed = PatchEmbed(patch_size, in_channels, dim, text_embed_dim)
        self.embedding_dropout = nn.Dropout(dropout)
        self.time_proj = Timesteps(dim, flip_sin_to_cos, freq_shift)
        self.time_embedding = TimestepEmbedding(dim, time_embed_dim, timestep_activation_fn)
        self.transformer_blocks = nn.ModuleList(
            [
                MVDiTBlock(
                    dim,
                    num_attention_heads,
                    attention_head_dim,
                    time_embed_dim,
                    token_dim,
                    activation_fn,
                    attention_bias,
                    norm_elementwise_affine,
                    norm_eps,
                    dropout,
                )
                for _ in range(num_layers)
            ]
        )
        self.norm_final = nn.LayerNorm(dim, norm_eps, norm_elementwise_affine)
        self.norm_out = AdaLayerNorm(
            time_embed_dim,
            output_dim=2 * dim,
            norm_elementwise_affine=norm_elementwise_affine,
            norm_eps=norm_eps,
            chunk_dim=1,
        )
        self.proj_out = nn.Linear(dim, patch_size * patch_size * out_channels)
        self.gradient_checkpointing = False
        self._rotary_cache: OrderedDict[tuple, tuple[Rotary, Rotary]] = OrderedDict()

    # -- rotary tables ------------------------------------------------------------------------------

    def rotary_tables(
        self, frames: int, rows: int, cols: int, joint_mean: np.ndarray | torch.Tensor, device, dtype
    ) -> tuple[Rotary, Rotary]:
        """Video and motion tables for a latent grid, cached (a few shapes) per device and dtype."""
        mean = np.asarray(joint_mean.detach().cpu() if isinstance(joint_mean, torch.Tensor) else joint_mean, np.float32)
        key = (frames, rows, cols, mean.tobytes(), str(device), dtype)
        hit = self._rotary_cache.get(key)
        if hit is not None:
            self._rotary_cache.move_to_end(key)
            return hit
        head_dim = self.config.attention_head_dim
        video = tuple(t.to(device=device, dtype=dtype) for t in video_rotary(frames, rows, cols, head_dim))
        motion = tuple(t.to(device=device, dtype=dtype) for t in motion_rotary(frames, mean, head_dim))
        self._rotary_cache[key] = (video, motion)
        while len(self._rotary_cache) > 8:
            self._rotary_cache.popitem(last=False)
        return video, motion

    def unconditional_tokens(self, batch: int, latent_frames: int) -> torch.Tensor:
        """The learned unconditional motion tokens ``(batch, 312, D)`` for motion classifier-free guidance."""
        if latent_frames != WINDOW_LATENT_FRAMES:
            raise DiTError(
                f"the learned unconditional motion tokens cover {WINDOW_LATENT_FRAMES} latent frames (49 video "
                f"frames), got {latent_frames}; render longer motion in windows (MTVCrafterPipeline does)"
            )
        return self.unconditional_motion_token[None].expand(batch, -1, -1)

    # -- speed --------------------------------------------------------------------------------------

    @property
    def fused_projections(self) -> bool:
        """Whether :meth:`fuse_qkv_projections` is in effect (q/k/v of self-attention, k/v of motion attention)."""
        return any(block.attn1.fused_projections for block in self.transformer_blocks)

    def compile_blocks(self, **options) -> None:
        """``torch.compile`` each block (regional compilation: the blocks share one compiled graph)."""
        for block in self.transformer_blocks:
            block.compile(**options)

    # -- forward ------------------------------------------------------------------------------------

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor | int,
        motion_tokens: torch.Tensor,
        joint_mean: np.ndarray | torch.Tensor,
        return_dict: bool = True,
    ):
        cfg = self.config
        if hidden_states.ndim != 5 or hidden_states.shape[2] != cfg.in_channels:
            raise DiTError(
                f"hidden_states must be (B, F', {cfg.in_channels}, h, w) latents, got {tuple(hidden_states.shape)}"
            )
        batch, frames, _, height, width = hidden_states.shape
        p = cfg.patch_size
        if height % p or width % p:
            raise DiTError(f"latent height and width must be multiples of {p}, got {height}×{width}")
        token_dim = self.unconditional_motion_token.shape[1]
        if motion_tokens.shape != (batch, frames * NUM_JOINTS, token_dim):
            raise DiTError(
                f"motion_tokens must be (B={batch}, F'·24={frames * NUM_JOINTS}, {token_dim}) for {frames} latent "
                f"frames, got {tuple(motion_tokens.shape)}"
            )
        timestep = torch.as_tensor(timestep, device=hidden_states.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(batch)

        temb = self.time_embedding(self.time_proj(timestep).to(hidden_states.dtype))
        x = self.embedding_dropout(self.patch_embed(hidden_states))
        motion_tokens = motion_tokens.to(x.dtype)
        video_rope, motion_rope = self.rotary_tables(
            frames, height // p, width // p, joint_mean, hidden_states.device, x.dtype
        )
        for block in self.transformer_blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                x = self._gradient_checkpointing_func(block, x, motion_tokens, temb, video_rope, motion_rope)
            else:
                x = block(x, motion_tokens, temb, video_rope, motion_rope)

        x = self.proj_out(self.norm_out(self.norm_final(x), temb=temb))
        # (B, F·h'·w', C·p·p) → (B, F, C, h, w), channels ordered (C, row in patch, column in patch)
        x = x.reshape(batch, frames, height // p, width // p, -1, p, p)
        out = x.permute(0, 1, 4, 2, 5, 3, 6).reshape(batch, frames, -1, height, width)
        if not return_dict:
            return (out,)
        return Transformer2DModelOutput(sample=out)

    # -- loading ------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        subfolder: str | None = None,
        torch_dtype: torch.dtype | None = None,
        device: str | torch.device = "cpu",
        trust_checkpoint: bool = False,
        local_files_only: bool | None = None,
        **kwargs,
    ) -> MVDiT7BTransformer:
        """Load an ``MV-DiT/CogVideoX`` folder as the authors published it (or as :meth:`save_pretrained` writes).

        ``pretrained_model_name_or_path``: a local folder (``subfolder`` inside it, if given) holding
        ``config.json`` and the weights: ``diffusion_pytorch_model.safetensors`` or ``.bin``, sharded
        (with its ``.index.json``) or not, or any single ``*.safetensors``/``*.bin`` file. Names and
        shapes are checked strictly. ``torch_dtype`` converts tensor by tensor as they are read (None:
        as stored); ``device`` is where the tensors are read to. ``.bin`` files load with
        ``weights_only=True`` unless ``trust_checkpoint`` (runs their pickle code). Nothing is
        downloaded (``local_files_only`` is accepted for compatibility and changes nothing); any other
        keyword is refused with a :class:`DiTError`.
        """
        where = f"{cls.__name__}.from_pretrained"
        refuse_unknown_keywords(
            where, kwargs, ["subfolder", "torch_dtype", "device", "trust_checkpoint", "local_files_only"]
        )
        check_torch_dtype(where, torch_dtype)
        folder = Path(pretrained_model_name_or_path)
        if subfolder:
            folder = folder / subfolder
        origin = "MV-DiT/CogVideoX in the Hugging Face repo yanboding/MTVCrafter"
        model = model_from_folder(cls, folder, origin, "MV-DiT-7B", torch_dtype, device, trust_checkpoint)
        model._rotary_cache = OrderedDict()
        return model.eval()
