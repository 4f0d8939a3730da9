"""A Prefect 3 ETL flow ported by changing its imports (`prefect` -> `flowrpc`): tasks with
retries, a mapped step with an unmapped argument, a cached step and a subflow. Every flow run and
task run is recorded on the server.

    python examples/sdk/etl.py

With nothing running it reports to a server embedded in the process, over
$FLOWRPC_HOME/flowrpc.db; with FLOWRPC_API_URL=127.0.0.1:4250 to a running server.
"""

from datetime import timedelta

from flowrpc import flow, task, unmapped
from flowrpc.cache_policies import INPUTS

attempts = {"extract": 0}


@task(retries=2, retry_delay_seconds=0)
def extract(n: int) -> list[int]:
    """Reads the source; fails once, as flaky sources do, and the retry recovers."""
    attempts["extract"] += 1
    if attempts["extract"] == 1:
        raise ConnectionError("source not reachable yet")
    return list(range(1, n + 1))


@task
def transform(value: int, factor: int) -> int:
    return value * factor


@task(cache_policy=INPUTS, cache_expiration=timedelta(hours=1))
def lookup_rate(currency: str) -> float:
    """An expensive lookup: cached by its input for an hour, in any process."""
    return {"EUR": 1.1, "GBP": 1.3}.get(currency, 1.0)


@flow
def load(values: list[int], rate: float) -> float:
    """A subflow: its own flow run, linked to the parent through a task run."""
    return round(sum(values) * rate, 2)


@flow(log_prints=True)
def etl(n: int = 4, factor: int = 10, currency: str = "EUR") -> float:
    numbers = extract(n)
    scaled = transform.map(numbers, unmapped(factor))
    rate = lookup_rate(currency)
    total = load(scaled.result(), rate)
    print(f"loaded {len(numbers)} rows, total {total}")
    return total


if __name__ == "__main__":
    state = etl(return_state=True)
    print(f"etl: {state.name}, result {state.result()}")
