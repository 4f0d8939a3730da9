"""The role table classifies every RPC the protos define, and nothing else."""

from __future__ import annotations

import importlib
import pkgutil

import flowrpc.v1
from flowrpc.server.access import REQUIRED_ROLES, Role, required_role


def rpcs_in_the_descriptors() -> dict[str, set[str]]:
    """Every service of every *_service.proto, found from the generated modules, so a new
    service file counts too."""
    found: dict[str, set[str]] = {}
    for module_info in pkgutil.iter_modules(flowrpc.v1.__path__):
        if not module_info.name.endswith("_service_pb2"):
            continue
        module = importlib.import_module(f"flowrpc.v1.{module_info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            found[service.full_name] = {method.name for method in service.methods}
    return found


def test_every_rpc_is_classified_and_nothing_else():
    in_descriptors = rpcs_in_the_descriptors()
    assert "flowrpc.v1.FlowRunService" in in_descriptors  # the discovery finds the services
    classified = {service: set(methods) for service, methods in REQUIRED_ROLES.items()}
    assert classified == in_descriptors


def test_reads_need_read_deletes_need_admin_the_rest_write():
    for service, methods in rpcs_in_the_descriptors().items():
        for name in methods:
            if name.startswith(("Delete", "BulkDelete")):
                expected = Role.ADMIN
            elif name.startswith(("Get", "List", "Count", "Read", "Stream", "Watch")):
                expected = Role.READ
            else:
                expected = Role.WRITE
            assert required_role(f"/{service}/{name}") is expected, name


def test_an_unknown_method_needs_admin():
    assert required_role("/flowrpc.v1.FlowService/Unheard") is Role.ADMIN
    assert required_role("/other.Service/GetFlow") is Role.ADMIN
    assert required_role("nonsense") is Role.ADMIN
