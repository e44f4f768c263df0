/**
 * Node client for the mediastream gateway, over gRPC (HTTP/2).
 *
 * @example
 * const client = new MediaStreamClient("127.0.0.1:50051");
 * const stream = await client.listen({ callId, format: AudioFormat.SLIN });
 * for await (const ev of stream) {
 *   if (ev.kind === "audio") handle(ev.data);
 * }
 * client.close();
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { createClient, type CallOptions, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import {
  MediaStreamService,
  StreamConfigSchema,
  StreamMediaRequestSchema,
  type ListenMediaResponse,
  type StreamConfig as PbStreamConfig,
  type StreamMediaRequest,
  type StreamMediaResponse,
  type StreamStarted,
} from "./gen/voipbin/mediastream/v1/mediastream_pb.js";
import { RPCError } from "./errors.js";
import { ExternalMediaClient } from "./external.js";
import { RequestQueue } from "./queue.js";
import {
  AudioFormat,
  Encapsulation,
  type Resume,
  type StoppedEvent,
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
}

/** Options of one stream. */
export interface StreamOptions {
  /** Aborting it cancels the stream. */
  signal?: AbortSignal;
  /** Deadline for the whole stream, in milliseconds. */
  timeoutMs?: number;
}

/** A connection to the gateway. */
export class MediaStreamClient {
  private readonly rpc: Client<typeof MediaStreamService>;
  private readonly sessions: Http2SessionManager | undefined;
  /** The ExternalMediaService on the same connection. */
  readonly externalMedia: ExternalMediaClient;

  /**
   * @param target `host:port` of the gateway's gRPC endpoint.
   */
  constructor(target: string, options: ClientOptions = {}) {
    let transport = options.transport;
    if (!transport) {
      const baseUrl = `${options.scheme ?? "http"}://${target}`;
      this.sessions = new Http2SessionManager(baseUrl);
      const interceptors = [...(options.interceptors ?? [])];
      const token = options.token;
      if (token) {
        interceptors.unshift((next) => (req) => {
          req.header.set("authorization", `Bearer ${token}`);
          return next(req);
        });
      }
      transport = createGrpcTransport({ baseUrl, sessionManager: this.sessions, interceptors });
    }
    this.rpc = createClient(MediaStreamService, transport);
    this.externalMedia = new ExternalMediaClient(transport);
  }

  /** Closes the connection (if this client made it); open streams fail. */
  close(): void {
    this.sessions?.abort();
  }

  /** Opens a listen-only stream and waits until the server confirms it. */
  async listen(config: StreamConfig, options: StreamOptions = {}): Promise<ListenStream> {
    const call = callOptions(options);
    const responses = this.rpc.listenMedia({ config: toProto(config) }, call.options);
    const stream = new ListenStream(responses[Symbol.asyncIterator](), call.abort);
    await stream.start();
    return stream;
  }

  /** Opens a two-way stream and waits until the server confirms it. */
  async stream(config: StreamConfig, options: StreamOptions = {}): Promise<DuplexStream> {
    const call = callOptions(options);
    const requests = new RequestQueue<StreamMediaRequest>();
    requests.push(request({ case: "config", value: toProto(config) })).catch(() => {}); // a failure is reported by start()
    const responses = this.rpc.streamMedia(requests, call.options);
    const stream = new DuplexStream(responses[Symbol.asyncIterator](), requests, call.abort);
    await stream.start();
    return stream;
  }
}

function callOptions(options: StreamOptions): { options: CallOptions; abort: AbortController } {
  const abort = new AbortController();
  if (options.signal) {
    if (options.signal.aborted) {
      abort.abort(options.signal.reason);
    }
    options.signal.addEventListener("abort", () => abort.abort(options.signal?.reason), { once: true });
  }
  return { options: { signal: abort.signal, timeoutMs: options.timeoutMs }, abort };
}

type RequestInit = NonNullable<MessageInitShape<typeof StreamMediaRequestSchema>["payload"]>;

function request(payload: RequestInit): StreamMediaRequest {
  return create(StreamMediaRequestSchema, { payload });
}

function toProto(config: StreamConfig): PbStreamConfig {
  if (config.callId && config.conferenceId) {
    throw new Error("mediastream: set only one of callId and conferenceId");
  }
  const target: PbStreamConfig["target"] = config.callId
    ? { case: "callId", value: config.callId }
    : config.conferenceId
      ? { case: "conferenceId", value: config.conferenceId }
      : { case: undefined };
  return create(StreamConfigSchema, {
    target,
    format: config.format,
    direction: config.direction,
    chunkMs: config.chunkMs,
    encapsulation: config.encapsulation,
    transport: config.transport,
    resumable: config.resumable,
    resume: config.resume
      ? {
          token: config.resume.token,
          lastSequenceNumber:
            config.resume.lastSequenceNumber === undefined ? undefined : BigInt(config.resume.lastSequenceNumber),
        }
      : undefined,
  });
}

function info(s: StreamStarted): StreamInfo {
  return {
    streamId: s.streamId,
    format: s.format,
    sampleRateHz: s.sampleRateHz,
    frameBytes: s.frameBytes,
    chunkMs: s.chunkMs,
    encapsulation: s.encapsulation,
    transport: s.transport,
    resumeToken: s.resumeToken,
    resumed: s.resumed,
    bufferHighChunks: s.bufferHighChunks,
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
      return { kind: "flow", state: p.value.state, bufferedMs: Number(p.value.bufferedMs) };
    case "stopped":
      return { kind: "stopped", reason: p.value.reason, detail: p.value.detail };
  }
  return undefined;
}

/**
 * A listen-only stream. Iterate it (`for await (const ev of stream)`) for
 * the call's audio and events; iteration ends after the `stopped` event and
 * throws an {@link RPCError} if the stream fails. Iterate it only once.
 */
export class ListenStream implements AsyncIterable<StreamEvent> {
  private infoValue: StreamInfo | undefined;
  private stoppedValue: StoppedEvent | undefined;
  private lastSequenceNumber: number | undefined;

  /** @internal */
  constructor(
    private readonly responses: AsyncIterator<{ payload: Payload }>,
    private readonly abort: AbortController,
  ) {}

  /** @internal Reads the server's confirmation. */
  async start(): Promise<void> {
    let first: IteratorResult<{ payload: Payload }>;
    try {
      first = await this.responses.next();
    } catch (err) {
      this.abort.abort();
      throw RPCError.from(err);
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

  /** The `stopped` event, once iteration has returned it. */
  get stopped(): StoppedEvent | undefined {
    return this.stoppedValue;
  }

  /** The `resume` of a config that continues this stream on a new connection. */
  resumeFrom(): Resume {
    const out: Resume = { token: this.info.resumeToken };
    if (this.lastSequenceNumber !== undefined) {
      out.lastSequenceNumber = this.lastSequenceNumber;
    }
    return out;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<StreamEvent> {
    for (;;) {
      let next: IteratorResult<{ payload: Payload }>;
      try {
        next = await this.responses.next();
      } catch (err) {
        throw RPCError.from(err);
      }
      if (next.done) {
        return;
      }
      const ev = streamEvent(next.value.payload);
      if (!ev) {
        continue;
      }
      if (ev.kind === "audio") {
        this.lastSequenceNumber = ev.sequenceNumber;
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

  /** Cancels the stream if it is still running. */
  close(): void {
    this.abort.abort();
  }
}

/**
 * A two-way stream: iterate it like a {@link ListenStream}; `send` and the
 * other methods talk into the call. Await each send: it resolves when the
 * transport has taken the message, so a slow consumer holds the sender back.
 */
export class DuplexStream extends ListenStream {
  private sequenceNumber = 0;
  private timestamp = 0;

  /** @internal */
  constructor(
    responses: AsyncIterator<StreamMediaResponse>,
    private readonly requests: RequestQueue<StreamMediaRequest>,
    abort: AbortController,
  ) {
    super(responses, abort);
  }

  /** Sends one chunk of audio (normally `chunkBytes(info)` bytes) to be played. */
  async send(data: Uint8Array): Promise<void> {
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
    await this.requests.push(request({ case: "audio", value: chunk }));
  }

  /** Sends DTMF digits (0-9, *, #, A-D); a duration of 0 means 100 ms each. */
  async sendDtmf(digits: string, durationMs = 0): Promise<void> {
    await this.requests.push(
      request({ case: "dtmf", value: { digits, durationMs } }),
    );
  }

  /** Asks for a `mark` event once everything sent before it was played. */
  async mark(name: string): Promise<void> {
    await this.requests.push(request({ case: "mark", value: { name } }));
  }

  /** Drops the audio queued for playing (barge-in); the server answers with `cleared`. */
  async clear(): Promise<void> {
    await this.requests.push(request({ case: "clear", value: {} }));
  }

  /** Hangs up the call the stream is attached to. */
  async hangup(): Promise<void> {
    await this.requests.push(request({ case: "hangup", value: {} }));
  }

  /** Ends the input: the server plays what it has, then sends `stopped` (CLIENT_DONE). */
  closeSend(): void {
    this.requests.close();
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

