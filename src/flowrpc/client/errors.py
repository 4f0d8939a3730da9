"""Typed exceptions for gRPC errors, keeping the status code, the reason and the message.

The server sends rich status (google.rpc.Status in the `grpc-status-details-bin` trailer) with an
ErrorInfo{reason, domain="flowrpc"} and, for bad input, BadRequest field violations.
"""

from __future__ import annotations

from typing import Any, NamedTuple, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

__all__ = [
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "FlowRPCError",
    "InternalError",
    "InvalidRequest",
    "ObjectAlreadyExists",
    "ObjectNotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "ServiceUnavailable",
    "Unauthenticated",
    "from_rpc_error",
]

_DETAILS_KEY = "grpc-status-details-bin"


class FieldViolation(NamedTuple):
    """One BadRequest field violation."""

    field: str
    description: str


class FlowRPCError(Exception):
    """Base of every error a flowrpc call raises."""

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
        reason: str | None = None,
        domain: str | None = None,
        metadata: dict[str, str] | None = None,
        field_violations: list[FieldViolation] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.domain = domain
        self.metadata = metadata or {}
        self.field_violations = field_violations or []
        # A bulk call that failed part way (create_flow_runs): the results received before.
        self.partial_results: list[Any] = []

    def __str__(self) -> str:
        """One line: the message, then the field violations it does not already say (the
        server's message usually is the violations; the code and reason are attributes)."""
        parts = [self.message or self.code.name]
        for field, description in self.field_violations:
            violation = f"{field}: {description}"
            if violation not in self.message:
                parts.append(violation)
        return "; ".join(parts)


class ObjectNotFound(FlowRPCError):
    """NOT_FOUND (Prefect's ObjectNotFound)."""


class ObjectAlreadyExists(FlowRPCError):
    """ALREADY_EXISTS (Prefect's ObjectAlreadyExists)."""


class InvalidRequest(FlowRPCError):
    """INVALID_ARGUMENT or OUT_OF_RANGE: malformed ids, bad limits, unknown enum values."""


class FailedPrecondition(InvalidRequest):
    """FAILED_PRECONDITION: the request is valid but the object's current state refuses it."""


class Unauthenticated(FlowRPCError):
    """UNAUTHENTICATED: missing or wrong API key."""


class PermissionDenied(FlowRPCError):
    """PERMISSION_DENIED."""


class ServiceUnavailable(FlowRPCError):
    """UNAVAILABLE: the server cannot be reached (after the client's retries, for the calls
    that are safe to repeat)."""


class DeadlineExceeded(FlowRPCError):
    """DEADLINE_EXCEEDED: the call's timeout passed."""


class ResourceExhausted(FlowRPCError):
    """RESOURCE_EXHAUSTED: a message too large, or the server is shedding load."""


class InternalError(FlowRPCError):
    """INTERNAL, UNKNOWN or DATA_LOSS: a server-side bug; details are in the server log."""


_BY_CODE: dict[grpc.StatusCode, type[FlowRPCError]] = {
    grpc.StatusCode.NOT_FOUND: ObjectNotFound,
    grpc.StatusCode.ALREADY_EXISTS: ObjectAlreadyExists,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequest,
    grpc.StatusCode.OUT_OF_RANGE: InvalidRequest,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: ServiceUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.INTERNAL: InternalError,
    grpc.StatusCode.UNKNOWN: InternalError,
    grpc.StatusCode.DATA_LOSS: InternalError,
}


_REQUEST_TOO_LARGE = "SERVER: Received message larger than max"


def _rich_status(error: grpc.RpcError) -> status_pb2.Status | None:
    if isinstance(error, grpc.aio.AioRpcError):
        # rpc_status.from_call is for sync calls; an aio error carries the same trailer.
        for key, value in error.trailing_metadata() or ():
            if key == _DETAILS_KEY:
                return status_pb2.Status.FromString(value)
        return None
    try:
        return rpc_status.from_call(error)  # type: ignore[arg-type]
    except ValueError:  # trailer inconsistent with the status: trust the status alone
        return None


def from_rpc_error(error: grpc.RpcError) -> FlowRPCError:
    """The typed exception for a failed call (grpc.RpcError or grpc.aio.AioRpcError)."""
    code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
    message: str = error.details() or ""  # type: ignore[attr-defined]
    fields: dict[str, Any] = {}
    status = _rich_status(error)
    if status is not None:
        message = status.message or message
        violations: list[FieldViolation] = []
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                fields.update(reason=info.reason, domain=info.domain, metadata=dict(info.metadata))
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
                violations.extend(
                    FieldViolation(v.field, v.description) for v in bad_request.field_violations
                )
        fields["field_violations"] = violations
    elif code == grpc.StatusCode.RESOURCE_EXHAUSTED and message.startswith(_REQUEST_TOO_LARGE):
        # gRPC itself refused the request, before the server's code: name the setting.
        message += ": over the server's max_request_bytes (FLOWRPC_MAX_REQUEST_BYTES)"
    return _BY_CODE.get(code, FlowRPCError)(message, code=code, **fields)


E = TypeVar("E", bound=Exception)


def partial_results(error: E, results: list[Any]) -> E:
    """The error of a bulk call that failed part way (a FlowRPCError, or the error raised while
    building a request), carrying the results received before it (runs already created stay
    created)."""
    error.partial_results = results
    return error
