"""The client rides out a server restart: calls that are safe to repeat are retried on
UNAVAILABLE until the server is back on its port; a create without an idempotency key is not."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from harness import free_port, running_server, sqlite_settings

from flowrpc import get_client
from flowrpc.client import ServiceUnavailable, SyncFlowRPCClient
from flowrpc.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId
from flowrpc.settings import Settings
from flowrpc.states import Running

FLOW = SimpleNamespace(name="etl")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A server on a fixed port, so it can be stopped and started again where clients expect it."""
    return sqlite_settings(tmp_path).model_copy(update={"port": free_port()})


@pytest.fixture
def seed(settings: Settings) -> SimpleNamespace:
    """A deployment and a Pending run, made on a server that is stopped afterwards."""
    with (
        running_server(settings),
        get_client(sync_client=True, api_url=_address(settings)) as client,
    ):
        flow_id = client.create_flow_from_name(FLOW.name)
        deployment_id = client.create_deployment(flow_id, "nightly")
        run = client.create_flow_run(FLOW)
    return SimpleNamespace(deployment_id=deployment_id, run=run)


def _address(settings: Settings) -> str:
    return f"127.0.0.1:{settings.port}"


@contextmanager
def back_after(settings: Settings, seconds: float) -> Iterator[threading.Event]:
    """The server is down now; it starts again on its port after `seconds` (the event is set
    then) and serves until the block ends."""
    started, done = threading.Event(), threading.Event()

    def serve() -> None:
        time.sleep(seconds)
        with running_server(settings):
            started.set()
            done.wait()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield started
    finally:
        done.set()
        thread.join()


def _runs_of(client: SyncFlowRPCClient, deployment_id: Any) -> list[Any]:
    deployment = FlowRunFilterDeploymentId(any_=[deployment_id])
    return client.read_flow_runs(flow_run_filter=FlowRunFilter(deployment_id=deployment))


def _read(client: SyncFlowRPCClient, seed: SimpleNamespace) -> None:
    assert client.read_flow_run(seed.run.id).id == seed.run.id


def _keyed_run_from_deployment(client: SyncFlowRPCClient, seed: SimpleNamespace) -> None:
    client.create_flow_run_from_deployment(seed.deployment_id, idempotency_key="nightly-1")
    assert len(_runs_of(client, seed.deployment_id)) == 1


def _keyed_run(client: SyncFlowRPCClient, seed: SimpleNamespace) -> None:
    run = client.create_flow_run(FLOW, idempotency_key="etl-1")
    assert client.create_flow_run(FLOW, idempotency_key="etl-1").id == run.id


def _transition(client: SyncFlowRPCClient, seed: SimpleNamespace) -> None:
    assert client.set_flow_run_state(seed.run.id, Running()).status == "ACCEPT"
    states = client.read_flow_run_states(seed.run.id)
    assert [state.type.value for state in states] == ["PENDING", "RUNNING"]


def _history_stream(client: SyncFlowRPCClient, seed: SimpleNamespace) -> None:
    now = datetime.now(UTC)
    intervals = list(
        client.stream_flow_run_history(now - timedelta(hours=1), now, timedelta(minutes=10))
    )
    assert len(intervals) == 6


SAFE_CALLS: dict[str, Callable[[SyncFlowRPCClient, SimpleNamespace], None]] = {
    "read": _read,
    "keyed run from deployment": _keyed_run_from_deployment,
    "keyed run": _keyed_run,
    "transition with its transition id": _transition,
    "history stream": _history_stream,
}


@pytest.mark.parametrize("call", SAFE_CALLS.values(), ids=SAFE_CALLS.keys())
def test_a_safe_call_made_while_the_server_is_down_succeeds_once_it_is_back(
    settings: Settings, seed: SimpleNamespace, call: Callable[..., None]
):
    with (
        back_after(settings, 1.0),
        get_client(sync_client=True, api_url=_address(settings)) as client,
    ):
        call(client, seed)


async def test_the_async_client_retries_a_keyed_create_across_a_restart(
    settings: Settings, seed: SimpleNamespace
):
    with back_after(settings, 1.0):
        async with get_client(api_url=_address(settings)) as client:
            run = await client.create_flow_run_from_deployment(
                seed.deployment_id, idempotency_key="nightly-1"
            )
            assert (await client.read_flow_run(run.id)).idempotency_key == "nightly-1"


def test_a_create_without_idempotency_key_is_not_retried(settings: Settings, seed: SimpleNamespace):
    with (
        back_after(settings, 1.5) as started,
        get_client(sync_client=True, api_url=_address(settings)) as client,
    ):
        began = time.monotonic()
        with pytest.raises(ServiceUnavailable):
            client.create_flow_run_from_deployment(seed.deployment_id)
        # It failed at once instead of waiting for the server (which a keyed create, made
        # after it in the same outage, does).
        assert time.monotonic() - began < 1.0
        assert not started.is_set()
        client.create_flow_run_from_deployment(seed.deployment_id, idempotency_key="nightly-1")
        assert started.is_set()
        assert len(_runs_of(client, seed.deployment_id)) == 1
