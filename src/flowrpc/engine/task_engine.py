"""The engine of one task call: a task run created in the enclosing flow run, its upstream
futures resolved (they become task_inputs, the graph's edges), then attempts until a final
state. Cache hits, retries and their delays are the server's decisions.

A task whose decisions are known before the server makes them (a new run in its flow's first
attempt, with no cache key or one whose entry this process has seen, nothing persisted, retries
without a delay) runs without waiting for the server: its id is minted here, and its start and
states go through the reporter, which the server decides in order by the same rules (docs/sdk.md,
"Decisions known in the client"). Prefect 3 orchestrates tasks in the client too."""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple
from uuid import UUID, uuid4

from uuid_utils.compat import uuid7

from flowrpc import results
from flowrpc.assets import MaterializingTask, record_materialization
from flowrpc.cache_policies import KeyContext
from flowrpc.context import FlowRunContext, TaskRunContext
from flowrpc.engine import known_cache
from flowrpc.engine.base import RunEngine, cache_expiration_time
from flowrpc.engine.client import sdk_client
from flowrpc.engine.reporter import state_reporter
from flowrpc.exceptions import UpstreamTaskError
from flowrpc.futures import PrefectFuture, resolve_futures
from flowrpc.schemas._base import now
from flowrpc.schemas.actions import TaskRunStart
from flowrpc.schemas.objects import State, StateType, TaskRun, TaskRunPolicy, TaskRunResult
from flowrpc.schemas.responses import OrchestrationResult, SetStateStatus
from flowrpc.states import AwaitingRetry, Completed, Pending, Running

logger = logging.getLogger("flowrpc.engine")
MAX_DEPTH = 8  # how deep in nested lists, tuples, sets and dicts futures are looked for
# What a run started here copies (model_construct would make every default anew, slowly).
_BLANK_TASK_RUN = TaskRun.model_construct(id=UUID(int=0), name="", task_key="")


class CreateArguments(NamedTuple):
    """The arguments of a task run's create call (create_task_run or start_task_run)."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class TaskRunEngine(RunEngine):
    kind = "Task run"

    def __init__(
        self,
        task: Any,
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
        on_task_run_id: Callable[[UUID | None], None] | None = None,
        report_in_background: bool = False,
    ) -> None:
        super().__init__()
        self.report_in_background = report_in_background
        self.task = task
        self.raw_parameters = parameters
        self.wait_for = list(wait_for or ())
        self.on_task_run_id = on_task_run_id
        self.flow_context = FlowRunContext.get()
        self.client = sdk_client()
        self.timeout_seconds = task.timeout_seconds
        self.parameters: dict[str, Any] = {}
        self.cache_key: str | None = None
        self.task_run: Any = None
        self._start: CreateArguments | None = None  # a create left to StartTaskRun
        # True while this run's states go through the reporter, decided here (module docstring).
        self.decided_here = False
        self.known_hit: State | None = None  # this process's cache entry for the run's key
        self.upstream_ids: list[UUID] = []  # the task runs this one depends on

    # ---- setup ----

    def setup(self) -> None:
        """Creates the task run (Pending) with its inputs, waits for its upstream futures and
        works out its cache key. An upstream that did not complete ends this run NotReady.

        A run with nothing to wait for is created by its first Running proposal instead
        (StartTaskRun: one round trip for both)."""
        inputs, futures = self._task_inputs()
        flow_run = self.flow_context.flow_run if self.flow_context else None
        task_key = self.task.task_key
        dynamic_key = (
            self.flow_context.next_dynamic_key(task_key) if self.flow_context else uuid4().hex
        )
        create = CreateArguments(
            (self.task, flow_run.id if flow_run else None, dynamic_key),
            {"name": self._run_name(), "task_inputs": inputs},  # created Pending
        )
        if not futures and self.task.cache_key_fn is None:
            self._start = create
            self.parameters = self.raw_parameters
            self.cache_key = self._cache_key()
            if self.cache_key and not self.task.refresh_cache:
                self.known_hit = known_cache.lookup(self.client.api_url, self.cache_key)
            self.decided_here = self._decisions_known()
            return
        self._created(self.client.create_task_run, create)
        upstream_error = self._wait_upstream(futures)
        if upstream_error is not None:
            result = self.set_state(Pending(name="NotReady", message=str(upstream_error)))
            self.state, self.error = result.state, upstream_error
            return
        self.parameters = resolve_futures(self.raw_parameters, lambda f: f.result())
        self.cache_key = self._cache_key()

    def _created(self, call: Callable[..., Any], create: CreateArguments) -> Any:
        """Makes the create call with `create`'s arguments; the run's id goes to on_task_run_id
        (None when the call failed), so futures learn it."""
        output = None
        try:
            output = call(*create.args, **create.kwargs)
        finally:
            if self.on_task_run_id is not None:
                task_run = output[0] if isinstance(output, tuple) else output
                self.on_task_run_id(task_run.id if task_run is not None else None)
        self.task_run = output[0] if isinstance(output, tuple) else output
        self.run_id, self.state = self.task_run.id, self.task_run.state
        return output

    def _task_inputs(self) -> tuple[dict[str, list[TaskRunResult]], list[PrefectFuture]]:
        """Each argument's upstream task runs (futures, or results of earlier task runs)."""
        context = self.flow_context
        futures: list[PrefectFuture] = []

        def collect(value: Any, ids: list[UUID], depth: int = 0) -> None:
            if isinstance(value, PrefectFuture):
                futures.append(value)
                if (task_run_id := value.task_run_id) is not None:
                    ids.append(task_run_id)
            elif depth >= MAX_DEPTH:
                pass  # deeper (or self-containing) collections are passed as they are
            elif isinstance(value, list | tuple | set):
                for item in value:
                    collect(item, ids, depth + 1)
            elif isinstance(value, dict):
                for item in value.values():
                    collect(item, ids, depth + 1)
            if context is not None and (producer := context.producer_of(value)) is not None:
                ids.append(producer)

        inputs: dict[str, list[TaskRunResult]] = {}
        for name, value in self.raw_parameters.items():
            ids: list[UUID] = []
            collect(value, ids)
            inputs[name] = [TaskRunResult(id=i) for i in dict.fromkeys(ids)]
            self.upstream_ids.extend(ids)
        if self.wait_for:
            ids = []
            collect(self.wait_for, ids)
            inputs["wait_for"] = [TaskRunResult(id=i) for i in dict.fromkeys(ids)]
            self.upstream_ids.extend(ids)
        return inputs, futures + [f for f in self.wait_for if isinstance(f, PrefectFuture)]

    def _wait_upstream(self, futures: list[PrefectFuture]) -> UpstreamTaskError | None:
        for future in futures:
            future.wait()
            state = future.state
            if state is None or not state.is_completed():
                name = state.name if state is not None else "no state"
                return UpstreamTaskError(
                    f"Upstream task run '{future.task_run_id}' did not reach a 'COMPLETED' "
                    f"state (it is {name})."
                )
        return None

    def _run_name(self) -> str:
        template = self.task.task_run_name
        if template is None:
            # Three hex characters, as Prefect's names; the PRNG, since os.urandom can be slow.
            return f"{self.task.name}-{random.getrandbits(12):03x}"
        if callable(template):
            return str(template())
        return template.format(**self.raw_parameters)

    def _cache_key(self) -> str | None:
        if not self.task.should_persist(self.flow_context) or self.task.cache_policy is None:
            return None
        flow_run = self.flow_context.flow_run if self.flow_context else None
        context = KeyContext(
            task=self.task,
            inputs=self.parameters,
            flow_run_id=flow_run.id if flow_run else None,
            flow_parameters=self.flow_context.parameters if self.flow_context else {},
            task_run_context=self.run_context(),
        )
        return self.task.cache_policy.compute_key(context)

    def _decisions_known(self) -> bool:
        """Whether the server's decisions on this run can be made here: a new run (its flow's
        first attempt: no run of its key exists yet) whose Running is accepted (no cache key)
        or answered from a cache entry this process knows, and whose Completed needs nothing
        back (no persisted result, no asset to record)."""
        context = self.flow_context
        if not (
            self.report_in_background
            and context is not None
            and context.first_attempt
            and not isinstance(self.task, MaterializingTask)
        ):
            return False
        if self.cache_key:
            return self.known_hit is not None
        return not self.task.should_persist(context)

    # ---- states ----

    def set_state(self, state: State, force: bool = False) -> OrchestrationResult:
        if self.decided_here:
            if not force and (decided := self._decide_here(state)) is not None:
                return decided
            # The server decides from here on, after the states reported so far.
            self.decided_here = False
            state_reporter(self.client).flush()
        return self.client.set_task_run_state(self.run_id, state, force=force)

    def _decide_here(self, state: State) -> OrchestrationResult | None:
        """The server's decision on `state`, reported to it in the background; None when only
        the server can tell (a retry after a delay, a forced or an unusual state)."""
        if state.type is StateType.RUNNING:
            self.task_run.run_count += 1
            if self.task_run.run_count > 1:
                state.name = "Retrying"
            decided = state
        elif state.type is StateType.FAILED and self._retries_left(state):
            if not self._retries_at_once():
                return None
            decided = AwaitingRetry(scheduled_time=now(), message=state.message)
        elif state.type in (StateType.COMPLETED, StateType.FAILED):
            decided = state
        else:
            return None
        decided.state_details.task_run_id = state.state_details.task_run_id = self.run_id
        decided.state_details.flow_run_id = self._flow_run_id()
        state_reporter(self.client).report(self.run_id, state, expected=decided.type)
        self.task_run.state = decided
        status = SetStateStatus.ACCEPT if decided is state else SetStateStatus.REJECT
        return OrchestrationResult(status=status, state=decided)

    def _retries_left(self, failed: State) -> bool:
        """The server's retry rule: attempts up to 1 + retries, unless marked not retriable."""
        return (
            self.task_run.run_count <= self.task.retries
            and failed.state_details.retriable is not False
        )

    def _retries_at_once(self) -> bool:
        """Whether the next retry's delay is zero (whole seconds, as the policy is sent)."""
        delay = self.task.retry_delay_seconds
        if isinstance(delay, list):
            delay = delay[min(self.task_run.run_count, len(delay)) - 1] if delay else 0
        return int(delay or 0) == 0

    def propose_running(self) -> OrchestrationResult:
        if self.decided_here and self._start is not None:
            return self._start_here()
        if self._start is None:
            return super().propose_running()
        create, self._start = self._start, None
        start = functools.partial(self.client.start_task_run, running=self.running_state())
        _, result = self._created(start, create)
        return result

    def _start_here(self) -> OrchestrationResult:
        """The run, with its id minted here, starts now; the reporter creates it."""
        (task, flow_run_id, dynamic_key), create = self._start.args, self._start.kwargs
        self._start = None
        self.run_id = uuid7()  # time-ordered, as the server's ids: lists sort newest first
        if self.on_task_run_id is not None:
            self.on_task_run_id(self.run_id)
        self.task_run = _BLANK_TASK_RUN.model_copy(
            update={
                "id": self.run_id,
                "name": create["name"],
                "flow_run_id": flow_run_id,
                "task_key": task.task_key,
                "dynamic_key": dynamic_key,
                "task_version": task.version,
                "empirical_policy": TaskRunPolicy.model_construct(
                    retries=task.retries, retry_jitter_factor=task.retry_jitter_factor
                ),
                "tags": sorted(task.tags),
                "labels": {},
                "task_inputs": create["task_inputs"],
                "expected_start_time": now(),
            }
        )
        running = self.running_state()
        running.state_details.task_run_id = self.run_id
        running.state_details.flow_run_id = flow_run_id
        decided = running if self.known_hit is None else self._cached(self.known_hit)
        self.task_run.run_count = 0 if self.known_hit else 1
        self.task_run.state = decided
        start = TaskRunStart(
            task,
            flow_run_id,
            dynamic_key,
            running,
            create["name"],
            create["task_inputs"],
            self.run_id,
        )
        state_reporter(self.client).report_start(start, decided)
        status = SetStateStatus.ACCEPT if decided is running else SetStateStatus.REJECT
        return OrchestrationResult(status=status, state=decided)

    def _cached(self, entry: State) -> State:
        """What the server answers a Running proposal whose key has `entry`."""
        details = entry.state_details.model_copy(
            update={"task_run_id": self.run_id, "flow_run_id": self._flow_run_id()}
        )
        return State(
            type=entry.type,
            name="Cached",
            message=entry.message,
            data=entry.data,
            state_details=details,
        )

    def running_state(self) -> State:
        state = Running()
        if self.cache_key:
            state.state_details.cache_key = self.cache_key
            state.state_details.refresh_cache = bool(self.task.refresh_cache) or None
        return state

    def completed_state(self, value: Any) -> State:
        state = Completed()
        if self.task.should_persist(self.flow_context):
            state.data = results.persist(
                value,
                self.task.serializer(self.flow_context),
                self.task.storage(self.flow_context),
                key=self.cache_key,
            )
        if self.cache_key:
            state.state_details.cache_key = self.cache_key
            state.state_details.cache_expiration = cache_expiration_time(self.task.cache_expiration)
        return state

    def retry_condition(self, error: BaseException, proposed: State) -> bool | None:
        condition = self.task.retry_condition_fn
        if condition is None or not self.task.retries:
            return None
        return bool(condition(self.task, self.task_run, proposed))

    def begin_attempt(self) -> bool | float:
        step = super().begin_attempt()
        if step is False and self.state is not None and self.state.is_completed():
            self._remember(self.state)  # Cached, or completed by an earlier attempt of the flow
        return step

    def succeed(self, value: Any) -> None:
        if (
            self.report_in_background
            and not self.cache_key
            and not self.task.should_persist(self.flow_context)
        ):
            # Nothing depends on the server's answer: report it off the critical path.
            state = Completed()
            state.state_details.task_run_id = self.run_id
            state.state_details.flow_run_id = self._flow_run_id()
            state_reporter(self.client).report(self.run_id, state)
            state._has_value, state._value = True, value
            self.state = state
        else:
            super().succeed(value)
            if self.cache_key and self.state is not None and self.state.is_completed():
                known_cache.remember(self.client.api_url, self.state)
        if self.flow_context is not None:
            self.flow_context.record_result(value, self.run_id)
        if isinstance(self.task, MaterializingTask) and self.state and self.state.is_completed():
            self._materialize()

    def _flow_run_id(self) -> UUID | None:
        """The task run's flow run id; the flow run's own id object when it is the enclosing
        run, so that the final states a map keeps share one rather than one each."""
        flow_run_id = self.task_run.flow_run_id
        flow_run = self.flow_context.flow_run if self.flow_context else None
        return flow_run.id if flow_run is not None and flow_run.id == flow_run_id else flow_run_id

    def _materialize(self) -> None:
        """Records the assets this run materialized, from the assets of the asset tasks that
        fed it and the declared ones."""
        known = self.flow_context.task_run_assets if self.flow_context else {}
        upstream = list(self.task.asset_deps)
        for task_run_id in self.upstream_ids:
            upstream.extend(known.get(task_run_id, ()))
        try:
            record_materialization(self.client, self.task.assets, self.task_run, upstream)
        except Exception as error:  # the task's own work is done and recorded: do not fail it
            logger.warning("task run %s: could not record its assets: %s", self.run_id, error)
            return
        if self.flow_context is not None:
            known[self.run_id] = list(self.task.assets)

    def _remember(self, state: State) -> None:
        known_cache.remember(self.client.api_url, state)
        if results.is_record(state.data):
            value = results.load(state.data)
            state._has_value, state._value = True, value
            if self.flow_context is not None:
                self.flow_context.record_result(value, self.run_id)

    def run_context(self) -> TaskRunContext:
        log_prints = self.task.log_prints
        if log_prints is None:
            log_prints = bool(self.flow_context and self.flow_context.log_prints)
        return TaskRunContext(
            task=self.task,
            task_run=self.task_run,
            parameters=self.parameters,
            log_prints=log_prints,
        )
