"""Domain errors. Raised anywhere in the server; one interceptor turns them into gRPC statuses
(rich status: ErrorInfo with the reason, BadRequest with field violations)."""

from __future__ import annotations


class ServiceError(Exception):
    """An error the caller can act on. `reason` is UPPER_SNAKE, stable, machine-readable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class NotFound(ServiceError):
    pass


class AlreadyExists(ServiceError):
    pass


class FailedPrecondition(ServiceError):
    pass


class Unauthenticated(ServiceError):
    pass


class ResourceExhausted(ServiceError):
    """A call hit a limit of the server's resources (time, memory); the setting is named."""


class InvalidArgument(ServiceError):
    """Malformed input; `violations` maps field paths to what is wrong with them."""

    def __init__(self, violations: dict[str, str], reason: str = "INVALID_ARGUMENT") -> None:
        message = "; ".join(f"{field}: {problem}" for field, problem in violations.items())
        super().__init__(reason, message)
        self.violations = violations


def not_found(kind: str, key: str) -> NotFound:
    """NotFound for a missing object: not_found("flow run", id) -> FLOW_RUN_NOT_FOUND."""
    return NotFound(
        f"{kind.replace(' ', '_').upper()}_NOT_FOUND", f"{kind.capitalize()} {key!r} not found."
    )
