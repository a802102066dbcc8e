"""The settings of a render, each default and bound written once.

:class:`RenderSettings` is what ``mtvcrafter animate`` turns its options into, what the server's job
``params`` are validated as (its pydantic model is generated from :data:`SETTINGS`), and what a
backend's :meth:`~mtvcrafter.backends.Backend.run` reads. A setting a backend leaves to itself is
``None`` (e.g. ``steps``: 50 for the video models, 4 for ``tiny``).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from mtvcrafter import official

from .errors import SettingsError

#: the largest output side any path accepts (a server may set a lower limit of its own)
MAX_SIDE = 8192
#: the official 7B script's settings (SPEC §5)
DEFAULT_SIZE = official.SIZE
DEFAULT_SCHEDULER = official.SCHEDULER
#: the longest prompt taken (umT5 reads at most 512 tokens of it)
MAX_PROMPT = 2000
DTYPES = ("bf16", "fp16", "fp32")
#: the video models' offload modes (mtvcrafter.dit.offload) and ``auto``, which picks one from the GPU's free memory
OFFLOAD_MODES = ("none", "model", "group", "sequential", "auto")


@dataclass(frozen=True)
class Setting:
    """One render setting: its bounds, choices and the sentence that explains it (CLI help and OpenAPI)."""

    name: str
    type: type
    default: Any
    help: str
    ge: float | None = None
    le: float | None = None
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    max_length: int | None = None
    optional: bool = False

    def check(self, value: Any) -> Any:
        """``value`` converted to the setting's type, or :class:`SettingsError` naming the setting."""
        if value is None:
            if self.optional:
                return None
            raise SettingsError(self.name, f"{self.name} needs a value ({self.help})")
        try:
            if self.type is bool:
                if not isinstance(value, bool):
                    raise ValueError
                converted: Any = value
            elif self.type is int:
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                converted = int(value)
            elif self.type is float:
                if isinstance(value, bool):
                    raise ValueError
                converted = float(value)
            else:
                if not isinstance(value, str):
                    raise ValueError
                converted = value
        except (TypeError, ValueError, OverflowError):
            kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[self.type]
            raise SettingsError(self.name, f"{self.name} must be {kind}, got {value!r}"[:200]) from None
        if self.type is float and not math.isfinite(converted):
            raise SettingsError(self.name, f"{self.name} must be finite, got {value!r}")
        if self.ge is not None and converted < self.ge or self.le is not None and converted > self.le:
            raise SettingsError(
                self.name, f"{self.name} must be from {_num(self.ge)} to {_num(self.le)}, got {value!r}"
            )
        if self.choices is not None and converted not in self.choices:
            raise SettingsError(self.name, f"{self.name} must be one of {', '.join(self.choices)}, got {value!r}")
        if self.max_length is not None and len(converted) > self.max_length:
            raise SettingsError(self.name, f"{self.name} is longer than {self.max_length} characters")
        if self.pattern is not None and not re.fullmatch(self.pattern, converted):
            raise SettingsError(self.name, f"{self.name}: {value!r} is not a valid name")
        return converted


def _num(value: float | None) -> str:
    return "any" if value is None else f"{value:g}" if abs(value) < 1e6 else f"{int(value):,}"


def _setting(kind: type, default: Any, help: str, **rules: Any) -> Any:
    """A :class:`RenderSettings` field whose :class:`Setting` (type, bounds, help) travels in its metadata."""
    return field(default=default, metadata={"setting": dict(type=kind, help=help, **rules)})


@dataclass(frozen=True)
class RenderSettings:
    """How to render: size, steps, guidance, seed, scheduler, precision, offloading … (see :data:`SETTINGS`)."""

    width: int | None = _setting(
        int,
        None,
        "output width in pixels (even; multiple of 16 for the video models; default: the backend's, 512 or, for "
        "mvdit-17b, the official size nearest the reference image's aspect)",
        ge=16,
        le=MAX_SIDE,
        optional=True,
    )
    height: int | None = _setting(
        int,
        None,
        "output height in pixels (as width; one of the two given: the other follows the reference image's aspect "
        "for mvdit-17b, else 512)",
        ge=16,
        le=MAX_SIDE,
        optional=True,
    )
    steps: int | None = _setting(
        int,
        None,
        "denoising steps (default: the backend's: 50 for the video models, 10 for mvdit-17b with a LoRA, 4 for tiny)",
        ge=1,
        le=1000,
        optional=True,
    )
    guidance: float | None = _setting(
        float,
        None,
        f"guidance scale, 1 turns it off (default: the backend's: {official.GUIDANCE:g} on motion for mvdit-7b, "
        f"{official.GUIDANCE_17B:g} on text for mvdit-17b, off with a LoRA)",
        ge=0,
        le=50,
        optional=True,
    )
    seed: int | None = _setting(
        int,
        None,
        f"random seed (default: the backend's: {official.SEED} for mvdit-7b, {official.SEED_17B} for mvdit-17b)",
        ge=0,
        le=2**63 - 2,
        optional=True,
    )
    scheduler: str | None = _setting(
        str,
        None,
        f"mvdit-7b: dpm, ddim, or a diffusers scheduler class name (default {DEFAULT_SCHEDULER}); mvdit-17b: "
        "flow-euler only",
        pattern=r"[A-Za-z0-9_-]+",
        max_length=64,
        optional=True,
    )
    prompt: str | None = _setting(
        str,
        None,
        f"text prompt (mvdit-17b; default {official.PROMPT_17B!r})",
        max_length=MAX_PROMPT,
        optional=True,
    )
    negative_prompt: str | None = _setting(
        str,
        None,
        f"what the video should avoid (mvdit-17b, with guidance; default {official.NEGATIVE_PROMPT_17B!r})",
        max_length=MAX_PROMPT,
        optional=True,
    )
    lora: str | None = _setting(
        str,
        None,
        "mvdit-17b: a FusionX-style LoRA (.safetensors) merged into the model: 10 steps, no text guidance; on a "
        "server, the name of a file in its LoRA folder",
        max_length=255,
        optional=True,
    )
    reference_encoding: str = _setting(
        str,
        "image",
        "mvdit-7b: image encodes the reference once; video: 49 copies through the video VAE, as the official script",
        choices=("image", "video"),
    )
    placement: str = _setting(
        str,
        "fit",
        "preview: fit scales the skeleton over the middle of the image; camera draws it where the motion's camera"
        " saw it",
        choices=("fit", "camera"),
    )
    num_frames: int | None = _setting(
        int, None, "render only the first N frames of the motion", ge=1, le=10**6, optional=True
    )
    dtype: str | None = _setting(
        str, None, "the video models' precision (default bf16 on a GPU, fp32 on the CPU)", choices=DTYPES, optional=True
    )
    offload: str = _setting(
        str,
        "none",
        "where the video models' weights wait while not computing (the same frames in every mode): none: all on the "
        "GPU; model: only the running model on the GPU; group: the transformer's blocks one at a time, streamed (the "
        "7B in under 16 GiB); sequential: the least memory, the slowest; auto: the fastest that fits the GPU's free "
        "memory",
        choices=OFFLOAD_MODES,
    )
    fast: bool = _setting(
        bool,
        False,
        "the video models: skip transformer blocks on steps that change little (First-Block Cache) and run fp8 "
        "matmuls where the GPU has them; faster, frames a little off exact mode's (README: Fast mode)",
    )

    def __post_init__(self) -> None:
        for setting in SETTINGS:
            object.__setattr__(self, setting.name, setting.check(getattr(self, setting.name)))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RenderSettings:
        """Settings from a mapping (a preset, job params); an unknown key is a :class:`SettingsError`."""
        unknown = sorted(set(values) - set(SETTINGS_BY_NAME))
        if unknown:
            raise SettingsError(unknown[0], f"unknown setting {unknown[0]!r}; known: {', '.join(SETTINGS_BY_NAME)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels where no backend decides otherwise: what was given, 512 for a side left out."""
        return self.width or DEFAULT_SIZE, self.height or DEFAULT_SIZE


#: The settings every video-model backend reads (each adds its own: the 7B its reference encoding, the 17B its
#: prompt and LoRA).
MODEL_SETTINGS = (
    "width", "height", "num_frames", "steps", "guidance", "seed", "scheduler", "dtype", "offload", "fast"
)  # fmt: skip

#: Every render setting, in the order the command line and the API list them.
SETTINGS: tuple[Setting, ...] = tuple(
    Setting(f.name, default=f.default, **f.metadata["setting"]) for f in fields(RenderSettings)
)
SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}
