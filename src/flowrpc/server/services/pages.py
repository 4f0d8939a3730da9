"""Opaque page tokens: where the previous page ended (its last run's sort key and id), bound to
the request's filter and sort so a token cannot continue a different query.

A token is base64url(HMAC-SHA256(secret, payload) + payload) under the server's secret, which
replicas share through the database (storage/shared_secrets.py): a client can neither forge a
token nor alter one. What a token holds is checked against the sort before it reaches a query.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from flowrpc.server.errors import InvalidArgument
from flowrpc.server.limits import fitted
from flowrpc.server.storage.tables import INT64

SECRET_NAME = "page_tokens"  # in the server_secret table
_MAC_BYTES = 32


class PageTokens:
    """Makes and reads the page tokens of one server (and its replicas: same secret)."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def encode(self, filter_: Message, sort: str, key: Any, run_id: str) -> str:
        payload = json.dumps([_query_digest(filter_, sort), key, run_id], separators=(",", ":"))
        data = payload.encode()
        return base64.urlsafe_b64encode(self._sign(data) + data).decode()

    def decode(
        self, token: str, filter_: Message, sort: str, is_key: Callable[[Any], bool]
    ) -> tuple[Any, str]:
        """(sort key, run id) of the previous page's last run; `is_key` says whether a value
        can be the sort's key."""
        data = self._verified(token)
        if data is None:
            raise _invalid("is not a token this server issued")
        fields = json.loads(data)
        if not (isinstance(fields, list) and len(fields) == 3):
            raise _invalid("is not a token this server issued")
        digest, key, run_id = fields
        if digest != _query_digest(filter_, sort):
            raise _invalid("belongs to a request with another filter or sort")
        if not (is_key(key) and _is_id(run_id)):  # a token of another server version
            raise _invalid("does not hold a position in this sort")
        return key, run_id

    def position(
        self, token: str, offset: int, filter_: Message, sort: str, is_key: Callable[[Any], bool]
    ) -> tuple[Any, str] | None:
        """Where a request's page starts: None for the first page, else decode(token, ...);
        INVALID_ARGUMENT for a token given with an offset."""
        if not token:
            return None
        if offset:
            raise InvalidArgument({"offset": "cannot be combined with page_token"})
        return self.decode(token, filter_, sort, is_key)

    def fitted_page(
        self,
        response: Message,
        field: str,
        rows: list[Any],
        filter_: Message,
        sort: str,
        key_of: Callable[[Any], Any],
    ) -> bytes:
        """The page's bytes (see limits.fitted: a page of large items holds fewer), with a
        next_page_token after the last row it holds when `rows` (read one past the limit) has
        more. `key_of(row)` is the row's sort key; its id goes with it."""

        def continue_after(shown: int) -> None:
            response.next_page_token = ""
            if len(rows) > shown > 0:
                last = rows[shown - 1]
                response.next_page_token = self.encode(filter_, sort, key_of(last), last.id)

        continue_after(len(getattr(response, field)))
        return fitted(response, field, continue_after)

    def _verified(self, token: str) -> bytes | None:
        """The payload of a token signed with this secret, in canonical base64; else None."""
        try:
            raw = base64.urlsafe_b64decode(token.encode("ascii"))
        except (ValueError, binascii.Error):  # not ASCII, or not base64
            return None
        if base64.urlsafe_b64encode(raw).decode() != token:
            return None
        mac, data = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
        return data if hmac.compare_digest(mac, self._sign(data)) else None

    def _sign(self, data: bytes) -> bytes:
        return hmac.digest(self._secret, data, "sha256")


def is_time(value: Any) -> bool:
    """Whether a token's key can be a time (integer microseconds) of a time-keyed sort."""
    return type(value) is int and value in INT64


def _query_digest(filter_: Message, sort: str) -> str:
    data = sort.encode() + b"\0" + filter_.SerializeToString(deterministic=True)
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def _is_id(value: Any) -> bool:
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value
    except ValueError:
        return False


def _invalid(problem: str) -> InvalidArgument:
    return InvalidArgument({"page_token": problem})
