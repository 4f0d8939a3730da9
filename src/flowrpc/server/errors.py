"""Domain errors. Raised anywhere in the server; one interceptor turns them into gRPC statuses
(rich status: ErrorInfo with the reason, BadRequest with field violations)."""

from __future__ import annotations

# An error travels in trailing metadata, which gRPC clients cap at 8 KiB by default (over it, the
# caller sees RESOURCE_EXHAUSTED instead of the error). Its message goes twice, percent-encoded in
# grpc-message and base64 in the rich status with the violations: these bounds, in UTF-8 bytes,
# keep the whole under 8 KiB whatever the text.
MAX_MESSAGE = 1_000
MAX_FIELD = 100
MAX_DESCRIPTION = 300
MAX_VIOLATIONS = 5
QUOTED = 40  # characters of a bad value quoted back to the caller


def quote(value: object) -> str:
    """A bad value as an error quotes it: repr() of at most its first QUOTED characters."""
    text = str(value)
    return repr(text) if len(text) <= QUOTED else f"{text[:QUOTED]!r}..."


def clip(text: str, limit: int) -> str:
    """The text, cut to at most `limit` bytes of UTF-8 (ending in "...") when longer."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "..."


class ServiceError(Exception):
    """An error the caller can act on. `reason` is UPPER_SNAKE, stable, machine-readable."""

    def __init__(self, reason: str, message: str) -> None:
        message = clip(message, MAX_MESSAGE)
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


class PermissionDenied(ServiceError):
    """A known key whose role does not cover the call."""


class Unavailable(ServiceError):
    """The server cannot answer now (worth retrying)."""


class ResourceExhausted(ServiceError):
    """A call hit a limit of the server's resources (time, memory); the setting is named."""


class OutOfRange(ServiceError):
    """A position past what the server keeps (an expired watch cursor)."""


class InvalidArgument(ServiceError):
    """Malformed input; `violations` maps field paths to what is wrong with them."""

    def __init__(self, violations: dict[str, str], reason: str = "INVALID_ARGUMENT") -> None:
        violations = {
            clip(field, MAX_FIELD): clip(problem, MAX_DESCRIPTION)
            for field, problem in list(violations.items())[:MAX_VIOLATIONS]
        }
        message = "; ".join(f"{field}: {problem}" for field, problem in violations.items())
        super().__init__(reason, message)
        self.violations = violations


def not_found(kind: str, key: str) -> NotFound:
    """NotFound for a missing object: not_found("flow run", id) -> FLOW_RUN_NOT_FOUND."""
    reason = f"{kind.replace(' ', '_').upper()}_NOT_FOUND"
    return NotFound(reason, f"{kind.capitalize()} {quote(key)} not found.")
