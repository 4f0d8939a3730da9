// Errors as flowrpc sends them: a gRPC status code, and in grpc-status-details-bin a
// google.rpc.ErrorInfo (a stable UPPER_SNAKE reason, domain "flowrpc") and, for malformed
// input, a google.rpc.BadRequest listing the fields at fault.
import { Code, ConnectError, type Transport } from "@connectrpc/connect";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

/** One field of a request at fault, from google.rpc.BadRequest. */
export interface FieldViolation {
  /** Path of the field, as the server names it ("limit", "filter.flow_runs.id.any_of[0]"). */
  readonly field: string;
  /** What is wrong with it. */
  readonly description: string;
}

/**
 * Every failed call of a flowrpc client throws this. It is a ConnectError (code, metadata,
 * findDetails; its name stays "ConnectError" so that Connect's own `instanceof ConnectError`
 * and ConnectError.from keep it as it is), with the details flowrpc sends decoded.
 */
export class FlowrpcError extends ConnectError {
  /** ErrorInfo.reason, such as "FLOW_RUN_NOT_FOUND"; undefined when the server sent none. */
  readonly reason: string | undefined;
  /** ErrorInfo.domain: "flowrpc" for errors of the flowrpc server. */
  readonly domain: string | undefined;
  /** BadRequest's field violations (INVALID_ARGUMENT), in the server's order. */
  readonly violations: readonly FieldViolation[];

  constructor(error: ConnectError) {
    super(error.rawMessage, error.code, error.metadata, undefined, error.cause);
    this.details = error.details;
    const info = decodedDetail(error, "google.rpc.ErrorInfo", decodeErrorInfo);
    this.reason = info?.reason || undefined;
    this.domain = info?.domain || undefined;
    this.violations = decodedDetail(error, "google.rpc.BadRequest", decodeBadRequest) ?? [];
  }

  // ConnectError's instanceof accepts anything shaped like one; this one checks the class.
  static override [Symbol.hasInstance](value: unknown): boolean {
    return Function.prototype[Symbol.hasInstance].call(this, value);
  }

  /** The canonical gRPC name of the code: "NOT_FOUND", "INVALID_ARGUMENT", ... */
  get codeName(): string {
    return grpcCodeName(this.code);
  }
}

/** The canonical gRPC name of a Connect code (Code.NotFound -> "NOT_FOUND"). */
export function grpcCodeName(code: Code): string {
  return Code[code].replace(/(?<=[a-z])(?=[A-Z])/g, "_").toUpperCase();
}

/** Any thrown value as a FlowrpcError (an abort, a network failure, a bug: code UNKNOWN). */
export function toFlowrpcError(reason: unknown): FlowrpcError {
  return reason instanceof FlowrpcError ? reason : new FlowrpcError(ConnectError.from(reason));
}

/**
 * The transport, with every failure of its calls, unary or streamed, thrown as a FlowrpcError.
 * (Deadlines and cancellations fail outside the interceptors, so this wraps the transport.)
 */
export function withFlowrpcErrors(transport: Transport): Transport {
  return {
    unary: (...args) => transport.unary(...args).catch(rethrow),
    async stream(...args) {
      const response = await transport.stream(...args).catch(rethrow);
      return { ...response, message: rethrown(response.message) };
    },
  };
}

function rethrow(error: unknown): never {
  throw toFlowrpcError(error);
}

async function* rethrown<T>(messages: AsyncIterable<T>): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (error) {
    rethrow(error);
  }
}

function decodedDetail<T>(error: ConnectError, type: string, decode: (bytes: Uint8Array) => T): T | undefined {
  for (const detail of error.details) {
    if ("type" in detail && detail.type === type) {
      try {
        return decode(detail.value);
      } catch {
        return undefined; // a malformed detail leaves the error as the status says it
      }
    }
  }
  return undefined;
}

// google.rpc's error details are not flowrpc messages (nothing generates them here): the two
// the server sends are read straight off the wire, by their field numbers.
const utf8 = new TextDecoder();

/** The length-delimited fields of a message as (field number, bytes), in wire order. */
function lengthDelimited(bytes: Uint8Array): Array<[number, Uint8Array]> {
  const reader = new BinaryReader(bytes);
  const fields: Array<[number, Uint8Array]> = [];
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    if (wireType === WireType.LengthDelimited) fields.push([number, reader.bytes()]);
    else reader.skip(wireType, number);
  }
  return fields;
}

/** ErrorInfo: reason = 1, domain = 2. */
function decodeErrorInfo(bytes: Uint8Array): { reason: string; domain: string } {
  const info = { reason: "", domain: "" };
  for (const [number, value] of lengthDelimited(bytes)) {
    if (number === 1) info.reason = utf8.decode(value);
    if (number === 2) info.domain = utf8.decode(value);
  }
  return info;
}

/** BadRequest: field_violations = 1, each FieldViolation with field = 1, description = 2. */
function decodeBadRequest(bytes: Uint8Array): FieldViolation[] {
  return lengthDelimited(bytes)
    .filter(([number]) => number === 1)
    .map(([, violation]) => {
      let field = "";
      let description = "";
      for (const [number, value] of lengthDelimited(violation)) {
        if (number === 1) field = utf8.decode(value);
        if (number === 2) description = utf8.decode(value);
      }
      return { field, description };
    });
}
