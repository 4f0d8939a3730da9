"""Server-minted ids (UUIDv7: time-ordered, so ID_DESC is newest first) and the clock (UTC µs)."""

import time

import uuid_utils


def new_id() -> str:
    return str(uuid_utils.uuid7())


def now_micros() -> int:
    return time.time_ns() // 1000
