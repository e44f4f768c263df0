"""ARI error responses, with Asterisk's exact status, reason phrase and body."""

from __future__ import annotations

from typing import ClassVar

__all__ = ["AriError", "internal_error"]


class AriError(Exception):
    """An ARI request that fails the way Asterisk fails it.

    Attributes:
        status: HTTP status.
        message: Text of the JSON body.
        reason: HTTP reason phrase (Asterisk varies it: ``Not found`` vs ``Not Found``).
        key: JSON key of the body: ``message``, except ``error`` for allocation failures.
    """

    _REASONS: ClassVar[dict[int, str]] = {
        400: "Bad Request",
        401: "Unauthorized",
        404: "Not Found",
        405: "Method Not Allowed",
        409: "Conflict",
        422: "Unprocessable Entity",
        500: "Internal Server Error",
        501: "Not Implemented",
    }

    def __init__(
        self, status: int, message: str, *, reason: str | None = None, key: str = "message"
    ) -> None:
        """Create the error."""
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.reason = reason or self._REASONS.get(status, "Error")
        self.key = key


def internal_error() -> AriError:
    """Asterisk's generic 500 (bad format name, failed AudioSocket connect, ...)."""
    return AriError(500, "An internal error prevented this request from being handled")
