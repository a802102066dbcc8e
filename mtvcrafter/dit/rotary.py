"""Rotary position tables of MV-DiT-7B: 3-D for video tokens, "4D" for motion tokens.

Head width 64, interleaved pairs (each frequency drives two adjacent channels), theta 10000:

- video token (latent frame f, patch row r, patch column c): 16 channels for f, 24 for r, 24 for c;
- motion token (latent frame f, joint j): 16 channels for f, then 16 each for the x, y and z of the
  joint's mean position (millimetres, from the normalisation statistics) minus the mean over the 24
  joints of that axis. The spatial part depends only on the joint, the temporal part only on the frame.

Tables are ``(cos, sin)`` pairs of shape ``(tokens, head_dim)`` in float32, computed exactly as the
official pipeline computes them (float32 positions, frequencies and products; the joint positions
centred in float32), so that after the cast to a bf16 compute dtype every entry is the same bf16
number the model was trained with.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers.models.embeddings import get_1d_rotary_pos_embed

from ..motion import NUM_JOINTS
from .errors import DiTError

THETA = 10000.0


def _band(dim: int, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    cos, sin = get_1d_rotary_pos_embed(
        dim,
        positions.to(torch.float32),
        theta=THETA,
        use_real=True,
        repeat_interleave_real=True,
        freqs_dtype=torch.float32,
    )
    return cos.float(), sin.float()


def _check_head_dim(head_dim: int) -> None:
    if head_dim % 8 or head_dim < 8:
        raise DiTError(f"rotary embeddings need a head width divisible by 8, got {head_dim}")


def video_rotary(frames: int, rows: int, cols: int, head_dim: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Tables for ``frames × rows × cols`` video tokens in (frame, row, column) order."""
    _check_head_dim(head_dim)
    dim_t, dim_s = head_dim // 4, head_dim // 8 * 3
    t = _band(dim_t, torch.arange(frames))
    h = _band(dim_s, torch.arange(rows))
    w = _band(dim_s, torch.arange(cols))
    out = []
    for ft, fh, fw in zip(t, h, w, strict=True):
        grid = torch.cat(
            [
                ft[:, None, None, :].expand(frames, rows, cols, dim_t),
                fh[None, :, None, :].expand(frames, rows, cols, dim_s),
                fw[None, None, :, :].expand(frames, rows, cols, dim_s),
            ],
            dim=-1,
        )
        out.append(grid.reshape(frames * rows * cols, head_dim))
    return out[0], out[1]


def joint_positions(joint_mean_mm: np.ndarray | torch.Tensor) -> torch.Tensor:
    """The 4D-RoPE spatial positions: each joint's mean position minus the mean over the joints,
    ``(24, 3)`` float32 (centred per axis in float32 with numpy, as the official pipeline does)."""
    if isinstance(joint_mean_mm, torch.Tensor):
        joint_mean_mm = joint_mean_mm.detach().cpu().numpy()
    mean = np.asarray(joint_mean_mm, dtype=np.float32)
    if mean.shape != (NUM_JOINTS, 3):
        raise DiTError(f"joint_mean must be the (24, 3) mean joint position in mm, got shape {tuple(mean.shape)}")
    if not np.isfinite(mean).all():
        raise DiTError("joint_mean holds NaN or infinite values")
    centred = [mean[:, a] - mean[:, a].mean() for a in range(3)]
    return torch.from_numpy(np.stack(centred, axis=1))


def motion_rotary(
    frames: int, joint_mean_mm: np.ndarray | torch.Tensor, head_dim: int = 64, time_dim: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tables for ``frames × 24`` motion tokens in frame-major order (token = frame·24 + joint).

    ``time_dim`` channels for the latent frame (default ``head_dim / 4``: 16 of 64 for the 7B; the 17B
    uses 44 of 128), the rest split equally between x, y and z (16 each for the 7B, 28 for the 17B)."""
    if time_dim is None:
        _check_head_dim(head_dim)
    dim_t = head_dim // 4 if time_dim is None else time_dim
    dim_s = (head_dim - dim_t) // 3
    if dim_t % 2 or dim_s % 2 or dim_t + 3 * dim_s != head_dim:
        raise DiTError(f"motion rotary: {head_dim} channels do not split into time {dim_t} and 3 even spatial parts")
    pos = joint_positions(joint_mean_mm)
    t = _band(dim_t, torch.arange(frames))
    axes = [_band(dim_s, pos[:, a]) for a in range(3)]
    out = []
    for k in range(2):
        spatial = torch.cat([axes[a][k] for a in range(3)], dim=-1)  # (24, 3·dim_s)
        grid = torch.cat(
            [
                t[k][:, None, :].expand(frames, NUM_JOINTS, dim_t),
                spatial[None].expand(frames, NUM_JOINTS, 3 * dim_s),
            ],
            dim=-1,
        )
        out.append(grid.reshape(frames * NUM_JOINTS, head_dim).float())
    return out[0], out[1]


def apply_rotary(x: torch.Tensor, table: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate ``x (B, heads, tokens, head_dim)``: ``x·cos + rot(x)·sin`` with ``rot(a, b) = (−b, a)``.

    Computed in float32 and returned in ``x``'s dtype, with the tables given in the compute dtype,
    as the official model does.
    """
    cos, sin = table
    pairs = x.unflatten(-1, (-1, 2))
    rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)
