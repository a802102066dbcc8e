"""What both MTVCrafter pipelines share for progress and cancel across their windows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .errors import StepInterrupted


class StepState:
    """Denoising progress over all windows of a call, and cancel between steps (a mixin of the pipelines)."""

    _interrupt = False
    _num_timesteps = 0
    _total_steps = 0
    _current_window = 0
    #: whether each window is decoded as it ends (the 17B: the next window needs its frames) or all at the end
    decodes_each_window = False

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

    @contextmanager
    def interruptible(self, cancelled: Callable[[], bool] | None = None) -> Iterator[None]:
        """Within it, :meth:`request_interrupt` or ``cancelled()`` stop a call between two transformer blocks,
        not only between steps: the call raises :class:`~mtvcrafter.dit.errors.StepInterrupted` (a large
        step takes minutes on a CPU)."""

        def check(module, args, kwargs):
            if self._interrupt or (cancelled is not None and cancelled()):
                raise StepInterrupted("interrupted between transformer blocks")

        transformer = self.transformer
        blocks = getattr(transformer, "transformer_blocks", None) or transformer.blocks
        handles = [block.register_forward_pre_hook(check, with_kwargs=True) for block in blocks]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
