"""Run timeouts: interrupt a flow or task body that runs longer than its timeout_seconds.

Sync bodies: in the main thread a SIGALRM timer raises RunTimeout at the next Python instruction
(also ending a time.sleep); in other threads, or when a timer is already set, a watcher thread
raises it asynchronously in the body's thread (a body blocked inside a C call is interrupted when
the call returns). Async bodies use asyncio.timeout.
"""

from __future__ import annotations

import asyncio
import ctypes
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager


class RunTimeout(TimeoutError):
    """A body ran past its timeout_seconds (a TimeoutError, as Prefect raises)."""


def _alarm_usable() -> bool:
    return (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL)[0] == 0
    )


@contextmanager
def sync_timeout(seconds: float | None) -> Iterator[None]:
    """Raises RunTimeout inside the block once `seconds` have passed (None: no limit)."""
    if not seconds:
        yield
        return
    if _alarm_usable():
        with _alarm(seconds):
            yield
        return
    with _watcher(seconds):
        yield


@contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise RunTimeout()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def _watcher(seconds: float) -> Iterator[None]:
    thread_id = ctypes.c_ulong(threading.get_ident())
    guard = threading.Lock()
    finished = False

    def expire() -> None:
        with guard:
            if not finished:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(thread_id, ctypes.py_object(RunTimeout))

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        with guard:
            finished = True
            # Drop a timeout that fired as the body ended but was not raised yet.
            ctypes.pythonapi.PyThreadState_SetAsyncExc(thread_id, None)


@asynccontextmanager
async def async_timeout(seconds: float | None) -> AsyncIterator[None]:
    """asyncio.timeout that raises RunTimeout, so a body's own TimeoutError stays its own."""
    if not seconds:
        yield
        return
    try:
        async with asyncio.timeout(seconds) as scope:
            yield
    except TimeoutError:
        if scope.expired():
            raise RunTimeout() from None
        raise
