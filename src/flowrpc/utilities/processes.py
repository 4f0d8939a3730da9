"""Process-wide state that survives a fork."""

from __future__ import annotations

import os
import threading
from typing import Any


def process_lock(module_globals: dict[str, Any], name: str) -> threading.Lock:
    """A lock for the module global `name`, replaced by a new one in a forked child: a thread of
    the parent that held it at the fork does not exist in the child, so the copy would stay held
    forever and the child's first SDK call would hang. A plain lock still, so `with` stays one C
    call that a signal (Ctrl-C) cannot split."""

    def renew() -> None:
        module_globals[name] = threading.Lock()

    os.register_at_fork(after_in_child=renew)
    return threading.Lock()
