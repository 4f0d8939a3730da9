"""Several replicas on one PostgreSQL database: concurrent conflicting transitions stay correct,
and a replica killed mid-load loses nothing acknowledged while the other takes over."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from harness import postgres_schema, running_server, server_process

from flowrpc import get_client
from flowrpc.schemas.filters import FlowRunFilter
from flowrpc.server.orchestration import FlowPolicy, orchestrate_flow_run
from flowrpc.server.orchestration.records import (
    FlowRunRecord,
    SetStateStatus,
    State,
    StateDetails,
    StateType,
)
from flowrpc.settings import Settings
from flowrpc.states import Completed, Pending, Running, Scheduled

POSTGRES_URL = os.environ.get("FLOWRPC_TEST_DATABASE_URL")
REQUIRED = os.environ.get("FLOWRPC_TEST_REQUIRE_POSTGRES") == "1"
pytestmark = pytest.mark.skipif(
    not POSTGRES_URL and not REQUIRED,
    reason="set FLOWRPC_TEST_DATABASE_URL to a PostgreSQL URL to run the replica tests",
)
RUNS, CLIENTS, RUNS_PER_CLIENT = 200, 32, 50
FLOW = SimpleNamespace(name="contended")


@pytest.fixture
def shared_database() -> Iterator[str]:
    if not POSTGRES_URL:
        pytest.fail("FLOWRPC_TEST_REQUIRE_POSTGRES=1 but FLOWRPC_TEST_DATABASE_URL is not set")
    with postgres_schema(POSTGRES_URL) as url:
        yield url


@contextmanager
def two_replicas(url: str) -> Iterator[list[str]]:
    settings = Settings(database_url=url, port=0)
    with running_server(settings) as first, running_server(settings) as second:
        yield [f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"]


def micros(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1_000_000)


def assert_policy_allows(history: list) -> None:
    """Replays the history through CORE: every state after the first must be one CORE accepts
    from its predecessor (the test only proposes unforced states). A lost update shows up as,
    for example, PENDING followed by PENDING."""
    run = FlowRunRecord(id="replay", flow_id="flow")
    previous = None
    for state in history:
        proposed = State(
            id=str(uuid.uuid4()),
            type=StateType(state.type.value),
            name=state.name,
            timestamp=micros(state.timestamp),
            details=StateDetails(scheduled_time=micros(state.state_details.scheduled_time)),
        )
        policy = FlowPolicy.MINIMAL if previous is None else FlowPolicy.CORE
        decision = orchestrate_flow_run(
            run, previous, proposed, policy=policy, now=proposed.timestamp
        )
        assert decision.status == SetStateStatus.ACCEPT, [s.name for s in history]
        previous = decision.state


async def test_two_replicas_and_32_clients_never_lose_an_update(shared_database):
    with two_replicas(shared_database) as addresses:
        async with get_client(api_url=addresses[0]) as setup:
            past = Scheduled(scheduled_time=datetime.now(UTC) - timedelta(minutes=5))
            runs = [
                (await setup.create_flow_run(FLOW, state=past.model_copy())).id for _ in range(RUNS)
            ]
        accepted: list[str] = []

        async def client(number: int) -> None:
            chosen = random.Random(number).sample(runs, RUNS_PER_CLIENT)
            async with get_client(api_url=addresses[number % 2]) as c:
                for new_state in (Pending, Running, Completed):
                    for run_id in chosen:  # any failed call fails the test
                        result = await c.set_flow_run_state(run_id, new_state())
                        if result.status.value == "ACCEPT":
                            accepted.append(str(result.state.state_details.transition_id))

        await asyncio.wait_for(asyncio.gather(*(client(n) for n in range(CLIENTS))), 240)

        assert len(accepted) == len(set(accepted)), "a transition_id was accepted twice"
        async with get_client(api_url=addresses[1]) as check:
            for run_id in runs:
                run = await check.read_flow_run(run_id)
                history = await check.read_flow_run_states(run_id)
                assert_policy_allows(history)
                assert run.run_count == sum(s.type.value == "RUNNING" for s in history)
                assert history[-1].id == run.state.id
                assert run.state.type.value == "COMPLETED"


async def test_a_killed_replica_loses_nothing_acknowledged(shared_database):
    fast = {"late_runs_loop_seconds": 0.2, "late_runs_after_seconds": 1}
    with server_process(shared_database, **fast) as (first, first_address):
        # Let the first replica lead the background services before the second starts.
        async with get_client(api_url=first_address) as c:
            flow_id = await c.create_flow_from_name(FLOW.name)
            deployment_id = await c.create_deployment(flow_id=flow_id, name="steady")
            await wait_until_late(c, deployment_id, within=5)
        with server_process(shared_database, **fast) as (_, second_address):
            both = [first_address, second_address]
            acknowledged = await load_while_killing(first, both, deployment_id)
            async with get_client(api_url=second_address) as survivor:
                keys = FlowRunFilter(idempotency_key={"any_": list(acknowledged)})
                found = [run.id async for run in survivor.iter_flow_runs(flow_run_filter=keys)]
                assert sorted(map(str, found)) == sorted(acknowledged.values())
                # Late-run marking moved to the survivor.
                await wait_until_late(survivor, deployment_id, within=10)


async def load_while_killing(victim, addresses: list[str], deployment_id) -> dict[str, str]:
    """Creates runs through both replicas for a while, SIGKILLs `victim` half way; a create the
    client saw fail is retried with the same idempotency key, as a user would. Returns the
    acknowledged runs by idempotency key."""
    acknowledged: dict[str, str] = {}
    async with get_client(api_url=",".join(addresses)) as c:
        started = time.monotonic()
        killed = False
        while time.monotonic() - started < 4:
            if not killed and time.monotonic() - started > 2:
                victim.send_signal(signal.SIGKILL)
                killed = True
            key = uuid.uuid4().hex
            for _ in range(20):
                try:
                    run = await c.create_flow_run_from_deployment(
                        deployment_id, state=Running(), idempotency_key=key
                    )
                    acknowledged[key] = str(run.id)
                    break
                except Exception:  # noqa: BLE001 - the dying replica's calls fail; retry
                    await asyncio.sleep(0.05)
    assert killed and len(acknowledged) > 20
    return acknowledged


async def wait_until_late(client, deployment_id, within: float) -> None:
    """Creates a run due now and waits for the background service to mark it Late."""
    due = Scheduled(scheduled_time=datetime.now(UTC))
    run = await client.create_flow_run_from_deployment(deployment_id, state=due)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if (await client.read_flow_run(run.id)).state.name == "Late":
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the run did not become Late within {within} s")
