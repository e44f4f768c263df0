/**
 * Errors of the client. Every non-OK status from the server is an
 * {@link RPCError} with the google.rpc.Status details parsed.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";

export { Code };

/** One wrong request field, from the server's BadRequest detail. */
export interface FieldViolation {
  /** Path of the field, such as `config.chunk_ms`. */
  field: string;
  /** What is wrong with it. */
  description: string;
}

const CODE_NAMES: Record<number, string> = {
  0: "OK",
  1: "CANCELLED",
  2: "UNKNOWN",
  3: "INVALID_ARGUMENT",
  4: "DEADLINE_EXCEEDED",
  5: "NOT_FOUND",
  6: "ALREADY_EXISTS",
  7: "PERMISSION_DENIED",
  8: "RESOURCE_EXHAUSTED",
  9: "FAILED_PRECONDITION",
  10: "ABORTED",
  11: "OUT_OF_RANGE",
  12: "UNIMPLEMENTED",
  13: "INTERNAL",
  14: "UNAVAILABLE",
  15: "DATA_LOSS",
  16: "UNAUTHENTICATED",
};

/** The canonical gRPC name of a status code, such as `NOT_FOUND`. */
export function codeName(code: Code): string {
  return CODE_NAMES[code] ?? `CODE_${code}`;
}

/** The server refused or ended an RPC. */
export class RPCError extends Error {
  /** The gRPC status code (Connect's `Code` uses the same numbers). */
  readonly code: Code;
  /** The canonical name of the code, such as `NOT_FOUND`. */
  readonly codeName: string;
  /** The server's message. */
  readonly rawMessage: string;
  /** `ErrorInfo.reason`, a stable identifier such as `CALL_NOT_FOUND`. */
  readonly reason: string;
  /** `ErrorInfo.domain`. */
  readonly domain: string;
  /** `ErrorInfo.metadata`. */
  readonly metadata: Record<string, string>;
  /** `BadRequest.field_violations` (for INVALID_ARGUMENT). */
  readonly fieldViolations: FieldViolation[];

  constructor(
    code: Code,
    message: string,
    details: { reason?: string; domain?: string; metadata?: Record<string, string>; fieldViolations?: FieldViolation[] } = {},
    options?: { cause?: unknown },
  ) {
    const reason = details.reason ?? "";
    super(`${codeName(code)}: ${message}${reason ? ` (${reason})` : ""}`, options);
    this.name = "RPCError";
    this.code = code;
    this.codeName = codeName(code);
    this.rawMessage = message;
    this.reason = reason;
    this.domain = details.domain ?? "";
    this.metadata = details.metadata ?? {};
    this.fieldViolations = details.fieldViolations ?? [];
  }

  /** The first field violation's field path, or "" if there is none. */
  get field(): string {
    return this.fieldViolations[0]?.field ?? "";
  }

  /** Converts any error thrown by a call into an RPCError, keeping the status details. */
  static from(err: unknown): RPCError {
    if (err instanceof RPCError) {
      return err;
    }
    const ce = ConnectError.from(err);
    const info = ce.findDetails(ErrorInfoSchema)[0];
    const fieldViolations = ce
      .findDetails(BadRequestSchema)
      .flatMap((b) => b.fieldViolations.map((v) => ({ field: v.field, description: v.description })));
    return new RPCError(
      ce.code,
      ce.rawMessage,
      { reason: info?.reason, domain: info?.domain, metadata: info ? { ...info.metadata } : undefined, fieldViolations },
      { cause: err },
    );
  }
}

/** Reasons of a {@link ConfigError}. */
export type ConfigErrorReason = "MISSING_TARGET" | "BOTH_TARGETS";

/**
 * A stream config the client refuses before sending anything (`listen` and
 * `stream` reject with it). The reasons are the server's names for the same
 * mistake, and the Go and Python SDKs refuse the same configs with the same
 * reasons (their `ConfigError`): `MISSING_TARGET` (neither `callId` nor
 * `conferenceId`) and `BOTH_TARGETS` (both; the wire cannot carry it, the
 * target being a oneof).
 */
export class ConfigError extends Error {
  /** A stable identifier: `MISSING_TARGET` or `BOTH_TARGETS`. */
  readonly reason: ConfigErrorReason;
  /** The path of the wrong field, such as `config.target`. */
  readonly field: string;

  constructor(reason: ConfigErrorReason, field: string, message: string) {
    super(`mediastream: invalid config: ${message} (${reason})`);
    this.name = "ConfigError";
    this.reason = reason;
    this.field = field;
  }
}
