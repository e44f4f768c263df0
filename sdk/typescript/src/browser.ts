/**
 * Browser client for the gateway's WebSocket shim (docs/websocket.md):
 * `GET /v1.0/calls/{id}/media_stream` (or `/v1.0/conferences/{id}/media_stream`)
 * with `?encapsulation=sln|rtp|audiosocket`, an optional `format=ulaw|slin|slin16`
 * and an optional JSON control channel (`events=json`). Browsers cannot open
 * bidirectional gRPC streams, so the shim carries the same stream over a
 * WebSocket: every binary message is one chunk of audio, both ways; with
 * `events: true` text messages carry `started`, DTMF, marks, clears, flow
 * control and `stopped` down, and `mark`, `clear`, `dtmf`, `hangup` and `done` up.
 *
 * This module uses no Node API: only the standard WebSocket, which can be
 * replaced (`options.WebSocket`), for example by the `ws` package on Node 20,
 * which has no global WebSocket.
 *
 * @example
 * const socket = new MediaStreamSocket({ baseUrl: "wss://gw.example", callId, format: "slin", events: true, token });
 * await socket.opened;
 * for await (const msg of socket) {
 *   if (msg.kind === "audio") play(msg.data);
 *   else if (msg.kind === "dtmf") socket.clear(); // barge-in
 * }
 * // Iteration ends when the stream stops (close 1000 or 1001), and throws a
 * // MediaStreamSocketError otherwise (e.g. 404 CALL_NOT_FOUND, 1008, 1009).
 */

/** Sample format of the shim's audio, the same both ways. */
export type SocketFormat = "ulaw" | "slin" | "slin16";

/**
 * What `options.format` accepts: a {@link SocketFormat} both ways, or
 * `"voipbin"`, which sends no `format` parameter and gets VoIPBIN's own
 * stream: µ-law 8 kHz down, 16-bit 8 kHz slin up.
 */
export type SocketFormatOption = SocketFormat | "voipbin";

/** Wire form of each binary message. */
export type SocketEncapsulation = "sln" | "rtp" | "audiosocket";

/**
 * An event handler slot of a WebSocket. Implementations type their events
 * differently (the DOM's `MessageEvent`, the `ws` package's own), so the
 * parameter is left open; this module checks what it reads.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type WebSocketHandler = ((ev: any) => unknown) | null;

/** The parts of the standard WebSocket this module uses. */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: string | ArrayBufferView | ArrayBuffer): void;
  close(code?: number, reason?: string): void;
  onopen: WebSocketHandler;
  onmessage: WebSocketHandler;
  onclose: WebSocketHandler;
  onerror: WebSocketHandler;
}

/** A WebSocket constructor: `globalThis.WebSocket`, or the `ws` package's `WebSocket`. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** Options of {@link MediaStreamSocket}. Set exactly one of `callId` and `conferenceId`. */
export interface SocketOptions {
  /** Base URL of the gateway's WebSocket endpoint: `ws://`, `wss://`, `http://` or `https://` (the shim's `host:port`). */
  baseUrl: string;
  /** The call to stream (a UUID). */
  callId?: string;
  /** The conference to stream (a UUID). */
  conferenceId?: string;
  /** Wire form of each binary message; default `sln` (bare samples). */
  encapsulation?: SocketEncapsulation;
  /** Sample format; default `ulaw` both ways. */
  format?: SocketFormatOption;
  /** Turn on the JSON control channel (`events=json`): needed for `started`, events and the control methods. */
  events?: boolean;
  /** Sent as the `token` query parameter (browsers cannot set WebSocket headers). */
  token?: string;
  /** Sent as the `accesskey` query parameter (VoIPBIN's access keys). */
  accessKey?: string;
  /** WebSocket constructor to use instead of `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
}

/** What the gateway confirmed when the stream started (the `started` control message). */
export interface SocketStarted {
  kind: "started";
  streamId: string;
  /** What the stream is attached to. */
  target: "call" | "conference";
  /** The call's or conference's ID. */
  id: string;
  encapsulation: SocketEncapsulation;
  /** How the gateway takes the audio from Asterisk: `rtp`, `audiosocket` or `websocket`. */
  transport: string;
  /** Format of the audio the gateway sends. */
  format: SocketFormat;
  sampleRate: number;
  /** Sample bytes (without the encapsulation's header) in one 20 ms frame sent down. */
  frameBytes: number;
  /** Format of the audio the gateway expects from the client. */
  uplinkFormat: SocketFormat;
  uplinkSampleRate: number;
  uplinkFrameBytes: number;
  chunkMs: number;
}

/** A chunk of audio from the call, in the stream's format and encapsulation. */
export interface SocketAudio {
  kind: "audio";
  data: Uint8Array;
}

/** A DTMF digit pressed on the call. */
export interface SocketDtmf {
  kind: "dtmf";
  digit: string;
  durationMs: number;
}

/** Everything sent before the mark has been played. */
export interface SocketMark {
  kind: "mark";
  name: string;
  /** Playback position of the client's audio at the mark. */
  positionMs: number;
}

/** A `clear` dropped the queued audio. */
export interface SocketCleared {
  kind: "cleared";
  /** Playback position where playback was cut. */
  positionMs: number;
  /** Marks dropped with the audio, in order; they are never reported. */
  droppedMarks: string[];
}

/** The gateway asks the client to hold off (`pause`) or to send again (`resume`). */
export interface SocketFlow {
  kind: "flow";
  state: "pause" | "resume";
  /** Milliseconds of audio waiting to be played. */
  bufferedMs: number;
}

/** The stream ended; the close frame follows. */
export interface SocketStopped {
  kind: "stopped";
  /** `client_done`, `call_hangup`, `conference_ended`, `client_hangup`, `server_shutdown` or `asterisk_failure`. */
  reason: string;
  detail: string;
}

/** A text message this client does not know (passed on as it came). */
export interface SocketText {
  kind: "text";
  data: string;
}

/**
 * A message from the shim: audio, a control message of the `events=json`
 * channel, or unknown text. An `error` control message is not yielded: it
 * becomes the {@link MediaStreamSocketError} that iteration throws.
 */
export type SocketMessage =
  | SocketAudio
  | SocketStarted
  | SocketDtmf
  | SocketMark
  | SocketCleared
  | SocketFlow
  | SocketStopped
  | SocketText;

/** Details of a {@link MediaStreamSocketError}, when the gateway gave them. */
export interface SocketErrorDetails {
  /** A stable identifier such as `CALL_NOT_FOUND`, `MESSAGE_TOO_BIG` or `UNKNOWN_MESSAGE`. */
  errorReason?: string;
  /** The gateway's human-readable message. */
  detail?: string;
  /** The HTTP status of a refusal before the upgrade (400, 401, 403, 404, 429, 500, 503). */
  httpStatus?: number;
  /** The refusal's JSON body, `{"error": {"status", "reason", "message", "request_id"}}`. */
  body?: unknown;
}

/**
 * The stream failed: the socket closed with a code other than 1000 (stream
 * ended) and 1001 (gateway shutting down), or the gateway refused to open it.
 *
 * A refusal before the upgrade (HTTP 400/401/403/404/429/503) reaches a
 * browser as code 1006 with nothing else: browsers hide the response. With a
 * WebSocket implementation that exposes it (the `ws` package's
 * `unexpected-response` event), `httpStatus`, `errorReason`, `detail` and
 * `body` are filled in from the JSON body.
 */
export class MediaStreamSocketError extends Error {
  /** The WebSocket close code (1006 for a refusal before the upgrade or a dropped connection). */
  readonly code: number;
  /** The close reason the gateway gave, `<REASON>: <detail>`. */
  readonly reason: string;
  /** A stable identifier such as `CALL_NOT_FOUND` or `MESSAGE_TOO_BIG`; "" when unknown. */
  readonly errorReason: string;
  /** The gateway's message; "" when unknown. */
  readonly detail: string;
  /** HTTP status of a refusal before the upgrade; undefined after it, or when not visible. */
  readonly httpStatus: number | undefined;
  /** JSON body of a refusal before the upgrade, when visible. */
  readonly body: unknown;

  constructor(code: number, reason: string, details: SocketErrorDetails = {}) {
    const errorReason = details.errorReason ?? reasonOf(reason);
    const what =
      details.httpStatus !== undefined
        ? `refused with HTTP ${details.httpStatus}${errorReason ? ` ${errorReason}` : ""}${details.detail ? `: ${details.detail}` : ""}`
        : `closed with ${code}${reason ? `: ${reason}` : details.detail ? `: ${details.detail}` : ""}`;
    super(`mediastream socket ${what}`);
    this.name = "MediaStreamSocketError";
    this.code = code;
    this.reason = reason;
    this.errorReason = errorReason;
    this.detail = details.detail ?? (reason.includes(": ") ? reason.slice(reason.indexOf(": ") + 2) : "");
    this.httpStatus = details.httpStatus;
    this.body = details.body;
  }
}

/** `CALL_NOT_FOUND` of `CALL_NOT_FOUND: call … not found`; "" if the reason has no such prefix. */
function reasonOf(closeReason: string): string {
  const m = /^([A-Za-z_]+)(:|$)/.exec(closeReason);
  return m ? m[1]! : "";
}

/** The shim's URL for `options`. */
export function mediaStreamUrl(options: SocketOptions): string {
  if (Boolean(options.callId) === Boolean(options.conferenceId)) {
    throw new Error("mediastream: set exactly one of callId and conferenceId");
  }
  const url = new URL(options.baseUrl);
  url.protocol = url.protocol === "https:" || url.protocol === "wss:" ? "wss:" : "ws:";
  const path = options.callId
    ? `calls/${encodeURIComponent(options.callId)}`
    : `conferences/${encodeURIComponent(options.conferenceId!)}`;
  url.pathname = `${url.pathname.replace(/\/+$/, "")}/v1.0/${path}/media_stream`;
  url.searchParams.set("encapsulation", options.encapsulation ?? "sln");
  const format = options.format ?? "ulaw";
  if (format !== "voipbin") {
    url.searchParams.set("format", format);
  }
  if (options.events) {
    url.searchParams.set("events", "json");
  }
  if (options.token) {
    url.searchParams.set("token", options.token);
  }
  if (options.accessKey) {
    url.searchParams.set("accesskey", options.accessKey);
  }
  return url.toString();
}

const OPEN = 1;
/** Close codes that end a stream normally: it ended (1000) or the gateway is shutting down (1001). */
const NORMAL_CLOSE = new Set([1000, 1001]);

/** Why a socket closed before it opened, when the implementation does not say (browsers never do). */
const NOT_OPENED = "the gateway refused the stream or could not be reached (a browser does not show the HTTP status)";

type Json = Record<string, unknown>;
const str = (v: unknown): string => (typeof v === "string" ? v : "");
const num = (v: unknown): number => (typeof v === "number" ? v : 0);

/** A control message of the `events=json` channel as a {@link SocketMessage}; undefined if unknown. */
function controlMessage(m: Json): SocketMessage | undefined {
  switch (m.type) {
    case "started":
      return {
        kind: "started",
        streamId: str(m.stream_id),
        target: m.kind === "conference" ? "conference" : "call",
        id: str(m.id),
        encapsulation: str(m.encapsulation) as SocketEncapsulation,
        transport: str(m.transport),
        format: str(m.format) as SocketFormat,
        sampleRate: num(m.sample_rate),
        frameBytes: num(m.frame_bytes),
        uplinkFormat: str(m.uplink_format) as SocketFormat,
        uplinkSampleRate: num(m.uplink_sample_rate),
        uplinkFrameBytes: num(m.uplink_frame_bytes),
        chunkMs: num(m.chunk_ms),
      };
    case "dtmf":
      return { kind: "dtmf", digit: str(m.digit), durationMs: num(m.duration_ms) };
    case "mark":
      return { kind: "mark", name: str(m.name), positionMs: num(m.position_ms) };
    case "cleared":
      return {
        kind: "cleared",
        positionMs: num(m.position_ms),
        droppedMarks: Array.isArray(m.dropped_marks) ? m.dropped_marks.map(str) : [],
      };
    case "flow":
      return { kind: "flow", state: m.state === "pause" ? "pause" : "resume", bufferedMs: num(m.buffered_ms) };
    case "stopped":
      return { kind: "stopped", reason: str(m.reason), detail: str(m.detail) };
  }
  return undefined;
}

/** The HTTP response of a refused upgrade, as the `ws` package exposes it (a Node IncomingMessage). */
interface RefusedResponse {
  statusCode?: number;
  on(event: "data", listener: (chunk: unknown) => void): unknown;
  on(event: "end" | "error", listener: () => void): unknown;
}

/** A WebSocket that reports refused upgrades (the `ws` package's `unexpected-response`). */
interface RefusalReporter {
  on(event: "unexpected-response", listener: (request: unknown, response: RefusedResponse) => void): unknown;
}

/**
 * One media stream over the WebSocket shim. Iterate it once for what the
 * gateway sends; iteration ends when the stream stops (close 1000 or 1001)
 * and throws a {@link MediaStreamSocketError} otherwise.
 */
export class MediaStreamSocket implements AsyncIterable<SocketMessage> {
  /** The URL the socket was opened with. */
  readonly url: string;
  /** Resolves when the socket is open; rejects with a {@link MediaStreamSocketError} if it closes first. */
  readonly opened: Promise<void>;
  /** Resolves with the close code and reason when the socket has closed (never rejects). */
  readonly closed: Promise<{ code: number; reason: string }>;
  private readonly ws: WebSocketLike;
  private readonly events: boolean;
  private readonly queue: SocketMessage[] = [];
  private wake: (() => void) | undefined;
  private ended: { error?: MediaStreamSocketError } | undefined;
  private startedValue: SocketStarted | undefined;
  private stoppedValue: SocketStopped | undefined;
  private serverError: SocketErrorDetails | undefined;
  private refusal: SocketErrorDetails | undefined;
  private pausedValue = false;
  private wasOpen = false;
  private resumeWaiters: (() => void)[] = [];

  constructor(options: SocketOptions) {
    const Ctor = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!Ctor) {
      throw new Error("mediastream: no WebSocket implementation; pass options.WebSocket");
    }
    this.events = Boolean(options.events);
    this.url = mediaStreamUrl(options);
    this.ws = new Ctor(this.url);
    this.ws.binaryType = "arraybuffer";
    this.watchRefusal();
    let closedResolve: (c: { code: number; reason: string }) => void = () => {};
    this.closed = new Promise((resolve) => {
      closedResolve = resolve;
    });
    this.opened = new Promise((resolve, reject) => {
      this.ws.onopen = () => {
        this.wasOpen = true;
        resolve();
      };
      this.ws.onclose = (ev: { code?: unknown; reason?: unknown }) => {
        const code = typeof ev?.code === "number" ? ev.code : 1006;
        const reason = typeof ev?.reason === "string" ? ev.reason : "";
        const details = this.refusal ?? this.serverError ?? (this.wasOpen ? {} : { detail: NOT_OPENED });
        const error = NORMAL_CLOSE.has(code) ? undefined : new MediaStreamSocketError(code, reason, details);
        this.ended = { error };
        reject(error ?? new MediaStreamSocketError(code, reason));
        closedResolve({ code, reason });
        this.setPaused(false);
        this.notify();
      };
    });
    this.opened.catch(() => {}); // also reported by iteration
    this.ws.onerror = () => {}; // a close event follows with the code
    this.ws.onmessage = (ev: { data?: unknown }) => this.receive(ev?.data);
  }

  /** With the `ws` package, read the JSON body of a refused upgrade (browsers hide it). */
  private watchRefusal(): void {
    const reporter = this.ws as unknown as Partial<RefusalReporter>;
    if (typeof reporter.on !== "function") {
      return;
    }
    reporter.on("unexpected-response", (_request, response) => {
      const parts: string[] = [];
      const decoder = new TextDecoder();
      let finished = false;
      const finish = (): void => {
        if (finished) {
          return;
        }
        finished = true;
        const text = parts.join("") + decoder.decode();
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // not JSON: keep the text
        }
        const error = (body as { error?: Json } | null)?.error;
        this.refusal = {
          httpStatus: response.statusCode ?? 0,
          body,
          errorReason: str(error?.reason),
          detail: str(error?.message),
        };
        this.ws.close(); // ends the handshake: a close event (1006) follows
      };
      response.on("data", (chunk) => {
        parts.push(chunk instanceof Uint8Array ? decoder.decode(chunk, { stream: true }) : String(chunk));
      });
      response.on("end", finish);
      response.on("error", finish);
    });
  }

  private receive(data: unknown): void {
    if (typeof data === "string") {
      this.receiveText(data);
    } else if (data instanceof ArrayBuffer) {
      this.queue.push({ kind: "audio", data: new Uint8Array(data) });
    } else if (ArrayBuffer.isView(data)) {
      this.queue.push({ kind: "audio", data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
    } else {
      return;
    }
    this.notify();
  }

  private receiveText(text: string): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    const m = parsed !== null && typeof parsed === "object" && !Array.isArray(parsed) ? (parsed as Json) : undefined;
    if (m?.type === "error") {
      // The close frame follows; iteration throws with these details.
      this.serverError = { errorReason: str(m.reason), detail: str(m.message) };
      return;
    }
    const msg = m ? controlMessage(m) : undefined;
    if (!msg) {
      this.queue.push({ kind: "text", data: text });
    } else {
      if (msg.kind === "started") {
        this.startedValue = msg;
      } else if (msg.kind === "stopped") {
        this.stoppedValue = msg;
      } else if (msg.kind === "flow") {
        this.setPaused(msg.state === "pause");
      }
      this.queue.push(msg);
    }
    this.notify();
  }

  private setPaused(paused: boolean): void {
    this.pausedValue = paused;
    if (!paused) {
      for (const wake of this.resumeWaiters.splice(0)) {
        wake();
      }
    }
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** The `started` message, once it has arrived (only with `events: true`). */
  get started(): SocketStarted | undefined {
    return this.startedValue;
  }

  /** The `stopped` message, once it has arrived (only with `events: true`). */
  get stopped(): SocketStopped | undefined {
    return this.stoppedValue;
  }

  /** Whether the gateway has asked to hold off sending audio (a `flow` pause not yet resumed). */
  get paused(): boolean {
    return this.pausedValue;
  }

  /** Resolves when the gateway accepts audio again: at once unless paused, or when the socket closes. */
  resumed(): Promise<void> {
    if (!this.pausedValue) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.resumeWaiters.push(resolve));
  }

  private checkOpen(): void {
    if (this.ws.readyState !== OPEN) {
      throw new Error("mediastream: the socket is not open");
    }
  }

  /** Sends one chunk of audio now, in the stream's uplink format and encapsulation (any length up to the gateway's `play_buffer_s`, 120 s by default). */
  send(chunk: Uint8Array): void {
    this.checkOpen();
    this.ws.send(chunk);
  }

  /**
   * Sends one chunk once the gateway accepts audio: waits while a `flow`
   * pause is in force (with `events: true`), so a sender faster than real
   * time keeps at most the gateway's buffer (about 8 s) queued.
   */
  async write(chunk: Uint8Array): Promise<void> {
    await this.resumed();
    this.send(chunk);
  }

  private control(message: Json): void {
    if (!this.events) {
      throw new Error(`mediastream: "${String(message.type)}" needs the control channel (events: true)`);
    }
    this.checkOpen();
    this.ws.send(JSON.stringify(message));
  }

  /** Asks for a `mark` message once everything sent before it has been played. */
  mark(name: string): void {
    this.control({ type: "mark", name });
  }

  /** Drops all queued audio now (barge-in); a `cleared` message answers. */
  clear(): void {
    this.control({ type: "clear" });
  }

  /** Plays DTMF digits (0-9, *, #, A-D) into the call after the queued audio; 0 means 100 ms each. */
  sendDtmf(digits: string, durationMs = 0): void {
    this.control(durationMs ? { type: "dtmf", digits, duration_ms: durationMs } : { type: "dtmf", digits });
  }

  /** Hangs up the call (not a conference: that closes with 1008 `NOT_A_CALL`). */
  hangup(): void {
    this.control({ type: "hangup" });
  }

  /** Nothing more will be sent: the stream stops (`client_done`, close 1000) once the queued audio has played. */
  done(): void {
    this.control({ type: "done" });
  }

  /** Closes the socket now (queued audio is dropped); the gateway ends the stream. */
  close(): void {
    this.ws.close(1000, "client done");
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<SocketMessage> {
    for (;;) {
      const next = this.queue.shift();
      if (next) {
        yield next;
        continue;
      }
      if (this.ended) {
        if (this.ended.error) {
          throw this.ended.error;
        }
        return;
      }
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }
}
