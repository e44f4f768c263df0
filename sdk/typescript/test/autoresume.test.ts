// autoResume against the real gateway: a connection cut under a stream is
// mended behind the iterator, as the Go and Python SDKs do (issue 21).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, MediaStreamClient, RPCError } from "../src/index.js";
import { CutProxy } from "./cutproxy.js";
import { startGateway, type Gateway } from "./gateway.js";

const LIMIT = { timeout: 30_000 };

describe("autoResume", () => {
  let gw: Gateway;

  before(async () => {
    gw = await startGateway();
  });

  after(async () => {
    await gw?.stop();
  });

  /** Listens to the tone call through a proxy cut after 20 chunks: the sequence numbers of up to 80 chunks, or the error. */
  async function listenThroughCut(autoResume: boolean): Promise<{ seqs: number[]; error?: unknown; resumes: number }> {
    const proxy = new CutProxy(gw.grpc);
    const client = new MediaStreamClient(await proxy.start());
    const seqs: number[] = [];
    const stream = await client.listen({ callId: gw.demo.tone_call!, autoResume });
    try {
      for await (const ev of stream) {
        if (ev.kind !== "audio") {
          continue;
        }
        seqs.push(ev.sequenceNumber);
        if (seqs.length === 20) {
          proxy.cut();
        }
        if (seqs.length === 80) {
          break;
        }
      }
      return { seqs, resumes: stream.resumes };
    } catch (error) {
      return { seqs, error, resumes: stream.resumes };
    } finally {
      stream.cancel();
      client.close();
      await proxy.close();
    }
  }

  it("resumes a listen-only stream by itself after a drop, with contiguous sequence numbers", LIMIT, async () => {
    const { seqs, error, resumes } = await listenThroughCut(true);
    assert.equal(error, undefined);
    assert.deepEqual(
      seqs,
      Array.from({ length: 80 }, (_, i) => i),
    );
    assert.equal(resumes, 1);
  });

  it("without it, the same drop fails the stream with UNAVAILABLE", LIMIT, async () => {
    const { seqs, error, resumes } = await listenThroughCut(false);
    assert.ok(error instanceof RPCError && error.code === Code.Unavailable, `after ${seqs.length} chunks: ${String(error)}`);
    assert.equal(resumes, 0);
  });
});
