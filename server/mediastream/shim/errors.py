"""The one mapping from the error tree to what a WebSocket client sees.

Before the upgrade an error is an HTTP status with VoIPBIN's JSON envelope,
``{"error": {"status", "reason", "message", "request_id"}}``. After it, the
connection closes with a WebSocket close code and a reason string. Nothing
else in the shim decides a status or a close code.
"""

from __future__ import annotations

import json
import uuid
from typing import Final

from aiohttp import WSCloseCode, web

from mediastream import errors
from mediastream.core.stream import StopReason
from mediastream.streams import StreamStopped

_STATUS: Final[list[tuple[type[errors.MediaStreamError], int]]] = [
    (errors.InvalidArgument, 400),
    # FAILED_PRECONDITION is 400 in Google's HTTP mapping, which gRPC users know.
    (errors.FailedPrecondition, 400),
    (errors.Unauthenticated, 401),
    (errors.PermissionDenied, 403),
    (errors.NotFound, 404),
    (errors.ResourceExhausted, 429),
    (errors.InternalError, 500),
    (errors.Unavailable, 503),
]

MAX_CLOSE_REASON: Final = 123
"""Bytes a close frame's reason may hold (RFC 6455: 125 minus the 2-byte code)."""

CLOSE_UNSUPPORTED_DATA: Final = int(WSCloseCode.UNSUPPORTED_DATA)
"""1003: a text frame where only binary is spoken, or the reverse."""


def http_status(error: errors.MediaStreamError) -> int:
    """The HTTP status for `error` refused before the upgrade."""
    for cls, status in _STATUS:
        if isinstance(error, cls):
            return status
    return 500


def error_body(status: int, reason: str, message: str) -> dict[str, object]:
    """VoIPBIN's error envelope."""
    return {
        "error": {
            "status": status,
            "reason": reason,
            "message": message,
            "request_id": str(uuid.uuid4()),
        }
    }


def error_response(error: errors.MediaStreamError) -> web.Response:
    """`error` as an HTTP response with VoIPBIN's JSON envelope."""
    status = http_status(error)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return web.Response(
        status=status,
        text=json.dumps(error_body(status, error.reason, error.message)),
        content_type="application/json",
        headers=headers,
    )


def close_for_error(error: errors.MediaStreamError) -> tuple[int, str]:
    """Close code and reason for a stream that failed after the upgrade."""
    if error.reason in ("CHUNK_TOO_LARGE", "MESSAGE_TOO_BIG"):
        code = int(WSCloseCode.MESSAGE_TOO_BIG)
    elif error.reason == "UNSUPPORTED_DATA":
        code = CLOSE_UNSUPPORTED_DATA
    elif isinstance(error, errors.InternalError | errors.Unavailable):
        code = int(WSCloseCode.INTERNAL_ERROR)
    else:
        # Whatever else the client did wrong breaks the endpoint's contract.
        code = int(WSCloseCode.POLICY_VIOLATION)
    return code, f"{error.reason}: {error.message}"


def close_for_stop(stopped: StreamStopped) -> tuple[int, str]:
    """Close code and reason for a stream that ended."""
    if stopped.reason is StopReason.SERVER_SHUTDOWN:
        code = int(WSCloseCode.GOING_AWAY)
    elif stopped.reason is StopReason.ASTERISK_FAILURE:
        code = int(WSCloseCode.INTERNAL_ERROR)
    else:
        code = int(WSCloseCode.OK)
    reason = stopped.reason.value
    return code, f"{reason}: {stopped.detail}" if stopped.detail else reason


def close_reason(text: str) -> bytes:
    """`text` cut to fit a close frame, on a UTF-8 character boundary."""
    data = text.encode()
    if len(data) <= MAX_CLOSE_REASON:
        return data
    return data[: MAX_CLOSE_REASON - 3].decode("utf-8", "ignore").encode() + b"..."
