// The browser client (src/browser.ts) against the real WebSocket shim of the
// gateway, with the `ws` package injected as the WebSocket implementation
// (Node 20 has none). The gateway is the one named by MEDIASTREAM_READY when
// that names its WebSocket address ("websocket"); otherwise this file starts
// its own, with the shim on a free port.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createInterface } from "node:readline";
import { after, before, describe, it } from "node:test";
import { WebSocket } from "ws";
import {
  MediaStreamSocket,
  MediaStreamSocketError,
  mediaStreamUrl,
  type SocketMessage,
  type SocketOptions,
  type WebSocketHandler,
  type WebSocketLike,
} from "../src/browser.js";
import { concat, dominantHz, fromPcm16, fromUlaw, pcm16, sine, toneLevel } from "./audio.js";
import { repoRoot } from "./gateway.js";

/** The shim's `host:port` and the demo call IDs. */
interface Shim {
  websocket: string;
  demo: Record<string, string>;
  stop(): Promise<void>;
}

async function startShim(): Promise<Shim> {
  const env = process.env.MEDIASTREAM_READY;
  const ready = env ? (JSON.parse(env) as { websocket?: string; demo: Record<string, string> }) : undefined;
  if (ready?.websocket) {
    return { websocket: ready.websocket, demo: ready.demo, stop: async () => {} };
  }
  const args = ["run", "--frozen", "python", "-m", "mediastream.cli", "serve", "--log-level", "WARNING"];
  for (const flag of ["--grpc-listen", "--ws-listen", "--metrics-listen"]) {
    args.push(flag, "127.0.0.1:0");
  }
  const hasUv = spawnSync("uv", ["--version"]).status === 0;
  const child = spawn(hasUv ? "uv" : "python3", hasUv ? args : ["-m", "uv", ...args], {
    cwd: repoRoot(),
    env: { ...process.env, PYTHONUNBUFFERED: "1", UV_PYTHON_DOWNLOADS: "never" },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<void>((res) => child.once("exit", () => res()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null && child.pid) {
      process.kill(-child.pid, "SIGTERM");
      await exited;
    }
  };
  const line = await new Promise<string>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`no ready line after 90 s:\n${stderr}`)), 90_000);
    createInterface({ input: child.stdout! }).once("line", (l) => {
      clearTimeout(timer);
      res(l);
    });
    void exited.then(() => {
      clearTimeout(timer);
      rej(new Error(`the gateway exited before it was ready:\n${stderr}`));
    });
  }).catch(async (err: unknown) => {
    await stop();
    throw err;
  });
  child.stdout!.resume();
  const started = JSON.parse(line) as { websocket: string; demo: Record<string, string> };
  return { websocket: started.websocket, demo: started.demo, stop };
}

/** No test here may hang the run. */
const LIMIT = { timeout: 20_000 };

const UNKNOWN_CALL = "00000000-0000-4000-8000-0000000dead0";

/** Everything a socket yields until it ends (or `until` says stop, which closes it). */
async function collect(socket: MediaStreamSocket, until?: (m: SocketMessage, all: SocketMessage[]) => boolean): Promise<SocketMessage[]> {
  const all: SocketMessage[] = [];
  for await (const m of socket) {
    all.push(m);
    if (until?.(m, all)) {
      socket.close();
      break;
    }
  }
  return all;
}

const audioOf = (messages: SocketMessage[]): Uint8Array =>
  concat(messages.flatMap((m) => (m.kind === "audio" ? [m.data] : [])));

describe("browser MediaStreamSocket: URL", () => {
  it("builds the shim URL with the control channel, credentials and VoIPBIN's formats", () => {
    assert.equal(
      mediaStreamUrl({ baseUrl: "http://127.0.0.1:8080", callId: "c", events: true, accessKey: "k" }),
      "ws://127.0.0.1:8080/v1.0/calls/c/media_stream?encapsulation=sln&format=ulaw&events=json&accesskey=k",
    );
    assert.equal(
      mediaStreamUrl({ baseUrl: "wss://gw.example/", conferenceId: "c", format: "voipbin", encapsulation: "audiosocket", token: "a b" }),
      "wss://gw.example/v1.0/conferences/c/media_stream?encapsulation=audiosocket&token=a+b",
    );
  });

  it("refuses control messages without the control channel", () => {
    class Quiet {
      binaryType = "";
      readyState = 1;
      onopen = null;
      onmessage = null;
      onclose = null;
      onerror = null;
      send(): void {}
      close(): void {}
    }
    const socket = new MediaStreamSocket({ baseUrl: "http://h", callId: "c", WebSocket: Quiet });
    assert.throws(() => socket.mark("m"), /events: true/);
  });
});

describe("browser MediaStreamSocket against the real shim", () => {
  let shim: Shim;
  const open = (options: Omit<SocketOptions, "baseUrl" | "WebSocket">): MediaStreamSocket =>
    new MediaStreamSocket({ baseUrl: `http://${shim.websocket}`, WebSocket, ...options });

  before(async () => {
    shim = await startShim();
  });

  after(async () => {
    await shim?.stop();
  });

  it("hears the tone call at 440 Hz, after a started message", LIMIT, async () => {
    const socket = open({ callId: shim.demo.tone_call!, format: "slin", events: true });
    await socket.opened;
    const messages = await collect(socket, (_, all) => all.filter((m) => m.kind === "audio").length === 50);
    assert.deepEqual(messages[0], {
      kind: "started",
      streamId: socket.started!.streamId,
      target: "call",
      id: shim.demo.tone_call,
      encapsulation: "sln",
      transport: socket.started!.transport,
      format: "slin",
      sampleRate: 8000,
      frameBytes: 320,
      uplinkFormat: "slin",
      uplinkSampleRate: 8000,
      uplinkFrameBytes: 320,
      chunkMs: 20,
    });
    assert.ok(messages.every((m) => m.kind !== "audio" || m.data.length === 320));
    const samples = fromPcm16(audioOf(messages));
    assert.ok(Math.abs(dominantHz(samples, 8000) - 440) < 3, `dominant ${dominantHz(samples, 8000)} Hz`);
    assert.equal((await socket.closed).code, 1000);
  });

  it("gets its audio back from the echo call in VoIPBIN's formats (slin up, µ-law down), then stops on done", LIMIT, async () => {
    const socket = open({ callId: shim.demo.echo_call!, format: "voipbin", events: true });
    await socket.opened;
    const tone = pcm16(sine(700, 1000, 8000));
    for (let at = 0; at < tone.length; at += 320) {
      await socket.write(tone.subarray(at, at + 320));
    }
    socket.done();
    const messages = await collect(socket);
    const started = messages[0];
    assert.ok(started?.kind === "started");
    assert.deepEqual([started.format, started.frameBytes, started.uplinkFormat, started.uplinkFrameBytes], ["ulaw", 160, "slin", 320]);
    assert.deepEqual(messages.at(-1), { kind: "stopped", reason: "client_done", detail: socket.stopped!.detail });
    const closed = await socket.closed;
    assert.equal(closed.code, 1000);
    assert.match(closed.reason, /^client_done/);
    const back = fromUlaw(audioOf(messages));
    assert.ok(toneLevel(back, 8000, 700) * (back.length / 8000) > 0.3 * 8000, "the echo carries the 700 Hz tone");
  });

  it("speaks the control channel: flow pause, mark, clear with dropped marks, resume, DTMF both ways, done", LIMIT, async () => {
    const socket = open({ callId: shim.demo.dtmf_call!, format: "slin", events: true });
    await socket.opened;
    const silence = new Uint8Array(3200); // 200 ms at 8 kHz, the largest frame allowed
    socket.send(silence);
    socket.send(silence);
    socket.mark("first"); // played after 400 ms
    for (let i = 0; i < 45; i++) {
      socket.send(silence); // 9 s more: past the 8 s that make the gateway ask to pause
    }
    socket.mark("last");
    const seen: SocketMessage[] = [];
    let cleared = false;
    let sentDtmf = false;
    for await (const m of socket) {
      if (m.kind === "audio") {
        continue;
      }
      seen.push(m);
      if (m.kind === "mark" && m.name === "first") {
        assert.ok(socket.paused, "the gateway asked to pause before the first mark played");
        socket.clear();
        cleared = true;
      } else if (m.kind === "dtmf" && cleared && !socket.paused && !sentDtmf) {
        socket.sendDtmf("1", 60);
        socket.done();
        sentDtmf = true;
      }
    }
    const kinds = seen.map((m) => (m.kind === "flow" ? `flow:${m.state}` : m.kind));
    const at = (kind: string): number => kinds.indexOf(kind);
    assert.ok(at("started") === 0 && at("flow:pause") > 0, kinds.join(" "));
    assert.ok(at("flow:pause") < at("mark") && at("mark") < at("cleared") && at("cleared") < at("flow:resume"), kinds.join(" "));
    assert.equal(kinds.at(-1), "stopped");
    const mark = seen.find((m) => m.kind === "mark");
    assert.ok(mark?.kind === "mark" && mark.name === "first" && mark.positionMs >= 400, JSON.stringify(mark));
    const clearedMsg = seen.find((m) => m.kind === "cleared");
    assert.ok(clearedMsg?.kind === "cleared");
    assert.ok(clearedMsg.positionMs >= 400 && clearedMsg.positionMs < 2000, JSON.stringify(clearedMsg));
    assert.deepEqual(clearedMsg.droppedMarks, ["last"]);
    const dtmf = seen.find((m) => m.kind === "dtmf");
    assert.ok(dtmf?.kind === "dtmf" && ["1", "2", "#"].includes(dtmf.digit), JSON.stringify(dtmf));
    assert.equal(socket.stopped?.reason, "client_done");
    assert.equal((await socket.closed).code, 1000);
  });

  it("is refused before the upgrade with 404 CALL_NOT_FOUND and its JSON body", LIMIT, async () => {
    const socket = open({ callId: UNKNOWN_CALL });
    await assert.rejects(socket.opened, (err: unknown) => {
      assert.ok(err instanceof MediaStreamSocketError);
      assert.deepEqual([err.code, err.httpStatus, err.errorReason], [1006, 404, "CALL_NOT_FOUND"]);
      assert.match(err.detail, new RegExp(UNKNOWN_CALL));
      const body = err.body as { error: Record<string, unknown> };
      assert.deepEqual(Object.keys(body.error).sort(), ["message", "reason", "request_id", "status"]);
      assert.deepEqual([body.error.status, body.error.reason], [404, "CALL_NOT_FOUND"]);
      assert.match(err.message, /refused with HTTP 404 CALL_NOT_FOUND/);
      return true;
    });
    await assert.rejects(collect(socket), MediaStreamSocketError);
    const invalid = open({ callId: "not*an*id" });
    await assert.rejects(invalid.opened, (err: unknown) => err instanceof MediaStreamSocketError && err.httpStatus === 400 && err.errorReason === "INVALID_ID");
  });

  it("in a browser, which hides the refusal, is refused with 1006 and no status", LIMIT, async () => {
    /** The `ws` socket seen only through the standard WebSocket interface, as in a browser. */
    class Standard implements WebSocketLike {
      private readonly ws: WebSocket;
      constructor(url: string) {
        this.ws = new WebSocket(url);
      }
      get binaryType(): string {
        return this.ws.binaryType;
      }
      set binaryType(v: string) {
        this.ws.binaryType = v;
      }
      get readyState(): number {
        return this.ws.readyState;
      }
      set onopen(h: WebSocketHandler) {
        this.ws.onopen = h;
      }
      set onmessage(h: WebSocketHandler) {
        this.ws.onmessage = h;
      }
      set onclose(h: WebSocketHandler) {
        this.ws.onclose = h;
      }
      set onerror(h: WebSocketHandler) {
        this.ws.onerror = h;
      }
      get onopen(): WebSocketHandler {
        return this.ws.onopen;
      }
      get onmessage(): WebSocketHandler {
        return this.ws.onmessage;
      }
      get onclose(): WebSocketHandler {
        return this.ws.onclose;
      }
      get onerror(): WebSocketHandler {
        return this.ws.onerror;
      }
      send(data: string | ArrayBufferView | ArrayBuffer): void {
        this.ws.send(data);
      }
      close(code?: number, reason?: string): void {
        this.ws.close(code, reason);
      }
    }
    const socket = new MediaStreamSocket({ baseUrl: `ws://${shim.websocket}`, callId: UNKNOWN_CALL, WebSocket: Standard });
    await assert.rejects(socket.opened, (err: unknown) => {
      assert.ok(err instanceof MediaStreamSocketError);
      assert.deepEqual([err.code, err.httpStatus, err.errorReason], [1006, undefined, ""]);
      assert.match(err.message, /closed with 1006: the gateway refused the stream or could not be reached/);
      return true;
    });
  });

  it("is closed with 1009 for a message over the size cap, and for one with more than play_buffer_s of audio (with the error message's reason)", LIMIT, async () => {
    const big = open({ callId: shim.demo.echo_call!, format: "slin" });
    await big.opened;
    // The cap is play_buffer_s (120 s by default) of the stream's audio plus 64 KiB: 1985536 bytes of slin.
    big.send(new Uint8Array(2_100_000));
    await assert.rejects(collect(big), (err: unknown) => {
      assert.ok(err instanceof MediaStreamSocketError);
      assert.deepEqual([err.code, err.errorReason, err.httpStatus], [1009, "MESSAGE_TOO_BIG", undefined]);
      assert.match(err.reason, /^MESSAGE_TOO_BIG: /);
      return true;
    });
    const long = open({ callId: shim.demo.echo_call!, format: "slin", events: true });
    await long.opened;
    long.send(new Uint8Array(1_920_002)); // 120 s of slin and one sample more
    await assert.rejects(collect(long), (err: unknown) => {
      assert.ok(err instanceof MediaStreamSocketError);
      assert.deepEqual([err.code, err.errorReason], [1009, "CHUNK_TOO_LARGE"]);
      assert.notEqual(err.detail, "");
      return true;
    });
  });
});
