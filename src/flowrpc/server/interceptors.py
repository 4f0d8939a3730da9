"""Server interceptors: API-key authentication, and domain errors (and undecodable requests) to
gRPC statuses."""

from __future__ import annotations

import functools
import hmac
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from flowrpc.server import errors
from flowrpc.server.limits import RequestLimits, serialized

log = logging.getLogger(__name__)

DOMAIN = "flowrpc"
CODES = {
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
}
FLOWRPC_SERVICES = "/flowrpc."
# Probes and tooling must work without a key.
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def _wrap(
    handler: grpc.RpcMethodHandler,
    around: Callable[..., Any],
    response_serializer: Callable[[Any], bytes] | None = None,
) -> grpc.RpcMethodHandler:
    """The same handler with its behaviour passed through `around` (and, when given, another
    response serializer), and a request that does not decode passed to it as Undecodable."""
    if handler.unary_unary:
        factory, behaviour = grpc.unary_unary_rpc_method_handler, handler.unary_unary
    elif handler.unary_stream:
        factory, behaviour = grpc.unary_stream_rpc_method_handler, handler.unary_stream
    else:  # no client-streaming RPCs in the contract
        return handler
    return factory(
        around(behaviour, streaming=handler.unary_stream is not None),
        request_deserializer=_tolerant(handler.request_deserializer),
        response_serializer=response_serializer or handler.response_serializer,
    )


class Undecodable:
    """A request whose bytes do not parse. gRPC parses before any handler code runs, and a
    parser's exception becomes UNKNOWN with a logged traceback; this becomes INVALID_ARGUMENT."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None or getattr(deserialize, "tolerant", False):
        return deserialize

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as error:  # noqa: BLE001 - whatever the parser says, the bytes are bad
            return Undecodable(error)

    parse.tolerant = True  # type: ignore[attr-defined]
    return parse


async def _undecodable(
    context: grpc.aio.ServicerContext, request: Undecodable, method: str
) -> None:
    """One log line (no traceback: the cause is the client's), then INVALID_ARGUMENT."""
    log.warning(
        "undecodable request to %s from %s: %s", method, context.peer(), str(request.error)[:200]
    )
    violation = {"request": f"could not be decoded as the request message of {method}"}
    await abort(context, errors.InvalidArgument(violation))


def _decode_only(behaviour: Callable[..., Any], streaming: bool, method: str) -> Callable[..., Any]:
    """For services that handle their own errors (health): only undecodable bytes are ours."""
    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, Undecodable):
                await _undecodable(context, request, method)
            async for item in behaviour(request, context):
                yield item

        return stream

    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            await _undecodable(context, request, method)
        return await behaviour(request, context)

    return call


async def abort(context: grpc.aio.ServicerContext, error: errors.ServiceError) -> None:
    """Ends the call with a rich status: ErrorInfo, plus BadRequest for field violations."""
    code = CODES.get(type(error), grpc.StatusCode.FAILED_PRECONDITION)
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN)
    details = [info]
    if isinstance(error, errors.InvalidArgument):
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in error.violations.items()
                ]
            )
        )
    status = status_pb2.Status(code=code.value[0], message=error.message)
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    await context.abort(
        code,
        error.message,
        trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
    )


def _guard(behaviour: Callable[..., Any], streaming: bool, method: str) -> Callable[..., Any]:
    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            await _undecodable(context, request, method)
        try:
            return await behaviour(request, context)
        except Exception as error:  # noqa: BLE001 - every failure becomes a status
            await _fail(context, error)

    async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            await _undecodable(context, request, method)
        try:
            async for item in behaviour(request, context):
                yield item
        except Exception as error:  # noqa: BLE001
            await _fail(context, error)

    return stream if streaming else unary


async def _fail(context: grpc.aio.ServicerContext, error: Exception) -> None:
    if isinstance(error, grpc.aio.AbortError):
        raise error
    if isinstance(error, errors.ServiceError):
        await abort(context, error)
    log.error("unexpected error in a call", exc_info=error)
    await context.abort(grpc.StatusCode.INTERNAL, "Internal error; see the server log.")


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Domain errors become their status; anything else INTERNAL, never a traceback."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        # Health and reflection handle their own errors, all but undecodable requests.
        guard = _guard if details.method.startswith(FLOWRPC_SERVICES) else _decode_only
        return _wrap(handler, functools.partial(guard, method=details.method))


class LimitsInterceptor(grpc.aio.ServerInterceptor):
    """Checks each flowrpc request against the size limits before its servicer runs, and each
    response against what a default gRPC client accepts. Responses leave here serialized (the
    size check needs the bytes, so they are made once, here); interceptors placed before this one
    (errors, keys) see bytes, not messages. Place it after ErrorInterceptor, which reports what
    it raises."""

    def __init__(self, limits: RequestLimits) -> None:
        self._limits = limits

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or not details.method.startswith(FLOWRPC_SERVICES):
            return handler
        return _wrap(handler, self._around, response_serializer=_as_is)

    def _around(self, behaviour: Callable[..., Any], streaming: bool) -> Callable[..., Any]:
        check = self._limits.check

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            check(request)
            return serialized(await behaviour(request, context))

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            check(request)
            async for item in behaviour(request, context):
                yield serialized(item)

        return stream if streaming else unary


def _as_is(data: bytes) -> bytes:
    return data


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    """Requires 'authorization: Bearer <key>' on every call but health checks and reflection."""

    def __init__(self, api_key: str) -> None:
        self._expected = f"Bearer {api_key}".encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method.startswith(OPEN_SERVICES):
            return handler
        sent = dict(details.invocation_metadata or ()).get("authorization", "")
        if hmac.compare_digest(str(sent).encode(), self._expected):
            return handler
        return _wrap(handler, lambda behaviour, streaming: _refuse(streaming))


def _refuse(streaming: bool) -> Callable[..., Any]:
    error = errors.Unauthenticated(
        "UNAUTHENTICATED", "Missing or wrong API key: send 'authorization: Bearer <key>'."
    )

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await abort(context, error)

    async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await abort(context, error)
        yield  # makes this an async generator

    return stream if streaming else unary
