/**
 * Browser client for the gateway's WebSocket shim,
 * `GET /v1.0/calls/{id}/media_stream` (or `/v1.0/conferences/{id}/media_stream`)
 * with `?encapsulation=...&format=...`: browsers cannot open bidirectional
 * gRPC streams, so the shim carries the same audio over a WebSocket. Every
 * binary message is one chunk of audio, both ways; text messages from the
 * server are passed on as they are.
 *
 * This module uses no Node API: only the standard WebSocket, which can be
 * replaced (`options.WebSocket`) for tests or for Node versions without one.
 *
 * @example
 * const socket = new MediaStreamSocket({ baseUrl: "wss://gw.example", callId, format: "slin", token });
 * await socket.opened;
 * for await (const msg of socket) {
 *   if (msg.kind === "audio") play(msg.data);
 * }
 */

/** Sample format of the shim's audio, both ways. */
export type SocketFormat = "ulaw" | "slin" | "slin16";

/** Wire form of each binary message. */
export type SocketEncapsulation = "sln" | "rtp" | "audiosocket";

/** The parts of the standard WebSocket this module uses. */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: ArrayBufferView | ArrayBuffer): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string; wasClean?: boolean }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

/** Options of {@link MediaStreamSocket}. Set exactly one of `callId` and `conferenceId`. */
export interface SocketOptions {
  /** Base URL of the gateway's HTTP endpoint, `ws://`, `wss://`, `http://` or `https://`. */
  baseUrl: string;
  callId?: string;
  conferenceId?: string;
  /** Wire form of each message; default `sln` (bare samples). */
  encapsulation?: SocketEncapsulation;
  /** Sample format; default `ulaw`. */
  format?: SocketFormat;
  /** Sent as the `token` query parameter (browsers cannot set WebSocket headers). */
  token?: string;
  /** WebSocket constructor to use instead of `globalThis.WebSocket`. */
  WebSocket?: new (url: string) => WebSocketLike;
}

/** A message from the shim: a chunk of audio, or a text message. */
export type SocketMessage = { kind: "audio"; data: Uint8Array } | { kind: "text"; data: string };

/** The socket closed abnormally (any close code but 1000, or a network error). */
export class MediaStreamSocketError extends Error {
  /** The WebSocket close code (1006 for a dropped connection). */
  readonly code: number;
  /** The close reason the server gave. */
  readonly reason: string;

  constructor(code: number, reason: string) {
    super(`mediastream socket closed with ${code}${reason ? `: ${reason}` : ""}`);
    this.name = "MediaStreamSocketError";
    this.code = code;
    this.reason = reason;
  }
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
  url.searchParams.set("format", options.format ?? "ulaw");
  if (options.token) {
    url.searchParams.set("token", options.token);
  }
  return url.toString();
}

const OPEN = 1;

/**
 * One media stream over the WebSocket shim. Iterate it once for what the
 * server sends; iteration ends when the socket closes normally and throws a
 * {@link MediaStreamSocketError} otherwise.
 */
export class MediaStreamSocket implements AsyncIterable<SocketMessage> {
  /** Resolves when the socket is open; rejects if it closes first. */
  readonly opened: Promise<void>;
  private readonly ws: WebSocketLike;
  private readonly queue: SocketMessage[] = [];
  private wake: (() => void) | undefined;
  private ended: { error?: MediaStreamSocketError } | undefined;

  constructor(options: SocketOptions) {
    const Ctor = options.WebSocket ?? (globalThis as { WebSocket?: new (url: string) => WebSocketLike }).WebSocket;
    if (!Ctor) {
      throw new Error("mediastream: no WebSocket implementation; pass options.WebSocket");
    }
    this.ws = new Ctor(mediaStreamUrl(options));
    this.ws.binaryType = "arraybuffer";
    this.opened = new Promise((resolve, reject) => {
      this.ws.onopen = () => resolve();
      this.ws.onclose = (ev) => {
        const error = ev.code === 1000 ? undefined : new MediaStreamSocketError(ev.code, ev.reason);
        this.ended = { error };
        reject(error ?? new MediaStreamSocketError(ev.code, ev.reason));
        this.notify();
      };
    });
    this.opened.catch(() => {}); // also reported by iteration
    this.ws.onerror = () => {}; // a close event follows with the code
    this.ws.onmessage = (ev) => {
      if (typeof ev.data === "string") {
        this.queue.push({ kind: "text", data: ev.data });
      } else if (ev.data instanceof ArrayBuffer) {
        this.queue.push({ kind: "audio", data: new Uint8Array(ev.data) });
      } else if (ArrayBuffer.isView(ev.data)) {
        const v = ev.data;
        this.queue.push({ kind: "audio", data: new Uint8Array(v.buffer, v.byteOffset, v.byteLength) });
      }
      this.notify();
    };
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** Sends one chunk of audio, in the stream's format and encapsulation. */
  send(chunk: Uint8Array): void {
    if (this.ws.readyState !== OPEN) {
      throw new Error("mediastream: the socket is not open");
    }
    this.ws.send(chunk);
  }

  /** Closes the socket normally. */
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
