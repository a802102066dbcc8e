"""The one exception type of the motion layer."""

from __future__ import annotations


class MotionError(ValueError):
    """A motion file or array that cannot be used, with what is wrong and how to fix it.

    The message always names the source (file, and clip where there are several) and the field.
    """

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None):
        self.source = source
        self.field = field
        where = []
        if source:
            where.append(str(source))
        if field:
            where.append(f"field '{field}'")
        super().__init__(f"{': '.join(where)}: {message}" if where else message)


class MotionLimitError(MotionError):
    """A motion beyond a size limit of the reader (frames, characters): valid, but too large to take."""
