// API keys and TLS through the TypeScript client: UNAUTHENTICATED without a known key,
// PERMISSION_DENIED when the key's role falls short, TLS verified against a CA, mTLS.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { Code, FlowrpcError, createFlowrpcClient, flowRunFilter, type ClientOptions, type FlowrpcClient } from "../src/index.js";
import { Authority } from "./certificates.js";
import { TestServer } from "./harness.js";

/** Runs `body` with a client, closing it afterwards. */
async function withClient<T>(options: ClientOptions, body: (client: FlowrpcClient) => Promise<T>): Promise<T> {
  const client = createFlowrpcClient(options);
  try {
    return await body(client);
  } finally {
    client.close();
  }
}

async function failure(call: () => Promise<unknown>): Promise<FlowrpcError> {
  try {
    await call();
  } catch (error) {
    assert.ok(error instanceof FlowrpcError, `not a FlowrpcError: ${error}`);
    return error;
  }
  assert.fail("the call succeeded");
}

describe("API keys", () => {
  let server: TestServer;
  const keys: Record<string, string> = {};

  before(async () => {
    server = await TestServer.start();
    for (const role of ["read", "write", "admin"] as const) keys[role] = server.createApiKey(`ts-${role}`, role);
    await new Promise((done) => setTimeout(done, 200)); // keys count within 0.05 s here
  });

  after(async () => {
    await server?.stop();
  });

  test("no key or an unknown key: UNAUTHENTICATED", async () => {
    for (const apiKey of [undefined, "frpc_not-a-key"]) {
      const error = await withClient({ apiUrl: server.address, apiKey }, (client) =>
        failure(() => client.flowRuns.countFlowRuns({})),
      );
      assert.equal(error.code, Code.Unauthenticated);
      assert.equal(error.reason, "UNAUTHENTICATED");
      assert.match(error.rawMessage, /authorization: Bearer <key>/);
    }
  });

  test("each role may do what it covers and no more: PERMISSION_DENIED", async () => {
    const flowId = await withClient({ apiUrl: server.address, apiKey: keys.write }, async (client) => {
      return (await client.flows.createFlow({ name: "keyed" })).flow!.id;
    });
    await withClient({ apiUrl: server.address, apiKey: keys.read }, async (client) => {
      assert.equal((await client.flowRuns.countFlowRuns({})).count, 0n);
      const error = await failure(() => client.flowRuns.createFlowRun({ flowId }));
      assert.equal(error.code, Code.PermissionDenied);
      assert.equal(error.reason, "PERMISSION_DENIED");
      assert.equal(
        error.rawMessage,
        "CreateFlowRun needs an API key with role write or higher; the key 'ts-read' has role read.",
      );
    });
    const runId = await withClient({ apiUrl: server.address, apiKey: keys.write }, async (client) => {
      const id = (await client.flowRuns.createFlowRun({ flowId })).flowRun!.id;
      const error = await failure(async () => {
        for await (const _ of client.bulkDeleteFlowRuns({ filter: flowRunFilter().ids(id).build() })) break;
      });
      assert.equal(error.code, Code.PermissionDenied);
      return id;
    });
    await withClient({ apiUrl: server.address, apiKey: keys.admin }, async (client) => {
      await client.flowRuns.deleteFlowRun({ id: runId });
      assert.equal((await failure(() => client.flowRuns.getFlowRun({ id: runId }))).reason, "FLOW_RUN_NOT_FOUND");
    });
  });

  test("FLOWRPC_API_KEY is the default key", async () => {
    process.env.FLOWRPC_API_KEY = keys.read;
    try {
      await withClient({ apiUrl: server.address }, async (client) => {
        assert.equal((await client.flowRuns.countFlowRuns({})).count, 0n);
      });
    } finally {
      delete process.env.FLOWRPC_API_KEY;
    }
  });
});

// A connection the server drops (TLS refused) ends the call as CANCELED or UNAVAILABLE,
// depending on when the HTTP/2 session notices.
const DROPPED = [Code.Canceled, Code.Unavailable];

describe("TLS", () => {
  let ca: Authority;
  let server: TestServer;
  let mutual: TestServer;
  let client: { cert: string; key: string };

  before(async () => {
    ca = new Authority();
    const pair = ca.issue("server", true);
    client = ca.issue("client", false);
    server = await TestServer.start({ cert: pair.cert, key: pair.key });
    mutual = await TestServer.start({ cert: pair.cert, key: pair.key, clientCa: ca.cert });
  });

  after(async () => {
    await server?.stop();
    await mutual?.stop();
    ca?.remove();
  });

  test("a client trusting the CA talks TLS; one that does not, or speaks plaintext, cannot", async () => {
    await withClient({ apiUrl: server.address, tls: { ca: ca.pem() } }, async (c) => {
      assert.equal((await c.flowRuns.countFlowRuns({})).count, 0n);
    });
    await withClient({ apiUrl: `https://localhost:${server.address.split(":")[1]}`, tls: { ca: ca.pem() } }, async (c) => {
      assert.equal((await c.flowRuns.countFlowRuns({})).count, 0n);
    });
    const untrusted = await withClient({ apiUrl: `https://${server.address}` }, (c) =>
      failure(() => c.flowRuns.countFlowRuns({})),
    );
    // Connect reports a certificate it cannot verify as INTERNAL, with Node's reason.
    assert.equal(untrusted.code, Code.Internal);
    assert.match(untrusted.rawMessage, /unable to verify the first certificate/);
    const plaintext = await withClient({ apiUrl: server.address }, (c) => failure(() => c.flowRuns.countFlowRuns({})));
    assert.ok(DROPPED.includes(plaintext.code), plaintext.message);
  });

  test("FLOWRPC_API_TLS_CA names the CA file", async () => {
    process.env.FLOWRPC_API_TLS_CA = ca.cert;
    try {
      await withClient({ apiUrl: server.address }, async (c) => {
        assert.equal((await c.flowRuns.countFlowRuns({})).count, 0n);
      });
    } finally {
      delete process.env.FLOWRPC_API_TLS_CA;
    }
  });

  test("mTLS: the server lets in only clients with a certificate its CA signed", async () => {
    const tls = { ca: ca.pem(), cert: readFileSync(client.cert), key: readFileSync(client.key) };
    await withClient({ apiUrl: mutual.address, tls }, async (c) => {
      assert.equal((await c.flowRuns.countFlowRuns({})).count, 0n);
    });
    const anonymous = await withClient({ apiUrl: mutual.address, tls: { ca: ca.pem() } }, (c) =>
      failure(() => c.flowRuns.countFlowRuns({})),
    );
    assert.ok(DROPPED.includes(anonymous.code), anonymous.message);
  });

  test("a certificate without its key is refused before any call", () => {
    assert.throws(
      () => createFlowrpcClient({ apiUrl: server.address, tls: { cert: readFileSync(client.cert) } }),
      /tls.cert and tls.key go together/,
    );
  });
});
