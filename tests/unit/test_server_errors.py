"""Domain errors stay small whatever the input: they travel in trailing metadata, which gRPC
clients cap at 8 KiB (over it, the caller sees RESOURCE_EXHAUSTED instead of the error)."""

from __future__ import annotations

from flowrpc.server import errors


def test_quote_keeps_a_short_prefix():
    assert errors.quote("abc") == "'abc'"
    assert errors.quote("f" * 7_000) == repr("f" * 40) + "..."


def test_messages_and_violations_are_bounded():
    error = errors.InvalidArgument({f"field{i}" * 100: "x" * 5_000 for i in range(100)})
    assert len(error.violations) == errors.MAX_VIOLATIONS
    assert all(len(f) <= 200 and len(d) <= errors.MAX_MESSAGE for f, d in error.violations.items())
    assert len(error.message) <= errors.MAX_MESSAGE
    assert len(errors.FailedPrecondition("R", "y" * 50_000).message) == errors.MAX_MESSAGE
