// Every orchestration outcome through the TypeScript client, with its details: ACCEPT, REJECT,
// WAIT and ABORT are normal responses, not errors. Also force and resume.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import {
  FlowrpcClient,
  SetStateStatus,
  StateType,
  createFlowrpcClient,
  timestampFromDate,
  type OrchestrationResult,
  type StateSchema,
} from "../src/index.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { TestServer } from "./harness.js";

let server: TestServer;
let client: FlowrpcClient;
let flowId: string;

before(async () => {
  server = await TestServer.start();
  client = createFlowrpcClient({ apiUrl: server.address });
  flowId = (await client.flows.createFlow({ name: "orchestrated" })).flow!.id;
});

after(async () => {
  client?.close();
  await server?.stop();
});

type StateInit = MessageInitShape<typeof StateSchema>;

/** A run whose current state is `state` (set with force). */
async function runIn(state: StateInit): Promise<string> {
  const { flowRun } = await client.flowRuns.createFlowRun({ flowId, state });
  return flowRun!.id;
}

async function propose(flowRunId: string, state: StateInit, force = false): Promise<OrchestrationResult> {
  return (await client.flowRuns.setFlowRunState({ flowRunId, state, force })).result!;
}

/** The reason of a REJECT, WAIT or ABORT. */
function why(result: OrchestrationResult): string | undefined {
  const { details } = result;
  return details.case === "reject" || details.case === "wait" || details.case === "abort"
    ? details.value.reason
    : undefined;
}

test("ACCEPT: the proposed state becomes current", async () => {
  const id = await runIn({ type: StateType.PENDING });
  const result = await propose(id, { type: StateType.RUNNING, message: "go" });
  assert.equal(result.status, SetStateStatus.ACCEPT);
  assert.equal(result.details.case, "accept");
  assert.equal(result.state!.type, StateType.RUNNING);
  assert.equal(result.state!.message, "go");
  const { flowRun } = await client.flowRuns.getFlowRun({ id });
  assert.equal(flowRun!.runCount, 1);
  assert.equal(flowRun!.stateName, "Running");
});

test("REJECT: a cancelling run stays cancelling, with the reason", async () => {
  const id = await runIn({ type: StateType.CANCELLING });
  const result = await propose(id, { type: StateType.RUNNING });
  assert.equal(result.status, SetStateStatus.REJECT);
  assert.equal(result.details.case, "reject");
  assert.equal(
    why(result),
    "Cannot transition flows that are cancelling to a state other than Cancelled.",
  );
  assert.equal(result.state!.type, StateType.CANCELLING);
});

test("WAIT: running before the scheduled time answers with the delay", async () => {
  const scheduledTime = timestampFromDate(new Date(Date.now() + 45_000));
  const id = await runIn({ type: StateType.SCHEDULED, stateDetails: { scheduledTime } });
  const result = await propose(id, { type: StateType.RUNNING });
  assert.equal(result.status, SetStateStatus.WAIT);
  assert.equal(result.details.case, "wait");
  if (result.details.case !== "wait") return;
  assert.match(result.details.value.reason, /Scheduled time is in the future/);
  assert.ok(result.details.value.delaySeconds > 30 && result.details.value.delaySeconds <= 45);
  assert.equal(result.state!.type, StateType.SCHEDULED);
});

test("ABORT: a running run cannot go back to pending; nothing is written", async () => {
  const id = await runIn({ type: StateType.RUNNING });
  const result = await propose(id, { type: StateType.PENDING });
  assert.equal(result.status, SetStateStatus.ABORT);
  assert.equal(result.details.case, "abort");
  assert.equal(
    why(result),
    "This run is in a RUNNING state and cannot transition to a PENDING state.",
  );
  const { states } = await client.flowRuns.listFlowRunStates({ flowRunId: id });
  assert.deepEqual(states.map((s) => s.type), [StateType.RUNNING]);
});

test("force skips the rules that would refuse", async () => {
  const id = await runIn({ type: StateType.CANCELLING });
  const result = await propose(id, { type: StateType.RUNNING }, true);
  assert.equal(result.status, SetStateStatus.ACCEPT);
  assert.equal(result.state!.type, StateType.RUNNING);
  const { states } = await client.flowRuns.listFlowRunStates({ flowRunId: id });
  assert.deepEqual(states.map((s) => s.type), [StateType.CANCELLING, StateType.RUNNING]);
});

test("resume: a paused run goes back to running; a running one is aborted", async () => {
  const id = await runIn({ type: StateType.RUNNING });
  const paused = await propose(id, { type: StateType.PAUSED, name: "Paused" });
  assert.equal(paused.status, SetStateStatus.ACCEPT);
  const resumed = (await client.flowRuns.resumeFlowRun({ flowRunId: id })).result!;
  assert.equal(resumed.status, SetStateStatus.ACCEPT);
  assert.equal(resumed.state!.type, StateType.RUNNING);

  const again = (await client.flowRuns.resumeFlowRun({ flowRunId: id })).result!;
  assert.equal(again.status, SetStateStatus.ABORT);
  assert.equal(why(again), "Cannot resume a flow run that is not paused.");
});
