// A typed builder for FlowRunFilterSet, the filter of every flow-run query (list, count,
// history, bulk calls). Each method sets one criterion of the generated message; criteria
// combine with AND. build() returns the generated message itself, which can be edited further.
import { clone, create } from "@bufbuild/protobuf";
import { timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  DeploymentFilterNameSchema,
  DeploymentFilterSchema,
  FilterOperator,
  FlowFilterIdSchema,
  FlowFilterNameSchema,
  FlowFilterSchema,
  FlowRunFilterDeploymentIdSchema,
  FlowRunFilterEndTimeSchema,
  FlowRunFilterExpectedStartTimeSchema,
  FlowRunFilterFlowVersionSchema,
  FlowRunFilterIdSchema,
  FlowRunFilterIdempotencyKeySchema,
  FlowRunFilterNameSchema,
  FlowRunFilterNextScheduledStartTimeSchema,
  FlowRunFilterParentFlowRunIdSchema,
  FlowRunFilterParentTaskRunIdSchema,
  FlowRunFilterSchema,
  FlowRunFilterSetSchema,
  FlowRunFilterStartTimeSchema,
  FlowRunFilterStateNameSchema,
  FlowRunFilterStateSchema,
  FlowRunFilterStateTypeSchema,
  FlowRunFilterTagsSchema,
  FlowRunFilterWorkQueueNameSchema,
  StateTypeListSchema,
  StringListSchema,
  WorkPoolFilterNameSchema,
  WorkPoolFilterSchema,
  type FlowRunFilter,
  type FlowRunFilterSet,
  type StringList,
} from "./gen/flowrpc/v1/filter_pb.js";
import type { StateType } from "./gen/flowrpc/v1/state_pb.js";

/** A time bound: a Date or a protobuf Timestamp. */
export type Instant = Date | Timestamp;

/** Both ends are inclusive; an unset end is open. */
export interface TimeRange {
  after?: Instant;
  before?: Instant;
}

/** A builder for the FlowRunFilterSet of a flow-run query. */
export function flowRunFilter(): FlowRunFilterBuilder {
  return new FlowRunFilterBuilder();
}

export class FlowRunFilterBuilder {
  readonly #set: FlowRunFilterSet = create(FlowRunFilterSetSchema);

  // ---- the run itself ----

  /** Runs with any of these ids. No ids matches no run. */
  ids(...ids: string[]): this {
    (this.#runs().id ??= create(FlowRunFilterIdSchema)).anyOf = strings(ids);
    return this;
  }

  /** Runs with none of these ids. */
  excludingIds(...ids: string[]): this {
    (this.#runs().id ??= create(FlowRunFilterIdSchema)).notAnyOf = strings(ids);
    return this;
  }

  /** Runs with any of these names. */
  names(...names: string[]): this {
    (this.#runs().name ??= create(FlowRunFilterNameSchema)).anyOf = strings(names);
    return this;
  }

  /** Runs whose name contains `text`, ignoring case ("_" and "%" are wildcards). */
  nameLike(text: string): this {
    (this.#runs().name ??= create(FlowRunFilterNameSchema)).like = text;
    return this;
  }

  /** Runs having every one of these tags. */
  tagsAll(...tags: string[]): this {
    (this.#runs().tags ??= create(FlowRunFilterTagsSchema)).allOf = strings(tags);
    return this;
  }

  /** Runs having at least one of these tags. */
  tagsAny(...tags: string[]): this {
    (this.#runs().tags ??= create(FlowRunFilterTagsSchema)).anyOf = strings(tags);
    return this;
  }

  /** Runs whose current state has any of these types. */
  stateTypes(...types: StateType[]): this {
    (this.#state().type ??= create(FlowRunFilterStateTypeSchema)).anyOf = stateTypes(types);
    return this;
  }

  /** Runs whose current state has none of these types. */
  excludingStateTypes(...types: StateType[]): this {
    (this.#state().type ??= create(FlowRunFilterStateTypeSchema)).notAnyOf = stateTypes(types);
    return this;
  }

  /** Runs whose current state has any of these names ("Late", "AwaitingRetry"). */
  stateNames(...names: string[]): this {
    (this.#state().name ??= create(FlowRunFilterStateNameSchema)).anyOf = strings(names);
    return this;
  }

  /** Runs whose current state has none of these names. */
  excludingStateNames(...names: string[]): this {
    (this.#state().name ??= create(FlowRunFilterStateNameSchema)).notAnyOf = strings(names);
    return this;
  }

  /** Runs of any of these deployments. */
  deploymentIds(...ids: string[]): this {
    (this.#runs().deploymentId ??= create(FlowRunFilterDeploymentIdSchema)).anyOf = strings(ids);
    return this;
  }

  /** true: runs without a deployment; false: runs with one. */
  withoutDeployment(without = true): this {
    (this.#runs().deploymentId ??= create(FlowRunFilterDeploymentIdSchema)).isNull = without;
    return this;
  }

  /** Runs on any of these work queues (by name). */
  workQueueNames(...names: string[]): this {
    (this.#runs().workQueueName ??= create(FlowRunFilterWorkQueueNameSchema)).anyOf = strings(names);
    return this;
  }

  /** Runs of any of these flow versions. */
  flowVersions(...versions: string[]): this {
    (this.#runs().flowVersion ??= create(FlowRunFilterFlowVersionSchema)).anyOf = strings(versions);
    return this;
  }

  /** Runs created with any of these idempotency keys. */
  idempotencyKeys(...keys: string[]): this {
    (this.#runs().idempotencyKey ??= create(FlowRunFilterIdempotencyKeySchema)).anyOf = strings(keys);
    return this;
  }

  /** Direct subflows of any of these runs. */
  parentFlowRunIds(...ids: string[]): this {
    (this.#runs().parentFlowRunId ??= create(FlowRunFilterParentFlowRunIdSchema)).anyOf = strings(ids);
    return this;
  }

  /** true: top-level runs only; false: subflows only. */
  topLevel(only = true): this {
    (this.#runs().parentTaskRunId ??= create(FlowRunFilterParentTaskRunIdSchema)).isNull = only;
    return this;
  }

  /** Runs that started (or, not started yet, are expected to start) within the range. */
  startTime(range: TimeRange): this {
    this.#runs().startTime = create(FlowRunFilterStartTimeSchema, bounds(range));
    return this;
  }

  /** Runs expected to start within the range. */
  expectedStartTime(range: TimeRange): this {
    this.#runs().expectedStartTime = create(FlowRunFilterExpectedStartTimeSchema, bounds(range));
    return this;
  }

  /** Scheduled runs due within the range. */
  nextScheduledStartTime(range: TimeRange): this {
    this.#runs().nextScheduledStartTime = create(FlowRunFilterNextScheduledStartTimeSchema, bounds(range));
    return this;
  }

  /** Runs that ended within the range. */
  endTime(range: TimeRange): this {
    this.#runs().endTime = create(FlowRunFilterEndTimeSchema, bounds(range));
    return this;
  }

  /** The run criteria above combine with OR instead of AND (the related objects' stay AND). */
  anyRunCriterion(): this {
    this.#runs().operator = FilterOperator.OR;
    return this;
  }

  // ---- related objects ----

  /** Runs of any of these flows. */
  flowIds(...ids: string[]): this {
    (this.#flows().id ??= create(FlowFilterIdSchema)).anyOf = strings(ids);
    return this;
  }

  /** Runs of flows with any of these names. */
  flowNames(...names: string[]): this {
    (this.#flows().name ??= create(FlowFilterNameSchema)).anyOf = strings(names);
    return this;
  }

  /** Runs of deployments with any of these names (excludes runs without a deployment). */
  deploymentNames(...names: string[]): this {
    const deployments = (this.#set.deployments ??= create(DeploymentFilterSchema));
    (deployments.name ??= create(DeploymentFilterNameSchema)).anyOf = strings(names);
    return this;
  }

  /** Runs on work pools with any of these names (excludes runs without a work queue). */
  workPoolNames(...names: string[]): this {
    const pools = (this.#set.workPools ??= create(WorkPoolFilterSchema));
    (pools.name ??= create(WorkPoolFilterNameSchema)).anyOf = strings(names);
    return this;
  }

  /** The filter: a fresh FlowRunFilterSet each time, so the builder can go on. */
  build(): FlowRunFilterSet {
    return clone(FlowRunFilterSetSchema, this.#set);
  }

  #runs(): FlowRunFilter {
    return (this.#set.flowRuns ??= create(FlowRunFilterSchema));
  }

  #state() {
    return (this.#runs().state ??= create(FlowRunFilterStateSchema));
  }

  #flows() {
    return (this.#set.flows ??= create(FlowFilterSchema));
  }
}

function strings(values: string[]): StringList {
  return create(StringListSchema, { values });
}

function stateTypes(values: StateType[]) {
  return create(StateTypeListSchema, { values });
}

function bounds(range: TimeRange): { after?: Timestamp; before?: Timestamp } {
  return { after: instant(range.after), before: instant(range.before) };
}

function instant(value: Instant | undefined): Timestamp | undefined {
  return value instanceof Date ? timestampFromDate(value) : value;
}
