"""The engine's mechanics (§5.1), exercised with throw-away rules."""

from flowrpc.server.orchestration import FlowPolicy, orchestrate_flow_run
from flowrpc.server.orchestration.engine import Context, Rule, run_policy
from flowrpc.server.orchestration.records import SetStateStatus, StateType

S = StateType


def _context(build, initial_type, proposed_type):
    initial = build.state(initial_type) if initial_type else None
    return Context(
        run=build.flow_run(initial), initial=initial, proposed=build.proposal(proposed_type), now=0
    )


def _recording_rules(log, from_=None, to=None):
    """A rule class that records its hooks under `name`."""

    def make(name, action=None):
        class Recorder(Rule):
            if from_ is not None:
                FROM = frozenset(from_)
            if to is not None:
                TO = frozenset(to)

            def before(self, ctx):
                log.append(f"{name}.before")
                if action:
                    action(ctx)

            def after(self, ctx):
                log.append(f"{name}.after")

            def cleanup(self, ctx):
                log.append(f"{name}.cleanup")

        return Recorder

    return make


def test_rules_are_selected_by_from_and_to_types(build):
    log = []
    running_only = _recording_rules(log, to={S.RUNNING})("running")
    pending_only = _recording_rules(log, to={S.PENDING})("pending")
    no_state_only = _recording_rules(log, from_={None})("no_state")
    run_policy(
        _context(build, S.SCHEDULED, S.PENDING), [running_only, pending_only, no_state_only], []
    )
    assert log == ["pending.before", "pending.after"]


def test_none_initial_belongs_to_any_state(build):
    log = []
    any_rule = _recording_rules(log)("any")
    run_policy(_context(build, None, S.PENDING), [any_rule], [])
    assert log == ["any.before", "any.after"]


def test_after_hooks_run_in_reverse_order(build):
    log = []
    make = _recording_rules(log)
    run_policy(_context(build, S.RUNNING, S.COMPLETED), [make("a"), make("b")], [])
    assert log == ["a.before", "b.before", "b.after", "a.after"]


def test_rules_after_a_changed_transition_are_skipped_and_earlier_ones_fizzle(build):
    log = []
    make = _recording_rules(log)
    rejecting = make("b", lambda ctx: ctx.reject(build.proposal(S.SCHEDULED), "nope"))
    ctx = _context(build, S.RUNNING, S.FAILED)
    decision = run_policy(ctx, [make("a"), rejecting, make("c")], [])
    # c never enters; b changed the transition itself, so it fizzles too.
    assert log == ["a.before", "b.before", "b.cleanup", "a.cleanup"]
    assert decision.status is SetStateStatus.REJECT
    assert decision.state.type is S.SCHEDULED
    assert decision.reason == "nope"


def test_rename_keeps_the_transition_so_later_rules_still_run(build):
    log = []
    make = _recording_rules(log)
    renaming = make("a", lambda ctx: ctx.rename("Other"))
    decision = run_policy(_context(build, S.RUNNING, S.COMPLETED), [renaming, make("b")], [])
    assert log == ["a.before", "b.before", "b.after", "a.after"]
    assert decision.status is SetStateStatus.ACCEPT
    assert decision.state.name == "Other"


def test_nullified_proposal_skips_transforms_and_writes_nothing(build):
    calls = []
    make = _recording_rules([])
    aborting = make("a", lambda ctx: ctx.abort("stop"))
    decision = run_policy(_context(build, S.RUNNING, S.COMPLETED), [aborting], [calls.append])
    assert calls == []
    assert (decision.status, decision.state, decision.reason) == (
        SetStateStatus.ABORT,
        None,
        "stop",
    )


def test_wait_sets_delay_and_writes_nothing(build):
    make = _recording_rules([])
    waiting = make("a", lambda ctx: ctx.wait(7, "later"))
    decision = run_policy(_context(build, S.PENDING, S.RUNNING), [waiting], [])
    assert (decision.status, decision.state, decision.delay_seconds, decision.reason) == (
        SetStateStatus.WAIT,
        None,
        7,
        "later",
    )


def test_transforms_run_in_order_when_a_state_remains(build):
    calls = []
    transforms = [lambda ctx: calls.append("first"), lambda ctx: calls.append("second")]
    decision = run_policy(_context(build, S.RUNNING, S.COMPLETED), [], transforms)
    assert calls == ["first", "second"]
    assert decision.status is SetStateStatus.ACCEPT
    assert decision.reason is None


def test_the_callers_proposal_is_not_mutated(build):
    initial = build.state(S.RUNNING)
    run = build.flow_run(initial)
    proposed = build.proposal(S.COMPLETED)
    decision = orchestrate_flow_run(run, initial, proposed, policy=FlowPolicy.CORE, now=build.now)
    assert decision.state is not proposed
    assert decision.state.id == proposed.id
    assert decision.state.details.flow_run_id == run.id
    assert proposed.details.flow_run_id is None


def test_scheduled_proposal_without_time_defaults_to_its_timestamp(build):
    run = build.flow_run(deployment_id="d")
    proposed = build.proposal(S.SCHEDULED)
    proposed.details.scheduled_time = None
    decision = orchestrate_flow_run(run, None, proposed, policy=FlowPolicy.CORE, now=build.now)
    assert decision.state.details.scheduled_time == build.now
    assert run.next_scheduled_start_time == build.now
