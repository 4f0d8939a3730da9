"""The SDK's process-wide locks are free in a forked child even when the parent held them at the
fork (another thread of the parent creating the client, closing the reporter, ...)."""

from __future__ import annotations

import os
import threading

import pytest

from flowrpc import logging as run_logs
from flowrpc.engine import client, embedded, reporter


def _can_take(lock) -> bool:
    """Whether a thread gets the lock within 5 s (a plain lock held at the fork never comes)."""
    taken = threading.Event()

    def take() -> None:
        with lock:
            taken.set()

    threading.Thread(target=take, daemon=True).start()
    return taken.wait(5)


@pytest.mark.parametrize("module", [client, embedded, reporter, run_logs])
def test_a_child_forked_while_the_lock_is_held_can_take_it(module):
    with module._lock:
        pid = os.fork()
        if pid == 0:  # the child: only ever leaves through os._exit
            code = 1
            try:
                code = 0 if _can_take(module._lock) else 1
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
