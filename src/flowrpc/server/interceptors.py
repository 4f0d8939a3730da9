"""Server interceptors: metrics, API keys and their roles, domain errors (and undecodable
requests) to gRPC statuses, request and response limits."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from flowrpc.server import access, errors
from flowrpc.server.limits import RequestLimits, serialized
from flowrpc.server.metrics import Metrics

log = logging.getLogger(__name__)

DOMAIN = "flowrpc"
CODES = {
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
}
FLOWRPC_SERVICES = "/flowrpc."


EachRequest = Callable[[Any, grpc.aio.ServicerContext], Awaitable[None]]


def _wrap(
    handler: grpc.RpcMethodHandler,
    around: Callable[..., Any],
    response_serializer: Callable[[Any], bytes] | None = None,
    each_request: EachRequest | None = None,
) -> grpc.RpcMethodHandler:
    """The same handler with its behaviour passed through `around` (and, when given, another
    response serializer), and a request that does not decode passed to it as Undecodable. A
    bidirectional handler's `around` gets the request iterator in place of the request, and
    `each_request` (when given) sees every request message before the servicer does."""
    if handler.unary_unary:
        factory, behaviour = grpc.unary_unary_rpc_method_handler, handler.unary_unary
    elif handler.unary_stream:
        factory, behaviour = grpc.unary_stream_rpc_method_handler, handler.unary_stream
    elif handler.stream_stream:  # CreateFlowRuns (and reflection)
        factory = grpc.stream_stream_rpc_method_handler
        behaviour = _each_request(handler.stream_stream, each_request)
    else:  # no client-streaming-only RPCs in the contract
        return handler
    return factory(
        around(behaviour, streaming=not handler.unary_unary),
        request_deserializer=_tolerant(handler.request_deserializer),
        response_serializer=response_serializer or handler.response_serializer,
    )


def _each_request(behaviour: Callable[..., Any], check: EachRequest | None) -> Callable[..., Any]:
    """A request-streaming behaviour whose request messages pass `check` on their way in."""
    if check is None:
        return behaviour

    async def call(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        async def checked() -> Any:
            async for request in requests:
                await check(request, context)
                yield request

        async for response in behaviour(checked(), context):
            yield response

    return call


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


async def _refuse_undecodable(request: Any, context: grpc.aio.ServicerContext, method: str) -> None:
    """Ends a request-streaming call at a message that does not decode."""
    if isinstance(request, Undecodable):
        await _undecodable(context, request, method)


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


def _decoded_stream(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    """A request-streaming handler whose undecodable requests end the call (_decode_only's
    counterpart for reflection, the one such service)."""
    behaviour = handler.stream_stream

    async def call(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        async def decoded() -> Any:
            async for request in requests:
                if isinstance(request, Undecodable):
                    await _undecodable(context, request, method)
                yield request

        async for response in behaviour(decoded(), context):
            yield response

    return grpc.stream_stream_rpc_method_handler(
        call,
        request_deserializer=_tolerant(handler.request_deserializer),
        response_serializer=handler.response_serializer,
    )


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
        ours = details.method.startswith(FLOWRPC_SERVICES)
        if handler.stream_stream and not ours:  # reflection
            return _decoded_stream(handler, details.method)
        # Health and reflection handle their own errors, all but undecodable requests.
        guard = _guard if ours else _decode_only
        return _wrap(
            handler,
            functools.partial(guard, method=details.method),
            each_request=functools.partial(_refuse_undecodable, method=details.method),
        )


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
        if handler.request_streaming:  # every message of the stream is a request to check
            return _wrap(
                handler, self._around_stream, response_serializer=_as_is, each_request=self._check
            )
        return _wrap(handler, self._around, response_serializer=_as_is)

    async def _check(self, request: Any, context: grpc.aio.ServicerContext) -> None:
        self._limits.check(request)

    def _around_stream(self, behaviour: Callable[..., Any], streaming: bool) -> Callable[..., Any]:
        async def stream(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            async for item in behaviour(requests, context):
                yield serialized(item)

        return stream

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


class AccessInterceptor(grpc.aio.ServerInterceptor):
    """Lets a call through when its key's role covers the RPC (access.REQUIRED_ROLES). Health
    checks are always open; reflection needs a key unless `open_reflection`. While no key exists
    anywhere, every call is let through."""

    def __init__(self, keys: access.KeyRing, open_reflection: bool) -> None:
        self._keys = keys
        self._open_reflection = open_reflection

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method = details.method
        reflection = method.startswith(access.REFLECTION)
        if handler is None or method.startswith(access.HEALTH):
            return handler
        if reflection and self._open_reflection:
            return handler
        try:
            holders = await self._keys.current()
        except Exception:  # noqa: BLE001 - refuse rather than let anyone in unchecked
            unavailable = errors.Unavailable(
                "API_KEYS_UNAVAILABLE", "The server cannot read its API keys now; retry."
            )
            return _refusing(handler, unavailable)
        if not holders:
            return handler
        needed = access.Role.READ if reflection else access.required_role(method)
        error = _denial(holders, details, needed)
        return handler if error is None else _refusing(handler, error)


def _denial(
    holders: dict[str, access.Holder], details: grpc.HandlerCallDetails, needed: access.Role
) -> errors.ServiceError | None:
    """Why the call may not proceed, or None when its key's role covers `needed`."""
    sent = str(dict(details.invocation_metadata or ()).get("authorization", ""))
    scheme, _, key = sent.partition(" ")
    # Found by the key's SHA-256: how long the lookup takes tells nothing about any key.
    holder = holders.get(access.hash_key(key.strip())) if scheme.lower() == "bearer" else None
    if holder is None:
        return errors.Unauthenticated(
            "UNAUTHENTICATED", "Missing or unknown API key: send 'authorization: Bearer <key>'."
        )
    if holder.role >= needed:
        return None
    rpc = details.method.rsplit("/", 1)[-1]
    return errors.PermissionDenied(
        "PERMISSION_DENIED",
        f"{rpc} needs an API key with role {needed.label} or higher; "
        f"the key {holder.name!r} has role {holder.role.label}.",
    )


def _refusing(handler: grpc.RpcMethodHandler, error: errors.ServiceError) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that ends every call with `error`."""

    streaming_in = bool(handler.request_streaming)

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await _refuse(context, error, streaming_in)

    async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await _refuse(context, error, streaming_in)
        yield  # makes this an async generator

    factory = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(streaming_in, bool(handler.response_streaming))]
    return factory(
        stream if handler.response_streaming else unary,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


async def _refuse(
    context: grpc.aio.ServicerContext, error: errors.ServiceError, streaming_in: bool
) -> None:
    if streaming_in:
        # Take the first request before answering: a client still sending it would otherwise
        # see its own send fail (grpc's Python client then reports INTERNAL, not this status).
        # What it sent does not matter (bytes that do not even decode included).
        with contextlib.suppress(Exception):
            await context.read()
    await abort(context, error)


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts each call by method and status code, times it and keeps the in-flight count.
    Place it first: it then sees every status, the refusals of the others included. Every kind
    of call is measured, bidirectional ones (CreateFlowRuns, reflection) included."""

    def __init__(self, metrics: Metrics) -> None:
        self._calls = metrics.calls

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:  # one label for all unknown names: clients cannot add series
            self._calls.method("unknown").count(grpc.StatusCode.UNIMPLEMENTED.name)
            return handler
        return _wrap(handler, functools.partial(self._around, details.method.lstrip("/")))

    def _around(self, method: str, behaviour: Callable[..., Any], streaming: bool) -> Any:
        calls, stats, clock = self._calls, self._calls.method(method), time.perf_counter
        if streaming:

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
                calls.in_flight += 1
                started, code = clock(), grpc.StatusCode.OK
                try:
                    async for item in behaviour(request, context):
                        yield item
                except BaseException as error:
                    code = _failure(error)
                    raise
                finally:
                    calls.in_flight -= 1
                    stats.record((context.code() or code).name, clock() - started)

            return stream

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            calls.in_flight += 1
            started, code = clock(), grpc.StatusCode.OK
            try:
                return await behaviour(request, context)
            except BaseException as error:
                code = _failure(error)
                raise
            finally:
                calls.in_flight -= 1
                stats.record((context.code() or code).name, clock() - started)

        return unary


def _failure(error: BaseException) -> grpc.StatusCode:
    """The status of a call that raised and set none (an abort sets its own): a cancelled or
    abandoned call is CANCELLED; what escaped every handler ends as UNKNOWN in gRPC."""
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN
