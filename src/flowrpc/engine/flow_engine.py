"""The engine of one flow call: a flow run (and, inside another flow, the parent task run that
links it as a subflow), its parameters validated, then attempts until a final state. Retries are
the server's decision (AwaitingRetry)."""

from __future__ import annotations

import functools
import inspect
from types import SimpleNamespace
from typing import Any

from pydantic_core import to_jsonable_python

from flowrpc import results
from flowrpc.client.errors import ObjectNotFound
from flowrpc.context import FlowRunContext
from flowrpc.engine.base import RunEngine
from flowrpc.engine.client import sdk_client
from flowrpc.engine.reporter import flush_reported_states
from flowrpc.exceptions import ParameterTypeError
from flowrpc.futures import PrefectFuture, resolve_futures
from flowrpc.schemas._proto import inexact_integer
from flowrpc.schemas.objects import State, TaskRunResult
from flowrpc.schemas.responses import OrchestrationResult
from flowrpc.states import Completed, Failed, Pending, Running

# Flow ids by (server, flow name): a flow's second call skips creating the flow.
_flow_ids: dict[tuple[str, str], Any] = {}

# Parameters are recorded as JSON; one larger than this is recorded as a placeholder.
MAX_RECORDED_PARAMETER_BYTES = 64 * 1024


def jsonable_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """The parameters as the server records them: JSON, with a short stand-in for values JSON
    cannot say or that are too large to record."""
    recorded = {}
    for name, value in parameters.items():
        try:
            encoded = to_jsonable_python(value, fallback=lambda v: f"<{type(v).__name__}>")
        except Exception:
            encoded = f"<{type(value).__name__}>"
        if len(repr(encoded)) > MAX_RECORDED_PARAMETER_BYTES:
            encoded = f"<{type(value).__name__}: too large to record>"
        elif inexact_integer(encoded) is not None:  # the server's JSON would round it
            encoded = f"<{type(value).__name__}: an integer beyond ±2**53>"
        recorded[name] = encoded
    return recorded


class FlowRunEngine(RunEngine):
    kind = "Flow run"

    def __init__(self, flow: Any, bound: inspect.BoundArguments) -> None:
        super().__init__()
        self.flow = flow
        self.bound = bound
        self.parent = FlowRunContext.get()
        self.client = sdk_client()
        self.timeout_seconds = flow.timeout_seconds
        self.flow_run: Any = None
        self.parent_task_run_id: Any = None
        self._start: dict[str, Any] | None = None  # a create left to StartFlowRun
        self.attempts = 0  # bodies started

    def setup(self) -> None:
        """Validates the parameters; a bad parameter creates the flow run (Pending) and ends it
        Failed before its body starts. Otherwise the run is created by its first Running
        proposal (StartFlowRun: one round trip for both)."""
        validation_error = None
        try:
            self.flow.validate(self.bound)
        except ParameterTypeError as error:
            validation_error = error
        parameters = self.flow.parameters_of(self.bound)
        if self.parent is not None:
            self.parent_task_run_id = self._parent_task_run(parameters)
        fields = {
            "name": self.flow.run_name(parameters),
            "parameters": jsonable_parameters(parameters),
            "parent_task_run_id": self.parent_task_run_id,
            "state": Pending(),
        }
        if validation_error is None:
            self._start = fields
            return
        self._created(self._with_flow_id(self.client.create_flow_run, fields))
        result = self.set_state(Failed(message=str(validation_error)[:10_000]))
        self.state, self.error = result.state, validation_error

    def propose_running(self) -> OrchestrationResult:
        if self._start is None:
            return super().propose_running()
        fields, self._start = self._start, None
        start = functools.partial(self.client.start_flow_run, running=Running())
        flow_run, result = self._with_flow_id(start, fields)
        self._created(flow_run)
        return result

    def _created(self, flow_run: Any) -> None:
        self.flow_run, self.run_id, self.state = flow_run, flow_run.id, flow_run.state

    def _with_flow_id(self, create: Any, fields: dict[str, Any]) -> Any:
        """create(flow, **fields) with the flow's id when this process knows it (which saves a
        CreateFlow call), learning it otherwise."""
        key = (self.client.api_url, self.flow.name)
        if (flow_id := _flow_ids.get(key)) is not None:
            try:
                return create(self.flow, **fields, flow_id=flow_id)
            except ObjectNotFound:  # the flow was deleted since: create it again
                _flow_ids.pop(key, None)
        output = create(self.flow, **fields)
        flow_run = output[0] if isinstance(output, tuple) else output
        _flow_ids[key] = flow_run.flow_id
        return output

    def _parent_task_run(self, parameters: dict[str, Any]) -> Any:
        """The task run in the parent flow run that stands for this subflow."""
        parent = self.parent
        inputs = {}
        for name, value in parameters.items():
            producer = parent.producer_of(value)
            inputs[name] = [TaskRunResult(id=producer)] if producer is not None else []
        stand_in = SimpleNamespace(name=self.flow.name, task_key=self.flow.name, tags=())
        stand_in.version = self.flow.version
        task_run = self.client.create_task_run(
            stand_in,
            parent.flow_run.id,
            parent.next_dynamic_key(self.flow.name),
            state=Pending(),
            task_inputs=inputs,
        )
        return task_run.id

    def set_state(self, state: State, force: bool = False) -> OrchestrationResult:
        if state.is_final() or state.is_failed():
            flush_reported_states()  # the run's task states land before its own final state
        return self.client.set_flow_run_state(self.run_id, state, force=force)

    def completed_state(self, value: Any) -> State:
        state = Completed()
        if self.flow.persist_result:
            state.data = results.persist(
                value,
                results.resolve_serializer(self.flow.result_serializer),
                results.storage_path(self.flow.result_storage),
            )
        return state

    def resolve_return(self, value: Any) -> Any:
        """A flow that returns futures returns their results (a failed one fails the flow);
        a returned State stands for its result."""
        value = resolve_futures(value, lambda f: f.result())
        if isinstance(value, State):
            return value.result()
        return value

    def succeed(self, value: Any) -> None:
        super().succeed(value)
        if self.parent is not None:
            self.parent.record_result(value, self.parent_task_run_id)

    def run_context(self, parameters: dict[str, Any]) -> FlowRunContext:
        runner = self.flow.task_runner.duplicate()
        self.attempts += 1
        return FlowRunContext(
            flow=self.flow,
            flow_run=self.flow_run,
            parameters=parameters,
            log_prints=bool(self.flow.log_prints),
            task_runner=runner,
            persist_result=self.flow.persist_result,
            result_serializer=self.flow.result_serializer,
            result_storage=self.flow.result_storage,
            first_attempt=self.attempts == 1 and self.flow_run.run_count <= 1,
        )


__all__ = ["FlowRunEngine", "PrefectFuture"]
