"""Pure orchestration: decides a proposed state transition for a flow or task run.

No I/O: storage loads the facts (records, current state, cached state), calls one of the
functions below, then writes the returned decision and the mutated record. See
docs/orchestration.md for the rules and the bookkeeping order.
"""

from .engine import Decision
from .flows import FlowPolicy, orchestrate_flow_run, resume_proposal
from .tasks import TaskPolicy, orchestrate_task_run

__all__ = [
    "Decision",
    "FlowPolicy",
    "TaskPolicy",
    "orchestrate_flow_run",
    "orchestrate_task_run",
    "resume_proposal",
]
