"""What "a render" is: a :class:`RenderRequest` in, a :class:`RenderResult` out, through a :class:`Backend`.

The command line (``mtvcrafter animate``) and the server's worker both call :meth:`Backend.run`; a
backend is the only thing that knows a model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

from mtvcrafter.motion import Motion

from .errors import SettingsError
from .settings import RenderSettings

if TYPE_CHECKING:  # Pillow loads with the first render (the command line builds its options without it)
    from PIL import Image


class Progress(Protocol):
    """Told where a render is: ``phase`` ("loading model", "denoising", …), ``fraction`` 0–1 of the whole
    render, a ``message`` such as "step 3/50", and the estimated seconds left when known."""

    def __call__(self, phase: str, fraction: float, message: str = "", eta_s: float | None = None) -> None: ...


def no_progress(phase: str, fraction: float, message: str = "", eta_s: float | None = None) -> None:
    """A :class:`Progress` that ignores what it is told."""


def never_cancelled() -> bool:
    return False


@dataclass(frozen=True)
class BackendConfig:
    """Where a backend finds its models and where it runs (the same for every render it does)."""

    #: a download of yanboding/MTVCrafter (MV-DiT/CogVideoX, 4DMoT, …); see :mod:`mtvcrafter.dit.layout`
    model_dir: Path | None = None
    #: the CogVideoX-5b folder, if not inside ``model_dir``
    base_model_dir: Path | None = None
    #: a 4DMoT checkpoint for the preview's reconstruction (default ``model_dir/4DMoT`` when present)
    tokenizer: Path | None = None
    #: ``cuda``, ``cuda:1``, ``cpu`` (default: ``cuda`` when there is one)
    device: str | None = None
    #: allow full unpickling of ``.pt``/``.bin`` weights that safe loading refuses
    trust_checkpoint: bool = False
    #: threads for work on the CPU (None: torch's default); a server leaves a core to its HTTP API
    cpu_threads: int | None = None
    #: where a render's ``lora`` name is looked up (besides ``model_dir/loras`` and ``model_dir/wan2.1``)
    lora_dir: Path | None = None
    #: whether a render may name any LoRA file by its path (the command line); a server takes names only
    lora_paths: bool = True
    #: torch.compile the video transformer's blocks (None: on a CUDA GPU); see mtvcrafter.dit.speed
    compile: bool | None = None

    def __post_init__(self) -> None:
        for name in ("model_dir", "base_model_dir", "tokenizer", "lora_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))

    def tokenizer_path(self) -> Path | None:
        if self.tokenizer is not None:
            return self.tokenizer
        if self.model_dir is not None and (self.model_dir / "4DMoT").exists():
            return self.model_dir / "4DMoT"
        return None


@dataclass
class RenderRequest:
    """One render: the motion, the reference image (RGB), the settings, and the mp4 to write."""

    motion: Motion
    image: Image.Image
    settings: RenderSettings
    out: Path

    def __post_init__(self) -> None:
        from mtvcrafter.render import check_output_path, flatten_reference

        self.out = check_output_path(self.out)
        self.image = flatten_reference(self.image)


@dataclass
class RenderResult:
    """What a render wrote: the mp4, its frame count, frame rate, ``(width, height)`` and warnings."""

    path: Path
    frames: int
    fps: float
    size: tuple[int, int]
    warnings: list[str] = field(default_factory=list)


class Backend:
    """A way of turning a :class:`RenderRequest` into a video. Models load on first use and stay loaded."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: the steps used when the settings leave ``steps`` to the backend (None: it has no steps)
    default_steps: ClassVar[int | None] = None
    #: the guidance scale and seed used when the settings leave them to the backend (None: it has none)
    default_guidance: ClassVar[float | None] = None
    default_seed: ClassVar[int | None] = None
    #: output sides must be multiples of this
    size_multiple: ClassVar[int] = 2
    #: the side used where the settings give none, and the largest side this backend renders
    default_side: ClassVar[int] = 512
    max_side: ClassVar[int | None] = None
    #: the settings this backend reads (listed by the server's ``/v1/backends``; the add-on shows the fields
    #: of these); any other is ignored, except the ones of :data:`ONLY_IF_TAKEN`, which are refused
    takes: ClassVar[tuple[str, ...]] = ("width", "height", "num_frames")

    def __init__(self, config: BackendConfig | None = None):
        self.config = config or BackendConfig()
        self._lock = threading.Lock()

    def status(self) -> tuple[bool, str]:
        """``(available, why not)``: cheap, never loads a model."""
        return True, ""

    def identity(self) -> str:
        """What besides a request decides its video (weights, device, version): part of a server's cache key."""
        from mtvcrafter import __version__

        return f"{self.name} {__version__}"

    def variant(self, settings: RenderSettings) -> str | None:
        """What besides :meth:`identity` and the settings decides the video and may change under the same
        settings (a LoRA file's stamp, say): part of a server's cache key, and a pipeline backend loads another
        pipeline for another variant. None: nothing."""
        return None

    def check(self, settings: RenderSettings) -> None:
        """Refuse settings this backend cannot render (:class:`SettingsError` naming the setting), before any work."""
        for name in ONLY_IF_TAKEN:
            if getattr(settings, name) is not None and name not in self.takes:
                users = ", ".join(n for n, cls in _registry().items() if name in cls.takes) or "none"
                raise SettingsError(name, f"{name}: the {self.name} backend takes none (backends that do: {users})")
        m = self.size_multiple
        for name in ("width", "height"):
            value = getattr(settings, name)
            if value is not None and value % m:
                need = "even (H.264)" if m == 2 else f"a multiple of {m} for {self.name}"
                raise SettingsError(name, f"{name} must be {need}, got {value}")
            if value is not None and self.max_side is not None and value > self.max_side:
                raise SettingsError(
                    name,
                    f"{name}: at most {self.max_side} pixels for {self.name} (a smoke test on the CPU), got {value}",
                )

    def output_size(self, settings: RenderSettings, image: Image.Image | None = None) -> tuple[int, int]:
        """``(width, height)`` of the video this backend renders for ``settings`` and the reference ``image``."""
        return settings.width or self.default_side, settings.height or self.default_side

    def steps(self, settings: RenderSettings) -> int | None:
        return settings.steps if settings.steps is not None else self.default_steps

    def guidance(self, settings: RenderSettings) -> float | None:
        return settings.guidance if settings.guidance is not None else self.default_guidance

    def seed(self, settings: RenderSettings) -> int | None:
        return settings.seed if settings.seed is not None else self.default_seed

    def defaults(self) -> dict[str, object]:
        """The values this backend uses for the settings it takes when they are left to it (for clients)."""
        values = {"steps": self.default_steps, "guidance": self.default_guidance, "seed": self.default_seed}
        return {k: v for k, v in values.items() if k in self.takes and v is not None}

    def run(
        self,
        request: RenderRequest,
        progress: Progress = no_progress,
        cancelled: Callable[[], bool] = never_cancelled,
    ) -> RenderResult:
        """Render ``request`` into ``request.out`` (written whole or not at all). ``cancelled()`` is asked
        between steps; when it says yes, :class:`~mtvcrafter.backends.Cancelled` is raised."""
        raise NotImplementedError

    def release(self) -> None:
        """Free what a failed or cancelled render may have left in memory (the models stay loaded)."""


#: settings that only some backends read, refused by the others rather than ignored (a prompt that silently does
#: nothing would mislead)
ONLY_IF_TAKEN = ("prompt", "negative_prompt", "lora")


def _registry() -> dict[str, type[Backend]]:
    from .registry import BACKENDS

    return BACKENDS


def file_stamp(path: Path | None) -> str:
    """A path with its size and modification time: changes when the file is replaced."""
    if path is None:
        return "none"
    try:
        stat = path.stat()
    except OSError:
        return f"{path} (missing)"
    return f"{path.resolve()}@{stat.st_size}:{stat.st_mtime_ns}"
