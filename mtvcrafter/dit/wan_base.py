"""The Wan 2.1 base components of MV-DiT-17B: video VAE, umT5-XXL text encoder and its tokenizer, CLIP image encoder.

MV-DiT-17B is built on Wan2.1-I2V-14B (Wan2.1-Fun-14B-InP), whose base components ship in the official
Wan 2.1 layout (a download of the Hugging Face repo Wan-AI/Wan2.1-I2V-14B-480P)::

    wan2.1/
      Wan2.1_VAE.pth                                         ← video VAE, 127M parameters
      models_t5_umt5-xxl-enc-bf16.pth                        ← umT5-XXL encoder, 5.7B parameters (bfloat16)
      google/umt5-xxl/                                       ← its tokenizer (tokenizer.json, spiece.model, …)
      models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth ← open-clip XLM-RoBERTa + ViT-H/14; only the
                                                                ViT (``visual.*``, 0.63B parameters) is used

(the parameter counts are those of the official configurations: umT5-XXL d_model 4096, d_ff 10240, 24 layers,
64 heads, vocabulary 256384; ViT-H/14 width 1280, 32 layers, 16 heads, MLP 5120, projection 1024; VAE base
width 96, 16 latent channels). The ``.pth`` files hold state dicts in the official module names (``wan/modules``
of github.com/Wan-Video/Wan2.1); they are converted at load time to diffusers' ``AutoencoderKLWan`` and
transformers' ``UMT5EncoderModel`` and ``CLIPVisionModelWithProjection``, so the rest of the project uses the
standard classes. A diffusers-format folder (a download of Wan-AI/Wan2.1-I2V-14B-480P-Diffusers, recognised by its
``model_index.json``) loads too. Nothing is ever downloaded.

How the official code runs them, and what this module reproduces: the text encoder runs in bfloat16 and its
features past each prompt's length are replaced by zeros (:func:`encode_text`); the image encoder runs in float16
(autocast) on the 224×224 squash of the image and its features are the output of the 31st of 32 blocks
(:func:`clip_image_features`); the VAE runs in float32 and normalises its latents with per-channel mean and std
(``AutoencoderKLWan.config.latents_mean`` / ``latents_std``; diffusers' ``encode`` returns them unnormalised).
"""

from __future__ import annotations

import json
import math
import re
from itertools import pairwise
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from accelerate import init_empty_weights
from diffusers import AutoencoderKLWan
from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
from transformers import (
    AutoTokenizer,
    CLIPVisionConfig,
    CLIPVisionModel,
    CLIPVisionModelWithProjection,
    UMT5Config,
    UMT5EncoderModel,
)

from .errors import ModelFileError
from .loading import _listing, _tensors, check_torch_dtype, weight_files

WAN_VAE_FILE = "Wan2.1_VAE.pth"
UMT5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
UMT5_TOKENIZER_DIR = "google/umt5-xxl"
CLIP_FILE = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
#: Component name → its file (or folder) in the official layout.
WAN_BASE_FILES = {
    "vae": WAN_VAE_FILE,
    "text_encoder": UMT5_FILE,
    "tokenizer": UMT5_TOKENIZER_DIR,
    "image_encoder": CLIP_FILE,
}
WAN_BASE_REPO = "the Hugging Face repo Wan-AI/Wan2.1-I2V-14B-480P"
WAN_BASE_DIFFUSERS_REPO = "the Hugging Face repo Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"
ORIGIN = f"{WAN_BASE_REPO} (or use a download of {WAN_BASE_DIFFUSERS_REPO} instead)"
DIFFUSERS_INDEX = "model_index.json"
DIFFUSERS_DIRS = ("vae", "text_encoder", "tokenizer", "image_encoder")

#: OpenAI CLIP's normalisation, which the official Wan CLIP uses.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
UMT5_MAX_DISTANCE = 128  # the relative-position buckets' range, fixed in wan/modules/t5.py
_TF_DTYPE = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"


# ---------------------------------------------------------------- reading official state dicts


def _read(path, name: str, what: str, torch_dtype, trust: bool, keep=None) -> tuple[Path, dict[str, torch.Tensor]]:
    """The tensors of the official ``.pth`` file ``name`` whose names ``keep`` accepts (all by default), floating
    ones cast to ``torch_dtype`` (float32 if None). The file is memory-mapped: tensors not kept are never read."""
    check_torch_dtype(f"loading the {what}", torch_dtype)
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: missing; download {name} (the {what}) from {ORIGIN}")
    dtype = torch_dtype or torch.float32
    state = {}
    for key, tensor in _tensors(path, "cpu", None, trust):
        if keep is None or keep(key):
            state[key] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    return path, state


def _check(path: Path, state: dict, expected: dict[str, tuple], what: str, names=None) -> None:
    """``state`` has exactly ``expected``'s names and shapes; else one line listing the differences.

    ``names`` maps a name of ``state`` to the one to report (the official name, for converted state dicts)."""
    names = names or {}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(names.get(k, k) for k in set(state) - set(expected))
    wrong = [
        f"{names.get(k, k)} {tuple(state[k].shape)} ≠ {s}"
        for k, s in expected.items()
        if k in state and tuple(state[k].shape) != tuple(s)
    ]
    parts = [f"{len(v)} {kind} ({_listing(v)})" for kind, v in (("missing", missing), ("unexpected", unexpected)) if v]
    if wrong:
        parts.append(f"{len(wrong)} of the wrong shape ({'; '.join(wrong[:4])})")
    if parts:
        raise ModelFileError(f"{path}: not the {what} of Wan 2.1: tensors " + "; ".join(parts) + f". Expected {ORIGIN}")


def _need(path: Path, state: dict, key: str, what: str) -> torch.Tensor:
    if key not in state:
        raise ModelFileError(f"{path}: not the {what} of Wan 2.1 (no tensor {key}); expected the file of {ORIGIN}")
    return state[key]


def _count(state: dict, prefix: str) -> int:
    """How many numbered sub-modules ``prefix.N.`` the state dict has (the largest N + 1)."""
    found = [int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"\.(\d+)\.", k))]
    return max(found) + 1 if found else 0


def encoder_configs(full: bool = True) -> tuple[UMT5Config, CLIPVisionConfig]:
    """The configurations of umT5-XXL's encoder and CLIP's ViT-H/14 as the official files give them (the module
    docstring's sizes), for models with random weights; ``full=False``: two layers of each at the official widths,
    with a small vocabulary and narrower feed-forward layers."""
    text = UMT5Config(vocab_size=256384 if full else 128, d_model=4096, d_kv=64, d_ff=10240 if full else 1024,
                      num_layers=24 if full else 2, num_heads=64, relative_attention_num_buckets=32,
                      feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False,
                      tie_word_embeddings=False, pad_token_id=0)  # fmt: skip
    image = CLIPVisionConfig(hidden_size=1280, intermediate_size=5120 if full else 1280, projection_dim=1024,
                             num_hidden_layers=32 if full else 2, num_attention_heads=16, image_size=224,
                             patch_size=14, hidden_act="gelu", layer_norm_eps=1e-5)  # fmt: skip
    return text, image


def _assign(model_cls, config, state: dict):
    """``model_cls(config)`` built without allocating weights, then given ``state``'s tensors (no copy)."""
    with init_empty_weights():
        model = model_cls(config)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


# ---------------------------------------------------------------- VAE


def _vae_shapes(dim: int, z_dim: int) -> dict[str, tuple]:
    """Official names and shapes of Wan 2.1's VAE (``WanVAE_`` of wan/modules/vae.py: dim_mult 1, 2, 4, 4,
    two residual blocks per level, attention in the middle blocks only, temporal down-sampling in levels 2, 3)."""
    s: dict[str, tuple] = {}

    def conv(name, cin, cout, k):
        s[f"{name}.weight"], s[f"{name}.bias"] = (cout, cin, *k), (cout,)

    def res(name, cin, cout):
        s[f"{name}.residual.0.gamma"], s[f"{name}.residual.3.gamma"] = (cin, 1, 1, 1), (cout, 1, 1, 1)
        conv(f"{name}.residual.2", cin, cout, (3, 3, 3))
        conv(f"{name}.residual.6", cout, cout, (3, 3, 3))
        if cin != cout:
            conv(f"{name}.shortcut", cin, cout, (1, 1, 1))

    def middle(name, c):
        res(f"{name}.0", c, c)
        s[f"{name}.1.norm.gamma"] = (c, 1, 1)
        conv(f"{name}.1.to_qkv", c, 3 * c, (1, 1))
        conv(f"{name}.1.proj", c, c, (1, 1))
        res(f"{name}.2", c, c)

    dims = [dim * m for m in (1, 1, 2, 4, 4)]
    conv("encoder.conv1", 3, dims[0], (3, 3, 3))
    i = 0
    for level, (cin, cout) in enumerate(pairwise(dims)):
        for _ in range(2):
            res(f"encoder.downsamples.{i}", cin, cout)
            cin, i = cout, i + 1
        if level < 3:
            conv(f"encoder.downsamples.{i}.resample.1", cout, cout, (3, 3))
            if level > 0:  # downsample3d
                conv(f"encoder.downsamples.{i}.time_conv", cout, cout, (3, 1, 1))
            i += 1
    middle("encoder.middle", dims[-1])
    s["encoder.head.0.gamma"] = (dims[-1], 1, 1, 1)
    conv("encoder.head.2", dims[-1], 2 * z_dim, (3, 3, 3))
    conv("conv1", 2 * z_dim, 2 * z_dim, (1, 1, 1))
    conv("conv2", z_dim, z_dim, (1, 1, 1))
    dims = [dim * m for m in (4, 4, 4, 2, 1)]
    conv("decoder.conv1", z_dim, dims[0], (3, 3, 3))
    middle("decoder.middle", dims[0])
    i = 0
    for level, (cin, cout) in enumerate(pairwise(dims)):
        cin = cin // 2 if level > 0 else cin  # the previous up-sampling halved the channels
        for _ in range(3):
            res(f"decoder.upsamples.{i}", cin, cout)
            cin, i = cout, i + 1
        if level < 3:
            conv(f"decoder.upsamples.{i}.resample.1", cout, cout // 2, (3, 3))
            if level < 2:  # upsample3d
                conv(f"decoder.upsamples.{i}.time_conv", cout, 2 * cout, (3, 1, 1))
            i += 1
    s["decoder.head.0.gamma"] = (dims[-1], 1, 1, 1)
    conv("decoder.head.2", dims[-1], 3, (3, 3, 3))
    return s


def _vae_from_official(state: dict, path: Path) -> AutoencoderKLWan:
    what = f"video VAE ({WAN_VAE_FILE})"
    dim = _need(path, state, "encoder.conv1.weight", what).shape[0]
    z_dim = _need(path, state, "conv2.weight", what).shape[0]
    _check(path, state, _vae_shapes(dim, z_dim), what)
    renamed = convert_wan_vae_to_diffusers({k: k for k in state})  # diffusers name → official name
    extra = {} if z_dim == 16 else {"latents_mean": [0.0] * z_dim, "latents_std": [1.0] * z_dim}
    config = dict(base_dim=dim, z_dim=z_dim, **extra)
    with init_empty_weights():
        model = AutoencoderKLWan(**config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    converted = {new: state[old] for new, old in renamed.items()}
    _check(path, converted, expected, what, names=renamed)
    model.load_state_dict(converted, strict=True, assign=True)
    return model.eval()


def load_wan_vae(path, torch_dtype: torch.dtype | None = None, trust_checkpoint: bool = False) -> AutoencoderKLWan:
    """Wan 2.1's video VAE from the official ``Wan2.1_VAE.pth``, as diffusers' ``AutoencoderKLWan``.

    The names are converted by diffusers' ``convert_wan_vae_to_diffusers``; the configuration is Wan 2.1's, with
    the base width and the latent channels read from the tensors. Every official tensor must be there with its
    shape, and no other. ``torch_dtype``: None loads float32 (as the official code runs the VAE)."""
    path, state = _read(path, WAN_VAE_FILE, "video VAE", torch_dtype, trust_checkpoint)
    return _vae_from_official(state, path)


# ---------------------------------------------------------------- umT5-XXL


def _umt5_shapes(vocab: int, dim: int, dim_attn: int, dim_ffn: int, heads: int, layers: int, buckets: int):
    """Official names and shapes of the umT5 encoder (``T5Encoder`` of wan/modules/t5.py, ``shared_pos=False``)."""
    s = {"token_embedding.weight": (vocab, dim), "norm.weight": (dim,)}
    for i in range(layers):
        b = f"blocks.{i}"
        s |= {f"{b}.norm1.weight": (dim,), f"{b}.norm2.weight": (dim,), f"{b}.attn.o.weight": (dim, dim_attn)}
        s |= {f"{b}.attn.{n}.weight": (dim_attn, dim) for n in "qkv"}
        s |= {f"{b}.ffn.gate.0.weight": (dim_ffn, dim), f"{b}.ffn.fc1.weight": (dim_ffn, dim)}
        s |= {f"{b}.ffn.fc2.weight": (dim, dim_ffn), f"{b}.pos_embedding.embedding.weight": (buckets, heads)}
    return s


def _umt5_from_official(state: dict, path: Path) -> UMT5EncoderModel:
    what = f"umT5-XXL text encoder ({UMT5_FILE})"
    vocab, dim = _need(path, state, "token_embedding.weight", what).shape
    buckets, heads = _need(path, state, "blocks.0.pos_embedding.embedding.weight", what).shape
    dim_attn = _need(path, state, "blocks.0.attn.q.weight", what).shape[0]
    dim_ffn = _need(path, state, "blocks.0.ffn.fc1.weight", what).shape[0]
    layers = _count(state, "blocks")
    _check(path, state, _umt5_shapes(vocab, dim, dim_attn, dim_ffn, heads, layers, buckets), what)
    if dim_attn % heads:
        raise ModelFileError(f"{path}: attention width {dim_attn} is not a multiple of the {heads} heads; {ORIGIN}")
    config = UMT5Config(
        vocab_size=vocab,
        d_model=dim,
        d_kv=dim_attn // heads,
        d_ff=dim_ffn,
        num_layers=layers,
        num_heads=heads,
        relative_attention_num_buckets=buckets,
        relative_attention_max_distance=UMT5_MAX_DISTANCE,
        layer_norm_epsilon=1e-6,
        feed_forward_proj="gated-gelu",  # GELU with the tanh approximation, as the official
        is_encoder_decoder=False,
        use_cache=False,
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    hf = {"shared.weight": state["token_embedding.weight"], "encoder.final_layer_norm.weight": state["norm.weight"]}
    hf["encoder.embed_tokens.weight"] = hf["shared.weight"]
    for i in range(layers):
        b, o = f"blocks.{i}.", f"encoder.block.{i}.layer."
        for n in "qkvo":
            hf[f"{o}0.SelfAttention.{n}.weight"] = state[f"{b}attn.{n}.weight"]
        hf[f"{o}0.SelfAttention.relative_attention_bias.weight"] = state[f"{b}pos_embedding.embedding.weight"]
        hf[f"{o}0.layer_norm.weight"] = state[f"{b}norm1.weight"]
        hf[f"{o}1.DenseReluDense.wi_0.weight"] = state[f"{b}ffn.gate.0.weight"]  # the GELU-gated branch
        hf[f"{o}1.DenseReluDense.wi_1.weight"] = state[f"{b}ffn.fc1.weight"]
        hf[f"{o}1.DenseReluDense.wo.weight"] = state[f"{b}ffn.fc2.weight"]
        hf[f"{o}1.layer_norm.weight"] = state[f"{b}norm2.weight"]
    model = _assign(UMT5EncoderModel, config, hf)
    model.set_input_embeddings(model.shared)  # one embedding, as from_pretrained ties them
    return model


def load_umt5_encoder(path, torch_dtype: torch.dtype | None = None, trust_checkpoint: bool = False):
    """The umT5-XXL encoder from the official ``models_t5_umt5-xxl-enc-bf16.pth``, as ``UMT5EncoderModel``.

    The configuration is read from the shapes (vocabulary and width from the token embedding, heads from each
    layer's relative-position table, layers, FFN and attention widths) plus umT5's fixed settings: 32 buckets
    (from the table) over a maximum distance of 128, per-layer position bias, gated GELU (tanh), RMS norm eps
    1e-6, no attention scaling. ``torch_dtype``: None loads float32; the file and the official code use bfloat16."""
    path, state = _read(path, UMT5_FILE, "umT5-XXL text encoder", torch_dtype, trust_checkpoint)
    return _umt5_from_official(state, path)


def load_umt5_tokenizer(folder):
    """The umT5 tokenizer from its Hugging Face folder (``google/umt5-xxl/`` of the official layout)."""
    folder = Path(folder)
    if not (folder / "tokenizer_config.json").is_file():
        raise ModelFileError(
            f"{folder}: missing the umT5 tokenizer (tokenizer_config.json, tokenizer.json, special_tokens_map.json, "
            f"spiece.model); download {UMT5_TOKENIZER_DIR}/ from {ORIGIN}"
        )
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFileError(
            f"{folder}: cannot load the umT5 tokenizer ({first}); download it again from {ORIGIN}"
        ) from None


# ---------------------------------------------------------------- CLIP ViT-H/14


def _is_visual(name: str) -> bool:
    return name.startswith("visual.")


def clip_heads(width: int) -> int:
    """Attention heads of the CLIP ViT, which the weights do not record: heads 80 wide when 80 divides the width
    (ViT-H/14: 1280 = 16 × 80), else 16 wide (the tiny test models), else a single head."""
    for head_width in (80, 16):
        if width % head_width == 0:
            return width // head_width
    return 1


def _clip_shapes(width: int, layers: int, mlp: int, patch: int, positions: int, out_dim: int) -> dict[str, tuple]:
    """Official names and shapes of the ViT (``visual`` of ``XLMRobertaCLIP`` in wan/modules/clip.py: pre-norm,
    so the patch embedding has no bias; class token; ``head`` a plain (width, out_dim) matrix)."""
    v = "visual."
    s = {f"{v}patch_embedding.weight": (width, 3, patch, patch), f"{v}cls_embedding": (1, 1, width)}
    s |= {f"{v}pos_embedding": (1, positions, width), f"{v}head": (width, out_dim)}
    s |= {f"{v}{n}.{p}": (width,) for n in ("pre_norm", "post_norm") for p in ("weight", "bias")}
    for i in range(layers):
        b = f"{v}transformer.{i}."
        s |= {f"{b}{n}.{p}": (width,) for n in ("norm1", "norm2") for p in ("weight", "bias")}
        s |= {f"{b}attn.to_qkv.weight": (3 * width, width), f"{b}attn.to_qkv.bias": (3 * width,)}
        s |= {f"{b}attn.proj.weight": (width, width), f"{b}attn.proj.bias": (width,)}
        s |= {f"{b}mlp.0.weight": (mlp, width), f"{b}mlp.0.bias": (mlp,)}
        s |= {f"{b}mlp.2.weight": (width, mlp), f"{b}mlp.2.bias": (width,)}
    return s


def _clip_from_official(state: dict, path: Path) -> CLIPVisionModelWithProjection:
    what = f"CLIP image encoder ({CLIP_FILE})"
    v = "visual."
    width, _, patch, _ = _need(path, state, f"{v}patch_embedding.weight", what).shape
    positions = _need(path, state, f"{v}pos_embedding", what).shape[1]
    mlp = _need(path, state, f"{v}transformer.0.mlp.0.weight", what).shape[0]
    out_dim = _need(path, state, f"{v}head", what).shape[1]
    layers = _count(state, f"{v}transformer")
    grid = round((positions - 1) ** 0.5)
    visual = {k: t for k, t in state.items() if k.startswith(v)}  # the text tower (textual.*) is not used
    _check(path, visual, _clip_shapes(width, layers, mlp, patch, grid * grid + 1, out_dim), what)
    config = CLIPVisionConfig(
        hidden_size=width,
        intermediate_size=mlp,
        projection_dim=out_dim,
        num_hidden_layers=layers,
        num_attention_heads=clip_heads(width),
        num_channels=3,
        image_size=grid * patch,
        patch_size=patch,
        hidden_act="gelu",  # exact (erf) GELU: nn.GELU() of the official
        layer_norm_eps=1e-5,
    )
    e, m = "vision_model.embeddings.", "vision_model."
    hf = {
        f"{e}patch_embedding.weight": state[f"{v}patch_embedding.weight"],
        f"{e}class_embedding": state[f"{v}cls_embedding"].reshape(width),
        f"{e}position_embedding.weight": state[f"{v}pos_embedding"].reshape(-1, width),
        "visual_projection.weight": state[f"{v}head"].t().contiguous(),
    }
    for ours, theirs in (("pre_norm", "pre_layrnorm"), ("post_norm", "post_layernorm")):
        for p in ("weight", "bias"):
            hf[f"{m}{theirs}.{p}"] = state[f"{v}{ours}.{p}"]
    for i in range(layers):
        b, o = f"{v}transformer.{i}.", f"{m}encoder.layers.{i}."
        for p in ("weight", "bias"):
            q, k, val = state[f"{b}attn.to_qkv.{p}"].chunk(3, dim=0)  # rows are q, then k, then v
            hf |= {f"{o}self_attn.q_proj.{p}": q, f"{o}self_attn.k_proj.{p}": k, f"{o}self_attn.v_proj.{p}": val}
            hf[f"{o}self_attn.out_proj.{p}"] = state[f"{b}attn.proj.{p}"]
            hf[f"{o}layer_norm1.{p}"] = state[f"{b}norm1.{p}"]
            hf[f"{o}layer_norm2.{p}"] = state[f"{b}norm2.{p}"]
            hf[f"{o}mlp.fc1.{p}"] = state[f"{b}mlp.0.{p}"]
            hf[f"{o}mlp.fc2.{p}"] = state[f"{b}mlp.2.{p}"]
    return _assign(CLIPVisionModelWithProjection, config, hf)


def load_clip_vision(path, torch_dtype: torch.dtype | None = None, trust_checkpoint: bool = False):
    """The ViT-H/14 of the official open-clip XLM-RoBERTa CLIP file, as ``CLIPVisionModelWithProjection``.

    Only the ``visual.*`` tensors are read; the text tower (``textual.*``, ``log_scale``) is ignored. The
    configuration comes from the shapes (width, layers, MLP, patch, image size from the position table, projection)
    with the official exact GELU and LayerNorm eps 1e-5; heads by :func:`clip_heads`. ``visual.head`` becomes the
    projection (transposed); it and the post-norm are loaded but not used by :func:`clip_image_features`.
    ``torch_dtype``: None loads float32; the official code runs it in float16."""
    path, state = _read(path, CLIP_FILE, "CLIP image encoder", torch_dtype, trust_checkpoint, _is_visual)
    return _clip_from_official(state, path)


@torch.no_grad()
def clip_image_features(image_encoder, images: torch.Tensor) -> torch.Tensor:
    """The image features MV-DiT-17B is conditioned on, as the official Wan CLIP computes them.

    ``images``: float (B, 3, H, W) in [-1, 1]. As ``CLIPModel.visual`` of wan/modules/clip.py: bicubic resize
    (``align_corners=False``, no antialias) of the [-1, 1] tensor straight to 224 × 224, squashing the aspect
    ratio (no crop), then ``x * 0.5 + 0.5`` and OpenAI CLIP's mean / std, all in the dtype of ``images`` (the
    official hands it the model's dtype, bfloat16, and normalises as torchvision does); then the ViT, keeping
    the output of the 31st of 32 blocks (``hidden_states[-2]``: no post-norm, no projection), class token first.
    Returns (B, 257, 1280) for ViT-H/14, in the encoder's dtype. (diffusers' Wan pipeline instead resizes the
    shortest side and centre-crops with ``CLIPImageProcessor``, which differs for non-square images.)"""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    param = next(image_encoder.parameters())
    size = image_encoder.config.image_size
    x = F.interpolate(images.to(param.device), size=(size, size), mode="bicubic", align_corners=False)
    mean = torch.tensor(CLIP_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    x = (x * 0.5 + 0.5 - mean) / std
    return image_encoder(pixel_values=x.to(param.dtype), output_hidden_states=True).hidden_states[-2]


# ---------------------------------------------------------------- text features


@torch.no_grad()
def encode_text(tokenizer, text_encoder, prompts: list[str], max_length: int = 512, device=None, dtype=None):
    """umT5 features of ``prompts`` as the 17B's transformer receives them: (B, max_length, d_model).

    Each prompt is tokenised as given (MTVCrafter's 17B script calls the tokenizer directly, without Wan's text
    clean-up) with its end-of-sequence token, truncated and
    padded to ``max_length`` (Wan: 512); the encoder sees the attention mask, and the features past each prompt's
    length are zeros (Wan cuts them off and its transformer pads with zeros). ``device`` / ``dtype`` of the
    result: the encoder's unless given."""
    if isinstance(prompts, str):
        prompts = [prompts]
    tokens = tokenizer(
        list(prompts),
        padding="max_length",
        max_length=max_length,
        truncation=True,
        add_special_tokens=True,
        return_attention_mask=True,
        return_tensors="pt",
    )
    param = next(text_encoder.parameters())
    mask = tokens.attention_mask.to(param.device)
    hidden = text_encoder(input_ids=tokens.input_ids.to(param.device), attention_mask=mask).last_hidden_state
    hidden = hidden.masked_fill(mask[..., None] == 0, 0.0)
    return hidden.to(device=device or hidden.device, dtype=dtype or hidden.dtype)


# ---------------------------------------------------------------- the base folder


def _diffusers_class(folder: Path) -> type:
    """The image encoder class ``model_index.json`` names (the Wan-AI folder: CLIPVisionModelWithProjection)."""
    path = folder / DIFFUSERS_INDEX
    try:
        entry = json.loads(path.read_text(encoding="utf-8")).get("image_encoder")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        raise ModelFileError(f"{path}: not readable ({exc}); copy it again from {WAN_BASE_DIFFUSERS_REPO}") from None
    if isinstance(entry, list) and entry and entry[-1] == "CLIPVisionModel":
        return CLIPVisionModel
    return CLIPVisionModelWithProjection


def check_wan_base(folder) -> None:
    """Raise the error :func:`load_wan_base` would for a missing file, without loading anything."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFileError(f"{folder}: no such folder; it should be a download of {ORIGIN}")
    if (folder / DIFFUSERS_INDEX).is_file():
        origin = WAN_BASE_DIFFUSERS_REPO
        missing = [f"{d}/" for d in DIFFUSERS_DIRS if not (folder / d).is_dir()]
        if missing:
            raise ModelFileError(f"{folder}: missing {', '.join(missing)} of the Wan 2.1 base; download from {origin}")
        for name in ("vae", "text_encoder", "image_encoder"):
            if not (folder / name / "config.json").is_file():
                raise ModelFileError(f"{folder / name}: missing config.json; download {name}/ again from {origin}")
            weight_files(folder / name, f"{name}/ of {origin}")
        if not (folder / "tokenizer" / "tokenizer_config.json").is_file():
            raise ModelFileError(f"{folder / 'tokenizer'}: missing tokenizer_config.json; download it from {origin}")
        return
    missing = [n for n in (WAN_VAE_FILE, UMT5_FILE, CLIP_FILE) if not (folder / n).is_file()]
    if not (folder / UMT5_TOKENIZER_DIR / "tokenizer_config.json").is_file():
        missing.append(f"{UMT5_TOKENIZER_DIR}/")
    if missing:
        raise ModelFileError(f"{folder}: missing {', '.join(missing)} of the Wan 2.1 base; download from {ORIGIN}")


def is_wan_base(folder) -> bool:
    """Whether ``folder`` holds the Wan 2.1 base files (official or diffusers layout); checks names only."""
    try:
        check_wan_base(folder)
    except ModelFileError:
        return False
    return True


def load_wan_base(folder, torch_dtype: torch.dtype | None = None, trust_checkpoint: bool = False) -> dict:
    """The four base components, ``dict(vae=, text_encoder=, tokenizer=, image_encoder=)``, from the official
    layout or a diffusers-format folder. ``torch_dtype`` applies to the three models (None: float32)."""
    check_torch_dtype("load_wan_base", torch_dtype)
    check_wan_base(folder)
    folder = Path(folder)
    if not (folder / DIFFUSERS_INDEX).is_file():
        return {
            "vae": load_wan_vae(folder / WAN_VAE_FILE, torch_dtype, trust_checkpoint),
            "text_encoder": load_umt5_encoder(folder / UMT5_FILE, torch_dtype, trust_checkpoint),
            "tokenizer": load_umt5_tokenizer(folder / UMT5_TOKENIZER_DIR),
            "image_encoder": load_clip_vision(folder / CLIP_FILE, torch_dtype, trust_checkpoint),
        }
    dtype = torch_dtype or torch.float32
    classes = {"vae": AutoencoderKLWan, "text_encoder": UMT5EncoderModel, "image_encoder": _diffusers_class(folder)}
    components = {}
    for name, cls in classes.items():
        try:
            if cls is AutoencoderKLWan:  # diffusers refuses missing tensors itself
                model = cls.from_pretrained(str(folder), subfolder=name, torch_dtype=dtype, local_files_only=True)
            else:  # transformers would initialise missing ones at random, with a warning
                model, info = cls.from_pretrained(
                    str(folder), subfolder=name, local_files_only=True, output_loading_info=True, **{_TF_DTYPE: dtype}
                )
                mismatched = [k if isinstance(k, str) else str(k[0]) for k in info.get("mismatched_keys") or []]
                bad = sorted(info.get("missing_keys") or []) + sorted(mismatched)
                if bad:
                    raise ValueError(f"{len(bad)} tensors missing or of the wrong shape ({_listing(bad)})")
            components[name] = model.eval()
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelFileError(
                f"{folder / name}: cannot load ({first}); download {name}/ again from {WAN_BASE_DIFFUSERS_REPO}"
            ) from None
    components["tokenizer"] = load_umt5_tokenizer(folder / "tokenizer")
    return {k: components[k] for k in DIFFUSERS_DIRS}


# ---------------------------------------------------------------- tiny base for tests and the tiny backend

TINY_WORDS = (
    "a an the person man woman child dancer he she they it is are was walks runs jumps dances turns spins waves "
    "claps kicks bows sits stands steps slowly quickly gracefully happily in on at with and of to from park street "
    "stage room beach studio garden light dark red blue green white black shirt dress coat hat shoes arms legs hands "
    "head body video camera static shot high quality detailed realistic smooth motion background front left right"
).split()


def _tiny_tensor(name: str, shape: tuple, gen: torch.Generator) -> torch.Tensor:
    """Seeded random weights of a sane scale: norms near 1, embeddings unit, matrices 1/sqrt(fan-in)."""
    noise = torch.randn(shape, generator=gen)
    if name.endswith("gamma") or re.search(r"norm\d?\.weight$|pre_norm\.weight$|post_norm\.weight$", name):
        return 1.0 + 0.1 * noise
    if name.endswith(".bias"):
        return 0.05 * noise
    if name == "token_embedding.weight":
        return noise
    if name.endswith("pos_embedding.embedding.weight"):  # umT5's relative-position bias
        return 0.5 * noise
    if name in ("visual.cls_embedding", "visual.pos_embedding", "visual.head"):  # the official's 1/sqrt(width)
        return noise * (shape[0] if name == "visual.head" else shape[-1]) ** -0.5
    return noise * math.prod(shape[1:]) ** -0.5  # matrices and kernels: 1/sqrt(fan-in)


def _tiny_states(seed: int) -> dict[str, dict[str, torch.Tensor]]:
    """The tiny base's three official-layout state dicts."""
    gen = torch.Generator().manual_seed(seed)
    vocab = 3 + len(TINY_WORDS)
    shapes = {
        "vae": _vae_shapes(8, 16),
        "text_encoder": _umt5_shapes(vocab, 32, 32, 64, 2, 2, 32),
        "image_encoder": _clip_shapes(32, 3, 128, 14, 257, 16),
    }
    return {c: {k: _tiny_tensor(k, s, gen) for k, s in sorted(ss.items())} for c, ss in shapes.items()}


def _tiny_tokenizer_files(folder: Path) -> None:
    """A word-level tokenizer with T5's special ids (pad 0, eos ``</s>`` 1, unk 2), eos appended to each text."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2} | {w: i + 3 for i, w in enumerate(TINY_WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    special = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 512, **special}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")


def tiny_wan_base(seed: int = 0) -> dict:
    """The four base components at tiny sizes with seeded random weights, on the CPU, in float32: VAE base width 8
    (16 latent channels); umT5 width 32, 2 layers, 2 heads, 81 tokens (78 words, pad, eos, unk); CLIP ViT width 32,
    3 layers, 2 heads, at 224 × 224 with 14-pixel patches. The real code paths; the features are noise."""
    import tempfile

    states = _tiny_states(seed)
    where = Path(f"<tiny Wan 2.1 base, seed {seed}>")
    with tempfile.TemporaryDirectory() as tmp:
        _tiny_tokenizer_files(Path(tmp))
        tokenizer = load_umt5_tokenizer(tmp)
    return {
        "vae": _vae_from_official(states["vae"], where),
        "text_encoder": _umt5_from_official(states["text_encoder"], where),
        "tokenizer": tokenizer,
        "image_encoder": _clip_from_official(states["image_encoder"], where),
    }


def save_tiny_wan_base(folder, seed: int = 0) -> Path:
    """Write :func:`tiny_wan_base`'s components in the official layout (official file and tensor names)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    states = _tiny_states(seed)
    for name, state in states.items():
        torch.save(state, folder / WAN_BASE_FILES[name])
    _tiny_tokenizer_files(folder / UMT5_TOKENIZER_DIR)
    return folder
