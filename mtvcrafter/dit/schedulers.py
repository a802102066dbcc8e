"""Which diffusers schedulers can drive MV-DiT, and making one by name.

MV-DiT predicts v on CogVideoX's DDPM schedule with zero terminal SNR. The official sampler is
``CogVideoXDPMScheduler``; ``CogVideoXDDIMScheduler`` and the other DDPM-family diffusers schedulers
run the same schedule. Flow-matching schedulers, or ones that silently ignore part of the
configuration (and so run another schedule), are refused with a message saying why.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler
from diffusers.utils import logging as diffusers_logging

from .. import official
from .errors import ModelFileError

#: Schedulers by short name; any other diffusers scheduler class name works too.
SCHEDULERS = {"dpm": CogVideoXDPMScheduler, "ddim": CogVideoXDDIMScheduler}

#: scheduler/scheduler_config.json of THUDM/CogVideoX-5b (the values that matter for sampling).
COGVIDEOX_5B_SCHEDULER = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "clip_sample_range": 1.0,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "sample_max_value": 1.0,
    "set_alpha_to_one": True,
    "snr_shift_scale": 1.0,
    "steps_offset": 0,
    "timestep_spacing": "trailing",
}


@contextmanager
def _quiet() -> Iterator[None]:
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)


def check_scheduler(scheduler) -> None:
    """Refuse a scheduler that cannot drive MV-DiT: the model predicts v on CogVideoX's DDPM schedule
    with zero terminal SNR, and the pipeline needs the scheduler's noise scale, input scaling and
    ``add_noise`` (to guide overlapping windows)."""
    name = type(scheduler).__name__
    missing = [a for a in ("set_timesteps", "step", "scale_model_input", "init_noise_sigma", "add_noise")
               if not hasattr(scheduler, a)]  # fmt: skip
    config = getattr(scheduler, "config", {})
    problems = []
    if missing:
        problems.append(f"it has no {', '.join(missing)} (it is not a DDPM-family scheduler)")
    if config.get("prediction_type", "v_prediction") != "v_prediction" and "prediction_type" in config:
        problems.append(f"its prediction_type is {config['prediction_type']!r}, the model predicts 'v_prediction'")
    if "prediction_type" not in config:
        problems.append("it has no prediction_type setting (the model predicts v)")
    alphas = getattr(scheduler, "alphas_cumprod", None)
    if isinstance(alphas, torch.Tensor) and "beta_schedule" in config:
        with _quiet():
            expected = CogVideoXDDIMScheduler.from_config(dict(config)).alphas_cumprod
        if alphas.shape != expected.shape or not torch.allclose(alphas.cpu().double(), expected.double(), atol=1e-5):
            problems.append("its noise schedule differs from what its configuration describes (it ignores "
                            "rescale_betas_zero_snr, say), so it would not run CogVideoX's schedule")  # fmt: skip
    if problems:
        raise ModelFileError(
            f"scheduler {name} cannot drive MV-DiT: " + "; ".join(problems) + ". Use dpm (the official), ddim, or "
            "another DDPM-family diffusers scheduler (DDIMScheduler, EulerDiscreteScheduler, UniPCMultistepScheduler)"
        )


def make_scheduler(scheduler=None, config: dict | None = None):
    """A checked scheduler from a name (``dpm``, the default; ``ddim``; or a diffusers scheduler class
    name) configured from ``config`` (a ``scheduler_config.json`` as a dict; default
    :data:`COGVIDEOX_5B_SCHEDULER`), or a scheduler instance, checked and returned as is."""
    if scheduler is not None and not isinstance(scheduler, str):
        check_scheduler(scheduler)
        return scheduler
    name = scheduler or official.SCHEDULER
    cls = SCHEDULERS.get(name.lower())
    if cls is None:
        import diffusers

        cls = getattr(diffusers, name, None)
        if cls is None or not hasattr(cls, "from_config") or "Scheduler" not in name:
            known = ", ".join(SCHEDULERS)
            raise ModelFileError(f"unknown scheduler {name!r}; use {known} or a diffusers scheduler class name")
    with _quiet():  # CogVideoX's configuration has keys other schedulers do not take
        instance = cls.from_config(dict(COGVIDEOX_5B_SCHEDULER if config is None else config))
    check_scheduler(instance)
    return instance
