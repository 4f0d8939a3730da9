// Logs and assets through the TypeScript client against a real server: records written with
// CreateLogs and read back page by page with ListLogs' page tokens; an asset materialization
// recorded and listed with its lineage.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import {
  Code,
  FlowrpcClient,
  FlowrpcError,
  LogSort,
  createFlowrpcClient,
  pages,
  timestampDate,
  timestampFromDate,
  type Log,
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

/** A new run of a new flow, and a task run in it. */
async function runWithTask(name: string): Promise<{ flowRunId: string; taskRunId: string }> {
  const { flow } = await client.flows.createFlow({ name });
  const { flowRun } = await client.flowRuns.createFlowRun({ flowId: flow!.id });
  const { taskRun } = await client.taskRuns.createTaskRun({ flowRunId: flowRun!.id, taskKey: "load" });
  return { flowRunId: flowRun!.id, taskRunId: taskRun!.id };
}

test("logs written with CreateLogs are read back page by page, in time order", async () => {
  const { flowRunId, taskRunId } = await runWithTask("logs");
  const other = await runWithTask("logs-other");
  const start = new Date("2026-12-01T12:00:00Z");
  const at = (seconds: number) => timestampFromDate(new Date(start.getTime() + seconds * 1000));
  // Sent newest first: the server's order must come from the timestamps.
  const records = [4, 3, 2, 1, 0].map((i) => ({
    flowRunId,
    taskRunId: i === 2 ? taskRunId : "",
    name: i === 2 ? "prefect.task_runs" : "prefect.flow_runs",
    level: i === 4 ? 40 : 20,
    message: `line ${i}`,
    timestamp: at(i),
  }));
  const otherRecord = { flowRunId: other.flowRunId, name: "x", level: 20, message: "other", timestamp: at(1) };
  const { created } = await client.logs.createLogs({ logs: [...records, otherRecord] });
  assert.equal(created, 6);

  const logs = { flowRunId: { anyOf: { values: [flowRunId] } } };
  const pageSizes: number[] = [];
  const read: Log[] = [];
  const walk = pages(async (pageToken) => {
    const page = await client.logs.listLogs({ logs, sort: LogSort.TIMESTAMP_ASC, limit: 2, pageToken });
    pageSizes.push(page.logs.length);
    return { items: page.logs, nextPageToken: page.nextPageToken };
  });
  for await (const log of walk) read.push(log);
  assert.deepEqual(pageSizes, [2, 2, 1]);
  assert.deepEqual(
    read.map((log) => log.message),
    ["line 0", "line 1", "line 2", "line 3", "line 4"],
  );
  assert.deepEqual(
    read.map((log) => timestampDate(log.timestamp!).getTime() - start.getTime()),
    [0, 1000, 2000, 3000, 4000],
  );
  assert.ok(read.every((log) => log.flowRunId === flowRunId && log.id !== ""));
  assert.equal(read[2]!.taskRunId, taskRunId);
  assert.equal(read[2]!.name, "prefect.task_runs");

  const { logs: errors } = await client.logs.listLogs({ logs: { ...logs, level: { ge: 40 } } });
  assert.deepEqual(
    errors.map((log) => [log.message, log.level]),
    [["line 4", 40]],
  );
  const { logs: newest } = await client.logs.listLogs({ logs, sort: LogSort.TIMESTAMP_DESC, limit: 1 });
  assert.equal(newest[0]!.message, "line 4");
});

test("a log of a run that does not exist is refused whole", async () => {
  const { flowRunId } = await runWithTask("logs-missing");
  const missing = "00000000-0000-4000-8000-000000000001";
  const error = await client.logs
    .createLogs({ logs: [{ flowRunId, message: "kept?" }, { flowRunId: missing, message: "lost" }] })
    .catch((thrown: unknown) => thrown);
  assert.ok(error instanceof FlowrpcError, String(error));
  assert.equal(error.code, Code.NotFound);
  assert.equal(error.reason, "FLOW_RUN_NOT_FOUND");
  const { logs } = await client.logs.listLogs({ logs: { flowRunId: { anyOf: { values: [flowRunId] } } } });
  assert.deepEqual(logs, []); // all or none
});

test("an asset materialization is recorded and listed with its lineage", async () => {
  const { flowRunId, taskRunId } = await runWithTask("assets");
  const when = new Date("2026-12-01T08:30:00Z");
  const { assets } = await client.assets.createAssetMaterialization({
    assetKeys: ["s3://bucket/clean.csv", "s3://bucket/report.pdf"],
    taskRunId,
    upstreamKeys: ["s3://bucket/raw.csv"],
    timestamp: timestampFromDate(when),
  });
  assert.deepEqual(
    assets.map((asset) => asset.key),
    ["s3://bucket/clean.csv", "s3://bucket/report.pdf"],
  );

  const second = await runWithTask("assets-again");
  await client.assets.createAssetMaterialization({ assetKeys: ["s3://bucket/clean.csv"], taskRunId: second.taskRunId });

  const { assets: listed } = await client.assets.listAssets({ keys: { values: ["s3://bucket/clean.csv"] } });
  assert.equal(listed.length, 1);
  const [clean] = listed;
  assert.equal(clean!.key, "s3://bucket/clean.csv");
  assert.deepEqual(clean!.upstreamKeys, ["s3://bucket/raw.csv"]);
  assert.equal(clean!.materializationCount, 2);
  // Newest first: the second one (at the server's time, after `when`), then the first.
  assert.deepEqual(
    clean!.materializations.map((made) => [made.taskRunId, made.flowRunId]),
    [
      [second.taskRunId, second.flowRunId],
      [taskRunId, flowRunId],
    ],
  );
  assert.equal(timestampDate(clean!.materializations[1]!.timestamp!).getTime(), when.getTime());

  // The upstream asset exists too, named by the lineage though never materialized.
  const { assets: raw } = await client.assets.listAssets({ keys: { values: ["s3://bucket/raw.csv"] } });
  assert.deepEqual(
    raw.map((asset) => [asset.key, asset.materializationCount]),
    [["s3://bucket/raw.csv", 0]],
  );
  const { assets: few } = await client.assets.listAssets({ keys: { values: ["s3://bucket/clean.csv"] }, materializations: 1 });
  assert.equal(few[0]!.materializations.length, 1);
  assert.equal(few[0]!.materializationCount, 2);
});
