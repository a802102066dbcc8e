"""Memory modes of the MV-DiT pipelines: where the weights wait while they are not computing.

- ``none``: every model on the GPU (the 17B's text encoder and CLIP excepted: they wait on the CPU between
  uses, :meth:`~mtvcrafter.dit.MTVCrafter17BPipeline.enable_encoder_release`).
- ``model``: diffusers' model CPU offload: only the running model sits on the GPU (the transformer while
  denoising, the VAE while encoding and decoding).
- ``group``: diffusers' group offloading: the transformer's blocks one at a time, the next one copied in on a
  CUDA stream while the current one computes; the text encoder and CLIP layer by layer, streamed the same way.
- ``sequential``: the least memory, the slowest: the transformer's blocks one at a time without the next one
  prefetched, the encoders layer by layer. Not diffusers' ``enable_sequential_cpu_offload``, which leaves
  weights on the meta device outside their own layer's forward, where MV-DiT reads some (the 7B's
  unconditional motion tokens; the 17B's official RMS norms and time MLP).
- ``auto``: the fastest of these whose estimate fits the GPU's free memory (:func:`choose_offload`).

In ``group`` and ``sequential`` the VAE (0.4 GB for the 7B, 0.5 GB for the 17B's float32 one) stays on the GPU:
it works through ``encode``/``decode``, not ``forward``, and decodes a few frames at a time, so per-layer copies
would cost more than its weights take; its working memory is bounded by tiling (the 7B always tiles, as the
official script; the 17B only when ``auto`` finds memory too short, since tiling changes its frames).

Offloading moves weights and changes no number: every mode gives the frames of ``none``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .errors import DiTError

#: From fastest (most memory) to slowest (least memory).
OFFLOAD_MODES = ("none", "model", "group", "sequential")
AUTO = "auto"
GIB = 2**30
#: Kept free besides the estimate: its error, the CUDA context's own allocations, fragmentation.
HEADROOM = 0.15
HEADROOM_BYTES = 1 * GIB
#: Live activations of a block, in units of its hidden states ``(batch, tokens, width)`` in the compute dtype: the
#: residual, the normed input, q/k/v, float32 rotary temporaries and the feed-forward's inner layer and its GELU.
#: The 17B's official numerics rotate in float64 (its q and k briefly at four times their size).
ACTIVATION_UNITS = {"7b": 14, "17b": 22}


@dataclass(frozen=True)
class MemoryEstimate:
    """What a render needs on the GPU, in bytes: weights counted from the loaded models, activations from the
    video's size. :meth:`need` gives the peak of an offload mode."""

    #: weights of each model: transformer, vae, and for the 17B text_encoder, image_encoder
    weights: dict[str, int]
    #: the transformer's largest block, and its weights outside the blocks (embeddings, output layers)
    largest_block: int
    transformer_rest: int
    #: the largest single layer of the text encoder or CLIP (streamed layer by layer: two on the GPU at once)
    largest_layer: int
    #: denoising activations (both guidance branches) and the VAE's working memory while decoding
    activations: int
    decode: int

    def need(self, mode: str) -> int:
        """Peak bytes on the GPU in ``mode`` (one of :data:`OFFLOAD_MODES`)."""
        w = self.weights
        encoders = [w.get("text_encoder", 0), w.get("image_encoder", 0)]
        if mode == "none":  # resident transformer and VAE; an encoder visits before denoising
            return w["transformer"] + w["vae"] + max(self.activations, self.decode, *encoders)
        if mode == "model":  # one model at a time
            return max(w["transformer"] + self.activations, w["vae"] + self.decode, *encoders)
        if mode == "group":  # the running block and the one streaming in
            resident = 2 * self.largest_block + self.transformer_rest + w["vae"]
            return max(resident + self.activations, w["vae"] + self.decode, 2 * self.largest_layer + w["vae"])
        if mode == "sequential":
            resident = self.largest_block + self.transformer_rest + w["vae"]
            return max(resident + self.activations, w["vae"] + self.decode, 2 * self.largest_layer + w["vae"])
        raise DiTError(f"offload must be one of {', '.join(OFFLOAD_MODES)}, got {mode!r}")


def fits(need_bytes: int, free_bytes: int) -> bool:
    """Whether a peak of ``need_bytes`` fits in ``free_bytes`` with :data:`HEADROOM` to spare."""
    return need_bytes * (1 + HEADROOM) + HEADROOM_BYTES <= free_bytes


def choose_offload(free_bytes: int, estimate: MemoryEstimate) -> str:
    """The fastest offload mode whose peak fits in ``free_bytes`` (as ``torch.cuda.mem_get_info`` gives it) with
    :data:`HEADROOM` to spare; ``sequential`` when none fits (the least there is)."""
    for mode in OFFLOAD_MODES:
        if fits(estimate.need(mode), free_bytes):
            return mode
    return OFFLOAD_MODES[-1]


def _bytes(module: nn.Module | None) -> int:
    if module is None:
        return 0
    return sum(p.numel() * p.element_size() for p in module.parameters())


def _largest_layer(modules: list[nn.Module]) -> int:
    sizes = [
        sum(p.numel() * p.element_size() for p in m.parameters(recurse=False))
        for module in modules
        if module is not None
        for m in module.modules()
    ]
    return max(sizes, default=0)


def _blocks(transformer: nn.Module) -> nn.ModuleList:
    return getattr(transformer, "transformer_blocks", None) or transformer.blocks


def estimate_memory(pipe, height: int, width: int, frames: int = 49, guidance: bool = True) -> MemoryEstimate:
    """The :class:`MemoryEstimate` of a render of ``frames`` frames (one window: at most 49) at ``height`` ×
    ``width`` with ``pipe`` (either MV-DiT pipeline, as loaded: its dtype and its models' sizes)."""
    transformer, vae = pipe.transformer, pipe.vae
    encoders = [getattr(pipe, "text_encoder", None), getattr(pipe, "image_encoder", None)]
    weights = {"transformer": _bytes(transformer), "vae": _bytes(vae)}
    for name, encoder in zip(("text_encoder", "image_encoder"), encoders, strict=True):
        if encoder is not None:
            weights[name] = _bytes(encoder)
    blocks = _blocks(transformer)
    largest_block = max(_bytes(b) for b in blocks)
    is_17b = hasattr(transformer, "set_numerics")
    cfg = transformer.config
    patch = cfg.patch_size if isinstance(cfg.patch_size, int) else cfg.patch_size[-1]
    scale = pipe.vae_scale_factor_spatial
    latent_frames = (min(frames, 49) - 1) // 4 + 1
    tokens = latent_frames * (height // scale // patch) * (width // scale // patch)
    dim = cfg.num_attention_heads * cfg.attention_head_dim
    element = next(transformer.parameters()).element_size()
    batch = 2 if guidance else 1
    activations = batch * tokens * dim * element * ACTIVATION_UNITS["17b" if is_17b else "7b"]
    # the decoders work on a few frames at a time (CogVideoX: 2 latent frames, 8 video frames; Wan: one latent frame,
    # 4 video frames): about twelve feature maps of their full-resolution stage for those frames
    config = vae.config
    channels = config.block_out_channels[0] if "block_out_channels" in config else config.base_dim
    decode_frames = 4 if is_17b else 8
    decode = 12 * decode_frames * height * width * channels * next(vae.parameters()).element_size()
    return MemoryEstimate(
        weights=weights,
        largest_block=largest_block,
        transformer_rest=weights["transformer"] - sum(_bytes(b) for b in blocks),
        largest_layer=_largest_layer(encoders),
        activations=activations,
        decode=decode,
    )


def free_memory(device: torch.device | str) -> int:
    """Free bytes on a CUDA ``device`` now (``torch.cuda.mem_get_info``)."""
    return torch.cuda.mem_get_info(torch.device(device))[0]


def _models(pipe) -> dict[str, nn.Module]:
    return {name: c for name, c in pipe.components.items() if isinstance(c, nn.Module)}


def enable_offload(pipe, mode: str, device: torch.device | str) -> None:
    """Place ``pipe``'s models on ``device`` in offload ``mode`` (one of :data:`OFFLOAD_MODES`; ``auto`` resolved by
    :func:`choose_offload` first). Fuse projections and quantize before this: offloading hooks hold the layers."""
    device = torch.device(device)
    if mode == "none":
        if device.type == "cuda" and hasattr(pipe, "enable_encoder_release"):
            pipe.enable_encoder_release("cpu")  # the encoders stay behind: never every model on the GPU at once
            for name, model in _models(pipe).items():
                if name not in ("text_encoder", "image_encoder"):
                    model.to(device)
        else:
            pipe.to(device)
        return
    if mode == "model":
        pipe.enable_model_cpu_offload(device=device)
        return
    if mode not in OFFLOAD_MODES:
        raise DiTError(f"offload must be one of {', '.join(OFFLOAD_MODES)} or {AUTO}, got {mode!r}")
    from diffusers.hooks import apply_group_offloading

    streamed = device.type == "cuda"  # copies overlap computing on a CUDA stream (pinned CPU memory)
    cpu = torch.device("cpu")
    for name, model in _models(pipe).items():
        if name == "transformer":
            prefetch = streamed and mode == "group"
            apply_group_offloading(model, device, cpu, offload_type="block_level", num_blocks_per_group=1,
                                   use_stream=prefetch, non_blocking=prefetch)  # fmt: skip
        elif name == "vae":
            model.to(device)
        else:
            apply_group_offloading(model, device, cpu, offload_type="leaf_level", use_stream=streamed,
                                   non_blocking=streamed)  # fmt: skip
