// Scaling out: several gateway instances behind one load-balanced address,
// where a resume must reach the instance holding the stream. Unit tests on
// fake instances (gRPC servers on loopback ports); they need no gateway.
import assert from "node:assert/strict";
import { createServer, type Http2Session } from "node:http2";
import type { AddressInfo } from "node:net";
import { afterEach, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import { ErrorInfoSchema } from "../src/gen/google/rpc/error_details_pb.js";
import {
  ListenMediaResponseSchema,
  MediaStreamService,
  StreamMediaResponseSchema,
  StreamStartedSchema,
  type ListenMediaResponse,
  type StreamConfig as PbStreamConfig,
  type StreamMediaRequest,
  type StreamMediaResponse,
  type StreamStarted,
} from "../src/gen/voipbin/mediastream/v1/mediastream_pb.js";
import { MediaStreamClient, RPCError, type Resume } from "../src/index.js";

/**
 * A fake gateway instance. It starts every stream itself (advertising its
 * address), except resumes when `redirect` is set: those it refuses with
 * RESUME_WRONG_INSTANCE naming `redirect`.
 */
class Instance {
  addr = "";
  redirect = "";
  opens = 0;
  resumes: string[] = [];
  refused = 0;
  auth: string[] = [];
  accepted = 0;
  private readonly sessions = new Set<Http2Session>();
  private readonly server = createServer(
    connectNodeAdapter({
      routes: (router) =>
        router.service(MediaStreamService, {
          listenMedia: (req, ctx) => this.listenMedia(req.config, ctx),
          streamMedia: (reqs, ctx) => this.streamMedia(reqs, ctx),
        }),
    }),
  );

  constructor() {
    this.server.on("session", (s: Http2Session) => {
      this.accepted++;
      this.sessions.add(s);
      s.once("close", () => this.sessions.delete(s));
    });
  }

  private async *listenMedia(config: PbStreamConfig | undefined, ctx: HandlerContext): AsyncGenerator<ListenMediaResponse> {
    yield create(ListenMediaResponseSchema, { payload: { case: "started", value: this.begin(ctx, config) } });
    await aborted(ctx);
  }

  private async *streamMedia(reqs: AsyncIterable<StreamMediaRequest>, ctx: HandlerContext): AsyncGenerator<StreamMediaResponse> {
    const first = await reqs[Symbol.asyncIterator]().next();
    const config = first.done || first.value.payload.case !== "config" ? undefined : first.value.payload.value;
    yield create(StreamMediaResponseSchema, { payload: { case: "started", value: this.begin(ctx, config) } });
    await aborted(ctx);
  }

  get openConnections(): number {
    return this.sessions.size;
  }

  async start(): Promise<this> {
    await new Promise<void>((res) => this.server.listen(0, "127.0.0.1", res));
    this.addr = `127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    for (const s of this.sessions) {
      s.destroy();
    }
    await new Promise((res) => this.server.close(res));
  }

  begin(ctx: HandlerContext, config: PbStreamConfig | undefined): StreamStarted {
    this.auth.push(ctx.requestHeader.get("authorization") ?? "");
    const started = {
      streamId: `s-${this.addr}`,
      sampleRateHz: 8000,
      frameBytes: 320,
      chunkMs: 20,
      instanceAddress: this.addr,
    };
    const resume = config?.resume;
    if (!resume) {
      this.opens++;
      return create(StreamStartedSchema, { ...started, resumeToken: `tok@${this.addr}` });
    }
    if (this.redirect) {
      this.refused++;
      throw new ConnectError("the stream is held by another instance", Code.NotFound, undefined, [
        {
          desc: ErrorInfoSchema,
          value: create(ErrorInfoSchema, {
            reason: "RESUME_WRONG_INSTANCE",
            domain: "test",
            metadata: { instance_address: this.redirect },
          }),
        },
      ]);
    }
    this.resumes.push(resume.token);
    return create(StreamStartedSchema, { ...started, resumeToken: resume.token, resumed: true });
  }
}

function aborted(ctx: HandlerContext): Promise<void> {
  return new Promise((res) => {
    if (ctx.signal.aborted) {
      res();
    }
    ctx.signal.addEventListener("abort", () => res(), { once: true });
  });
}

const running: Instance[] = [];
const clients: MediaStreamClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) {
    c.close();
  }
  await Promise.all(running.splice(0).map((i) => i.stop()));
});

async function startInstance(): Promise<Instance> {
  const i = await new Instance().start();
  running.push(i);
  return i;
}

/** A load-balanced address (holding no streams, redirecting every resume) and the holder. */
async function cluster(): Promise<{ lb: Instance; holder: Instance }> {
  const lb = await startInstance();
  const holder = await startInstance();
  lb.redirect = holder.addr;
  return { lb, holder };
}

function client(...args: ConstructorParameters<typeof MediaStreamClient>): MediaStreamClient {
  const c = new MediaStreamClient(...args);
  clients.push(c);
  return c;
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) {
      assert.fail(`timed out waiting until ${what}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("behind a load balancer", () => {
  it("carries the instance address in info and resumeFrom()", async () => {
    const holder = await startInstance();
    const stream = await client(holder.addr).listen({ callId: "c", resumable: true });
    assert.equal(stream.info.instanceAddress, holder.addr);
    assert.deepEqual(stream.resumeFrom(), { token: `tok@${holder.addr}`, instanceAddress: holder.addr });
    stream.close();
  });

  it("sends a resume to the instance address, with the client's options, on one kept connection", async () => {
    const { lb, holder } = await cluster();
    const c = client(lb.addr, { token: "secret" });
    const resume: Resume = { token: `tok@${holder.addr}`, instanceAddress: holder.addr };
    const listen = await c.listen({ callId: "c", resume });
    const duplex = await c.stream({ callId: "c", resume });
    for (const s of [listen, duplex]) {
      assert.equal(s.info.resumed, true);
      assert.equal(s.info.instanceAddress, holder.addr);
    }
    assert.deepEqual(holder.resumes, [resume.token, resume.token]);
    assert.equal(lb.refused, 0, "the load balancer saw no resume");
    assert.deepEqual(holder.auth, ["Bearer secret", "Bearer secret"]);
    assert.equal(holder.accepted, 1, "one connection to the holder, kept for the second resume");

    // New streams still go to the load-balanced address.
    const fresh = await c.listen({ callId: "c" });
    assert.equal(fresh.info.instanceAddress, lb.addr);
    assert.deepEqual([lb.opens, holder.opens], [1, 0]);

    // close() closes the connection to the instance too.
    for (const s of [listen, duplex, fresh]) {
      s.close();
    }
    c.close();
    await until(() => holder.openConnections === 0, "the connection to the holder is closed");
    await assert.rejects(c.listen({ callId: "c", resume }), (err: unknown) => err instanceof RPCError);
  });

  it("uses its own connection for a resume at its own target", async () => {
    const holder = await startInstance();
    const stream = await client(holder.addr).listen({ callId: "c", resume: { token: "t", instanceAddress: holder.addr } });
    assert.equal(stream.info.resumed, true);
    assert.equal(holder.accepted, 1);
    stream.close();
  });

  it("resumes through its own target when the instance cannot be reached", async () => {
    // The instance advertises an address nothing listens on (NAT, outside the cluster).
    const lb = await startInstance();
    const stream = await client(lb.addr).listen({ callId: "c", resume: { token: "t", instanceAddress: "127.0.0.1:1" } });
    assert.equal(stream.info.resumed, true);
    assert.deepEqual(lb.resumes, ["t"]);
    stream.close();
  });

  it("retries a resume that reached the wrong instance where the server says", async () => {
    const { lb, holder } = await cluster();
    const c = client(lb.addr, { token: "secret", allowedInstances: [holder.addr] });
    for (const resume of [{ token: "tok1" }, { token: "tok2", instanceAddress: lb.addr }]) {
      const stream = await c.stream({ callId: "c", resume });
      assert.equal(stream.info.resumed, true);
      assert.equal(stream.info.instanceAddress, holder.addr);
      stream.close();
    }
    assert.deepEqual(holder.resumes, ["tok1", "tok2"]);
    assert.equal(lb.refused, 2);
    assert.deepEqual(holder.auth, ["Bearer secret", "Bearer secret"]);
  });

  it("retries only once", async () => {
    const a = await startInstance();
    const b = await startInstance();
    a.redirect = b.addr;
    b.redirect = a.addr; // each names the other
    const c = client(a.addr, { allowedInstances: [a.addr, b.addr] });
    await assert.rejects(c.listen({ callId: "c", resume: { token: "t" } }), (err: unknown) => {
      assert.ok(err instanceof RPCError);
      assert.deepEqual([err.code, err.reason, err.metadata.instance_address], [Code.NotFound, "RESUME_WRONG_INSTANCE", a.addr]);
      return true;
    });
    assert.deepEqual([a.refused, b.refused], [1, 1]);
  });

  it("does not follow a refusal to an address it does not allow (a forged token)", async () => {
    const { lb, holder } = await cluster();
    const c = client(lb.addr, { token: "secret", allowedInstances: ["other.example:443"] });
    await assert.rejects(c.listen({ callId: "c", resume: { token: "forged" } }), (err: unknown) => {
      assert.ok(err instanceof RPCError);
      assert.deepEqual([err.reason, err.metadata.instance_address], ["RESUME_WRONG_INSTANCE", holder.addr]);
      return true;
    });
    assert.equal(holder.accepted, 0);
    assert.deepEqual(holder.auth, []);
  });

  it("with a transport of the caller's, reaches single instances only through instanceTransport", async () => {
    const { lb, holder } = await cluster();
    const transport = createGrpcTransport({ baseUrl: `http://${lb.addr}` });
    const resume = { token: "t", instanceAddress: holder.addr };
    await assert.rejects(
      client(lb.addr, { transport }).listen({ callId: "c", resume }),
      (err: unknown) => err instanceof RPCError && err.code === Code.NotFound,
    );
    assert.equal(holder.accepted, 0);

    const made: string[] = [];
    const c = client(lb.addr, {
      transport,
      instanceTransport: (address) => {
        made.push(address);
        return createGrpcTransport({ baseUrl: `http://${address}` });
      },
    });
    const stream = await c.listen({ callId: "c", resume });
    assert.equal(stream.info.resumed, true);
    assert.equal(stream.info.instanceAddress, holder.addr);
    assert.deepEqual(made, [holder.addr]);
    stream.close();
  });
});

describe("a stream refused before it started", () => {
  /** A fake gateway refusing its first `refuse` streams with UNAVAILABLE and `reason`. */
  async function refusing(refuse: number, reason: string): Promise<{ addr: string; calls: () => number; targets: string[] }> {
    let calls = 0;
    const targets: string[] = [];
    const server = createServer(
      connectNodeAdapter({
        routes: (router) =>
          router.service(MediaStreamService, {
            listenMedia: async function* (_req, ctx) {
              calls++;
              targets.push(ctx.requestHeader.get("x-mediastream-target") ?? "");
              if (calls <= refuse) {
                throw new ConnectError("refused for the test", Code.Unavailable, undefined, [
                  { desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { reason, domain: "test" }) },
                ]);
              }
              yield create(ListenMediaResponseSchema, {
                payload: { case: "started", value: create(StreamStartedSchema, { streamId: "s", sampleRateHz: 8000, frameBytes: 160, chunkMs: 20 }) },
              });
              await aborted(ctx);
            },
          }),
      }),
    );
    const sessions = new Set<Http2Session>();
    server.on("session", (s: Http2Session) => {
      sessions.add(s);
      s.once("close", () => sessions.delete(s));
    });
    await new Promise<void>((res) => server.listen(0, "127.0.0.1", res));
    running.push({
      stop: async () => {
        for (const s of sessions) {
          s.destroy();
        }
        await new Promise((res) => server.close(res));
      },
    } as unknown as Instance);
    return { addr: `127.0.0.1:${(server.address() as AddressInfo).port}`, calls: () => calls, targets };
  }

  it("is opened again when a draining instance refused it", async () => {
    const fake = await refusing(2, "DRAINING");
    const client = new MediaStreamClient(fake.addr);
    clients.push(client);
    const stream = await client.listen({ callId: "call" });
    stream.close();
    assert.equal(fake.calls(), 3, "two refusals, then the stream");
    assert.deepEqual(fake.targets, ["call:call", "call:call", "call:call"], "every attempt names the call for the proxy");
  });

  it("is opened again a bounded number of times", async () => {
    const fake = await refusing(100, "DRAINING");
    const client = new MediaStreamClient(fake.addr, { openRetries: 2 });
    clients.push(client);
    await assert.rejects(client.listen({ callId: "call" }), (err: unknown) => err instanceof RPCError && err.reason === "DRAINING");
    assert.equal(fake.calls(), 3, "the first attempt and two more");
  });

  it("is not opened again after an UNAVAILABLE the gateway gave a reason for", async () => {
    const fake = await refusing(1, "ASTERISK_UNAVAILABLE");
    const client = new MediaStreamClient(fake.addr);
    clients.push(client);
    await assert.rejects(client.listen({ callId: "call" }), (err: unknown) => err instanceof RPCError && err.reason === "ASTERISK_UNAVAILABLE");
    assert.equal(fake.calls(), 1);
  });
});
