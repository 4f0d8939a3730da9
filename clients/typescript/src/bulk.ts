// CreateFlowRuns from the client's side: run specs into messages of at most 1,000 runs (and far
// under the 4 MiB a gRPC message may take), and the server's results back as one plain outcome
// per run, in order, a run's failure as data beside the others' successes.
import { create, isMessage, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import type { Code } from "@connectrpc/connect";
import type { CreateFlowRunFromDeploymentRequestSchema } from "./gen/flowrpc/v1/deployment_service_pb.js";
import type { FlowRun } from "./gen/flowrpc/v1/flow_run_pb.js";
import {
  FlowRunCreateSchema,
  type CreateFlowRunRequestSchema,
  type CreateFlowRunsRequestSchema,
  CreateFlowRunsView,
  type CreateFlowRunsResult,
  type FlowRunCreate,
  type FlowRunSummary,
} from "./gen/flowrpc/v1/flow_run_service_pb.js";
import { grpcCodeName, type FieldViolation } from "./errors.js";

/** Runs one CreateFlowRuns message carries at most (the server refuses more). */
export const CREATE_BATCH_RUNS = 1000;
/** Encoded bytes of runs after which a message is sent before it has 1,000 runs. */
export const CREATE_BATCH_BYTES = 1024 * 1024;

/**
 * One run to create, as the request of the single create it stands for: a run of a flow
 * (CreateFlowRun's fields, `flowId` set) or of a deployment (CreateFlowRunFromDeployment's
 * fields, `deploymentId` without `flowId`), or a generated FlowRunCreate message itself.
 */
export type FlowRunSpec =
  | (MessageInitShape<typeof CreateFlowRunRequestSchema> & { flowId: string })
  | (MessageInitShape<typeof CreateFlowRunFromDeploymentRequestSchema> & { deploymentId: string; flowId?: undefined })
  | FlowRunCreate;

/** Why one run of a CreateFlowRuns call was not created (nothing of it was written). */
export interface FlowRunCreateFailure {
  /** The gRPC status code its single create would have failed with (Code.NotFound, ...). */
  readonly code: Code;
  /** The code's canonical name: "NOT_FOUND", "INVALID_ARGUMENT", ... */
  readonly codeName: string;
  /** Machine-readable: "FLOW_NOT_FOUND", "DEPLOYMENT_NOT_FOUND", "LIMIT_EXCEEDED", ... */
  readonly reason: string;
  /** For a person: what is wrong and what to change. */
  readonly message: string;
  /** The fields at fault, as paths from the run's FlowRunCreate ("flow_run.state.type"). */
  readonly violations: readonly FieldViolation[];
}

/** A run that was not created: its position in the call and why. */
export interface FlowRunCreateErrorResult {
  readonly index: number;
  readonly flowRun?: undefined;
  readonly summary?: undefined;
  readonly created: false;
  readonly error: FlowRunCreateFailure;
}

/**
 * The outcome for one run: the run (created by this call, or the existing run its idempotency
 * key names: `created` false), or `error`. `index` is the run's position in the call.
 */
export type FlowRunCreateResult =
  | { readonly index: number; readonly flowRun: FlowRun; readonly created: boolean; readonly error?: undefined }
  | FlowRunCreateErrorResult;

/** The outcome for one run in the BASIC view: `summary` (the run's id, name and state), or `error`. */
export type FlowRunCreateSummaryResult =
  | { readonly index: number; readonly summary: FlowRunSummary; readonly created: boolean; readonly error?: undefined }
  | FlowRunCreateErrorResult;

/** A spec as the FlowRunCreate message that carries it. */
export function runCreate(spec: FlowRunSpec): FlowRunCreate {
  if (isMessage(spec, FlowRunCreateSchema)) return spec;
  if (spec.flowId === undefined && "deploymentId" in spec) {
    return create(FlowRunCreateSchema, { source: { case: "fromDeployment", value: spec } });
  }
  // Without flowId nor deploymentId this is a run of no flow: the server's per-run error says so.
  return create(FlowRunCreateSchema, { source: { case: "flowRun", value: spec } });
}

/**
 * The runs as CreateFlowRuns messages, each built when the stream asks for it: a message goes
 * as soon as it has CREATE_BATCH_RUNS runs (a slow source's runs are not held back), or before
 * the run that would take it over CREATE_BATCH_BYTES (a larger run goes alone).
 */
export async function* createMessages(
  specs: Iterable<FlowRunSpec> | AsyncIterable<FlowRunSpec>,
  view: CreateFlowRunsView = CreateFlowRunsView.UNSPECIFIED,
): AsyncIterable<MessageInitShape<typeof CreateFlowRunsRequestSchema>> {
  let runs: FlowRunCreate[] = [];
  let size = 0;
  for await (const spec of specs) {
    const run = runCreate(spec);
    const runSize = toBinary(FlowRunCreateSchema, run).byteLength + 6; // with its tag and length
    if (runs.length > 0 && size + runSize > CREATE_BATCH_BYTES) {
      yield { runs, view };
      [runs, size] = [[], 0];
    }
    runs.push(run);
    size += runSize;
    if (runs.length === CREATE_BATCH_RUNS) {
      yield { runs, view };
      [runs, size] = [[], 0];
    }
  }
  if (runs.length > 0) yield { runs, view };
}

/** A result of the wire as the caller sees it. */
export function createResult(result: CreateFlowRunsResult): FlowRunCreateResult | FlowRunCreateSummaryResult {
  const index = Number(result.index);
  const { outcome } = result;
  if (outcome.case === "flowRun") return { index, flowRun: outcome.value, created: result.created };
  if (outcome.case === "summary") return { index, summary: outcome.value, created: result.created };
  const error = outcome.value;
  const code = (error?.code ?? 2) as Code; // no outcome at all would be a server bug: UNKNOWN
  return {
    index,
    created: false,
    error: {
      code,
      codeName: grpcCodeName(code),
      reason: error?.reason ?? "",
      message: error?.message ?? "the server sent neither a run nor an error",
      violations: (error?.fieldViolations ?? []).map(({ field, description }) => ({ field, description })),
    },
  };
}
