"""What a bad parameter and a slow body do: the run is recorded as Failed with a message that
says why, and the call raises as in Prefect.

    python examples/sdk/validation_and_timeouts.py

With nothing running it reports to a server embedded in the process, over
$FLOWRPC_HOME/flowrpc.db; with FLOWRPC_API_URL=127.0.0.1:4250 to a running server.
"""

import time

from flowrpc import flow
from flowrpc.exceptions import ParameterTypeError


@flow
def resize(width: int, height: int = 100) -> int:
    return width * height


@flow(timeout_seconds=0.5)
def too_slow() -> None:
    time.sleep(10)


if __name__ == "__main__":
    print("area", resize("30"))  # "30" is coerced to 30 from the type hint
    try:
        resize("wide")
    except ParameterTypeError as error:
        print("refused:", str(error).splitlines()[1].strip())
    state = too_slow(return_state=True)
    print(f"too_slow: {state.name}: {state.message}")
