// Scaling out against real gateways: two instances, each advertising its own
// address (--advertise-address); the second stands in for the load-balanced
// address, where a resume of a stream held by the first lands.
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { after, before, describe, it } from "node:test";
import { AudioFormat, MediaStreamClient, type AudioChunk, type ListenStream } from "../src/index.js";
import { startOwnGateway, type Gateway } from "./gateway.js";

async function freeAddress(): Promise<string> {
  const server = createServer();
  await new Promise<void>((res) => server.listen(0, "127.0.0.1", res));
  const { port } = server.address() as { port: number };
  await new Promise((res) => server.close(res));
  return `127.0.0.1:${port}`;
}

async function advertising(): Promise<Gateway> {
  // The advertised address is needed up front, so a free port is picked and let go
  // before the gateway binds it; on a busy machine another process may take it in
  // between: then try a fresh one.
  for (let attempt = 1; ; attempt++) {
    const address = await freeAddress();
    try {
      return await startOwnGateway("--grpc-listen", address, "--advertise-address", address, "--drain-timeout-s", "1");
    } catch (err) {
      if (attempt >= 3) {
        throw err;
      }
    }
  }
}

async function firstAudio(stream: ListenStream): Promise<AudioChunk> {
  for await (const ev of stream) {
    if (ev.kind === "audio") {
      return ev;
    }
  }
  throw new Error("the stream ended without audio");
}

describe("resumes across real gateway instances", () => {
  let holder: Gateway;
  let other: Gateway;
  const clients: MediaStreamClient[] = [];

  before(async () => {
    [holder, other] = await Promise.all([advertising(), advertising()]);
  });

  after(async () => {
    for (const c of clients) {
      c.close();
    }
    await Promise.all([holder?.stop(), other?.stop()]);
  });

  it("sends a resume to the advertised instance, and follows RESUME_WRONG_INSTANCE", async () => {
    const owner = new MediaStreamClient(holder.grpc);
    const client = new MediaStreamClient(other.grpc, { allowedInstances: [holder.grpc] });
    clients.push(owner, client);
    const config = { callId: holder.demo.tone_call!, format: AudioFormat.SLIN, resumable: true };

    const stream = await owner.listen(config);
    assert.equal(stream.info.instanceAddress, holder.grpc);
    const it = stream[Symbol.asyncIterator]();
    for (let n = 0; n < 5; ) {
      const { value } = await it.next();
      n += value?.kind === "audio" ? 1 : 0;
    }
    const resume = stream.resumeFrom();
    assert.equal(resume.instanceAddress, holder.grpc);
    assert.notEqual(resume.lastSequenceNumber, undefined);
    stream.close(); // the client vanishes; the stream waits for a resume

    const resumed = await client.listen({ ...config, resume });
    assert.deepEqual(
      [resumed.info.resumed, resumed.info.streamId, resumed.info.instanceAddress],
      [true, stream.info.streamId, holder.grpc],
    );
    assert.equal((await firstAudio(resumed)).sequenceNumber, resume.lastSequenceNumber! + 1);
    resumed.close();

    // Without the address the resume reaches the other instance, which names the holder
    // (followed: the client allows that address).
    const again = await client.listen({ ...config, resume: { ...resumed.resumeFrom(), instanceAddress: "" } });
    assert.deepEqual(
      [again.info.resumed, again.info.streamId, again.info.instanceAddress],
      [true, stream.info.streamId, holder.grpc],
    );
    await firstAudio(again);
    again.close();
  });
});
