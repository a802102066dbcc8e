"""The MTVCrafter local server (FastAPI): job queue, progress, cancel, results that survive restarts.

Start it with ``mtvcrafter serve``; see the README's "HTTP API".
"""

from .config import ServerConfig

__all__ = ["ServerConfig", "create_app", "serve"]


def __getattr__(name):  # the web stack loads only when the app is asked for
    if name in ("create_app", "serve"):
        from . import app

        return getattr(app, name)
    raise AttributeError(name)
