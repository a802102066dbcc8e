"""What both MTVCrafter pipelines share for progress and cancel across their windows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

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

    def step_context(self, step: int, steps: int, timestep) -> AbstractContextManager:
        """Around each transformer call: tells a diffusers step cache (``transformer.enable_cache``) where the
        denoising is; nothing without one. Both CFG branches run as one batch, so one cache state serves them."""
        transformer = self.transformer
        if not getattr(transformer, "is_cache_enabled", False):
            return nullcontext()
        return transformer.cache_context("denoise", step_index=step, num_inference_steps=steps, timestep=timestep)

    def new_trajectory(self) -> None:
        """Forget a step cache's state before a window's first step: each window is a denoising run of its own."""
        if getattr(self.transformer, "is_cache_enabled", False):
            self.transformer._reset_stateful_cache()

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
