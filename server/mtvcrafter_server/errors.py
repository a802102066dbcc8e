"""API errors: every error response is ``{"error": {"code", "message"[, "field"]}}`` with the right status."""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def body(self) -> dict:
        error = {"code": self.code, "message": self.message}
        if self.field:
            error["field"] = self.field
        return {"error": error}


class Cancelled(Exception):
    """Raised inside a backend when its job was cancelled."""
