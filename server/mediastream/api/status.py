"""The one mapping from the error tree to gRPC status codes and `google.rpc.Status`.

Every error a gRPC client sees carries an `ErrorInfo` (reason, domain, metadata);
argument errors also carry a `BadRequest` naming the field.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar, cast

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from mediastream import errors, logs, metrics

log = logging.getLogger(__name__)

DOMAIN = "mediastream.voipbin.net"
"""`ErrorInfo.domain` of every error the gateway raises."""

_CODES: list[tuple[type[errors.MediaStreamError], grpc.StatusCode]] = [
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.InternalError, grpc.StatusCode.INTERNAL),
]


def grpc_code(error: errors.MediaStreamError) -> grpc.StatusCode:
    """The gRPC status code for `error`."""
    for cls, code in _CODES:
        if isinstance(error, cls):
            return code
    return grpc.StatusCode.UNKNOWN


_Handler = TypeVar("_Handler", bound=Callable[..., Awaitable[Any]])


def unary_errors(handler: _Handler) -> _Handler:
    """Make a unary RPC method end with the rich status of any MediaStreamError it raises."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await handler(self, request, context)
        except errors.MediaStreamError as exc:
            await abort(context, handler.__name__, exc)
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            # A bug: gRPC would send the exception's repr to the client. It goes to
            # the log; the client gets INTERNAL and words of ours.
            log.exception("%s failed", handler.__name__)
            internal = errors.InternalError(
                "internal error; the gateway logged it", reason="INTERNAL"
            )
            await context.abort_with_status(to_status(internal))
            raise AssertionError("abort_with_status returned") from exc

    return cast(_Handler, wrapper)


async def abort(
    context: grpc.aio.ServicerContext[Any, Any], method: str, error: errors.MediaStreamError
) -> NoReturn:
    """End the call with `error`'s status: what the client did wrong, never a traceback.

    Logged at WARNING with the peer, the caller's identity once authenticated (never
    the credential) and the reason, and counted in ``mediastream_stream_errors_total``
    by reason: the audit trail, as for the streaming RPCs.
    """
    metrics.STREAM_ERRORS.labels(error.reason).inc()
    log.warning(
        "%s refused for %s%s: %s (%s)",
        method,
        context.peer(),
        logs.who(),
        error.message,
        error.reason,
    )
    await context.abort_with_status(to_status(error))
    raise AssertionError("abort_with_status returned") from error


def to_status(error: errors.MediaStreamError) -> grpc.Status:
    """`error` as a gRPC status with `google.rpc.Status` details in the trailers."""
    code = grpc_code(error)
    details: list[any_pb2.Any] = []
    if isinstance(error, errors.InvalidArgument):
        bad = any_pb2.Any()
        bad.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=error.field, description=error.message
                    )
                ]
            )
        )
        details.append(bad)
    info = any_pb2.Any()
    info.Pack(
        error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=error.metadata)
    )
    details.append(info)
    status = status_pb2.Status(
        code=getattr(code_pb2, code.name), message=error.message, details=details
    )
    return rpc_status.to_status(status)
