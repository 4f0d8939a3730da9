"""Errors the workflow SDK raises, with Prefect's names (`prefect.exceptions`)."""

from __future__ import annotations


class FlowRPCException(Exception):
    """Base of the SDK's errors."""


class ParameterBindError(TypeError, FlowRPCException):
    """The arguments of a flow or task call do not fit its signature."""


class ParameterTypeError(FlowRPCException):
    """A flow parameter failed validation against the function's type hints."""


class UpstreamTaskError(FlowRPCException):
    """A task could not run because a task it depends on did not complete."""


class MissingResult(FlowRPCException):
    """A completed state whose result was neither kept in memory nor persisted."""


class UnfinishedRun(FlowRPCException):
    """A result was asked of a run that has not finished."""


class FailedRun(FlowRPCException):
    """A run failed and its original exception is not available in this process."""


class CrashedRun(FlowRPCException):
    """A run crashed (its process or orchestration broke, not its code)."""


class CancelledRun(FlowRPCException):
    """A run was cancelled."""


class Abort(FlowRPCException):
    """The server refused to let the run continue (an ABORT decision)."""


class ResultTooLarge(FlowRPCException):
    """A result too large to travel in a state through the server."""
