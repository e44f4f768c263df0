"""The gateway's error tree.

Every failure a client can see is one of these. Adapters translate them in one
place each: `mediastream.api.status` maps them to `google.rpc.Status` for gRPC.
Nothing else decides status codes.

    MediaStreamError
    ├── InvalidArgument      a field of the request is wrong (names the field)
    ├── NotFound             the call or conference does not exist
    ├── FailedPrecondition   the request is valid but not now (e.g. audio before config)
    ├── ResourceExhausted    a limit was reached
    ├── Unauthenticated      no or bad credentials
    ├── PermissionDenied     credentials do not cover the target
    ├── Unavailable          Asterisk cannot be reached or failed
    └── InternalError        a bug or an unexpected answer from Asterisk
"""

from __future__ import annotations

from collections.abc import Mapping


class MediaStreamError(Exception):
    """Base of every error the gateway reports to a client.

    Attributes:
        reason: A stable UPPER_SNAKE_CASE identifier for programs to branch on.
        message: A sentence for humans.
        metadata: Extra key/value facts (IDs, limits) for the client.
    """

    default_reason = "ERROR"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgument(MediaStreamError):
    """A request field has a value the gateway cannot accept.

    Attributes:
        field: Path of the offending field, e.g. ``config.format``.
    """

    default_reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        field: str,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.field = field


class NotFound(MediaStreamError):
    """The call or conference named by the request does not exist."""

    default_reason = "NOT_FOUND"


class FailedPrecondition(MediaStreamError):
    """The request is well formed but not allowed in the stream's current state."""

    default_reason = "FAILED_PRECONDITION"


class ResourceExhausted(MediaStreamError):
    """A limit (streams per call, message size, concurrency) was reached."""

    default_reason = "RESOURCE_EXHAUSTED"


class Unauthenticated(MediaStreamError):
    """The request carries no credentials, or credentials that do not verify."""

    default_reason = "UNAUTHENTICATED"


class PermissionDenied(MediaStreamError):
    """The credentials are valid but do not cover the requested target."""

    default_reason = "PERMISSION_DENIED"


class Unavailable(MediaStreamError):
    """Asterisk cannot be reached, or went away; retrying later may work."""

    default_reason = "ASTERISK_UNAVAILABLE"


class InternalError(MediaStreamError):
    """Something went wrong inside the gateway or in Asterisk's answer."""

    default_reason = "INTERNAL"
