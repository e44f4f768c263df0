// The TypeScript runner of the conformance suite in tests/conformance/scenarios.json
// (format: tests/conformance/README.md). Each scenario is one test.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
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
  ListenStream,
  MediaStreamClient,
  MediaTransport,
  RPCError,
  StopReason,
  chunkBytes,
  type AudioChunk,
  type ExternalMedia,
  type Stopped,
  type StreamConfig,
  type StreamEvent,
  type StreamInfo,
} from "../src/index.js";
import { dominantHz, fromPcm16, fromUlaw, pcm16, sine, toneLevel, ulaw } from "./audio.js";
import { CutProxy } from "./cutproxy.js";
import { repoRoot, startGateway, type Gateway } from "./gateway.js";

const RUNNER = "typescript";

type Args = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
interface Scenario {
  name: string;
  description: string;
  skip?: Record<string, string>;
  timeout_ms?: number;
  steps: Record<string, Args>[];
}

const suite = JSON.parse(readFileSync(join(repoRoot(), "tests", "conformance", "scenarios.json"), "utf8")) as {
  format: number;
  scenarios: Scenario[];
};

const FORMATS: Record<string, AudioFormat> = {
  unspecified: AudioFormat.UNSPECIFIED,
  ulaw: AudioFormat.ULAW,
  slin: AudioFormat.SLIN,
  slin16: AudioFormat.SLIN16,
};
const DIRECTIONS: Record<string, Direction> = {
  unspecified: Direction.UNSPECIFIED,
  both: Direction.BOTH,
  in: Direction.IN,
  out: Direction.OUT,
};
const ENCAPSULATIONS: Record<string, Encapsulation> = {
  unspecified: Encapsulation.UNSPECIFIED,
  rtp: Encapsulation.RTP,
  sln: Encapsulation.SLN,
  audiosocket: Encapsulation.AUDIOSOCKET,
};
const TRANSPORTS: Record<string, MediaTransport> = {
  unspecified: MediaTransport.UNSPECIFIED,
  rtp: MediaTransport.RTP,
  audiosocket: MediaTransport.AUDIOSOCKET,
  websocket: MediaTransport.WEBSOCKET,
};
const EXTERNAL_ENCAPSULATIONS: Record<string, ExternalMediaEncapsulation> = {
  unspecified: ExternalMediaEncapsulation.UNSPECIFIED,
  rtp: ExternalMediaEncapsulation.RTP,
  audiosocket: ExternalMediaEncapsulation.AUDIOSOCKET,
  sln: ExternalMediaEncapsulation.SLN,
};
const EXTERNAL_STATUSES: Record<string, ExternalMediaStatus> = {
  running: ExternalMediaStatus.RUNNING,
  terminating: ExternalMediaStatus.TERMINATING,
  terminated: ExternalMediaStatus.TERMINATED,
};
const FLOW_STATES: Record<string, FlowState> = { pause: FlowState.PAUSE, resume: FlowState.RESUME };

/** An enum given by name (a key of table); the SDK's enums are names, so a number cannot be sent. */
function enumValue<T extends string>(value: unknown, table: Record<string, T>): T | undefined {
  if (value === undefined) {
    return undefined;
  }
  if (typeof value === "number") {
    throw new Error(`the TypeScript SDK cannot send enum number ${value}`);
  }
  const v = table[value as string];
  if (v === undefined) {
    throw new Error(`unknown enum name ${String(value)}`);
  }
  return v;
}

/** One open stream and everything received on it. */
class ConfStream {
  listen?: ListenStream;
  duplex?: DuplexStream;
  info?: StreamInfo;
  audio: AudioChunk[] = [];
  events: StreamEvent[] = [];
  stopped?: Stopped;
  done = false;
  error?: unknown;
  mark = 0;
  capture: AudioChunk[] = [];
  sends = 0;
  sentWhilePaused = 0;

  async receive(stream: ListenStream): Promise<void> {
    try {
      for await (const ev of stream) {
        if (ev.kind === "audio") {
          this.audio.push(ev);
        } else if (ev.kind === "stopped") {
          this.stopped = ev;
        } else {
          this.events.push(ev);
        }
      }
    } catch (err) {
      this.error = err;
    } finally {
      this.done = true;
    }
  }
}

class Runner {
  private readonly streams = new Map<string, ConfStream>();
  private readonly vars: Record<string, string>;

  constructor(
    private readonly client: MediaStreamClient,
    demo: Record<string, string>,
    private readonly deadline: number,
    /** Under `client`, when the scenario cuts its connection. */
    private readonly proxy?: CutProxy,
  ) {
    this.vars = { ...demo };
  }

  closeAll(): void {
    for (const s of this.streams.values()) {
      s.listen?.cancel();
    }
  }

  private subst(v: string | undefined): string | undefined {
    if (v?.startsWith("$")) {
      const id = this.vars[v.slice(1)];
      if (id === undefined) {
        throw new Error(`unknown variable ${v}`);
      }
      return id;
    }
    return v;
  }

  private async withDeadline(what: string, work: Promise<void>): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), Math.max(0, this.deadline - Date.now()));
    });
    try {
      await Promise.race([work, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async waitFor(what: string, cond: () => boolean): Promise<void> {
    while (!cond()) {
      if (Date.now() > this.deadline) {
        throw new Error(`timed out waiting for ${what}`);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  private stream(name = "main"): ConfStream {
    const s = this.streams.get(name);
    if (!s) {
      throw new Error(`no stream "${name}" was opened`);
    }
    return s;
  }

  private streamOK(name?: string): ConfStream {
    const s = this.stream(name);
    if (s.error !== undefined) {
      throw new Error(`unexpected error: ${String(s.error)}`);
    }
    return s;
  }

  private duplex(name?: string): DuplexStream {
    const s = this.streamOK(name);
    if (!s.duplex) {
      throw new Error("sending needs a stream opened with rpc stream");
    }
    return s.duplex;
  }

  async run(kind: string, a: Args): Promise<void> {
    switch (kind) {
      case "open":
        return this.open(a);
      case "expect_started":
        return this.expectStarted(a);
      case "expect_error":
        return this.expectError(a);
      case "expect_config_error":
        return this.expectConfigError(a);
      case "expect_sends_not_paused":
        return this.expectSendsNotPaused(a);
      case "expect_send_fails":
        return this.expectSendFails(a);
      case "send_tone":
      case "send_silence":
        return this.sendTone(kind, a);
      case "send_dtmf":
        return this.duplex(a.stream).sendDtmf(a.digits, a.duration_ms ?? 0);
      case "send_mark":
        return this.duplex(a.stream).mark(a.name);
      case "send_clear":
        return this.duplex(a.stream).clear();
      case "send_hangup":
        return this.duplex(a.stream).hangup();
      case "close_send":
        return this.duplex(a.stream).closeSend();
      case "receive_audio":
        return this.receiveAudio(a);
      case "expect_chunks":
        return this.expectChunks(a);
      case "expect_tone":
        return this.expectTone(a);
      case "expect_event":
        return this.expectEvent(a);
      case "expect_stopped":
        return this.expectStopped(a);
      case "cancel": {
        const s = this.stream(a.stream);
        s.listen?.cancel();
        return this.waitFor("the stream to end", () => s.done);
      }
      case "close": {
        // What `await using` does when the block is left; within the scenario's deadline.
        const s = this.stream(a.stream);
        await this.withDeadline("close()", (s.duplex ?? s.listen)?.close() ?? Promise.resolve());
        return;
      }
      case "cut_connection":
        if (!this.proxy) {
          throw new Error("the runner's client is not behind a proxy");
        }
        this.proxy.cut();
        return;
      case "sleep":
        return new Promise((r) => setTimeout(r, a.ms));
      case "external_media":
        return this.externalMedia(a);
    }
    throw new Error(`unknown step kind ${kind}`);
  }

  private config(c: Args): StreamConfig {
    const cfg: StreamConfig = {
      callId: this.subst(c.call_id),
      conferenceId: this.subst(c.conference_id),
      format: enumValue(c.format, FORMATS),
      direction: enumValue(c.direction, DIRECTIONS),
      chunkMs: c.chunk_ms,
      encapsulation: enumValue(c.encapsulation, ENCAPSULATIONS),
      transport: enumValue(c.transport, TRANSPORTS),
      resumable: c.resumable,
      autoResume: c.auto_resume,
    };
    if (c.resume?.from) {
      const from = this.stream(c.resume.from);
      if (!from.listen) {
        throw new Error(`stream ${c.resume.from} never started`);
      }
      cfg.resume = from.listen.resumeFrom();
    } else if (c.resume) {
      cfg.resume = { token: c.resume.token };
    }
    return cfg;
  }

  private async open(a: Args): Promise<void> {
    const s = new ConfStream();
    this.streams.set(a.stream ?? "main", s);
    const cfg = this.config(a.config ?? {});
    const options = a.deadline_ms === undefined ? {} : { timeoutMs: a.deadline_ms as number };
    try {
      if (a.rpc === "listen") {
        s.listen = await this.client.listen(cfg, options);
      } else if (a.rpc === "stream") {
        s.duplex = await this.client.stream(cfg, options);
        s.listen = s.duplex;
      } else {
        throw new Error(`rpc must be listen or stream, not ${a.rpc}`);
      }
    } catch (err) {
      if (!(err instanceof RPCError) && !(err instanceof ConfigError)) {
        throw err;
      }
      s.error = err;
      s.done = true;
      return; // expect_error (or expect_config_error) checks it; any other step fails on it
    }
    s.info = s.listen.info;
    void s.receive(s.listen);
  }

  private expectStarted(a: Args): void {
    const info = this.streamOK(a.stream).info!;
    const want: Record<string, unknown> = {};
    const got: Record<string, unknown> = {};
    const pick = (field: string, w: unknown, g: unknown): void => {
      if (w !== undefined) {
        want[field] = w;
        got[field] = g;
      }
    };
    pick("format", enumValue(a.format, FORMATS), info.format);
    pick("sample_rate_hz", a.sample_rate_hz, info.sampleRateHz);
    pick("frame_bytes", a.frame_bytes, info.frameBytes);
    pick("chunk_ms", a.chunk_ms, info.chunkMs);
    pick("encapsulation", enumValue(a.encapsulation, ENCAPSULATIONS), info.encapsulation);
    pick("transport", enumValue(a.transport, TRANSPORTS), info.transport);
    pick("resumed", a.resumed, info.resumed);
    assert.deepEqual(got, want);
  }

  private async expectError(a: Args): Promise<void> {
    const s = this.stream(a.stream);
    await this.waitFor("the stream to fail", () => s.done);
    checkError(a, s.error);
  }

  private expectConfigError(a: Args): void {
    const s = this.stream(a.stream);
    assert.ok(s.error instanceof ConfigError, `error ${String(s.error)} is not the SDK's ConfigError`);
    assert.deepEqual({ reason: s.error.reason, field: s.error.field }, { reason: a.reason, field: a.field });
  }

  private async sendTone(kind: string, a: Args): Promise<void> {
    const s = this.streamOK(a.stream);
    const d = this.duplex(a.stream);
    const info = s.info!;
    if (info.encapsulation !== Encapsulation.SLN && info.encapsulation !== Encapsulation.UNSPECIFIED) {
      throw new Error(`the runners send bare samples only, not ${Encapsulation[info.encapsulation]}`);
    }
    const amplitude = kind === "send_silence" ? 0 : (a.amplitude ?? 8000);
    const tone = sine(kind === "send_silence" ? 0 : a.hz, a.ms, info.sampleRateHz, amplitude);
    const data = info.format === AudioFormat.ULAW ? ulaw(tone) : pcm16(tone);
    const size = chunkBytes(info);
    for (let at = 0; at < data.length; at += size) {
      await d.send(data.subarray(at, at + size));
      s.sends++;
      s.sentWhilePaused += d.paused ? 1 : 0;
    }
  }

  private expectSendsNotPaused(a: Args): void {
    const s = this.stream(a.stream);
    assert.ok(s.sends > 0, "nothing was sent");
    assert.ok(s.sentWhilePaused <= 1, `${s.sentWhilePaused} of ${s.sends} sends returned while the stream was paused`);
  }

  private async expectSendFails(a: Args): Promise<void> {
    const s = this.stream(a.stream);
    assert.ok(s.duplex, "expect_send_fails needs a stream opened with rpc stream");
    await assert.rejects(
      s.duplex.send(new Uint8Array(s.info!.frameBytes)),
      (err: unknown) => err instanceof RPCError && err.code === Code.FailedPrecondition,
    );
  }

  private async receiveAudio(a: Args): Promise<void> {
    const s = this.streamOK(a.stream);
    if (a.until === "stopped") {
      await this.waitFor("the stream to stop", () => s.done);
    } else if (a.ms > 0) {
      await this.waitFor(`${a.ms} ms of audio`, () => (s.audio.length - s.mark) * s.info!.chunkMs >= a.ms || s.done);
    } else {
      throw new Error('receive_audio needs ms or until: "stopped"');
    }
    if (s.error !== undefined) {
      throw new Error(`unexpected error: ${String(s.error)}`);
    }
    s.capture = s.audio.slice(s.mark);
    s.mark = s.audio.length;
    if (a.ms > 0 && s.capture.length * s.info!.chunkMs < a.ms) {
      throw new Error(`the stream ended after ${s.capture.length * s.info!.chunkMs} ms of audio, want ${a.ms}`);
    }
  }

  private expectChunks(a: Args): void {
    const s = this.stream(a.stream);
    let chunks = s.capture;
    if (a.count !== undefined) {
      assert.ok(chunks.length >= a.count, `captured ${chunks.length} chunks, want at least ${a.count}`);
      chunks = chunks.slice(0, a.count);
    }
    assert.ok(chunks.length > 0, "no audio was captured");
    const first = chunks[0]!;
    chunks.forEach((c, i) => {
      if (a.bytes !== undefined) {
        assert.equal(c.data.length, a.bytes, `chunk ${i} size`);
      }
      assert.equal(c.sequenceNumber, first.sequenceNumber + i, `chunk ${i} sequence number`);
      if (a.timestamp_step !== undefined) {
        assert.equal(c.timestamp, first.timestamp + i * a.timestamp_step, `chunk ${i} timestamp`);
      }
    });
    if (a.first_sequence_number !== undefined) {
      assert.equal(first.sequenceNumber, a.first_sequence_number, "first sequence number");
    }
    if (a.continues !== undefined) {
      const last = this.stream(a.continues).listen?.resumeFrom().lastSequenceNumber;
      assert.ok(last !== undefined, `stream ${a.continues} received no audio`);
      assert.equal(first.sequenceNumber, last + 1, `first sequence number after stream ${a.continues}`);
    }
    if (a.first_timestamp !== undefined) {
      assert.equal(first.timestamp, a.first_timestamp, "first timestamp");
    }
  }

  private expectTone(a: Args): void {
    const s = this.stream(a.stream);
    const info = s.info!;
    const rate = info.sampleRateHz;
    const header = { [Encapsulation.RTP]: 12, [Encapsulation.AUDIOSOCKET]: 3 }[info.encapsulation as string] ?? 0;
    const parts = s.capture.map((c) => {
      const data = c.data.subarray(header);
      return info.format === AudioFormat.ULAW ? fromUlaw(data) : fromPcm16(data);
    });
    let x = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      x.set(p, at);
      at += p.length;
    }
    if (a.window_ms) {
      const size = (a.window_ms * rate) / 1000;
      const step = (20 * rate) / 1000;
      assert.ok(x.length >= size, `captured ${(1000 * x.length) / rate} ms, less than the ${a.window_ms} ms window`);
      let best = 0;
      let bestLevel = -1;
      for (let start = 0; start + size <= x.length; start += step) {
        const level = toneLevel(x.subarray(start, start + size), rate, a.hz);
        if (level > bestLevel) {
          best = start;
          bestLevel = level;
        }
      }
      x = x.slice(best, best + size);
    }
    assert.ok(x.length > 0, "no audio was captured");
    const hz = dominantHz(x, rate);
    const level = toneLevel(x, rate, a.hz);
    const tolerance = a.tolerance_hz ?? 3;
    assert.ok(Math.abs(hz - a.hz) <= tolerance, `dominant frequency ${hz.toFixed(1)} Hz, want ${a.hz} ± ${tolerance}`);
    assert.ok(level >= (a.min_level ?? 0), `level at ${a.hz} Hz is ${level.toFixed(0)}, want at least ${a.min_level}`);
  }

  private async expectEvent(a: Args): Promise<void> {
    const s = this.stream(a.stream);
    const mismatch = (ev: StreamEvent): string[] => {
      if (ev.kind !== a.type) {
        return ["type"];
      }
      const problems: string[] = [];
      const check = (field: string, want: unknown, got: unknown): void => {
        if (want !== undefined && JSON.stringify(want) !== JSON.stringify(got)) {
          problems.push(`${field} = ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
        }
      };
      if (ev.kind === "dtmf") {
        check("digit", a.digit, ev.digit);
        check("duration_ms", a.duration_ms, ev.durationMs);
      } else if (ev.kind === "mark") {
        check("name", a.name, ev.name);
        check("position_ms", a.position_ms, ev.positionMs);
      } else if (ev.kind === "cleared") {
        check("dropped_marks", a.dropped_marks, ev.droppedMarks);
      } else if (ev.kind === "flow") {
        check("state", enumValue(a.state, FLOW_STATES), ev.state);
      }
      return problems;
    };
    const seen: string[] = [];
    let found = false;
    try {
      await this.waitFor(`a matching ${a.type} event`, () => {
        while (s.events.length > 0) {
          const ev = s.events.shift()!;
          const m = mismatch(ev);
          if (m.length === 0) {
            found = true;
            return true;
          }
          if (m[0] !== "type") {
            seen.push(`${JSON.stringify(ev)} (${m.join(", ")})`);
          }
        }
        return s.done;
      });
      if (!found) {
        throw new Error(`the stream ended (error: ${String(s.error)}) before a matching ${a.type} event`);
      }
    } catch (err) {
      throw new Error(`${(err as Error).message}${seen.length ? `; non-matching ${a.type} events: ${seen.join("; ")}` : ""}`);
    }
  }

  private async expectStopped(a: Args): Promise<void> {
    const s = this.stream(a.stream);
    await this.waitFor("the stream to stop", () => s.done);
    if (s.error !== undefined) {
      throw new Error(`the stream failed: ${String(s.error)}`);
    }
    assert.ok(s.stopped, "the stream ended without a stopped event");
    const want = StopReason[a.reason as keyof typeof StopReason];
    assert.ok(want !== undefined, `unknown stop reason ${a.reason}`);
    assert.equal(StopReason[s.stopped.reason], a.reason, `stopped: ${s.stopped.detail}`);
  }

  private async externalMedia(a: Args): Promise<void> {
    const req: Args = a.request ?? {};
    const em = this.client.externalMedia;
    let result: ExternalMedia[] = [];
    let error: unknown;
    try {
      switch (a.op) {
        case "start":
          result = [
            await em.start({
              callId: this.subst(req.call_id),
              conferenceId: this.subst(req.conference_id),
              externalHost: req.external_host,
              encapsulation: enumValue(req.encapsulation, EXTERNAL_ENCAPSULATIONS),
              format: enumValue(req.format, FORMATS),
              direction: enumValue(req.direction, DIRECTIONS),
            }),
          ];
          break;
        case "get":
          result = [await em.get(this.subst(req.id)!)];
          break;
        case "stop":
          result = await em.stop(
            req.id !== undefined
              ? { id: this.subst(req.id)! }
              : req.call_id !== undefined
                ? { callId: this.subst(req.call_id)! }
                : { conferenceId: this.subst(req.conference_id)! },
          );
          break;
        case "list":
          result = await em.list({ callId: this.subst(req.call_id), conferenceId: this.subst(req.conference_id) });
          break;
        default:
          throw new Error(`op must be start, stop, get or list, not ${a.op}`);
      }
    } catch (err) {
      if (!(err instanceof RPCError)) {
        throw err;
      }
      error = err;
    }
    if (a.expect_error) {
      checkError(a.expect_error, error);
      return;
    }
    if (error !== undefined) {
      throw new Error(`unexpected error: ${String(error)}`);
    }
    if (a.save_as && result[0]) {
      this.vars[a.save_as] = result[0].id;
    }
    const want: Args | undefined = a.expect;
    if (!want) {
      return;
    }
    if (want.count !== undefined) {
      assert.equal(result.length, want.count, "number of external media");
    }
    if (want.includes !== undefined) {
      const id = this.vars[want.includes];
      const returned = result.map((m) => m.id);
      result = result.filter((m) => m.id === id);
      assert.ok(result.length > 0, `no external media ${want.includes} (${id}) among ${JSON.stringify(returned)}`);
    }
    for (const m of result) {
      const got: Record<string, unknown> = {};
      const exp: Record<string, unknown> = {};
      const pick = (field: string, w: unknown, g: unknown): void => {
        if (w !== undefined) {
          exp[field] = w;
          got[field] = g;
        }
      };
      pick("status", enumValue(want.status, EXTERNAL_STATUSES), m.status);
      pick("call_id", this.subst(want.call_id), m.callId);
      pick("conference_id", this.subst(want.conference_id), m.conferenceId);
      pick("external_host", want.external_host, m.externalHost);
      pick("encapsulation", enumValue(want.encapsulation, EXTERNAL_ENCAPSULATIONS), m.encapsulation);
      pick("format", enumValue(want.format, FORMATS), m.format);
      pick("direction", enumValue(want.direction, DIRECTIONS), m.direction);
      pick("id", want.same_id_as === undefined ? undefined : this.vars[want.same_id_as], m.id);
      assert.deepEqual(got, exp, `external media ${m.id}`);
    }
  }
}

function checkError(a: Args, err: unknown): void {
  assert.ok(err !== undefined, `the call succeeded, want ${a.code}`);
  assert.ok(err instanceof RPCError, `error ${String(err)} is not an RPCError`);
  const got: Record<string, unknown> = { code: err.codeName };
  const want: Record<string, unknown> = { code: a.code };
  if (a.reason !== undefined) {
    got.reason = err.reason;
    want.reason = a.reason;
  }
  if (a.field !== undefined) {
    got.fields = err.fieldViolations.map((v) => v.field);
    want.fields = [a.field];
  }
  for (const [k, v] of Object.entries((a.metadata ?? {}) as Record<string, string>)) {
    got[`metadata.${k}`] = err.metadata[k];
    want[`metadata.${k}`] = v;
  }
  assert.deepEqual(got, want, `error: ${err.message}`);
}

describe("conformance", () => {
  let gw: Gateway;
  let client: MediaStreamClient;

  before(async () => {
    assert.equal(suite.format, 1, "this runner reads format 1");
    gw = await startGateway();
    client = new MediaStreamClient(gw.grpc);
  });

  after(async () => {
    client?.close();
    await gw?.stop();
  });

  for (const sc of suite.scenarios) {
    const skip = sc.skip?.[RUNNER] ?? sc.skip?.all;
    it(sc.name, { skip }, async () => {
      const deadline = Date.now() + (sc.timeout_ms ?? 20000);
      let runner = new Runner(client, gw.demo, deadline);
      let proxy: CutProxy | undefined;
      let own: MediaStreamClient | undefined;
      if (sc.steps.some((step) => "cut_connection" in step)) {
        // Its own client, through a proxy that cut_connection cuts.
        proxy = new CutProxy(gw.grpc);
        own = new MediaStreamClient(await proxy.start());
        runner = new Runner(own, gw.demo, deadline, proxy);
      }
      try {
        for (const [i, step] of sc.steps.entries()) {
          const kinds = Object.keys(step);
          assert.equal(kinds.length, 1, `step ${i + 1}: a step has exactly one kind`);
          const kind = kinds[0]!;
          try {
            await runner.run(kind, step[kind]!);
          } catch (err) {
            throw new Error(`step ${i + 1} (${kind}): ${(err as Error).message}`, { cause: err });
          }
        }
      } finally {
        runner.closeAll();
        own?.close();
        await proxy?.close();
      }
    });
  }
});
