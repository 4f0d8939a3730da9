// How failures look through the TypeScript client: a FlowrpcError with the gRPC code, the
// ErrorInfo reason and the BadRequest field violations; deadlines.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { ConnectError } from "@connectrpc/connect";
import {
  Code,
  FlowrpcClient,
  FlowrpcError,
  StateType,
  createFlowrpcClient,
  flowRunFilter,
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

/** The FlowrpcError a call fails with (the test fails if it succeeds or throws anything else). */
async function failure(call: () => Promise<unknown>): Promise<FlowrpcError> {
  try {
    await call();
  } catch (error) {
    assert.ok(error instanceof FlowrpcError, `not a FlowrpcError: ${error}`);
    assert.ok(error instanceof ConnectError);
    return error;
  }
  assert.fail("the call succeeded");
}

const MISSING = "0190a000-0000-7000-8000-000000000099";

test("NOT_FOUND carries the reason of the missing object", async () => {
  const error = await failure(() => client.flowRuns.getFlowRun({ id: MISSING }));
  assert.equal(error.code, Code.NotFound);
  assert.equal(error.codeName, "NOT_FOUND");
  assert.equal(error.reason, "FLOW_RUN_NOT_FOUND");
  assert.equal(error.domain, "flowrpc");
  assert.equal(error.rawMessage, `Flow run '${MISSING}' not found.`);
  assert.equal(error.message, `[not_found] Flow run '${MISSING}' not found.`);
  assert.deepEqual(error.violations, []);

  const flow = await failure(() => client.flowRuns.createFlowRun({ flowId: MISSING }));
  assert.equal(flow.reason, "FLOW_NOT_FOUND");
});

test("INVALID_ARGUMENT lists the fields at fault", async () => {
  const error = await failure(() => client.flowRuns.listFlowRuns({ limit: 500 }));
  assert.equal(error.code, Code.InvalidArgument);
  assert.equal(error.reason, "INVALID_ARGUMENT");
  assert.deepEqual(error.violations, [{ field: "limit", description: "must be between 0 and 200, got 500" }]);

  const both = await failure(() => client.flowRuns.listFlowRuns({ offset: 1, pageToken: "abc" }));
  assert.deepEqual(
    both.violations.map((v) => v.field),
    ["offset"],
  );
  const bad = await failure(() => client.flowRuns.getFlowRun({ id: "not-a-uuid" }));
  assert.deepEqual(bad.violations, [{ field: "id", description: "must be a UUID, got 'not-a-uuid'" }]);
});

test("a stream that fails throws FlowrpcError from the loop", async () => {
  const iterate = async () => {
    for await (const _ of client.bulkSetFlowRunState({ filter: flowRunFilter().build(), state: { type: StateType.UNSPECIFIED } })) {
      assert.fail("no result expected");
    }
  };
  const error = await failure(iterate);
  assert.equal(error.code, Code.InvalidArgument);
  assert.equal(error.violations.length, 1);
  assert.match(error.violations[0].field, /state/);
});

test("a deadline too short for the call ends it with DEADLINE_EXCEEDED", async () => {
  const error = await failure(() => client.flowRuns.countFlowRuns({}, { timeoutMs: 1 }));
  assert.equal(error.code, Code.DeadlineExceeded);
  assert.equal(error.codeName, "DEADLINE_EXCEEDED");
  assert.equal(error.reason, undefined);

  const quick = createFlowrpcClient({ apiUrl: server.address, timeoutMs: 1 });
  try {
    assert.equal((await failure(() => quick.flowRuns.countFlowRuns({}))).code, Code.DeadlineExceeded);
  } finally {
    quick.close();
  }
});

test("no server at the address: UNAVAILABLE", async () => {
  const nobody = createFlowrpcClient({ apiUrl: "127.0.0.1:1" });
  try {
    const error = await failure(() => nobody.flowRuns.countFlowRuns({}));
    assert.equal(error.code, Code.Unavailable);
  } finally {
    nobody.close();
  }
});
