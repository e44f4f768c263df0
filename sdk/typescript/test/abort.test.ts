// Cancellation with an AbortSignal (issue 21): aborting the `signal` of a
// stream cancels it and rejects as `fetch` does, with a DOMException named
// AbortError; `cancel()` still gives RPCError CANCELLED.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { AudioFormat, Code, MediaStreamClient, RPCError } from "../src/index.js";
import { startGateway, type Gateway } from "./gateway.js";

const LIMIT = { timeout: 30_000 };

function isAbortError(err: unknown): boolean {
  return err instanceof DOMException && err.name === "AbortError";
}

describe("AbortSignal", () => {
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

  it("an aborted signal rejects listen and stream with AbortError before anything is sent", LIMIT, async () => {
    const signal = AbortSignal.abort();
    await assert.rejects(client.listen({ callId: gw.demo.tone_call! }, { signal }), isAbortError);
    await assert.rejects(client.stream({ callId: gw.demo.echo_call! }, { signal }), isAbortError);
  });

  it("aborting mid-stream ends the iteration with AbortError, and the stream is cancelled", LIMIT, async () => {
    const controller = new AbortController();
    const stream = await client.listen({ callId: gw.demo.tone_call!, format: AudioFormat.SLIN }, { signal: controller.signal });
    let chunks = 0;
    await assert.rejects(async () => {
      for await (const ev of stream) {
        if (ev.kind === "audio" && ++chunks === 5) {
          controller.abort();
        }
      }
    }, isAbortError);
    assert.equal(chunks, 5, "no audio after the abort");
    await assert.rejects(stream.waitStopped(), isAbortError);
  });

  it("a send after the abort rejects with AbortError; the abort's own reason is kept as cause", LIMIT, async () => {
    const controller = new AbortController();
    const stream = await client.stream({ callId: gw.demo.echo_call!, format: AudioFormat.SLIN }, { signal: controller.signal });
    await stream.send(new Uint8Array(320));
    const reason = new Error("the caller hung up");
    controller.abort(reason);
    await assert.rejects(stream.send(new Uint8Array(320)), (err: unknown) => isAbortError(err) && (err as Error).cause === reason);
    await assert.rejects(stream.mark("late"), isAbortError);
  });

  it("cancel() without the signal is still RPCError CANCELLED", LIMIT, async () => {
    const controller = new AbortController();
    const stream = await client.stream({ callId: gw.demo.echo_call!, format: AudioFormat.SLIN }, { signal: controller.signal });
    stream.cancel();
    await assert.rejects(stream.send(new Uint8Array(320)), (err: unknown) => err instanceof RPCError && err.code === Code.Canceled);
  });
});
