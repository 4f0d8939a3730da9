"""docs/api.md, made from the protos (services, RPCs and their comments), server/access.py (the
role each RPC needs) and the error reasons below. `make api-doc` writes it;
tests/unit/test_api_doc.py checks it is fresh and that the reasons match what the server raises.

Reasons an RPC can return beyond the common ones are listed here by hand, per RPC: the servicers
raise them through storage and shared helpers, so a listing is clearer than an analysis. An RPC
added to the protos fails the test until it has an entry (an empty tuple if it adds none).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

from google.protobuf.descriptor import FileDescriptor

from flowrpc.server.access import REQUIRED_ROLES
from flowrpc.server.app import SERVICES

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
# Every service the server registers, in its order.
FILES: tuple[FileDescriptor, ...] = tuple(messages.DESCRIPTOR for messages, *_ in SERVICES)

# Reasons every RPC can return: (reason, gRPC code, when).
COMMON: tuple[tuple[str, str, str], ...] = (
    ("INVALID_ARGUMENT", "INVALID_ARGUMENT", "a malformed field: BadRequest names each one"),
    ("LIMIT_EXCEEDED", "INVALID_ARGUMENT", "a field over a request limit (the setting is named)"),
    ("UNAUTHENTICATED", "UNAUTHENTICATED", "keys exist and the call has none, or an unknown one"),
    ("PERMISSION_DENIED", "PERMISSION_DENIED", "the key's role is below the RPC's role"),
    ("API_KEYS_UNAVAILABLE", "UNAVAILABLE", "the server cannot read its API keys now; retry"),
    ("STATEMENT_TIMEOUT", "RESOURCE_EXHAUSTED", "a query ran past statement_timeout_seconds"),
    ("RESPONSE_TOO_LARGE", "RESOURCE_EXHAUSTED", "the answer would exceed 4 MiB; ask for less"),
)

# Reasons of one RPC alone, with their codes.
WATCH = {
    "WATCH_CURSOR_EXPIRED": "OUT_OF_RANGE",
    "WATCH_CURSOR_UNKNOWN": "FAILED_PRECONDITION",
    "TOO_MANY_WATCHERS": "RESOURCE_EXHAUSTED",
    "SERVER_STOPPING": "UNAVAILABLE",
}

FLOW_RUN = ("FLOW_RUN_NOT_FOUND",)
WORK_QUEUE = ("WORK_POOL_NOT_FOUND", "WORK_QUEUE_NOT_FOUND")

# Reasons beyond COMMON, per "Service/Rpc".
REASONS: dict[str, tuple[str, ...]] = {
    "FlowService/CreateFlow": (),
    "FlowService/GetFlow": ("FLOW_NOT_FOUND",),
    "FlowService/GetFlowByName": ("FLOW_NOT_FOUND",),
    "FlowService/ListFlows": (),
    "FlowService/DeleteFlow": ("FLOW_NOT_FOUND",),
    "FlowRunService/CreateFlowRun": ("FLOW_NOT_FOUND", *WORK_QUEUE),
    "FlowRunService/GetFlowRun": FLOW_RUN,
    "FlowRunService/ListFlowRuns": (),
    "FlowRunService/CountFlowRuns": (),
    "FlowRunService/UpdateFlowRun": FLOW_RUN,
    "FlowRunService/DeleteFlowRun": FLOW_RUN,
    "FlowRunService/SetFlowRunState": FLOW_RUN,
    "FlowRunService/ResumeFlowRun": FLOW_RUN,
    "FlowRunService/ListFlowRunStates": FLOW_RUN,
    "FlowRunService/GetFlowRunGraph": FLOW_RUN,
    "FlowRunService/StreamFlowRunHistory": (),
    "FlowRunService/ReadFlowRunHistory": (),
    "FlowRunService/BulkSetFlowRunState": (),
    "FlowRunService/BulkDeleteFlowRuns": (),
    "FlowRunService/CreateFlowRuns": (),  # each run's failure is a result, not the call's status
    "FlowRunService/WatchFlowRuns": tuple(WATCH),
    "FlowRunService/StartFlowRun": ("FLOW_NOT_FOUND", *WORK_QUEUE),
    "DeploymentService/CreateDeployment": ("FLOW_NOT_FOUND", *WORK_QUEUE),
    "DeploymentService/GetDeployment": ("DEPLOYMENT_NOT_FOUND",),
    "DeploymentService/GetDeploymentByName": ("DEPLOYMENT_NOT_FOUND",),
    "DeploymentService/ListDeployments": (),
    "DeploymentService/DeleteDeployment": ("DEPLOYMENT_NOT_FOUND",),
    "DeploymentService/CreateFlowRunFromDeployment": ("DEPLOYMENT_NOT_FOUND", *WORK_QUEUE),
    "WorkPoolService/CreateWorkPool": ("WORK_POOL_ALREADY_EXISTS",),
    "WorkPoolService/GetWorkPool": ("WORK_POOL_NOT_FOUND",),
    "WorkPoolService/ListWorkPools": (),
    "WorkPoolService/DeleteWorkPool": ("WORK_POOL_NOT_FOUND",),
    "WorkPoolService/CreateWorkQueue": ("WORK_POOL_NOT_FOUND", "WORK_QUEUE_ALREADY_EXISTS"),
    "WorkPoolService/ListWorkQueues": ("WORK_POOL_NOT_FOUND",),
    "TaskRunService/CreateTaskRun": (*FLOW_RUN, "TASK_RUN_ALREADY_EXISTS"),
    "TaskRunService/GetTaskRun": ("TASK_RUN_NOT_FOUND",),
    "TaskRunService/ListTaskRuns": (),
    "TaskRunService/SetTaskRunState": ("TASK_RUN_NOT_FOUND",),
    "TaskRunService/StartTaskRun": (*FLOW_RUN, "TASK_RUN_ALREADY_EXISTS"),
    "TaskRunService/SetTaskRunStates": ("TASK_RUN_NOT_FOUND",),
    "TaskRunService/StartTaskRuns": (*FLOW_RUN, "TASK_RUN_ALREADY_EXISTS"),
    "LogService/CreateLogs": (*FLOW_RUN, "TASK_RUN_NOT_FOUND"),
    "LogService/ListLogs": (),
    "AssetService/CreateAssetMaterialization": ("TASK_RUN_NOT_FOUND",),
    "AssetService/ListAssets": (),
}


def code_of(reason: str) -> str:
    """The gRPC code a reason comes with."""
    for suffix in ("NOT_FOUND", "ALREADY_EXISTS"):
        if reason.endswith("_" + suffix):
            return suffix
    if reason in WATCH:
        return WATCH[reason]
    return next(code for common, code, _ in COMMON if common == reason)


def comments(path: Path) -> dict[str, str]:
    """The comment above each service ("Service") and RPC ("Service/Rpc") of a proto file, as
    one paragraph."""
    found: dict[str, str] = {}
    service = ""
    block: list[str] = []
    for line in path.read_text().splitlines():
        text = line.strip()
        if text.startswith("//"):
            block.append(text.removeprefix("//").strip())
            continue
        if match := re.match(r"service (\w+) \{", text):
            service = match[1]
            found[service] = " ".join(block)
        elif match := re.match(r"rpc (\w+)\(", text):
            found[f"{service}/{match[1]}"] = " ".join(block)
        block = []
    return found


def rpcs() -> Iterator[tuple[str, str, str]]:
    """(service, rpc, "Request → Response") for every RPC of every service, in proto order."""
    for file in FILES:
        for service in file.services_by_name.values():
            for method in service.methods:
                stream = "stream " if method.server_streaming else ""
                shape = f"`{method.input_type.name}` → {stream}`{method.output_type.name}`"
                yield service.name, method.name, shape


def render() -> str:
    """docs/api.md."""
    lines = [
        "# The flowrpc API (flowrpc.v1)",
        "",
        "<!-- Generated by `make api-doc` from protos/, the roles in src/flowrpc/server/access.py",
        "and the reasons in tests/api_doc.py; tests/unit/test_api_doc.py keeps it fresh. -->",
        "",
        "Every service below is in package `flowrpc.v1` (protos/flowrpc/v1). A failed call carries",
        "a gRPC status code and, in its rich status (`grpc-status-details-bin`), a",
        '`google.rpc.ErrorInfo` with a stable `reason` and domain `"flowrpc"`; INVALID_ARGUMENT',
        "also carries a `google.rpc.BadRequest` naming each field at fault. Orchestration",
        "outcomes (REJECT, WAIT, ABORT) are normal responses, not errors.",
        "",
        "Roles: while no API key exists the service is open; once one does, every call needs",
        "`authorization: Bearer <key>` with at least the role shown (read < write < admin).",
        "",
        "JSON fields (parameters, context, labels, job variables, state data, run input) are",
        "`google.protobuf.Struct` or `Value`, whose numbers are doubles: integers are exact within",
        "±2^53 only, so send larger ones (64-bit ids) as strings. The Python client refuses them",
        "with a ValueError rather than let them round.",
        "",
        "## Reasons any RPC can return",
        "",
        "| Reason | Code | When |",
        "| --- | --- | --- |",
        *(f"| `{reason}` | {code} | {when} |" for reason, code, when in COMMON),
        "",
        "Besides these, gRPC itself answers RESOURCE_EXHAUSTED without a reason for a request over",
        "max_request_bytes, DEADLINE_EXCEEDED past the caller's deadline and UNAVAILABLE while the",
        "server cannot be reached.",
    ]
    described: dict[str, str] = {}
    for file in FILES:
        described.update(comments(PROTOS / file.name))
    current = ""
    for service, rpc, shape in rpcs():
        if service != current:
            current = service
            lines += [
                "",
                f"## {service}",
                "",
                described.get(service, ""),
                "",
                "| RPC | Request → response | Role | Other reasons | What it does |",
                "| --- | --- | --- | --- | --- |",
            ]
        role = REQUIRED_ROLES.get(f"flowrpc.v1.{service}", {}).get(rpc)
        reasons = REASONS.get(f"{service}/{rpc}", ())
        listed = ", ".join(f"`{reason}` ({code_of(reason)})" for reason in reasons) or "none"
        role_name = role.label if role is not None else "admin"
        description = described.get(f"{service}/{rpc}", "").replace("|", "\\|")
        lines.append(f"| `{rpc}` | {shape} | {role_name} | {listed} | {description} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
