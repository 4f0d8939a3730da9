// Flows, deployments and runs through the TypeScript client against a real server: create
// (idempotent), list with filters, sort and page tokens, count, history, bulk calls.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  FlowRunSort,
  FlowrpcClient,
  StateType,
  createFlowrpcClient,
  flowRunFilter,
  timestampDate,
  timestampFromDate,
  type FlowRun,
} from "../src/index.js";
import { TestServer } from "./harness.js";

let server: TestServer;
let client: FlowrpcClient;

before(async () => {
  server = await TestServer.start();
  client = createFlowrpcClient({ apiUrl: server.address });
});

after(async () => {
  client?.close();
  await server?.stop();
});

async function newFlow(name: string): Promise<string> {
  const { flow } = await client.flows.createFlow({ name });
  return flow!.id;
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const all: T[] = [];
  for await (const item of items) all.push(item);
  return all;
}

const minutesFromNow = (minutes: number) => new Date(Date.now() + minutes * 60_000);

describe("create", () => {
  test("flows and deployments are created once by name", async () => {
    const first = await client.flows.createFlow({ name: "create-etl", tags: ["a"] });
    const again = await client.flows.createFlow({ name: "create-etl" });
    assert.equal(first.created, true);
    assert.equal(again.created, false);
    assert.equal(again.flow!.id, first.flow!.id);

    const { deployment, created } = await client.deployments.createDeployment({
      deployment: { name: "nightly", flowId: first.flow!.id, tags: ["dep"], parameters: { n: 1 } },
    });
    assert.equal(created, true);
    const { flowRun } = await client.deployments.createFlowRunFromDeployment({
      deploymentId: deployment!.id,
      parameters: { extra: "yes" },
    });
    assert.equal(flowRun!.deploymentId, deployment!.id);
    assert.deepEqual(flowRun!.parameters, { n: 1, extra: "yes" });
    assert.ok(flowRun!.tags.includes("dep"));
  });

  test("a run carries what it was given and starts Pending", async () => {
    const flowId = await newFlow("create-run");
    const { flowRun, created } = await client.flowRuns.createFlowRun({
      flowId,
      name: "first",
      tags: ["x", "y"],
      parameters: { rows: 10, nested: { ok: true }, list: [1, "two", null] },
    });
    assert.equal(created, true);
    assert.equal(flowRun!.name, "first");
    assert.equal(flowRun!.flowId, flowId);
    assert.deepEqual(flowRun!.tags, ["x", "y"]);
    assert.deepEqual(flowRun!.parameters, { rows: 10, nested: { ok: true }, list: [1, "two", null] });
    assert.equal(flowRun!.stateType, StateType.PENDING);
    assert.equal(flowRun!.state!.name, "Pending");
    const { flowRun: read } = await client.flowRuns.getFlowRun({ id: flowRun!.id });
    assert.equal(read!.id, flowRun!.id);
  });

  test("a used idempotency key returns the existing run, unchanged", async () => {
    const flowId = await newFlow("create-idempotent");
    const first = await client.flowRuns.createFlowRun({ flowId, idempotencyKey: "k1", name: "one" });
    const second = await client.flowRuns.createFlowRun({ flowId, idempotencyKey: "k1", name: "two" });
    assert.equal(first.created, true);
    assert.equal(second.created, false);
    assert.equal(second.flowRun!.id, first.flowRun!.id);
    assert.equal(second.flowRun!.name, "one");
    const other = await client.flowRuns.createFlowRun({ flowId, idempotencyKey: "k2" });
    assert.notEqual(other.flowRun!.id, first.flowRun!.id);
  });
});

describe("list and count", () => {
  let flowId: string;
  const runs: FlowRun[] = [];

  before(async () => {
    flowId = await newFlow("list-flow");
    // Five runs: scheduled 10..50 minutes from now, tagged by parity, named r1..r5.
    for (let i = 1; i <= 5; i++) {
      const { flowRun } = await client.flowRuns.createFlowRun({
        flowId,
        name: `r${i}`,
        tags: ["list", i % 2 ? "odd" : "even"],
        state: {
          type: StateType.SCHEDULED,
          stateDetails: { scheduledTime: timestampFromDate(minutesFromNow(i * 10)) },
        },
      });
      runs.push(flowRun!);
    }
  });

  const names = (found: FlowRun[]) => found.map((run) => run.name);

  test("filters select by tags, names, state and flow", async () => {
    const odd = flowRunFilter().flowIds(flowId).tagsAll("list", "odd").build();
    const { flowRuns } = await client.flowRuns.listFlowRuns({ filter: odd, sort: FlowRunSort.NAME_ASC });
    assert.deepEqual(names(flowRuns), ["r1", "r3", "r5"]);

    const some = flowRunFilter().flowNames("list-flow").names("r2", "r4", "nope").build();
    assert.deepEqual(names((await client.flowRuns.listFlowRuns({ filter: some, sort: FlowRunSort.NAME_ASC })).flowRuns), ["r2", "r4"]);

    const none = flowRunFilter().flowIds(flowId).ids().build(); // an empty list matches nothing
    assert.equal((await client.flowRuns.countFlowRuns({ filter: none })).count, 0n);

    const scheduled = flowRunFilter().flowIds(flowId).stateTypes(StateType.SCHEDULED).build();
    assert.equal((await client.flowRuns.countFlowRuns({ filter: scheduled })).count, 5n);
    const running = flowRunFilter().flowIds(flowId).stateTypes(StateType.RUNNING).build();
    assert.equal((await client.flowRuns.countFlowRuns({ filter: running })).count, 0n);
  });

  test("time ranges are inclusive and take Dates", async () => {
    const due = flowRunFilter()
      .flowIds(flowId)
      .expectedStartTime({ after: timestampDate(runs[1].expectedStartTime!), before: timestampDate(runs[3].expectedStartTime!) })
      .build();
    const { flowRuns } = await client.flowRuns.listFlowRuns({ filter: due, sort: FlowRunSort.EXPECTED_START_TIME_ASC });
    assert.deepEqual(names(flowRuns), ["r2", "r3", "r4"]);
  });

  test("sort orders the runs", async () => {
    const filter = flowRunFilter().flowIds(flowId).build();
    const byStart = await client.flowRuns.listFlowRuns({ filter, sort: FlowRunSort.EXPECTED_START_TIME_DESC });
    assert.deepEqual(names(byStart.flowRuns), ["r5", "r4", "r3", "r2", "r1"]);
    const newest = await client.flowRuns.listFlowRuns({ filter }); // unspecified: newest first
    assert.deepEqual(names(newest.flowRuns), ["r5", "r4", "r3", "r2", "r1"]);
  });

  test("page tokens walk every run once, by hand and through iterateFlowRuns", async () => {
    const filter = flowRunFilter().flowIds(flowId).build();
    const first = await client.flowRuns.listFlowRuns({ filter, sort: FlowRunSort.NAME_ASC, limit: 2 });
    assert.deepEqual(names(first.flowRuns), ["r1", "r2"]);
    assert.notEqual(first.nextPageToken, "");
    const second = await client.flowRuns.listFlowRuns({
      filter,
      sort: FlowRunSort.NAME_ASC,
      limit: 2,
      pageToken: first.nextPageToken,
    });
    assert.deepEqual(names(second.flowRuns), ["r3", "r4"]);

    const all = await collect(client.iterateFlowRuns({ filter, sort: FlowRunSort.NAME_ASC, pageSize: 2 }));
    assert.deepEqual(names(all), ["r1", "r2", "r3", "r4", "r5"]);
    const offset = await client.flowRuns.listFlowRuns({ filter, sort: FlowRunSort.NAME_ASC, offset: 4 });
    assert.deepEqual(names(offset.flowRuns), ["r5"]);
    assert.equal(offset.nextPageToken, "");
  });

  test("history streamed and unary agree, one interval per hour", async () => {
    const start = new Date(Date.now() - 5 * 60_000);
    const request = {
      historyStart: timestampFromDate(start),
      historyEnd: timestampFromDate(new Date(start.getTime() + 2 * 3600_000)),
      historyInterval: { seconds: 3600n },
      filter: flowRunFilter().flowIds(flowId).build(),
    };
    const streamed = await collect(client.flowRunHistory(request));
    const { intervals } = await client.flowRuns.readFlowRunHistory(request);
    assert.equal(streamed.length, 2);
    assert.deepEqual(
      streamed.map((interval) => interval.states.map((s) => [s.stateName, s.countRuns])),
      [[["Scheduled", 5n]], []],
    );
    assert.deepEqual(
      intervals.map((interval) => interval.states.map((s) => [s.stateName, s.countRuns])),
      [[["Scheduled", 5n]], []],
    );
    assert.deepEqual(timestampDate(streamed[0].intervalStart!), start);
  });
});

describe("bulk", () => {
  test("bulk cancel streams one result per run; bulk delete one id per run", async () => {
    const flowId = await newFlow("bulk-flow");
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) {
      const state = { type: StateType.SCHEDULED, stateDetails: { scheduledTime: timestampFromDate(minutesFromNow(60)) } };
      ids.push((await client.flowRuns.createFlowRun({ flowId, state })).flowRun!.id);
    }
    const filter = flowRunFilter().flowIds(flowId).build();
    const results = await collect(
      client.bulkSetFlowRunState({ filter, state: { type: StateType.CANCELLING } }),
    );
    assert.deepEqual(results.map((r) => r.flowRunId).sort(), [...ids].sort());
    // Scheduled runs without infrastructure go straight to Cancelled.
    for (const { result } of results) {
      assert.equal(result!.state!.type, StateType.CANCELLED);
    }
    const cancelled = flowRunFilter().flowIds(flowId).stateTypes(StateType.CANCELLED).build();
    assert.equal((await client.flowRuns.countFlowRuns({ filter: cancelled })).count, 7n);

    const limited = await collect(client.bulkDeleteFlowRuns({ filter, limit: 3 }));
    assert.equal(limited.length, 3);
    const rest = await collect(client.bulkDeleteFlowRuns({ filter }));
    assert.deepEqual([...limited, ...rest].sort(), [...ids].sort());
    assert.equal((await client.flowRuns.countFlowRuns({ filter })).count, 0n);
  });

  test("a bulk call whose filter selects nothing streams nothing", async () => {
    const filter = flowRunFilter().ids().build();
    assert.deepEqual(await collect(client.bulkDeleteFlowRuns({ filter })), []);
  });
});
