"""The examples/ scripts, run as a user would (address from FLOWRPC_API_URL) against a real server
seeded with the healthcheck-storage-test deployment's runs; then their effect is checked."""

from __future__ import annotations

import importlib.util
import pathlib
from datetime import timedelta
from types import ModuleType

import pytest
from client_support import Seed

from flowrpc import get_client
from flowrpc.client import ObjectNotFound
from flowrpc.schemas.filters import FlowRunFilter
from flowrpc.schemas.objects import StateType

EXAMPLES = pathlib.Path(__file__).resolve().parents[3] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def run_main(module: ModuleType, kind: str, **kwargs):
    if kind == "async":
        return await module.main(**kwargs)
    return module.main_sync(**kwargs)


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_reschedule_late_runs(kind: str, seeded: Seed):
    rescheduled = await run_main(load("reschedule_late_runs"), kind)
    # The three most recent Late runs (1, 2 and 3 hours overdue) come back six hours later.
    expected = sorted(run.expected_start_time + timedelta(hours=6) for run in seeded.late[:3])
    assert sorted(run.expected_start_time for run in rescheduled) == expected
    assert all(run.deployment_id == seeded.deployment_id for run in rescheduled)
    assert all(run.state.name == "Scheduled" for run in rescheduled)
    with get_client(sync_client=True) as client:
        late = FlowRunFilter(state={"name": {"any_": ["Late"]}})
        assert client.count_flow_runs(flow_run_filter=late) == 0  # all four deleted
        for run in seeded.late:
            with pytest.raises(ObjectNotFound):
                client.read_flow_run(run.id)
        assert client.count_flow_runs() == len(seeded.all_runs) - 4 + 3


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_last_completed_runs(kind: str, seeded: Seed):
    runs = await run_main(load("last_completed_runs"), kind)
    assert [run.id for run in runs] == [run.id for run in reversed(seeded.completed)][:3]


@pytest.mark.parametrize("one_call", [False, True])
@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_bulk_cancel(kind: str, one_call: bool, seeded: Seed):
    await run_main(load("bulk_cancel"), kind, one_call=one_call)
    targets = [*seeded.late, *seeded.scheduled, *seeded.pending, *seeded.running]
    with get_client(sync_client=True) as client:
        for run in targets:
            current = client.read_flow_run(run.id)
            assert current.state.type is StateType.CANCELLED
            assert current.state.name == "Cancelled"
        for run in [*seeded.completed, *seeded.failed]:
            assert client.read_flow_run(run.id).state_type == run.state_type
        cancelled = FlowRunFilter(state={"type": {"any_": ["CANCELLED"]}})
        assert client.count_flow_runs(flow_run_filter=cancelled) == len(targets)
