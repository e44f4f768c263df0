// The TypeScript examples, run as a user runs them (`node dist/<example>.js`),
// against the gateway named by MEDIASTREAM_READY, which `make sdk-test` starts
// for every SDK's tests. Without it the tests are skipped; to run them alone:
//
//   uv run python tests/conformance/with_gateway.py -- npm --prefix examples/typescript test
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { readWav, writeWav } from "./wav.js";

const ready = process.env.MEDIASTREAM_READY
  ? (JSON.parse(process.env.MEDIASTREAM_READY) as { grpc: string; demo: Record<string, string> })
  : undefined;
const skip = ready ? false : "needs a gateway: run through `make sdk-test` or with_gateway.py";
const here = dirname(fileURLToPath(import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), "mediastream-examples-"));

/** Runs dist/`example`.js with `args`; returns its output (it must exit 0). */
async function run(example: string, ...args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)(process.execPath, [join(here, `${example}.js`), "--server", ready!.grpc, ...args], {
    timeout: 60_000,
  });
  console.log(stdout);
  return stdout;
}

/** The frequency, in 5 Hz steps, at which 16-bit little-endian `pcm` has the most energy (Goertzel). */
function dominantHz(pcm: Uint8Array, rate: number): number {
  const view = new DataView(pcm.buffer, pcm.byteOffset, pcm.byteLength);
  const samples = Array.from({ length: pcm.length / 2 }, (_, i) => view.getInt16(2 * i, true));
  let best = 0;
  let bestPower = -1;
  for (let hz = 50; hz < rate / 2; hz += 5) {
    const coeff = 2 * Math.cos((2 * Math.PI * hz) / rate);
    let [s1, s2] = [0, 0];
    for (const x of samples) {
      [s1, s2] = [x + coeff * s1 - s2, s1];
    }
    const power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    if (power > bestPower) {
      [best, bestPower] = [hz, power];
    }
  }
  return best;
}

describe("the WAV helper", () => {
  it("reads back what it wrote", () => {
    const path = join(scratch, "round-trip.wav");
    const pcm = new Uint8Array([1, 2, 3, 4, 250, 251]);
    writeWav(path, 16000, pcm);
    assert.deepEqual(readWav(path), { sampleRate: 16000, pcm: Buffer.from(pcm) });
  });
});

describe("the TypeScript examples against a real gateway", () => {
  it("listen writes one second of the tone call, in 100 ms chunks, as a 440 Hz WAV", { skip }, async () => {
    const path = join(scratch, "tone.wav");
    const out = await run("listen", "--call", ready!.demo.tone_call!, "--seconds", "1", path);
    assert.match(out, /tone\.wav: 1\.00 s in 10 chunks of 100 ms/);
    const { sampleRate, pcm } = readWav(path);
    assert.deepEqual([sampleRate, pcm.length], [8000, 16000]);
    assert.ok(Math.abs(dominantHz(pcm, sampleRate) - 440) <= 5, `dominant ${dominantHz(pcm, sampleRate)} Hz`);
  });

  it("play sends a 1.5 s WAV at real time and waits for stopped", { skip }, async () => {
    const path = join(scratch, "prompt.wav");
    const samples = Int16Array.from({ length: 12000 }, (_, i) => Math.round(8000 * Math.sin((2 * Math.PI * 500 * i) / 8000)));
    writeWav(path, 8000, new Uint8Array(samples.buffer));
    const started = Date.now();
    const out = await run("play", "--call", ready!.demo.echo_call!, path);
    const elapsed = (Date.now() - started) / 1000;
    const m = /prompt\.wav: 1\.50 s of audio in ([\d.]+) s .*stopped: (\w+)/.exec(out);
    assert.ok(m, out);
    assert.ok(Number(m[1]) >= 1.4 && Number(m[1]) <= elapsed, `played in ${m[1]} s: the gateway paces the audio at real time`);
    assert.equal(m[2], "CLIENT_DONE");
  });

  it("barge-in clears the prompt when the dtmf_call presses a key", { skip }, async () => {
    const out = await run("barge-in", "--call", ready!.demo.dtmf_call!, "--seconds", "6");
    assert.match(out, /caller pressed [12#]: barge-in/);
    const m = /cleared at (\d+) ms; dropped marks: (.*)/.exec(out);
    assert.ok(m, out);
    assert.ok(Number(m[1]) < 6000, out);
    // The prompt runs 3 s ahead of playback: at least the sentence being played is
    // dropped. The demo caller presses its keys every 2 s from a phase of its own, so
    // it may barge in during the first sentence, before that sentence's mark was sent
    // (its frames go first); only then may no mark be dropped.
    if (m[2] === "none") {
      assert.ok(Number(m[1]) < 1000, `no mark dropped, yet cut after the first sentence: ${out}`);
    } else {
      assert.match(m[2]!, /^sentence-/);
    }
    assert.match(out.trimEnd(), /stopped: CLIENT_DONE$/);
  });
});
