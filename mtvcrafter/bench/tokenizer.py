"""4DMoT benchmarks: encode and decode at the official size, against a straightforward implementation."""

from __future__ import annotations

import numpy as np
import torch

from ..tokenizer import FourDMoT, MotionTokenizer
from . import Row, median_time
from .motion import sample_pickle


class StraightforwardTokenizer:
    """The same math written plainly, as the official script does it: chunks one at a time, and
    the full distance matrix (``torch.cdist``) for the quantiser. Its chunking is written out here
    from the specification, not taken from the library."""

    @staticmethod
    def chunks(frames: int, size: int) -> list[tuple[int, int]]:
        first = size + frames % size
        return [(0, first)] + [(start, start + size) for start in range(first, frames, size)]

    def __init__(self, tokenizer: MotionTokenizer):
        self.model = tokenizer.model
        self.mean = torch.as_tensor(tokenizer.stats.mean, device=tokenizer.device)
        self.std = torch.as_tensor(tokenizer.stats.std, device=tokenizer.device)
        self.device = tokenizer.device

    @torch.inference_mode()
    def encode(self, joints_mm: np.ndarray) -> torch.Tensor:
        x = (torch.as_tensor(joints_mm, device=self.device) - self.mean) / self.std
        grid = x[None].permute(0, 3, 1, 2)
        latents = torch.cat([self.model.encoder(grid[:, :, a:b]) for a, b in self.chunks(grid.shape[2], 8)], dim=2)
        rows = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
        codes = torch.cdist(rows, self.model.vq.codebook).argmin(dim=1)
        return codes.reshape(latents.shape[2], latents.shape[3])

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        grid = self.model.vq.codebook[codes].permute(2, 0, 1)[None]
        out = torch.cat([self.model.decoder(grid[:, :, a:b]) for a, b in self.chunks(grid.shape[2], 2)], dim=2)
        return out[0].permute(1, 2, 0) * self.std + self.mean


def tokenizer_benchmarks(quick: bool = False, device: str | None = None) -> list[Row]:
    from ..motion import load_motions

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    tokenizer = MotionTokenizer(FourDMoT(), device=device)
    clips = load_motions(sample_pickle())
    long_clip = np.concatenate([clips[3].joints, clips[2].joints[::-1]])[:1000]
    # Random weights map everything to a handful of codes; a codebook of real encoder outputs
    # makes the comparison below meaningful.
    with torch.inference_mode():
        x, _, _ = tokenizer._normalized(long_clip)
        rows = tokenizer.model.encode_grid(x).permute(0, 2, 3, 1).reshape(-1, tokenizer.config.code_dim)
        picks = torch.randperm(rows.shape[0], generator=torch.Generator().manual_seed(0))
        codebook = tokenizer.model.vq.codebook
        codebook[: min(len(picks), len(codebook))] = rows[picks[: len(codebook)]]
    baseline = StraightforwardTokenizer(tokenizer)
    repeats = 2 if quick else 5
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def timed(fn):
        def run():
            fn()
            sync()

        return median_time(run, repeats)

    rows = []
    for frames, goal in ((49, 0.3 if device == "cpu" else None), (1000, None)):
        joints = long_clip[:frames]
        codes = tokenizer.encode(joints)
        if not np.array_equal(codes, baseline.encode(joints).cpu().numpy()):
            raise RuntimeError("the straightforward implementation chose other codes: the benchmark is void")
        code_tensor = torch.as_tensor(codes, device=device)
        if not np.allclose(tokenizer.decode(codes), baseline.decode(code_tensor).cpu().numpy(), atol=1e-2):
            raise RuntimeError("the straightforward implementation decoded differently: the benchmark is void")
        rows.append(
            Row(
                f"4DMoT encode, {frames} frames ({device})",
                timed(lambda j=joints: tokenizer.encode(j)),
                timed(lambda j=joints: baseline.encode(j)),
                "per-chunk loop, cdist quantiser",
                goal,
            )
        )
        rows.append(
            Row(
                f"4DMoT decode, {frames} frames ({device})",
                timed(lambda c=codes: tokenizer.decode(c)),
                timed(lambda c=code_tensor: baseline.decode(c)),
                "per-chunk loop",
                None,
            )
        )
    return rows
