"""docs/api.md is what tests/api_doc.py makes of the protos, and the error reasons it lists are
those the server's code raises, no more and no fewer."""

from __future__ import annotations

import re

from api_doc import COMMON, REASONS, ROOT, render, rpcs

SERVER = ROOT / "src" / "flowrpc" / "server"
# Raised by the server package but never by an RPC: the `flowrpc api-key` command's own errors.
CLI_ONLY = {"API_KEY_ALREADY_EXISTS", "API_KEY_NOT_FOUND"}


def raised_reasons() -> set[str]:
    """Every ErrorInfo reason in the server's code: not_found("flow run", ...) makes
    FLOW_RUN_NOT_FOUND; other errors name theirs as a literal; InvalidArgument defaults to
    INVALID_ARGUMENT."""
    reasons = {"INVALID_ARGUMENT"}
    for path in SERVER.rglob("*.py"):
        text = path.read_text()
        for kind in re.findall(r'\bnot_found\(\s*"([a-z ]+)"', text):
            reasons.add(kind.replace(" ", "_").upper() + "_NOT_FOUND")
        reasons.update(re.findall(r'\b(?:errors\.)?[A-Z]\w+\(\s*"([A-Z][A-Z_]+)"', text))
        reasons.update(re.findall(r'\breason="([A-Z][A-Z_]+)"', text))
    return reasons


def test_the_committed_doc_is_fresh():
    committed = (ROOT / "docs" / "api.md").read_text()
    assert committed == render(), "docs/api.md is stale: run `make api-doc` and commit"


def test_every_rpc_has_its_reasons_listed():
    assert sorted(f"{service}/{rpc}" for service, rpc, _ in rpcs()) == sorted(REASONS)


def test_the_listed_reasons_are_those_the_server_raises():
    listed = {reason for reason, _, _ in COMMON} | {r for rs in REASONS.values() for r in rs}
    assert listed == raised_reasons() - CLI_ONLY
