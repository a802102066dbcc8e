"""The MTVCrafter local server (FastAPI): job queue, progress, cancel, results that survive restarts.

Start it with ``mtvcrafter serve``; see the README's "HTTP API".
"""

__all__ = ["Settings", "create_app", "serve"]


def __getattr__(name):  # the server's dependencies load only when asked for (``.local`` needs none of them)
    if name in ("create_app", "serve"):
        from . import app

        return getattr(app, name)
    if name == "Settings":
        from .settings import Settings

        return Settings
    raise AttributeError(name)
