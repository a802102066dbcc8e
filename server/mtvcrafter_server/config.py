"""The former name of the server settings, kept while callers move to :class:`mtvcrafter_server.Settings`."""

from mtvcrafter.client import is_loopback

from .settings import Settings as ServerConfig

__all__ = ["ServerConfig", "is_loopback"]
