"""How operations talk to the drivers, so each operation is written once for both clients.

An operation is a generator function with PrefectClient's name and keyword arguments. It builds
requests and converts responses but does no I/O: it yields a step and the driver performs it.

* `Call`: one unary RPC; the driver sends the response message back into the generator.
* `Stream`: a server-streaming RPC; the driver yields `items(message)` for every message to the
  caller as it arrives.
* `Items`: values to hand to the caller now (a page of a paged listing).
* `Exchange`: a bidirectional RPC: the driver sends `requests` as the server takes them and sends
  back into the generator the list of `items(message)` over every response message.

A unary operation yields only Calls and Exchanges and returns its result. An iterator
operation's items go to the caller; the async client exposes it as an async iterator, the sync
client as an iterator.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message


@dataclass(frozen=True)
class Call:
    stub: type  # a generated *Stub class
    method: str
    request: Message


@dataclass(frozen=True)
class Stream:
    stub: type
    method: str
    request: Message
    items: Callable[[Message], Iterable[Any]]


@dataclass(frozen=True)
class Items:
    items: list[Any]


@dataclass(frozen=True)
class Exchange:
    stub: type
    method: str
    requests: Iterable[Message]  # consumed lazily, as flow control lets them go
    items: Callable[[Message], Iterable[Any]]


class Requests:
    """An Exchange's requests as the call takes them, keeping the error raised while one was
    built (a value that cannot be sent): gRPC reports it only as a failed call, so the driver
    raises it instead."""

    def __init__(self, requests: Iterable[Message]) -> None:
        self._requests = iter(requests)
        self.error: Exception | None = None

    def __iter__(self) -> Requests:
        return self

    def __next__(self) -> Message:
        try:
            return next(self._requests)
        except StopIteration:
            raise
        except Exception as error:
            self.error = error
            raise


Step = Call | Stream | Items | Exchange
Operation = Generator[Step, Any, Any]

# name -> (operation function, True if it is an iterator operation)
OPERATIONS: dict[str, tuple[Callable[..., Operation], bool]] = {}


def unary(fn: Callable[..., Operation]) -> Callable[..., Operation]:
    """Register an operation that returns one result."""
    OPERATIONS[fn.__name__] = (fn, False)
    return fn


def iterator(fn: Callable[..., Operation]) -> Callable[..., Operation]:
    """Register an operation whose results are iterated."""
    OPERATIONS[fn.__name__] = (fn, True)
    return fn


def install(cls: type, make_method: Callable[[Callable[..., Operation], bool], Callable]) -> type:
    """Give a client class one method per registered operation, built by its driver's
    `make_method`; each keeps the operation's name, docstring and signature (plus self)."""
    for name, (fn, is_iterator) in OPERATIONS.items():
        method = functools.update_wrapper(make_method(fn, is_iterator), fn)
        del method.__wrapped__  # so help() shows the signature below, self included
        signature = inspect.signature(fn)
        self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
        method.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[self_param, *signature.parameters.values()],
            return_annotation=inspect.Signature.empty,
        )
        method.__qualname__ = f"{cls.__name__}.{name}"
        setattr(cls, name, method)
    return cls
