"""A stand-in for the grpcurl calls in the README's tour (grpcurl has no apt package), for tests:

    grpcurl -plaintext [-d JSON | -d @] ADDRESS (list | SERVICE/METHOD)

The request JSON (`@`: read from stdin) is parsed with json_format into the method's request
message, so a field or enum value the protos do not have fails as it would in grpcurl; the
response is printed as grpcurl prints it (JSON, lowerCamelCase names). Each call is appended as
a JSON line {"method", "response"} to the file named by GRPCURL_STANDIN_LOG, for the test to
check. `list` asks the server's reflection service."""

from __future__ import annotations

import json
import os
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2  # noqa: F401 (registers grpc.health.v1)

from flowrpc.v1 import (  # noqa: F401 (register the services' descriptors)
    deployment_service_pb2,
    flow_run_service_pb2,
    flow_service_pb2,
    task_run_service_pb2,
    work_pool_service_pb2,
)


def parse_args(argv: list[str]) -> tuple[str | None, str, str]:
    """(request JSON or None, address, "list" or "SERVICE/METHOD")."""
    data = None
    rest = []
    args = iter(argv)
    for arg in args:
        if arg == "-plaintext":
            continue
        if arg == "-d":
            data = next(args)
        elif arg.startswith("-"):
            raise SystemExit(f"grpcurl stand-in: unsupported flag {arg}")
        else:
            rest.append(arg)
    address, target = rest
    if data == "@":
        data = sys.stdin.read()
    return data, address, target


def list_services(channel: grpc.Channel) -> list[str]:
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    return sorted(ProtoReflectionDescriptorDatabase(channel).get_services())


def call(channel: grpc.Channel, target: str, data: str | None) -> list[str]:
    service, method_name = target.split("/")
    method = descriptor_pool.Default().FindMethodByName(f"{service}.{method_name}")
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    request = json_format.Parse(data or "{}", request_class())
    kind = channel.unary_stream if method.server_streaming else channel.unary_unary
    rpc = kind(
        f"/{service}/{method_name}",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    responses = rpc(request, timeout=30)
    if not method.server_streaming:
        responses = [responses]
    return [json_format.MessageToJson(response, indent=2) for response in responses]


def main(argv: list[str]) -> int:
    data, address, target = parse_args(argv)
    with grpc.insecure_channel(address) as channel:
        try:
            outputs = list_services(channel) if target == "list" else call(channel, target, data)
        except json_format.ParseError as error:  # grpcurl: "Error invoking method ..."
            print(f"Error invoking method {target!r}: {error}", file=sys.stderr)
            return 1
        except grpc.RpcError as error:
            print(
                f"ERROR:\n  Code: {error.code().name}\n  Message: {error.details()}",
                file=sys.stderr,
            )
            return 1
    for output in outputs:
        print(output)
    if log := os.environ.get("GRPCURL_STANDIN_LOG"):
        with open(log, "a") as file:
            file.write(json.dumps({"method": target, "response": outputs}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
