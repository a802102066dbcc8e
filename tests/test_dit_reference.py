"""MV-DiT-7B against an independent float64 re-computation of SPEC §4, written here from the state dict alone.

Nothing here imports the library's model code to build the reference: it is plain torch (matmuls, an explicit
softmax attention, hand-written LayerNorm, GELU, SiLU, sinusoidal and rotary embeddings). Checkpoints are built
with seeded random weights in the official `MV-DiT/CogVideoX` folder layout (the authors' `config.json`, sharded
safetensors with an index, or a single `.bin`): full width (48 heads x 64) with two blocks, and a tiny one.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, report, sample_dir

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

MANIFEST = ROOT.parent / "shared" / "reference" / "mvdit7b_state_dict.json"
FULL_SIZE_VALUES = 7_157_411_904
HEADING = "MV-DiT-7B against the float64 reference"
HEAD_DIM = 64
JOINTS = 24
ROPE_THETA = 10000.0
#: Frobenius norm of (library - reference) over that of the reference. A float32 model measured 2e-6 (1e-6 to 3e-6
#: over seeds), most of it the float32 rounding of the timestep sinusoid at t = 999 (see `ADALN_BIAS`).
TOLERANCE = 1e-5
#: How much an input must move the output for the test to call it used.
MIN_EFFECT = 1e-2

#: The official `MV-DiT/CogVideoX/config.json`, as the authors wrote it (with 42 layers there).
OFFICIAL_CONFIG = {
    "_class_name": "Transformer7B",
    "_diffusers_version": "0.31.0",
    "activation_fn": "gelu-approximate",
    "attention_bias": True,
    "attention_head_dim": 64,
    "dropout": 0.0,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 32,
    "max_text_seq_length": 226,
    "motion_dim": 168,
    "norm_elementwise_affine": True,
    "norm_eps": 1e-05,
    "num_attention_heads": 48,
    "num_layers": 42,
    "out_channels": 16,
    "patch_size": 2,
    "sample_frames": 49,
    "sample_height": 60,
    "sample_width": 90,
    "spatial_interpolation_scale": 1.875,
    "temporal_compression_ratio": 4,
    "temporal_interpolation_scale": 1.0,
    "text_embed_dim": 4096,
    "time_embed_dim": 512,
    "timestep_activation_fn": "silu",
    "use_rotary_positional_embeddings": True,
}


# --------------------------------------------------------------------------------------------------------------
# Architecture and state-dict layout


@dataclass(frozen=True)
class Arch:
    heads: int  # 48 official; every head is HEAD_DIM wide
    layers: int  # 42 official
    time_embed_dim: int = 512
    text_embed_dim: int = 4096  # only the unused `patch_embed.text_proj` depends on it
    in_channels: int = 32
    out_channels: int = 16
    patch: int = 2
    motion_tokens: int = 312  # rows of `unconditional_motion_token` (49 frames -> 13 latent frames x 24 joints)

    @property
    def width(self) -> int:
        return self.heads * HEAD_DIM

    def config(self) -> dict:
        return OFFICIAL_CONFIG | {
            "num_attention_heads": self.heads,
            "num_layers": self.layers,
            "time_embed_dim": self.time_embed_dim,
            "text_embed_dim": self.text_embed_dim,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "patch_size": self.patch,
        }


OFFICIAL = Arch(heads=48, layers=42)
FULL = replace(OFFICIAL, layers=2)
TINY = Arch(heads=2, layers=1, time_embed_dim=64, text_embed_dim=16)


def layout(a: Arch) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of the official transformer folder, for an architecture of these sizes."""
    d, t, p = a.width, a.time_embed_dim, a.patch
    shapes: dict[str, tuple[int, ...]] = {}

    def linear(name: str, cout: int, cin: int) -> None:
        shapes[f"{name}.weight"] = (cout, cin)
        shapes[f"{name}.bias"] = (cout,)

    def norm(name: str, c: int) -> None:
        shapes[f"{name}.weight"] = (c,)
        shapes[f"{name}.bias"] = (c,)

    def attention(name: str) -> None:
        norm(f"{name}.norm_q", HEAD_DIM)
        norm(f"{name}.norm_k", HEAD_DIM)
        for proj in ("to_q", "to_k", "to_v", "to_out.0"):
            linear(f"{name}.{proj}", d, d)

    shapes["unconditional_motion_token"] = (a.motion_tokens, d)
    shapes["patch_embed.proj.weight"] = (d, a.in_channels, p, p)
    shapes["patch_embed.proj.bias"] = (d,)
    linear("patch_embed.text_proj", d, a.text_embed_dim)
    linear("time_embedding.linear_1", t, d)
    linear("time_embedding.linear_2", t, t)
    for i in range(a.layers):
        block = f"transformer_blocks.{i}"
        attention(f"{block}.attn0")
        linear(f"{block}.norm1.linear", 6 * d, t)
        norm(f"{block}.norm1.norm", d)
        attention(f"{block}.attn1")
        linear(f"{block}.norm2.linear", 6 * d, t)
        norm(f"{block}.norm2.norm", d)
        linear(f"{block}.ff.net.0.proj", 4 * d, d)
        linear(f"{block}.ff.net.2", d, 4 * d)
    norm("norm_final", d)
    linear("norm_out.linear", 2 * d, t)
    norm("norm_out.norm", d)
    linear("proj_out", p * p * a.out_channels, d)
    return shapes


#: Gains over N(0, 1/fan_in) for some matrices, so that every LayerNorm reads inputs of variance ~1e-2 (the
#: residual stream, q and k): there an eps of 1e-5 instead of 1e-6 (or the reverse) moves the output by ~5e-4,
#: fifty times the tolerance, while shift, scale, gate, attention and feed-forward each move it by tens of percent.
WEIGHT_GAINS = {
    "patch_embed.proj.weight": 0.1,
    "attn1.to_q.weight": 0.1,
    "attn1.to_k.weight": 0.1,
    "attn1.to_out.0.weight": 0.3,
    "attn0.to_k.weight": 0.1,
    "attn0.to_out.0.weight": 0.3,
    "ff.net.2.weight": 0.5,
    "norm1.linear.weight": 0.5,
    "norm2.linear.weight": 0.5,
    "norm_out.linear.weight": 0.5,
}
#: The adaptive norms' shift, scale and gate: ~0.3 in all, ~0.1 of it from the timestep. Float32 rounding of the
#: timestep sinusoid (1e-5 of it at t = 999, inherent to float32 arithmetic, and what diffusers computes) reaches
#: the output through that timestep-dependent part only, so keeping it small keeps that rounding well inside the
#: tolerance; the bias keeps the modulation itself large.
ADALN_BIAS = 0.3


def random_state_dict(a: Arch, seed: int) -> dict[str, torch.Tensor]:
    """Seeded float32 weights that keep every part of the model visible in the output.

    Matrices ~ N(0, 1/fan_in) times `WEIGHT_GAINS`; adaptive-norm biases `ADALN_BIAS` N(0, 1), other linear
    biases 0.05 N(0, 1); LayerNorm scales 1 + 0.1 N(0, 1) and biases 0.1 N(0, 1), the per-head q/k norms too,
    except `norm_final`, scaled by 0.1 so that `norm_out.norm` also reads inputs of variance ~1e-2.
    """
    gen = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for name, shape in layout(a).items():
        if name == "unconditional_motion_token":
            sd[name] = torch.randn(shape, generator=gen)
        elif len(shape) > 1:
            gain = next((g for suffix, g in WEIGHT_GAINS.items() if name.endswith(suffix)), 1.0)
            sd[name] = torch.randn(shape, generator=gen) * (gain / math.sqrt(math.prod(shape[1:])))
        elif name.endswith(".linear.bias") and "norm" in name:
            sd[name] = ADALN_BIAS * torch.randn(shape, generator=gen)
        elif re.search(r"norm[^.]*\.weight$", name):
            sd[name] = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        elif re.search(r"norm[^.]*\.bias$", name):
            sd[name] = 0.1 * torch.randn(shape, generator=gen)
        else:  # linear and conv biases
            sd[name] = 0.05 * torch.randn(shape, generator=gen)
    sd["norm_final.weight"] *= 0.1
    sd["norm_final.bias"] *= 0.1
    return sd


# --------------------------------------------------------------------------------------------------------------
# The float64 reference (SPEC §4), written from the state dict


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def silu(x: torch.Tensor) -> torch.Tensor:
    return x / (1.0 + torch.exp(-x))


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def softmax(x: torch.Tensor) -> torch.Tensor:
    e = torch.exp(x - x.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)


def timestep_embedding(timestep: torch.Tensor, width: int) -> torch.Tensor:
    """(B,) -> (B, width): [cos(t f_i), sin(t f_i)] with f_i = exp(-ln(10000) i / (width/2)) (cos first, shift 0)."""
    half = width // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
    args = timestep.to(torch.float64)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def rope_angles(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """(N,) positions -> (N, dim) angles; frequency k = theta^(-2k/dim) drives the two channels 2k and 2k+1."""
    k = torch.arange(dim // 2, dtype=torch.float64)
    freqs = ROPE_THETA ** (-2.0 * k / dim)
    return (positions.to(torch.float64)[:, None] * freqs[None]).repeat_interleave(2, dim=1)


def video_angles(frames: int, rows: int, cols: int) -> torch.Tensor:
    """(frames*rows*cols, 64): 16 channels latent frame, 24 patch row, 24 patch column; tokens (frame, row, col)."""
    f, r, c = torch.meshgrid(torch.arange(frames), torch.arange(rows), torch.arange(cols), indexing="ij")
    return torch.cat([rope_angles(f.flatten(), 16), rope_angles(r.flatten(), 24), rope_angles(c.flatten(), 24)], 1)


def motion_angles(tokens: int, joint_mean_mm: torch.Tensor) -> torch.Tensor:
    """(tokens, 64) "4D RoPE": 16 channels latent frame (token // 24), then 16 each for x, y, z at the joint's
    mean position (token % 24) minus the mean over the 24 joints of that axis, in millimetres."""
    index = torch.arange(tokens)
    centred = joint_mean_mm.to(torch.float64) - joint_mean_mm.to(torch.float64).mean(dim=0)
    joint = index % JOINTS
    return torch.cat(
        [rope_angles(index // JOINTS, 16)] + [rope_angles(centred[joint, axis], 16) for axis in range(3)], dim=1
    )


def rotate(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Interleaved-pair rotary: x cos + rot(x) sin, rot taking each channel pair (a, b) to (-b, a)."""
    rot = torch.stack([-x[..., 1::2], x[..., 0::2]], dim=-1).reshape(x.shape)
    return x * torch.cos(angles) + rot * torch.sin(angles)


class Reference:
    """SPEC §4 in float64 on one state dict; the sizes are read off the state dict's shapes."""

    def __init__(self, sd: dict[str, torch.Tensor]):
        self.p = {k: v.to(torch.float64) for k, v in sd.items()}
        self.width, self.in_channels, self.patch, _ = self.p["patch_embed.proj.weight"].shape
        self.heads = self.width // HEAD_DIM
        self.out_channels = self.p["proj_out.weight"].shape[0] // self.patch**2
        self.layers = len({k.split(".")[1] for k in self.p if k.startswith("transformer_blocks.")})

    def linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return x @ self.p[f"{name}.weight"].T + self.p[f"{name}.bias"]

    def norm(self, x: torch.Tensor, name: str, eps: float) -> torch.Tensor:
        return layer_norm(x, self.p[f"{name}.weight"], self.p[f"{name}.bias"], eps)

    def adaptive_norm(self, x: torch.Tensor, temb: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """LayerNorm then `(1 + scale)`, `+ shift`; returns the gate too (chunks 0, 1, 2 of six)."""
        shift, scale, gate = self.linear(silu(temb), f"{name}.linear").chunk(6, dim=-1)[:3]
        return self.norm(x, f"{name}.norm", 1e-5) * (1.0 + scale[:, None]) + shift[:, None], gate[:, None]

    def attention(
        self, x: torch.Tensor, context: torch.Tensor, name: str, q_angles: torch.Tensor, k_angles: torch.Tensor
    ) -> torch.Tensor:
        def heads(y: torch.Tensor) -> torch.Tensor:  # (B, N, width) -> (B, heads, N, 64)
            return y.reshape(y.shape[0], y.shape[1], self.heads, HEAD_DIM).transpose(1, 2)

        q = heads(self.linear(x, f"{name}.to_q"))
        k = heads(self.linear(context, f"{name}.to_k"))
        v = heads(self.linear(context, f"{name}.to_v"))
        q = rotate(self.norm(q, f"{name}.norm_q", 1e-6), q_angles)
        k = rotate(self.norm(k, f"{name}.norm_k", 1e-6), k_angles)
        weights = softmax(q @ k.transpose(-1, -2) / math.sqrt(HEAD_DIM))
        out = (weights @ v).transpose(1, 2).reshape(x.shape)
        return self.linear(out, f"{name}.to_out.0")

    def __call__(
        self, latents: torch.Tensor, timestep: torch.Tensor, motion: torch.Tensor, joint_mean_mm: torch.Tensor
    ) -> torch.Tensor:
        """(B, F', 32, h, w), (B,), (B, F'*24, width), (24, 3) mm -> (B, F', 16, h, w)."""
        b, frames, c, hh, ww = latents.shape
        p, rows, cols = self.patch, hh // self.patch, ww // self.patch
        x = latents.to(torch.float64).reshape(b, frames, c, rows, p, cols, p)
        x = x.permute(0, 1, 3, 5, 2, 4, 6).reshape(b, frames * rows * cols, c * p * p)  # tokens (frame, row, col)
        x = x @ self.p["patch_embed.proj.weight"].reshape(self.width, -1).T + self.p["patch_embed.proj.bias"]

        temb = timestep_embedding(timestep, self.width)
        temb = self.linear(silu(self.linear(temb, "time_embedding.linear_1")), "time_embedding.linear_2")

        motion = motion.to(torch.float64)
        video = video_angles(frames, rows, cols)
        joints = motion_angles(motion.shape[1], joint_mean_mm)
        for i in range(self.layers):
            block = f"transformer_blocks.{i}"
            h, gate = self.adaptive_norm(x, temb, f"{block}.norm1")
            x = x + gate * self.attention(h, h, f"{block}.attn1", video, video)
            x = x + self.attention(x, motion, f"{block}.attn0", video, joints)
            h, gate = self.adaptive_norm(x, temb, f"{block}.norm2")
            x = x + gate * self.linear(gelu_tanh(self.linear(h, f"{block}.ff.net.0.proj")), f"{block}.ff.net.2")

        x = self.norm(x, "norm_final", 1e-5)
        shift, scale = self.linear(silu(temb), "norm_out.linear").chunk(2, dim=-1)
        x = self.norm(x, "norm_out.norm", 1e-5) * (1.0 + scale[:, None]) + shift[:, None]
        x = self.linear(x, "proj_out")  # 64 outputs ordered (channel, row in patch, column in patch)
        x = x.reshape(b, frames, rows, cols, self.out_channels, p, p).permute(0, 1, 4, 2, 5, 3, 6)
        return x.reshape(b, frames, self.out_channels, hh, ww)


# --------------------------------------------------------------------------------------------------------------
# Fixtures: transformer folders in the official layout


def write_config(folder: Path, a: Arch) -> None:
    (folder / "config.json").write_text(json.dumps(a.config(), indent=2) + "\n")


def write_sharded(folder: Path, sd: dict[str, torch.Tensor], shards: int = 2) -> None:
    """`diffusion_pytorch_model-0000i-of-0000n.safetensors` cut at equal byte counts (mid-block), plus the index."""
    total = sum(v.numel() * v.element_size() for v in sd.values())
    parts: list[dict[str, torch.Tensor]] = [{} for _ in range(shards)]
    written = 0
    for name, value in sd.items():
        parts[min(shards - 1, written * shards // total)][name] = value.contiguous()
        written += value.numel() * value.element_size()
    weight_map = {}
    for i, part in enumerate(parts):
        file = f"diffusion_pytorch_model-{i + 1:05d}-of-{shards:05d}.safetensors"
        safetensors_torch.save_file(part, folder / file, metadata={"format": "pt"})
        weight_map |= dict.fromkeys(part, file)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def official_joint_mean() -> np.ndarray:
    """The official `mean.npy`: (24, 3) float32, millimetres, camera space."""
    folder = sample_dir() if (sample_dir() / "mean.npy").is_file() else ROOT / "mtvcrafter" / "motion" / "data"
    path = folder / "mean.npy"
    assert path.is_file(), f"no official mean.npy at {path}"
    mean = np.load(path)
    assert mean.shape == (JOINTS, 3), f"{path}: shape {mean.shape}, expected (24, 3)"
    return mean.astype(np.float32)


@dataclass
class Inputs:
    latents: torch.Tensor  # (B, F', 32, h, w)
    timestep: torch.Tensor  # (B,) int64
    motion: torch.Tensor  # (B, F'*24, width)
    joint_mean: torch.Tensor  # (24, 3) mm


def make_inputs(a: Arch, seed: int, batch: int = 2, frames: int = 2, height: int = 6, width: int = 8) -> Inputs:
    gen = torch.Generator().manual_seed(seed)
    return Inputs(
        latents=torch.randn(batch, frames, a.in_channels, height, width, generator=gen),
        timestep=torch.tensor([999, 37][:batch], dtype=torch.long),
        motion=torch.randn(batch, frames * JOINTS, a.width, generator=gen),
        joint_mean=torch.from_numpy(official_joint_mean()),
    )


@dataclass
class Built:
    arch: Arch
    folder: Path
    sd: dict[str, torch.Tensor]
    ref: Reference
    inputs: Inputs
    seconds: float


def build(a: Arch, seed: int, folder: Path, sharded: bool) -> Built:
    started = time.perf_counter()
    sd = random_state_dict(a, seed)
    write_config(folder, a)
    if sharded:
        write_sharded(folder, sd)
    else:
        torch.save(sd, folder / "diffusion_pytorch_model.bin")
    return Built(a, folder, sd, Reference(sd), make_inputs(a, seed + 1), time.perf_counter() - started)


def load_library(built: Built):
    from mtvcrafter.dit import MVDiT7BTransformer

    started = time.perf_counter()
    model = MVDiT7BTransformer.from_pretrained(built.folder).eval()
    seconds = time.perf_counter() - started
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    report(
        HEADING, f"{built.arch.layers}-block, {built.arch.heads}-head folder loaded by the library in {seconds:.1f} s"
    )
    return model


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> Built:
    built = build(FULL, 7, tmp_path_factory.mktemp("mvdit7b-full"), sharded=True)
    report(HEADING, f"full-width 2-block folder (sharded safetensors) written in {built.seconds:.1f} s")
    return built


@pytest.fixture(scope="module")
def full_model(full):
    return load_library(full)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Built:
    return build(TINY, 11, tmp_path_factory.mktemp("mvdit7b-tiny"), sharded=False)


@pytest.fixture(autouse=True, scope="module")
def no_grad():
    with torch.no_grad():
        yield


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float(torch.linalg.norm(got.to(torch.float64) - want) / torch.linalg.norm(want))


def run_library(model, x: Inputs) -> torch.Tensor:
    out = model(x.latents.clone(), x.timestep.clone(), x.motion.clone(), x.joint_mean.clone()).sample
    assert out.dtype == torch.float32
    assert out.shape == (*x.latents.shape[:2], 16, *x.latents.shape[3:])
    return out


@dataclass
class Outputs:
    got: torch.Tensor  # library, float32
    want: torch.Tensor  # reference, float64
    seconds: float  # library forward


def outputs(built: Built, model, x: Inputs) -> Outputs:
    started = time.perf_counter()
    got = run_library(model, x)
    seconds = time.perf_counter() - started
    return Outputs(got, built.ref(x.latents, x.timestep, x.motion, x.joint_mean), seconds)


def check(out: Outputs, label: str) -> None:
    err = relative_error(out.got, out.want)
    report(HEADING, f"{label}: relative error {err:.2e} (library forward {out.seconds:.2f} s)")
    assert err < TOLERANCE, f"{label}: ||library - reference|| / ||reference|| = {err:.3g} >= {TOLERANCE}"


def compare(built: Built, model, x: Inputs, label: str) -> Outputs:
    """Library (float32) against the reference (float64) on one input."""
    out = outputs(built, model, x)
    check(out, label)
    return out


@pytest.fixture(scope="module")
def full_base(full, full_model) -> Outputs:
    """Both outputs on the base inputs, shared by the tests that perturb them."""
    return outputs(full, full_model, full.inputs)


# --------------------------------------------------------------------------------------------------------------
# Tests


def test_layout_is_the_manifest():
    shapes = layout(OFFICIAL)
    assert sum(math.prod(s) for s in shapes.values()) == FULL_SIZE_VALUES
    if not MANIFEST.is_file():
        pytest.skip(f"no manifest at {MANIFEST}")
    keys = json.loads(MANIFEST.read_text())["keys"]
    shown = {k: v for k, v in shapes.items() if not k.startswith("transformer_blocks.") or k.split(".")[1] == "0"}
    assert {name: tuple(shape) for name, shape in keys.items()} == shown


def test_reference_building_blocks_agree_with_torch():
    """The hand-written pieces of the reference against torch's own (a check on the reference only)."""
    F = torch.nn.functional
    gen = torch.Generator().manual_seed(0)
    x = 2.0 + torch.randn(3, 5, 64, generator=gen, dtype=torch.float64)
    w, b = torch.randn(64, generator=gen, dtype=torch.float64), torch.randn(64, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(layer_norm(x, w, b, 1e-6), F.layer_norm(x, (64,), w, b, eps=1e-6))
    torch.testing.assert_close(gelu_tanh(x - 2.0), F.gelu(x - 2.0, approximate="tanh"))
    torch.testing.assert_close(silu(x - 2.0), F.silu(x - 2.0))
    q, k, v = (torch.randn(2, 3, 7, 64, generator=gen, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(softmax(q @ k.transpose(-1, -2) / 8.0) @ v, F.scaled_dot_product_attention(q, k, v))

    # The rotation is a complex product per channel pair: (a + ib) e^{i angle}.
    mean = torch.from_numpy(official_joint_mean()).to(torch.float64)
    angles = motion_angles(48, mean)
    rows = torch.randn(48, 64, generator=gen, dtype=torch.float64)
    want = torch.view_as_complex(rows.reshape(48, 32, 2)) * torch.polar(torch.ones(48, 32).double(), angles[:, ::2])
    torch.testing.assert_close(rotate(rows, angles), torch.view_as_real(want).reshape(48, 64))
    assert torch.equal(angles[:, 0::2], angles[:, 1::2])
    assert torch.equal(angles[:24, 0], torch.zeros(24)) and torch.equal(angles[24:, 0], torch.ones(24))
    assert torch.equal(angles[24:, 16:], angles[:24, 16:]), "spatial part must depend on the joint only"
    for axis in range(3):  # channel pair 0 of each spatial band turns at frequency 1: the angle is the position
        torch.testing.assert_close(angles[:24, 16 * (axis + 1)], mean[:, axis] - mean[:, axis].mean())
    video = video_angles(2, 3, 4)
    assert torch.equal(video[:, 0], torch.arange(2).repeat_interleave(12).double())
    assert torch.equal(video[:, 16], torch.arange(3).repeat_interleave(4).repeat(2).double())
    assert torch.equal(video[:, 40], torch.arange(4).repeat(6).double())
    row_one = 4  # frame 0, row 1, column 0
    torch.testing.assert_close(video[row_one, 16:40:2], ROPE_THETA ** (-torch.arange(12, dtype=torch.float64) / 12))
    assert torch.equal(video[row_one, :16], torch.zeros(16)) and torch.equal(video[row_one, 40:], torch.zeros(24))

    t = torch.tensor([0, 1, 37, 999])
    emb = timestep_embedding(t, 3072)
    assert torch.equal(emb[0, :1536], torch.ones(1536)) and torch.equal(emb[0, 1536:], torch.zeros(1536))
    torch.testing.assert_close(emb[1, 1], torch.tensor(math.cos(math.exp(-math.log(10000.0) / 1536)), dtype=emb.dtype))
    embeddings = pytest.importorskip("diffusers.models.embeddings")
    theirs = embeddings.get_timestep_embedding(t, 3072, flip_sin_to_cos=True, downscale_freq_shift=0)
    torch.testing.assert_close(emb, theirs.to(torch.float64), rtol=0, atol=1e-4)  # theirs is float32


def test_full_width_sharded_folder_matches_reference(full, full_model, full_base):
    """Full width (48 heads), 2 blocks, official sharded safetensors layout: the output is the reference's."""
    loaded = full_model.state_dict()
    missing = sorted(set(full.sd) - set(loaded))
    assert not missing, f"loaded model lacks official parameters: {missing[:5]}"
    differ = [k for k, v in full.sd.items() if not torch.equal(loaded[k].to(v.dtype), v)]
    assert not differ, f"parameters not loaded as saved: {differ[:5]}"
    check(full_base, "full width, official mean.npy")


def test_full_width_follows_joint_mean(full, full_model, full_base):
    """A scaled joint mean (the per-axis centring does not cancel it) moves the output, and as the reference says."""
    scaled = compare(
        full, full_model, replace(full.inputs, joint_mean=full.inputs.joint_mean * 1.3), "full width, mean.npy x 1.3"
    )
    assert relative_error(scaled.want, full_base.want) > MIN_EFFECT, "fixture too weak: joint mean barely matters"
    assert relative_error(scaled.got, full_base.want) > MIN_EFFECT


def test_full_width_follows_motion_tokens(full, full_model, full_base):
    """Other motion tokens (the unconditional ones, as motion CFG uses them) move the output as the reference says."""
    x = full.inputs
    tokens = full.sd["unconditional_motion_token"][: x.motion.shape[1]].expand(x.motion.shape[0], -1, -1)
    other = compare(full, full_model, replace(x, motion=tokens.clone()), "full width, unconditional tokens")
    assert relative_error(full_base.got, other.want) > MIN_EFFECT, "the output barely depends on the motion tokens"


def test_tiny_bin_folder_matches_reference(tiny):
    """A single non-sharded `diffusion_pytorch_model.bin`, 2 heads x 64, 1 block, 16-wide unused text input."""
    model = load_library(tiny)
    assert tuple(model.state_dict()["unconditional_motion_token"].shape) == (312, TINY.width)
    base = compare(tiny, model, tiny.inputs, "tiny .bin folder")
    other = replace(tiny.inputs, joint_mean=tiny.inputs.joint_mean * 1.3)
    moved = compare(tiny, model, other, "tiny .bin folder, mean.npy x 1.3")
    assert relative_error(moved.got, base.want) > MIN_EFFECT


def test_missing_key_and_missing_config_are_named(tiny, tmp_path):
    from mtvcrafter.dit import MVDiT7BTransformer

    dropped = "transformer_blocks.0.attn0.to_k.weight"
    damaged = tmp_path / "missing-key"
    damaged.mkdir()
    write_config(damaged, TINY)
    sd = {k: v for k, v in tiny.sd.items() if k != dropped}
    safetensors_torch.save_file(sd, damaged / "diffusion_pytorch_model.safetensors", metadata={"format": "pt"})
    with pytest.raises(Exception, match=re.escape(dropped)):
        MVDiT7BTransformer.from_pretrained(damaged)

    no_config = tmp_path / "no-config"
    no_config.mkdir()
    safetensors_torch.save_file(tiny.sd, no_config / "diffusion_pytorch_model.safetensors", metadata={"format": "pt"})
    with pytest.raises(Exception, match=re.escape("config.json")):
        MVDiT7BTransformer.from_pretrained(no_config)
