// Plays a WAV file into a call, at the pace the gateway sets.
//
// A two-way stream: what is sent is heard on the call. The gateway plays one
// 20 ms frame every 20 ms and sends `flow` events: PAUSE when about 8 s of
// audio wait to be played, RESUME when there is room again. This program
// sends as fast as the gateway lets it, pausing when asked. closeSend() then
// says nothing more will come; the gateway ends the stream (`stopped`,
// CLIENT_DONE) once everything has been played.
//
//   node dist/play.js --server 127.0.0.1:50051 --call CALL_ID prompt.wav
//
// The WAV file must be 16-bit mono at 8 or 16 kHz.
import { parseArgs } from "node:util";
// In your own project: import { ... } from "@voipbin/mediastream";
import {
  AudioFormat,
  FlowState,
  MediaStreamClient,
  RPCError,
  StopReason,
  type DuplexStream,
} from "../../../sdk/typescript/dist/src/index.js";
import { readWav } from "./wav.js";

/** Open while the gateway accepts audio; shut between a PAUSE and the RESUME after it. */
class Gate {
  private shut: { opened: Promise<void>; open: () => void } | undefined;

  /** Resolves at once while open, else when opened. */
  wait(): Promise<void> {
    return this.shut?.opened ?? Promise.resolve();
  }

  set(open: boolean): void {
    if (open && this.shut) {
      this.shut.open();
      this.shut = undefined;
    } else if (!open && !this.shut) {
      let release = (): void => {};
      const opened = new Promise<void>((resolve) => {
        release = resolve;
      });
      this.shut = { opened, open: release };
    }
  }
}

/** Reads the stream's events until it ends, steering `gate`; returns the stop reason and the pauses seen. */
async function watch(stream: DuplexStream, gate: Gate): Promise<{ reason: string; pauses: number }> {
  let pauses = 0;
  try {
    // The call's own audio arrives here too; it is not needed.
    for await (const ev of stream) {
      if (ev.kind === "flow") {
        const paused = ev.state === FlowState.PAUSE;
        pauses += paused ? 1 : 0;
        console.log(`gateway: ${paused ? "pause" : "resume"} (${ev.bufferedMs} ms queued)`);
        gate.set(!paused);
      }
    }
  } finally {
    gate.set(true); // never leave the sender waiting on a stream that ended
  }
  return { reason: stream.stopped ? StopReason[stream.stopped.reason] : "no stopped event", pauses };
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    options: {
      server: { type: "string", default: "127.0.0.1:50051" },
      call: { type: "string" }, // ID of the call to play into
    },
    allowPositionals: true,
  });
  const [path] = positionals;
  if (!values.call || !path) {
    throw new Error("usage: play --call ID [--server HOST:PORT] file.wav");
  }
  const { sampleRate, pcm } = readWav(path);
  const format = { 8000: AudioFormat.SLIN, 16000: AudioFormat.SLIN16 }[sampleRate];
  if (format === undefined) {
    throw new Error(`${path}: need 8000 or 16000 Hz, got ${sampleRate}`);
  }

  const client = new MediaStreamClient(values.server!);
  try {
    const stream = await client.stream({ callId: values.call, format });
    const gate = new Gate();
    const watching = watch(stream, gate);
    watching.catch(() => {}); // its error, if any, is thrown where it is awaited below
    const started = Date.now();
    const frame = stream.info.frameBytes; // bytes in 20 ms
    for (let at = 0; at < pcm.length; at += frame) {
      await gate.wait();
      // send() resolves once the transport has taken the chunk; it rejects if the stream has ended.
      await stream.send(pcm.subarray(at, at + frame));
    }
    stream.closeSend(); // the stream ends once everything has been played
    const { reason, pauses } = await watching;
    const seconds = ((Date.now() - started) / 1000).toFixed(2);
    const duration = (pcm.length / 2 / sampleRate).toFixed(2);
    console.log(`played ${path}: ${duration} s of audio in ${seconds} s (${pauses} pauses); stopped: ${reason}`);
  } finally {
    client.close();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof RPCError ? `refused: ${err.codeName} ${err.reason}: ${err.rawMessage}` : String(err));
  process.exitCode = 1;
});
