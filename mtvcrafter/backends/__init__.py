"""A render, in one place: its settings (every default once), the request, the :class:`Backend` interface
and the registry of backends (``preview``, ``tiny``, ``mvdit-7b``).

``mtvcrafter animate`` and the server's worker both call ``get_backend(name, config).run(request, …)``.
Importing this package loads no model stack: torch and diffusers load when a backend first renders.
"""

from .base import (
    Backend,
    BackendConfig,
    Progress,
    RenderRequest,
    RenderResult,
    file_stamp,
    never_cancelled,
    no_progress,
)
from .errors import BackendError, Cancelled, SettingsError
from .registry import BACKENDS, FALLBACK, PREFERENCE, backend_names, best_backend, create_backends, get_backend
from .settings import MAX_SIDE, SETTINGS, SETTINGS_BY_NAME, RenderSettings, Setting

__all__ = [
    "BACKENDS",
    "FALLBACK",
    "MAX_SIDE",
    "PREFERENCE",
    "SETTINGS",
    "SETTINGS_BY_NAME",
    "Backend",
    "BackendConfig",
    "BackendError",
    "Cancelled",
    "Progress",
    "RenderRequest",
    "RenderResult",
    "RenderSettings",
    "Setting",
    "SettingsError",
    "backend_names",
    "best_backend",
    "create_backends",
    "file_stamp",
    "get_backend",
    "never_cancelled",
    "no_progress",
]
