"""The Wan 2.1 base loaders (mtvcrafter.dit.wan_base) against the official modules.

The references here are written from wan/modules/t5.py, clip.py and vae.py of github.com/Wan-Video/Wan2.1 with
plain torch ops in float64, and read the official-named state dicts directly; nothing of the conversion code is
used by them. They also make the fixtures: run with an empty ``Params``, a reference creates (seeded, random) each
tensor it asks for, under the official name and with the official shape, so a fixture holds exactly the tensors
the official module has and the loaders must accept it strictly.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from reporting import report
from safetensors.torch import load_file, save_file

from mtvcrafter.dit import ModelFileError
from mtvcrafter.dit import wan_base as wb

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class Params:
    """Official-named tensors for the references; with no state given, missing ones are created (seeded)."""

    def __init__(self, state: dict | None = None, seed: int = 0):
        self.state = {} if state is None else state
        self.create = state is None
        self.gen = torch.Generator().manual_seed(seed)
        self.read: set[str] = set()

    def __call__(self, name: str, shape: tuple, init: str | float = "fan") -> torch.Tensor:
        if name not in self.state:
            assert self.create, f"the state dict has no {name}"
            noise = torch.randn(shape, generator=self.gen)
            if init == "fan":  # matrices and kernels: 1/sqrt(fan-in)
                noise = noise * math.prod(shape[1:]) ** -0.5
            elif init == "one":  # norm scales
                noise = 1 + 0.1 * noise
            else:
                noise = float(init) * noise
            self.state[name] = noise.float()
        tensor = self.state[name]
        assert tuple(tensor.shape) == tuple(shape), f"{name}: {tuple(tensor.shape)} ≠ {shape}"
        self.read.add(name)
        return tensor.double()


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    return ((got.double() - ref).abs().max() / ref.abs().max()).item()


def save(state: dict, path):
    torch.save(state, path)
    return path


# ------------------------------------------------------------------ umT5 (wan/modules/t5.py)

T5 = dict(vocab=50, dim=32, dim_attn=32, dim_ffn=48, heads=2, layers=3, buckets=32)


def t5_buckets(rel: torch.Tensor, num_buckets: int, max_dist: int = 128) -> torch.Tensor:
    """T5RelativeEmbedding._relative_position_bucket, bidirectional; the log in float32 as the official
    (the integer buckets then round the same way at their boundaries)."""
    half = num_buckets // 2
    buckets = (rel > 0).long() * half
    rel = rel.abs()
    max_exact = half // 2
    large = (
        max_exact + (torch.log(rel.float() / max_exact) / math.log(max_dist / max_exact) * (half - max_exact)).long()
    )
    large = torch.minimum(large, torch.full_like(large, half - 1))
    return buckets + torch.where(rel < max_exact, rel, large)


def t5_reference(p: Params, ids, mask, c=T5, shared_bias=False, swapped_ffn=False) -> torch.Tensor:
    """T5Encoder.forward (shared_pos=False): RMS norms (eps 1e-6), no attention scaling, one relative-position
    bias table per block, FFN fc1(x) * gelu_tanh(gate(x)). ``shared_bias`` / ``swapped_ffn``: misreadings."""
    d, n = c["dim"], c["heads"]
    hd = c["dim_attn"] // n

    def rms(x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))

    def gelu_tanh(x):
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))

    x = p("token_embedding.weight", (c["vocab"], d), 1.0)[ids]
    b, length = ids.shape
    positions = torch.arange(length)
    buckets = t5_buckets(positions[None, :] - positions[:, None], c["buckets"])  # key - query
    for i in range(c["layers"]):
        pre = f"blocks.{i}."
        h = rms(x, p(pre + "norm1.weight", (d,), "one"))
        q, k, v = (h @ p(f"{pre}attn.{m}.weight", (c["dim_attn"], d)).T for m in "qkv")
        q, k, v = (t.view(b, length, n, hd) for t in (q, k, v))
        table = p(f"blocks.{0 if shared_bias else i}.pos_embedding.embedding.weight", (c["buckets"], n), 0.5)
        logits = torch.einsum("binc,bjnc->bnij", q, k) + table[buckets].permute(2, 0, 1)[None]
        logits = logits.masked_fill(mask[:, None, None, :] == 0, -torch.inf)
        att = torch.einsum("bnij,bjnc->binc", logits.softmax(-1), v).reshape(b, length, -1)
        x = x + att @ p(pre + "attn.o.weight", (d, c["dim_attn"])).T
        h = rms(x, p(pre + "norm2.weight", (d,), "one"))
        gate = h @ p(pre + "ffn.gate.0.weight", (c["dim_ffn"], d)).T
        fc1 = h @ p(pre + "ffn.fc1.weight", (c["dim_ffn"], d)).T
        if swapped_ffn:
            gate, fc1 = fc1, gate
        x = x + (fc1 * gelu_tanh(gate)) @ p(pre + "ffn.fc2.weight", (d, c["dim_ffn"])).T
    return rms(x, p("norm.weight", (d,), "one"))


@pytest.fixture(scope="module")
def t5_inputs():
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(3, T5["vocab"], (2, 40), generator=gen)  # distances up to 39: exact and log buckets
    mask = torch.ones(2, 40, dtype=torch.long)
    mask[1, 25:] = 0
    ids[1, 25:] = 0
    return ids, mask


@pytest.fixture(scope="module")
def t5_state(t5_inputs):
    p = Params(seed=2)
    t5_reference(p, *t5_inputs)
    return p.state


def test_umt5_matches_the_official_encoder(t5_state, t5_inputs, tmp_path):
    model = wb.load_umt5_encoder(save(t5_state, tmp_path / wb.UMT5_FILE))
    assert (model.config.num_heads, model.config.d_kv, model.config.num_layers) == (2, 16, 3)
    with torch.no_grad():
        got = model(input_ids=t5_inputs[0], attention_mask=t5_inputs[1]).last_hidden_state
    p = Params(t5_state)
    ref = t5_reference(p, *t5_inputs)
    assert p.read == set(t5_state)
    assert got.dtype == torch.float32 and rel_err(got, ref) < 1e-5
    report("Wan 2.1 base", f"umT5 (float32) vs the official in float64: relative error {rel_err(got, ref):.1e}")
    # the padded sequence's real tokens do not see the padding
    with torch.no_grad():
        alone = model(input_ids=t5_inputs[0][1:, :25]).last_hidden_state
    assert rel_err(alone[0], ref[1, :25]) < 1e-5
    # plausible misreadings are caught by the same tolerance
    assert rel_err(got, t5_reference(Params(t5_state), *t5_inputs, shared_bias=True)) > 1e-3
    assert rel_err(got, t5_reference(Params(t5_state), *t5_inputs, swapped_ffn=True)) > 1e-3


# ------------------------------------------------------------------ CLIP ViT (wan/modules/clip.py)

VIT = dict(width=32, layers=3, heads=2, mlp=128, patch=14, grid=16, out_dim=24)


def clip_reference(p: Params, images, c=VIT, crop=False, last_block=False) -> torch.Tensor:
    """CLIPModel.visual: bicubic squash of the [-1, 1] images to 224², then x * 0.5 + 0.5 and the CLIP mean/std;
    VisionTransformer.forward(use_31_block=True): patch conv without bias, class token, positions, pre-norm,
    pre-norm blocks with exact GELU, all blocks but the last. ``crop`` / ``last_block``: misreadings."""
    w, n, size = c["width"], c["heads"], c["patch"] * c["grid"]
    x = images.float()  # the official resizes float32 images (float64 bicubic differs by ~1e-5), then float64
    if crop:  # resize the short side and centre-crop, as CLIPImageProcessor does
        h0, w0 = x.shape[-2:]
        scale = size / min(h0, w0)
        x = F.interpolate(x, size=(round(h0 * scale), round(w0 * scale)), mode="bicubic", align_corners=False)
        top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
        x = x[..., top : top + size, left : left + size]
    else:
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
    x = x.double()
    x = (x * 0.5 + 0.5 - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)

    def ln(x, name):
        return F.layer_norm(x, (w,), p(name + ".weight", (w,), "one"), p(name + ".bias", (w,), 0.05), 1e-5)

    def linear(x, name, cin, cout):
        return x @ p(name + ".weight", (cout, cin)).T + p(name + ".bias", (cout,), 0.05)

    x = F.conv2d(x, p("visual.patch_embedding.weight", (w, 3, c["patch"], c["patch"])), stride=c["patch"])
    x = x.flatten(2).transpose(1, 2)
    cls = p("visual.cls_embedding", (1, 1, w), w**-0.5).expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], 1) + p("visual.pos_embedding", (1, c["grid"] ** 2 + 1, w), w**-0.5)
    x = ln(x, "visual.pre_norm")
    b, s, _ = x.shape
    for i in range(c["layers"] - (0 if last_block else 1)):
        pre = f"visual.transformer.{i}."
        q, k, v = linear(ln(x, pre + "norm1"), pre + "attn.to_qkv", w, 3 * w).view(b, s, 3, n, w // n).unbind(2)
        att = torch.einsum("binc,bjnc->bnij", q, k) / math.sqrt(w // n)
        x = x + linear(torch.einsum("bnij,bjnc->binc", att.softmax(-1), v).reshape(b, s, w), pre + "attn.proj", w, w)
        x = x + linear(F.gelu(linear(ln(x, pre + "norm2"), pre + "mlp.0", w, c["mlp"])), pre + "mlp.2", c["mlp"], w)
    if p.create:  # in the official module, unused by the features
        ln(x, "visual.post_norm")
        p("visual.head", (w, c["out_dim"]), w**-0.5)
    return x


@pytest.fixture(scope="module")
def clip_images():
    return torch.rand(2, 3, 96, 64, generator=torch.Generator().manual_seed(3)) * 2 - 1  # portrait, not square


@pytest.fixture(scope="module")
def clip_state(clip_images):
    p = Params(seed=4)
    clip_reference(p, clip_images, last_block=True)  # every block, the last one too
    return p.state


def test_clip_matches_the_official_image_features(clip_state, clip_images, tmp_path):
    textual = {"textual.token_embedding.weight": torch.zeros(5, 4), "log_scale": torch.tensor(2.6)}
    model = wb.load_clip_vision(save(clip_state | textual, tmp_path / wb.CLIP_FILE))
    cfg = model.config
    assert (cfg.num_attention_heads, cfg.image_size, cfg.patch_size, cfg.hidden_act) == (2, 224, 14, "gelu")
    got = wb.clip_image_features(model, clip_images)
    p = Params(clip_state)
    ref = clip_reference(p, clip_images)
    assert got.shape == (2, 257, 32) and rel_err(got, ref) < 1e-5
    report(
        "Wan 2.1 base", f"CLIP features (float32) vs the official in float64: relative error {rel_err(got, ref):.1e}"
    )
    assert rel_err(got, clip_reference(p, clip_images, crop=True)) > 1e-3
    assert rel_err(got, clip_reference(p, clip_images, last_block=True)) > 1e-3
    # the projection: the official head (width × out) is the transposed weight
    assert torch.equal(model.visual_projection.weight, clip_state["visual.head"].t())


# ------------------------------------------------------------------ VAE (wan/modules/vae.py)

VAE_DIM, VAE_Z = 8, 16


def vae_reference(p: Params, x: torch.Tensor, decode: bool = False) -> torch.Tensor:
    """WanVAE_ with scale (0, 1): ``encode`` gives mu (raw, before the latents' mean/std), ``decode`` the clamped
    video. The official code runs the encoder on chunks of 1, 4, 4, … frames and the decoder on one latent frame
    at a time, with a cache of the last two frames per causal conv; for those chunks that is the same as
    here, on the whole clip at once: causal 3-D convs pad two zero frames in front; a temporal down-sampling
    (downsample3d's time_conv, stride 2, no padding) leaves frame 0 as it is and convolves the frames from 0 on;
    a temporal up-sampling (upsample3d's time_conv, causal, 2C channels interleaved into two frames) leaves
    frame 0 as it is and doubles frames 1, 2, …. RMS_norm is F.normalize over channels × sqrt(C) × gamma;
    attention is per frame with one head; dims follow dim_mult 1, 2, 4, 4 with two (encoder) or three
    (decoder) residual blocks per level."""

    def conv3d(x, name, cin, cout, k=3, stride=(1, 1, 1), causal=True):
        kt, kh, kw = (k, k, k) if isinstance(k, int) else k
        weight = p(name + ".weight", (cout, cin, kt, kh, kw))
        if causal:
            x = F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2, kt - 1, 0))
        return F.conv3d(x, weight, p(name + ".bias", (cout,), 0.05), stride=stride)

    def frames(x, fn):  # a 2-D op on every frame
        b, _, t = x.shape[:3]
        y = fn(x.transpose(1, 2).flatten(0, 1))
        return y.unflatten(0, (b, t)).transpose(1, 2)

    def rms(x, name, shape):
        gamma = p(name, shape, "one")
        return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12) * x.shape[1] ** 0.5 * gamma

    def res(x, name, cin, cout):
        short = conv3d(x, name + ".shortcut", cin, cout, 1) if cin != cout else x
        h = conv3d(F.silu(rms(x, name + ".residual.0.gamma", (cin, 1, 1, 1))), name + ".residual.2", cin, cout)
        h = conv3d(F.silu(rms(h, name + ".residual.3.gamma", (cout, 1, 1, 1))), name + ".residual.6", cout, cout)
        return h + short

    def attention(x, name, c):
        def per_frame(f):
            n, _, h, w = f.shape
            y = rms(f, name + ".norm.gamma", (c, 1, 1))
            qkv = F.conv2d(y, p(name + ".to_qkv.weight", (3 * c, c, 1, 1)), p(name + ".to_qkv.bias", (3 * c,), 0.05))
            q, k, v = qkv.reshape(n, 3 * c, h * w).transpose(1, 2).chunk(3, dim=-1)
            y = ((q @ k.transpose(1, 2)) / math.sqrt(c)).softmax(-1) @ v
            y = y.transpose(1, 2).reshape(n, c, h, w)
            return f + F.conv2d(y, p(name + ".proj.weight", (c, c, 1, 1)), p(name + ".proj.bias", (c,), 0.05))

        return frames(x, per_frame)

    def middle(x, name, c):
        return res(attention(res(x, name + ".0", c, c), name + ".1", c), name + ".2", c, c)

    def down(x, name, c, temporal):
        def spatial(f):
            f = F.pad(f, (0, 1, 0, 1))
            return F.conv2d(
                f, p(name + ".resample.1.weight", (c, c, 3, 3)), p(name + ".resample.1.bias", (c,), 0.05), stride=2
            )

        x = frames(x, spatial)
        if temporal and x.shape[2] > 1:
            rest = conv3d(x, name + ".time_conv", c, c, (3, 1, 1), stride=(2, 1, 1), causal=False)
            x = torch.cat([x[:, :, :1], rest], 2)
        return x

    def up(x, name, c, temporal):
        if temporal and x.shape[2] > 1:
            y = conv3d(x[:, :, 1:], name + ".time_conv", c, 2 * c, (3, 1, 1))  # (B, 2C, T - 1, H, W)
            y = torch.stack([y[:, :c], y[:, c:]], 3).flatten(2, 3)  # frame t → frames 2t, 2t + 1
            x = torch.cat([x[:, :, :1], y], 2)

        def spatial(f):
            f = f.repeat_interleave(2, -1).repeat_interleave(2, -2)  # nearest(-exact), × 2
            w, b = p(name + ".resample.1.weight", (c // 2, c, 3, 3)), p(name + ".resample.1.bias", (c // 2,), 0.05)
            return F.conv2d(f, w, b, padding=1)

        return frames(x, spatial)

    d = VAE_DIM
    if not decode:
        dims = [d, d, 2 * d, 4 * d, 4 * d]
        x = conv3d(x.double(), "encoder.conv1", 3, d)
        i = 0
        for level in range(4):
            cin, cout = dims[level], dims[level + 1]
            for _ in range(2):
                x, cin, i = res(x, f"encoder.downsamples.{i}", cin, cout), cout, i + 1
            if level < 3:
                x, i = down(x, f"encoder.downsamples.{i}", cout, temporal=level > 0), i + 1
        x = middle(x, "encoder.middle", dims[-1])
        x = conv3d(F.silu(rms(x, "encoder.head.0.gamma", (dims[-1], 1, 1, 1))), "encoder.head.2", dims[-1], 2 * VAE_Z)
        return conv3d(x, "conv1", 2 * VAE_Z, 2 * VAE_Z, 1)[:, :VAE_Z]
    dims = [4 * d, 4 * d, 4 * d, 2 * d, d]
    x = conv3d(conv3d(x.double(), "conv2", VAE_Z, VAE_Z, 1), "decoder.conv1", VAE_Z, dims[0])
    x = middle(x, "decoder.middle", dims[0])
    i = 0
    for level in range(4):
        cin, cout = dims[level] // (2 if level else 1), dims[level + 1]
        for _ in range(3):
            x, cin, i = res(x, f"decoder.upsamples.{i}", cin, cout), cout, i + 1
        if level < 3:
            x, i = up(x, f"decoder.upsamples.{i}", cout, temporal=level < 2), i + 1
    x = conv3d(F.silu(rms(x, "decoder.head.0.gamma", (dims[-1], 1, 1, 1))), "decoder.head.2", dims[-1], 3)
    return x.clamp(-1, 1)


@pytest.fixture(scope="module")
def vae_clip():
    return torch.rand(1, 3, 9, 32, 32, generator=torch.Generator().manual_seed(5)) * 2 - 1


@pytest.fixture(scope="module")
def vae_latents():
    return torch.randn(1, VAE_Z, 3, 4, 4, generator=torch.Generator().manual_seed(6))


@pytest.fixture(scope="module")
def vae_state(vae_clip, vae_latents):
    p = Params(seed=7)
    vae_reference(p, vae_clip)  # more than one frame: the temporal down-sampling convs are used
    vae_reference(p, vae_latents, decode=True)  # more than one latent frame: the temporal up-sampling convs too
    return p.state


@pytest.fixture(scope="module")
def vae(vae_state, tmp_path_factory):
    return wb.load_wan_vae(save(vae_state, tmp_path_factory.mktemp("vae") / wb.WAN_VAE_FILE))


def test_vae_consumes_every_official_tensor(vae, vae_state):
    """The loader is strict (any name or shape off is refused, see below); here: the diffusers model holds
    exactly the official tensors, each once, unchanged."""
    assert (vae.config.base_dim, vae.config.z_dim) == (VAE_DIM, VAE_Z)

    def contents(state):
        return Counter((tuple(t.shape), t.detach().contiguous().numpy().tobytes()) for t in state.values())

    assert contents(vae.state_dict()) == contents(vae_state)


@pytest.mark.parametrize("frames", [1, 5, 9])
def test_vae_encode_matches_the_official(vae, vae_state, vae_clip, frames):
    """The mean of the latent distribution of 1, 5 and 9 frames of 32 × 32 (one, two and three encoder chunks)."""
    video = vae_clip[:, :, :frames]
    with torch.no_grad():
        got = vae.encode(video).latent_dist.mean
    p = Params(vae_state)
    ref = vae_reference(p, video)
    assert got.shape == (1, VAE_Z, 1 + (frames - 1) // 4, 4, 4)
    assert rel_err(got, ref) < 1e-4
    report("Wan 2.1 base", f"VAE encode, {frames} frames, vs the official in float64: {rel_err(got, ref):.1e}")
    if frames > 1:
        encoder_keys = {k for k in vae_state if k.startswith(("encoder.", "conv1."))}
        assert p.read == encoder_keys


@pytest.mark.parametrize("latent_frames", [1, 2, 3])
def test_vae_decode_matches_the_official(vae, vae_state, vae_latents, latent_frames):
    """The decoded (clamped) video of 1, 2 and 3 latent frames of 4 × 4: 1, 5 and 9 frames of 32 × 32."""
    z = vae_latents[:, :, :latent_frames]
    with torch.no_grad():
        got = vae.decode(z).sample
    p = Params(vae_state)
    ref = vae_reference(p, z, decode=True)
    assert got.shape == (1, 3, 1 + 4 * (latent_frames - 1), 32, 32)
    assert (ref.abs() < 1).double().mean() > 0.5  # mostly inside the clamp: the comparison means something
    assert rel_err(got, ref) < 1e-4
    report("Wan 2.1 base", f"VAE decode, {latent_frames} latent frames, vs the official: {rel_err(got, ref):.1e}")
    if latent_frames > 1:
        assert p.read == {k for k in vae_state if k.startswith(("decoder.", "conv2."))}


# ------------------------------------------------------------------ errors


class Payload:
    """Not a tensor: refused by safe loading."""


def test_missing_files_are_named_with_their_repository(tmp_path):
    with pytest.raises(ModelFileError) as err:
        wb.load_umt5_encoder(tmp_path / "nothing.pth")
    assert wb.UMT5_FILE in str(err.value) and "Wan-AI/Wan2.1-I2V-14B-480P" in str(err.value)
    with pytest.raises(ModelFileError) as err:
        wb.load_wan_base(tmp_path)
    message = str(err.value)
    for name in (wb.WAN_VAE_FILE, wb.UMT5_FILE, wb.CLIP_FILE, wb.UMT5_TOKENIZER_DIR):
        assert name in message
    assert "Wan-AI/Wan2.1-I2V-14B-480P" in message and "-Diffusers" in message and "\n" not in message
    assert not wb.is_wan_base(tmp_path) and not wb.is_wan_base(tmp_path / "absent")
    with pytest.raises(ModelFileError, match="tokenizer"):
        wb.load_umt5_tokenizer(tmp_path)


def test_unsafe_pickles_are_refused(tmp_path):
    path = save({"blocks.0.norm1.weight": Payload()}, tmp_path / wb.UMT5_FILE)
    with pytest.raises(ModelFileError, match="trust_checkpoint") as err:
        wb.load_umt5_encoder(path)
    assert "\n" not in str(err.value)
    with pytest.raises(ModelFileError, match="not a tensor"):
        wb.load_umt5_encoder(path, trust_checkpoint=True)


def test_wrong_tensor_sets_are_listed(t5_state, clip_state, vae_state, tmp_path):
    state = dict(t5_state)
    del state["blocks.1.ffn.fc1.weight"]
    state["blocks.1.ffn.fc3.weight"] = torch.zeros(1)
    with pytest.raises(
        ModelFileError, match=r"missing \(blocks\.1\.ffn\.fc1\.weight\).*unexpected \(blocks\.1\.ffn\.fc3"
    ):
        wb.load_umt5_encoder(save(state, tmp_path / "t5.pth"))
    state = dict(vae_state)
    del state["decoder.upsamples.3.time_conv.weight"]
    state["encoder.extra.weight"] = torch.zeros(1)
    with pytest.raises(ModelFileError) as err:
        wb.load_wan_vae(save(state, tmp_path / "vae.pth"))
    assert "decoder.upsamples.3.time_conv.weight" in str(err.value) and "encoder.extra.weight" in str(err.value)
    state = dict(clip_state)
    state["visual.transformer.0.mlp.2.bias"] = torch.zeros(7)
    with pytest.raises(ModelFileError, match=r"wrong shape \(visual\.transformer\.0\.mlp\.2\.bias \(7,\)"):
        wb.load_clip_vision(save(state, tmp_path / "clip.pth"))


def test_real_sizes_give_the_official_configurations():
    """The configurations read from the shapes of the real files (meta tensors: nothing allocated)."""

    def meta(shapes):
        return {k: torch.empty(s, device="meta") for k, s in shapes.items()}

    t5 = wb._umt5_from_official(meta(wb._umt5_shapes(256384, 4096, 4096, 10240, 64, 24, 32)), wb.Path("t5"))
    official = dict(d_model=4096, d_ff=10240, num_layers=24, num_heads=64, d_kv=64, vocab_size=256384)
    official |= dict(relative_attention_num_buckets=32, relative_attention_max_distance=128, layer_norm_epsilon=1e-6)
    official |= dict(dense_act_fn="gelu_new", is_gated_act=True)
    assert {k: getattr(t5.config, k) for k in official} == official
    assert round(sum(p.numel() for p in t5.parameters()) / 1e9, 1) == 5.7
    clip = wb._clip_from_official(meta(wb._clip_shapes(1280, 32, 5120, 14, 257, 1024)), wb.Path("clip"))
    official = dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, intermediate_size=5120)
    official |= dict(patch_size=14, image_size=224, projection_dim=1024, hidden_act="gelu", layer_norm_eps=1e-5)
    assert {k: getattr(clip.config, k) for k in official} == official
    assert round(sum(p.numel() for p in clip.parameters()) / 1e9, 2) == 0.63
    vae = wb._vae_from_official(meta(wb._vae_shapes(96, 16)), wb.Path("vae"))
    assert vae.config.base_dim == 96 and round(sum(p.numel() for p in vae.parameters()) / 1e6) == 127


# ------------------------------------------------------------------ the whole base, both layouts


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def tiny():
    start = time.perf_counter()
    base = wb.tiny_wan_base(seed=0)
    report("Wan 2.1 base", f"tiny_wan_base: {time.perf_counter() - start:.2f} s")
    return base


def test_saved_tiny_base_loads_back(tiny, tmp_path):
    folder = wb.save_tiny_wan_base(tmp_path / "wan2.1", seed=0)
    assert sorted(p.name for p in folder.iterdir()) == sorted([wb.WAN_VAE_FILE, wb.UMT5_FILE, wb.CLIP_FILE, "google"])
    assert wb.is_wan_base(folder)
    wb.check_wan_base(folder)
    loaded = wb.load_wan_base(folder)
    for name in ("vae", "text_encoder", "image_encoder"):
        assert_same_weights(loaded[name], tiny[name])
    assert loaded["text_encoder"].shared is loaded["text_encoder"].encoder.embed_tokens
    other = wb.tiny_wan_base(seed=1)
    assert not torch.equal(other["text_encoder"].shared.weight, tiny["text_encoder"].shared.weight)
    half = wb.load_wan_base(folder, torch_dtype=torch.bfloat16)
    assert {next(half[n].parameters()).dtype for n in ("vae", "text_encoder", "image_encoder")} == {torch.bfloat16}


def test_encode_text_zero_pads_after_each_prompt(tiny):
    tokenizer, encoder = tiny["tokenizer"], tiny["text_encoder"]
    prompts = ["a person walks", "A  dancer spins slowly on the   stage and waves"]
    ids = [tokenizer(p).input_ids for p in prompts]
    assert [i[-1] for i in ids] == [1, 1] and (tokenizer.pad_token_id, tokenizer.unk_token_id) == (0, 2)
    features = wb.encode_text(tokenizer, encoder, prompts)
    assert features.shape == (2, 512, 32)
    for row, tokens in zip(features, ids, strict=True):
        n = len(tokens)
        assert row[n:].abs().max() == 0 and row[:n].abs().min(dim=-1).values.gt(0).all()
        with torch.no_grad():
            alone = encoder(input_ids=torch.tensor([tokens])).last_hidden_state[0]
        assert rel_err(row[:n], alone.double()) < 1e-5
    assert len(ids[1]) > len(ids[0])


def test_diffusers_layout_loads(tiny, tmp_path):
    folder = tmp_path / "Wan2.1-I2V-14B-480P-Diffusers"
    for name in ("vae", "text_encoder", "tokenizer", "image_encoder"):
        tiny[name].save_pretrained(folder / name)
    index = {
        "_class_name": "WanImageToVideoPipeline",
        "vae": ["diffusers", "AutoencoderKLWan"],
        "text_encoder": ["transformers", "UMT5EncoderModel"],
        "tokenizer": ["transformers", "T5TokenizerFast"],
        "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
    }
    (folder / "model_index.json").write_text(json.dumps(index))
    assert wb.is_wan_base(folder)
    loaded = wb.load_wan_base(folder)
    for name in ("vae", "text_encoder", "image_encoder"):
        assert type(loaded[name]) is type(tiny[name])
        assert_same_weights(loaded[name], tiny[name])
    images = torch.rand(1, 3, 40, 60) * 2 - 1
    assert torch.equal(
        wb.clip_image_features(loaded["image_encoder"], images), wb.clip_image_features(tiny["image_encoder"], images)
    )
    assert loaded["tokenizer"]("a person walks").input_ids == tiny["tokenizer"]("a person walks").input_ids
    # transformers would initialise a missing tensor at random: refused
    weights = folder / "text_encoder" / "model.safetensors"
    state = load_file(weights)
    del state["encoder.block.1.layer.1.DenseReluDense.wo.weight"]
    save_file(state, weights, metadata={"format": "pt"})
    with pytest.raises(ModelFileError, match=r"text_encoder: .*block\.1\.layer\.1\.DenseReluDense\.wo.*Diffusers"):
        wb.load_wan_base(folder)
    (folder / "image_encoder" / "config.json").unlink()
    with pytest.raises(ModelFileError, match="image_encoder.*config.json.*Diffusers"):
        wb.check_wan_base(folder)
