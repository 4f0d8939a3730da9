"""flowrpc: a flow-run orchestration service with a gRPC API."""

from flowrpc.client import get_client

__all__ = ["get_client"]
