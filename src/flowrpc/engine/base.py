"""What the flow engine and the task engine share: proposing states and reading decisions.

An engine runs one call as attempts. The driver (engine/run.py, one sync and one async) asks
`begin_attempt()`: True runs the body now, a number means wait that many seconds and ask again
(a retry delay or the server's WAIT), False means the run is over (cached, already completed,
aborted). After the body, `succeed(value)` or `fail(error)` propose the final state; a failure
with retries left comes back from the server as AwaitingRetry and the loop goes on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from flowrpc import results
from flowrpc.client.errors import InvalidRequest, ResourceExhausted
from flowrpc.engine.timeouts import RunTimeout
from flowrpc.exceptions import Abort, ResultTooLarge
from flowrpc.schemas._base import now
from flowrpc.schemas.objects import State, StateType
from flowrpc.schemas.responses import OrchestrationResult, SetStateStatus
from flowrpc.states import Crashed, Failed, Running


class RunEngine:
    """One flow or task call from its first state to its final one."""

    kind = "Run"  # "Flow run" / "Task run" in messages

    def __init__(self) -> None:
        self.run_id: UUID | None = None
        self.state: State | None = None
        self.error: BaseException | None = None  # raised to the caller when the run is over
        self.timeout_seconds: float | None = None

    # ---- what subclasses provide ----

    def set_state(self, state: State, force: bool = False) -> OrchestrationResult:
        raise NotImplementedError

    def running_state(self) -> State:
        return Running()

    def propose_running(self) -> OrchestrationResult:
        return self.set_state(self.running_state())

    def completed_state(self, value: Any) -> State:
        raise NotImplementedError

    def retry_condition(self, error: BaseException, proposed: State) -> bool | None:
        return None

    # ---- the attempt loop ----

    @property
    def done(self) -> bool:
        return self.error is not None or (self.state is not None and self.state.is_final())

    def begin_attempt(self) -> bool | float:
        """True: run the body; a number: wait that many seconds first; False: the run is over."""
        delay = self._retry_delay()
        if delay > 0:
            return delay
        result = self.propose_running()
        if result.status is SetStateStatus.ACCEPT:
            self.state = result.state
            return True
        if result.status is SetStateStatus.WAIT:
            return max(float(result.details.delay_seconds), 0.05)
        if result.status is SetStateStatus.ABORT:
            self.error = Abort(result.details.reason or "the server aborted the run")
            return False
        # REJECT: the server chose the state (Cached or already Completed, NotReady, ...).
        self.state = result.state
        if self.state is None or self.state.is_paused():
            return 1.0  # the enclosing flow is paused: ask again shortly
        if self.state.is_final():
            return False
        return self._retry_delay() or 0.05

    def _retry_delay(self) -> float:
        state = self.state
        if state is None or state.type is not StateType.SCHEDULED:
            return 0.0
        scheduled = state.state_details.scheduled_time
        if scheduled is None:
            return 0.0
        return max((scheduled - now()).total_seconds(), 0.0)

    def succeed(self, value: Any) -> None:
        """Proposes the Completed state of a body that returned `value`."""
        try:
            proposed = self.completed_state(value)
        except Exception as error:  # the result could not be persisted
            self.fail(error)
            return
        try:
            result = self.set_state(proposed)
        except (InvalidRequest, ResourceExhausted) as error:
            if proposed.data is None or "max_json_bytes" not in str(error):
                raise
            self.fail(ResultTooLarge(f"{error}. {results.TOO_LARGE_ADVICE}"))
            return
        self.state = result.state
        if self.state is not None and self.state.is_completed():
            self.state._has_value, self.state._value = True, value
        elif not self.done:
            reason = result.details.reason if hasattr(result.details, "reason") else None
            self.error = Abort(f"the server did not accept Completed: {reason or result.status}")

    def fail(self, error: BaseException) -> None:
        """Proposes Failed for a body that raised `error`; with retries left the server answers
        AwaitingRetry and the run goes on."""
        timed_out = isinstance(error, RunTimeout)
        message = (
            f"{self.kind} exceeded timeout of {self.timeout_seconds} second(s)"
            if timed_out
            else f"{self.kind} encountered an exception {type(error).__name__}: {error}"
        )
        proposed = Failed(name="TimedOut" if timed_out else "Failed", message=message[:10_000])
        if self.retry_condition(error, proposed) is False:
            proposed.state_details.retriable = False
        result = self.set_state(proposed)
        self.state = result.state
        if self.state is None or self.state.type is not StateType.SCHEDULED:
            if timed_out:
                error = TimeoutError(message)
            self.error = error
            if self.state is not None:
                self.state._exception = error

    def crash(self, error: BaseException) -> None:
        """Records Crashed for a body stopped by KeyboardInterrupt, SystemExit and the like."""
        message = f"{self.kind} was interrupted: {type(error).__name__}"
        try:
            result = self.set_state(Crashed(message=message), force=True)
            self.state = result.state
        except Exception:
            pass  # the caller re-raises the interruption either way
        self.error = error

    def outcome(self, return_state: bool) -> Any:
        """What the call returns: the final state, or its result (raising its error)."""
        state = self.state
        if state is not None and self.error is not None and state._exception is None:
            state._exception = self.error
        if return_state:
            if state is None:
                raise self.error or RuntimeError("the run has no state")
            return state
        if self.error is not None:
            raise self.error
        return results.state_result(state)


def cache_expiration_time(expiration: Any) -> datetime | None:
    return now() + expiration if expiration is not None else None
