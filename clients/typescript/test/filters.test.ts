// Each method of the FlowRunFilterSet builder, against a real server: a handful of runs that
// differ in one respect each, and the runs every criterion selects.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import {
  FlowRunSort,
  FlowrpcClient,
  StateType,
  createFlowrpcClient,
  flowRunFilter,
  timestampDate,
  timestampFromDate,
  type FlowRunFilterBuilder,
} from "../src/index.js";
import { TestServer } from "./harness.js";

let server: TestServer;
let client: FlowrpcClient;
const ids: Record<string, string> = {}; // run name -> id
const flows: Record<string, string> = {};
let deploymentId: string;
let started: Date; // between r2's start and r3's end

before(async () => {
  server = await TestServer.start();
  client = createFlowrpcClient({ apiUrl: server.address });
  flows.a = (await client.flows.createFlow({ name: "fb-a" })).flow!.id;
  flows.b = (await client.flows.createFlow({ name: "fb-b" })).flow!.id;
  await client.workPools.createWorkPool({ name: "fb-pool" });
  deploymentId = (
    await client.deployments.createDeployment({
      deployment: { name: "fb-dep", flowId: flows.a, workPoolName: "fb-pool" },
    })
  ).deployment!.id;

  const scheduled = {
    type: StateType.SCHEDULED,
    stateDetails: { scheduledTime: timestampFromDate(new Date(Date.now() + 3600_000)) },
  };
  // r1: from the deployment (work pool fb-pool, its default queue), scheduled in an hour.
  const r1 = await client.deployments.createFlowRunFromDeployment({ deploymentId, name: "r1-dep", tags: ["t1"], state: scheduled });
  ids["r1-dep"] = r1.flowRun!.id;
  // r2: running, version 1.0, keyed, two tags.
  const r2 = await client.flowRuns.createFlowRun({
    flowId: flows.a, name: "r2-alpha", flowVersion: "1.0", idempotencyKey: "ik-2", tags: ["t1", "t2"],
    state: { type: StateType.RUNNING },
  });
  ids["r2-alpha"] = r2.flowRun!.id;
  started = new Date(timestampDate(r2.flowRun!.startTime!).getTime() + 1);
  await new Promise((done) => setTimeout(done, 20));
  // r3: flow b, completed, untagged.
  const r3 = await client.flowRuns.createFlowRun({ flowId: flows.b, name: "r3-beta", state: { type: StateType.COMPLETED } });
  ids["r3-beta"] = r3.flowRun!.id;
  // r4: flow b, a subflow of r2 (through a task run of r2), failed.
  const { taskRun } = await client.taskRuns.createTaskRun({ flowRunId: ids["r2-alpha"], name: "t", taskKey: "t" });
  const r4 = await client.flowRuns.createFlowRun({
    flowId: flows.b, name: "r4-sub", parentTaskRunId: taskRun!.id, state: { type: StateType.FAILED, name: "Crashed-ish" },
  });
  ids["r4-sub"] = r4.flowRun!.id;
});

after(async () => {
  client?.close();
  await server?.stop();
});

/** Names of the runs of this file's flows that the builder's criteria select, sorted. */
async function selected(build: (filter: FlowRunFilterBuilder) => FlowRunFilterBuilder): Promise<string[]> {
  const filter = build(flowRunFilter().flowIds(flows.a, flows.b)).build();
  const { flowRuns } = await client.flowRuns.listFlowRuns({ filter, sort: FlowRunSort.NAME_ASC });
  return flowRuns.map((run) => run.name);
}

const ALL = ["r1-dep", "r2-alpha", "r3-beta", "r4-sub"];

test("the runs themselves: ids, names, tags, versions, keys", async () => {
  assert.deepEqual(await selected((f) => f), ALL);
  assert.deepEqual(await selected((f) => f.ids(ids["r1-dep"], ids["r3-beta"])), ["r1-dep", "r3-beta"]);
  assert.deepEqual(await selected((f) => f.excludingIds(ids["r1-dep"])), ["r2-alpha", "r3-beta", "r4-sub"]);
  assert.deepEqual(await selected((f) => f.names("r4-sub")), ["r4-sub"]);
  assert.deepEqual(await selected((f) => f.nameLike("ALPHA")), ["r2-alpha"]);
  assert.deepEqual(await selected((f) => f.tagsAll("t1", "t2")), ["r2-alpha"]);
  assert.deepEqual(await selected((f) => f.tagsAny("t2", "t1")), ["r1-dep", "r2-alpha"]);
  assert.deepEqual(await selected((f) => f.flowVersions("1.0")), ["r2-alpha"]);
  assert.deepEqual(await selected((f) => f.idempotencyKeys("ik-2", "other")), ["r2-alpha"]);
});

test("states by type and name", async () => {
  assert.deepEqual(await selected((f) => f.stateTypes(StateType.RUNNING, StateType.COMPLETED)), ["r2-alpha", "r3-beta"]);
  assert.deepEqual(await selected((f) => f.excludingStateTypes(StateType.SCHEDULED)), ["r2-alpha", "r3-beta", "r4-sub"]);
  assert.deepEqual(await selected((f) => f.stateNames("Crashed-ish")), ["r4-sub"]);
  assert.deepEqual(await selected((f) => f.excludingStateNames("Scheduled", "Running")), ["r3-beta", "r4-sub"]);
});

test("deployments, work queues and pools", async () => {
  assert.deepEqual(await selected((f) => f.deploymentIds(deploymentId)), ["r1-dep"]);
  assert.deepEqual(await selected((f) => f.withoutDeployment()), ["r2-alpha", "r3-beta", "r4-sub"]);
  assert.deepEqual(await selected((f) => f.withoutDeployment(false)), ["r1-dep"]);
  assert.deepEqual(await selected((f) => f.workQueueNames("default")), ["r1-dep"]);
  assert.deepEqual(await selected((f) => f.deploymentNames("fb-dep")), ["r1-dep"]);
  assert.deepEqual(await selected((f) => f.workPoolNames("fb-pool")), ["r1-dep"]);
  assert.deepEqual(await selected((f) => f.workPoolNames("elsewhere")), []);
});

test("flows, parents and subflows", async () => {
  assert.deepEqual(await selected((f) => f.flowIds(flows.b)), ["r3-beta", "r4-sub"]);
  assert.deepEqual(await selected((f) => f.flowNames("fb-a")), ["r1-dep", "r2-alpha"]);
  assert.deepEqual(await selected((f) => f.parentFlowRunIds(ids["r2-alpha"])), ["r4-sub"]);
  assert.deepEqual(await selected((f) => f.topLevel()), ["r1-dep", "r2-alpha", "r3-beta"]);
  assert.deepEqual(await selected((f) => f.topLevel(false)), ["r4-sub"]);
});

test("time ranges", async () => {
  const inAnHour = new Date(Date.now() + 3600_000);
  assert.deepEqual(await selected((f) => f.nextScheduledStartTime({ after: new Date() })), ["r1-dep"]);
  assert.deepEqual(await selected((f) => f.expectedStartTime({ after: new Date(inAnHour.getTime() - 600_000) })), ["r1-dep"]);
  // Start time is COALESCE(start_time, expected_start_time): r1 counts as starting in an hour.
  assert.deepEqual(await selected((f) => f.startTime({ after: started, before: new Date(Date.now() + 60_000) })), ["r3-beta", "r4-sub"]);
  assert.deepEqual(await selected((f) => f.startTime({ after: started, before: inAnHour })), ["r1-dep", "r3-beta", "r4-sub"]);
  assert.deepEqual(await selected((f) => f.endTime({ before: new Date() })), ["r3-beta", "r4-sub"]);
  assert.deepEqual(await selected((f) => f.endTime({ after: new Date() })), []);
});

test("anyRunCriterion joins the run criteria with OR; build() leaves the builder reusable", async () => {
  assert.deepEqual(await selected((f) => f.names("r1-dep").stateTypes(StateType.FAILED)), []);
  assert.deepEqual(await selected((f) => f.names("r1-dep").stateTypes(StateType.FAILED).anyRunCriterion()), ["r1-dep", "r4-sub"]);
  const builder = flowRunFilter().names("r1-dep");
  const first = builder.build();
  builder.names("r3-beta");
  assert.deepEqual(first.flowRuns!.name!.anyOf!.values, ["r1-dep"]);
});
