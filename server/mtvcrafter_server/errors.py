"""Exceptions shared by the jobs and the backends (the API's errors are in :mod:`mtvcrafter_server.api.errors`)."""

from __future__ import annotations


class Cancelled(Exception):
    """Raised inside a backend when its job was cancelled."""
