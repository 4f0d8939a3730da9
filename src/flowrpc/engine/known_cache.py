"""The cache entries this process has seen: a task call whose cache key is here, and not about to
expire, completes as Cached at once, and the server, receiving its start, finds the same entry
(or a newer one for the key: the same inputs). Prefect 3 also reads caches in the client.

An entry is the Completed state a server stored for the key (its data is the result record,
loaded anew for each hit, so a caller cannot change what later hits get), kept per server
address and forgotten when the SDK's client is replaced."""

from __future__ import annotations

from datetime import timedelta

from flowrpc import results
from flowrpc.schemas._base import now
from flowrpc.schemas.objects import State
from flowrpc.utilities.processes import process_lock

MAX_ENTRIES = 1_000  # the oldest go first
# An entry expiring sooner is left to the server: its answer comes after the reporter's delay.
EXPIRY_MARGIN = timedelta(minutes=1)

_lock = process_lock(globals(), "_lock")  # a new one in a forked child
_entries: dict[tuple[str, str], State] = {}  # by (server address, cache key)


def remember(api_url: str, state: State) -> None:
    """Keeps a Completed state of the server at `api_url` that holds a cache key and a result
    record."""
    key = state.state_details.cache_key
    if key and results.is_record(state.data):
        with _lock:
            _entries.pop((api_url, key), None)
            _entries[api_url, key] = state
            if len(_entries) > MAX_ENTRIES:
                del _entries[next(iter(_entries))]


def lookup(api_url: str, key: str) -> State | None:
    """The entry for `key` at `api_url`, unless it expires within EXPIRY_MARGIN."""
    state = _entries.get((api_url, key))
    if state is None:
        return None
    expiration = state.state_details.cache_expiration
    if expiration is not None and expiration < now() + EXPIRY_MARGIN:
        return None
    return state


def forget() -> None:
    """Drops every entry (the SDK's client was replaced: it may point elsewhere now)."""
    with _lock:
        _entries.clear()
