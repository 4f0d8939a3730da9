"""Domain errors. Raised anywhere in the server; one interceptor turns them into gRPC statuses
(rich status: ErrorInfo with the reason, BadRequest with field violations)."""

from __future__ import annotations

# An error travels in trailing metadata, which gRPC clients cap at 8 KiB by default: a longer
# message would reach the caller as RESOURCE_EXHAUSTED instead of the error itself.
MAX_MESSAGE = 1_000  # characters of a message or of a field violation's description
MAX_VIOLATIONS = 5
QUOTED = 40  # characters of a bad value quoted back to the caller


def quote(value: object) -> str:
    """A bad value as an error quotes it: repr() of at most its first QUOTED characters."""
    text = str(value)
    return repr(text) if len(text) <= QUOTED else f"{text[:QUOTED]!r}..."


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ServiceError(Exception):
    """An error the caller can act on. `reason` is UPPER_SNAKE, stable, machine-readable."""

    def __init__(self, reason: str, message: str) -> None:
        message = clip(message)
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
    pass


class InvalidArgument(ServiceError):
    """Malformed input; `violations` maps field paths to what is wrong with them."""

    def __init__(self, violations: dict[str, str], reason: str = "INVALID_ARGUMENT") -> None:
        violations = {
            clip(field, 200): clip(problem)
            for field, problem in list(violations.items())[:MAX_VIOLATIONS]
        }
        message = "; ".join(f"{field}: {problem}" for field, problem in violations.items())
        super().__init__(reason, message)
        self.violations = violations


def not_found(kind: str, key: str) -> NotFound:
    """NotFound for a missing object: not_found("flow run", id) -> FLOW_RUN_NOT_FOUND."""
    reason = f"{kind.replace(' ', '_').upper()}_NOT_FOUND"
    return NotFound(reason, f"{kind.capitalize()} {quote(key)} not found.")
