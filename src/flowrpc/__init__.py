"""flowrpc: a flow-run orchestration service with a gRPC API."""
