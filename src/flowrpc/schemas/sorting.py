"""Prefect's sort orders (`prefect.client.schemas.sorting`); on the wire FLOW_RUN_SORT_<NAME>."""

from flowrpc.schemas._base import ProtoEnum


class FlowRunSort(ProtoEnum):
    """Orders flow-run lists. Ties break by id in the same direction; NULLs sort last ascending
    and first descending (PostgreSQL's rule, on every database)."""

    ID_DESC = "ID_DESC"
    START_TIME_ASC = "START_TIME_ASC"
    START_TIME_DESC = "START_TIME_DESC"
    EXPECTED_START_TIME_ASC = "EXPECTED_START_TIME_ASC"
    EXPECTED_START_TIME_DESC = "EXPECTED_START_TIME_DESC"
    NAME_ASC = "NAME_ASC"
    NAME_DESC = "NAME_DESC"
    NEXT_SCHEDULED_START_TIME_ASC = "NEXT_SCHEDULED_START_TIME_ASC"
    END_TIME_DESC = "END_TIME_DESC"


class LogSort(ProtoEnum):
    """Orders log lists (default TIMESTAMP_ASC); ties break by id in the same direction."""

    TIMESTAMP_ASC = "TIMESTAMP_ASC"
    TIMESTAMP_DESC = "TIMESTAMP_DESC"
