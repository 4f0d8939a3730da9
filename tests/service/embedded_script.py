"""Run by test_embedded.py as a script, with FLOWRPC_API_URL unset and FLOWRPC_HOME a temporary
directory: it talks to its own embedded server through the client, as a flow script does.

    python embedded_script.py write RUNS TASKS CONCURRENCY   runs, each with TASKS task runs,
        every run and task run Pending -> Running -> Completed; prints one JSON line
    python embedded_script.py exit ACKED_FILE   creates runs from a daemon thread until the
        interpreter exits (writing each acknowledged run id to ACKED_FILE), and one more run from
        a before_stop callback
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from types import SimpleNamespace

from flowrpc import get_client
from flowrpc.engine import embedded
from flowrpc.states import Completed, Running

FLOW = SimpleNamespace(name="embedded-script")
TASK = SimpleNamespace(name="step")


async def write(runs: int, tasks: int, concurrency: int) -> None:
    started = time.perf_counter()
    url = embedded.api_url()
    start_ms = (time.perf_counter() - started) * 1000
    errors: list[str] = []
    gate = asyncio.Semaphore(concurrency)
    async with get_client(api_url=url) as client:

        async def one() -> None:
            async with gate:
                try:
                    run = await client.create_flow_run(FLOW)
                    await client.set_flow_run_state(run.id, Running())
                    for key in range(tasks):
                        task_run = await client.create_task_run(TASK, run.id, str(key))
                        await client.set_task_run_state(task_run.id, Running())
                        await client.set_task_run_state(task_run.id, Completed())
                    await client.set_flow_run_state(run.id, Completed())
                except Exception as error:  # every failure is reported, none stops the others
                    errors.append(repr(error))

        await asyncio.gather(*(one() for _ in range(runs)))
    print(json.dumps({"url": url, "start_ms": start_ms, "errors": errors}), flush=True)


def exit_while_writing(acked_file: str) -> None:
    url = embedded.api_url()
    ready = threading.Event()

    def keep_creating() -> None:
        with (
            get_client(sync_client=True, api_url=url, retry_attempts=1) as client,
            open(acked_file, "a") as acked,
        ):
            while True:
                try:
                    run = client.create_flow_run(FLOW, tags=["daemon"])
                except Exception:  # the server has stopped: the interpreter is exiting
                    return
                acked.write(f"{run.id}\n")
                acked.flush()
                ready.set()

    def at_exit() -> None:
        with get_client(sync_client=True, api_url=url) as client:
            client.create_flow_run(FLOW, tags=["before-stop"])

    embedded.before_stop(at_exit)
    threading.Thread(target=keep_creating, daemon=True).start()
    ready.wait(30)
    time.sleep(0.3)


if __name__ == "__main__":
    if sys.argv[1] == "write":
        asyncio.run(write(*(int(arg) for arg in sys.argv[2:5])))
    else:
        exit_while_writing(sys.argv[2])
