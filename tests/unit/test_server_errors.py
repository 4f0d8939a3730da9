"""Domain errors stay small whatever the input: they travel in trailing metadata, which gRPC
clients cap at 8 KiB (over it, the caller sees RESOURCE_EXHAUSTED instead of the error)."""

from __future__ import annotations

import base64

from google.rpc import error_details_pb2, status_pb2

from flowrpc.server import errors


def test_quote_keeps_a_short_prefix():
    assert errors.quote("abc") == "'abc'"
    assert errors.quote("f" * 7_000) == repr("f" * 40) + "..."


def test_messages_and_violations_are_bounded():
    error = errors.InvalidArgument({f"field{i}" * 100: "x" * 5_000 for i in range(100)})
    assert len(error.violations) == errors.MAX_VIOLATIONS
    assert all(len(f) <= 100 and len(d) <= 300 for f, d in error.violations.items())
    assert len(error.message) <= errors.MAX_MESSAGE
    assert len(errors.FailedPrecondition("R", "y" * 50_000).message) == errors.MAX_MESSAGE


def test_an_error_fits_the_default_8_kib_of_trailing_metadata_whatever_its_text():
    """Worst case: every character four bytes of UTF-8, percent-encoded three bytes per byte."""
    wide = "\U0001f600" * 5_000
    error = errors.InvalidArgument({wide + str(i): wide for i in range(10)})
    status = status_pb2.Status(code=3, message=error.message)
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
            for f, d in error.violations.items()
        ]
    )
    status.details.add().Pack(bad)
    details_bin = len(base64.b64encode(status.SerializeToString()))
    grpc_message = 3 * len(error.message.encode())
    assert details_bin + grpc_message < 8 * 1024
