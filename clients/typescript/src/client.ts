// The connection to a flowrpc server: one HTTP/2 session (plain gRPC, or TLS with optional
// client certificates), the API key on every call, a default deadline for unary calls, and the
// generated service clients with flowrpc's errors decoded.
import { readFileSync } from "node:fs";
import {
  createClient,
  type CallOptions,
  type Client,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { AssetService } from "./gen/flowrpc/v1/asset_service_pb.js";
import { DeploymentService } from "./gen/flowrpc/v1/deployment_service_pb.js";
import {
  FlowRunService,
  type BulkDeleteFlowRunsRequestSchema,
  type BulkSetFlowRunStateRequestSchema,
  type BulkSetFlowRunStateResult,
  type CreateFlowRunsView,
  type StreamFlowRunHistoryRequestSchema,
  type StreamFlowRunHistoryResponse,
} from "./gen/flowrpc/v1/flow_run_service_pb.js";
import type { FlowRun, FlowRunSort } from "./gen/flowrpc/v1/flow_run_pb.js";
import type { FlowRunFilterSetSchema } from "./gen/flowrpc/v1/filter_pb.js";
import { FlowService } from "./gen/flowrpc/v1/flow_service_pb.js";
import { LogService } from "./gen/flowrpc/v1/log_service_pb.js";
import { TaskRunService } from "./gen/flowrpc/v1/task_run_service_pb.js";
import { WorkPoolService } from "./gen/flowrpc/v1/work_pool_service_pb.js";
import {
  createMessages,
  createResult,
  type FlowRunCreateResult,
  type FlowRunCreateSummaryResult,
  type FlowRunSpec,
} from "./bulk.js";
import { withFlowrpcErrors } from "./errors.js";
import { collect, flatten, pages } from "./streams.js";
import { watchEvents, type FlowRunWatchEvent } from "./watch.js";

export const DEFAULT_API_URL = "127.0.0.1:4250";
/** The deadline of a unary call unless the call or the client says otherwise (streams: none). */
export const DEFAULT_TIMEOUT_MS = 30_000;

/** PEM contents (not paths) for a TLS connection. */
export interface TlsOptions {
  /** CA certificates that signed the server's certificate; default: Node's bundled CAs. */
  ca?: string | Buffer;
  /** This client's certificate chain, for servers that require client certificates (mTLS). */
  cert?: string | Buffer;
  /** The private key of `cert`. */
  key?: string | Buffer;
  /** The name to check the server's certificate against, when not the host of apiUrl. */
  serverName?: string;
}

export interface ClientOptions {
  /**
   * "host:port", "http://host:port" or "https://host:port"; default FLOWRPC_API_URL, else
   * 127.0.0.1:4250. https:// or any `tls` option makes the connection TLS.
   */
  apiUrl?: string;
  /** Sent as `authorization: Bearer <key>`; default FLOWRPC_API_KEY. */
  apiKey?: string;
  /**
   * TLS settings; default: the PEM files named by FLOWRPC_API_TLS_CA, FLOWRPC_API_TLS_CERT and
   * FLOWRPC_API_TLS_KEY, if any. `true`: TLS with Node's bundled CAs.
   */
  tls?: TlsOptions | boolean;
  /** Deadline of each unary call in milliseconds (a call's own timeoutMs wins); 0: none. */
  timeoutMs?: number;
  /** More Connect interceptors, run after the one that sends the API key. */
  interceptors?: Interceptor[];
}

/** Which runs iterateFlowRuns walks, and in what order. */
export interface FlowRunQuery {
  /** A FlowRunFilterSet (see flowRunFilter() for a builder); unset: every run. */
  filter?: MessageInitShape<typeof FlowRunFilterSetSchema>;
  /** Default: newest first (FLOW_RUN_SORT_ID_DESC). */
  sort?: FlowRunSort;
  /** Runs fetched per call, 1 to 200; default 200. */
  pageSize?: number;
}

/** Where a watch starts, and Connect's call options (`signal` ends it). */
/** The views in which createFlowRuns answers with whole runs. */
type FullView = CreateFlowRunsView.UNSPECIFIED | CreateFlowRunsView.FULL;

/** Options of createFlowRuns: the call's, and how much of each run the results carry. */
export interface CreateFlowRunsOptions<View extends CreateFlowRunsView = CreateFlowRunsView> extends CallOptions {
  /** FULL (the default): each run whole (`flowRun`); BASIC: its id, name and state (`summary`). */
  view?: View;
}

export interface WatchOptions extends CallOptions {
  /** An event's cursor from an earlier watch: continue right after it (no snapshot). */
  cursor?: string;
  /** Start with the runs the filter selects now (default true; never with a cursor). */
  snapshot?: boolean;
}

/**
 * A flowrpc client. The generated service clients are its fields (`flowRuns.createFlowRun({...})`:
 * messages are plain objects of the generated types); its methods add what the generated code
 * cannot: runs across pages, and the batched server streams as one item per run. Every call
 * throws FlowrpcError. close() ends the connection.
 */
export class FlowrpcClient {
  readonly flows: Client<typeof FlowService>;
  readonly flowRuns: Client<typeof FlowRunService>;
  readonly deployments: Client<typeof DeploymentService>;
  readonly workPools: Client<typeof WorkPoolService>;
  readonly taskRuns: Client<typeof TaskRunService>;
  readonly logs: Client<typeof LogService>;
  readonly assets: Client<typeof AssetService>;
  readonly #session: Http2SessionManager;

  constructor(options: ClientOptions = {}) {
    const { baseUrl, tls } = target(options);
    this.#session = new Http2SessionManager(baseUrl, {}, tls);
    const apiKey = options.apiKey ?? process.env.FLOWRPC_API_KEY;
    const interceptors = [...(apiKey ? [bearer(apiKey)] : []), ...(options.interceptors ?? [])];
    const grpc = createGrpcTransport({ baseUrl, sessionManager: this.#session, interceptors });
    const transport = withFlowrpcErrors(withUnaryDeadline(grpc, options.timeoutMs ?? DEFAULT_TIMEOUT_MS));
    this.flows = createClient(FlowService, transport);
    this.flowRuns = createClient(FlowRunService, transport);
    this.deployments = createClient(DeploymentService, transport);
    this.workPools = createClient(WorkPoolService, transport);
    this.taskRuns = createClient(TaskRunService, transport);
    this.logs = createClient(LogService, transport);
    this.assets = createClient(AssetService, transport);
  }

  /** Every run the request's filter selects, in its sort order, fetching page after page. */
  iterateFlowRuns(query: FlowRunQuery = {}, options?: CallOptions): AsyncIterable<FlowRun> {
    const { filter, sort, pageSize: limit } = query;
    return pages(async (pageToken) => {
      const page = await this.flowRuns.listFlowRuns({ filter, sort, limit, pageToken }, options);
      return { items: page.flowRuns, nextPageToken: page.nextPageToken };
    });
  }

  /** The history's intervals, oldest first, as the server streams them. */
  flowRunHistory(
    request: MessageInitShape<typeof StreamFlowRunHistoryRequestSchema>,
    options?: CallOptions,
  ): AsyncIterable<StreamFlowRunHistoryResponse> {
    return this.flowRuns.streamFlowRunHistory(request, options);
  }

  /** The outcome for each run of a bulk state change, one run at a time. */
  bulkSetFlowRunState(
    request: MessageInitShape<typeof BulkSetFlowRunStateRequestSchema>,
    options?: CallOptions,
  ): AsyncIterable<BulkSetFlowRunStateResult> {
    return flatten(this.flowRuns.bulkSetFlowRunState(request, options), (batch) => batch.results);
  }

  /** The id of each run a bulk delete removed, one run at a time. */
  bulkDeleteFlowRuns(
    request: MessageInitShape<typeof BulkDeleteFlowRunsRequestSchema>,
    options?: CallOptions,
  ): AsyncIterable<string> {
    return flatten(this.flowRuns.bulkDeleteFlowRuns(request, options), (batch) => batch.deletedFlowRunIds);
  }

  /**
   * Creates many runs in one call, each as its single create would (CreateFlowRun for a spec
   * with `flowId`, CreateFlowRunFromDeployment for one with `deploymentId` alone): its initial
   * state orchestrated the same way, a used idempotency key giving the existing run back
   * (`created` false). Yields one result per run, in the order of `runs`, as the server answers
   * them: a run that fails is a result with `error` (its code, reason, message and field
   * violations), never thrown, and the others are created. The runs are sent in messages of at
   * most 1,000 (read from `runs` as the stream takes them, so an async iterable of any length
   * works); a failure of the call itself (unreachable, UNAUTHENTICATED, aborted) throws a
   * FlowrpcError, after the results of the messages answered before it (those runs exist; runs
   * of messages not answered may or may not). An error thrown by `runs` ends the call the same
   * way, as the FlowrpcError's `cause`.
   *
   * `view: CreateFlowRunsView.BASIC` answers each run with `summary` (its id, name and state)
   * instead of the whole `flowRun`: several times cheaper for the server and the client in a
   * large call; getFlowRun reads a whole run.
   */
  createFlowRuns(
    runs: Iterable<FlowRunSpec> | AsyncIterable<FlowRunSpec>,
    options?: CreateFlowRunsOptions<FullView>,
  ): AsyncIterable<FlowRunCreateResult>;
  createFlowRuns(
    runs: Iterable<FlowRunSpec> | AsyncIterable<FlowRunSpec>,
    options: CreateFlowRunsOptions<CreateFlowRunsView.BASIC>,
  ): AsyncIterable<FlowRunCreateSummaryResult>;
  createFlowRuns(
    runs: Iterable<FlowRunSpec> | AsyncIterable<FlowRunSpec>,
    options?: CreateFlowRunsOptions,
  ): AsyncIterable<FlowRunCreateResult | FlowRunCreateSummaryResult> {
    const { view, ...callOptions } = options ?? {};
    const responses = this.flowRuns.createFlowRuns(createMessages(runs, view), callOptions);
    return flatten(responses, (message) => message.results.map(createResult));
  }

  /** createFlowRuns, its results collected into an array (in the order of `runs`). */
  createFlowRunsAll(
    runs: Iterable<FlowRunSpec> | AsyncIterable<FlowRunSpec>,
    options?: CreateFlowRunsOptions<FullView>,
  ): Promise<FlowRunCreateResult[]>;
  createFlowRunsAll(
    runs: Iterable<FlowRunSpec> | AsyncIterable<FlowRunSpec>,
    options: CreateFlowRunsOptions<CreateFlowRunsView.BASIC>,
  ): Promise<FlowRunCreateSummaryResult[]>;
  createFlowRunsAll(
    runs: Iterable<FlowRunSpec> | AsyncIterable<FlowRunSpec>,
    options?: CreateFlowRunsOptions,
  ): Promise<(FlowRunCreateResult | FlowRunCreateSummaryResult)[]> {
    return collect(this.createFlowRuns(runs, options as CreateFlowRunsOptions<FullView>));
  }

  /**
   * A live stream of the runs `filter` selects (every run when unset): their snapshot, a
   * marker, then every state change of a selected run as it is committed, until `signal`
   * aborts (the iteration then ends without an error) or the loop breaks. `cursor` (a marker's,
   * change's or progress event's) resumes after that event: the changes committed meanwhile
   * follow, none missed, none twice. A cursor older than the server's retention throws a
   * FlowrpcError with reason WATCH_CURSOR_EXPIRED: watch again without one. No deadline unless
   * `timeoutMs` is given.
   */
  async *watchFlowRuns(
    filter?: MessageInitShape<typeof FlowRunFilterSetSchema>,
    options: WatchOptions = {},
  ): AsyncIterable<FlowRunWatchEvent> {
    const { cursor = "", snapshot = true, ...callOptions } = options;
    const request = { filter, since: cursor, skipSnapshot: !snapshot };
    try {
      for await (const message of this.flowRuns.watchFlowRuns(request, callOptions)) yield* watchEvents(message);
    } catch (error) {
      if (!callOptions.signal?.aborted) throw error; // an abort is how a watch is meant to end
    }
  }

  /** Closes the connection; calls in flight fail with CANCELED. */
  close(): void {
    this.#session.abort();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** A client for the server at options.apiUrl (see ClientOptions for the defaults). */
export function createFlowrpcClient(options: ClientOptions = {}): FlowrpcClient {
  return new FlowrpcClient(options);
}

function target(options: ClientOptions): { baseUrl: string; tls?: TlsOptions & { servername?: string } } {
  const url = options.apiUrl ?? process.env.FLOWRPC_API_URL ?? DEFAULT_API_URL;
  const tls = options.tls ?? tlsFromEnvironment();
  const scheme = url.match(/^(https?):\/\//)?.[1];
  if (scheme === "http" && tls) throw new Error("apiUrl says http:// but TLS options are given");
  const secure = scheme === "https" || Boolean(tls);
  const baseUrl = scheme ? url : `${secure ? "https" : "http"}://${url}`;
  if (!secure) return { baseUrl };
  const given = tls === true || !tls ? {} : tls;
  if (Boolean(given.cert) !== Boolean(given.key)) {
    throw new Error("tls.cert and tls.key go together: a client certificate and its key");
  }
  const { serverName, ...pems } = given;
  return { baseUrl, tls: serverName ? { ...pems, servername: serverName } : pems };
}

function tlsFromEnvironment(): TlsOptions | undefined {
  const read = (name: string) => (process.env[name] ? readFileSync(process.env[name]!) : undefined);
  const tls = { ca: read("FLOWRPC_API_TLS_CA"), cert: read("FLOWRPC_API_TLS_CERT"), key: read("FLOWRPC_API_TLS_KEY") };
  return tls.ca || tls.cert || tls.key ? tls : undefined;
}

function bearer(apiKey: string): Interceptor {
  return (next) => (request) => {
    request.header.set("authorization", `Bearer ${apiKey}`);
    return next(request);
  };
}

/** The transport, with `timeoutMs` for every unary call that sets none. */
function withUnaryDeadline(transport: Transport, timeoutMs: number): Transport {
  if (timeoutMs <= 0) return transport;
  return {
    unary: (method, signal, callTimeoutMs, ...rest) =>
      transport.unary(method, signal, callTimeoutMs ?? timeoutMs, ...rest),
    stream: (...args) => transport.stream(...args),
  };
}
