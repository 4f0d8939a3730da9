// CreateFlowRuns through the TypeScript client against a real server: flows and deployments
// mixed, per-run failures beside successes, idempotency keys, calls of several messages, order.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  Code,
  CreateFlowRunsView,
  FlowRunCreateSchema,
  FlowrpcClient,
  FlowrpcError,
  StateType,
  create,
  createFlowrpcClient,
  flowRunFilter,
  type FlowRunCreateResult,
  type FlowRunSpec,
} from "../src/index.js";
import type { JsonObject } from "@bufbuild/protobuf";
import { CREATE_BATCH_BYTES, createMessages } from "../src/bulk.js";
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

const MISSING = "00000000-0000-4000-8000-000000000000";

async function newFlow(name: string): Promise<string> {
  const { flow } = await client.flows.createFlow({ name });
  return flow!.id;
}

async function newDeployment(flowId: string, fields: { parameters?: JsonObject; tags?: string[] } = {}): Promise<string> {
  const { deployment } = await client.deployments.createDeployment({
    deployment: { name: `d-${flowId}`, flowId, ...fields },
  });
  return deployment!.id;
}

/** The run of a successful result; fails the test on an error result. */
function run(result: FlowRunCreateResult) {
  assert.equal(result.error, undefined, `run ${result.index} failed: ${result.error?.message}`);
  return result.flowRun!;
}

describe("createFlowRuns", () => {
  test("flows and deployments mixed: each run's failure beside the others' successes, in order", async () => {
    const flowId = await newFlow("bulk-mixed");
    const deploymentId = await newDeployment(flowId, { parameters: { a: 1, b: 2 }, tags: ["from-deployment"] });
    const results = await client.createFlowRunsAll([
      { flowId, name: "first", tags: ["x"], parameters: { n: 1 } },
      { deploymentId, parameters: { b: 3 }, tags: ["mine"] },
      { flowId: MISSING },
      { deploymentId: MISSING },
      { flowId, state: { name: "no type" } },
      { flowId: "not-a-uuid" },
      create(FlowRunCreateSchema, {}), // neither a flow nor a deployment
      create(FlowRunCreateSchema, { source: { case: "flowRun", value: { flowId, name: "last" } } }),
    ]);

    assert.deepEqual(
      results.map((result) => result.index),
      [0, 1, 2, 3, 4, 5, 6, 7],
    );
    const first = run(results[0]!);
    assert.equal(results[0]!.created, true);
    assert.deepEqual([first.name, first.tags, first.parameters], ["first", ["x"], { n: 1 }]);
    assert.equal(first.stateType, StateType.PENDING);
    const fromDeployment = run(results[1]!);
    assert.equal(fromDeployment.deploymentId, deploymentId);
    assert.equal(fromDeployment.flowId, flowId);
    assert.deepEqual(fromDeployment.parameters, { a: 1, b: 3 });
    assert.deepEqual(fromDeployment.tags, ["from-deployment", "mine"]);
    assert.equal(fromDeployment.stateType, StateType.SCHEDULED);
    assert.equal(run(results[7]!).name, "last");

    const errors = results.slice(2, 7).map((result) => {
      assert.equal(result.flowRun, undefined);
      assert.equal(result.created, false);
      return result.error!;
    });
    assert.deepEqual(
      errors.map((error) => [error.code, error.codeName, error.reason]),
      [
        [Code.NotFound, "NOT_FOUND", "FLOW_NOT_FOUND"],
        [Code.NotFound, "NOT_FOUND", "DEPLOYMENT_NOT_FOUND"],
        [Code.InvalidArgument, "INVALID_ARGUMENT", "INVALID_ARGUMENT"],
        [Code.InvalidArgument, "INVALID_ARGUMENT", "INVALID_ARGUMENT"],
        [Code.InvalidArgument, "INVALID_ARGUMENT", "INVALID_ARGUMENT"],
      ],
    );
    assert.match(errors[0]!.message, new RegExp(MISSING));
    assert.deepEqual(errors[0]!.violations, []);
    assert.deepEqual(
      errors.slice(2).map((error) => error.violations.map((violation) => violation.field)),
      [["flow_run.state.type"], ["flow_run.flow_id"], ["source"]],
    );
    assert.match(errors[3]!.violations[0]!.description, /must be a UUID/);

    // Only the three good runs exist, each as its result says.
    const { flowRuns } = await client.flowRuns.listFlowRuns({ filter: flowRunFilter().flowIds(flowId).build() });
    assert.deepEqual(new Set(flowRuns.map((listed) => listed.id)), new Set([first.id, fromDeployment.id, run(results[7]!).id]));
    const { flowRun: read } = await client.flowRuns.getFlowRun({ id: fromDeployment.id });
    assert.deepEqual(read!.parameters, fromDeployment.parameters);
  });

  test("idempotency keys: within a call, against runs made before, and across calls", async () => {
    const flowId = await newFlow("bulk-keys");
    const deploymentId = await newDeployment(flowId);
    const { flowRun: existing } = await client.flowRuns.createFlowRun({ flowId, idempotencyKey: "before" });
    const specs: FlowRunSpec[] = [
      { flowId, idempotencyKey: "k1", name: "one" },
      { flowId, idempotencyKey: "k1", name: "again" },
      { flowId, idempotencyKey: "before" },
      { deploymentId, idempotencyKey: "k2" },
      { flowId },
    ];
    const results = await client.createFlowRunsAll(specs);
    const ids = results.map((result) => run(result).id);
    assert.deepEqual(
      results.map((result) => result.created),
      [true, false, false, true, true],
    );
    assert.equal(ids[1], ids[0]);
    assert.equal(run(results[1]!).name, "one");
    assert.equal(ids[2], existing!.id);

    const again = await client.createFlowRunsAll(specs);
    assert.deepEqual(
      again.map((result) => result.created),
      [false, false, false, false, true],
    );
    assert.deepEqual(again.map((result) => run(result).id).slice(0, 4), ids.slice(0, 4));
    assert.notEqual(run(again[4]!).id, ids[4]);
  });

  test("the BASIC view: ids, names and states that match the stored runs, the same errors and keys", async () => {
    const flowId = await newFlow("bulk-basic");
    const deploymentId = await newDeployment(flowId);
    const specs: FlowRunSpec[] = [
      { flowId, idempotencyKey: "k", name: "keyed" },
      { deploymentId, state: { type: StateType.RUNNING } },
      { flowId: MISSING },
      { flowId, idempotencyKey: "k", name: "same key" },
    ];
    const basic = await client.createFlowRunsAll(specs, { view: CreateFlowRunsView.BASIC });
    assert.deepEqual(
      basic.map((result) => [result.index, result.created, "flowRun" in result, result.summary === undefined]),
      [
        [0, true, false, false],
        [1, true, false, false],
        [2, false, false, true],
        [3, false, false, false],
      ],
    );
    assert.equal(basic[3]!.summary!.id, basic[0]!.summary!.id);
    assert.equal(basic[3]!.summary!.name, "keyed");
    for (const summary of [basic[0]!.summary!, basic[1]!.summary!]) {
      const { flowRun: stored } = await client.flowRuns.getFlowRun({ id: summary.id });
      assert.deepEqual(
        [summary.name, summary.stateType, summary.stateName],
        [stored!.name, stored!.stateType, stored!.stateName],
      );
    }
    assert.deepEqual([basic[1]!.summary!.stateType, basic[1]!.summary!.stateName], [StateType.RUNNING, "Running"]);

    const full = await client.createFlowRunsAll(specs); // FULL, the default
    assert.deepEqual(full[2]!.error, basic[2]!.error);
    assert.equal(basic[2]!.error!.reason, "FLOW_NOT_FOUND");
    assert.deepEqual([run(full[0]!).id, full[0]!.created], [basic[0]!.summary!.id, false]);
    assert.equal(run(full[1]!).stateType, basic[1]!.summary!.stateType);
  });

  test("more than 1,000 runs from an async iterable: several messages, every result in order", async () => {
    const flowId = await newFlow("bulk-many");
    const total = 2_345;
    async function* specs(): AsyncIterable<FlowRunSpec> {
      for (let i = 0; i < total; i++) yield { flowId, name: `run-${i}`, tags: ["bulk-many"] };
    }
    const names: string[] = [];
    const indexes: number[] = [];
    for await (const result of client.createFlowRuns(specs())) {
      indexes.push(result.index);
      names.push(run(result).name);
    }
    assert.deepEqual(indexes, Array.from({ length: total }, (_, i) => i));
    assert.deepEqual(names, Array.from({ length: total }, (_, i) => `run-${i}`));
    const { count } = await client.flowRuns.countFlowRuns({ filter: flowRunFilter().tagsAll("bulk-many").build() });
    assert.equal(count, BigInt(total));
  });

  // A client that held the runs back would never end these two calls: the test's timeout fails them.
  test("results stream back while the runs are still being sent", { timeout: 20_000 }, async () => {
    const flowId = await newFlow("bulk-duplex");
    let firstAnswered!: () => void;
    const answered = new Promise<void>((done) => (firstAnswered = done));
    // The second message is only sent once the first one's results came back: a client that
    // read answers only after sending everything would never end this call.
    async function* specs(): AsyncIterable<FlowRunSpec> {
      for (let i = 0; i < 1000; i++) yield { flowId, name: `a-${i}` };
      await answered;
      yield { flowId, name: "b" };
    }
    const names: string[] = [];
    for await (const result of client.createFlowRuns(specs())) {
      names.push(run(result).name);
      if (result.index === 999) firstAnswered();
    }
    assert.equal(names.length, 1001);
    assert.deepEqual(names.slice(998), ["a-998", "a-999", "b"]);
  });

  test("a failed call throws a FlowrpcError after the results answered before it", { timeout: 20_000 }, async () => {
    const flowId = await newFlow("bulk-abort");
    const controller = new AbortController();
    async function* specs(): AsyncIterable<FlowRunSpec> {
      for (let i = 0; i < 1000; i++) yield { flowId };
      await new Promise(() => {}); // a source that stalls: only the abort ends the call
    }
    const received: FlowRunCreateResult[] = [];
    const error = await (async () => {
      try {
        for await (const result of client.createFlowRuns(specs(), { signal: controller.signal })) {
          received.push(result);
          if (received.length === 1000) controller.abort();
        }
      } catch (thrown) {
        return thrown;
      }
      assert.fail("the aborted call ended without an error");
    })();
    assert.ok(error instanceof FlowrpcError, String(error));
    assert.equal(error.code, Code.Canceled);
    assert.equal(received.length, 1000);
  });

  test("runs that fail to arrive end the call: the source's error is the cause", { timeout: 20_000 }, async () => {
    const flowId = await newFlow("bulk-broken-source");
    const broken = new Error("the source broke");
    async function* specs(): AsyncIterable<FlowRunSpec> {
      for (let i = 0; i < 10; i++) yield { flowId };
      throw broken;
    }
    const error = await client.createFlowRunsAll(specs()).catch((thrown: unknown) => thrown);
    assert.ok(error instanceof FlowrpcError, String(error));
    assert.equal(error.cause, broken);
    assert.match(error.message, /the source broke/);
  });

  test("an empty call answers nothing", async () => {
    assert.deepEqual(await client.createFlowRunsAll([]), []);
  });
});

describe("createFlowRuns messages", () => {
  test("at most 1,000 runs each", async () => {
    const specs = Array.from({ length: 2_001 }, (_, i) => ({ flowId: MISSING, name: `m-${i}` }));
    const sizes: number[] = [];
    for await (const message of createMessages(specs)) sizes.push(message.runs!.length);
    assert.deepEqual(sizes, [1000, 1000, 1]);
  });

  test("large runs end a message early; a run larger than a message goes alone", async () => {
    const text = "x".repeat(300 * 1024);
    const large = (name: string) => ({ flowId: MISSING, name, parameters: { text } });
    const huge = { flowId: MISSING, name: "huge", parameters: { text: text.repeat(4) } };
    const specs = [large("a"), large("b"), large("c"), large("d"), huge, large("e")];
    const messages: string[][] = [];
    for await (const message of createMessages(specs)) {
      messages.push(message.runs!.map((create) => (create as { source: { value: { name: string } } }).source.value.name));
    }
    assert.deepEqual(messages, [["a", "b", "c"], ["d"], ["huge"], ["e"]]);
    assert.ok(3 * 300 * 1024 < CREATE_BATCH_BYTES && 4 * 300 * 1024 > CREATE_BATCH_BYTES);
  });
});
