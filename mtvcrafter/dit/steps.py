"""What both MTVCrafter pipelines share for progress and cancel across their windows."""

from __future__ import annotations


class StepState:
    """Denoising progress over all windows of a call, and cancel between steps (a mixin of the pipelines)."""

    _interrupt = False
    _num_timesteps = 0
    _total_steps = 0
    _current_window = 0

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    def request_interrupt(self) -> None:
        """Ask a running call to stop before its next denoising step (safe from another thread)."""
        self._interrupt = True

    @property
    def num_timesteps(self) -> int:
        """Denoising steps of one window."""
        return self._num_timesteps

    @property
    def total_steps(self) -> int:
        """Denoising steps of the running call over all windows (for progress)."""
        return self._total_steps

    @property
    def current_window(self) -> int:
        return self._current_window

    def enable_vae_tiling(self) -> None:
        self.vae.enable_tiling()

    def enable_vae_slicing(self) -> None:
        self.vae.enable_slicing()
