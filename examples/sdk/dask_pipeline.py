"""Submitted and mapped tasks on a Dask cluster: DaskTaskRunner starts a LocalCluster with two
worker processes for the flow run and closes it at the end. Each task run reports to the
server from its worker. Needs the extra: pip install 'flowrpc[dask]'.

    python examples/sdk/dask_pipeline.py

With nothing running it reports to a server embedded in the process, over
$FLOWRPC_HOME/flowrpc.db; with FLOWRPC_API_URL=127.0.0.1:4250 to a running server.

For an existing cluster, give its scheduler: DaskTaskRunner(address="tcp://scheduler:8786").
"""

import os

from flowrpc import flow, task
from flowrpc.task_runners import DaskTaskRunner


@task(retries=2)
def square(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


@task
def total(values: list[int]) -> int:
    return sum(values)


@task
def largest(values: list[int]) -> int:
    return max(values)


CLUSTER = {"n_workers": 2, "processes": True, "threads_per_worker": 1, "dashboard_address": None}


@flow(task_runner=DaskTaskRunner(cluster_kwargs=CLUSTER))
def squares(numbers: list[int]) -> tuple[int, int, int]:
    results = square.map(numbers).result()  # runs on the workers
    values = [value for value, _ in results]
    workers = {pid for _, pid in results}
    # The futures of total and largest depend on nothing submitted: both run at once.
    return total.submit(values).result(), largest.submit(values).result(), len(workers)


if __name__ == "__main__":  # worker processes import this file: keep the flow call guarded
    sum_of_squares, biggest, worker_count = squares([1, 2, 3, 4])
    print(f"total {sum_of_squares}, largest {biggest}")
    print(f"ran in {worker_count} worker process{'es' if worker_count > 1 else ''}")
