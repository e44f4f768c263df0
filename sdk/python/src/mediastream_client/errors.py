"""Errors raised by the client, with the server's `google.rpc.Status` details.

MediaStreamClientError
├── RPCError            the server ended the call with a non-OK status
└── ConfigError         a stream config refused before anything was sent (also a ValueError)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2, status_pb2


class MediaStreamClientError(Exception):
    """Base of the client's errors."""


class ConfigError(MediaStreamClientError, ValueError):
    """A stream config the client refuses before sending anything.

    The reasons are the server's names for the same mistake, and the Go and
    TypeScript SDKs report the same configs with the same reasons (their
    ``ConfigError``): ``MISSING_TARGET`` (neither a call nor a conference) and
    ``BOTH_TARGETS`` (both; the wire cannot carry it, the target being a oneof).

    Attributes:
        reason: A stable identifier: ``MISSING_TARGET`` or ``BOTH_TARGETS``.
        field: The path of the wrong field, such as ``config.target``.
    """

    MISSING_TARGET = "MISSING_TARGET"
    BOTH_TARGETS = "BOTH_TARGETS"

    def __init__(self, reason: str, field: str, message: str) -> None:
        super().__init__(f"invalid config: {message} ({reason})")
        self.reason = reason
        self.field = field


@dataclass(frozen=True)
class FieldViolation:
    """One wrong request field, as the server's BadRequest detail names it."""

    field: str
    description: str


@dataclass
class _Details:
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    field_violations: list[FieldViolation] = field(default_factory=list)


class RPCError(MediaStreamClientError):
    """The server refused or ended an RPC.

    Attributes:
        code: The gRPC status code.
        message: The server's message.
        reason: `ErrorInfo.reason`, a stable identifier such as ``CALL_NOT_FOUND``.
        domain: `ErrorInfo.domain`.
        metadata: `ErrorInfo.metadata`.
        field_violations: `BadRequest` field violations (for INVALID_ARGUMENT).
    """

    def __init__(self, code: grpc.StatusCode, message: str, raw_status: bytes | None) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.raw_status = raw_status
        details = _parse(raw_status)
        self.reason = details.reason
        self.domain = details.domain
        self.metadata = details.metadata
        self.field_violations = details.field_violations

    @classmethod
    def from_aio(cls, exc: grpc.aio.AioRpcError) -> RPCError:
        """Wrap a grpc.aio error, keeping the status details."""
        raw = None
        for key, value in exc.trailing_metadata() or ():
            if key == "grpc-status-details-bin" and isinstance(value, bytes):
                raw = value
        return cls(exc.code(), exc.details() or "", raw)


def _parse(raw: bytes | None) -> _Details:
    out = _Details()
    if not raw:
        return out
    status = status_pb2.Status.FromString(raw)
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            out.reason, out.domain, out.metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out.field_violations = [
                FieldViolation(v.field, v.description) for v in bad.field_violations
            ]
    return out
