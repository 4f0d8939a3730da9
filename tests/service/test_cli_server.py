"""The `flowrpc server start` process itself (its event loop, signals, shutdown), on SQLite."""

from __future__ import annotations

import signal
from pathlib import Path
from types import SimpleNamespace

from harness import server_process

from flowrpc import get_client


async def test_the_command_serves_and_stops_cleanly_on_sigterm(tmp_path: Path):
    database = f"sqlite:///{tmp_path / 'flowrpc.db'}"
    with server_process(database) as (process, address):
        async with get_client(api_url=address) as client:
            run = await client.create_flow_run(SimpleNamespace(name="etl"), name="kept")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    with server_process(database) as (_, address):
        async with get_client(api_url=address) as client:
            assert (await client.read_flow_run(run.id)).name == "kept"
