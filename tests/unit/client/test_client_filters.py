"""Filter models: Prefect-style coercion and validation, and the exact protos they convert to."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, ValidationError

from flowrpc.schemas import _proto, filters
from flowrpc.schemas.filters import (
    DeploymentFilter,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateName,
    FlowRunFilterStateType,
    Operator,
    TaskRunFilter,
    WorkQueueFilter,
)
from flowrpc.schemas.objects import StateType
from flowrpc.v1 import filter_pb2, state_pb2

NOW = datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
RUN_ID = UUID("01950000-0000-7000-8000-000000000001")


def _filter_models() -> list[type[BaseModel]]:
    return [
        cls
        for _, cls in inspect.getmembers(filters, inspect.isclass)
        if issubclass(cls, filters.PrefectFilterBaseModel)
        and cls.__module__ == filters.__name__
        and cls.__name__ in filter_pb2.DESCRIPTOR.message_types_by_name
    ]


def test_nested_dicts_coerce_into_filter_models():
    f = FlowRunFilter(state=dict(name=dict(any_=["Late"])), expected_start_time=dict(before_=NOW))
    assert isinstance(f.state, FlowRunFilterState)
    assert isinstance(f.state.name, FlowRunFilterStateName)
    assert f.state.name.any_ == ["Late"]
    assert f.expected_start_time.before_ == NOW
    assert DeploymentFilter(name={"like_": "x"}).name.like_ == "x"


def test_state_type_strings_coerce_to_state_type():
    f = FlowRunFilter(state={"type": {"any_": ["COMPLETED", "FAILED"]}})
    assert isinstance(f.state.type, FlowRunFilterStateType)
    assert f.state.type.any_ == [StateType.COMPLETED, StateType.FAILED]


def test_unknown_keys_are_rejected_at_every_level():
    with pytest.raises(ValidationError, match="extra_forbidden"):
        FlowRunFilter(stat={"name": {"any_": ["Late"]}})
    with pytest.raises(ValidationError, match="extra_forbidden"):
        FlowRunFilter(state={"name": {"any": ["Late"]}})
    with pytest.raises(ValidationError, match="extra_forbidden"):
        DeploymentFilter(name={"like": "x"})


def test_invalid_values_are_rejected():
    with pytest.raises(ValidationError):
        FlowRunFilter(id={"any_": ["not-a-uuid"]})
    with pytest.raises(ValidationError):
        FlowRunFilter(state={"type": {"any_": ["DONE"]}})
    with pytest.raises(ValidationError):
        FlowRunFilter(operator="xor_")


def test_naive_datetimes_are_taken_as_utc_and_aware_ones_normalised():
    f = FlowRunFilter(start_time={"after_": datetime(2025, 1, 1, 12)})
    assert f.start_time.after_ == datetime(2025, 1, 1, 12, tzinfo=UTC)
    paris = timezone(timedelta(hours=1))
    f = FlowRunFilter(start_time={"after_": datetime(2025, 1, 1, 13, tzinfo=paris)})
    assert f.start_time.after_.tzinfo == UTC
    assert f.start_time.after_.hour == 12


def test_flow_run_filter_converts_to_the_exact_proto():
    f = FlowRunFilter(
        id={"any_": [RUN_ID]},
        state=dict(name=dict(any_=["Late"]), type=dict(not_any_=["COMPLETED"])),
        expected_start_time=dict(before_=NOW),
        tags={"all_": ["a", "b"], "operator": "or_"},
        created_by={"id_": [RUN_ID], "type_": ["SCHEDULE"], "is_null_": False},
    )
    before = Timestamp()
    before.FromDatetime(NOW)
    expected = filter_pb2.FlowRunFilter(
        operator=filter_pb2.FILTER_OPERATOR_AND,
        id=filter_pb2.FlowRunFilterId(any_of=filter_pb2.StringList(values=[str(RUN_ID)])),
        state=filter_pb2.FlowRunFilterState(
            operator=filter_pb2.FILTER_OPERATOR_AND,
            name=filter_pb2.FlowRunFilterStateName(any_of=filter_pb2.StringList(values=["Late"])),
            type=filter_pb2.FlowRunFilterStateType(
                not_any_of=filter_pb2.StateTypeList(values=[state_pb2.STATE_TYPE_COMPLETED])
            ),
        ),
        expected_start_time=filter_pb2.FlowRunFilterExpectedStartTime(before=before),
        tags=filter_pb2.FlowRunFilterTags(
            operator=filter_pb2.FILTER_OPERATOR_OR, all_of=filter_pb2.StringList(values=["a", "b"])
        ),
        created_by=filter_pb2.FlowRunFilterCreatedBy(
            operator=filter_pb2.FILTER_OPERATOR_AND,
            id=filter_pb2.StringList(values=[str(RUN_ID)]),
            type=filter_pb2.StringList(values=["SCHEDULE"]),
            is_null=False,
        ),
    )
    assert f.to_proto() == expected
    assert f.to_proto().created_by.HasField("is_null")


def test_empty_any_list_is_sent_and_unset_criteria_are_not():
    proto = FlowRunFilter(id={"any_": []}).to_proto()
    assert proto.HasField("id")
    assert proto.id.HasField("any_of")
    assert list(proto.id.any_of.values) == []
    assert not proto.id.HasField("not_any_of")
    assert not proto.HasField("name")


def test_other_filters_convert_with_the_same_rule():
    assert DeploymentFilter(name={"like_": "x"}, paused={"eq_": True}).to_proto() == (
        filter_pb2.DeploymentFilter(
            operator=filter_pb2.FILTER_OPERATOR_AND,
            name=filter_pb2.DeploymentFilterName(like="x"),
            paused=filter_pb2.DeploymentFilterPaused(eq=True),
        )
    )
    assert TaskRunFilter(subflow_runs={"exists_": False}, flow_run_id={}).to_proto() == (
        filter_pb2.TaskRunFilter(
            operator=filter_pb2.FILTER_OPERATOR_AND,
            subflow_runs=filter_pb2.TaskRunFilterSubFlowRuns(exists=False),
            flow_run_id=filter_pb2.TaskRunFilterFlowRunId(
                operator=filter_pb2.FILTER_OPERATOR_AND, is_null=False
            ),
        )
    )
    queues = WorkQueueFilter(name={"startswith_": ["prod-", "eu-"]}, operator=Operator.or_)
    assert queues.to_proto() == filter_pb2.WorkQueueFilter(
        operator=filter_pb2.FILTER_OPERATOR_OR,
        name=filter_pb2.WorkQueueFilterName(
            startswith=filter_pb2.StringList(values=["prod-", "eu-"])
        ),
    )


def test_one_model_per_filter_message_with_matching_fields():
    """Every filter.proto message has a model of the same name whose fields map onto the
    message's fields by the naming rule, and back: nothing is silently dropped either way."""
    wrappers = {"StringList", "StateTypeList", "FlowRunFilterSet"}
    models = {cls.__name__: cls for cls in _filter_models()}
    messages = set(filter_pb2.DESCRIPTOR.message_types_by_name) - wrappers
    assert set(models) == messages
    for name, cls in models.items():
        descriptor = filter_pb2.DESCRIPTOR.message_types_by_name[name]
        assert {_proto.proto_name(field) for field in cls.model_fields} == set(
            descriptor.fields_by_name
        ), name


def test_naming_rule():
    assert _proto.proto_name("any_") == "any_of"
    assert _proto.proto_name("not_any_") == "not_any_of"
    assert _proto.proto_name("all_") == "all_of"
    assert _proto.proto_name("before_") == "before"
    assert _proto.proto_name("id_") == "id"
    assert _proto.proto_name("startswith_") == "startswith"
    assert _proto.proto_name("expected_start_time") == "expected_start_time"
