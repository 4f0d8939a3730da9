"""Late runs and expired pauses: periodic passes, each a series of bounded write batches so the
SQLite writer is never held for long."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from flowrpc.server.ids import now_micros
from flowrpc.server.metrics import Metrics
from flowrpc.server.storage import changes, maintenance
from flowrpc.server.storage.database import Database
from flowrpc.server.storage.leader import Leadership
from flowrpc.server.storage.maintenance import RunFailed
from flowrpc.settings import Settings

log = logging.getLogger(__name__)
Pass = Callable[[], Awaitable[int]]
PRUNE_BATCH = 5000  # change rows deleted per write transaction


def _in_batches(db: Database, name: str, batch: int, write: Callable[..., int], *args: Any) -> Pass:
    """A pass: write(conn, batch, now, skip, *args) until a batch changes fewer than `batch`
    runs. A run that fails its batch (RunFailed) is skipped for the rest of the pass, and the
    batch runs again without it; it is tried again next pass, and logged the first time only,
    so a bad row costs one log line, not one a pass."""
    reported: set[str] = set()

    async def one_pass() -> int:
        total, skip = 0, frozenset[str]()
        while True:
            try:
                changed = await db.write(write, batch, now_micros(), skip, *args)
            except RunFailed as failed:
                if failed.run_id not in reported:
                    reported.add(failed.run_id)
                    log.warning("%s: run %s skipped: %s", name, failed.run_id, failed.reason)
                skip |= {failed.run_id}
                continue
            total += changed
            if changed < batch:
                return total

    return one_pass


async def _every(
    seconds: float, name: str, one_pass: Pass, leadership: Leadership, metrics: Metrics | None
) -> None:
    """Runs `one_pass` every `seconds` while this replica leads."""
    service = name.replace(" ", "_")  # the metrics' label
    if metrics:
        metrics.show_service(service)
    while True:
        try:
            leads = await asyncio.to_thread(leadership.check)
            if metrics:
                metrics.leader.set(leads)
            if leads:
                if metrics:
                    metrics.passes.labels(service).inc()
                if changed := await one_pass():
                    log.info("%s: %d runs", name, changed)
        except Exception:  # a failed pass must not end the service
            log.exception("%s: pass failed", name)
            if metrics:
                metrics.failures.labels(service).inc()
        await asyncio.sleep(seconds)


def start_services(
    db: Database, settings: Settings, leadership: Leadership, metrics: Metrics | None = None
) -> list[asyncio.Task[None]]:
    """Starts the enabled services on the running loop; cancel the tasks to stop them."""
    services = []
    if settings.late_runs_enabled:
        late_after = int(settings.late_runs_after_seconds * 1_000_000)
        name = "late runs"
        one_pass = _in_batches(
            db, name, settings.batch_size, maintenance.mark_late_runs, late_after
        )
        services.append(
            _every(settings.late_runs_loop_seconds, name, one_pass, leadership, metrics)
        )
    if settings.pause_expirations_enabled:
        name = "expired pauses"
        one_pass = _in_batches(db, name, settings.batch_size, maintenance.fail_expired_pauses)
        seconds = settings.pause_expirations_loop_seconds
        services.append(_every(seconds, name, one_pass, leadership, metrics))
    # The change log WatchFlowRuns reads: always pruned (it grows with every state change).
    name = "change log"
    retention = int(settings.watch_retention_seconds * 1_000_000)
    prune = _in_batches(db, name, PRUNE_BATCH, changes.prune, retention)

    async def prune_pass() -> int:
        if db.dialect == "postgresql":  # changes no watcher's hub has numbered yet
            await db.write(changes.sequence)
        if not await db.read(changes.prune_due, now_micros() - retention):
            return 0
        return await prune()

    services.append(
        _every(settings.watch_prune_loop_seconds, name, prune_pass, leadership, metrics)
    )
    return [asyncio.create_task(service) for service in services]
