"""The sync client: drives the shared operations over a blocking grpc channel."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from flowrpc.client.base import BaseClient
from flowrpc.client.errors import from_rpc_error, partial_results
from flowrpc.client.protocol import Call, Exchange, Items, Operation, Requests, Stream, install
from flowrpc.client.retries import next_delay


class SyncFlowRPCClient(BaseClient):
    """`with get_client(sync_client=True) as client:`; the same methods, blocking."""

    def __enter__(self) -> SyncFlowRPCClient:
        self._enter(self._config.open_sync)
        return self

    def __exit__(self, *exc_info: object) -> None:
        channel = self._exit()
        if channel is not None:
            channel.close()

    def _call(self, step: Call) -> Any:
        rpc = self._rpc(step.stub, step.method)
        delays = self._config.retry.delays(step.method, step.request)
        while True:
            try:
                return rpc(
                    step.request, metadata=self._config.metadata, timeout=self._config.timeout
                )
            except grpc.RpcError as error:
                delay = next_delay(error, delays)
                if delay is None:
                    raise from_rpc_error(error) from error
            time.sleep(delay)

    def _run(self, operation: Operation) -> Any:
        response = None
        while True:
            try:
                step = operation.send(response)
            except StopIteration as done:
                return done.value
            response = self._exchange(step) if isinstance(step, Exchange) else self._call(step)

    def _exchange(self, step: Exchange) -> list[Any]:
        # No deadline and no retry: a bulk call may take long, and a repeat could write twice.
        requests = Requests(step.requests)
        call = self._rpc(step.stub, step.method)(requests, metadata=self._config.metadata)
        items: list[Any] = []
        try:
            for message in call:
                items.extend(step.items(message))
        except grpc.RpcError as error:
            raise partial_results(requests.error or from_rpc_error(error), items) from error
        finally:
            call.cancel()
        return items

    def _iterate(self, operation: Operation) -> Iterator[Any]:
        response = None
        while True:
            try:
                step = operation.send(response)
            except StopIteration:
                return
            response = None
            if isinstance(step, Call):
                response = self._call(step)
            elif isinstance(step, Items):
                yield from step.items
            else:
                yield from self._stream(step)

    def _stream(self, step: Stream) -> Iterator[Any]:
        # No deadline: a bulk call over many runs may take long; keepalive detects dead peers.
        rpc = self._rpc(step.stub, step.method)
        delays = self._config.retry.delays(step.method, step.request)
        while True:
            call, received = rpc(step.request, metadata=self._config.metadata), False
            try:
                for message in call:
                    received = True
                    yield from step.items(message)
                return
            except grpc.RpcError as error:
                # Once items went to the caller, a repeat would hand them over twice.
                delay = None if received else next_delay(error, delays)
                if delay is None:
                    raise from_rpc_error(error) from error
            finally:
                call.cancel()  # a caller that stops early also stops the server's work
            time.sleep(delay)


def _method(operation: Callable[..., Operation], is_iterator: bool) -> Callable[..., Any]:
    if is_iterator:

        def iterate(self: SyncFlowRPCClient, *args: Any, **kwargs: Any) -> Iterator[Any]:
            return self._iterate(operation(*args, **kwargs))

        return iterate

    def run(self: SyncFlowRPCClient, *args: Any, **kwargs: Any) -> Any:
        return self._run(operation(*args, **kwargs))

    return run


install(SyncFlowRPCClient, _method)
