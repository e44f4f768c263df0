// The TypeScript SDK against the real gateway and its Asterisk emulator.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { AudioFormat, type DuplexStream, MediaStreamClient, RPCError, StopReason, chunkBytes } from "../src/index.js";
import { concat, dominantHz, fromPcm16, pcm16, sine, toneLevel } from "./audio.js";
import { startGateway, type Gateway } from "./gateway.js";

describe("the SDK against the real gateway", () => {
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

  it("hears the tone call at 440 Hz", async () => {
    const stream = await client.listen({ callId: gw.demo.tone_call!, format: AudioFormat.SLIN });
    assert.deepEqual([stream.info.sampleRateHz, stream.info.frameBytes, chunkBytes(stream.info)], [8000, 320, 320]);
    const parts: Uint8Array[] = [];
    for await (const data of stream.audio()) {
      assert.equal(data.length, 320);
      parts.push(data);
      if (parts.length === 60) {
        break; // 1.2 s
      }
    }
    stream.close();
    const samples = fromPcm16(concat(parts));
    assert.ok(Math.abs(dominantHz(samples, 8000) - 440) < 3, `dominant ${dominantHz(samples, 8000)} Hz`);
    assert.ok(toneLevel(samples, 8000, 440) > 5000);
  });

  it("gets back from the echo call what it sends", async () => {
    const stream = await client.stream({ callId: gw.demo.echo_call!, format: AudioFormat.SLIN });
    const received: Uint8Array[] = [];
    const reading = (async () => {
      for await (const ev of stream) {
        if (ev.kind === "audio") {
          received.push(ev.data);
        }
      }
    })();
    await stream.write(pcm16(sine(1000, 1000, 8000)));
    stream.closeSend();
    await reading;
    assert.equal(stream.stopped?.reason, StopReason.CLIENT_DONE);
    const back = fromPcm16(concat(received));
    assert.ok(Math.abs(dominantHz(back, 8000) - 1000) < 3, `dominant ${dominantHz(back, 8000)} Hz`);
    assert.ok((toneLevel(back, 8000, 1000) * back.length) / 8000 > 0.3 * 8000, "the echo carries the tone");
  });

  // Leaving a two-way stream (issue 16): after closeSend, close() waits until what was
  // sent has played. The lower bound (0.9 s for 1 s of audio) shows it waited; the upper
  // one is generous for a loaded machine.
  it("waits, when its block is left after closeSend, until the audio has played", async () => {
    let stream: DuplexStream | undefined;
    let left = 0;
    {
      await using s = await client.stream({ callId: gw.demo.echo_call!, format: AudioFormat.SLIN });
      stream = s;
      for (let i = 0; i < 50; i++) {
        await s.send(new Uint8Array(320));
      }
      s.closeSend();
      left = Date.now();
    }
    const waited = Date.now() - left;
    assert.equal(stream.stopped?.reason, StopReason.CLIENT_DONE);
    assert.ok(waited >= 900 && waited < 15_000, `waited ${waited} ms`);
  });

  it("cancels at once when closed without closeSend", async () => {
    const stream = await client.stream({ callId: gw.demo.echo_call!, format: AudioFormat.SLIN });
    for (let i = 0; i < 50; i++) {
      await stream.send(new Uint8Array(320));
    }
    const start = Date.now();
    await stream.close();
    assert.ok(Date.now() - start < 500);
    assert.equal(stream.stopped, undefined);
  });

  it("waitStopped gives up after its timeout and cancels the stream", async () => {
    const stream = await client.stream({ callId: gw.demo.echo_call!, format: AudioFormat.SLIN });
    await assert.rejects(stream.waitStopped(50), (err: unknown) => err instanceof RPCError && err.code === 4);
    assert.equal(stream.stopped, undefined);
  });

  it("is refused NOT_FOUND / CALL_NOT_FOUND for an unknown call", async () => {
    await assert.rejects(client.listen({ callId: "no-such-call" }), (err: unknown) => {
      assert.ok(err instanceof RPCError);
      assert.equal(err.codeName, "NOT_FOUND");
      assert.equal(err.reason, "CALL_NOT_FOUND");
      assert.deepEqual(err.metadata, { call_id: "no-such-call" });
      assert.notEqual(err.domain, "");
      return true;
    });
  });

  it("is refused INVALID_ARGUMENT naming config.chunk_ms for chunk_ms 30", async () => {
    await assert.rejects(client.stream({ callId: gw.demo.tone_call!, chunkMs: 30 }), (err: unknown) => {
      assert.ok(err instanceof RPCError);
      assert.equal(err.codeName, "INVALID_ARGUMENT");
      assert.deepEqual(
        err.fieldViolations.map((v) => v.field),
        ["config.chunk_ms"],
      );
      return true;
    });
  });

  // Barge-in beside the stream (issue 16): clear() goes by ControlStream, so it overtakes a
  // burst of 60 s; one `cleared` names the mark sent before it, and the next audio plays
  // right after the cut (nothing of the burst).
  it("clears a burst of 60 s at once, with one cleared naming the mark", async () => {
    const stream = await client.stream({ callId: gw.demo.echo_call!, format: AudioFormat.SLIN });
    stream.waitWhilePaused = false;
    const frame = new Uint8Array(320);
    for (let i = 0; i < 60 * 50; i++) {
      await stream.send(frame);
    }
    await stream.mark("end-of-speech");
    await stream.clear();
    await stream.send(frame);
    await stream.mark("after");
    const seen: { kind: string; positionMs: number; droppedMarks?: string[]; name?: string }[] = [];
    for await (const ev of stream) {
      if (ev.kind === "cleared" || ev.kind === "mark") {
        seen.push(ev);
      }
      if (ev.kind === "mark") {
        break;
      }
    }
    stream.cancel();
    assert.equal(seen.length, 2, JSON.stringify(seen));
    const [cleared, mark] = seen;
    assert.deepEqual([cleared!.kind, cleared!.droppedMarks], ["cleared", ["end-of-speech"]]);
    assert.equal(mark!.name, "after");
    assert.ok(mark!.positionMs <= cleared!.positionMs + 80, JSON.stringify(seen));
  });

  it("rejects clear and hangup on an ended stream with FAILED_PRECONDITION, as send", async () => {
    const stream = await client.stream({ callId: gw.demo.echo_call!, format: AudioFormat.SLIN });
    stream.closeSend();
    await stream.waitStopped(10_000);
    for (const command of [() => stream.clear(), () => stream.hangup()]) {
      await assert.rejects(command(), (err: unknown) => err instanceof RPCError && err.codeName === "FAILED_PRECONDITION");
    }
  });
});
