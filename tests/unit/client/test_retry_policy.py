"""Which calls the client may repeat after UNAVAILABLE, and the waits between attempts."""

from __future__ import annotations

import pytest

from flowrpc.client.channel import ChannelConfig
from flowrpc.client.retries import RetryPolicy, safe_to_retry
from flowrpc.v1 import deployment_service_pb2 as deployments
from flowrpc.v1 import flow_run_service_pb2 as flow_runs
from flowrpc.v1 import flow_service_pb2 as flows
from flowrpc.v1 import state_pb2
from flowrpc.v1 import task_run_service_pb2 as task_runs


def _state(transition_id: str = "") -> state_pb2.State:
    details = state_pb2.StateDetails(transition_id=transition_id)
    return state_pb2.State(type=state_pb2.STATE_TYPE_RUNNING, state_details=details)


SAFE = [
    ("GetFlowRun", flow_runs.GetFlowRunRequest()),
    ("ListFlowRuns", flow_runs.ListFlowRunsRequest()),
    ("CountFlowRuns", flow_runs.CountFlowRunsRequest()),
    ("ReadFlowRunHistory", flow_runs.ReadFlowRunHistoryRequest()),
    ("StreamFlowRunHistory", flow_runs.StreamFlowRunHistoryRequest()),
    ("WatchFlowRuns", flow_runs.WatchFlowRunsRequest(since="c")),
    ("GetFlowRunGraph", flow_runs.GetFlowRunGraphRequest()),
    ("CreateFlow", flows.CreateFlowRequest(name="etl")),
    ("CreateFlowRun", flow_runs.CreateFlowRunRequest(idempotency_key="k")),
    (
        "CreateFlowRunFromDeployment",
        deployments.CreateFlowRunFromDeploymentRequest(idempotency_key="k"),
    ),
    ("CreateTaskRun", task_runs.CreateTaskRunRequest(flow_run_id="r", task_key="t")),
    ("SetFlowRunState", flow_runs.SetFlowRunStateRequest(state=_state("t1"))),
]
UNSAFE = [
    ("CreateFlowRun", flow_runs.CreateFlowRunRequest()),
    ("CreateFlowRun", flow_runs.CreateFlowRunRequest(idempotency_key="")),
    ("CreateFlowRunFromDeployment", deployments.CreateFlowRunFromDeploymentRequest()),
    ("CreateTaskRun", task_runs.CreateTaskRunRequest(task_key="t")),  # no run: no dedup key
    ("SetFlowRunState", flow_runs.SetFlowRunStateRequest(state=_state())),
    ("SetFlowRunState", flow_runs.SetFlowRunStateRequest(state=_state("t1"), force=True)),
    ("SetTaskRunState", task_runs.SetTaskRunStateRequest(state=_state("t1"))),
    ("UpdateFlowRun", flow_runs.UpdateFlowRunRequest()),
    ("DeleteFlowRun", flow_runs.DeleteFlowRunRequest()),
    ("BulkSetFlowRunState", flow_runs.BulkSetFlowRunStateRequest()),
    ("ResumeFlowRun", flow_runs.ResumeFlowRunRequest()),
]


@pytest.mark.parametrize(("method", "request_"), SAFE)
def test_reads_and_idempotent_writes_are_safe_to_retry(method, request_):
    assert safe_to_retry(method, request_)


@pytest.mark.parametrize(("method", "request_"), UNSAFE)
def test_writes_that_could_happen_twice_are_not(method, request_):
    assert not safe_to_retry(method, request_)
    assert list(RetryPolicy().delays(method, request_)) == []


def test_backoff_doubles_with_jitter_within_about_ten_seconds():
    for _ in range(200):
        delays = list(RetryPolicy().delays("GetFlowRun", flow_runs.GetFlowRunRequest()))
        assert len(delays) == 4
        for delay, full in zip(delays, (1, 2, 4, 4), strict=True):
            assert full / 2 <= delay <= full
        assert 5.5 <= sum(delays) <= 11


def test_retry_settings_from_arguments_or_environment(monkeypatch):
    monkeypatch.delenv("FLOWRPC_RETRY_ATTEMPTS", raising=False)
    monkeypatch.delenv("FLOWRPC_RETRY_BACKOFF_SECONDS", raising=False)
    assert ChannelConfig.from_settings().retry == RetryPolicy(attempts=5, backoff=1.0)
    monkeypatch.setenv("FLOWRPC_RETRY_ATTEMPTS", "3")
    monkeypatch.setenv("FLOWRPC_RETRY_BACKOFF_SECONDS", "0.2")
    assert ChannelConfig.from_settings().retry == RetryPolicy(attempts=3, backoff=0.2)
    off = ChannelConfig.from_settings(retry_attempts=1, retry_backoff=0).retry
    assert list(off.delays("GetFlowRun", flow_runs.GetFlowRunRequest())) == []
