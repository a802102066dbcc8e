"""The backends layer's errors: one base type, its message names the setting or file and the fix."""

from __future__ import annotations


class BackendError(Exception):
    """A render that cannot run as asked (unknown backend, unusable settings, missing model files)."""


class SettingsError(BackendError, ValueError):
    """A render setting out of its bounds or unusable by the chosen backend; ``field`` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class Cancelled(Exception):
    """Raised inside :meth:`Backend.run` when the caller's ``cancelled()`` said so; nothing is written."""
