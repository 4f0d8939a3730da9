"""Which replica runs the background services: the holder of a PostgreSQL advisory lock.

The lock belongs to one dedicated connection, so it is released the moment the leader's process
dies or its connection breaks, and another replica takes over at its next attempt. SQLite has one
server per file, which always leads.
"""

from __future__ import annotations

import contextlib
import logging
import threading

import sqlalchemy as sa
from sqlalchemy.engine import Connection

log = logging.getLogger(__name__)
LEADER_LOCK = 0x6C656164  # advisory lock key ("lead")


class Leadership:
    def __init__(self, url: sa.URL) -> None:
        self._engine = sa.create_engine(url, poolclass=sa.NullPool) if _shared(url) else None
        self._conn: Connection | None = None
        self._lock = threading.Lock()  # every background service asks, from its own thread

    def check(self) -> bool:
        """True while this replica leads; tries to become the leader when it does not. Blocking."""
        if self._engine is None:
            return True
        with self._lock:
            return self._check()

    def _check(self) -> bool:
        try:
            if self._conn is None:
                self._conn = self._engine.connect()
                # Keyed by schema too, so deployments sharing a database do not contend.
                query = sa.text("SELECT pg_try_advisory_lock(:key, hashtext(current_schema()))")
                if not self._conn.execute(query, {"key": LEADER_LOCK}).scalar():
                    self._drop()
                    return False
                self._conn.commit()
                log.info("this replica now runs the background services")
            else:
                self._conn.execute(sa.text("SELECT 1")).scalar()  # still connected, still leading
                self._conn.commit()
            return True
        except sa.exc.DBAPIError:
            log.warning("lost the leader connection; will try again", exc_info=True)
            self._drop()
            return False

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sa.exc.DBAPIError):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._drop()
        if self._engine is not None:
            self._engine.dispose()


def _shared(url: sa.URL) -> bool:
    return url.get_backend_name() == "postgresql"
