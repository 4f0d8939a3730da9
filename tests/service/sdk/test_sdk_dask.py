"""DaskTaskRunner through a real server and a real dask.distributed LocalCluster with worker
processes: submitted and mapped tasks run on the workers, report their task runs to the server
from there, and hand their results and graph edges to the flow and to each other."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import distributed
import pytest
from certificates import Authority
from harness import running_server, sqlite_settings
from sdk_support import task_runs_of

from flowrpc import flow, get_client, get_run_logger, task, unmapped
from flowrpc.assets import materialize
from flowrpc.context import get_run_context
from flowrpc.dask_runner import _cluster_class
from flowrpc.engine.client import reset_sdk_client
from flowrpc.exceptions import UpstreamTaskError
from flowrpc.futures import as_completed, wait
from flowrpc.schemas.filters import LogFilter
from flowrpc.task_runners import DaskTaskRunner

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "sdk"
# For tests whose subject is not the database: one server kind is enough.
ONE_DATABASE = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


@pytest.fixture(scope="module")
def dask_address() -> Iterator[str]:
    """The scheduler of one small cluster with two worker processes, shared by this module's
    tests (each flow run connects to it with address=)."""
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=2, dashboard_address=None
    ) as cluster:
        yield cluster.scheduler_address


@pytest.fixture
def runner(dask_address: str) -> DaskTaskRunner:
    return DaskTaskRunner(address=dask_address)


def graph_upstream(client, flow_run_id) -> list[tuple[str, list[str]]]:
    """Each task run's name (without its suffix) with the names of its upstream task runs."""
    nodes = client.read_flow_run_graph(flow_run_id)
    names = {node.id: node.name.rsplit("-", 1)[0] for node in nodes}
    return sorted(
        (names[node.id], sorted(names[dep.id] for dep in node.upstream_dependencies))
        for node in nodes
    )


def test_submit_and_map_run_on_the_workers_with_their_edges(client, runner):
    @task
    def numbers(n):
        return list(range(n))

    @task
    def scale(x, factor, offset=0):
        return x * factor + offset

    @task
    def total(values, extra):
        return sum(values) + sum(extra)

    @task
    def where():
        return os.getpid(), get_run_context().task_run.id

    @flow(task_runner=runner)
    def pipeline():
        source = numbers.submit(3)
        scaled = scale.map(source, 10, offset=unmapped(1))
        first = scale.submit(1000, 1)
        return total.submit(scaled, [first]), scaled, where.submit()

    state = pipeline(return_state=True)
    result, scaled, (worker_pid, where_run_id) = state.result()
    assert result == (1 + 11 + 21) + 1000 and scaled == [1, 11, 21]
    assert worker_pid != os.getpid()  # it ran in a worker process

    flow_run_id = state.state_details.flow_run_id
    # Mapping over a future maps over its result: each mapped run depends on numbers.
    assert graph_upstream(client, flow_run_id) == [
        ("numbers", []),
        ("scale", []),
        ("scale", ["numbers"]),
        ("scale", ["numbers"]),
        ("scale", ["numbers"]),
        ("total", ["scale", "scale", "scale", "scale"]),
        ("where", []),
    ]
    runs = task_runs_of(client, flow_run_id)
    # Every run was recorded from a worker, with its own dynamic key, and ended Completed.
    assert sorted(r.state_name for r in runs) == ["Completed"] * 7
    assert len({(r.task_key, r.dynamic_key) for r in runs}) == 7
    assert where_run_id in {r.id for r in runs}
    # Plain tasks keep their options on the workers: no cache key, nothing persisted.
    assert all(r.state.data is None and r.cache_key is None for r in runs)


def test_results_passed_as_values_keep_their_edges(client, runner):
    @task
    def produce():
        return {"rows": [1, 2, 3]}

    @task
    def consume(data):
        return len(data["rows"])

    @flow(task_runner=runner)
    def handoff():
        data = produce.submit().result()  # a value now, no longer a future
        side = produce.submit()
        on_worker = consume.submit(data, wait_for=[side]).result()
        here = consume(produce.submit())  # a Dask future into a direct call, in this process
        return on_worker, here

    state = handoff(return_state=True)
    assert state.result() == (3, 3)
    flow_run_id = state.state_details.flow_run_id
    upstream = graph_upstream(client, flow_run_id)
    assert upstream == [
        ("consume", ["produce"]),
        ("consume", ["produce", "produce"]),
        *[("produce", [])] * 3,
    ]
    on_worker = [r for r in task_runs_of(client, flow_run_id) if r.name.startswith("consume")][0]
    assert [len(on_worker.task_inputs["data"]), len(on_worker.task_inputs["wait_for"])] == [1, 1]


def test_a_failing_task_retries_on_a_worker(client, runner, tmp_path):
    attempts = tmp_path / "attempts"

    @task(retries=2)
    def flaky():
        with attempts.open("a") as file:
            file.write("x")
        if len(attempts.read_text()) < 3:
            raise ConnectionError("not yet")
        return "third time"

    @task(retries=1)
    def broken():
        raise ValueError("always broken")

    @task
    def downstream(x):
        return x

    @flow(task_runner=runner)
    def retrying():
        bad = broken.submit()
        after_bad = downstream.submit(bad)
        after_bad.wait()
        return flaky.submit(), bad.state, after_bad.state

    good, bad, after_bad = retrying()
    assert good == "third time"
    assert bad.is_failed() and "ValueError: always broken" in bad.message
    with pytest.raises(ValueError, match="always broken"):  # the worker's exception came back
        bad.result()
    assert after_bad.name == "NotReady"
    with pytest.raises(UpstreamTaskError):
        after_bad.result()

    [flow_run] = client.read_flow_runs()
    runs = {r.name.rsplit("-", 1)[0]: r for r in task_runs_of(client, flow_run.id)}
    assert (runs["flaky"].state_name, runs["flaky"].run_count) == ("Completed", 3)
    assert (runs["broken"].state_name, runs["broken"].run_count) == ("Failed", 2)
    assert runs["downstream"].state_name == "NotReady"


def test_wait_and_as_completed_on_dask_futures(client, runner):
    @task
    def square(x):
        return x * x

    @flow(task_runner=runner)
    def squares():
        futures = square.map([1, 2, 3, 4])
        done, not_done = wait(futures)
        assert len(done) == 4 and not not_done
        finished = sorted(f.result() for f in as_completed(futures))
        return finished, [f.task_run_id for f in futures]

    finished, ids = squares()
    assert finished == [1, 4, 9, 16]
    [flow_run] = client.read_flow_runs()
    assert sorted(ids) == [r.id for r in task_runs_of(client, flow_run.id)]


def test_async_tasks_and_tasks_calling_tasks_on_a_worker(client, runner):
    @task
    def inner(x):
        return x + 1

    @task
    def outer(x):
        return inner(x) + inner(x + 10)

    @task
    async def later(x):
        return x * 2

    @flow(task_runner=runner)
    def nested():
        return outer.submit(1).result(), later.submit(outer.submit(2)).result()

    assert nested() == (2 + 12, (3 + 13) * 2)
    [flow_run] = client.read_flow_runs()
    runs = task_runs_of(client, flow_run.id)
    assert (
        sorted(r.name.rsplit("-", 1)[0] for r in runs) == ["inner"] * 4 + ["later"] + ["outer"] * 2
    )
    assert all(r.state_name == "Completed" for r in runs)  # inner ones flushed by the worker
    assert len({(r.task_key, r.dynamic_key) for r in runs}) == len(runs)


def test_asset_lineage_and_logs_from_the_workers(client, runner):
    @materialize("s3://lake/raw.csv")
    def extract():
        return [3, 1, 2]

    @materialize("s3://lake/clean.csv")
    def clean(rows):
        return sorted(rows)

    @materialize("s3://lake/summary.txt")
    def summarize(rows):
        print(f"summarizing {len(rows)} rows")
        get_run_logger().warning("careful with %s", rows[0])
        return f"{len(rows)} rows"

    @flow(task_runner=runner, log_prints=True)
    def pipeline():
        cleaned = clean.submit(extract.submit())  # fed by a future
        return summarize.submit(cleaned.result()).result()  # fed by a value

    state = pipeline(return_state=True)
    assert state.result() == "3 rows"
    assets = {asset.key: asset for asset in client.read_assets()}
    assert assets["s3://lake/clean.csv"].upstream_keys == ["s3://lake/raw.csv"]
    assert assets["s3://lake/summary.txt"].upstream_keys == ["s3://lake/clean.csv"]

    flow_run_id = state.state_details.flow_run_id
    logs = client.read_logs(log_filter=LogFilter(flow_run_id={"any_": [flow_run_id]}))
    messages = {log.message: log for log in logs}
    [summary_run] = [r for r in task_runs_of(client, flow_run_id) if r.name.startswith("summarize")]
    assert messages["summarizing 3 rows"].task_run_id == summary_run.id
    assert messages["careful with 1"].level == 30


async def test_an_async_flow_submits_to_dask(client, runner):
    @task
    def double(x):
        return 2 * x

    @flow(task_runner=runner)
    async def doubling():
        first = double.submit(1)
        return first.result(), double.map([first, 3]).result()

    assert await doubling() == (2, [4, 6])
    [flow_run] = client.read_flow_runs()
    assert flow_run.state_name == "Completed"
    assert graph_upstream(client, flow_run.id) == [
        ("double", []),
        ("double", []),
        ("double", ["double"]),
    ]


@ONE_DATABASE
def test_the_key_and_tls_settings_travel_to_the_workers(runner, tmp_path, monkeypatch):
    # A server that wants mutual TLS and an API key; the workers were started without either
    # in their environment, so they report only with what each call carries.
    (tmp_path / "pki").mkdir()
    ca = Authority.create(tmp_path / "pki")
    server_pair, client_pair = ca.issue("server", server=True), ca.issue("sdk", server=False)
    settings = sqlite_settings(
        tmp_path,
        tls_cert=server_pair.cert,
        tls_key=server_pair.key,
        tls_client_ca=ca.cert,
        api_key="s3cret",
    )

    @task
    def reported():
        return {name: os.environ.get(name) for name in ("FLOWRPC_API_KEY", "FLOWRPC_API_TLS_CA")}

    @flow(task_runner=runner)
    def secured():
        return reported.submit().result()

    with running_server(settings) as server:
        monkeypatch.setenv("FLOWRPC_API_URL", f"127.0.0.1:{server.port}")
        monkeypatch.setenv("FLOWRPC_API_KEY", "s3cret")
        monkeypatch.setenv("FLOWRPC_API_TLS_CA", str(ca.cert))
        monkeypatch.setenv("FLOWRPC_API_TLS_CERT", str(client_pair.cert))
        monkeypatch.setenv("FLOWRPC_API_TLS_KEY", str(client_pair.key))
        reset_sdk_client()
        seen = secured()
        assert seen["FLOWRPC_API_KEY"] == "s3cret"
        # The CA's contents travelled: the worker uses a copy of its own.
        assert seen["FLOWRPC_API_TLS_CA"] != str(ca.cert)
        assert Path(seen["FLOWRPC_API_TLS_CA"]).read_bytes() == ca.cert.read_bytes()
        with get_client(sync_client=True) as secure_client:
            [flow_run] = secure_client.read_flow_runs()
            [task_run] = task_runs_of(secure_client, flow_run.id)
        assert (flow_run.state_name, task_run.state_name) == ("Completed", "Completed")


@ONE_DATABASE
def test_a_cluster_of_threads_in_the_flows_own_process(client):
    # Workers in this process share the SDK's client with the flow: it must stay open.
    @task
    def double(x):
        return 2 * x

    in_process = {"processes": False, "n_workers": 1, "threads_per_worker": 2}
    started = []

    def local_cluster(**kwargs):
        started.append(distributed.LocalCluster(**kwargs))
        return started[-1]

    runner = DaskTaskRunner(
        cluster_class=local_cluster,
        cluster_kwargs={**in_process, "dashboard_address": ":0"},
        adapt_kwargs={"minimum": 1, "maximum": 1},
    )

    @flow(task_runner=runner)
    def local():
        first = double.submit(1)
        return double(first.result()) + double.submit(first).result()

    assert local() == 8
    [cluster] = started  # one cluster for the flow run, closed when it ended
    assert cluster.status == distributed.core.Status.closed
    [flow_run] = client.read_flow_runs()
    assert flow_run.state_name == "Completed"
    assert [r.state_name for r in task_runs_of(client, flow_run.id)] == ["Completed"] * 3


@ONE_DATABASE
def test_the_runs_leave_no_threading_local_for_the_workers_collector(runner, dask_address):
    """On CPython before 3.11.9 a worker deadlocks for good when its garbage collector frees a
    threading.local during sys._current_frames(), which Dask's profiler calls every 10 ms
    (CPython issue 106883): what a call brings to a worker must hold none."""

    def garbage_locals() -> int:
        """The threading.locals only a collection frees (by type(): isinstance() of a lazy
        import's proxy would import its module)."""

        def count() -> int:
            return sum(issubclass(type(o), threading.local) for o in gc.get_objects())

        before = count()
        gc.collect()
        return before - count()

    @task
    def double(x):
        return 2 * x

    @flow(task_runner=runner)
    def doubling():
        return double.submit(1).result() + sum(f.result() for f in double.map([2, 3]))

    with distributed.Client(dask_address, set_as_default=False) as dask:
        dask.run(gc.disable)  # what the run leaves stays until counted
        try:
            assert doubling() == 12
            left = dask.run(garbage_locals)
        finally:
            dask.run(gc.enable)
    assert set(left.values()) == {0}, left


@ONE_DATABASE
def test_a_call_that_does_not_pickle_is_refused_saying_what(client, runner):
    @task
    def use(x):
        return 1

    @flow(task_runner=runner)
    def unpicklable():
        with pytest.raises(TypeError, match="task 'use' cannot be sent.*_thread.lock"):
            use.submit(threading.Lock())
        with pytest.raises(TypeError, match="task 'use' cannot be sent.*_thread.lock"):
            use.map([threading.Lock(), threading.Lock()])
        return use.submit(1).result()  # the runner goes on, and its exit does not wait on those

    assert unpicklable() == 1


@ONE_DATABASE
def test_options_are_checked_and_the_runner_travels_without_its_client(dask_address):
    with pytest.raises(ValueError, match="either address="):
        DaskTaskRunner(address=dask_address, cluster_kwargs={"n_workers": 1})
    with pytest.raises(ValueError, match="not an importable class"):
        DaskTaskRunner(cluster_class="no.such.Cluster").__enter__()
    assert _cluster_class("distributed.LocalCluster") is distributed.LocalCluster
    with pytest.raises(RuntimeError, match="not started"):
        DaskTaskRunner(address=dask_address).submit(None, {})

    import cloudpickle

    runner = DaskTaskRunner(address=dask_address, client_kwargs={"timeout": 30})
    with runner:
        copy = cloudpickle.loads(cloudpickle.dumps(runner))
        assert runner.client.scheduler_info()["workers"]
    assert copy._client is None and copy.address == dask_address


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@ONE_DATABASE
def test_importing_flowrpc_does_not_import_dask():
    result = run_python(
        "import sys, flowrpc, flowrpc.task_runners, flowrpc.flows\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"


@ONE_DATABASE
def test_without_dask_the_error_says_what_to_install():
    result = run_python(
        "import sys\n"
        "sys.modules['distributed'] = None  # as if dask.distributed were not installed\n"
        "from flowrpc.task_runners import DaskTaskRunner"
    )
    assert result.returncode == 1
    assert "pip install 'flowrpc[dask]'" in result.stderr


@ONE_DATABASE
def test_the_example_starts_and_closes_its_own_cluster(client, api_url):
    # DaskTaskRunner() with cluster_kwargs: a LocalCluster of its own for the flow run.
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "dask_pipeline.py")],
        env={**os.environ, "FLOWRPC_API_URL": api_url},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "total 30, largest 16"
    assert lines[1].startswith("ran in 2 worker processes") or lines[1].startswith(
        "ran in 1 worker process"
    )
    [flow_run] = client.read_flow_runs()
    assert flow_run.state_name == "Completed"
    runs = task_runs_of(client, flow_run.id)
    names = sorted(r.name.rsplit("-", 1)[0] for r in runs)
    assert names == ["largest", "square", "square", "square", "square", "total"]
    assert all(r.state_name == "Completed" for r in runs)
