"""Client-facing pydantic schemas with Prefect's names: objects, filters, sorting, responses,
actions. Conversion to and from the flowrpc.v1 protobuf messages lives beside them (`_proto`)."""
