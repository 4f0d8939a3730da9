"""The ceiling: a bare grpc.aio echo RPC (bytes in, same bytes out, no protobuf, no storage) at
the same concurrency, so the table shows what Python gRPC can do at all on this machine. The
server runs on uvloop, as flowrpc's does; the caller on asyncio's loop, as the workload's do.

    python bench/echo.py serve PORT
    python bench/echo.py call ADDRESS --calls N --concurrency C     # prints JSON
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import grpc
import uvloop

METHOD = "/bench.Echo/Echo"
PAYLOAD = b"x" * 64


def _identity(data: bytes) -> bytes:
    return data


async def serve(port: int) -> None:
    async def echo(request: bytes, context: object) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo",
        {"Echo": grpc.unary_unary_rpc_method_handler(echo, _identity, _identity)},
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def call(address: str, calls: int, concurrency: int) -> dict[str, float]:
    async with grpc.aio.insecure_channel(address) as channel:
        echo = channel.unary_unary(METHOD, _identity, _identity)
        await echo(PAYLOAD)  # connect
        latencies: list[float] = []
        remaining = [calls]

        async def worker() -> None:
            while remaining[0] > 0:
                remaining[0] -= 1
                started = time.perf_counter()
                await echo(PAYLOAD)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    latencies.sort()
    return {
        "phase": "echo",
        "concurrency": concurrency,
        "ops": len(latencies),
        "seconds": seconds,
        "ops_per_s": len(latencies) / seconds,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve").add_argument("port", type=int)
    caller = sub.add_parser("call")
    caller.add_argument("address")
    caller.add_argument("--calls", type=int, default=5000)
    caller.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    if args.command == "serve":
        uvloop.run(serve(args.port))
    else:
        print(json.dumps(asyncio.run(call(args.address, args.calls, args.concurrency))))


if __name__ == "__main__":
    main()
