// flowrpc's TypeScript client: the generated messages and services (the types), and a thin
// layer over them (connection options, errors, filters, streams).
export { FlowrpcClient, createFlowrpcClient, DEFAULT_API_URL, DEFAULT_TIMEOUT_MS } from "./client.js";
export type { ClientOptions, CreateFlowRunsOptions, FlowRunQuery, TlsOptions, WatchOptions } from "./client.js";
export { CREATE_BATCH_BYTES, CREATE_BATCH_RUNS } from "./bulk.js";
export type {
  FlowRunCreateErrorResult,
  FlowRunCreateFailure,
  FlowRunCreateResult,
  FlowRunCreateSummaryResult,
  FlowRunSpec,
} from "./bulk.js";
export { FlowrpcError, grpcCodeName, toFlowrpcError, withFlowrpcErrors } from "./errors.js";
export type { FieldViolation } from "./errors.js";
export { FlowRunFilterBuilder, flowRunFilter } from "./filters.js";
export type { Instant, TimeRange } from "./filters.js";
export { collect, flatten, pages } from "./streams.js";
export type { Page } from "./streams.js";
export type { FlowRunWatchEvent } from "./watch.js";
export { Code } from "@connectrpc/connect";
export { create } from "@bufbuild/protobuf";
export { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";

export * from "./gen/flowrpc/v1/asset_pb.js";
export * from "./gen/flowrpc/v1/asset_service_pb.js";
export * from "./gen/flowrpc/v1/deployment_pb.js";
export * from "./gen/flowrpc/v1/deployment_service_pb.js";
export * from "./gen/flowrpc/v1/filter_pb.js";
export * from "./gen/flowrpc/v1/flow_pb.js";
export * from "./gen/flowrpc/v1/flow_run_pb.js";
export * from "./gen/flowrpc/v1/flow_run_service_pb.js";
export * from "./gen/flowrpc/v1/flow_service_pb.js";
export * from "./gen/flowrpc/v1/graph_pb.js";
export * from "./gen/flowrpc/v1/history_pb.js";
export * from "./gen/flowrpc/v1/log_pb.js";
export * from "./gen/flowrpc/v1/log_service_pb.js";
export * from "./gen/flowrpc/v1/orchestration_pb.js";
export * from "./gen/flowrpc/v1/state_pb.js";
export * from "./gen/flowrpc/v1/task_run_pb.js";
export * from "./gen/flowrpc/v1/task_run_service_pb.js";
export * from "./gen/flowrpc/v1/work_pool_pb.js";
export * from "./gen/flowrpc/v1/work_pool_service_pb.js";
