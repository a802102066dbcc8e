"""4DMoT against an independent float64 re-computation of SPEC §3, written here from the state dict alone.

Nothing here imports the library's model code: the reference below is plain torch (conv2d/conv1d only), with
GroupNorm, SiLU, the time pooling, the corners-aligned linear time resize, the chunking and the quantiser written
out by hand. Checkpoints are built with seeded random weights in the official DeepSpeed layout, at full size (the
manifest's shapes) and narrow (every width divided by eight, so long clips stay cheap), and the codebook is built
from encoder outputs of sample motions so that quantisation is non-trivial and free of near-ties.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, report, sample_dir

torch = pytest.importorskip("torch")
F = torch.nn.functional

MANIFEST = ROOT.parent / "shared" / "reference" / "4dmot_state_dict.json"
FULL_SIZE_VALUES = 73_488_899
#: A row's distance gap (second best minus best) over (|row|^2 + |best code|^2) must exceed this, so that float32
#: arithmetic in the library cannot flip a code (float32 rounding is ~1e-7 of that scale; encoder drift ~1e-6).
MIN_MARGIN = 2e-4
HEADING = "4DMoT against the float64 reference"


# --------------------------------------------------------------------------------------------------------------
# Architecture and state-dict layout


@dataclass(frozen=True)
class Arch:
    c1: int  # outer width (128 official)
    c2: int  # inner width (512 official)
    code: int  # code dimension (3072 official)
    codes: int  # codebook rows (8192 official)
    groups: int  # GroupNorm groups (32 official)

    def dilation(self, out_channels: int) -> int:
        return max(1, self.c2 // out_channels - 1)


FULL = Arch(c1=128, c2=512, code=3072, codes=8192, groups=32)
NARROW = Arch(c1=16, c2=64, code=32, codes=64, groups=8)


def layout(a: Arch) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of the official checkpoint's 'module', for an architecture of these widths."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name: str, cout: int, cin: int, k: int) -> None:
        shapes[f"{name}.weight"] = (cout, cin, k, k)
        shapes[f"{name}.bias"] = (cout,)

    def conv1d(name: str, c: int) -> None:
        shapes[f"{name}.weight"] = (c, c, 3)
        shapes[f"{name}.bias"] = (c,)

    def norm(name: str, c: int) -> None:
        shapes[f"{name}.weight"] = (c,)
        shapes[f"{name}.bias"] = (c,)

    def res(name: str, cin: int, cout: int) -> None:
        norm(f"{name}.block.0", cin)
        conv(f"{name}.block.2", cout, cin, 3)
        norm(f"{name}.block.3", cout)
        conv(f"{name}.block.5", cout, cout, 1)
        if cin != cout:
            conv(f"{name}.conv_short", cout, cin, 1)

    conv("encoder.conv_in", a.c1, 3, 3)
    for i in range(3):
        res(f"encoder.resnet1.{i}", a.c1, a.c1)
    conv1d("encoder.downsample1.joint_downsample", a.c1)
    res("encoder.resnet2", a.c1, a.c2)
    for i in range(3):
        res(f"encoder.resnet3.{i}", a.c2, a.c2)
    conv1d("encoder.downsample2.joint_downsample", a.c2)
    conv("encoder.conv_out", a.code, a.c2, 3)
    conv("decoder.conv_in", a.c2, a.code, 3)
    for i in range(3):
        res(f"decoder.resnet1.{i}", a.c2, a.c2)
    conv1d("decoder.upsample1.upsampler", a.c2)
    res("decoder.resnet2", a.c2, a.c1)
    for i in range(3):
        res(f"decoder.resnet3.{i}", a.c1, a.c1)
    conv1d("decoder.upsample2.upsampler", a.c1)
    conv("decoder.conv_out", 3, a.c1, 3)
    shapes["vq.codebook"] = (a.codes, a.code)
    return shapes


def random_state_dict(a: Arch, seed: int) -> dict[str, torch.Tensor]:
    """Seeded float32 weights: convs ~ N(0, 1/fan_in), small biases, GroupNorm scales ~ 1 + noise."""
    gen = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for name, shape in layout(a).items():
        if name == "vq.codebook":
            sd[name] = torch.zeros(shape)  # filled in from encoder outputs later
        elif name.endswith(".weight") and len(shape) > 1:
            fan_in = math.prod(shape[1:])
            sd[name] = torch.randn(shape, generator=gen) / math.sqrt(fan_in)
        elif ".block.0." in name or ".block.3." in name:  # GroupNorm affine
            base = 1.0 if name.endswith(".weight") else 0.0
            sd[name] = base + 0.1 * torch.randn(shape, generator=gen)
        else:  # conv biases
            sd[name] = 0.05 * torch.randn(shape, generator=gen)
    # The last conv reads an unnormalised residual stream; scaled down, the reconstruction moves tens of mm about
    # the mean pose and float32 rounding stays near 1e-4 mm at full size (2.5e-4 measured), well inside 1e-3 mm.
    sd["decoder.conv_out.weight"] *= 0.03
    return sd


# --------------------------------------------------------------------------------------------------------------
# The float64 reference (SPEC §3), written from the state dict


def group_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, t, j = x.shape
    g = x.reshape(n, groups, (c // groups) * t * j)
    mean = g.mean(dim=-1, keepdim=True)
    var = ((g - mean) ** 2).mean(dim=-1, keepdim=True)
    g = (g - mean) / torch.sqrt(var + 1e-6)
    return g.reshape(n, c, t, j) * weight[None, :, None, None] + bias[None, :, None, None]


def silu(x: torch.Tensor) -> torch.Tensor:
    return x / (1.0 + torch.exp(-x))


def conv3x3(x: torch.Tensor, p: dict[str, torch.Tensor], name: str, d: int = 1) -> torch.Tensor:
    return F.conv2d(x, p[f"{name}.weight"], p[f"{name}.bias"], padding=d, dilation=d)


def res_block(x: torch.Tensor, p: dict[str, torch.Tensor], name: str, a: Arch) -> torch.Tensor:
    cin = x.shape[1]
    cout = p[f"{name}.block.2.weight"].shape[0]
    h = silu(group_norm(x, p[f"{name}.block.0.weight"], p[f"{name}.block.0.bias"], a.groups))
    h = conv3x3(h, p, f"{name}.block.2", a.dilation(cout))
    h = silu(group_norm(h, p[f"{name}.block.3.weight"], p[f"{name}.block.3.bias"], a.groups))
    h = F.conv2d(h, p[f"{name}.block.5.weight"], p[f"{name}.block.5.bias"])
    if cin != cout:
        x = F.conv2d(x, p[f"{name}.conv_short.weight"], p[f"{name}.conv_short.bias"])
    else:
        assert f"{name}.conv_short.weight" not in p
    return x + h


def joint_conv(x: torch.Tensor, p: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """Kernel-3, padding-1 1-D conv along the joint axis, each frame on its own."""
    frames = [F.conv1d(x[:, :, f], p[f"{name}.weight"], p[f"{name}.bias"], padding=1) for f in range(x.shape[2])]
    return torch.stack(frames, dim=2)


def time_pool(x: torch.Tensor) -> torch.Tensor:
    """Odd T: first frame kept, the rest averaged in pairs; even T: all averaged in pairs."""
    t = x.shape[2]
    start = t % 2
    frames = [x[:, :, 0]] if start else []
    for k in range((t - start) // 2):
        frames.append((x[:, :, start + 2 * k] + x[:, :, start + 2 * k + 1]) / 2.0)
    return torch.stack(frames, dim=2)


def resize_time(x: torch.Tensor, n_out: int) -> torch.Tensor:
    """Linear resize along frames with corners aligned: output frame i sits at i * (n - 1) / (n_out - 1)."""
    n = x.shape[2]
    frames = []
    for i in range(n_out):
        num, den = i * (n - 1), n_out - 1
        i0 = num // den
        w = (num - i0 * den) / den
        i1 = min(i0 + 1, n - 1)
        frames.append((1.0 - w) * x[:, :, i0] + w * x[:, :, i1])
    return torch.stack(frames, dim=2)


def time_upsample(x: torch.Tensor) -> torch.Tensor:
    t = x.shape[2]
    assert t > 1
    if t % 2:
        return torch.cat([x[:, :, :1], resize_time(x[:, :, 1:], 2 * (t - 1))], dim=2)
    return resize_time(x, 2 * t)


def encoder(x: torch.Tensor, p: dict[str, torch.Tensor], a: Arch) -> torch.Tensor:
    x = conv3x3(x, p, "encoder.conv_in")
    for i in range(3):
        x = res_block(x, p, f"encoder.resnet1.{i}", a)
    x = joint_conv(time_pool(x), p, "encoder.downsample1.joint_downsample")
    x = res_block(x, p, "encoder.resnet2", a)
    for i in range(3):
        x = res_block(x, p, f"encoder.resnet3.{i}", a)
    x = joint_conv(time_pool(x), p, "encoder.downsample2.joint_downsample")
    return conv3x3(x, p, "encoder.conv_out")


def decoder(x: torch.Tensor, p: dict[str, torch.Tensor], a: Arch) -> torch.Tensor:
    x = conv3x3(x, p, "decoder.conv_in")
    for i in range(3):
        x = res_block(x, p, f"decoder.resnet1.{i}", a)
    x = joint_conv(time_upsample(x), p, "decoder.upsample1.upsampler")
    x = res_block(x, p, "decoder.resnet2", a)
    for i in range(3):
        x = res_block(x, p, f"decoder.resnet3.{i}", a)
    x = joint_conv(time_upsample(x), p, "decoder.upsample2.upsampler")
    return conv3x3(x, p, "decoder.conv_out")


def chunks(t: int, size: int) -> list[tuple[int, int]]:
    """[0, size + r), then [size*i + r, size*i + size + r): the official slicing, r = t mod size."""
    r = t % size
    return [(0 if i == 0 else size * i + r, size * i + size + r) for i in range(t // size)]


class Reference:
    """SPEC §3 in float64 on one state dict and one pair of statistics."""

    def __init__(self, sd: dict[str, torch.Tensor], a: Arch, mean: np.ndarray, std: np.ndarray, dtype=torch.float64):
        self.dtype = dtype
        self.p = {k: v.to(dtype) for k, v in sd.items() if k != "vq.codebook"}
        self.a = a
        self.mean = torch.from_numpy(mean).to(dtype)
        self.std = torch.from_numpy(std).to(dtype)

    def latent(self, joints_mm: np.ndarray) -> torch.Tensor:
        """Encoder output as rows in (frame, joint) order: (T' * 24, code)."""
        x = (torch.from_numpy(joints_mm).to(self.dtype) - self.mean) / self.std  # (T, 24, 3)
        x = x.permute(2, 0, 1)[None]  # (1, 3, T, 24)
        outs = [encoder(x[:, :, start:stop], self.p, self.a) for start, stop in chunks(x.shape[2], 8)]
        z = torch.cat(outs, dim=2)[0]  # (code, T', 24)
        return z.permute(1, 2, 0).reshape(-1, z.shape[0])

    def decode(self, codes: np.ndarray, codebook: torch.Tensor) -> np.ndarray:
        t_lat = codes.shape[0]
        q = codebook.to(self.dtype)[torch.from_numpy(codes.reshape(-1))]  # rows in (frame, joint) order
        q = q.reshape(t_lat, 24, -1).permute(2, 0, 1)[None]  # (1, code, T', 24)
        outs = [decoder(q[:, :, start:stop], self.p, self.a) for start, stop in chunks(t_lat, 2)]
        y = torch.cat(outs, dim=2)[0].permute(1, 2, 0)  # (T, 24, 3)
        return (y * self.std + self.mean).numpy()


def nearest(rows: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Index of the nearest codebook row (float64 squared Euclidean distance), its margin, and the runner-up.

    A float64 pre-selection keeps 8 candidates per row (its rounding, ~1e-16 of |x|^2, cannot drop the true
    nearest); their distances are then taken explicitly as sum((x - c)^2) and the argmin picked among them.
    """
    cb = codebook.to(torch.float64)
    approx = (rows**2).sum(1)[:, None] - 2.0 * rows @ cb.T + (cb**2).sum(1)[None]
    cand = approx.topk(min(8, cb.shape[0]), dim=1, largest=False).indices
    exact = ((rows[:, None, :] - cb[cand]) ** 2).sum(-1)
    order = exact.argsort(dim=1)
    best = cand.gather(1, order[:, :1])[:, 0]
    second = cand.gather(1, order[:, 1:2])[:, 0]
    gap = exact.gather(1, order[:, 1:2])[:, 0] - exact.gather(1, order[:, :1])[:, 0]
    margin = gap / ((rows**2).sum(1) + (cb[best] ** 2).sum(1))
    return best, margin, second


# --------------------------------------------------------------------------------------------------------------
# Fixtures: checkpoints in the official layout, with a codebook made of encoder outputs


def stack_clips(motions) -> list[np.ndarray]:
    return [np.ascontiguousarray(m.joints, dtype=np.float32) for m in motions]


def cut_inputs(clips: list[np.ndarray], lengths: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Test inputs, cut from the sample clips (1000 frames: clip 3 then clip 2 reversed, cropped)."""
    cuts = {
        48: clips[4][20:68],
        49: clips[1][100:149],
        97: clips[3][300:397],
        1000: np.concatenate([clips[3], clips[2][::-1]])[100:1100],
    }
    return {t: np.ascontiguousarray(cuts[t]) for t in lengths}


#: Windows (clip, start, stop) whose encoder outputs seed the codebook; none of them is a test input.
SOURCES = ((0, 0, 49), (2, 0, 49), (3, 0, 49), (4, 100, 149), (1, 200, 297))


@dataclass
class Built:
    arch: Arch
    path: Path
    stats: Path | None  # what from_pretrained gets (None: the official statistics)
    sd: dict[str, torch.Tensor]
    ref: Reference
    inputs: dict[int, np.ndarray]
    codes: dict[int, np.ndarray]
    recon: dict[int, np.ndarray]
    margins: dict[int, float]
    seconds: float


def official_stats() -> tuple[np.ndarray, np.ndarray]:
    folder = sample_dir() if (sample_dir() / "mean.npy").is_file() else ROOT / "mtvcrafter" / "motion" / "data"
    return np.load(folder / "mean.npy"), np.load(folder / "std.npy")


@contextmanager
def one_thread():
    """The reference is thousands of small ops; with intra-op threads on a busy two-core machine each op waits for
    a descheduled worker (measured: narrow build 16 s with two threads, 1 s with one). Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build(
    a: Arch, seed: int, clips: list[np.ndarray], lengths: tuple[int, ...], folder: Path, own_stats: bool
) -> Built:
    started = time.perf_counter()
    gen = torch.Generator().manual_seed(seed + 1)
    rng = np.random.default_rng(seed)
    mean, std = official_stats()
    stats = None
    if own_stats:  # statistics of our own, to see that the ones passed in are used
        mean = (mean + rng.normal(0.0, 20.0, mean.shape)).astype(np.float32)
        std = (std * rng.uniform(0.9, 1.1, std.shape)).astype(np.float32)
        stats = folder / "stats"
        stats.mkdir()
        np.save(stats / "mean.npy", mean)
        np.save(stats / "std.npy", std)
    sd = random_state_dict(a, seed)
    ref = Reference(sd, a, mean, std)

    # Codebook: encoder outputs of other windows (plus small noise) at random rows; the rest far-away filler.
    source = torch.cat([ref.latent(clips[c][i:j]) for c, i, j in SOURCES])
    spread = source.std(dim=0)
    picked = source[torch.randperm(source.shape[0], generator=gen)[: a.codes]]
    filler = source.mean(dim=0) + 3.0 * spread * torch.randn(a.codes - picked.shape[0], a.code, generator=gen)
    rows = torch.cat([picked + 1e-2 * spread * torch.randn(picked.shape, generator=gen), filler])
    codebook = rows[torch.randperm(a.codes, generator=gen)].to(torch.float32)

    # No near-ties: wherever a test row sits almost midway between two codes, move its code onto it, and repeat.
    inputs = cut_inputs(clips, lengths)
    latents = {t: ref.latent(x) for t, x in inputs.items()}
    for _ in range(50):
        found = {t: nearest(z, codebook) for t, z in latents.items()}
        weak = [(t, row) for t, (_, margin, _) in found.items() for row in torch.nonzero(margin < MIN_MARGIN)[:, 0]]
        moved: set[int] = set()  # one move per code and round, or two rows would fight over it
        for t, row in weak:
            code = int(found[t][0][row])
            if code not in moved:
                moved.add(code)
                noise = 1e-3 * spread * torch.randn(a.code, generator=gen)
                codebook[code] = (latents[t][row] + noise).to(torch.float32)
        if not weak:
            break
    else:
        raise AssertionError("could not build a codebook free of near-ties")
    sd["vq.codebook"] = codebook

    codes, recon, margins = {}, {}, {}
    for t, (best, margin, _) in found.items():
        codes[t] = best.reshape(-1, 24).numpy().astype(np.int64)
        margins[t] = float(margin.min())
        recon[t] = ref.decode(codes[t], codebook)
    path = folder / "mp_rank_00_model_states.pt"
    torch.save({"module": sd, "ds_version": "0.14.4", "global_steps": 500000}, path)
    seconds = time.perf_counter() - started
    return Built(a, path, stats, sd, ref, inputs, codes, recon, margins, seconds)


@pytest.fixture(scope="module")
def clips(sample_motions) -> list[np.ndarray]:
    return stack_clips(sample_motions)


@pytest.fixture(scope="module")
def full(clips, tmp_path_factory) -> Built:
    with one_thread():
        built = build(FULL, 4, clips, (49, 48), tmp_path_factory.mktemp("4dmot-full"), own_stats=False)
    report(HEADING, f"full-size checkpoint and float64 reference built in {built.seconds:.1f} s")
    return built


@pytest.fixture(scope="module")
def narrow(clips, tmp_path_factory) -> Built:
    with one_thread():
        built = build(NARROW, 8, clips, (49, 48, 97, 1000), tmp_path_factory.mktemp("4dmot-narrow"), own_stats=True)
    report(HEADING, f"narrow checkpoint and float64 reference built in {built.seconds:.1f} s")
    return built


def load_library(built: Built):
    from mtvcrafter.tokenizer import MotionTokenizer

    started = time.perf_counter()
    tok = MotionTokenizer.from_pretrained(built.path, stats=built.stats)
    seconds = time.perf_counter() - started
    report(HEADING, f"{built.arch.codes}-code checkpoint loaded by the library in {seconds:.1f} s")
    return tok


@pytest.fixture(scope="module")
def full_tokenizer(full):
    return load_library(full)


@pytest.fixture(scope="module")
def narrow_tokenizer(narrow):
    return load_library(narrow)


CASES = [("full", 49), ("full", 48), ("narrow", 49), ("narrow", 48), ("narrow", 97), ("narrow", 1000)]
LATENT_FRAMES = {48: 12, 49: 13, 97: 25, 1000: 250}


# --------------------------------------------------------------------------------------------------------------
# Tests


def test_layout_is_the_manifest():
    shapes = layout(FULL)
    assert sum(math.prod(s) for s in shapes.values()) == FULL_SIZE_VALUES
    if not MANIFEST.is_file():
        pytest.skip(f"no manifest at {MANIFEST}")
    keys = json.loads(MANIFEST.read_text())["keys"]
    assert {name: tuple(shape) for name, shape in keys.items()} == shapes


def test_reference_building_blocks_agree_with_torch():
    """The hand-written pieces of the reference against torch's own layers (a check on the reference only)."""
    gen = torch.Generator().manual_seed(0)
    for t in (2, 3, 4, 5, 8, 9):
        x = torch.randn(1, 6, t, 24, generator=gen, dtype=torch.float64)
        if t % 2:
            want = torch.cat([x[:, :, :1], F.avg_pool2d(x[:, :, 1:], (2, 1))], dim=2)
            up = F.interpolate(x[:, :, 1:], scale_factor=(2.0, 1.0), mode="bilinear", align_corners=True)
            up = torch.cat([x[:, :, :1], up], dim=2)
        else:
            want = F.avg_pool2d(x, (2, 1))
            up = F.interpolate(x, scale_factor=(2.0, 1.0), mode="bilinear", align_corners=True)
        torch.testing.assert_close(time_pool(x), want, rtol=0, atol=1e-14)
        torch.testing.assert_close(time_upsample(x), up, rtol=0, atol=1e-14)
    x = 3.0 + torch.randn(2, 16, 5, 24, generator=gen, dtype=torch.float64)
    w, b = torch.randn(16, generator=gen, dtype=torch.float64), torch.randn(16, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(group_norm(x, w, b, 8), F.group_norm(x, 8, w, b, eps=1e-6))
    torch.testing.assert_close(silu(x - 3.0), F.silu(x - 3.0))
    assert [FULL.dilation(c) for c in (128, 512)] == [3, 1] and [NARROW.dilation(c) for c in (16, 64)] == [3, 1]
    assert chunks(49, 8) == [(0, 9)] + [(8 * i + 1, 8 * i + 9) for i in range(1, 6)]
    assert chunks(13, 2) == [(0, 3), (3, 5), (5, 7), (7, 9), (9, 11), (11, 13)]


@pytest.mark.parametrize(("size", "frames"), CASES)
def test_codes_match_reference(size, frames, request):
    built: Built = request.getfixturevalue(size)
    tok = request.getfixturevalue(f"{size}_tokenizer")
    want = built.codes[frames]
    assert want.shape == (LATENT_FRAMES[frames], 24)
    assert len(np.unique(want)) >= 20, "fixture too weak: too few distinct codes"
    assert built.margins[frames] >= MIN_MARGIN, "fixture has near-ties"

    started = time.perf_counter()
    got = tok.encode(built.inputs[frames].copy())
    seconds = time.perf_counter() - started
    assert isinstance(got, np.ndarray) and got.dtype == np.int64 and got.shape == want.shape
    diff = np.argwhere(got != want)
    assert not len(diff), f"{len(diff)} of {want.size} codes differ; first (frame, joint): {diff[:5].tolist()}"
    report(HEADING, f"{size} encode {frames:4d} frames: {len(np.unique(want)):3d} distinct codes, {seconds:.2f} s")


@pytest.mark.parametrize(("size", "frames"), CASES)
def test_reconstruction_matches_reference(size, frames, request):
    built: Built = request.getfixturevalue(size)
    tok = request.getfixturevalue(f"{size}_tokenizer")
    want = built.recon[frames]

    started = time.perf_counter()
    got = tok.decode(built.codes[frames].copy())
    seconds = time.perf_counter() - started
    assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == (frames, 24, 3)
    err = np.abs(got.astype(np.float64) - want)
    worst = np.unravel_index(err.argmax(), err.shape)
    assert err.max() <= 1e-3, f"max |library - reference| = {err.max():.3g} mm at (frame, joint, axis) {worst}"
    report(HEADING, f"{size} decode {frames:4d} frames: max error {err.max():.1e} mm, {seconds:.2f} s")


def damaged_checkpoint(built: Built, folder: Path, drop: tuple[str, ...] = (), add: tuple[str, ...] = ()) -> Path:
    sd = {k: v for k, v in built.sd.items() if k not in drop}
    for name in add:
        sd[name] = torch.zeros(4)
    path = folder / "mp_rank_00_model_states.pt"
    torch.save({"module": sd, "ds_version": "0.14.4", "global_steps": 500000}, path)
    return path


@pytest.mark.parametrize(
    ("drop", "add"),
    [
        (("encoder.resnet3.1.block.2.weight",), ()),
        (("decoder.upsample1.upsampler.bias", "encoder.resnet1.2.block.3.weight"), ()),
        (("vq.codebook",), ()),
        (("encoder.resnet2.conv_short.weight",), ()),
        (("vq.codebook", "decoder.conv_out.bias"), ()),
        ((), ("encoder.attn.to_q.weight",)),
        ((), ("decoder.norm_out.weight", "vq.usage")),
        (("decoder.conv_out.bias",), ("decoder.norm_out.weight",)),
    ],
)
def test_missing_or_extra_keys_are_named(narrow, tmp_path, drop, add):
    from mtvcrafter.tokenizer import MotionTokenizer, TokenizerError

    path = damaged_checkpoint(narrow, tmp_path, drop, add)
    with pytest.raises(TokenizerError) as caught:
        MotionTokenizer.from_pretrained(path, stats=narrow.stats)
    message = str(caught.value)
    for name in drop + add:
        assert name in message, f"{name!r} not named in: {message}"
