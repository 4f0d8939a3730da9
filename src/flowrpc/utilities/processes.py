"""Process-wide state that survives a fork."""

from __future__ import annotations

import os
import threading


class ProcessLock:
    """A module's lock, unlocked again in a forked child: a thread of the parent that held it at
    the fork does not exist in the child, so a plain lock's copy would stay held forever and the
    child's first SDK call would hang."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._renew)

    def _renew(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()
