"""DaskTaskRunner: a flow's submitted and mapped task runs on a dask.distributed cluster (the
`flowrpc[dask]` extra; import it as `flowrpc.task_runners.DaskTaskRunner`).

Workers are other processes, often other machines, so nothing reaches them through contextvars or
the environment of the flow's process. Each submitted call travels as one `ShippedCall`: the task,
its arguments, the task run's dynamic key (handed out by the flow's process, so runs made on
different workers never share one), and the settings of the SDK's client (server address, API
key, TLS certificates, retries), which the worker applies before the task run reports to the
server. The flow run's part (`ShippedFlowRun`: the flow, its parameters, its result settings) is
sent to the cluster once per flow run, and every call refers to it.

Upstream futures of this runner travel as Dask futures, so Dask runs the downstream call after
them and hands it their final states; the worker turns those into finished futures that the
engine treats as any other (their task runs become the downstream run's task_inputs, their
results its arguments). Results of earlier task runs passed as plain values keep their edge too:
the call carries which task run produced each of them.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import importlib
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import cloudpickle
import distributed

from flowrpc.context import FlowRunContext
from flowrpc.futures import PrefectFuture, PrefectFutureList, wait
from flowrpc.schemas.objects import State
from flowrpc.task_runners import TaskRunner, ThreadPoolTaskRunner

# The SDK client's settings, read from the environment by get_client (see docs/sdk.md).
CLIENT_SETTINGS = (
    "FLOWRPC_API_URL",
    "FLOWRPC_API_KEY",
    "FLOWRPC_RETRY_ATTEMPTS",
    "FLOWRPC_RETRY_BACKOFF_SECONDS",
    "FLOWRPC_RESULT_STORAGE_PATH",
)
# TLS settings name PEM files of the flow's machine: their contents travel instead.
TLS_FILES = ("FLOWRPC_API_TLS_CA", "FLOWRPC_API_TLS_CERT", "FLOWRPC_API_TLS_KEY")
MAX_DEPTH = 8  # how deep futures are looked for inside arguments (as flowrpc.futures does)


class DaskTaskRunner(TaskRunner):
    """Runs submitted and mapped tasks on a dask.distributed cluster (Prefect's DaskTaskRunner).

    With no arguments each flow run starts a `distributed.LocalCluster` and closes it when the
    run ends. `address="tcp://host:8786"` uses the scheduler of an existing cluster instead, and
    `cluster=` an existing cluster object (both left running). `cluster_class` (a class, or its
    import path as a string) and `cluster_kwargs` make the temporary cluster (for example
    `{"n_workers": 2, "processes": True}`); `adapt_kwargs` turns on adaptive scaling
    (`cluster.adapt(**adapt_kwargs)`); `client_kwargs` go to `distributed.Client`.
    """

    def __init__(
        self,
        cluster: Any = None,
        address: str | None = None,
        cluster_class: str | Callable[..., Any] | None = None,
        cluster_kwargs: dict[str, Any] | None = None,
        adapt_kwargs: dict[str, Any] | None = None,
        client_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if address is not None and (cluster is not None or cluster_class or cluster_kwargs):
            raise ValueError(
                "DaskTaskRunner: give either address= (an existing scheduler) or the cluster to "
                "start (cluster_class=, cluster_kwargs=), not both"
            )
        if cluster is not None and (cluster_class or cluster_kwargs or adapt_kwargs):
            raise ValueError(
                "DaskTaskRunner: cluster= is a running cluster; cluster_class=, cluster_kwargs= "
                "and adapt_kwargs= are for the cluster the runner starts"
            )
        self.cluster = cluster
        self.address = address
        self.cluster_class = cluster_class
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.adapt_kwargs = dict(adapt_kwargs or {})
        self.client_kwargs = {"set_as_default": False, **(client_kwargs or {})}
        self._client: distributed.Client | None = None
        self._own_cluster: Any = None
        self._futures: list[PrefectDaskFuture] = []
        self._lock = threading.Lock()
        self._settings: dict[str, Any] = {}  # the client settings each call carries
        self._fetcher: StateFetcher | None = None
        # The calls of each thread's map() being prepared. Not a threading.local: a runner goes
        # to the workers with every call and is freed there by the garbage collector, and a
        # threading.local freed by a collection that starts inside sys._current_frames() (Dask's
        # profiler calls it every 10 ms) deadlocks the worker on CPython before 3.11.9 and
        # 3.12.3 (CPython issue 106883).
        self._batches: dict[int, list[Outgoing]] = {}
        self._flow_run: tuple[FlowRunContext, distributed.Future] | None = None

    def duplicate(self) -> DaskTaskRunner:
        return type(self)(
            cluster=self.cluster,
            address=self.address,
            cluster_class=self.cluster_class,
            cluster_kwargs=self.cluster_kwargs,
            adapt_kwargs=self.adapt_kwargs,
            client_kwargs=dict(self.client_kwargs),
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # A flow travels to the workers with its runner, which they never start: only the
        # address goes along (a live client, a cluster or a cluster_class closure may not pickle).
        return (type(self), (None, self.address))

    @property
    def client(self) -> distributed.Client:
        """The Dask client of the running flow (RuntimeError before the runner starts)."""
        if self._client is None:
            raise RuntimeError("the task runner is not started: submit tasks inside a flow run")
        return self._client

    def __enter__(self) -> DaskTaskRunner:
        self._settings = client_settings()
        if self.address is not None:
            self._client = distributed.Client(self.address, **self.client_kwargs)
        elif self.cluster is not None:
            self._client = distributed.Client(self.cluster, **self.client_kwargs)
        else:
            self._own_cluster = _cluster_class(self.cluster_class)(**self.cluster_kwargs)
            if self.adapt_kwargs:
                self._own_cluster.adapt(**self.adapt_kwargs)
            self._client = distributed.Client(self._own_cluster, **self.client_kwargs)
        self._fetcher = StateFetcher(self._client)
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Waits for every submitted run, then closes the client (and a cluster it started)."""
        with self._lock:
            futures, self._futures = self._futures, []
        try:
            wait(futures)
        finally:
            client, self._client = self._client, None
            cluster, self._own_cluster = self._own_cluster, None
            fetcher, self._fetcher = self._fetcher, None
            if fetcher is not None:
                fetcher.close()
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()

    def submit(
        self, task: Any, parameters: dict[str, Any], wait_for: Iterable[Any] | None = None
    ) -> PrefectFuture:
        outgoing = self._prepare(task, parameters, wait_for)
        batch = self._batches.get(threading.get_ident())
        if batch is not None:  # inside map(): sent with the others
            batch.append(outgoing)
        else:
            self._send([outgoing])
        return outgoing.future

    def map(
        self, task: Any, parameters: dict[str, Any], wait_for: Iterable[Any] | None = None
    ) -> PrefectFutureList:
        """As TaskRunner.map, with all the calls sent to the scheduler at once."""
        thread = threading.get_ident()
        self._batches[thread] = []
        try:
            futures = super().map(task, parameters, wait_for)
        finally:
            batch = self._batches.pop(thread)
        self._send(batch)
        return futures

    def _prepare(
        self, task: Any, parameters: dict[str, Any], wait_for: Iterable[Any] | None
    ) -> Outgoing:
        client = self.client
        flow_context = FlowRunContext.get()
        if flow_context is None:
            raise RuntimeError(
                "DaskTaskRunner.submit runs task calls of a flow run: call it in one"
            )
        upstream: list[Any] = []  # Dask futures (Dask waits for them) or Outcomes

        def placeholder(future: PrefectFuture) -> Upstream:
            dask_future = getattr(future, "dask_future", None)
            if dask_future is not None and dask_future.client is client:
                upstream.append(dask_future)
            else:  # a future of another runner: its final state travels
                future.wait()
                task_run_id = future.task_run_id
                assets = flow_context.task_run_assets.get(task_run_id)  # type: ignore[arg-type]
                upstream.append(Outcome(task_run_id, future._final_state(), assets))
            return Upstream(len(upstream) - 1)

        call = ShippedCall(
            task=task,
            parameters=_replace(parameters, PrefectFuture, placeholder),
            wait_for=_replace(list(wait_for or ()), PrefectFuture, placeholder),
            dynamic_key=flow_context.next_dynamic_key(task.task_key),
            produced=(produced := _produced(flow_context, parameters)),
            assets={
                producer: flow_context.task_run_assets[producer]
                for _, producer in produced
                if producer in flow_context.task_run_assets
            },
            settings=self._settings,
        )
        key = f"{task.name}-{uuid4().hex}"
        flow_run = self._flow_run_on_cluster(flow_context)
        return Outgoing(PrefectDaskFuture(), call, flow_run, upstream, key, flow_context)

    def _flow_run_on_cluster(self, context: FlowRunContext) -> distributed.Future:
        """The flow run's part of every call (the flow, its parameters, its result settings),
        sent to the cluster once per flow run rather than with each call."""
        with self._lock:
            if self._flow_run is None or self._flow_run[0] is not context:
                shipped = _shipped_flow_run(context)
                try:
                    future = self.client.scatter(shipped, hash=False)
                except Exception as error:
                    raise TypeError(
                        "DaskTaskRunner: the flow run cannot be sent to the Dask workers: the "
                        "flow and its parameters must pickle (cloudpickle): "
                        f"{_pickling_error([shipped], error)}"
                    ) from error
                self._flow_run = (context, future)
            return self._flow_run[1]

    def _send(self, batch: list[Outgoing]) -> None:
        """Hands the calls to the scheduler (one message for all) and watches their futures."""
        if not batch:
            return
        calls, upstreams = [o.call for o in batch], [o.upstream for o in batch]
        flow_runs, keys = [o.flow_run for o in batch], [o.key for o in batch]
        try:
            if len(batch) == 1:
                dask_futures = [
                    self.client.submit(
                        run_shipped_call, calls[0], flow_runs[0], upstreams[0], key=keys[0]
                    )
                ]
            else:
                dask_futures = self.client.map(
                    run_shipped_call, calls, flow_runs, upstreams, key=keys, pure=False
                )
        except Exception as error:  # Dask pickles the calls here
            refused = TypeError(
                f"DaskTaskRunner: a call of task {calls[0].task.name!r} cannot be sent to the "
                "Dask workers: the task and its arguments must pickle "
                f"(cloudpickle): {_pickling_error(calls, error)}"
            )
            for outgoing in batch:  # a future kept from a failed map must not hang
                outgoing.future._fail(refused)
            raise refused from error
        assert self._fetcher is not None  # started with the client
        for outgoing, dask_future in zip(batch, dask_futures, strict=True):
            outgoing.future.dask_future = dask_future
            self._fetcher.watch(outgoing.future, outgoing.flow_context)
        with self._lock:
            self._futures.extend(o.future for o in batch)


@dataclass
class Outgoing:
    """A submitted call on its way to the scheduler."""

    future: PrefectDaskFuture
    call: ShippedCall
    flow_run: distributed.Future  # of a ShippedFlowRun
    upstream: list[Any]
    key: str
    flow_context: FlowRunContext


def _pickling_error(objects: list[Any], error: Exception) -> str:
    """What in the objects does not pickle (Dask's own message names only its task graph)."""
    for call in objects:
        try:
            cloudpickle.dumps(call)
        except Exception as cause:
            return f"{type(cause).__name__}: {cause}"
    return f"{type(error).__name__}: {error}"


def _cluster_class(option: str | Callable[..., Any] | None) -> Callable[..., Any]:
    """The cluster class of the option: LocalCluster by default, or "package.module.Class"."""
    if option is None:
        return distributed.LocalCluster
    if isinstance(option, str):
        module_name, _, name = option.rpartition(".")
        try:
            return getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError, ValueError) as error:
            raise ValueError(
                f"DaskTaskRunner: cluster_class {option!r} is not an importable class "
                f"(use 'package.module.Class'): {error}"
            ) from None
    return option


@dataclass(frozen=True)
class Outcome:
    """What a call sends back from its worker: its task run, final state, and the assets the
    run materialized (for the lineage of asset tasks fed by it). Not a tuple, which Dask would
    read as a task when it is an argument."""

    task_run_id: UUID | None
    state: State
    assets: list[Any] | None = None


class PrefectDaskFuture(PrefectFuture):
    """A task run submitted to Dask; resolves to its final state like any PrefectFuture, so
    `wait` and `as_completed` work on it. `dask_future` is the underlying distributed.Future."""

    def __init__(self) -> None:
        super().__init__()
        self.dask_future: Any = None  # set once the call is sent

    def _settle(self, outcome: Outcome, flow_context: FlowRunContext) -> None:
        """Resolves this future with the task run's final state."""
        task_run_id, state, assets = outcome.task_run_id, outcome.state, outcome.assets
        self._set_task_run_id(task_run_id)
        if task_run_id is not None and state._has_value:
            flow_context.record_result(state._value, task_run_id)
        if task_run_id is not None and assets:
            flow_context.task_run_assets[task_run_id] = assets
        self._resolve(state)

    def _fail(self, error: BaseException) -> None:
        """The Dask task did not run to its end (unpicklable result, lost worker, cancelled)."""
        self._set_task_run_id(None)
        self._reject(error)


class StateFetcher:
    """Brings the final states of finished Dask tasks to the flow's process, as many per round
    trip as have finished meanwhile (one thread per flow run)."""

    BATCH = 500

    def __init__(self, client: distributed.Client) -> None:
        self.client = client
        self._finished: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="flowrpc-dask-states", daemon=True)
        self._thread.start()

    def watch(self, future: PrefectDaskFuture, flow_context: FlowRunContext) -> None:
        future.dask_future.add_done_callback(lambda _: self._finished.put((future, flow_context)))

    def close(self) -> None:
        self._finished.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (first := self._finished.get()) is not None:
            batch = [first]
            while len(batch) < self.BATCH and not self._finished.empty():
                if (item := self._finished.get()) is None:
                    self._finished.put(None)  # stop after this batch
                    break
                batch.append(item)
            try:
                self._fetch(batch)
            except BaseException as error:  # never leave a future unresolved
                for future, _ in batch:
                    if not future.done():
                        future._fail(error)

    def _fetch(self, batch: list[tuple[PrefectDaskFuture, FlowRunContext]]) -> None:
        ready = [(f, c) for f, c in batch if f.dask_future.status == "finished"]
        for future, _ in batch:
            if future.dask_future.status != "finished":
                future._fail(_dask_error(future.dask_future))
        try:
            outcomes = self.client.gather([f.dask_future for f, _ in ready])
        except Exception:  # one result that does not travel: fetch them one by one
            for future, context in ready:
                try:
                    future._settle(future.dask_future.result(), context)
                except Exception as error:
                    future._fail(
                        RuntimeError(
                            "DaskTaskRunner: the final state of a task run could not be brought "
                            f"back from its worker (its result must pickle): {error}"
                        )
                    )
            return
        for (future, context), outcome in zip(ready, outcomes, strict=True):
            future._settle(outcome, context)


def _dask_error(dask_future: distributed.Future) -> BaseException:
    try:
        return dask_future.exception() or RuntimeError(f"Dask task {dask_future.status}")
    except BaseException as error:  # cancelled
        return error


# ---- what travels to a worker ----


@dataclass(frozen=True)
class Upstream:
    """Stands for the upstream future at this index of the call's upstream list."""

    index: int


@dataclass
class ShippedFlowRun:
    """The FlowRunContext fields a task run in another process needs."""

    flow: Any
    flow_run: Any
    parameters: dict[str, Any]
    log_prints: bool
    persist_result: bool | None
    result_serializer: Any
    result_storage: Any


@dataclass
class ShippedCall:
    """One submitted task call as it travels to a worker (with its flow run's ShippedFlowRun,
    sent once). One pickle, so a value that appears both in the parameters and in `produced`
    is one object on the worker too."""

    task: Any
    parameters: dict[str, Any]
    wait_for: list[Any]
    dynamic_key: str
    produced: list[tuple[Any, UUID]] = field(default_factory=list)
    assets: dict[UUID, list[Any]] = field(default_factory=dict)  # of the producers' runs
    settings: dict[str, Any] = field(default_factory=dict)


def _shipped_flow_run(context: FlowRunContext) -> ShippedFlowRun:
    return ShippedFlowRun(
        flow=context.flow,
        flow_run=context.flow_run,
        parameters=context.parameters,
        log_prints=context.log_prints,
        persist_result=context.persist_result,
        result_serializer=context.result_serializer,
        result_storage=context.result_storage,
    )


def _produced(context: FlowRunContext, parameters: Any) -> list[tuple[Any, UUID]]:
    """The values among the arguments that earlier task runs of the flow returned, with the
    task run of each (their graph edges)."""
    found: list[tuple[Any, UUID]] = []

    def visit(value: Any) -> Any:
        if (producer := context.producer_of(value)) is not None:
            found.append((value, producer))
        return value

    _replace(parameters, object, visit)
    return found


def _replace(value: Any, kind: type, replace: Callable[[Any], Any], depth: int = 0) -> Any:
    """`value` with every instance of `kind` inside it (lists, tuples, sets, dict values)
    replaced by replace(instance). A container with nothing replaced is returned as it is, so
    objects keep their identity (which records which task run produced them)."""
    if isinstance(value, list | tuple | set | dict) and depth < MAX_DEPTH:
        if kind is object:
            replace(value)
        values = list(value.values()) if isinstance(value, dict) else list(value)
        items = [_replace(v, kind, replace, depth + 1) for v in values]
        if all(new is old for new, old in zip(items, values, strict=True)):
            return value
        if isinstance(value, dict):
            return dict(zip(value.keys(), items, strict=True))
        if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
            return type(value)(*items)
        return items if isinstance(value, list) else type(value)(items)
    if isinstance(value, kind):
        return replace(value)
    return value


def client_settings() -> dict[str, Any]:
    """The SDK client's settings of this process, as a worker applies them: the server address
    (the one the SDK reports to, also the embedded server's when FLOWRPC_API_URL is not set), the
    API key, retries, the result storage path, and the TLS files' contents."""
    from flowrpc.engine.client import api_url

    settings: dict[str, Any] = {name: os.environ.get(name) or None for name in CLIENT_SETTINGS}
    settings["FLOWRPC_API_URL"] = api_url()
    for name in TLS_FILES:
        path = os.environ.get(name)
        settings[name] = Path(path).expanduser().read_bytes() if path else None
    return settings


# ---- on the worker ----

_settings_lock = threading.Lock()
_applied: dict[str, Any] | None = None
_pem_dir: Path | None = None  # this worker's copies of the flow's TLS files


def _pem_path(name: str, contents: bytes) -> str:
    """A private file of this process holding `contents` (removed at exit)."""
    global _pem_dir
    if _pem_dir is None:
        _pem_dir = Path(tempfile.mkdtemp(prefix="flowrpc-tls-"))  # mode 0700
        atexit.register(shutil.rmtree, _pem_dir, ignore_errors=True)
    path = _pem_dir / name.lower()
    path.touch(mode=0o600)
    path.write_bytes(contents)
    return str(path)


def use_client_settings(settings: dict[str, Any]) -> None:
    """Points this process's SDK client at the flow's server with the flow's key and TLS
    files (the client is reopened only when the settings change)."""
    global _applied
    from flowrpc.engine.client import reset_sdk_client

    with _settings_lock:
        if settings == _applied:
            return
        if settings == client_settings():  # a worker in the flow's own process, or alike
            _applied = settings
            return
        for name, value in settings.items():
            if name in TLS_FILES and value is not None:
                value = _pem_path(name, value)
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        reset_sdk_client()  # the next task reopens it; run logs follow it
        _applied = settings


class WorkerFlowRunContext(FlowRunContext):
    """The flow run's context in a worker: the submitted call's task run gets the dynamic key
    the flow's process chose; runs of tasks it calls get keys scoped by that one."""

    assigned: tuple[str, str] = ("", "")  # (task key, dynamic key) of the submitted call
    _assigned_used = False

    def next_dynamic_key(self, task_key: str) -> str:
        with self._lock:
            first, self._assigned_used = not self._assigned_used, True
        if first and task_key == self.assigned[0]:
            return self.assigned[1]
        scope = hashlib.sha256("\0".join(self.assigned).encode()).hexdigest()[:12]
        return f"{super().next_dynamic_key(task_key)}.{scope}"


# The subclass must read and set the same context variable as the flow's own contexts.
WorkerFlowRunContext._current = FlowRunContext._current


def run_shipped_call(call: ShippedCall, flow_run: ShippedFlowRun, upstream: list[Any]) -> Outcome:
    """Runs one submitted task call on a Dask worker; returns its task run's id and final
    state. `upstream` holds the final (task run id, state) of each upstream future."""
    from flowrpc.engine import run_task
    from flowrpc.engine.reporter import flush_reported_states
    from flowrpc.logging import FLOW_END_FLUSH_SECONDS, flush_logs

    use_client_settings(call.settings)
    finished = [_finished_future(outcome.task_run_id, outcome.state) for outcome in upstream]

    def restore(placeholder: Upstream) -> PrefectFuture:
        return finished[placeholder.index]

    parameters = _replace(call.parameters, Upstream, restore)
    wait_for = _replace(call.wait_for, Upstream, restore)
    task_run_ids: list[UUID | None] = []
    with (
        ThreadPoolTaskRunner() as nested_runner,
        _worker_context(call, flow_run, upstream, nested_runner) as context,
    ):
        outcome = run_task(call.task, parameters, wait_for, "state", task_run_ids.append)
        if asyncio.iscoroutine(outcome):
            outcome = asyncio.run(outcome)
        task_run_id = task_run_ids[-1] if task_run_ids else None
        assets = context.task_run_assets.get(task_run_id)  # type: ignore[arg-type]
    # The states of tasks it called directly, and its logs, land before its future resolves.
    flush_reported_states()
    flush_logs(FLOW_END_FLUSH_SECONDS)
    return Outcome(task_run_id, _portable(outcome), assets)


def _worker_context(
    call: ShippedCall, shipped: ShippedFlowRun, upstream: list[Outcome], runner: TaskRunner
) -> WorkerFlowRunContext:
    context = WorkerFlowRunContext(
        flow=shipped.flow,
        flow_run=shipped.flow_run,
        parameters=shipped.parameters,
        log_prints=shipped.log_prints,
        task_runner=runner,
        persist_result=shipped.persist_result,
        result_serializer=shipped.result_serializer,
        result_storage=shipped.result_storage,
    )
    context.assigned = (call.task.task_key, call.dynamic_key)
    for value, task_run_id in call.produced:
        context.record_result(value, task_run_id)
    context.task_run_assets.update(call.assets)
    for outcome in upstream:
        if outcome.task_run_id is not None and outcome.assets:
            context.task_run_assets[outcome.task_run_id] = outcome.assets
    return context


def _finished_future(task_run_id: UUID | None, state: State) -> PrefectFuture:
    future = PrefectFuture()
    future._set_task_run_id(task_run_id)
    future._resolve(state)
    return future


def _portable(state: State) -> State:
    """The state with its exception kept only if it can travel back (its message is in the
    state either way)."""
    if state._exception is not None:
        try:
            cloudpickle.dumps(state._exception)
        except Exception:
            state._exception = None
    return state


__all__ = ["DaskTaskRunner", "PrefectDaskFuture"]
