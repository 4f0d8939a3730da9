"""The rule engine: runs a prioritised policy of small rules, then the global bookkeeping.

Mechanics (prefect-semantics.md §5.1):
* Rules are selected once, by the original (initial type, proposed type) pair.
* Rules run their `before` hook in priority order. Once a rule changes the transition (rejects
  into another state type, waits, aborts, or rejects without a state), the remaining selected
  rules are skipped: they were chosen for a transition that no longer happens.
* If a proposal remains, the global transforms update the run and the state.
* Entered rules then exit in reverse order: `after` if the transition is still the one they were
  selected for, otherwise they "fizzle" and run `cleanup` to undo what their `before` did.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from .records import FlowRunRecord, SetStateStatus, State, StateType, TaskRunRecord

ALL_TYPES: frozenset[StateType] = frozenset(StateType)
# None stands for "the run has no state yet"; it belongs to every FROM set that says "any".
ANY_STATE: frozenset[StateType | None] = ALL_TYPES | {None}

RunT = TypeVar("RunT", FlowRunRecord, TaskRunRecord)
Transition = tuple[StateType | None, StateType | None]


@dataclass
class Decision:
    """What storage must do: write `state` (if any) as the new current state, then answer."""

    status: SetStateStatus
    state: State | None  # None: nothing is written, the run keeps its current state
    reason: str | None = None  # REJECT / WAIT / ABORT details
    delay_seconds: int | None = None  # WAIT only
    # Flow runs: the subflow's new state, copied for its parent task run.
    parent_task_state: State | None = None
    # Task runs: (cache_key, cache_expiration) to record for the written state.
    cache_insert: tuple[str, int | None] | None = None


@dataclass
class Context(Generic[RunT]):
    """One orchestration in progress: the facts, the proposal so far, and the outcome so far."""

    run: RunT
    initial: State | None
    proposed: State | None
    now: int
    flow_run: FlowRunRecord | None = None  # task runs: the enclosing flow run
    cached_state: State | None = None  # task runs: a valid cached COMPLETED state
    status: SetStateStatus = SetStateStatus.ACCEPT
    reason: str | None = None
    delay_seconds: int | None = None
    parent_task_state: State | None = None
    cache_insert: tuple[str, int | None] | None = None

    @property
    def transition(self) -> Transition:
        return (
            self.initial.type if self.initial else None,
            self.proposed.type if self.proposed else None,
        )

    def reject(self, state: State | None, reason: str) -> None:
        """Replace the proposal with `state`, or with nothing (the run keeps its state)."""
        self.status, self.proposed, self.reason = SetStateStatus.REJECT, state, reason

    def wait(self, seconds: int, reason: str) -> None:
        self.status, self.proposed, self.reason = SetStateStatus.WAIT, None, reason
        self.delay_seconds = seconds

    def abort(self, reason: str) -> None:
        self.status, self.proposed, self.reason = SetStateStatus.ABORT, None, reason

    def rename(self, name: str) -> None:
        """Change the proposed name only: the transition (and so later rules) is unaffected."""
        assert self.proposed is not None
        self.proposed.name = name

    def decision(self) -> Decision:
        return Decision(
            status=self.status,
            state=self.proposed,
            reason=self.reason,
            delay_seconds=self.delay_seconds,
            parent_task_state=self.parent_task_state,
            cache_insert=self.cache_insert,
        )


class Rule:
    """A named rule for the transitions FROM -> TO. Subclasses override the hooks they need.

    A fresh instance serves one orchestration, so a rule may keep what `cleanup` must undo.
    """

    FROM: ClassVar[frozenset[StateType | None]] = ANY_STATE
    TO: ClassVar[frozenset[StateType | None]] = ANY_STATE

    @classmethod
    def applies_to(cls, transition: Transition) -> bool:
        initial, proposed = transition
        return initial in cls.FROM and proposed in cls.TO

    def before(self, ctx: Context) -> None:
        """Inspect the proposal; may reject, wait, abort or rename it."""

    def after(self, ctx: Context) -> None:
        """Runs when the transition the rule was selected for is the one that happened."""

    def cleanup(self, ctx: Context) -> None:
        """Runs instead of `after` when the transition changed: undo `before`'s side effects."""


Transform = Callable[[Context], None]


@functools.cache
def _selected(rules: tuple[type[Rule], ...], transition: Transition) -> tuple[type[Rule], ...]:
    """The rules of a policy that apply to a transition, in order: asked once per pair (asking
    every rule on every orchestration cost about 7 µs of a 65 µs bulk-cancelled run)."""
    return tuple(rule for rule in rules if rule.applies_to(transition))


def run_policy(
    ctx: Context, rules: Sequence[type[Rule]], transforms: Sequence[Transform]
) -> Decision:
    selected_for = ctx.transition
    entered: list[Rule] = []
    for rule_type in _selected(tuple(rules), selected_for):
        if ctx.transition != selected_for:
            break  # an earlier rule changed the transition: every later rule is skipped
        rule = rule_type()
        rule.before(ctx)
        entered.append(rule)

    if ctx.proposed is not None:  # nullified proposals leave the run untouched
        for transform in transforms:
            transform(ctx)

    for rule in reversed(entered):
        if ctx.transition == selected_for:
            rule.after(ctx)
        else:
            rule.cleanup(ctx)
    return ctx.decision()
