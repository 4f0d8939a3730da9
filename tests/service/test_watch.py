"""WatchFlowRuns through the real client and server, on SQLite and PostgreSQL: snapshot, marker,
then every committed state change (from every path that writes one), filters applied to the run
as it was right after each change, resume from a cursor, slow watchers, expired cursors, limits;
and on two PostgreSQL replicas, a watcher on one sees the transitions made through the other."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from harness import postgres_schema, running_server

from flowrpc import get_client
from flowrpc.client.errors import FlowRPCError
from flowrpc.schemas.actions import FlowRunCreate
from flowrpc.schemas.filters import FlowRunFilter
from flowrpc.server.storage import changes
from flowrpc.server.storage.database import Database
from flowrpc.settings import Settings
from flowrpc.states import Completed, Failed, Pending, Running, Scheduled
from flowrpc.v1 import filter_pb2
from flowrpc.v1 import flow_run_service_pb2 as fr

FLOW = SimpleNamespace(name="watched")
POSTGRES_URL = os.environ.get("FLOWRPC_TEST_DATABASE_URL")
WITHIN = 30  # seconds a test waits for an event before it fails (never a timing assertion)


@contextmanager
def server(settings: Settings, **overrides: Any) -> Iterator[str]:
    with running_server(settings.model_copy(update=overrides)) as started:
        yield f"127.0.0.1:{started.port}"


class Watcher:
    """Events of one watch_flow_runs call, read in the background as they arrive."""

    def __init__(self, events: AsyncIterator[Any]) -> None:
        self.events: list[Any] = []
        self._iterator = events
        self._arrived = asyncio.Condition()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for event in self._iterator:
            async with self._arrived:
                self.events.append(event)
                self._arrived.notify_all()

    async def until(self, done: Any) -> list[Any]:
        """The events once done(events) holds; fails after WITHIN seconds."""

        async def wait() -> None:
            async with self._arrived:
                await self._arrived.wait_for(lambda: self.task.done() or done(self.events))
            if not done(self.events):
                self.task.result()  # the stream's error, if it ended with one
                raise AssertionError(f"the stream ended early: {self.events}")

        await asyncio.wait_for(wait(), WITHIN)
        return self.events

    def changes(self) -> list[Any]:
        return [event for event in self.events if event.type == "change"]

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@asynccontextmanager
async def watching(client: Any, **kwargs: Any) -> AsyncIterator[Watcher]:
    watcher = Watcher(client.watch_flow_runs(**kwargs))
    try:
        yield watcher
    finally:
        await watcher.close()


def changed(count: int) -> Any:
    return lambda events: sum(event.type == "change" for event in events) >= count


def has(kind: str) -> Any:
    return lambda events: any(event.type == kind for event in events)


def states_of(events: list[Any]) -> list[tuple[str, str]]:
    return [(str(e.flow_run.id), e.state.name) for e in events if e.type == "change"]


async def test_snapshot_then_marker_then_every_change_in_commit_order(flowrpc_server):
    async with get_client(api_url=flowrpc_server) as client:
        before = await client.create_flow_run(FLOW, state=Pending())
        async with watching(client) as watcher:
            events = await watcher.until(has("marker"))
            assert [event.type for event in events] == ["snapshot", "marker"]
            assert events[0].flow_run.id == before.id
            assert events[0].flow_run.state.name == "Pending"

            await client.set_flow_run_state(before.id, Running())
            created = await client.create_flow_run(FLOW, state=Scheduled())
            await client.set_flow_run_state(before.id, Completed())
            await client.update_flow_run(created.id, name="renamed")  # no state change
            await client.set_flow_run_state(created.id, Pending())
            await watcher.until(changed(4))
        assert states_of(watcher.events) == [
            (str(before.id), "Running"),
            (str(created.id), "Scheduled"),
            (str(before.id), "Completed"),
            (str(created.id), "Pending"),
        ]
        last = watcher.changes()[-1]
        assert last.flow_run.name == "renamed" and last.flow_run.state == last.state
        cursors = [event.cursor for event in watcher.changes()]
        assert len(set(cursors)) == 4


async def test_every_path_that_writes_a_state_feeds_the_stream(flowrpc_server):
    async with get_client(api_url=flowrpc_server) as client:
        runs = [await client.create_flow_run(FLOW, state=Running()) for _ in range(3)]
        async with watching(client, snapshot=False) as watcher:
            await watcher.until(has("marker"))
            flow_id = await client.create_flow_from_name(FLOW.name)
            deployment_id = await client.create_deployment(flow_id=flow_id, name="nightly")
            from_deployment = await client.create_flow_run_from_deployment(deployment_id)
            selected = FlowRunFilter(id={"any_": [str(run.id) for run in runs]})
            results = [
                r
                async for r in client.bulk_set_flow_run_state(Completed(), flow_run_filter=selected)
            ]
            assert len(results) == 3
            paused = await client.create_flow_run(FLOW, state=Running())
            await client.set_flow_run_state(paused.id, _paused())
            await client.resume_flow_run(paused.id)
            await watcher.until(changed(7))
        seen = states_of(watcher.events)
        assert seen[0] == (str(from_deployment.id), "Scheduled")
        assert sorted(seen[1:4]) == sorted((str(run.id), "Completed") for run in runs)
        assert seen[4:] == [
            (str(paused.id), "Running"),
            (str(paused.id), "Paused"),
            (str(paused.id), "Running"),
        ]


async def test_bulk_creates_and_engine_starts_feed_the_stream_once_per_state(flowrpc_server):
    async with get_client(api_url=flowrpc_server) as client:
        flow_id = await client.create_flow_from_name(FLOW.name)
        async with watching(client, snapshot=False) as watcher:
            await watcher.until(has("marker"))
            results = await client.create_flow_runs(
                [
                    FlowRunCreate(flow_id=flow_id, state=Scheduled(), idempotency_key="a"),
                    FlowRunCreate(flow_id=uuid.uuid4()),  # unknown flow: an error, no change
                    FlowRunCreate(flow_id=flow_id, idempotency_key="a"),  # the same run
                    FlowRunCreate(flow_id=flow_id, state=Running()),
                ]
            )
            assert [r.error is None for r in results] == [True, False, True, True]
            # A key used in an earlier call returns its run and writes no state.
            again = await client.create_flow_runs(
                [
                    FlowRunCreate(flow_id=flow_id, idempotency_key="a"),
                    FlowRunCreate(flow_id=flow_id, idempotency_key="b"),
                ]
            )
            started, _ = await client.start_flow_run(FLOW, Running(), flow_id=flow_id)
            await watcher.until(changed(5))
        keyed, _, _, running = results
        assert states_of(watcher.events) == [
            (str(keyed.flow_run.id), "Scheduled"),
            (str(running.flow_run.id), "Running"),
            (str(again[1].flow_run.id), "Pending"),
            (str(started.id), "Pending"),
            (str(started.id), "Running"),
        ]


def _paused() -> Any:
    from flowrpc.states import Paused

    return Paused(timeout_seconds=3600)


async def test_the_late_runs_service_feeds_the_stream(database):
    fast = {"late_runs_enabled": True, "late_runs_loop_seconds": 0.1, "late_runs_after_seconds": 0}
    with server(database, **fast) as address:
        async with get_client(api_url=address) as client:
            due = Scheduled(scheduled_time=datetime.now(UTC) - timedelta(minutes=1))
            async with watching(client, snapshot=False) as watcher:
                await watcher.until(has("marker"))
                run = await client.create_flow_run(FLOW, state=due)
                await watcher.until(changed(2))
        assert states_of(watcher.events) == [(str(run.id), "Scheduled"), (str(run.id), "Late")]


async def test_filters_see_the_run_as_it_was_right_after_each_change(flowrpc_server):
    async with get_client(api_url=flowrpc_server) as client:
        tagged = await client.create_flow_run(FLOW, tags=["etl"], state=Running())
        other = await client.create_flow_run(FLOW, tags=["ml"], state=Running())
        async with watching(client, snapshot=False) as watcher:
            marker = (await watcher.until(has("marker")))[-1].cursor
        # Failed, then rescheduled at once: the run is Scheduled when the change is read.
        for run in (tagged, other):
            await client.set_flow_run_state(run.id, Failed())
            await client.set_flow_run_state(run.id, Scheduled(), force=True)
        failed_etl = FlowRunFilter(state={"type": {"any_": ["FAILED"]}}, tags={"all_": ["etl"]})
        async with watching(client, flow_run_filter=failed_etl, since=marker) as watcher:
            await watcher.until(changed(1))
            await client.set_flow_run_state(tagged.id, Failed(), force=True)
            await watcher.until(changed(2))
        assert states_of(watcher.events) == [(str(tagged.id), "Failed")] * 2
        assert watcher.changes()[0].flow_run.state.name == "Failed"
        assert "snapshot" not in {event.type for event in watcher.events}


async def test_filters_on_the_flow_and_the_work_pool_of_the_run(flowrpc_server):
    from flowrpc.schemas.actions import WorkPoolCreate
    from flowrpc.schemas.filters import FlowFilter, WorkPoolFilter

    async with get_client(api_url=flowrpc_server) as client:
        await client.create_work_pool(WorkPoolCreate(name="gpu"))
        pooled = FlowRunFilter()  # placeholder: the pool filter below selects
        in_pool = WorkPoolFilter(name={"any_": ["gpu"]})
        of_flow = FlowFilter(name={"any_": ["other"]})
        async with (
            watching(client, work_pool_filter=in_pool, flow_run_filter=pooled) as by_pool,
            watching(client, flow_filter=of_flow, snapshot=False) as by_flow,
        ):
            await by_pool.until(has("marker"))
            await by_flow.until(has("marker"))
            on_gpu = await client.create_flow_run(FLOW, state=Pending(), work_pool_name="gpu")
            other = await client.create_flow_run(SimpleNamespace(name="other"), state=Pending())
            await client.create_flow_run(FLOW, state=Pending())  # neither
            await client.set_flow_run_state(on_gpu.id, Running())
            await client.set_flow_run_state(other.id, Running())
            await by_pool.until(changed(2))
            await by_flow.until(changed(2))
        assert states_of(by_pool.events) == [
            (str(on_gpu.id), "Pending"),
            (str(on_gpu.id), "Running"),
        ]
        assert by_pool.changes()[0].flow_run.work_pool_name == "gpu"
        assert states_of(by_flow.events) == [(str(other.id), "Pending"), (str(other.id), "Running")]


async def test_a_stopping_server_ends_its_watches_with_a_cursor_to_resume(database):
    stack = ExitStack()
    address = stack.enter_context(server(database))
    async with get_client(api_url=address) as client:
        watcher = Watcher(client.watch_flow_runs(snapshot=False))
        await watcher.until(has("marker"))
        await asyncio.to_thread(stack.close)  # stops the server (grace 1 s)
        # The stream ended with the server's own status, not by the grace running out.
        with pytest.raises(FlowRPCError) as raised:
            await asyncio.wait_for(watcher.task, WITHIN)
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    assert raised.value.reason == "SERVER_STOPPING"


async def test_snapshot_holds_only_the_runs_the_filter_selects(flowrpc_server):
    async with get_client(api_url=flowrpc_server) as client:
        running = [await client.create_flow_run(FLOW, state=Running()) for _ in range(3)]
        await client.create_flow_run(FLOW, state=Pending())
        only_running = FlowRunFilter(state={"type": {"any_": ["RUNNING"]}})
        async with watching(client, flow_run_filter=only_running) as watcher:
            events = await watcher.until(has("marker"))
        snapshot = [event.flow_run.id for event in events if event.type == "snapshot"]
        assert snapshot == [run.id for run in reversed(running)]  # newest first


async def test_resume_from_a_cursor_gets_what_was_committed_meanwhile_once(flowrpc_server):
    async with get_client(api_url=flowrpc_server) as client:
        run = await client.create_flow_run(FLOW, state=Pending())
        async with watching(client, snapshot=False) as watcher:
            marker = (await watcher.until(has("marker")))[-1].cursor
        # Disconnected: three changes, one of them of a run deleted since.
        await client.set_flow_run_state(run.id, Running())
        gone = await client.create_flow_run(FLOW, state=Pending())
        await client.delete_flow_run(gone.id)
        await client.set_flow_run_state(run.id, Completed())
        async with watching(client, since=marker) as watcher:
            await watcher.until(changed(2))
            again = await client.create_flow_run(FLOW, state=Pending())
            await watcher.until(changed(3))
        assert states_of(watcher.events) == [
            (str(run.id), "Running"),
            (str(run.id), "Completed"),
            (str(again.id), "Pending"),
        ]
        middle = watcher.changes()[1].cursor
        async with watching(client, since=middle) as watcher:
            await watcher.until(changed(1))
        assert states_of(watcher.events) == [(str(again.id), "Pending")]


async def test_a_slow_watcher_reads_from_the_change_log_and_misses_nothing(database):
    with server(database, watch_buffer=5) as address:
        async with get_client(api_url=address) as client:
            runs = [await client.create_flow_run(FLOW, state=Pending()) for _ in range(40)]
            async with watching(client, snapshot=False) as watcher:
                await watcher.until(has("marker"))
                # Batches of 40 changes, more than the watcher's buffer of 5: the hub drops it
                # at once and it catches up from the log, while the writes go on.
                for new_state in (Running, Completed):
                    results = [
                        r async for r in client.bulk_set_flow_run_state(new_state(), force=True)
                    ]
                    assert len(results) == 40
                extra = await client.create_flow_run(FLOW, state=Pending())
                await watcher.until(changed(81))
        seen = states_of(watcher.events)
        expected = [(str(r.id), "Running") for r in runs] + [(str(r.id), "Completed") for r in runs]
        assert sorted(seen[:80]) == sorted(expected)
        assert seen[80] == (str(extra.id), "Pending")
        cursors = [event.cursor for event in watcher.changes()]
        assert len(cursors) == len(set(cursors)) == 81


async def test_an_expired_cursor_is_out_of_range(database):
    with server(database, watch_retention_seconds=0.05, watch_prune_loop_seconds=0.1) as address:
        async with get_client(api_url=address) as client:
            async with watching(client, snapshot=False) as watcher:
                marker = (await watcher.until(has("marker")))[-1].cursor
            for _ in range(3):
                await client.create_flow_run(FLOW, state=Pending())

            async def resumed() -> None:
                async for _ in client.watch_flow_runs(since=marker):
                    pass

            for _ in range(WITHIN * 10):  # until the leader's prune has run
                try:
                    await asyncio.wait_for(resumed(), 0.5)
                except FlowRPCError as error:
                    assert error.code == grpc.StatusCode.OUT_OF_RANGE
                    assert error.reason == "WATCH_CURSOR_EXPIRED"
                    return
                except TimeoutError:
                    pass
            raise AssertionError("the cursor never expired")


async def test_bad_cursors_limits_and_too_many_watchers(database):
    with server(database, watch_max_watchers=1, max_list_length=3) as address:
        async with get_client(api_url=address) as client:

            async def first_error(**kwargs: Any) -> FlowRPCError:
                with pytest.raises(FlowRPCError) as raised:
                    async for _ in client.watch_flow_runs(**kwargs):
                        pass
                return raised.value

            error = await first_error(since="not-a-cursor")
            assert error.code == grpc.StatusCode.INVALID_ARGUMENT
            from flowrpc.server.watch import encode_cursor

            error = await first_error(since=encode_cursor(10**9))
            assert error.code == grpc.StatusCode.FAILED_PRECONDITION
            assert error.reason == "WATCH_CURSOR_UNKNOWN"
            too_many_ids = FlowRunFilter(id={"any_": [f"{i:032x}" for i in range(4)]})
            error = await first_error(flow_run_filter=too_many_ids)
            assert error.code == grpc.StatusCode.INVALID_ARGUMENT
            assert error.reason == "LIMIT_EXCEEDED"
            async with watching(client) as watcher:
                await watcher.until(has("marker"))
                error = await first_error()
                assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert error.reason == "TOO_MANY_WATCHERS"
            # The slot is free again once the first watcher is gone.
            for _ in range(WITHIN * 10):
                async with watching(client) as watcher:
                    await asyncio.sleep(0.1)
                    if watcher.task.done() and watcher.task.exception():
                        continue
                    await watcher.until(has("marker"))
                    return
            raise AssertionError("the watcher slot was never freed")


def test_the_sync_client_iterates_the_same_events(flowrpc_server):
    with get_client(sync_client=True, api_url=flowrpc_server) as client:
        run = client.create_flow_run(FLOW, state=Pending())
        events = client.watch_flow_runs()
        assert next(events).type == "snapshot"
        assert next(events).type == "marker"
        done = threading.Event()

        def change() -> None:
            with get_client(sync_client=True, api_url=flowrpc_server) as other:
                other.set_flow_run_state(run.id, Running())
            done.set()

        threading.Thread(target=change).start()
        event = next(events)
        events.close()
        assert done.wait(WITHIN)
        assert (event.type, event.flow_run.id, event.state.name) == ("change", run.id, "Running")


async def test_raw_messages_follow_the_contract(stubs):
    """One oneof kind per message; the changes message decodes as the proto says."""
    from flowrpc.v1 import flow_service_pb2 as fl

    flow = (await stubs.flows.CreateFlow(fl.CreateFlowRequest(name="raw"))).flow
    call = stubs.flow_runs.WatchFlowRuns(
        fr.WatchFlowRunsRequest(filter=filter_pb2.FlowRunFilterSet(), skip_snapshot=True)
    )
    marker = await call.read()
    assert marker.WhichOneof("event") == "marker" and marker.marker.cursor
    run = (await stubs.flow_runs.CreateFlowRun(fr.CreateFlowRunRequest(flow_id=flow.id))).flow_run
    message = await asyncio.wait_for(call.read(), WITHIN)
    call.cancel()
    assert message.WhichOneof("event") == "changes"
    (change,) = message.changes.changes
    assert change.flow_run.id == run.id and change.state.id == run.state.id
    assert change.cursor != marker.marker.cursor


async def watch_under_concurrent_writers(addresses: list[str]) -> None:
    """16 clients (spread over `addresses`) move 40 runs through Pending, Running, Completed
    while one watcher watches through the first address and another resumes, afterwards, from
    the same marker through the last: each sees every state written exactly once, in the order
    of each run's history, and both see the same sequence (positions are global)."""
    async with get_client(api_url=addresses[0]) as a, get_client(api_url=addresses[-1]) as b:
        runs = [(await a.create_flow_run(FLOW, state=Scheduled())).id for _ in range(40)]
        async with watching(a, snapshot=False) as live:
            marker = (await live.until(has("marker")))[-1].cursor

            async def writer(number: int) -> None:
                async with get_client(api_url=addresses[number % len(addresses)]) as c:
                    for new_state in (Pending, Running, Completed):
                        for run_id in runs[number::16]:
                            await c.set_flow_run_state(run_id, new_state())

            await asyncio.gather(*(writer(n) for n in range(16)))
            await live.until(changed(120))
        async with watching(b, since=marker) as resumed:
            await resumed.until(changed(120))
        histories = {str(r): [str(s.id) for s in await a.read_flow_run_states(r)] for r in runs}
    seen = [(str(e.flow_run.id), str(e.state.id)) for e in live.changes()]
    assert seen == [(str(e.flow_run.id), str(e.state.id)) for e in resumed.changes()][:120]
    assert len(seen) == len(set(seen)) == 120
    for run_id, history in histories.items():
        assert [state for run, state in seen if run == run_id] == history[1:]


async def test_concurrent_writers_lose_nothing(flowrpc_server):
    await watch_under_concurrent_writers([flowrpc_server])


# ---- PostgreSQL: replicas, and the commit order of positions ----

needs_postgres = pytest.mark.skipif(
    not POSTGRES_URL, reason="set FLOWRPC_TEST_DATABASE_URL to a PostgreSQL URL"
)


@needs_postgres
async def test_a_watcher_on_one_replica_sees_transitions_made_through_the_other():
    with postgres_schema(POSTGRES_URL) as url:
        settings = Settings(database_url=url, port=0)
        with server(settings) as first, server(settings) as second:
            async with get_client(api_url=first) as a, get_client(api_url=second) as b:
                async with watching(a, snapshot=False) as watcher:
                    marker = (await watcher.until(has("marker")))[-1].cursor
                    runs = [await b.create_flow_run(FLOW, state=Pending()) for _ in range(5)]
                    for run in runs:
                        await b.set_flow_run_state(run.id, Running())
                    await watcher.until(changed(10))
                expected = [(str(r.id), "Pending") for r in runs] + [
                    (str(r.id), "Running") for r in runs
                ]
                assert states_of(watcher.events) == expected
                # Resuming on the other replica gives the same changes.
                async with watching(b, since=marker) as again:
                    await again.until(changed(10))
                assert states_of(again.events) == expected


@needs_postgres
async def test_concurrent_writers_on_two_replicas_lose_nothing():
    with postgres_schema(POSTGRES_URL) as url:
        settings = Settings(database_url=url, port=0)
        with server(settings) as first, server(settings) as second:
            await watch_under_concurrent_writers([first, second])


def logged(conn: Any, after: int, upto: int) -> list[str]:
    """The run ids of the change log's rows numbered after `after` up to `upto`, in order."""
    position = changes.change.c.position
    query = (
        sa.select(changes.change.c.flow_run_id)
        .where(position > after, position <= upto)
        .order_by(position)
    )
    return list(conn.execute(query).scalars())


@needs_postgres
def test_a_change_that_commits_last_is_numbered_last():
    """The race an id, a sequence or a timestamp alone loses: a transaction that writes its change
    first but commits last. A reader that has read past the later transaction's change still
    gets the earlier one, numbered after it; a second numbering meanwhile does not wait."""
    with postgres_schema(POSTGRES_URL) as url:
        db = Database(url)
        db.migrate()
        db.close()
        engine = sa.create_engine(url, poolclass=sa.NullPool)
        first, second = engine.connect(), engine.connect()
        try:
            first.begin()  # writes first (the lower id), commits last
            changes.note(first, [("run-a", "state-a")])
            changes.flush(first, 1)
            with second.begin():
                changes.note(second, [("run-b", "state-b")])
                changes.flush(second, 2)
            with engine.begin() as conn:
                assert changes.sequence(conn) == 1  # only what is committed
                with engine.begin() as other:  # another replica's numbering does not wait
                    assert changes.sequence(other) == 0
            with engine.connect() as reader:
                cursor = changes.head(reader)
                seen = logged(reader, 0, cursor)
            first.commit()
            with engine.begin() as conn:
                assert changes.sequence(conn) == 1
            with engine.connect() as reader:
                later = logged(reader, cursor, changes.head(reader))
            assert seen == ["run-b"] and later == ["run-a"]
        finally:
            first.close()
            second.close()
            engine.dispose()
