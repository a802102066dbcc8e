"""The backends, by name: the one list every path (command line, server, add-on through the server) reads.

A new model is a new backend module plus its line in :data:`BACKENDS`.
"""

from __future__ import annotations

from .base import Backend, BackendConfig
from .errors import BackendError
from .pipeline import MVDiT7BBackend, TinyBackend
from .preview import PreviewBackend
from .wan import MVDiT17BBackend, Tiny17BBackend

BACKENDS: dict[str, type[Backend]] = {
    "preview": PreviewBackend,
    "tiny": TinyBackend,
    "tiny-17b": Tiny17BBackend,
    "mvdit-7b": MVDiT7BBackend,
    "mvdit-17b": MVDiT17BBackend,
}
#: Best first: where none is named, the first available one renders.
PREFERENCE: tuple[str, ...] = ("mvdit-17b", "mvdit-7b", "preview")
#: Where none is named and nothing better is available.
FALLBACK = "preview"


def backend_names() -> tuple[str, ...]:
    return tuple(BACKENDS)


def get_backend(name: str, config: BackendConfig | None = None) -> Backend:
    """A new backend ``name`` with ``config`` (models load on its first render)."""
    try:
        cls = BACKENDS[name]
    except KeyError:
        raise BackendError(f"unknown backend {name!r}; use one of {', '.join(BACKENDS)}") from None
    return cls(config)


def create_backends(config: BackendConfig | None = None) -> dict[str, Backend]:
    """One backend of each kind, sharing ``config`` (a server keeps these for its life)."""
    return {name: cls(config) for name, cls in BACKENDS.items()}


def best_backend(backends: dict[str, Backend]) -> str:
    """The name of the best available backend among ``backends`` (see :data:`PREFERENCE`)."""
    for name in PREFERENCE:
        if name in backends and backends[name].status()[0]:
            return name
    return FALLBACK
