// WatchFlowRuns through the TypeScript client against a real server: snapshot, marker, the
// transitions made through the client as they commit, an abort that ends the watch, and a
// resume from a cursor that misses nothing and repeats nothing.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import {
  Code,
  FlowrpcClient,
  FlowrpcError,
  StateType,
  createFlowrpcClient,
  flowRunFilter,
  type FlowRunWatchEvent,
} from "../src/index.js";
import { TestServer } from "./harness.js";

let server: TestServer;
let client: FlowrpcClient;
let flowId: string;

before(async () => {
  server = await TestServer.start();
  client = createFlowrpcClient({ apiUrl: server.address });
  flowId = (await client.flows.createFlow({ name: "watched" })).flow!.id;
});

after(async () => {
  client?.close();
  await server?.stop();
});

/** A watch read event by event; a test that waits for an event that never comes times out. */
class Watcher {
  readonly #events: AsyncIterator<FlowRunWatchEvent>;

  constructor(events: AsyncIterable<FlowRunWatchEvent>) {
    this.#events = events[Symbol.asyncIterator]();
  }

  /** The next event that is not progress (progress may come at any time). */
  async next(): Promise<FlowRunWatchEvent | undefined> {
    for (;;) {
      const { done, value } = await this.#events.next();
      if (done) return undefined;
      if (value.type !== "progress") return value;
    }
  }

  /** The next `count` events, each a change: [run id, state type, cursor]. */
  async changes(count: number): Promise<Array<[string, StateType, string]>> {
    const changes: Array<[string, StateType, string]> = [];
    while (changes.length < count) {
      const event = await this.next();
      assert.equal(event?.type, "change", `expected a change, got ${JSON.stringify(event?.type)}`);
      if (event?.type !== "change") break;
      assert.equal(event.state.type, event.flowRun.stateType);
      changes.push([event.flowRun.id, event.state.type, event.cursor]);
    }
    return changes;
  }
}

async function newRun(tags: string[]): Promise<string> {
  return (await client.flowRuns.createFlowRun({ flowId, tags })).flowRun!.id;
}

async function moveTo(flowRunId: string, type: StateType): Promise<void> {
  const { result } = await client.flowRuns.setFlowRunState({ flowRunId, state: { type } });
  assert.equal(result!.state!.type, type);
}

const withoutCursors = (changes: Array<[string, StateType, string]>) => changes.map(([id, type]) => [id, type]);

test("snapshot, marker, then each transition of a watched run as it commits", { timeout: 30_000 }, async () => {
  const [a, b] = [await newRun(["live"]), await newRun(["live"])];
  const unwatched = await newRun(["other"]);
  const stop = new AbortController();
  const watcher = new Watcher(client.watchFlowRuns(flowRunFilter().tagsAll("live").build(), { signal: stop.signal }));

  const snapshot = [await watcher.next(), await watcher.next()];
  assert.deepEqual(
    snapshot.map((event) => event?.type),
    ["snapshot", "snapshot"],
  );
  const snapshotIds = snapshot.map((event) => (event?.type === "snapshot" ? event.flowRun.id : ""));
  assert.deepEqual(new Set(snapshotIds), new Set([a, b]));
  const marker = await watcher.next();
  assert.equal(marker?.type, "marker");

  await moveTo(a, StateType.RUNNING);
  await moveTo(unwatched, StateType.RUNNING); // not selected by the filter: never sent
  await moveTo(b, StateType.RUNNING);
  await moveTo(a, StateType.COMPLETED);
  const [created] = await client.createFlowRunsAll([{ flowId, tags: ["live"] }]); // a bulk create too
  const changes = await watcher.changes(4);
  assert.deepEqual(withoutCursors(changes), [
    [a, StateType.RUNNING],
    [b, StateType.RUNNING],
    [a, StateType.COMPLETED],
    [created!.flowRun!.id, StateType.PENDING],
  ]);
  const cursors = [marker?.type === "marker" ? marker.cursor : "", ...changes.map(([, , cursor]) => cursor)];
  assert.ok(cursors.every((cursor) => cursor !== ""));
  assert.equal(new Set(cursors).size, cursors.length);

  stop.abort(); // ends the watch: the iteration is over, no error
  assert.equal(await watcher.next(), undefined);
});

test("a watch resumed from a cursor gets what committed meanwhile, once each", { timeout: 30_000 }, async () => {
  const filter = flowRunFilter().tagsAll("resume").build();
  const a = await newRun(["resume"]);
  const first = new AbortController();
  const watcher = new Watcher(client.watchFlowRuns(filter, { snapshot: false, signal: first.signal }));
  const marker = await watcher.next();
  assert.equal(marker?.type, "marker");
  await moveTo(a, StateType.RUNNING);
  const [[, , seen]] = await watcher.changes(1);
  first.abort();
  assert.equal(await watcher.next(), undefined);

  // Disconnected: a new run (its first state is a change too), its move, and a's end.
  const b = await newRun(["resume"]);
  await moveTo(b, StateType.RUNNING);
  await moveTo(a, StateType.COMPLETED);

  const meanwhile = [
    [b, StateType.PENDING],
    [b, StateType.RUNNING],
    [a, StateType.COMPLETED],
  ];
  const second = new AbortController();
  const resumed = new Watcher(client.watchFlowRuns(filter, { cursor: seen!, signal: second.signal }));
  assert.deepEqual(withoutCursors(await resumed.changes(3)), meanwhile); // no snapshot, no marker
  // Live again: the next change is the next one made, so nothing came twice in between.
  await moveTo(b, StateType.COMPLETED);
  assert.deepEqual(withoutCursors(await resumed.changes(1)), [[b, StateType.COMPLETED]]);
  second.abort();

  // From the marker instead: the change seen before the disconnection comes first.
  const third = new AbortController();
  const fromMarker = marker?.type === "marker" ? marker.cursor : "";
  const again = new Watcher(client.watchFlowRuns(filter, { cursor: fromMarker, signal: third.signal }));
  assert.deepEqual(withoutCursors(await again.changes(5)), [
    [a, StateType.RUNNING],
    ...meanwhile,
    [b, StateType.COMPLETED],
  ]);
  third.abort();
});

test("a cursor the server never gave is INVALID_ARGUMENT", async () => {
  const error = await (async () => {
    for await (const event of client.watchFlowRuns(undefined, { cursor: "not-a-cursor" })) return event;
  })().catch((thrown: unknown) => thrown);
  assert.ok(error instanceof FlowrpcError, String(error));
  assert.equal(error.code, Code.InvalidArgument);
  assert.deepEqual(
    error.violations.map((violation) => violation.field),
    ["since"],
  );
});
