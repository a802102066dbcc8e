"""The former name of the server settings, for ``backends.py`` until it moves to :mod:`mtvcrafter.backends`;
everything else imports :class:`mtvcrafter_server.settings.Settings`."""

from .settings import Settings as ServerConfig

__all__ = ["ServerConfig"]
