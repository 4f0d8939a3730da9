"""The async client: drives the shared operations over a grpc.aio channel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from flowrpc.client.base import BaseClient
from flowrpc.client.errors import from_rpc_error, partial_results
from flowrpc.client.protocol import Call, Exchange, Items, Operation, Requests, Stream, install
from flowrpc.client.retries import next_delay


class FlowRPCClient(BaseClient):
    """`async with get_client() as client:`; methods follow PrefectClient (see operations)."""

    async def __aenter__(self) -> FlowRPCClient:
        self._enter(self._config.open_async)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        channel = self._exit()
        if channel is not None:
            await channel.close()

    async def _call(self, step: Call) -> Any:
        rpc = self._rpc(step.stub, step.method)
        delays = self._config.retry.delays(step.method, step.request)
        while True:
            try:
                return await rpc(
                    step.request, metadata=self._config.metadata, timeout=self._config.timeout
                )
            except grpc.aio.AioRpcError as error:
                delay = next_delay(error, delays)
                if delay is None:
                    raise from_rpc_error(error) from error
            await asyncio.sleep(delay)

    async def _run(self, operation: Operation) -> Any:
        response = None
        while True:
            try:
                step = operation.send(response)
            except StopIteration as done:
                return done.value
            if isinstance(step, Exchange):
                response = await self._exchange(step)
            else:
                response = await self._call(step)

    async def _exchange(self, step: Exchange) -> list[Any]:
        # No deadline and no retry: a bulk call may take long, and a repeat could write twice.
        requests = Requests(step.requests)
        call = self._rpc(step.stub, step.method)(requests, metadata=self._config.metadata)
        items: list[Any] = []
        try:
            async for message in call:
                items.extend(step.items(message))
        except grpc.aio.AioRpcError as error:
            raise partial_results(requests.error or from_rpc_error(error), items) from error
        except asyncio.CancelledError:  # how grpc.aio ends a call whose requests raised
            if requests.error is None:
                raise
            raise partial_results(requests.error, items) from None
        finally:
            call.cancel()
        return items

    async def _iterate(self, operation: Operation) -> AsyncIterator[Any]:
        response = None
        while True:
            try:
                step = operation.send(response)
            except StopIteration:
                return
            response = None
            if isinstance(step, Call):
                response = await self._call(step)
            elif isinstance(step, Items):
                for item in step.items:
                    yield item
            else:
                async for item in self._stream(step):
                    yield item

    async def _stream(self, step: Stream) -> AsyncIterator[Any]:
        # No deadline: a bulk call over many runs may take long; keepalive detects dead peers.
        rpc = self._rpc(step.stub, step.method)
        delays = self._config.retry.delays(step.method, step.request)
        while True:
            call, received = rpc(step.request, metadata=self._config.metadata), False
            try:
                async for message in call:
                    received = True
                    for item in step.items(message):
                        yield item
                return
            except grpc.aio.AioRpcError as error:
                # Once items went to the caller, a repeat would hand them over twice.
                delay = None if received else next_delay(error, delays)
                if delay is None:
                    raise from_rpc_error(error) from error
            finally:
                call.cancel()  # a caller that stops early also stops the server's work
            await asyncio.sleep(delay)


def _method(operation: Callable[..., Operation], is_iterator: bool) -> Callable[..., Any]:
    if is_iterator:

        def iterate(self: FlowRPCClient, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            return self._iterate(operation(*args, **kwargs))

        return iterate

    async def run(self: FlowRPCClient, *args: Any, **kwargs: Any) -> Any:
        return await self._run(operation(*args, **kwargs))

    return run


install(FlowRPCClient, _method)
