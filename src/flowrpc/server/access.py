"""Who may call what: API keys with roles, and the role every RPC needs.

Keys live in the `api_key` table as SHA-256 hashes (a key is 32 random bytes, so a fast hash is
enough: there is nothing to guess). FLOWRPC_API_KEY is one more key, with the admin role. While no
key exists anywhere the service is open; once one does, every call but health checks must carry
a key (`authorization: Bearer <key>`) whose role covers the RPC.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa

from flowrpc.server.storage import api_keys

log = logging.getLogger(__name__)

KEY_PREFIX = "frpc_"
ENV_KEY_NAME = "FLOWRPC_API_KEY"


class Role(enum.IntEnum):
    """Each role may do what the roles below it may."""

    READ = 1
    WRITE = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


R, W, A = Role.READ, Role.WRITE, Role.ADMIN
# The role each RPC needs: reads need `read`, changes `write`, deletes `admin`. Every RPC of every
# service is listed (tests/unit/test_access_roles.py checks this against the descriptors); an RPC
# missing here needs `admin`, so a new one cannot slip through open.
REQUIRED_ROLES: Mapping[str, Mapping[str, Role]] = {
    "flowrpc.v1.FlowService": {
        "CreateFlow": W,
        "GetFlow": R,
        "GetFlowByName": R,
        "ListFlows": R,
        "DeleteFlow": A,
    },
    "flowrpc.v1.FlowRunService": {
        "CreateFlowRun": W,
        "StartFlowRun": W,
        "GetFlowRun": R,
        "ListFlowRuns": R,
        "CountFlowRuns": R,
        "UpdateFlowRun": W,
        "DeleteFlowRun": A,
        "SetFlowRunState": W,
        "ResumeFlowRun": W,
        "ListFlowRunStates": R,
        "GetFlowRunGraph": R,
        "StreamFlowRunHistory": R,
        "ReadFlowRunHistory": R,
        "BulkSetFlowRunState": W,
        "BulkDeleteFlowRuns": A,
        "CreateFlowRuns": W,
        "WatchFlowRuns": R,
    },
    "flowrpc.v1.DeploymentService": {
        "CreateDeployment": W,
        "GetDeployment": R,
        "GetDeploymentByName": R,
        "ListDeployments": R,
        "DeleteDeployment": A,
        "CreateFlowRunFromDeployment": W,
    },
    "flowrpc.v1.WorkPoolService": {
        "CreateWorkPool": W,
        "GetWorkPool": R,
        "ListWorkPools": R,
        "DeleteWorkPool": A,
        "CreateWorkQueue": W,
        "ListWorkQueues": R,
    },
    "flowrpc.v1.TaskRunService": {
        "CreateTaskRun": W,
        "GetTaskRun": R,
        "ListTaskRuns": R,
        "SetTaskRunState": W,
        "StartTaskRun": W,
        "SetTaskRunStates": W,
        "StartTaskRuns": W,
    },
    "flowrpc.v1.LogService": {
        "CreateLogs": W,
        "ListLogs": R,
    },
    "flowrpc.v1.AssetService": {
        "CreateAssetMaterialization": W,
        "ListAssets": R,
    },
}
HEALTH = "/grpc.health.v1.Health/"  # probes never need a key
REFLECTION = "/grpc.reflection."  # any key may describe the API (or none: open_reflection)


def required_role(method: str) -> Role:
    """The role a call to `method` ("/package.Service/Method") needs."""
    service, _, name = method.removeprefix("/").partition("/")
    return REQUIRED_ROLES.get(service, {}).get(name, Role.ADMIN)


def new_key() -> str:
    """A fresh random key; the prefix makes a leaked one easy to recognise."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Holder:
    """Who presented a key: the key's name and its role."""

    name: str
    role: Role


class KeyRing:
    """The known keys by hash, re-read from the database when older than `refresh_seconds`, so
    keys created or revoked (on any replica) count within that time. The read has a connection
    of its own: it never queues behind the servers' readers. A re-read of ten keys took about
    1 ms on SQLite and 3 ms on PostgreSQL (a loaded 2-core machine), as much as a whole GetFlow;
    the cached check about 1 µs, so keys are not re-read on every call."""

    def __init__(self, url: sa.URL, env_key: str | None, refresh_seconds: float) -> None:
        self._engine = sa.create_engine(url, pool_size=1, max_overflow=0, pool_pre_ping=True)
        self._env = {hash_key(env_key): Holder(ENV_KEY_NAME, Role.ADMIN)} if env_key else {}
        self._refresh = refresh_seconds
        self._holders: dict[str, Holder] = {}
        self._loaded_at = -float("inf")
        self._loading: asyncio.Future[None] | None = None

    async def current(self) -> dict[str, Holder]:
        """Holders by key hash, never older than `refresh_seconds`: a stale table is re-read
        (once, however many calls wait for it) before anyone is let in with it."""
        if time.monotonic() - self._loaded_at >= self._refresh:
            if self._loading is None:
                self._loading = asyncio.ensure_future(asyncio.to_thread(self._load))
                self._loading.add_done_callback(self._loaded)
            await asyncio.shield(self._loading)
        return self._holders

    def _loaded(self, future: asyncio.Future[None]) -> None:
        self._loading = None
        if not future.cancelled() and future.exception() is not None:
            # Once per failed read, however many calls were waiting on it.
            log.error("reading the API keys failed: %s", future.exception())

    def _load(self) -> None:
        started = time.monotonic()
        with self._engine.connect() as conn:
            rows = api_keys.list_keys(conn)
        holders = dict(self._env)
        for row in rows:
            role = Role.__members__.get(row.role.upper())
            if role is None:  # set outside the CLI: this key lets nobody in
                log.warning("API key %r has an unknown role %r", row.name, row.role[:20])
                continue
            holders.setdefault(row.key_hash, Holder(row.name, role))
        self._holders = holders
        self._loaded_at = started

    def close(self) -> None:
        self._engine.dispose()
