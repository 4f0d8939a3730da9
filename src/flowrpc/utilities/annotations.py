"""Argument annotations for task calls (Prefect's `prefect.utilities.annotations`)."""

from __future__ import annotations

from typing import Any


class unmapped:  # noqa: N801 - Prefect's name
    """Wraps an argument of `task.map(...)` that every mapped call receives whole."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"unmapped({self.value!r})"


__all__ = ["unmapped"]
