"""Fuzz every RPC of flowrpc.v1 through a real server in a child process: random requests built
from the descriptors, mutated valid requests (real ids, so calls reach storage), undecodable
bytes, and the hostile shapes of issue 14. No call may answer INTERNAL or UNKNOWN, time out,
echo its input at length, or answer more than a default client accepts; afterwards the server
still serves, data written before is intact, its memory stayed bounded and no background pass
failed.

FLOWRPC_FUZZ_EXAMPLES sets examples per RPC and kind (CI: 12); FLOWRPC_FUZZ_REPORT names a
file for the figures (calls per RPC and status, findings with their requests in base64)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from fuzzing import VARIED, Rpc, all_rpcs, mutated, raw_bytes
from fuzzing import messages as message_strategy
from google.protobuf import struct_pb2, text_format
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import server_process
from helpers import (
    CANCELLED,
    COMPLETED,
    FAILED,
    FUTURE,
    PAUSED,
    RUNNING,
    SCHEDULED,
    T0,
    scheduled,
    state,
    ts,
)
from hypothesis import HealthCheck, Phase, given, settings

from flowrpc.v1 import asset_service_pb2 as asp
from flowrpc.v1 import deployment_pb2 as dep
from flowrpc.v1 import deployment_service_pb2 as ds
from flowrpc.v1 import filter_pb2 as f
from flowrpc.v1 import flow_run_pb2 as frm
from flowrpc.v1 import flow_run_service_pb2 as fr
from flowrpc.v1 import flow_service_pb2 as fl
from flowrpc.v1 import log_pb2 as lg
from flowrpc.v1 import log_service_pb2 as lsp
from flowrpc.v1 import state_pb2 as sp
from flowrpc.v1 import task_run_pb2 as trm
from flowrpc.v1 import task_run_service_pb2 as tr
from flowrpc.v1 import work_pool_service_pb2 as wp

EXAMPLES = int(os.environ.get("FLOWRPC_FUZZ_EXAMPLES", "12"))
REPORT = os.environ.get("FLOWRPC_FUZZ_REPORT")
CALL_SECONDS = 20  # no call on a database this small may take longer
# Streams that stay open for live changes: read up to their marker, then cancel; one resumed
# from a cursor says nothing until a change comes, so its deadline passing is no failure.
ENDLESS = {"WatchFlowRuns"}
LIVE_SECONDS = 1
# The server's resident memory after the fuzz, and its peak, may exceed what it was after the
# set-up by at most this much (issue 14: seven prefix-list calls took it from 95 MB to 1 GB).
RSS_GROWTH_MB = 250
FAILING = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
# What a default client refuses of an answer: a response over 4 MiB, or error metadata past its
# limit (the message and details echoing a huge input). (The server's own refusal of a large
# request says "SERVER: Received message larger than max": a limit, not a finding.)
CLIENT_REFUSALS = ("CLIENT: Received message larger than max", "received metadata size exceeds")
MAX_ERROR_MESSAGE = 2048  # an error quotes at most a short prefix of a bad value

SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # findings are collected, never shrunk
    suppress_health_check=list(HealthCheck),
)


# ---- the calls ----


@dataclass
class Finding:
    rpc: str
    problem: str
    count: int
    request: str  # short text form
    request_b64: str  # the exact bytes sent, to replay


def _until_marker(answer: Any) -> list[Any]:
    """A live stream's messages up to its marker; then the call is cancelled."""
    messages = []
    for message in answer:
        messages.append(message)
        if message.WhichOneof("event") == "marker":
            answer.cancel()
            break
    return messages


@dataclass
class Fuzzer:
    channel: grpc.Channel
    calls: Counter = field(default_factory=Counter)  # (rpc, status) -> calls
    findings: dict[tuple[str, str], Finding] = field(default_factory=dict)
    slowest: list[tuple[float, str]] = field(default_factory=list)

    def call(self, rpc: Rpc, request: Message | bytes) -> Any:
        """Calls `rpc` with a message or raw bytes; the response, or None after an error."""
        raw = request if isinstance(request, bytes) else request.SerializeToString()
        method = (self.channel.unary_stream if rpc.streaming else self.channel.unary_unary)(
            rpc.path, request_serializer=None, response_deserializer=rpc.response.FromString
        )
        started = time.monotonic()
        endless = rpc.name in ENDLESS
        try:
            answer = method(raw, timeout=LIVE_SECONDS if endless else CALL_SECONDS)
            response = (
                (_until_marker(answer) if endless else list(answer)) if rpc.streaming else answer
            )
            code, details = grpc.StatusCode.OK, ""
        except grpc.RpcError as error:
            response, code, details = None, error.code(), error.details() or ""
            if endless and code == grpc.StatusCode.DEADLINE_EXCEEDED:
                code, details = grpc.StatusCode.OK, ""  # live, with nothing to say yet
        elapsed = time.monotonic() - started
        self.slowest = sorted([*self.slowest, (elapsed, rpc.name)], reverse=True)[:5]
        self.calls[rpc.name, code.name] += 1
        if problem := self.problem(code, details):
            self.record(rpc, problem, request, raw)
        return response

    @staticmethod
    def problem(code: grpc.StatusCode, details: str) -> str | None:
        if code in FAILING or code in (
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.StatusCode.UNAVAILABLE,
        ):
            return f"{code.name}: {details[:100]}"
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED and any(
            refusal in details for refusal in CLIENT_REFUSALS
        ):
            return f"refused by a default client: {details[:100]}"
        if len(details) > MAX_ERROR_MESSAGE:
            return f"{code.name} with a {len(details)}-character message"
        return None

    def record(self, rpc: Rpc, problem: str, request: Message | bytes, raw: bytes) -> None:
        key = (rpc.name, problem)
        if key in self.findings:
            self.findings[key].count += 1
            return
        self.findings[key] = Finding(
            rpc.name, problem, 1, short(request), base64.b64encode(raw[:2_000_000]).decode()
        )

    def check(self, rpc: Rpc, problem: str, request: Message) -> None:
        """A finding the caller judged from an answer with an OK status."""
        self.record(rpc, problem, request, request.SerializeToString())


def short(request: Message | bytes, limit: int = 300) -> str:
    if isinstance(request, bytes):
        return f"raw bytes {request[:40].hex()}" + ("…" if len(request) > 40 else "")
    text = text_format.MessageToString(request, as_one_line=True)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


# ---- the data the calls aim at ----

RPCS = {rpc.name: rpc for rpc in all_rpcs()}


def rpc(name: str) -> Rpc:
    return RPCS[name]


@dataclass
class Targets:
    """A flow with a deployment, runs in several states, a task run and a work pool: real ids
    for the requests, made anew for each RPC since the fuzz changes and deletes them."""

    flow_id: str
    flow_name: str
    deployment_id: str
    deployment_name: str
    pool: str
    runs: dict[str, str]  # kind -> run id
    task_run_id: str

    @property
    def known(self) -> tuple[str, ...]:
        return (
            self.flow_id,
            self.flow_name,
            self.deployment_id,
            self.deployment_name,
            self.pool,
            "default",
            self.task_run_id,
            *self.runs.values(),
        )

    def only_mine(self) -> f.FlowFilter:
        return f.FlowFilter(id=f.FlowFilterId(any_of=f.StringList(values=[self.flow_id])))


def make_targets(fuzzer: Fuzzer, tag: str) -> Targets:
    call = fuzzer.call
    flow = call(rpc("CreateFlow"), fl.CreateFlowRequest(name=f"fuzz-{tag}")).flow
    pool = f"pool-{tag}"
    call(rpc("CreateWorkPool"), wp.CreateWorkPoolRequest(name=pool))
    deployment = call(
        rpc("CreateDeployment"),
        ds.CreateDeploymentRequest(
            deployment=dep.Deployment(flow_id=flow.id, name=f"dep-{tag}", work_pool_name=pool)
        ),
    ).deployment
    runs = {}
    for kind, proposed in {
        "scheduled": scheduled(T0),
        "future": scheduled(FUTURE),
        "running": state(RUNNING),
        "paused": state(PAUSED),
        "completed": state(COMPLETED),
    }.items():
        request = fr.CreateFlowRunRequest(
            flow_id=flow.id, deployment_id=deployment.id, name=f"{kind}-{tag}", state=proposed
        )
        runs[kind] = call(rpc("CreateFlowRun"), request).flow_run.id
    task = call(
        rpc("CreateTaskRun"),
        tr.CreateTaskRunRequest(flow_run_id=runs["running"], task_key="t", state=state(RUNNING)),
    ).task_run
    return Targets(flow.id, flow.name, deployment.id, deployment.name, pool, runs, task.id)


def data(value: Any) -> struct_pb2.Value:
    out = struct_pb2.Value()
    out.struct_value.update({"v": value})
    return out.struct_value.fields["v"]


def seeds(t: Targets) -> dict[str, Message]:
    """A valid request for each RPC; an RPC without one here is mutated from an empty request."""
    run, mine = t.runs["running"], t.only_mine()
    runs_filter = f.FlowRunFilterSet(flows=mine)
    window = {"history_start": ts(T0), "history_end": ts(FUTURE)}
    params = struct_pb2.Struct()
    params.update({"x": 1, "names": ["a", "b"], "nested": {"ok": True}})
    return {
        "CreateFlow": fl.CreateFlowRequest(name=f"new-{t.flow_name}", tags=["a"]),
        "GetFlow": fl.GetFlowRequest(id=t.flow_id),
        "GetFlowByName": fl.GetFlowByNameRequest(name=t.flow_name),
        "ListFlows": fl.ListFlowsRequest(flows=mine, limit=5),
        "DeleteFlow": fl.DeleteFlowRequest(id=t.flow_id),
        "CreateDeployment": ds.CreateDeploymentRequest(
            deployment=dep.Deployment(
                flow_id=t.flow_id, name="d2", work_pool_name=t.pool, parameters=params
            )
        ),
        "GetDeployment": ds.GetDeploymentRequest(id=t.deployment_id),
        "GetDeploymentByName": ds.GetDeploymentByNameRequest(
            flow_name=t.flow_name, deployment_name=t.deployment_name
        ),
        "ListDeployments": ds.ListDeploymentsRequest(flows=mine, limit=5),
        "DeleteDeployment": ds.DeleteDeploymentRequest(id=t.deployment_id),
        "CreateFlowRunFromDeployment": ds.CreateFlowRunFromDeploymentRequest(
            deployment_id=t.deployment_id, state=scheduled(T0), parameters=params, tags=["x"]
        ),
        "CreateFlowRun": fr.CreateFlowRunRequest(
            flow_id=t.flow_id, state=state(RUNNING), parameters=params, idempotency_key="k"
        ),
        "GetFlowRun": fr.GetFlowRunRequest(id=run),
        "ListFlowRuns": fr.ListFlowRunsRequest(filter=runs_filter, limit=3),
        "CountFlowRuns": fr.CountFlowRunsRequest(filter=runs_filter),
        "UpdateFlowRun": fr.UpdateFlowRunRequest(
            flow_run=frm.FlowRun(id=run, name="renamed", tags=["t"]),
            update_mask={"paths": ["name", "tags"]},
        ),
        "DeleteFlowRun": fr.DeleteFlowRunRequest(id=t.runs["completed"]),
        "SetFlowRunState": fr.SetFlowRunStateRequest(
            flow_run_id=run, state=state(COMPLETED, data=data({"result": 1}))
        ),
        "ResumeFlowRun": fr.ResumeFlowRunRequest(flow_run_id=t.runs["paused"], run_input=params),
        "ListFlowRunStates": fr.ListFlowRunStatesRequest(flow_run_id=run),
        "GetFlowRunGraph": fr.GetFlowRunGraphRequest(flow_run_id=run),
        "StreamFlowRunHistory": fr.StreamFlowRunHistoryRequest(
            **window, history_interval={"seconds": 86400 * 365}, filter=runs_filter
        ),
        "ReadFlowRunHistory": fr.ReadFlowRunHistoryRequest(
            **window, history_interval={"seconds": 86400 * 365}, filter=runs_filter
        ),
        "BulkSetFlowRunState": fr.BulkSetFlowRunStateRequest(
            filter=runs_filter, state=state(CANCELLED), limit=3
        ),
        "BulkDeleteFlowRuns": fr.BulkDeleteFlowRunsRequest(filter=runs_filter, limit=2),
        "CreateTaskRun": tr.CreateTaskRunRequest(
            flow_run_id=run, task_key="k2", dynamic_key="1", state=state(RUNNING)
        ),
        "StartTaskRuns": tr.StartTaskRunsRequest(
            starts=[
                tr.StartTaskRunRequest(
                    task_run=tr.CreateTaskRunRequest(
                        flow_run_id=run, task_key="s", dynamic_key=str(i), id=task_run_id
                    ),
                    state=state(RUNNING),
                )
                for i, task_run_id in enumerate(["01a232e4-58d5-7727-99cf-476e78726188", ""])
            ]
        ),
        "GetTaskRun": tr.GetTaskRunRequest(id=t.task_run_id),
        "ListTaskRuns": tr.ListTaskRunsRequest(flows=mine, limit=5),
        "SetTaskRunState": tr.SetTaskRunStateRequest(
            task_run_id=t.task_run_id, state=state(FAILED, data=data([1, 2]))
        ),
        "CreateWorkPool": wp.CreateWorkPoolRequest(name=f"{t.pool}-2", base_job_template=params),
        "GetWorkPool": wp.GetWorkPoolRequest(name=t.pool),
        "ListWorkPools": wp.ListWorkPoolsRequest(limit=5),
        "DeleteWorkPool": wp.DeleteWorkPoolRequest(name=t.pool),
        "CreateWorkQueue": wp.CreateWorkQueueRequest(work_pool_name=t.pool, name="q", priority=2),
        "ListWorkQueues": wp.ListWorkQueuesRequest(work_pool_name=t.pool),
        "CreateLogs": lsp.CreateLogsRequest(
            logs=[
                lg.LogCreate(flow_run_id=run, name="n", level=20, message="m", timestamp=ts(T0)),
                lg.LogCreate(flow_run_id=run, task_run_id=t.task_run_id, level=40),
            ]
        ),
        "ListLogs": lsp.ListLogsRequest(
            logs=lg.LogFilter(
                flow_run_id=lg.LogFilterFlowRunId(any_of=f.StringList(values=[run])),
                level=lg.LogFilterLevel(ge=10),
            ),
            limit=5,
            sort=lg.LOG_SORT_TIMESTAMP_DESC,
        ),
        "CreateAssetMaterialization": asp.CreateAssetMaterializationRequest(
            asset_keys=["s3://b/k.csv"], task_run_id=t.task_run_id, upstream_keys=["s3://b/u"]
        ),
        "ListAssets": asp.ListAssetsRequest(limit=5, materializations=3),
    }


def fenced(request: Message, t: Targets) -> Message:
    """Bulk calls select by filter: fence them to the targets' flow, so the sentinel data written
    before the fuzz stays out of their reach."""
    if request.DESCRIPTOR.name.startswith("Bulk"):
        request.filter.flows.CopyFrom(t.only_mine())
    return request


# ---- the shapes of issue 14 ----


def issue_14_shapes(t: Targets) -> Iterator[tuple[str, Message | bytes]]:
    """(RPC, request) in order: some shapes harm only the calls that follow them."""
    run, task = t.runs["running"], t.task_run_id
    by_id = f.FlowRunFilterSet(
        flow_runs=f.FlowRunFilter(id=f.FlowRunFilterId(any_of=f.StringList(values=[run])))
    )
    # 1: state data of every JSON kind, then every read of the run and its task run.
    for value in (42, "42", True, None, [1, "a"], {"a": 1.5}):
        yield (
            "SetFlowRunState",
            fr.SetFlowRunStateRequest(
                flow_run_id=run, state=state(RUNNING, data=data(value)), force=True
            ),
        )
        yield (
            "SetTaskRunState",
            tr.SetTaskRunStateRequest(
                task_run_id=task, state=state(RUNNING, data=data(value)), force=True
            ),
        )
        yield from reads_of(t, by_id)
    yield (
        "CreateFlowRun",
        fr.CreateFlowRunRequest(flow_id=t.flow_id, state=state(RUNNING, data=data(7))),
    )
    overdue = scheduled(T0)
    overdue.data.CopyFrom(data(8))
    yield "CreateFlowRun", fr.CreateFlowRunRequest(flow_id=t.flow_id, state=overdue)
    # 2: a long name and a LIKE pattern that backtracks over it.
    yield "CreateFlowRun", fr.CreateFlowRunRequest(flow_id=t.flow_id, name="a" * 200_000)
    like = f.FlowRunFilterName(like="a_" * 24_998 + "b")
    yield (
        "CountFlowRuns",
        fr.CountFlowRunsRequest(filter=f.FlowRunFilterSet(flow_runs=f.FlowRunFilter(name=like))),
    )
    # 3: prefix lists.
    for prefixes in (1_000, 50_000):
        names = f.StringList(values=[f"p{i}" for i in range(prefixes)])
        queues = f.WorkQueueFilter(name=f.WorkQueueFilterName(startswith=names))
        yield (
            "CountFlowRuns",
            fr.CountFlowRunsRequest(filter=f.FlowRunFilterSet(work_pool_queues=queues)),
        )
    # 4: queue priority overflow: the top priority, then a queue after it.
    yield (
        "CreateWorkQueue",
        wp.CreateWorkQueueRequest(work_pool_name=t.pool, name="top", priority=2**31 - 1),
    )
    yield "CreateWorkQueue", wp.CreateWorkQueueRequest(work_pool_name=t.pool, name="next")
    yield "ListWorkQueues", wp.ListWorkQueuesRequest(work_pool_name=t.pool)
    # 5: values outside what the server stores.
    nan = struct_pb2.Struct()
    nan.update({"a": float("nan"), "b": float("inf"), "c": -float("inf")})
    yield "CreateFlowRun", fr.CreateFlowRunRequest(flow_id=t.flow_id, parameters=nan)
    yield (
        "SetFlowRunState",
        fr.SetFlowRunStateRequest(
            flow_run_id=run, state=state(RUNNING, data=data(float("nan"))), force=True
        ),
    )
    before = f.FlowRunFilterExpectedStartTime(before={"seconds": 10**13})
    yield (
        "CountFlowRuns",
        fr.CountFlowRunsRequest(
            filter=f.FlowRunFilterSet(flow_runs=f.FlowRunFilter(expected_start_time=before))
        ),
    )
    yield (
        "ReadFlowRunHistory",
        fr.ReadFlowRunHistoryRequest(
            history_start=ts(T0), history_end=ts(FUTURE), history_interval={"seconds": 2**63 - 1}
        ),
    )
    yield (
        "CreateFlowRun",
        fr.CreateFlowRunRequest(
            flow_id=t.flow_id,
            state=state(SCHEDULED, details=sp.StateDetails(scheduled_time={"seconds": 10**13})),
        ),
    )
    yield (
        "CreateTaskRun",
        tr.CreateTaskRunRequest(
            flow_run_id=run, task_key="cache", cache_key="c", cache_expiration={"seconds": 10**13}
        ),
    )
    yield (
        "CountFlowRuns",
        fr.CountFlowRunsRequest(
            filter=f.FlowRunFilterSet(flow_runs=f.FlowRunFilter(name={"like": "x" * 49_999}))
        ),
    )
    many = f.StringList(values=[str(uuid.UUID(int=i)) for i in range(250_001)])
    yield (
        "CountFlowRuns",
        fr.CountFlowRunsRequest(
            filter=f.FlowRunFilterSet(flow_runs=f.FlowRunFilter(id={"any_of": many}))
        ),
    )
    for token in forged_tokens():
        yield "ListFlowRuns", fr.ListFlowRunsRequest(page_token=token)
    policy = frm.FlowRunPolicy(retries=3, retry_delay_seconds=1e300)
    retried = fr.CreateFlowRunRequest(
        flow_id=t.flow_id, state=state(RUNNING), empirical_policy=policy
    )
    yield "CreateFlowRun", retried  # the next call fails this run: its retry is 1e300 s away
    yield (
        "BulkSetFlowRunState",
        fr.BulkSetFlowRunStateRequest(
            filter=f.FlowRunFilterSet(flows=t.only_mine()), state=state(FAILED)
        ),
    )
    jitter = trm.TaskRunPolicy(retries=2, retry_delay=[1], retry_jitter_factor=1e308)
    yield (
        "CreateTaskRun",
        tr.CreateTaskRunRequest(
            flow_run_id=run, task_key="jitter", empirical_policy=jitter, state=state(RUNNING)
        ),
    )
    # 6 and 7: undecodable bytes; an id that the error would echo.
    yield "GetFlow", bytes.fromhex("0affffffff0f78")
    yield "GetFlow", fl.GetFlowRequest(id="f" * 7000)
    # NUL characters, which PostgreSQL's text and jsonb refuse (SQLite keeps them).
    nul = struct_pb2.Struct()
    nul.update({"\x00": "a\x00b"})
    yield "CreateFlow", fl.CreateFlowRequest(name="nul\x00name")
    yield "GetFlowByName", fl.GetFlowByNameRequest(name="\x00")
    yield "CreateFlowRun", fr.CreateFlowRunRequest(flow_id=t.flow_id, parameters=nul)
    yield (
        "SetFlowRunState",
        fr.SetFlowRunStateRequest(
            flow_run_id=run, state=state(RUNNING, message="\x00", data=data("\x00")), force=True
        ),
    )
    tags = f.FlowFilterTags(all_of=f.StringList(values=["\x00"]))
    yield "ListFlows", fl.ListFlowsRequest(flows=f.FlowFilter(tags=tags))
    # Long names that do not compress (PostgreSQL's index entries hold 2,704 bytes).
    yield "CreateFlow", fl.CreateFlowRequest(name=VARIED)
    yield "CreateWorkPool", wp.CreateWorkPoolRequest(name=VARIED)
    yield "CreateFlowRun", fr.CreateFlowRunRequest(flow_id=t.flow_id, idempotency_key=VARIED)
    # 8: a name larger than a default client accepts in one answer.
    yield "CreateFlow", fl.CreateFlowRequest(name="n" * (5 * 1024 * 1024))
    yield "ListFlows", fl.ListFlowsRequest()
    # 9: more intervals than a history answers.
    yield (
        "ReadFlowRunHistory",
        fr.ReadFlowRunHistoryRequest(
            history_start=ts(T0),
            history_end=ts(T0.replace(year=2034)),
            history_interval={"seconds": 1},
        ),
    )


def reads_of(t: Targets, by_id: f.FlowRunFilterSet) -> Iterator[tuple[str, Message]]:
    run = t.runs["running"]
    yield "GetFlowRun", fr.GetFlowRunRequest(id=run)
    yield "ListFlowRuns", fr.ListFlowRunsRequest(filter=by_id)
    yield "ListFlowRunStates", fr.ListFlowRunStatesRequest(flow_run_id=run)
    yield "GetFlowRunGraph", fr.GetFlowRunGraphRequest(flow_run_id=run)
    yield "GetTaskRun", tr.GetTaskRunRequest(id=t.task_run_id)
    yield "ListTaskRuns", tr.ListTaskRunsRequest(flows=t.only_mine())
    yield (
        "BulkSetFlowRunState",
        fr.BulkSetFlowRunStateRequest(filter=by_id, state=state(RUNNING), force=True),
    )


def forged_tokens() -> list[str]:
    """Tokens in the shape the server issues, for an empty filter and the default sort, with
    keys it never issued; and tokens that are not tokens at all."""
    tokens = ["", "%%%", "x" * 10_000, base64.urlsafe_b64encode(b"[1,2]").decode()]
    for sort in (b"ID_DESC", b"FLOW_RUN_SORT_ID_DESC"):
        digest = hashlib.blake2b(sort, digest_size=8).hexdigest()
        for key in ({"a": [1]}, 2**70, "x", [None], 1e308):
            payload = json.dumps([digest, key, "not-a-run"]).encode()
            tokens.append(base64.urlsafe_b64encode(payload).decode())
    return tokens


def history_is_whole(request: Message, response: Message | None) -> bool:
    """An OK history answers every interval it was asked for, not a silent first part
    (counted in the microseconds the server keeps; one interval of rounding allowed)."""

    def micros(value: Message) -> int:
        return value.seconds * 1_000_000 + value.nanos // 1000

    interval = micros(request.history_interval)
    span = micros(request.history_end) - micros(request.history_start)
    if response is None or interval <= 0 or span <= 0:
        return True
    return len(response.intervals) >= -(-span // interval) - 1


# ---- the fuzz ----


def fuzz_rpc(fuzzer: Fuzzer, target: Rpc, t: Targets) -> None:
    seed = seeds(t).get(target.name, target.request())

    @SETTINGS
    @given(message_strategy(target.request, t.known))
    def generated(request: Message) -> None:
        send(fuzzer, target, fenced(request, t))

    @SETTINGS
    @given(mutated(seed, t.known))
    def mutation(request: Message) -> None:
        send(fuzzer, target, fenced(request, t))

    @SETTINGS
    @given(raw_bytes(seed))
    def undecodable(raw: bytes) -> None:
        if target.name.startswith("Bulk"):  # a bulk call must stay fenced
            with contextlib.suppress(DecodeError):  # else the server cannot decode it either
                raw = fenced(target.request.FromString(raw), t).SerializeToString()
        fuzzer.call(target, raw)

    send(fuzzer, target, seed)
    generated()
    mutation()
    undecodable()


def send(fuzzer: Fuzzer, target: Rpc, request: Message) -> None:
    response = fuzzer.call(target, request)
    if target.name == "ReadFlowRunHistory" and not history_is_whole(request, response):
        fuzzer.check(target, "OK with fewer intervals than asked for", request)


# ---- what must hold afterwards ----


@dataclass
class Sentinel:
    flow: Message
    runs: dict[str, Message]  # run id -> FlowRun
    states: dict[str, list[str]]  # run id -> state ids


def write_sentinels(fuzzer: Fuzzer) -> Sentinel:
    """Data on ids and names the fuzz never sees."""
    flow = fuzzer.call(rpc("CreateFlow"), fl.CreateFlowRequest(name=f"s-{uuid.uuid4()}")).flow
    runs = {}
    for number, proposed in enumerate(
        [scheduled(FUTURE), state(RUNNING), state(COMPLETED, data=data({"r": [1, "x"]}))]
    ):
        request = fr.CreateFlowRunRequest(
            flow_id=flow.id, name=f"s-{number}", state=proposed, tags=["sentinel"]
        )
        run = fuzzer.call(rpc("CreateFlowRun"), request).flow_run
        runs[run.id] = run
    return Sentinel(flow, runs, read_states(fuzzer, list(runs)))


def read_states(fuzzer: Fuzzer, run_ids: list[str]) -> dict[str, list[str]]:
    states = {}
    for run_id in run_ids:
        request = fr.ListFlowRunStatesRequest(flow_run_id=run_id)
        states[run_id] = [s.id for s in fuzzer.call(rpc("ListFlowRunStates"), request).states]
    return states


STABLE = ("id", "name", "flow_id", "tags", "parameters", "state", "run_count", "start_time")


def assert_intact(fuzzer: Fuzzer, sentinel: Sentinel) -> None:
    flow = fuzzer.call(rpc("GetFlow"), fl.GetFlowRequest(id=sentinel.flow.id))
    assert flow is not None and flow.flow == sentinel.flow
    for run_id, before in sentinel.runs.items():
        after = fuzzer.call(rpc("GetFlowRun"), fr.GetFlowRunRequest(id=run_id))
        assert after is not None, f"sentinel run {run_id} is unreadable"
        for name in STABLE:
            assert getattr(after.flow_run, name) == getattr(before, name), (run_id, name)
    assert read_states(fuzzer, list(sentinel.runs)) == sentinel.states


def read_everything(fuzzer: Fuzzer) -> None:
    """Every page of runs and flows reads with a default client."""
    token = None
    while token != "":
        page = fuzzer.call(rpc("ListFlowRuns"), fr.ListFlowRunsRequest(page_token=token or ""))
        token = page.next_page_token if page is not None else ""
    offset = 0
    while (page := fuzzer.call(rpc("ListFlows"), fl.ListFlowsRequest(offset=offset))) and (
        page.flows
    ):
        offset += len(page.flows)


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {key} for process {pid}")


# ---- the test ----


@pytest.fixture
def fuzzed_server(database_url, tmp_path) -> Iterator[tuple[Any, str, Path]]:
    """A server in a child process, with its log in a file."""
    log = tmp_path / "server.log"
    with server_process(database_url, log=log, late_runs_loop_seconds=0.5) as (process, address):
        yield process, address, log


def test_no_request_breaks_the_server(fuzzed_server):
    process, address, log = fuzzed_server
    with grpc.insecure_channel(address) as channel:  # a default client: answers up to 4 MiB
        fuzzer = Fuzzer(channel)
        sentinel = write_sentinels(fuzzer)
        rss_before = rss_mb(process.pid)
        shapes = make_targets(fuzzer, "shapes")
        for name, request in issue_14_shapes(shapes):
            if isinstance(request, bytes):
                fuzzer.call(rpc(name), request)
            else:
                send(fuzzer, rpc(name), request)
        for number, target in enumerate(RPCS.values()):
            fuzz_rpc(fuzzer, target, make_targets(fuzzer, f"{number}-{target.name}"))
        time.sleep(1)  # a background pass over what the fuzz left

        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        read_everything(fuzzer)
        assert_intact(fuzzer, sentinel)
        rss_after, rss_peak = rss_mb(process.pid), rss_mb(process.pid, "VmHWM")
    report(fuzzer, rss_before, rss_after, rss_peak)
    failures = [
        f"{x.rpc} x{x.count}: {x.problem} <- {x.request[:160]}"
        for x in sorted(fuzzer.findings.values(), key=lambda x: (x.problem, x.rpc))
    ]
    failed_passes = [line for line in log.read_text().splitlines() if "pass failed" in line]
    if failed_passes:
        failures.append(f"background passes failed {len(failed_passes)} times: {failed_passes[0]}")
    for name, grown in (("after", rss_after), ("at its peak", rss_peak)):
        if grown - rss_before >= RSS_GROWTH_MB:
            failures.append(f"server memory {name}: {rss_before:.0f} -> {grown:.0f} MB")
    assert not failures, f"{len(failures)} kinds of failure:\n" + "\n".join(failures)


def report(fuzzer: Fuzzer, rss_before: float, rss_after: float, rss_peak: float) -> None:
    if not REPORT:
        return
    statuses = Counter()
    for (_, code), calls in fuzzer.calls.items():
        statuses[code] += calls
    Path(REPORT).write_text(
        json.dumps(
            {
                "examples": EXAMPLES,
                "rpcs": len(RPCS),
                "calls": sum(fuzzer.calls.values()),
                "statuses": dict(statuses),
                "by_rpc": {f"{name} {code}": n for (name, code), n in sorted(fuzzer.calls.items())},
                "slowest": fuzzer.slowest,
                "rss_mb": {"before": rss_before, "after": rss_after, "peak": rss_peak},
                "findings": [x.__dict__ for x in fuzzer.findings.values()],
            },
            indent=1,
        )
    )
