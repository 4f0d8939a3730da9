"""Late runs and expired pauses: periodic passes, each a series of bounded write batches so the
SQLite writer is never held for long."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from flowrpc.server.ids import now_micros
from flowrpc.server.storage import maintenance
from flowrpc.server.storage.database import Database
from flowrpc.server.storage.leader import Leadership
from flowrpc.settings import Settings

log = logging.getLogger(__name__)
Pass = Callable[[], Awaitable[int]]


def _in_batches(db: Database, batch: int, write: Callable[..., int], *args: Any) -> Pass:
    """A pass: write(conn, batch, now, *args) until a batch changes fewer than `batch` runs."""

    async def one_pass() -> int:
        total = 0
        while True:
            changed = await db.write(write, batch, now_micros(), *args)
            total += changed
            if changed < batch:
                return total

    return one_pass


async def _every(seconds: float, name: str, one_pass: Pass, leadership: Leadership) -> None:
    """Runs `one_pass` every `seconds` while this replica leads."""
    while True:
        try:
            if await asyncio.to_thread(leadership.check) and (changed := await one_pass()):
                log.info("%s: %d runs", name, changed)
        except Exception:  # a failed pass must not end the service
            log.exception("%s: pass failed", name)
        await asyncio.sleep(seconds)


def start_services(
    db: Database, settings: Settings, leadership: Leadership
) -> list[asyncio.Task[None]]:
    """Starts the enabled services on the running loop; cancel the tasks to stop them."""
    services = []
    if settings.late_runs_enabled:
        late_after = int(settings.late_runs_after_seconds * 1_000_000)
        one_pass = _in_batches(db, settings.batch_size, maintenance.mark_late_runs, late_after)
        services.append(_every(settings.late_runs_loop_seconds, "late runs", one_pass, leadership))
    if settings.pause_expirations_enabled:
        one_pass = _in_batches(db, settings.batch_size, maintenance.fail_expired_pauses)
        services.append(
            _every(settings.pause_expirations_loop_seconds, "expired pauses", one_pass, leadership)
        )
    return [asyncio.create_task(service) for service in services]
