"""Which calls the client repeats after UNAVAILABLE, and how long it waits between attempts.

A call answered UNAVAILABLE may or may not have reached the server (a restart, a replica going
away mid-call), so only calls that are safe to repeat are retried: reads, and writes whose repeat
finds what the first attempt did. Whether a write is safe can depend on the request (a create with
an idempotency key), which gRPC's service-config retry policy, chosen per method, cannot express.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
from google.protobuf.message import Message

_READS = ("Get", "List", "Count", "Read", "Stream", "Watch")
# Creates that return the existing object when it is there already: by name (flows; a
# deployment is replaced by the same values), or by (flow run, task key, dynamic key).
_FOUND_BY_KEY = {"CreateFlow", "CreateDeployment"}


def safe_to_retry(method: str, request: Message) -> bool:
    """Whether repeating this call cannot do anything twice."""
    if method.startswith(_READS) or method == "Check" or method in _FOUND_BY_KEY:
        return True
    if method == "CreateTaskRun":
        return bool(request.flow_run_id)  # type: ignore[attr-defined]
    if method in ("CreateFlowRun", "CreateFlowRunFromDeployment"):
        return bool(request.idempotency_key)  # type: ignore[attr-defined]
    if method == "SetFlowRunState":
        # A repeat with the same transition_id is rejected as a duplicate, unless forced.
        state = request.state  # type: ignore[attr-defined]
        return bool(state.state_details.transition_id) and not request.force  # type: ignore[attr-defined]
    # SetTaskRunState has no transition id (task-run rules do not check one); deletes, updates,
    # bulk streams and work-pool creates would answer differently the second time.
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """Up to `attempts` tries; the first wait is `backoff` seconds, doubling up to four times
    that, each wait shortened at random by up to half (jitter, so clients do not return in step).
    The defaults try 5 times over 5.5-11 s."""

    attempts: int = 5
    backoff: float = 1.0

    @classmethod
    def from_settings(cls, attempts: int | None, backoff: float | None) -> RetryPolicy:
        """Arguments win over FLOWRPC_RETRY_ATTEMPTS / FLOWRPC_RETRY_BACKOFF_SECONDS."""
        if attempts is None:
            attempts = int(os.environ.get("FLOWRPC_RETRY_ATTEMPTS") or cls.attempts)
        if backoff is None:
            backoff = float(os.environ.get("FLOWRPC_RETRY_BACKOFF_SECONDS") or cls.backoff)
        return cls(attempts=max(1, attempts), backoff=max(0.0, backoff))

    def delays(self, method: str, request: Message) -> Iterator[float]:
        """The waits before each further attempt of this call; none if it is not safe."""
        if not safe_to_retry(method, request):
            return
        for retry in range(self.attempts - 1):
            delay = self.backoff * min(2**retry, 4)
            yield delay * random.uniform(0.5, 1.0)


def next_delay(error: grpc.RpcError, delays: Iterator[float]) -> float | None:
    """How long to wait before trying again after `error`; None to give up."""
    if error.code() != grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
        return None
    return next(delays, None)
