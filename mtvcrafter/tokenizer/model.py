"""The 4D motion tokenizer (4DMoT): a VQ-VAE over a grid of frames × joints.

Parameter names and numerics follow the official checkpoint (``4DMoT/mp_rank_00_model_states.pt``).
Shapes: motions go in as normalised joints ``(B, T, 24, 3)``, rearranged channels-first to
``(B, 3, T, 24)``; the encoder halves the frames twice (per chunk, see :meth:`FourDMoT.encode_grid`)
and keeps the joints; every latent cell is quantised to one of ``codebook_size`` codes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .errors import TokenizerError

ENCODER_CHUNK = 8
DECODER_CHUNK = 2


@dataclass(frozen=True)
class TokenizerConfig:
    """Hyperparameters of 4DMoT; the defaults are the official checkpoint's."""

    channels: tuple[int, int] = (128, 512)
    num_res_blocks: int = 3
    codebook_size: int = 8192
    code_dim: int = 3072
    norm_groups: int = 32
    in_channels: int = 3

    def __post_init__(self) -> None:
        channels = tuple(self.channels)
        sizes = (*channels, self.num_res_blocks, self.codebook_size, self.code_dim, self.norm_groups, self.in_channels)
        if len(channels) != 2 or not all(type(v) is int and v > 0 for v in sizes):
            raise TokenizerError(f"configuration sizes must be positive whole numbers (two channel widths): {self}")
        if channels[0] % self.norm_groups or channels[1] % self.norm_groups:
            raise TokenizerError(f"channel widths {channels} must be divisible by norm_groups {self.norm_groups}")

    @classmethod
    def tiny(cls) -> TokenizerConfig:
        """A small configuration (about 356,000 parameters) with the official structure, for tests and CPU demos."""
        return cls(channels=(16, 64), num_res_blocks=3, codebook_size=64, code_dim=32, norm_groups=8)

    def to_json(self) -> str:
        return json.dumps({"model": "4dmot", **asdict(self)}, indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> TokenizerConfig:
        if not isinstance(data, dict):
            raise TokenizerError(f"a tokenizer configuration is a JSON object, got {type(data).__name__}")
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if isinstance(fields.get("channels"), list):
            fields["channels"] = tuple(fields["channels"])
        return cls(**fields)


class ResBlock(nn.Module):
    """GroupNorm → SiLU → dilated 3×3 conv → GroupNorm → SiLU → 1×1 conv, plus a skip path."""

    def __init__(self, in_channels: int, out_channels: int, widest: int, groups: int):
        super().__init__()
        # The official rule: narrow blocks look further (dilation 3 at 128 of 512 channels).
        dilation = max(1, widest // out_channels - 1)
        self.block = nn.Sequential(
            nn.GroupNorm(groups, in_channels, eps=1e-6),
            nn.SiLU(),
            nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation),
            nn.GroupNorm(groups, out_channels, eps=1e-6),
            nn.SiLU(),
            nn.Conv2d(out_channels, out_channels, 1),
        )
        self.conv_short = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.conv_short is None else self.conv_short(x)
        return skip + self.block(x)


def _joint_conv(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """The kernel-3 1-D conv along the joint axis of ``(B, C, T, J)``, applied to every frame."""
    return F.conv2d(x, conv.weight.unsqueeze(2), conv.bias, padding=(0, 1))


class TimeDownsample(nn.Module):
    """Halve the frames (an odd count keeps its first frame), then mix neighbouring joints."""

    def __init__(self, channels: int):
        super().__init__()
        self.joint_downsample = nn.Conv1d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, j = x.shape
        if t % 2:
            rest = x[:, :, 1:].reshape(b, c, (t - 1) // 2, 2, j).mean(dim=3)
            x = torch.cat([x[:, :, :1], rest], dim=2)
        else:
            x = x.reshape(b, c, t // 2, 2, j).mean(dim=3)
        return _joint_conv(x, self.joint_downsample)


class TimeUpsample(nn.Module):
    """Double the frames by linear interpolation with corners aligned (an odd count above one keeps
    its first frame), then mix neighbouring joints."""

    def __init__(self, channels: int):
        super().__init__()
        self.upsampler = nn.Conv1d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, j = x.shape[2], x.shape[3]
        if t % 2 and t > 1:
            rest = F.interpolate(x[:, :, 1:], size=(2 * (t - 1), j), mode="bilinear", align_corners=True)
            x = torch.cat([x[:, :, :1], rest], dim=2)
        else:
            x = F.interpolate(x, size=(2 * t, j), mode="bilinear", align_corners=True)
        return _joint_conv(x, self.upsampler)


class Encoder(nn.Module):
    def __init__(self, config: TokenizerConfig):
        super().__init__()
        narrow, wide = config.channels
        n, g = config.num_res_blocks, config.norm_groups
        self.conv_in = nn.Conv2d(config.in_channels, narrow, 3, padding=1)
        self.resnet1 = nn.Sequential(*[ResBlock(narrow, narrow, wide, g) for _ in range(n)])
        self.downsample1 = TimeDownsample(narrow)
        self.resnet2 = ResBlock(narrow, wide, wide, g)
        self.resnet3 = nn.Sequential(*[ResBlock(wide, wide, wide, g) for _ in range(n)])
        self.downsample2 = TimeDownsample(wide)
        self.conv_out = nn.Conv2d(wide, config.code_dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample1(self.resnet1(self.conv_in(x)))
        x = self.downsample2(self.resnet3(self.resnet2(x)))
        return self.conv_out(x)


class Decoder(nn.Module):
    def __init__(self, config: TokenizerConfig):
        super().__init__()
        narrow, wide = config.channels
        n, g = config.num_res_blocks, config.norm_groups
        self.conv_in = nn.Conv2d(config.code_dim, wide, 3, padding=1)
        self.resnet1 = nn.Sequential(*[ResBlock(wide, wide, wide, g) for _ in range(n)])
        self.upsample1 = TimeUpsample(wide)
        self.resnet2 = ResBlock(wide, narrow, wide, g)
        self.resnet3 = nn.Sequential(*[ResBlock(narrow, narrow, wide, g) for _ in range(n)])
        self.upsample2 = TimeUpsample(narrow)
        self.conv_out = nn.Conv2d(narrow, config.in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.upsample1(self.resnet1(self.conv_in(x)))
        x = self.upsample2(self.resnet3(self.resnet2(x)))
        return self.conv_out(x)


class Quantizer(nn.Module):
    """Nearest-codebook-row quantisation by Euclidean distance."""

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.codebook = nn.Parameter(torch.empty(config.codebook_size, config.code_dim).normal_())

    def nearest(self, rows: torch.Tensor) -> torch.Tensor:
        """Index of the nearest codebook row for each of ``rows (N, D)``.

        Distances are always computed in float32: in bf16 a quarter of the choices would change.
        """
        rows = rows.detach().float()
        codebook = self.codebook.detach().float()
        # |r - c|^2 = |r|^2 - 2 r·c + |c|^2; |r|^2 does not change the argmin.
        distances = (codebook * codebook).sum(dim=1) - 2.0 * rows @ codebook.T
        return distances.argmin(dim=1)


def chunk_bounds(num_frames: int, chunk: int) -> list[tuple[int, int]]:
    """The official chunks: the first takes ``chunk + num_frames % chunk`` frames, the rest ``chunk``."""
    first = chunk + num_frames % chunk
    if num_frames < chunk:
        return []
    return [(0, first)] + [(s, s + chunk) for s in range(first, num_frames, chunk)]


def _run_chunked(module: nn.Module, grid: torch.Tensor, chunk: int) -> torch.Tensor:
    """Apply ``module`` to the official frame chunks of ``grid (B, C, T, J)`` independently and
    concatenate along time. All chunks after the first have one length, so they run as one batch."""
    b, c, t, j = grid.shape
    bounds = chunk_bounds(t, chunk)
    if not bounds:
        raise ValueError(f"{t} frames is fewer than one chunk of {chunk}")
    first = module(grid[:, :, : bounds[0][1]])
    rest_count = len(bounds) - 1
    if not rest_count:
        return first
    rest = grid[:, :, bounds[0][1] :].reshape(b, c, rest_count, chunk, j).permute(0, 2, 1, 3, 4)
    out = module(rest.reshape(b * rest_count, c, chunk, j))
    oc, ot = out.shape[1], out.shape[2]
    out = out.reshape(b, rest_count, oc, ot, j).permute(0, 2, 1, 3, 4).reshape(b, oc, rest_count * ot, j)
    return torch.cat([first, out], dim=2)


class FourDMoT(nn.Module):
    """Encoder, quantiser and decoder with the official parameter names (``encoder.*``,
    ``decoder.*``, ``vq.codebook``)."""

    def __init__(self, config: TokenizerConfig | None = None):
        super().__init__()
        self.config = config or TokenizerConfig()
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)
        self.vq = Quantizer(self.config)

    def encode_grid(self, normalized: torch.Tensor) -> torch.Tensor:
        """Encoder output ``(B, D, T', J)`` for normalised joints ``(B, T, J, 3)``, chunked as the
        official code does (8-frame chunks, the first taking the remainder)."""
        grid = normalized.permute(0, 3, 1, 2)
        return _run_chunked(self.encoder, grid, ENCODER_CHUNK)

    def quantize(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes ``(B, T', J)`` and quantised latents ``(B, D, T', J)`` for encoder output ``(B, D, T', J)``."""
        b, d, t, j = latents.shape
        rows = latents.permute(0, 2, 3, 1).reshape(-1, d)  # (batch, frame, joint) order
        codes = self.vq.nearest(rows)
        quantized = self.vq.codebook[codes].to(latents.dtype).reshape(b, t, j, d).permute(0, 3, 1, 2)
        return codes.reshape(b, t, j), quantized

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Quantised latents ``(B, D, T', J)`` for codes ``(B, T', J)``."""
        return self.vq.codebook[codes].permute(0, 3, 1, 2)

    def decode_grid(self, quantized: torch.Tensor) -> torch.Tensor:
        """Normalised joints ``(B, T, J, 3)`` from quantised latents ``(B, D, T', J)``, chunked in
        pairs of latent frames (the first taking the remainder)."""
        out = _run_chunked(self.decoder, quantized, DECODER_CHUNK)
        return out.permute(0, 2, 3, 1)

    def forward(self, normalized: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training pass: reconstruction through a straight-through quantiser, and the terms of the loss."""
        latents = self.encode_grid(normalized)
        codes, quantized = self.quantize(latents)
        commitment = F.mse_loss(latents, quantized.detach())
        straight_through = latents + (quantized - latents).detach()
        return {
            "reconstruction": self.decode_grid(straight_through),
            "latents": latents,
            "codes": codes,
            "commitment": commitment,
        }


def config_from_state_dict(state: dict[str, torch.Tensor]) -> TokenizerConfig:
    """The architecture a 4DMoT state dict was made for, read off its shapes.

    Each size is read from the first of several weights that carry it, so a damaged state dict
    still yields a configuration and the strict comparison can then name everything wrong with it.
    Sizes no weight carries keep the official value.
    """

    def size(*candidates: tuple[str, int]) -> int | None:
        for name, axis in candidates:
            if name in state and state[name].ndim > axis:
                return int(state[name].shape[axis])
        return None

    default = TokenizerConfig()
    narrow = size(("encoder.conv_in.weight", 0), ("encoder.conv_in.bias", 0), ("decoder.conv_out.weight", 1))
    wide = size(("encoder.resnet2.conv_short.weight", 0), ("decoder.conv_in.weight", 0), ("encoder.conv_out.weight", 1))
    code_dim = size(("vq.codebook", 1), ("encoder.conv_out.weight", 0), ("decoder.conv_in.weight", 1))
    codebook_size = size(("vq.codebook", 0))
    in_channels = size(("encoder.conv_in.weight", 1), ("decoder.conv_out.weight", 0))
    indices = [int(k.split(".")[2]) for k in state if k.startswith("encoder.resnet1.") and k.split(".")[2].isdigit()]
    narrow = narrow or default.channels[0]
    return TokenizerConfig(
        channels=(narrow, wide or default.channels[1]),
        num_res_blocks=1 + max(indices) if indices else default.num_res_blocks,
        codebook_size=codebook_size or default.codebook_size,
        code_dim=code_dim or default.code_dim,
        # Group counts are not stored in weights: the official 32, or half the narrow width below 64 channels.
        norm_groups=min(32, max(1, narrow // 2)),
        in_channels=in_channels or default.in_channels,
    )
