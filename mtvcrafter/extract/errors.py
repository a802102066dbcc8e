"""The exception types of the extraction layer (video → motion)."""

from __future__ import annotations

from mtvcrafter.motion.errors import MotionError


class ExtractionError(MotionError):
    """A video, model or setting that extraction cannot use: one line naming the file, the field and the fix."""


class ExtractionCancelled(Exception):
    """Extraction stopped because its ``cancelled()`` callback answered true (between batches of frames)."""
