"""flowrpc: a flow-run orchestration service with a gRPC API, and a workflow SDK whose names
follow Prefect's (`from flowrpc import flow, task`)."""

from flowrpc.client import get_client
from flowrpc.flows import Flow, flow
from flowrpc.futures import PrefectFuture
from flowrpc.logging import get_run_logger
from flowrpc.tasks import Task, task
from flowrpc.utilities.annotations import unmapped

__all__ = [
    "Flow",
    "PrefectFuture",
    "Task",
    "flow",
    "get_client",
    "get_run_logger",
    "task",
    "unmapped",
]
