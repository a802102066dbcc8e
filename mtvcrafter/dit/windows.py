"""How a motion of any length is cut into MV-DiT windows on the latent grid.

One window is 49 video frames = 13 latent frames (the video VAE keeps the first frame and then
compresses 4 frames into one latent frame). A motion of N frames is padded (its last pose held) to
``N4 = 4k + 1 ≥ max(N, 49)`` frames, i.e. ``L = (N4 − 1)/4 + 1`` latent frames. The fewest windows
whose starts are at most 10 latent frames (40 video frames) apart cover them, spread evenly from the
first latent frame to the last, so neighbours share at least 3 latent frames (9 video frames) and
the overlaps are as equal as the grid allows.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import DiTError

WINDOW_FRAMES = 49
WINDOW_LATENTS = 13
#: Latent frames between window starts (10 latent frames = 40 video frames; 3 latent frames shared).
WINDOW_STRIDE_LATENTS = 10
TEMPORAL_COMPRESSION = 4


@dataclass(frozen=True)
class WindowPlan:
    frames: int  #: video frames asked for
    padded_frames: int  #: frames the motion is padded to (4k + 1, at least 49)
    latent_frames: int  #: latent frames of the whole video
    starts: tuple[int, ...]  #: first latent frame of each window

    @property
    def num_windows(self) -> int:
        return len(self.starts)

    def frame_range(self, window: int) -> tuple[int, int]:
        """``[start, stop)`` video frames (of the padded motion) that window ``window`` renders."""
        start = self.starts[window] * TEMPORAL_COMPRESSION
        return start, start + WINDOW_FRAMES

    def overlap(self, window: int) -> int:
        """Latent frames window ``window`` shares with the one before it (0 for the first)."""
        if window == 0:
            return 0
        return self.starts[window - 1] + WINDOW_LATENTS - self.starts[window]


def plan_windows(num_frames: int, stride: int = WINDOW_STRIDE_LATENTS) -> WindowPlan:
    """The window plan for a video of ``num_frames`` frames."""
    if num_frames < 1:
        raise DiTError(f"a video needs at least one frame, got {num_frames}")
    if not 1 <= stride <= WINDOW_LATENTS - 1:
        raise DiTError(f"window stride must be 1 to {WINDOW_LATENTS - 1} latent frames, got {stride}")
    padded = max(WINDOW_FRAMES, TEMPORAL_COMPRESSION * -(-(num_frames - 1) // TEMPORAL_COMPRESSION) + 1)
    latents = (padded - 1) // TEMPORAL_COMPRESSION + 1
    last = latents - WINDOW_LATENTS
    count = -(-last // stride) + 1
    starts = [0] if count == 1 else [round(k * last / (count - 1)) for k in range(count)]
    return WindowPlan(num_frames, padded, latents, tuple(starts))
