"""ListFlowRuns / CountFlowRuns with every FlowRunFilter field and the other filter objects."""

from __future__ import annotations

from types import SimpleNamespace

from helpers import (
    CANCELLED,
    COMPLETED,
    FAILED,
    FUTURE,
    PENDING,
    RUNNING,
    SCHEDULED,
    T0,
    count,
    hours,
    make_flow,
    make_run,
    matching,
    scheduled,
    set_state,
    state,
    strings,
    ts,
    types,
)

from flowrpc.v1 import deployment_pb2
from flowrpc.v1 import deployment_service_pb2 as dp
from flowrpc.v1 import filter_pb2 as f
from flowrpc.v1 import task_run_service_pb2 as tr
from flowrpc.v1 import work_pool_service_pb2 as wp

OR = f.FILTER_OPERATOR_OR
MISSING = "00000000-0000-7000-8000-000000000000"


async def runs(stubs, flow_id, **named):
    """Creates one run per keyword (name -> CreateFlowRunRequest fields); their ids by name."""
    ids = {}
    for key, fields in named.items():
        fields.setdefault("name", key)
        ids[key] = (await make_run(stubs, flow_id, **fields)).id
    return SimpleNamespace(**ids)


# ---- id, name ----


async def test_id_any_of_and_not_any_of(stubs):
    flow = await make_flow(stubs)
    r = await runs(stubs, flow.id, a={}, b={}, c={})
    assert await matching(
        stubs, flow_runs=f.FlowRunFilter(id=f.FlowRunFilterId(any_of=strings(r.a, r.c, MISSING)))
    ) == {r.a, r.c}
    assert await matching(
        stubs, flow_runs=f.FlowRunFilter(id=f.FlowRunFilterId(not_any_of=strings(r.a)))
    ) == {r.b, r.c}
    assert (
        await count(
            stubs, flow_runs=f.FlowRunFilter(id=f.FlowRunFilterId(any_of=strings(r.a, r.b)))
        )
        == 2
    )


async def test_empty_any_of_matches_nothing_and_empty_not_any_of_is_ignored(stubs):
    flow = await make_flow(stubs)
    r = await runs(stubs, flow.id, a={}, b={})
    assert (
        await matching(stubs, flow_runs=f.FlowRunFilter(id=f.FlowRunFilterId(any_of=strings())))
        == set()
    )
    assert (
        await count(stubs, flow_runs=f.FlowRunFilter(id=f.FlowRunFilterId(any_of=strings()))) == 0
    )
    assert await matching(
        stubs, flow_runs=f.FlowRunFilter(id=f.FlowRunFilterId(not_any_of=strings()))
    ) == {r.a, r.b}
    # An unset filter object and an empty one match everything.
    assert await matching(stubs) == {r.a, r.b}
    assert await matching(stubs, flow_runs=f.FlowRunFilter()) == {r.a, r.b}


async def test_name_any_of_and_like(stubs):
    flow = await make_flow(stubs)
    r = await runs(stubs, flow.id, **{"d-1-1": {}, "d-1-2": {}, "D_2": {}, "other": {}})
    ids = vars(r)
    assert await matching(
        stubs, flow_runs=f.FlowRunFilter(name=f.FlowRunFilterName(any_of=strings("other", "d-1-2")))
    ) == {ids["other"], ids["d-1-2"]}
    # like: case-insensitive substring, with "_" a one-character wildcard (as in Prefect).
    assert await matching(
        stubs, flow_runs=f.FlowRunFilter(name=f.FlowRunFilterName(like="d_1"))
    ) == {ids["d-1-1"], ids["d-1-2"]}
    assert await matching(
        stubs, flow_runs=f.FlowRunFilter(name=f.FlowRunFilterName(like="d_"))
    ) == {ids["d-1-1"], ids["d-1-2"], ids["D_2"]}
    assert await matching(
        stubs, flow_runs=f.FlowRunFilter(name=f.FlowRunFilterName(like="THE"))
    ) == {ids["other"]}
    assert await matching(
        stubs,
        flow_runs=f.FlowRunFilter(
            name=f.FlowRunFilterName(any_of=strings("other", "d-1-1"), like="d-")
        ),
    ) == {ids["d-1-1"]}


# ---- tags ----


async def test_tags_all_of_any_of_is_null_and_or(stubs):
    flow = await make_flow(stubs)
    r = await runs(
        stubs, flow.id, ab={"tags": ["a", "b"]}, a={"tags": ["a"]}, c={"tags": ["c"]}, none={}
    )

    def tags(**kw):
        return f.FlowRunFilter(tags=f.FlowRunFilterTags(**kw))

    assert await matching(stubs, flow_runs=tags(all_of=strings("a", "b"))) == {r.ab}
    assert await matching(stubs, flow_runs=tags(all_of=strings("a"))) == {r.ab, r.a}
    assert await matching(stubs, flow_runs=tags(any_of=strings("b", "c"))) == {r.ab, r.c}
    assert await matching(stubs, flow_runs=tags(any_of=strings())) == set()
    assert await matching(stubs, flow_runs=tags(is_null=True)) == {r.none}
    assert await matching(stubs, flow_runs=tags(is_null=False)) == {r.ab, r.a, r.c}
    # AND (default) of all_of [a] and any_of [b]; OR of all_of [a,b] and is_null.
    assert await matching(stubs, flow_runs=tags(all_of=strings("a"), any_of=strings("b"))) == {r.ab}
    assert await matching(
        stubs, flow_runs=tags(operator=OR, all_of=strings("a", "b"), is_null=True)
    ) == {r.ab, r.none}


# ---- deployment, work queue ----


async def deployment_setup(stubs):
    """A flow with a deployment on pool "pool"; runs from it and runs without a deployment."""
    flow = await make_flow(stubs)
    await stubs.work_pools.CreateWorkPool(wp.CreateWorkPoolRequest(name="pool", type="docker"))
    await stubs.work_pools.CreateWorkQueue(
        wp.CreateWorkQueueRequest(work_pool_name="pool", name="fast")
    )
    deployment = (
        await stubs.deployments.CreateDeployment(
            dp.CreateDeploymentRequest(
                deployment=deployment_pb2.Deployment(
                    name="nightly", flow_id=flow.id, tags=["dep"], work_pool_name="pool"
                )
            )
        )
    ).deployment

    async def from_deployment(**fields):
        request = dp.CreateFlowRunFromDeploymentRequest(deployment_id=deployment.id, **fields)
        return (await stubs.deployments.CreateFlowRunFromDeployment(request)).flow_run.id

    deployed = await from_deployment()
    deployed_fast = await from_deployment(work_queue_name="fast")
    plain = await make_run(stubs, flow.id, work_queue_name="loose")
    bare = await make_run(stubs, flow.id)
    return SimpleNamespace(
        flow=flow,
        deployment=deployment,
        deployed=deployed,
        deployed_fast=deployed_fast,
        plain=plain.id,
        bare=bare.id,
    )


async def test_deployment_id_any_of_and_is_null(stubs):
    s = await deployment_setup(stubs)

    def dep(**kw):
        return f.FlowRunFilter(deployment_id=f.FlowRunFilterDeploymentId(**kw))

    assert await matching(stubs, flow_runs=dep(any_of=strings(s.deployment.id))) == {
        s.deployed,
        s.deployed_fast,
    }
    assert await matching(stubs, flow_runs=dep(is_null=True)) == {s.plain, s.bare}
    assert await matching(stubs, flow_runs=dep(is_null=False)) == {s.deployed, s.deployed_fast}
    assert await matching(
        stubs, flow_runs=dep(operator=OR, any_of=strings(s.deployment.id), is_null=True)
    ) == {s.deployed, s.deployed_fast, s.plain, s.bare}


async def test_work_queue_name_any_of_and_is_null(stubs):
    s = await deployment_setup(stubs)

    def queue(**kw):
        return f.FlowRunFilter(work_queue_name=f.FlowRunFilterWorkQueueName(**kw))

    assert await matching(stubs, flow_runs=queue(any_of=strings("default"))) == {s.deployed}
    assert await matching(stubs, flow_runs=queue(any_of=strings("fast", "loose"))) == {
        s.deployed_fast,
        s.plain,
    }
    assert await matching(stubs, flow_runs=queue(is_null=True)) == {s.bare}
    assert await matching(stubs, flow_runs=queue(is_null=False)) == {
        s.deployed,
        s.deployed_fast,
        s.plain,
    }


# ---- state ----


async def state_setup(stubs):
    flow = await make_flow(stubs)
    return await runs(
        stubs,
        flow.id,
        sched={"state": scheduled(FUTURE)},
        late={"state": scheduled(T0, name="Late")},
        pending={},
        running={"state": state(RUNNING)},
        done={"state": state(COMPLETED)},
    )


def by_state(**kw):
    return f.FlowRunFilter(state=f.FlowRunFilterState(**kw))


async def test_state_type_any_of_and_not_any_of(stubs):
    r = await state_setup(stubs)
    by_type = f.FlowRunFilterStateType
    assert await matching(
        stubs, flow_runs=by_state(type=by_type(any_of=types(SCHEDULED, RUNNING)))
    ) == {r.sched, r.late, r.running}
    assert await matching(
        stubs, flow_runs=by_state(type=by_type(not_any_of=types(SCHEDULED, RUNNING)))
    ) == {r.pending, r.done}
    assert await count(stubs, flow_runs=by_state(type=by_type(any_of=types(COMPLETED)))) == 1


async def test_state_name_any_of_and_not_any_of(stubs):
    r = await state_setup(stubs)
    by_name = f.FlowRunFilterStateName
    assert await matching(
        stubs, flow_runs=by_state(name=by_name(any_of=strings("Late", "Completed")))
    ) == {r.late, r.done}
    assert await matching(
        stubs, flow_runs=by_state(name=by_name(not_any_of=strings("Late", "Scheduled")))
    ) == {r.pending, r.running, r.done}


async def test_state_sub_filter_with_both_any_of_and_not_any_of_is_ignored(stubs):
    r = await state_setup(stubs)
    everything = {r.sched, r.late, r.pending, r.running, r.done}
    both_types = f.FlowRunFilterStateType(any_of=types(RUNNING), not_any_of=types(PENDING))
    assert await matching(stubs, flow_runs=by_state(type=both_types)) == everything
    both_names = f.FlowRunFilterStateName(any_of=strings("Late"), not_any_of=strings("x"))
    assert await matching(stubs, flow_runs=by_state(name=both_names)) == everything
    # The ignored sub-filter does not disturb its sibling.
    assert await matching(
        stubs,
        flow_runs=by_state(type=both_types, name=f.FlowRunFilterStateName(any_of=strings("Late"))),
    ) == {r.late}


async def test_state_type_and_name_combined_with_and_or_or(stubs):
    r = await state_setup(stubs)
    scheduled_type = f.FlowRunFilterStateType(any_of=types(SCHEDULED))
    late_or_done = f.FlowRunFilterStateName(any_of=strings("Late", "Completed"))
    assert await matching(stubs, flow_runs=by_state(type=scheduled_type, name=late_or_done)) == {
        r.late
    }
    assert await matching(
        stubs, flow_runs=by_state(operator=OR, type=scheduled_type, name=late_or_done)
    ) == {r.sched, r.late, r.done}


# ---- versions, keys, parents, creator ----


async def test_flow_version_any_of(stubs):
    flow = await make_flow(stubs)
    r = await runs(stubs, flow.id, v1={"flow_version": "1"}, v2={"flow_version": "2"}, nov={})
    assert await matching(
        stubs,
        flow_runs=f.FlowRunFilter(
            flow_version=f.FlowRunFilterFlowVersion(any_of=strings("2", "3"))
        ),
    ) == {r.v2}


async def test_idempotency_key_any_of_and_not_any_of(stubs):
    flow = await make_flow(stubs)
    r = await runs(
        stubs, flow.id, k1={"idempotency_key": "k1"}, k2={"idempotency_key": "k2"}, nokey={}
    )
    key = f.FlowRunFilterIdempotencyKey
    assert await matching(
        stubs, flow_runs=f.FlowRunFilter(idempotency_key=key(any_of=strings("k1")))
    ) == {r.k1}
    # NOT IN drops runs without a key too (SQL NULL semantics, as in Prefect).
    assert await matching(
        stubs, flow_runs=f.FlowRunFilter(idempotency_key=key(not_any_of=strings("k1")))
    ) == {r.k2}


async def test_parent_task_run_id_and_parent_flow_run_id(stubs):
    flow = await make_flow(stubs)
    parent = await make_run(stubs, flow.id, name="parent", state=state(RUNNING))
    other_parent = await make_run(stubs, flow.id, name="other-parent")
    task = (
        await stubs.task_runs.CreateTaskRun(
            tr.CreateTaskRunRequest(flow_run_id=parent.id, task_key="sub", name="sub")
        )
    ).task_run
    child = await make_run(stubs, flow.id, name="child", parent_task_run_id=task.id)
    grandchild_task = (
        await stubs.task_runs.CreateTaskRun(
            tr.CreateTaskRunRequest(flow_run_id=child.id, task_key="sub2", name="sub2")
        )
    ).task_run
    grandchild = await make_run(
        stubs, flow.id, name="grandchild", parent_task_run_id=grandchild_task.id
    )
    parent_task = f.FlowRunFilterParentTaskRunId
    assert await matching(
        stubs, flow_runs=f.FlowRunFilter(parent_task_run_id=parent_task(any_of=strings(task.id)))
    ) == {child.id}
    assert await matching(
        stubs, flow_runs=f.FlowRunFilter(parent_task_run_id=parent_task(is_null=False))
    ) == {child.id, grandchild.id}
    assert await matching(
        stubs, flow_runs=f.FlowRunFilter(parent_task_run_id=parent_task(is_null=True))
    ) == {parent.id, other_parent.id}
    # Direct subflows only.
    parent_flow = f.FlowRunFilterParentFlowRunId
    assert await matching(
        stubs, flow_runs=f.FlowRunFilter(parent_flow_run_id=parent_flow(any_of=strings(parent.id)))
    ) == {child.id}
    assert await matching(
        stubs,
        flow_runs=f.FlowRunFilter(
            parent_flow_run_id=parent_flow(any_of=strings(parent.id, child.id))
        ),
    ) == {child.id, grandchild.id}
    assert (
        await matching(
            stubs,
            flow_runs=f.FlowRunFilter(
                parent_flow_run_id=parent_flow(any_of=strings(other_parent.id))
            ),
        )
        == set()
    )


async def test_created_by(stubs):
    # Runs created through the API have no creator.
    flow = await make_flow(stubs)
    r = await runs(stubs, flow.id, a={}, b={})
    created_by = f.FlowRunFilterCreatedBy
    assert await matching(
        stubs, flow_runs=f.FlowRunFilter(created_by=created_by(is_null=True))
    ) == {r.a, r.b}
    assert (
        await matching(stubs, flow_runs=f.FlowRunFilter(created_by=created_by(is_null=False)))
        == set()
    )
    assert (
        await matching(
            stubs, flow_runs=f.FlowRunFilter(created_by=created_by(type=strings("SCHEDULE")))
        )
        == set()
    )


# ---- times ----


async def time_setup(stubs):
    """never: scheduled at T0, never ran (start_time unset, COALESCE -> T0).
    ran: scheduled at T0+1h, then RUNNING now (start_time = now).
    future: scheduled at FUTURE. done: created COMPLETED now (start = end = now)."""
    flow = await make_flow(stubs)
    r = await runs(
        stubs,
        flow.id,
        never={"state": scheduled(T0)},
        ran={"state": scheduled(T0 + hours(1))},
        future={"state": scheduled(FUTURE)},
        done={"state": state(COMPLETED)},
    )
    result = await set_state(stubs, r.ran, state(RUNNING))
    assert result.state.type == RUNNING
    return r


async def test_start_time_compares_coalesce_of_start_and_expected(stubs):
    r = await time_setup(stubs)
    start = f.FlowRunFilterStartTime
    assert await matching(
        stubs, flow_runs=f.FlowRunFilter(start_time=start(before=ts(T0 + hours(2))))
    ) == {r.never}
    assert await matching(
        stubs, flow_runs=f.FlowRunFilter(start_time=start(after=ts(T0 + hours(2))))
    ) == {r.ran, r.future, r.done}
    # Inclusive bounds.
    assert await matching(
        stubs, flow_runs=f.FlowRunFilter(start_time=start(after=ts(T0), before=ts(T0)))
    ) == {r.never}
    assert await matching(
        stubs,
        flow_runs=f.FlowRunFilter(
            start_time=start(after=ts(T0 + hours(2)), before=ts(FUTURE - hours(1)))
        ),
    ) == {r.ran, r.done}


async def test_start_time_is_null_checks_start_time_only(stubs):
    r = await time_setup(stubs)
    start = f.FlowRunFilterStartTime
    assert await matching(stubs, flow_runs=f.FlowRunFilter(start_time=start(is_null=True))) == {
        r.never,
        r.future,
    }
    assert await matching(stubs, flow_runs=f.FlowRunFilter(start_time=start(is_null=False))) == {
        r.ran,
        r.done,
    }


async def test_end_time(stubs):
    r = await time_setup(stubs)
    end = f.FlowRunFilterEndTime
    assert await matching(stubs, flow_runs=f.FlowRunFilter(end_time=end(before=ts(FUTURE)))) == {
        r.done
    }
    assert await matching(stubs, flow_runs=f.FlowRunFilter(end_time=end(after=ts(FUTURE)))) == set()
    assert await matching(stubs, flow_runs=f.FlowRunFilter(end_time=end(is_null=True))) == {
        r.never,
        r.ran,
        r.future,
    }
    assert await matching(stubs, flow_runs=f.FlowRunFilter(end_time=end(is_null=False))) == {r.done}


async def test_expected_start_time(stubs):
    r = await time_setup(stubs)
    expected = f.FlowRunFilterExpectedStartTime
    assert await matching(
        stubs, flow_runs=f.FlowRunFilter(expected_start_time=expected(before=ts(T0 + hours(1))))
    ) == {r.never, r.ran}
    assert await matching(
        stubs,
        flow_runs=f.FlowRunFilter(
            expected_start_time=expected(after=ts(T0 + hours(1)), before=ts(FUTURE - hours(1)))
        ),
    ) == {r.ran, r.done}
    assert await matching(
        stubs, flow_runs=f.FlowRunFilter(expected_start_time=expected(after=ts(FUTURE)))
    ) == {r.future}


async def test_next_scheduled_start_time(stubs):
    r = await time_setup(stubs)
    nxt = f.FlowRunFilterNextScheduledStartTime
    # Only runs still SCHEDULED have one; "ran" lost it when it started.
    assert await matching(
        stubs, flow_runs=f.FlowRunFilter(next_scheduled_start_time=nxt(before=ts(FUTURE)))
    ) == {r.never, r.future}
    assert await matching(
        stubs, flow_runs=f.FlowRunFilter(next_scheduled_start_time=nxt(after=ts(T0 + hours(1))))
    ) == {r.future}


async def test_flow_run_filter_operator_or_across_fields(stubs):
    flow = await make_flow(stubs)
    r = await runs(stubs, flow.id, a={"tags": ["x"]}, b={"flow_version": "7"}, c={})
    assert await matching(
        stubs,
        flow_runs=f.FlowRunFilter(
            operator=OR,
            tags=f.FlowRunFilterTags(all_of=strings("x")),
            flow_version=f.FlowRunFilterFlowVersion(any_of=strings("7")),
        ),
    ) == {r.a, r.b}
    assert (
        await matching(
            stubs,
            flow_runs=f.FlowRunFilter(
                tags=f.FlowRunFilterTags(all_of=strings("x")),
                flow_version=f.FlowRunFilterFlowVersion(any_of=strings("7")),
            ),
        )
        == set()
    )


# ---- the other filter objects ----


async def test_flow_filter(stubs):
    etl = await make_flow(stubs, "etl-daily", tags=["prod"])
    ml = await make_flow(stubs, "ml_train")
    a = (await make_run(stubs, etl.id)).id
    b = (await make_run(stubs, ml.id)).id
    await stubs.deployments.CreateDeployment(
        dp.CreateDeploymentRequest(deployment=deployment_pb2.Deployment(name="d", flow_id=ml.id))
    )
    assert await matching(stubs, flows=f.FlowFilter()) == {a, b}
    assert await matching(stubs, flows=f.FlowFilter(id=f.FlowFilterId(any_of=strings(ml.id)))) == {
        b
    }
    assert await matching(
        stubs, flows=f.FlowFilter(id=f.FlowFilterId(not_any_of=strings(ml.id)))
    ) == {a}
    assert await matching(
        stubs, flows=f.FlowFilter(name=f.FlowFilterName(any_of=strings("etl-daily")))
    ) == {a}
    assert await matching(stubs, flows=f.FlowFilter(name=f.FlowFilterName(like="ML_"))) == {b}
    assert await matching(
        stubs, flows=f.FlowFilter(tags=f.FlowFilterTags(all_of=strings("prod")))
    ) == {a}
    assert await matching(stubs, flows=f.FlowFilter(tags=f.FlowFilterTags(is_null=True))) == {b}
    assert await matching(
        stubs, flows=f.FlowFilter(deployment=f.FlowFilterDeployment(is_null=True))
    ) == {a}
    assert await matching(
        stubs, flows=f.FlowFilter(deployment=f.FlowFilterDeployment(is_null=False))
    ) == {b}
    assert await count(stubs, flows=f.FlowFilter(name=f.FlowFilterName(like="etl"))) == 1


async def test_task_run_filter(stubs):
    flow = await make_flow(stubs)
    r = await runs(
        stubs,
        flow.id,
        with_done={"state": state(RUNNING)},
        with_pending={"state": state(RUNNING)},
        without={},
    )
    for run_id, task_state in ((r.with_done, COMPLETED), (r.with_pending, PENDING)):
        await stubs.task_runs.CreateTaskRun(
            tr.CreateTaskRunRequest(
                flow_run_id=run_id,
                task_key="k",
                name=f"task-{task_state}",
                tags=["io"],
                state=state(task_state),
            )
        )
    assert await matching(stubs, task_runs=f.TaskRunFilter()) == {r.with_done, r.with_pending}
    assert await matching(
        stubs,
        task_runs=f.TaskRunFilter(
            state=f.TaskRunFilterState(type=f.TaskRunFilterStateType(any_of=types(COMPLETED)))
        ),
    ) == {r.with_done}
    assert await matching(
        stubs,
        task_runs=f.TaskRunFilter(name=f.TaskRunFilterName(any_of=strings(f"task-{PENDING}"))),
    ) == {r.with_pending}
    assert await matching(
        stubs, task_runs=f.TaskRunFilter(tags=f.TaskRunFilterTags(all_of=strings("io")))
    ) == {r.with_done, r.with_pending}
    assert (
        await matching(stubs, task_runs=f.TaskRunFilter(id=f.TaskRunFilterId(any_of=strings())))
        == set()
    )


async def test_empty_deployment_filter_excludes_runs_without_a_deployment(stubs):
    s = await deployment_setup(stubs)
    assert await matching(stubs, deployments=f.DeploymentFilter()) == {s.deployed, s.deployed_fast}
    assert await count(stubs, deployments=f.DeploymentFilter()) == 2
    assert await count(stubs) == 4


async def test_deployment_filter_fields(stubs):
    s = await deployment_setup(stubs)
    both = {s.deployed, s.deployed_fast}
    d = f.DeploymentFilter
    assert (
        await matching(
            stubs, deployments=d(id=f.DeploymentFilterId(any_of=strings(s.deployment.id)))
        )
        == both
    )
    assert (
        await matching(
            stubs, deployments=d(id=f.DeploymentFilterId(not_any_of=strings(s.deployment.id)))
        )
        == set()
    )
    assert await matching(stubs, deployments=d(name=f.DeploymentFilterName(like="NIGHT"))) == both
    assert (
        await matching(stubs, deployments=d(name=f.DeploymentFilterName(any_of=strings("other"))))
        == set()
    )
    # flow_or_deployment_name matches the flow's name ("etl") too.
    assert (
        await matching(
            stubs,
            deployments=d(
                flow_or_deployment_name=f.DeploymentFilterFlowOrDeploymentName(like="et")
            ),
        )
        == both
    )
    assert (
        await matching(
            stubs,
            deployments=d(
                flow_or_deployment_name=f.DeploymentFilterFlowOrDeploymentName(like="zzz")
            ),
        )
        == set()
    )
    assert await matching(stubs, deployments=d(paused=f.DeploymentFilterPaused(eq=False))) == both
    assert await matching(stubs, deployments=d(paused=f.DeploymentFilterPaused(eq=True))) == set()
    assert (
        await matching(stubs, deployments=d(tags=f.DeploymentFilterTags(any_of=strings("dep"))))
        == both
    )
    assert (
        await matching(
            stubs,
            deployments=d(
                work_queue_name=f.DeploymentFilterWorkQueueName(any_of=strings("default"))
            ),
        )
        == both
    )


async def test_work_pool_and_work_queue_filters(stubs):
    s = await deployment_setup(stubs)
    both = {s.deployed, s.deployed_fast}
    # Setting them at all excludes runs without a work queue ("plain" only has a queue name).
    assert await matching(stubs, work_pools=f.WorkPoolFilter()) == both
    assert await matching(stubs, work_pool_queues=f.WorkQueueFilter()) == both
    assert (
        await matching(
            stubs, work_pools=f.WorkPoolFilter(name=f.WorkPoolFilterName(any_of=strings("pool")))
        )
        == both
    )
    assert (
        await matching(
            stubs, work_pools=f.WorkPoolFilter(type=f.WorkPoolFilterType(any_of=strings("process")))
        )
        == set()
    )
    assert (
        await matching(
            stubs, work_pools=f.WorkPoolFilter(type=f.WorkPoolFilterType(any_of=strings("docker")))
        )
        == both
    )
    assert await matching(
        stubs,
        work_pool_queues=f.WorkQueueFilter(name=f.WorkQueueFilterName(any_of=strings("fast"))),
    ) == {s.deployed_fast}
    assert await matching(
        stubs,
        work_pool_queues=f.WorkQueueFilter(
            name=f.WorkQueueFilterName(startswith=strings("DEF", "zz"))
        ),
    ) == {s.deployed}


async def test_filter_objects_are_combined_with_and(stubs):
    s = await deployment_setup(stubs)
    assert await matching(
        stubs,
        flows=f.FlowFilter(name=f.FlowFilterName(any_of=strings("etl"))),
        deployments=f.DeploymentFilter(),
        work_pool_queues=f.WorkQueueFilter(name=f.WorkQueueFilterName(any_of=strings("fast"))),
    ) == {s.deployed_fast}
    assert (
        await count(
            stubs,
            flows=f.FlowFilter(name=f.FlowFilterName(any_of=strings("other"))),
            deployments=f.DeploymentFilter(),
        )
        == 0
    )


async def test_count_matches_list(stubs):
    r = await state_setup(stubs)
    assert await count(stubs) == 5
    not_scheduled = by_state(type=f.FlowRunFilterStateType(not_any_of=types(SCHEDULED)))
    assert await count(stubs, flow_runs=not_scheduled) == 3
    assert await matching(stubs, flow_runs=not_scheduled) == {r.pending, r.running, r.done}
    assert (
        await count(
            stubs,
            flow_runs=by_state(type=f.FlowRunFilterStateType(any_of=types(FAILED, CANCELLED))),
        )
        == 0
    )
    assert (
        await count(stubs, flow_runs=f.FlowRunFilter(id=f.FlowRunFilterId(any_of=strings()))) == 0
    )


async def test_task_run_filter_subflow_runs(stubs):
    flow = await make_flow(stubs)
    parent = await make_run(stubs, flow.id, name="parent", state=state(RUNNING))
    plain = await make_run(stubs, flow.id, name="plain", state=state(RUNNING))
    sub_task = (
        await stubs.task_runs.CreateTaskRun(
            tr.CreateTaskRunRequest(flow_run_id=parent.id, task_key="sub", name="sub")
        )
    ).task_run
    await stubs.task_runs.CreateTaskRun(
        tr.CreateTaskRunRequest(flow_run_id=plain.id, task_key="t", name="t")
    )
    child = await make_run(stubs, flow.id, name="child", parent_task_run_id=sub_task.id)
    exists = f.TaskRunFilterSubFlowRuns
    assert await matching(stubs, task_runs=f.TaskRunFilter(subflow_runs=exists(exists=True))) == {
        parent.id
    }
    assert await matching(stubs, task_runs=f.TaskRunFilter(subflow_runs=exists(exists=False))) == {
        plain.id
    }
    assert child.id not in await matching(stubs, task_runs=f.TaskRunFilter())
