"""The workflow engine: runs one flow call or task call, recording every state through the
server's orchestration (see base.py for the attempt loop)."""

from flowrpc.engine.run import run_flow, run_task

__all__ = ["run_flow", "run_task"]
