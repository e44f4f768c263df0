// One behaviour in three languages (issue 21): what the TypeScript SDK does where
// the Go and Python SDKs do the same. Unit tests on a scripted stream, and tests
// against a real gateway (the suite's, or one of their own to SIGKILL).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { inspect } from "node:util";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  AudioFormat,
  Code,
  ConfigError,
  Direction,
  DuplexStream,
  Encapsulation,
  ExternalMediaEncapsulation,
  ExternalMediaStatus,
  FlowState,
  MediaStreamClient,
  MediaTransport,
  RPCError,
  StopReason,
  type StreamEvent,
} from "../src/index.js";
import * as wireExternal from "../src/gen/voipbin/mediastream/v1/external_media_pb.js";
import * as wire from "../src/gen/voipbin/mediastream/v1/mediastream_pb.js";
import {
  AudioFormat as WireAudioFormat,
  FlowState as WireFlowState,
  StreamMediaResponseSchema,
  type StreamMediaRequest,
  type StreamMediaResponse,
} from "../src/gen/voipbin/mediastream/v1/mediastream_pb.js";
import { RequestQueue } from "../src/queue.js";
import { repoRoot, startGateway, startOwnGateway, type Gateway } from "./gateway.js";

const LIMIT = { timeout: 30_000 };

/** Responses the test hands to a stream one at a time. */
class Script implements AsyncIterator<StreamMediaResponse> {
  private queued: StreamMediaResponse[] = [];
  private waiting: ((r: IteratorResult<StreamMediaResponse>) => void) | undefined;

  push(payload: NonNullable<MessageInitShape<typeof StreamMediaResponseSchema>["payload"]>): void {
    const msg = create(StreamMediaResponseSchema, { payload });
    if (this.waiting) {
      const wake = this.waiting;
      this.waiting = undefined;
      wake({ value: msg, done: false });
    } else {
      this.queued.push(msg);
    }
  }

  next(): Promise<IteratorResult<StreamMediaResponse>> {
    const msg = this.queued.shift();
    if (msg) {
      return Promise.resolve({ value: msg, done: false });
    }
    return new Promise((wake) => (this.waiting = wake));
  }
}

/** A two-way stream on a scripted server, started in SLIN, and what it sends. */
async function scripted(): Promise<{ stream: DuplexStream; script: Script; sent: StreamMediaRequest[] }> {
  const script = new Script();
  const requests = new RequestQueue<StreamMediaRequest>();
  const sent: StreamMediaRequest[] = [];
  void (async () => {
    for await (const r of requests) {
      sent.push(r);
    }
  })();
  script.push({ case: "started", value: { streamId: "s", format: WireAudioFormat.SLIN, sampleRateHz: 8000, frameBytes: 320, chunkMs: 20 } });
  const stream = new DuplexStream(script, requests, new AbortController());
  await stream.start();
  return { stream, script, sent };
}

/** The next event of an iteration that goes on. */
async function nextEvent(events: AsyncIterator<StreamEvent>): Promise<StreamEvent> {
  const r = await events.next();
  assert.ok(!r.done, "the stream ended");
  return r.value;
}

describe("enums print as names", () => {
  it("events and infos hold the names, so they print and serialise as names", async () => {
    const { stream, script } = await scripted();
    assert.equal(stream.info.format, "SLIN");
    assert.equal(stream.info.format, AudioFormat.SLIN);
    assert.match(JSON.stringify(stream.info), /"format":"SLIN"/);
    const events = stream[Symbol.asyncIterator]();
    script.push({ case: "flow", value: { state: WireFlowState.PAUSE, bufferedMs: 8000n } });
    const ev = await nextEvent(events);
    assert.match(inspect(ev), /state: 'PAUSE'/);
    assert.equal(ev.kind === "flow" && ev.state, FlowState.PAUSE);
    script.push({ case: "stopped", value: { reason: 1, detail: "" } });
    const stop = await nextEvent(events);
    assert.equal(stop.kind === "stopped" && stop.reason, StopReason.CLIENT_DONE);
    assert.match(inspect(stop), /reason: 'CLIENT_DONE'/);
  });
});

describe("the name enums", () => {
  it("have exactly the members of the generated protobuf enums", () => {
    const pairs: [object, object][] = [
      [AudioFormat, wire.AudioFormat],
      [Direction, wire.Direction],
      [Encapsulation, wire.Encapsulation],
      [MediaTransport, wire.MediaTransport],
      [StopReason, wire.StopReason],
      [FlowState, wire.FlowState],
      [ExternalMediaEncapsulation, wireExternal.ExternalMediaEncapsulation],
      [ExternalMediaStatus, wireExternal.ExternalMediaStatus],
    ];
    for (const [names, generated] of pairs) {
      const wanted = Object.entries(generated).filter(([, v]) => typeof v === "number").map(([k]) => [k, k]);
      assert.deepEqual(Object.entries(names).sort(), wanted.sort());
    }
  });
});

describe("send honours flow control", () => {
  it("waits while paused and sends on resume; waitWhilePaused = false sends at once", async () => {
    const { stream, script, sent } = await scripted();
    const events = stream[Symbol.asyncIterator]();
    script.push({ case: "flow", value: { state: WireFlowState.PAUSE, bufferedMs: 8000n } });
    await nextEvent(events);
    assert.equal(stream.paused, true);
    let done = false;
    const sending = stream.send(new Uint8Array(320)).then(() => (done = true));
    // A mark is control: it never waits for a pause, and is taken while the audio waits.
    await stream.mark("m");
    assert.deepEqual([sent.map((r) => r.payload.case), done], [["mark"], false]);
    script.push({ case: "flow", value: { state: WireFlowState.RESUME, bufferedMs: 3980n } });
    await nextEvent(events);
    await sending;
    assert.deepEqual(sent.map((r) => r.payload.case), ["mark", "audio"]);
    script.push({ case: "flow", value: { state: WireFlowState.PAUSE, bufferedMs: 8000n } });
    await nextEvent(events);
    stream.waitWhilePaused = false;
    await stream.send(new Uint8Array(320));
    assert.deepEqual(sent.map((r) => r.payload.case), ["mark", "audio", "audio"]);
    stream.cancel();
  });

  it("a sender waiting for resume is released, with an error, when the stream is cancelled", async () => {
    const { stream, script } = await scripted();
    const events = stream[Symbol.asyncIterator]();
    script.push({ case: "flow", value: { state: WireFlowState.PAUSE, bufferedMs: 8000n } });
    await nextEvent(events);
    const sending = stream.send(new Uint8Array(320));
    stream.cancel();
    await assert.rejects(sending, (err: unknown) => err instanceof RPCError && err.code === Code.Canceled);
  });
});

describe("invalid configs are refused locally", () => {
  it("with ConfigError and the server's reason names", async () => {
    const client = new MediaStreamClient("127.0.0.1:9"); // never dialled
    try {
      await assert.rejects(client.listen({ format: AudioFormat.SLIN }), (err: unknown) =>
        err instanceof ConfigError && err.reason === "MISSING_TARGET" && err.field === "config.target",
      );
      await assert.rejects(client.stream({ callId: "a", conferenceId: "b" }), (err: unknown) =>
        err instanceof ConfigError && err.reason === "BOTH_TARGETS" && err.field === "config.target",
      );
    } finally {
      client.close();
    }
  });
});

describe("the browser entry", () => {
  it("imports nothing, so it bundles without Node modules such as node:zlib", () => {
    const built = readFileSync(join(repoRoot(), "sdk", "typescript", "dist", "src", "browser.js"), "utf8");
    assert.doesNotMatch(built, /^\s*import\s|\bimport\(|\brequire\(|node:/m);
  });
});

describe("against the real gateway", () => {
  let gw: Gateway;
  let client: MediaStreamClient;

  before(async () => {
    gw = await startGateway();
    client = new MediaStreamClient(gw.grpc);
  });

  after(async () => {
    client?.close();
    await gw?.stop();
  });

  it("break out of for-await ends a listen-only stream", LIMIT, async () => {
    const stream = await client.listen({ callId: gw.demo.tone_call!, format: AudioFormat.SLIN });
    let n = 0;
    for await (const ev of stream) {
      if (ev.kind === "audio" && ++n === 3) {
        break;
      }
    }
    // The RPC was cancelled: iterating again ends at once, cancelled (without the
    // break's close the tone call's stream would go on for ever).
    await assert.rejects(
      async () => {
        for await (const _ of stream) {
          // nothing: the stream must be over
        }
      },
      (err: unknown) => err instanceof RPCError && err.code === Code.Canceled,
    );
  });

  it("break out of for-await after closeSend waits until what was sent has played", LIMIT, async () => {
    const stream = await client.stream({ callId: gw.demo.echo_call!, format: AudioFormat.SLIN });
    await stream.write(new Uint8Array(320 * 25)); // 500 ms
    stream.closeSend();
    for await (const ev of stream) {
      if (ev.kind === "audio") {
        break;
      }
    }
    assert.equal(stream.stopped?.reason, StopReason.CLIENT_DONE);
  });

  it("a send after the stream stopped rejects", LIMIT, async () => {
    const stream = await client.stream({ callId: gw.demo.echo_call!, format: AudioFormat.SLIN });
    await stream.send(new Uint8Array(320));
    stream.closeSend();
    assert.equal((await stream.waitStopped())?.reason, StopReason.CLIENT_DONE);
    await assert.rejects(stream.send(new Uint8Array(320)), (err: unknown) => err instanceof RPCError && err.code === Code.FailedPrecondition);
    await assert.rejects(stream.mark("late"), RPCError);
  });

  it("a gateway that vanishes (SIGKILL) fails the stream with UNAVAILABLE, as in Go and Python", LIMIT, async () => {
    const own = await startOwnGateway();
    const c = new MediaStreamClient(own.grpc);
    try {
      const stream = await c.listen({ callId: own.demo.tone_call!, format: AudioFormat.SLIN });
      const events = stream[Symbol.asyncIterator]();
      await nextEvent(events);
      await own.kill();
      await assert.rejects(
        async () => {
          for (;;) {
            if ((await events.next()).done) {
              return;
            }
          }
        },
        (err: unknown) => err instanceof RPCError && err.code === Code.Unavailable,
      );
    } finally {
      c.close();
      await own.stop();
    }
  });
});
