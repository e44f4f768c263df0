/**
 * Node client for the mediastream gateway, over gRPC (HTTP/2).
 *
 * Behind a load balancer, a resumable stream lives on one gateway instance,
 * which the server names in {@link StreamInfo.instanceAddress}; see
 * {@link MediaStreamClient} for how resumes reach it.
 *
 * @example
 * const client = new MediaStreamClient("127.0.0.1:50051");
 * const stream = await client.listen({ callId, format: AudioFormat.SLIN });
 * for await (const ev of stream) {
 *   if (ev.kind === "audio") handle(ev.data);
 * }
 * {
 *   await using talk = await client.stream({ callId, format: AudioFormat.SLIN });
 *   await talk.send(frame);
 *   talk.closeSend();
 * } // leaving the block after closeSend() waited until `frame` was played
 * client.close();
 *
 * Which call waits for what: `send` resolves when the transport has taken the
 * chunk, not when it has played (a `mark` event reports that). `closeSend`
 * only ends the input; the server then plays what it has and sends `stopped`
 * (CLIENT_DONE). `await close()` (what `await using` does when the block is
 * left) after `closeSend` waits for that `stopped`, at most the audio still to
 * play plus `closeGraceMs` (default 10 s), reading the events itself when
 * nothing iterates the stream; without `closeSend` it cancels the stream at
 * once, as `cancel()` always does. `waitStopped()` waits for the end alone.
 */
import { clone, create, type MessageInitShape } from "@bufbuild/protobuf";
import { createClient, type CallOptions, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import {
  MediaStreamService,
  ResumeRequestSchema,
  StreamConfigSchema,
  StreamMediaRequestSchema,
  type ListenMediaResponse,
  type StreamConfig as PbStreamConfig,
  type StreamMediaRequest,
  type StreamMediaResponse,
  type StreamStarted,
} from "./gen/voipbin/mediastream/v1/mediastream_pb.js";
import * as wire from "./gen/voipbin/mediastream/v1/mediastream_pb.js";
import { fromWire, toWire } from "./enums.js";
import { Code, ConfigError, RPCError } from "./errors.js";
import { ExternalMediaClient } from "./external.js";
import { RequestQueue } from "./queue.js";
import {
  AudioFormat,
  Encapsulation,
  FlowState,
  type Resume,
  type Stopped,
  type StreamConfig,
  type StreamEvent,
  type StreamInfo,
} from "./types.js";

/** Options of {@link MediaStreamClient}. */
export interface ClientOptions {
  /** Sent as `authorization: Bearer <token>` with every call (an API key or a JWT). */
  token?: string;
  /** `http://` (default) or `https://`. */
  scheme?: "http" | "https";
  /** More interceptors for every call. */
  interceptors?: Interceptor[];
  /** Use this transport instead of making one (the client does not close it). */
  transport?: Transport;
  /**
   * With `transport`: makes the transport to one gateway instance, `host:port`
   * (a resume's `instanceAddress`, behind a load balancer). Without it, a client
   * given `transport` sends every stream there. The client does not close these.
   */
  instanceTransport?: (address: string) => Transport;
  /**
   * Gateway instances (`host:port`) a `RESUME_WRONG_INSTANCE` refusal may send a
   * resume to. The instance a resume names (`resume.instanceAddress`, which
   * `resumeFrom()` copies from the server's `StreamInfo`) is tried first anyway; a
   * refusal naming any other address is thrown, not followed: a forged resume
   * token can make a server name any address, and the client would send its
   * credentials there.
   */
  allowedInstances?: Iterable<string>;
  /**
   * How many times a stream refused before it started (see
   * {@link refusedBeforeStart}) is opened again, after a pause that doubles
   * from 50 ms: a draining instance closes its listener and sends GOAWAY, so the
   * next attempt goes out on a new connection, which a proxy or a Kubernetes
   * Service sends to another instance. Default {@link DEFAULT_OPEN_RETRIES}; 0: never.
   */
  openRetries?: number;
}

/** Default of {@link ClientOptions.openRetries}. */
export const DEFAULT_OPEN_RETRIES = 3;

/** The first pause before opening a refused stream again, in milliseconds; it doubles. */
const OPEN_RETRY_BACKOFF_MS = 50;

/** ErrorInfo reason of a resume that reached an instance other than the stream's. */
const WRONG_INSTANCE = "RESUME_WRONG_INSTANCE";

/** ErrorInfo reason with which a draining instance refuses a new stream. */
const DRAINING = "DRAINING";

/**
 * Whether an error opening a stream means it never started, so that opening it
 * again is safe: UNAVAILABLE with the reason `DRAINING` (a draining instance
 * took it on a connection it is closing) or with no reason at all (nothing
 * answered: connection refused or reset, a proxy with no server to send it
 * to). An UNAVAILABLE the gateway gave a reason for (`ASTERISK_UNAVAILABLE`)
 * is an answer, not a refusal.
 */
export function refusedBeforeStart(err: unknown): boolean {
  return err instanceof RPCError && err.code === Code.Unavailable && (err.reason === "" || err.reason === DRAINING);
}

/** Options of one stream. */
export interface StreamOptions {
  /**
   * Aborting it cancels the stream, as `fetch` does a request: opening the
   * stream, iterating it, `waitStopped()` and the sending methods then reject
   * with a `DOMException` named `AbortError` (the signal's reason itself when
   * that is an `AbortError`, else with the reason as `cause`), where `cancel()`
   * gives an {@link RPCError} `CANCELLED`.
   */
  signal?: AbortSignal;
  /** Deadline for the whole stream, in milliseconds. */
  timeoutMs?: number;
  /**
   * Two-way streams: how long `close()` after `closeSend()` waits for `stopped`
   * beyond the estimate of the audio still to play, in milliseconds
   * (default {@link DEFAULT_CLOSE_GRACE_MS}).
   */
  closeGraceMs?: number;
}

/** Default of {@link StreamOptions.closeGraceMs}: 10 s. */
export const DEFAULT_CLOSE_GRACE_MS = 10_000;

type MediaRPC = Client<typeof MediaStreamService>;

/** One ControlStream call to the instance holding a stream. */
type ControlCall = (req: MessageInitShape<typeof wire.ControlStreamRequestSchema>) => Promise<wire.ControlStreamResponse>;

/** How long a `clear` or `hangup` (one ControlStream call) may take at most. */
const CONTROL_TIMEOUT_MS = 10_000;

/** A connection to one gateway instance, dialled for resumes. */
interface Instance {
  rpc: MediaRPC;
  sessions: Http2SessionManager | undefined;
}

/**
 * A connection to the gateway.
 *
 * Behind a load balancer, a resumable stream lives on one gateway instance,
 * which the server names in {@link StreamInfo.instanceAddress}. A stream opened
 * with a `resume` goes to `resume.instanceAddress` when it is set and differs
 * from the client's own target: the client connects to that instance with the
 * same options (scheme, token, interceptors) and keeps the connection for later
 * resumes until {@link MediaStreamClient.close}. When a resume reaches the wrong
 * instance anyway (NOT_FOUND, `RESUME_WRONG_INSTANCE`, with the holder's
 * `instance_address` in the metadata), the client tries once more at the
 * instance the server names, if `allowedInstances` holds it. Other streams and `externalMedia` always use the
 * client's own target.
 */
export class MediaStreamClient {
  private readonly rpc: MediaRPC;
  private readonly sessions: Http2SessionManager | undefined;
  private readonly target: string;
  private readonly dialInstance: ((address: string) => Instance) | undefined;
  private readonly instances = new Map<string, Instance>();
  private readonly allowed: ReadonlySet<string>;
  private closed = false;
  private readonly openRetries: number;
  /** The ExternalMediaService on the same connection. */
  readonly externalMedia: ExternalMediaClient;

  /**
   * @param target `host:port` of the gateway's gRPC endpoint (or of the load
   *   balancer in front of several gateway instances).
   */
  constructor(target: string, options: ClientOptions = {}) {
    this.target = target;
    this.allowed = new Set(options.allowedInstances ?? []);
    this.openRetries = Math.max(0, options.openRetries ?? DEFAULT_OPEN_RETRIES);
    let transport = options.transport;
    if (!transport) {
      const scheme = options.scheme ?? "http";
      const interceptors = [...(options.interceptors ?? [])];
      const token = options.token;
      if (token) {
        interceptors.unshift((next) => (req) => {
          req.header.set("authorization", `Bearer ${token}`);
          return next(req);
        });
      }
      const dial = (
        address: string,
        servername?: string,
      ): { transport: Transport; sessions: Http2SessionManager } => {
        const baseUrl = `${scheme}://${address}`;
        const sessions = new Http2SessionManager(baseUrl, undefined, servername ? { servername } : undefined);
        return { transport: createGrpcTransport({ baseUrl, sessionManager: sessions, interceptors }), sessions };
      };
      const own = dial(target);
      transport = own.transport;
      this.sessions = own.sessions;
      // Instances are dialled by address; over TLS the certificate names the
      // service the client dialled, so verify it against that name.
      const servername = scheme === "https" ? hostOf(target) : undefined;
      this.dialInstance = (address) => {
        const made = dial(address, servername);
        return { rpc: createClient(MediaStreamService, made.transport), sessions: made.sessions };
      };
    } else if (options.instanceTransport) {
      const make = options.instanceTransport;
      this.dialInstance = (address) => ({ rpc: createClient(MediaStreamService, make(address)), sessions: undefined });
    }
    this.rpc = createClient(MediaStreamService, transport);
    this.externalMedia = new ExternalMediaClient(transport);
  }

  /**
   * Closes the connection (if this client made it) and those it made to single
   * gateway instances for resumes; open streams fail.
   */
  close(): void {
    this.closed = true;
    for (const instance of this.instances.values()) {
      instance.sessions?.abort();
    }
    this.instances.clear();
    this.sessions?.abort();
  }

  /**
   * Opens a listen-only stream and waits until the server confirms it. With
   * `config.resume`, the stream is opened on the instance that holds it (see
   * {@link MediaStreamClient}).
   */
  async listen(config: StreamConfig, options: StreamOptions = {}): Promise<ListenStream> {
    const pb = toProto(config);
    const openAt = (resume: Resume | undefined, signal?: AbortSignal): Promise<ListenStream> =>
      this.open(resume, async (rpc) => {
        const call = callOptions(signal ? { ...options, signal } : options, config);
        const responses = rpc.listenMedia({ config: withResume(pb, resume) }, call.options);
        const stream = new ListenStream(responses[Symbol.asyncIterator](), call.abort, options.signal);
        await stream.start();
        return stream;
      });
    const stream = await abortable(options.signal, () => openAt(config.resume));
    if (config.autoResume) {
      // A resumed call is cancelled with the stream the caller holds.
      stream.reopen = (resume) => openAt(resume, stream.cancelSignal);
    }
    return stream;
  }

  /**
   * Opens a two-way stream and waits until the server confirms it. With
   * `config.resume`, the stream is opened on the instance that holds it (see
   * {@link MediaStreamClient}).
   */
  async stream(config: StreamConfig, options: StreamOptions = {}): Promise<DuplexStream> {
    const pb = toProto(config);
    const openAt = (resume: Resume | undefined, signal?: AbortSignal): Promise<DuplexStream> =>
      this.open(resume, async (rpc) => {
        const call = callOptions(signal ? { ...options, signal } : options, config);
        const requests = new RequestQueue<StreamMediaRequest>();
        // A failure is reported by start().
        requests.push(request({ case: "config", value: withResume(pb, resume) })).catch(() => {});
        const responses = rpc.streamMedia(requests, call.options);
        // Clear and hangup go beside the stream, to the same instance with the same
        // headers (credentials come from the transport's interceptors).
        const control: ControlCall = (req) =>
          rpc.controlStream(req, {
            headers: call.options.headers,
            signal: call.abort.signal,
            timeoutMs: CONTROL_TIMEOUT_MS,
          });
        const stream = new DuplexStream(
          responses[Symbol.asyncIterator](),
          requests,
          call.abort,
          options.closeGraceMs ?? DEFAULT_CLOSE_GRACE_MS,
          options.signal,
          control,
        );
        await stream.start();
        return stream;
      });
    const stream = await abortable(options.signal, () => openAt(config.resume));
    if (config.autoResume) {
      stream.reopen = (resume) => openAt(resume, stream.cancelSignal);
    }
    return stream;
  }

  /**
   * Runs `open` where a stream belongs: the client's own target for a new
   * stream; for a resume, `resume.instanceAddress`, and once more at the
   * instance a `RESUME_WRONG_INSTANCE` refusal names, if it is allowed.
   */
  private async open<T>(resume: Resume | undefined, open: (rpc: MediaRPC) => Promise<T>): Promise<T> {
    if (!resume) {
      return this.retrying(() => open(this.rpc));
    }
    const tried = resume.instanceAddress ?? "";
    try {
      const rpc = this.rpcAt(tried);
      if (rpc === this.rpc) {
        return await this.retrying(() => open(rpc));
      }
      try {
        return await open(rpc); // once: the fallback below is the retry
      } catch (err) {
        if (!refusedBeforeStart(err)) {
          throw err;
        }
        // The instance cannot be reached from here (NAT, a client outside the
        // cluster): through the client's own target, which a proxy routes by call
        // (TARGET_HEADER) to the holder, or reaches an instance that names it.
        return await this.retrying(() => open(this.rpc));
      }
    } catch (err) {
      const holder = err instanceof RPCError ? (err.metadata.instance_address ?? "") : "";
      if (
        !(err instanceof RPCError) ||
        err.code !== Code.NotFound ||
        err.reason !== WRONG_INSTANCE ||
        holder === "" ||
        holder === tried ||
        !this.allowed.has(holder)
      ) {
        throw err;
      }
      // Behind a load balancer: the resume reached another instance, which
      // named the one holding the stream. Go there directly.
      return this.retrying(() => open(this.rpcAt(holder)));
    }
  }

  /** Runs `attempt`, and again (up to `openRetries` times) while refused before the stream started. */
  private async retrying<T>(attempt: () => Promise<T>): Promise<T> {
    for (let n = 0; ; n++) {
      try {
        return await attempt();
      } catch (err) {
        if (n >= this.openRetries || !refusedBeforeStart(err)) {
          throw err;
        }
      }
      await new Promise((res) => setTimeout(res, OPEN_RETRY_BACKOFF_MS * 2 ** n));
    }
  }

  /**
   * The MediaStreamService of the instance at `address`: the client's own
   * connection for "" or its own target (or when it cannot reach single
   * instances), otherwise a connection made on first use and kept until close.
   */
  private rpcAt(address: string): MediaRPC {
    if (!address || address === this.target || !this.dialInstance) {
      return this.rpc;
    }
    if (this.closed) {
      throw new RPCError(Code.Canceled, "the client is closed");
    }
    let instance = this.instances.get(address);
    if (!instance) {
      instance = this.dialInstance(address);
      this.instances.set(address, instance);
    }
    return instance.rpc;
  }
}

/**
 * Sent with every stream: `call:<id>` or `conference:<id>`. A proxy that hashes
 * on it (deploy/nginx, deploy/haproxy) sends every stream of a call, and its
 * resumes, to one instance, so that per-call limits hold across instances and
 * a resume needs no second hop.
 */
export const TARGET_HEADER = "x-mediastream-target";

function targetHeader(config: StreamConfig): Record<string, string> {
  if (config.callId) {
    return { [TARGET_HEADER]: `call:${config.callId}` };
  }
  if (config.conferenceId) {
    return { [TARGET_HEADER]: `conference:${config.conferenceId}` };
  }
  return {};
}

function callOptions(options: StreamOptions, config: StreamConfig): { options: CallOptions; abort: AbortController } {
  const abort = new AbortController();
  if (options.signal) {
    if (options.signal.aborted) {
      abort.abort(options.signal.reason);
    }
    options.signal.addEventListener("abort", () => abort.abort(options.signal?.reason), { once: true });
  }
  return { options: { signal: abort.signal, timeoutMs: options.timeoutMs, headers: targetHeader(config) }, abort };
}

type RequestInit = NonNullable<MessageInitShape<typeof StreamMediaRequestSchema>["payload"]>;

function request(payload: RequestInit): StreamMediaRequest {
  return create(StreamMediaRequestSchema, { payload });
}

function toProto(config: StreamConfig): PbStreamConfig {
  if (config.callId && config.conferenceId) {
    throw new ConfigError("BOTH_TARGETS", "config.target", "set only one of callId and conferenceId");
  }
  if (!config.callId && !config.conferenceId) {
    // The server would refuse it with the same reason; no round trip.
    throw new ConfigError("MISSING_TARGET", "config.target", "set callId or conferenceId");
  }
  const target: PbStreamConfig["target"] = config.callId
    ? { case: "callId", value: config.callId }
    : config.conferenceId
      ? { case: "conferenceId", value: config.conferenceId }
      : { case: undefined };
  return create(StreamConfigSchema, {
    target,
    format: toWire(wire.AudioFormat, config.format),
    direction: toWire(wire.Direction, config.direction),
    chunkMs: config.chunkMs,
    encapsulation: toWire(wire.Encapsulation, config.encapsulation),
    transport: toWire(wire.MediaTransport, config.transport),
    resumable: config.resumable || config.autoResume,
    resume: config.resume
      ? {
          token: config.resume.token,
          lastSequenceNumber:
            config.resume.lastSequenceNumber === undefined ? undefined : BigInt(config.resume.lastSequenceNumber),
        }
      : undefined,
  });
}

/**
 * The error an aborted `signal` gives, as `fetch` rejects: its reason when that
 * is an `AbortError`, else a `DOMException` named `AbortError` with the reason
 * as `cause`.
 */
function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error && reason.name === "AbortError") {
    return reason;
  }
  return new DOMException("mediastream: the stream was aborted", { name: "AbortError", cause: reason });
}

/** Runs `open`; with `signal` aborted, before or meanwhile, rejects with its AbortError instead. */
async function abortable<T>(signal: AbortSignal | undefined, open: () => Promise<T>): Promise<T> {
  if (signal?.aborted) {
    throw abortError(signal);
  }
  try {
    return await open();
  } catch (err) {
    if (signal?.aborted) {
      throw abortError(signal);
    }
    throw err;
  }
}

/** `config` resuming the stream `resume` names (`config` itself without one). */
function withResume(config: PbStreamConfig, resume: Resume | undefined): PbStreamConfig {
  if (!resume) {
    return config;
  }
  const out = clone(StreamConfigSchema, config);
  out.resume = create(ResumeRequestSchema, {
    token: resume.token,
    lastSequenceNumber: resume.lastSequenceNumber === undefined ? undefined : BigInt(resume.lastSequenceNumber),
  });
  return out;
}

/**
 * Whether an error ends a call, not the stream: a dropped connection, which an
 * auto-resume mends. The codes and final reasons of the Go and Python SDKs.
 */
function droppedConnection(err: RPCError): boolean {
  return (
    (err.code === Code.Unavailable || err.code === Code.Internal || err.code === Code.Unknown) &&
    err.reason !== "ASTERISK_FAILURE" &&
    err.reason !== DRAINING
  );
}

function info(s: StreamStarted): StreamInfo {
  return {
    streamId: s.streamId,
    format: fromWire(wire.AudioFormat, s.format),
    sampleRateHz: s.sampleRateHz,
    frameBytes: s.frameBytes,
    chunkMs: s.chunkMs,
    encapsulation: fromWire(wire.Encapsulation, s.encapsulation),
    transport: fromWire(wire.MediaTransport, s.transport),
    resumeToken: s.resumeToken,
    resumed: s.resumed,
    bufferHighChunks: s.bufferHighChunks,
    instanceAddress: s.instanceAddress,
  };
}

type Payload = ListenMediaResponse["payload"] | StreamMediaResponse["payload"];

/** The event in a response, or undefined for `started` and unknown kinds. */
function streamEvent(p: Payload): StreamEvent | undefined {
  switch (p.case) {
    case "audio":
      return {
        kind: "audio",
        data: p.value.data,
        sequenceNumber: Number(p.value.sequenceNumber),
        timestamp: Number(p.value.timestamp),
      };
    case "dtmf":
      return { kind: "dtmf", digit: p.value.digit, durationMs: p.value.durationMs };
    case "mark":
      return { kind: "mark", name: p.value.name, positionMs: Number(p.value.positionMs) };
    case "cleared":
      return { kind: "cleared", positionMs: Number(p.value.positionMs), droppedMarks: [...p.value.droppedMarks] };
    case "flow":
      return { kind: "flow", state: fromWire(wire.FlowState, p.value.state), bufferedMs: Number(p.value.bufferedMs) };
    case "stopped":
      return { kind: "stopped", reason: fromWire(wire.StopReason, p.value.reason), detail: p.value.detail };
  }
  return undefined;
}

/**
 * A listen-only stream. Iterate it (`for await (const ev of stream)`) for
 * the call's audio and events; iteration ends after the `stopped` event and
 * throws an {@link RPCError} if the stream fails. Iterate it only once.
 */
export class ListenStream implements AsyncIterable<StreamEvent>, AsyncDisposable {
  private infoValue: StreamInfo | undefined;
  private stoppedValue: Stopped | undefined;
  private lastSequenceNumber: number | undefined;
  /** Iterations in progress; waitStopped reads only when there is none. */
  private readers = 0;
  private ended = false;
  /** Woken when an iteration starts or ends. */
  private changed: (() => void)[] = [];
  /** Set while the server has asked to pause sending (FlowControl PAUSE, no RESUME since). */
  private pausedFlag = false;
  /** Woken by RESUME, the end of the stream, or its cancellation. */
  private resumeWaiters: (() => void)[] = [];
  /** Why the stream failed, once an iteration saw it (an AbortError if `signal` aborted it). */
  protected failure: Error | undefined;
  private resumeCount = 0;
  /** @internal Set with `autoResume`: opens the stream again on a new call. */
  reopen: ((resume: Resume) => Promise<ListenStream>) | undefined;

  /** @internal */
  constructor(
    private responses: AsyncIterator<{ payload: Payload }>,
    private readonly abort: AbortController,
    /** The caller's `signal` (StreamOptions). */
    private readonly signal?: AbortSignal,
  ) {
    abort.signal.addEventListener("abort", () => this.setPaused(false), { once: true });
  }

  /** The AbortError to throw once the caller's `signal` aborted the stream, else undefined. */
  protected get aborted(): Error | undefined {
    return this.signal?.aborted && !this.stoppedValue ? abortError(this.signal) : undefined;
  }

  /** Whether the server has asked to pause sending audio (two-way streams). */
  get paused(): boolean {
    return this.pausedFlag;
  }

  private setPaused(paused: boolean): void {
    this.pausedFlag = paused;
    if (!paused) {
      for (const wake of this.resumeWaiters.splice(0)) {
        wake();
      }
    }
  }

  /** Resolves when the stream is not paused (at once if it is not). */
  protected whilePaused(): Promise<void> {
    if (!this.pausedFlag) {
      return Promise.resolve();
    }
    return new Promise((wake) => this.resumeWaiters.push(wake));
  }

  /** Whether the stream has ended (seen by an iteration) or was cancelled. */
  protected get over(): boolean {
    return this.ended || this.abort.signal.aborted;
  }

  /**
   * The RPCError for an error of the call. The transport reports a connection
   * that dropped (the gateway vanished) as CANCELLED; when the client did not
   * cancel, it is UNAVAILABLE, as gRPC's Go and Python clients report it.
   */
  private rpcError(err: unknown): RPCError {
    const e = RPCError.from(err);
    if (e.code === Code.Canceled && !this.abort.signal.aborted) {
      return new RPCError(Code.Unavailable, `the connection to the gateway was lost: ${e.rawMessage}`, {}, { cause: err });
    }
    return e;
  }

  /** @internal Reads the server's confirmation. */
  async start(): Promise<void> {
    let first: IteratorResult<{ payload: Payload }>;
    try {
      first = await this.responses.next();
    } catch (err) {
      const e = this.aborted ?? this.rpcError(err);
      this.abort.abort();
      throw e;
    }
    const p = first.done ? undefined : first.value.payload;
    if (!p || p.case !== "started") {
      this.abort.abort();
      throw new RPCError(13, "the server did not confirm the stream");
    }
    this.infoValue = info(p.value);
  }

  /** What the server confirmed when the stream started. */
  get info(): StreamInfo {
    if (!this.infoValue) {
      throw new Error("mediastream: the stream has not started");
    }
    return this.infoValue;
  }

  /** How many times the stream was resumed by itself after its connection dropped (`autoResume`). */
  get resumes(): number {
    return this.resumeCount;
  }

  /** @internal Aborted when the stream is cancelled. */
  get cancelSignal(): AbortSignal {
    return this.abort.signal;
  }

  /** @internal Goes on on `next`'s call (an auto-resume). */
  protected adopt(next: ListenStream): void {
    this.responses = next.responses;
    this.infoValue = next.infoValue;
    this.resumeCount++;
  }

  /** The `stopped` event, once iteration has returned it. */
  get stopped(): Stopped | undefined {
    return this.stoppedValue;
  }

  /**
   * The `resume` of a config that continues this stream on a new connection:
   * its token, the last audio sequence number received, and the address of the
   * gateway instance holding the stream (where the client sends the resume,
   * past a load balancer).
   */
  resumeFrom(): Resume {
    const out: Resume = { token: this.info.resumeToken, instanceAddress: this.info.instanceAddress };
    if (this.lastSequenceNumber !== undefined) {
      out.lastSequenceNumber = this.lastSequenceNumber;
    }
    return out;
  }

  /**
   * The stream's events, in order, until `stopped`. Leaving the loop early
   * (`break`, `return`, an exception in its body) closes the stream, as
   * {@link close} does: a listen-only stream, or a two-way one whose input was
   * not ended, is cancelled at once; after `closeSend()` it waits (bounded)
   * until what was sent has played.
   */
  async *[Symbol.asyncIterator](): AsyncIterator<StreamEvent> {
    yield* this.iterate(true);
  }

  private async *iterate(closeIfLeft: boolean): AsyncGenerator<StreamEvent> {
    this.readers++;
    this.notify();
    let left = true;
    try {
      yield* this.read();
      left = false;
    } catch (err) {
      left = false;
      throw err;
    } finally {
      this.readers--;
      this.notify();
      if (left && closeIfLeft) {
        await this.close();
      }
    }
  }

  private notify(): void {
    for (const wake of this.changed.splice(0)) {
      wake();
    }
  }

  private async *read(): AsyncGenerator<StreamEvent> {
    for (;;) {
      let next: IteratorResult<{ payload: Payload }>;
      try {
        next = await this.responses.next();
      } catch (err) {
        let failure: Error = this.aborted ?? this.rpcError(err);
        if (failure instanceof RPCError && this.reopen && droppedConnection(failure) && !this.abort.signal.aborted) {
          try {
            this.adopt(await this.reopen(this.resumeFrom()));
            continue;
          } catch (again) {
            failure = this.aborted ?? (again instanceof RPCError ? again : this.rpcError(again));
          }
        }
        this.failure = failure;
        this.ended = true;
        this.setPaused(false);
        throw this.failure;
      }
      if (next.done) {
        this.ended = true;
        this.setPaused(false);
        return;
      }
      const ev = streamEvent(next.value.payload);
      if (!ev) {
        continue;
      }
      if (ev.kind === "audio") {
        this.lastSequenceNumber = ev.sequenceNumber;
      } else if (ev.kind === "flow") {
        this.setPaused(ev.state === FlowState.PAUSE);
      } else if (ev.kind === "stopped") {
        this.stoppedValue = ev;
      }
      yield ev;
    }
  }

  /** Only the audio bytes of the stream, in its format and encapsulation. */
  async *audio(): AsyncGenerator<Uint8Array> {
    for await (const ev of this) {
      if (ev.kind === "audio") {
        yield ev.data;
      }
    }
  }

  /**
   * Waits until the stream has ended and returns its `stopped` event
   * (undefined if it ended without one). When nothing iterates the stream,
   * this reads the events itself and drops them; otherwise it waits for that
   * iteration to see the end (which must go on). After `timeoutMs` the stream
   * is cancelled and this rejects with an {@link RPCError} (DEADLINE_EXCEEDED).
   */
  async waitStopped(timeoutMs?: number): Promise<Stopped | undefined> {
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    if (timeoutMs !== undefined) {
      timer = setTimeout(() => {
        timedOut = true;
        this.cancel();
        this.notify();
      }, timeoutMs);
    }
    try {
      while (!this.ended && !timedOut && !this.abort.signal.aborted) {
        if (this.readers === 0) {
          try {
            for await (const _ of this.iterate(false)) {
              if (this.readers > 1) {
                break; // someone else iterates now: leave the events to them
              }
            }
          } catch (err) {
            if (!timedOut && !this.abort.signal.aborted) {
              throw err;
            }
          }
          continue;
        }
        await new Promise<void>((wake) => this.changed.push(wake));
      }
    } finally {
      clearTimeout(timer);
    }
    if (timedOut && !this.stoppedValue) {
      throw new RPCError(Code.DeadlineExceeded, `no stopped within ${timeoutMs} ms; stream cancelled`);
    }
    const aborted = this.aborted;
    if (aborted) {
      throw aborted;
    }
    return this.stoppedValue;
  }

  /** Cancels the stream at once if it is still running. */
  cancel(): void {
    this.abort.abort();
  }

  /** Closes the stream: a listen-only stream is cancelled if still running. */
  async close(): Promise<void> {
    this.cancel();
  }

  /** What `await using` calls when the block is left: {@link close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * A two-way stream: iterate it like a {@link ListenStream}; `send` and the
 * other methods talk into the call. Await each send: it resolves when the
 * transport has taken the message, so a slow consumer holds the sender back.
 */
export class DuplexStream extends ListenStream {
  private sequenceNumber = 0;
  /** Marks and DTMF messages sent so far (a clear names them). */
  private marksAndDtmf = 0;
  private timestamp = 0;
  private inputClosed = false;
  /** When the audio sent so far has played, at most (Date.now() milliseconds). */
  private playEnd = 0;
  /**
   * Whether `send` (and `write`) wait while the server has asked to pause
   * (default true; the Go SDK's `SetWaitWhilePaused`, the Python SDK's
   * `wait_while_paused`). With false they send at once and the server buffers
   * up to its limit (10 s of audio by default; past it the stream fails with
   * RESOURCE_EXHAUSTED, reason BUFFER_FULL).
   */
  waitWhilePaused = true;

  /** @internal */
  constructor(
    responses: AsyncIterator<StreamMediaResponse>,
    private requests: RequestQueue<StreamMediaRequest>,
    abort: AbortController,
    private readonly closeGraceMs = DEFAULT_CLOSE_GRACE_MS,
    signal?: AbortSignal,
    private control?: ControlCall,
  ) {
    super(responses, abort, signal);
  }

  /** @internal Sends on `next`'s call from now on (an auto-resume). */
  protected override adopt(next: ListenStream): void {
    super.adopt(next);
    this.requests = (next as DuplexStream).requests;
    this.control = (next as DuplexStream).control;
    if (this.inputClosed) {
      this.requests.close(); // the input had ended before the drop
    }
  }

  /**
   * Adds audio to the play-out estimate: the server plays in real time from
   * when audio arrives (a gap plays silence). Headers counted as audio only
   * lengthen it, the safe side.
   */
  private countPlayed(ms: number): void {
    this.playEnd = Math.max(this.playEnd, Date.now()) + ms;
  }

  /**
   * Closes the stream; what `await using` does when the block is left. After
   * {@link closeSend}, waits until the server has played what was sent and
   * sent `stopped` (see {@link waitStopped}), at most the estimated audio
   * still to play plus `closeGraceMs`; then, or at once without `closeSend`,
   * the stream is cancelled if still running.
   */
  override async close(): Promise<void> {
    if (this.inputClosed && !this.stopped) {
      const bound = Math.max(0, this.playEnd - Date.now()) + this.closeGraceMs;
      try {
        await this.waitStopped(bound);
      } catch {
        // The bound passed or the stream failed: it is cancelled below either way.
      }
    }
    this.cancel();
  }

  /**
   * Throws when the stream is over: a request sent then would be dropped
   * silently. The stream's failure if it failed; CANCELLED if it was
   * cancelled; else FAILED_PRECONDITION (it stopped).
   */
  private checkOpen(): void {
    if (!this.over) {
      return;
    }
    const aborted = this.aborted;
    if (aborted) {
      throw aborted;
    }
    if (this.failure) {
      throw this.failure;
    }
    if (!this.stopped) {
      throw new RPCError(Code.Canceled, "the stream was cancelled");
    }
    throw new RPCError(Code.FailedPrecondition, `the stream has ended (stopped: ${this.stopped.reason})`);
  }

  /** Queues a request for the call, unless the stream is over (then it rejects). */
  private async put(req: StreamMediaRequest): Promise<void> {
    this.checkOpen();
    try {
      await this.requests.push(req);
    } catch (err) {
      this.checkOpen();
      throw err;
    }
  }

  /**
   * Sends one chunk of audio (normally `chunkBytes(info)` bytes) to be played.
   * First waits while the server has asked to pause (FlowControl PAUSE, until
   * RESUME), as the Go and Python SDKs do, unless {@link waitWhilePaused} is
   * false; the pause is seen by iterating the stream, so a fast sender needs
   * something iterating it. Resolves when the transport has taken the chunk,
   * not when it has played (a `mark` reports that). Rejects with an
   * {@link RPCError} once the stream has ended (the stream's failure, or
   * FAILED_PRECONDITION after `stopped`).
   */
  async send(data: Uint8Array): Promise<void> {
    if (this.waitWhilePaused) {
      await this.whilePaused();
    }
    this.checkOpen();
    const i = this.info;
    const chunk = {
      data,
      sequenceNumber: BigInt(this.sequenceNumber++),
      timestamp: BigInt(this.timestamp),
    };
    const bare = i.encapsulation === Encapsulation.SLN || i.encapsulation === Encapsulation.UNSPECIFIED;
    this.timestamp += bare
      ? i.format === AudioFormat.ULAW
        ? data.length
        : data.length / 2
      : (i.sampleRateHz * i.chunkMs) / 1000;
    await this.put(request({ case: "audio", value: chunk }));
    const bytesPerMs = i.format === AudioFormat.SLIN16 ? 32 : i.format === AudioFormat.SLIN ? 16 : 8;
    this.countPlayed(data.length / bytesPerMs);
  }

  /**
   * Sends DTMF digits (0-9, *, #, A-D), on the stream, after the audio sent so
   * far; a duration of 0 means 100 ms each.
   */
  async sendDtmf(digits: string, durationMs = 0): Promise<void> {
    this.checkOpen();
    this.marksAndDtmf++;
    await this.put(request({ case: "dtmf", value: { digits, durationMs } }));
    // Each digit plays for its duration and a gap.
    this.countPlayed(digits.length * ((durationMs || 100) + 100));
  }

  /** Asks for a `mark` event once everything sent before it was played. */
  async mark(name: string): Promise<void> {
    this.checkOpen();
    this.marksAndDtmf++;
    await this.put(request({ case: "mark", value: { name } }));
  }

  /**
   * Drops all audio sent so far that has not played (barge-in); the server
   * reports it with a `cleared` event on the stream, as before.
   *
   * It goes beside the stream (the ControlStream RPC), not on it, so it never
   * waits behind audio sent before it that the server has not read yet (after
   * a burst of 60 s, an in-stream clear waited hundreds of ms); that audio, and
   * the marks among it, are dropped as the server reads them. Resolves once the
   * server has cut playback.
   */
  async clear(): Promise<void> {
    await this.command({
      command: { case: "clear", value: {} },
      marksAndDtmfSent: BigInt(this.marksAndDtmf),
      lastSentSequenceNumber: this.sequenceNumber > 0 ? BigInt(this.sequenceNumber - 1) : undefined,
    });
    this.playEnd = 0;
  }

  /**
   * Hangs up the call, at once: beside the stream, never behind audio sent
   * before it. On a conference it rejects with an {@link RPCError}
   * (FAILED_PRECONDITION, NOT_A_CALL) and the stream goes on.
   */
  async hangup(): Promise<void> {
    await this.command({ command: { case: "hangup", value: {} } });
  }

  /** Sends a ControlStream command for this stream; rejects as a send does once it is over. */
  private async command(req: MessageInitShape<typeof wire.ControlStreamRequestSchema>): Promise<void> {
    this.checkOpen();
    if (!this.control) {
      throw new RPCError(Code.Unimplemented, "this stream has no control channel");
    }
    try {
      await this.control({ ...req, streamId: this.info.streamId });
    } catch (err) {
      this.checkOpen();
      throw RPCError.from(err);
    }
  }

  /**
   * Ends the input and returns at once: the server plays what it has, then
   * sends `stopped` (CLIENT_DONE). Iterate until then, or `await waitStopped()`,
   * or just `await close()` (which waits after `closeSend`).
   */
  closeSend(): void {
    this.requests.close();
    this.inputClosed = true;
  }

  /**
   * Sends bare samples of any length: cut into chunks of `chunkBytes(info)`
   * bytes (the last one may be shorter).
   */
  async write(samples: Uint8Array): Promise<void> {
    const size = (this.info.frameBytes * this.info.chunkMs) / 20;
    for (let at = 0; at < samples.length; at += size) {
      await this.send(samples.subarray(at, Math.min(at + size, samples.length)));
    }
  }
}

/** The host of `host:port` (brackets of an IPv6 address removed). */
function hostOf(target: string): string {
  const colon = target.lastIndexOf(":");
  const host = colon > 0 ? target.slice(0, colon) : target;
  return host.replace(/^\[|\]$/g, "");
}
