"""Exact and fast modes of the MV-DiT pipelines: what makes a render quicker, and what each part costs.

**Exact mode** (the default) changes no number the plain path computes:

- fused projections: q, k and v of the self-attention, k and v of the motion attention (and of the 17B's text
  and image attentions), as one matrix each (``fuse_qkv_projections``; the same products, one kernel);
- attention through PyTorch's fused scaled-dot-product kernels (diffusers' ``dispatch_attention_fn``, native
  backend: flash, memory-efficient or cuDNN attention on a GPU; nothing builds the tokens × tokens matrix);
- rotary tables built once per grid, not per step; the 7B's reference image encoded once instead of 49 times;
  the 17B's prompts encoded once and cached, its text encoder and CLIP kept off the GPU between uses
  (:meth:`~mtvcrafter.dit.MTVCrafter17BPipeline.enable_encoder_release`);
- on a CUDA GPU, ``torch.compile`` of the blocks (regional: one compiled graph serves every block). Its cost is
  paid once, at the first step of the first render (:data:`COMPILE_NOTE`). Inductor's fused kernels keep
  intermediates in float32 and sum in their own order, so compiled blocks agree with eager ones to the
  rounding of the compute dtype rather than bit for bit (``mtvcrafter bench dit`` prints the agreement);
  ``compile_blocks=False`` (``mtvcrafter animate --no-compile``) keeps every bit of the plain path there too.

**Fast mode** trades a measured deviation for time (``mtvcrafter bench dit --fast`` prints each option's
relative error of the final latents on the same seed next to its speed):

- a step cache through diffusers' hooks: First-Block Cache (:data:`FAST_CACHE`), chosen over TaylorSeer and
  MagCache by error against speed (the README's table; :func:`cache_config` builds each candidate);
- fp8 matmuls (torchao, dynamic float8 activations and weights, per-row scales) in the blocks' linear layers
  where the GPU has fp8 tensor cores (compute capability 8.9 or higher); elsewhere one line says why it is
  skipped (:func:`fp8_unavailable`);
- for the 17B, a FusionX-style LoRA when the user supplies it (the ``lora`` setting: 10 steps, no guidance).
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import DiTError

#: Said once when the blocks are compiled: what the first step costs.
COMPILE_NOTE = "compiling the transformer's blocks with torch.compile: the first step takes longer, once"

#: The step cache of fast mode (a key of :data:`CACHES`) and the threshold it was chosen at.
FAST_CACHE = "first-block-0.05"

#: Step caches compared by ``mtvcrafter bench dit --fast``: name → (kind, options). ``first-block``: diffusers'
#: First-Block Cache (the other blocks are skipped while the first block's residual changes by less than the
#: threshold, relative, since it last ran them); ``taylorseer``: TaylorSeer's lite variant (the model's output
#: extrapolated from its last full steps, full steps every ``interval``); ``magcache``: MagCache with magnitude
#: ratios calibrated on the same run (the model's real ratios are needed for real use).
CACHES: dict[str, tuple[str, dict]] = {
    "first-block-0.05": ("first-block", {"threshold": 0.05}),
    "first-block-0.1": ("first-block", {"threshold": 0.1}),
    "first-block-0.2": ("first-block", {"threshold": 0.2}),
    "taylorseer-3": ("taylorseer", {"interval": 3}),
    "taylorseer-5": ("taylorseer", {"interval": 5}),
    "magcache-0.06": ("magcache", {"threshold": 0.06}),
}

#: fp8 tensor cores: Ada (8.9) and Hopper (9.0) or newer.
FP8_CAPABILITY = (8, 9)

_registered = False


@torch.no_grad()
def split_linear(fused: nn.Linear, parts: int) -> list[nn.Linear]:
    """The ``parts`` equal linears a fused projection was made of (its output rows in order), on its device and
    dtype: how the separate projections come back from a fused one."""
    width = fused.out_features // parts
    out = []
    for k in range(parts):
        part = nn.Linear(fused.in_features, width, bias=fused.bias is not None,
                         device=fused.weight.device, dtype=fused.weight.dtype)  # fmt: skip
        part.weight.copy_(fused.weight[k * width : (k + 1) * width])
        if fused.bias is not None:
            part.bias.copy_(fused.bias[k * width : (k + 1) * width])
        out.append(part)
    return out


class SavesSeparateProjections:
    """``save_pretrained`` of a transformer whose projections :meth:`fuse_qkv_projections` may have fused: it
    always writes the separate ones (the official parameter names) and fuses them again afterwards. Put before
    diffusers' ``ModelMixin`` in the bases; the class provides ``fused_projections`` and the (un)fusing methods."""

    def save_pretrained(self, save_directory, *args, **kwargs):
        """diffusers' ``save_pretrained``, always with the separate projections (the official parameter names)."""
        fused = self.fused_projections
        if fused:
            self.unfuse_qkv_projections()
        try:
            return super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            if fused:
                self.fuse_qkv_projections()


def register_blocks() -> None:
    """Tell diffusers' hooks how MV-DiT's blocks are called (their input is ``hidden_states``, they return it),
    as diffusers does for its own transformers; the step caches need it."""
    global _registered
    if _registered:
        return
    from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry

    from .transformer_7b import MVDiTBlock
    from .transformer_17b import MVDiT17BBlock

    for block in (MVDiTBlock, MVDiT17BBlock):
        TransformerBlockRegistry.register(
            block, TransformerBlockMetadata(return_hidden_states_index=0, return_encoder_hidden_states_index=None)
        )
    _registered = True


def cache_config(name: str, steps: int, calibration: list[float] | None = None):
    """The diffusers cache configuration of :data:`CACHES` ``name`` for a ``steps``-step render. ``magcache``
    needs the magnitude ratios of a calibration run (``calibration``)."""
    from diffusers.hooks import FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig

    try:
        kind, options = CACHES[name]
    except KeyError:
        raise DiTError(f"unknown step cache {name!r}; use one of {', '.join(CACHES)}") from None
    if kind == "first-block":
        return FirstBlockCacheConfig(threshold=options["threshold"])
    if kind == "taylorseer":
        return TaylorSeerCacheConfig(
            cache_interval=options["interval"],
            disable_cache_before_step=3,
            max_order=1,
            taylor_factors_dtype=torch.float32,
            use_lite_mode=True,
        )
    if calibration is None:
        return MagCacheConfig(calibrate=True, num_inference_steps=steps)
    return MagCacheConfig(threshold=options["threshold"], num_inference_steps=steps, mag_ratios=calibration)


def enable_step_cache(transformer, config) -> None:
    """Attach a diffusers step cache (``FirstBlockCacheConfig`` …) to an MV-DiT transformer; the pipelines give it
    the step and start it afresh for every window. ``transformer.disable_cache()`` removes it."""
    register_blocks()
    if transformer.is_cache_enabled:
        transformer.disable_cache()
    transformer.enable_cache(config)


def fp8_unavailable(device: torch.device | str) -> str | None:
    """Why fp8 matmuls cannot run on ``device`` (one line), or None when they can."""
    device = torch.device(device)
    if device.type != "cuda":
        return f"fp8 matmuls need a CUDA GPU with fp8 tensor cores (Ada, Hopper or newer); skipped on the {device.type}"
    capability = torch.cuda.get_device_capability(device)
    if capability < FP8_CAPABILITY:
        name = torch.cuda.get_device_name(device)
        return (
            f"fp8 matmuls need compute capability {FP8_CAPABILITY[0]}.{FP8_CAPABILITY[1]} or higher (Ada, Hopper); "
            f"{name} has {capability[0]}.{capability[1]}: skipped"
        )
    try:
        import torchao  # noqa: F401
    except ImportError:
        return "fp8 matmuls need torchao (pip install torchao); skipped"
    return None


def _fp8_layer(module: nn.Module, name: str) -> bool:
    """The blocks' linear layers whose sides fp8 kernels take (multiples of 16); the embeddings, the time MLP and
    the output projection stay in the compute dtype."""
    inside_block = name.startswith(("transformer_blocks.", "blocks."))
    return (
        inside_block
        and isinstance(module, nn.Linear)
        and module.in_features % 16 == 0
        and module.out_features % 16 == 0
    )


def enable_fp8(transformer, device: torch.device | str) -> str | None:
    """Quantize the blocks' linear layers to fp8 (torchao: dynamic float8 activations, float8 weights, per-row
    scales). Returns None when done, else the one line saying why it was skipped (the model is left as it was)."""
    reason = fp8_unavailable(device)
    if reason is not None:
        return reason
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    quantize_(transformer, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()), filter_fn=_fp8_layer)
    return None


def compile_by_default(device: torch.device | str) -> bool:
    """Whether exact mode compiles the blocks on ``device``: on a CUDA GPU (on the CPU the compile takes longer
    than tiny renders and changes rounding)."""
    return torch.device(device).type == "cuda"


def prepare_pipeline(
    pipe,
    device: torch.device | str,
    offload: str = "none",
    fast: bool = False,
    compile_blocks: bool | None = None,
    size: tuple[int, int, int] = (512, 512, 49),
    guidance: bool = True,
) -> tuple[str, list[str]]:
    """Make ``pipe`` (either MV-DiT pipeline, its weights on the CPU) ready to render on ``device``: exact mode's
    speed-ups, fast mode's when ``fast``, then its models placed in ``offload`` mode (``auto``: chosen by
    :func:`~mtvcrafter.dit.offload.choose_offload` from the GPU's free memory and ``size`` = (height, width,
    frames)). Returns the offload mode used and notes for the user (fp8 skipped, the one-time compile, …).

    Order matters: projections are fused and layers quantized before offloading hooks take hold of them; the step
    cache attaches after them (a skipped block is then not even copied in); blocks compile last, and only where
    the weights stay put (``none``, ``model``): compiled graphs and per-block copies do not mix well. In fast mode
    the blocks compile only when ``compile_blocks`` asks for it."""
    from .offload import AUTO, choose_offload, enable_offload, estimate_memory, fits, free_memory

    device = torch.device(device)
    notes: list[str] = []
    if offload == AUTO:
        if device.type == "cuda":
            estimate = estimate_memory(pipe, *size, guidance=guidance)
            free = free_memory(device)
            offload = choose_offload(free, estimate)
            notes.append(
                f"offload auto: {offload} (needs about {estimate.need(offload) / 2**30:.1f} GiB; "
                f"{free / 2**30:.1f} GiB free on {device})"
            )
            if not fits(estimate.need(offload), free):
                pipe.enable_vae_tiling()
                notes.append(
                    "the VAE decodes in tiles to fit (the 17B's frames then differ slightly from untiled ones)"
                )
        else:
            offload = "none"
    pipe.transformer.fuse_qkv_projections()
    if fast:
        reason = enable_fp8(pipe.transformer, device)
        if reason:
            notes.append(reason)
    enable_offload(pipe, offload, device)
    if fast:
        enable_step_cache(pipe.transformer, cache_config(FAST_CACHE, steps=50))
    if compile_blocks is None:  # the step cache decides in Python at every step, which compiled blocks would re-trace
        compile_blocks = compile_by_default(device) and not fast
    if compile_blocks and offload in ("none", "model"):
        pipe.transformer.compile_blocks(options={"emulate_precision_casts": True})
        notes.append(COMPILE_NOTE)
    return offload, notes
