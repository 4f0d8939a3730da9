"""Opaque page tokens: where the previous page ended (its last run's sort key and id), bound to
the request's filter and sort so a token cannot continue a different query."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from google.protobuf.message import Message

from flowrpc.server.errors import InvalidArgument


def _query_digest(filter_: Message, sort: str) -> str:
    data = filter_.SerializeToString(deterministic=True) + sort.encode()
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def encode(filter_: Message, sort: str, key: Any, run_id: str) -> str:
    payload = json.dumps([_query_digest(filter_, sort), key, run_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode()


def decode(token: str, filter_: Message, sort: str) -> tuple[Any, str]:
    """(sort key, run id) of the previous page's last run."""
    try:
        digest, key, run_id = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError):
        raise InvalidArgument({"page_token": "is not a token this server issued"}) from None
    if digest != _query_digest(filter_, sort):
        raise InvalidArgument({"page_token": "belongs to a request with another filter or sort"})
    return key, run_id
