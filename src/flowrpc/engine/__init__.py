"""The workflow engine: runs one flow call or task call, recording every state through the
server's orchestration (see base.py for the attempt loop)."""

# First: exit handlers run last-registered first, and the embedded server must stop only after
# the reporter and the clients registered later have flushed into it.
from flowrpc.engine import embedded  # noqa: F401, I001
from flowrpc.engine.run import run_flow, run_task

__all__ = ["run_flow", "run_task"]
