// Unit tests that need no gateway: errors, the request queue, the browser socket.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { MediaStreamSocket, MediaStreamSocketError, mediaStreamUrl, type WebSocketLike } from "../src/browser.js";
import { RPCError, codeName } from "../src/errors.js";
import { BadRequestSchema, ErrorInfoSchema } from "../src/gen/google/rpc/error_details_pb.js";
import { RequestQueue } from "../src/queue.js";
import { dominantHz, fromUlaw, sine, ulaw } from "./audio.js";

describe("RPCError", () => {
  it("parses ErrorInfo and BadRequest details", () => {
    const err = new ConnectError("bad chunk", Code.InvalidArgument, undefined, [
      { desc: BadRequestSchema, value: create(BadRequestSchema, { fieldViolations: [{ field: "config.chunk_ms", description: "x" }] }) },
      { desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { reason: "BAD", domain: "d", metadata: { k: "v" } }) },
    ]);
    const rpc = RPCError.from(err);
    assert.equal(rpc.codeName, "INVALID_ARGUMENT");
    assert.equal(rpc.rawMessage, "bad chunk");
    assert.deepEqual([rpc.reason, rpc.domain, rpc.metadata, rpc.field], ["BAD", "d", { k: "v" }, "config.chunk_ms"]);
    assert.match(rpc.message, /INVALID_ARGUMENT: bad chunk \(BAD\)/);
  });

  it("wraps errors without details", () => {
    const rpc = RPCError.from(new Error("boom"));
    assert.equal(rpc.codeName, "UNKNOWN");
    assert.deepEqual([rpc.reason, rpc.fieldViolations], ["", []]);
    assert.equal(codeName(Code.NotFound), "NOT_FOUND");
  });
});

describe("RequestQueue", () => {
  it("resolves a push only when the consumer takes it, and ends after close", async () => {
    const q = new RequestQueue<number>();
    let taken = false;
    const pushed = q.push(1).then(() => {
      taken = true;
    });
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(taken, false);
    const it = q[Symbol.asyncIterator]();
    assert.deepEqual(await it.next(), { value: 1, done: false });
    await pushed;
    assert.equal(taken, true);
    const later = it.next();
    void q.push(2);
    assert.deepEqual(await later, { value: 2, done: false });
    q.close();
    assert.equal((await it.next()).done, true);
    await assert.rejects(q.push(3));
  });
});

describe("test audio helpers", () => {
  it("find the dominant frequency through a mu-law round trip", () => {
    const back = fromUlaw(ulaw(sine(700, 500, 8000, 9000)));
    assert.ok(Math.abs(dominantHz(back, 8000) - 700) < 1);
  });
});

class FakeSocket implements WebSocketLike {
  static last: FakeSocket | undefined;
  binaryType = "blob";
  readyState = 0;
  sent: unknown[] = [];
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  constructor(readonly url: string) {
    FakeSocket.last = this;
  }
  send(data: unknown): void {
    this.sent.push(data);
  }
  close(code = 1000, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
}

describe("browser MediaStreamSocket", () => {
  it("builds the shim URL", () => {
    assert.equal(
      mediaStreamUrl({ baseUrl: "https://gw.example/base/", callId: "a b", format: "slin", token: "t" }),
      "wss://gw.example/base/v1.0/calls/a%20b/media_stream?encapsulation=sln&format=slin&token=t",
    );
    assert.equal(
      mediaStreamUrl({ baseUrl: "http://127.0.0.1:8080", conferenceId: "c", encapsulation: "rtp" }),
      "ws://127.0.0.1:8080/v1.0/conferences/c/media_stream?encapsulation=rtp&format=ulaw",
    );
    assert.throws(() => mediaStreamUrl({ baseUrl: "http://h", callId: "a", conferenceId: "b" }));
  });

  it("yields binary messages as audio and text as text, and sends audio", async () => {
    const socket = new MediaStreamSocket({ baseUrl: "http://h", callId: "c", WebSocket: FakeSocket });
    const fake = FakeSocket.last!;
    assert.equal(fake.binaryType, "arraybuffer");
    fake.open();
    await socket.opened;
    socket.send(new Uint8Array([1, 2]));
    assert.equal(fake.sent.length, 1);
    fake.onmessage?.({ data: new Uint8Array([7, 8, 9]).buffer });
    fake.onmessage?.({ data: '{"event":"x"}' });
    fake.close(1000, "done");
    const got = [];
    for await (const m of socket) {
      got.push(m);
    }
    assert.deepEqual(got, [
      { kind: "audio", data: new Uint8Array([7, 8, 9]) },
      { kind: "text", data: '{"event":"x"}' },
    ]);
  });

  it("throws MediaStreamSocketError on an abnormal close", async () => {
    const socket = new MediaStreamSocket({ baseUrl: "http://h", callId: "c", WebSocket: FakeSocket });
    FakeSocket.last!.close(4404, "call not found");
    await assert.rejects(socket.opened, MediaStreamSocketError);
    await assert.rejects(
      (async () => {
        for await (const _ of socket) {
          // nothing arrives
        }
      })(),
      (err: unknown) => err instanceof MediaStreamSocketError && err.code === 4404 && err.reason === "call not found",
    );
  });
});
