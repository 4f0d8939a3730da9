// A real flowrpc server for the tests: `flowrpc server start` (FLOWRPC_BIN, default the
// repository's .venv/bin/flowrpc) on a free loopback port over a temporary FLOWRPC_HOME.
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const packageDir = resolve(fileURLToPath(import.meta.url), "../../..");
export const flowrpcBin = process.env.FLOWRPC_BIN ?? resolve(packageDir, "../../.venv/bin/flowrpc");

export interface ServerTls {
  cert: string;
  key: string;
  /** Require client certificates signed by this CA (mTLS). */
  clientCa?: string;
}

export class TestServer {
  readonly address: string;
  readonly home: string;
  readonly #process: ChildProcess;
  #log = "";

  private constructor(process: ChildProcess, address: string, home: string) {
    this.#process = process;
    this.address = address;
    this.home = home;
    process.stdout?.on("data", (chunk) => (this.#log += chunk));
    process.stderr?.on("data", (chunk) => (this.#log += chunk));
  }

  /** Starts a server and waits until its port accepts connections. */
  static async start(tls?: ServerTls): Promise<TestServer> {
    const home = mkdtempSync(join(tmpdir(), "flowrpc-ts-"));
    const port = await freePort();
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      FLOWRPC_HOME: home,
      FLOWRPC_PORT: String(port),
      FLOWRPC_DRAIN_SECONDS: "0",
      FLOWRPC_API_KEYS_REFRESH_SECONDS: "0.05",
    };
    for (const name of ["FLOWRPC_DATABASE_URL", "FLOWRPC_API_KEY", "FLOWRPC_TLS_CERT", "FLOWRPC_TLS_KEY"]) {
      delete env[name];
    }
    if (tls) {
      env.FLOWRPC_TLS_CERT = tls.cert;
      env.FLOWRPC_TLS_KEY = tls.key;
      if (tls.clientCa) env.FLOWRPC_TLS_CLIENT_CA = tls.clientCa;
    }
    const child = spawn(flowrpcBin, ["server", "start"], { env, stdio: ["ignore", "pipe", "pipe"] });
    const server = new TestServer(child, `127.0.0.1:${port}`, home);
    await server.#waitForPort(port);
    return server;
  }

  /** `flowrpc api-key create` on this server's database: a new key with the role. */
  createApiKey(name: string, role: "read" | "write" | "admin"): string {
    const env: NodeJS.ProcessEnv = { ...process.env, FLOWRPC_HOME: this.home };
    delete env.FLOWRPC_DATABASE_URL;
    const out = execFileSync(flowrpcBin, ["api-key", "create", "--name", name, "--role", role], {
      env,
      stdio: ["ignore", "pipe", "ignore"],
    });
    return out.toString().trim();
  }

  /** Stops the server (SIGTERM, then SIGKILL) and removes its home. */
  async stop(): Promise<void> {
    if (this.#process.exitCode === null && this.#process.signalCode === null) {
      const exited = new Promise((done) => this.#process.once("exit", done));
      this.#process.kill("SIGTERM");
      const timer = setTimeout(() => this.#process.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(this.home, { recursive: true, force: true });
  }

  async #waitForPort(port: number): Promise<void> {
    const deadline = Date.now() + 30_000;
    while (!(await accepts(port))) {
      if (this.#process.exitCode !== null) {
        throw new Error(`flowrpc server exited with ${this.#process.exitCode}:\n${this.#log}`);
      }
      if (Date.now() > deadline) throw new Error(`flowrpc server did not listen in 30 s:\n${this.#log}`);
      await new Promise((done) => setTimeout(done, 100));
    }
  }
}

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const probe = createServer();
    probe.once("error", fail);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => done(port));
    });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => (socket.destroy(), done(true)));
    socket.once("error", () => done(false));
  });
}
