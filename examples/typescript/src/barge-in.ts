// Barge-in: speaks into a call, and stops speaking when the caller presses a key.
//
// A voice bot sends its prompt ahead of time, marking the end of each
// sentence. When the caller interrupts (here: a DTMF digit; a bot would also
// detect speech in the call's audio), the bot sends `clear`: the gateway drops
// everything still queued and answers with a `cleared` event saying where
// playback was cut and which marks were dropped, i.e. which sentences the
// caller never heard.
//
//   node dist/barge-in.js --server 127.0.0.1:50051 --call CALL_ID --seconds 10
//
// The demo dtmf_call presses 1, 2, # every 2 s: a ready-made impatient caller.
// A tone stands in for the bot's speech.
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
// In your own project: import { ... } from "@voipbin/mediastream";
import {
  AudioFormat,
  MediaStreamClient,
  RPCError,
  StopReason,
  type DuplexStream,
} from "../../../sdk/typescript/dist/src/index.js";

/** Length of one "sentence" of the prompt; a mark follows each. */
const SENTENCE_MS = 1000;
/**
 * How far ahead of playback the prompt is sent: what a barge-in drops. It
 * stays under the 8 s at which the gateway asks to pause, so the speaker never
 * has to wait and stops at once when the caller barges in.
 */
const LEAD_MS = 3000;
const RATE = 8000;

/** `ms` of a 500 Hz tone as 16-bit little-endian samples: the bot's "speech". */
function tone(ms: number): Uint8Array {
  const samples = new Int16Array((ms * RATE) / 1000);
  for (let i = 0; i < samples.length; i++) {
    samples[i] = Math.round(8000 * Math.sin((2 * Math.PI * 500 * i) / RATE));
  }
  return new Uint8Array(samples.buffer); // little-endian on every platform Node runs on
}

/**
 * Sends the prompt: `sentences` sentences, each followed by a mark, at most
 * LEAD_MS ahead of playback, until `interrupted()` says stop.
 */
async function speak(stream: DuplexStream, sentences: number, interrupted: () => boolean): Promise<void> {
  const frame = stream.info.frameBytes; // 20 ms
  const words = tone(SENTENCE_MS);
  const start = Date.now();
  let sentMs = 0;
  for (let n = 1; n <= sentences; n++) {
    for (let at = 0; at < words.length; at += frame) {
      const ahead = sentMs - (Date.now() - start);
      if (ahead > LEAD_MS) {
        await sleep(ahead - LEAD_MS);
      }
      if (interrupted()) {
        return; // the caller barged in: say nothing more
      }
      await stream.send(words.subarray(at, at + frame));
      sentMs += 20;
    }
    if (interrupted()) {
      return;
    }
    await stream.mark(`sentence-${n}`);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      server: { type: "string", default: "127.0.0.1:50051" },
      call: { type: "string" }, // ID of the call to speak into
      seconds: { type: "string", default: "10" }, // length of the prompt
    },
  });
  if (!values.call) {
    throw new Error("usage: barge-in --call ID [--server HOST:PORT] [--seconds N]");
  }
  const sentences = Math.max(1, Math.round((Number(values.seconds) * 1000) / SENTENCE_MS));

  const client = new MediaStreamClient(values.server!);
  try {
    const stream = await client.stream({ callId: values.call, format: AudioFormat.SLIN });
    console.log(`speaking ${sentences} sentences of ${SENTENCE_MS / 1000} s into ${values.call}`);
    let interrupted = false;
    let finished = false; // closeSend() was called: no clear after it
    const speaker = speak(stream, sentences, () => interrupted);
    speaker.catch(() => {}); // its error, if any, is thrown where it is awaited below

    for await (const ev of stream) {
      if (ev.kind === "mark") {
        console.log(`played ${ev.name} (at ${ev.positionMs} ms)`);
        if (ev.name === `sentence-${sentences}`) {
          console.log("the caller heard the whole prompt");
          finished = true;
          stream.closeSend();
        }
      } else if (ev.kind === "dtmf" && !interrupted && !finished) {
        console.log(`caller pressed ${ev.digit}: barge-in`);
        interrupted = true;
        await speaker; // it stops before its next frame
        await stream.clear(); // drop the queued prompt now
      } else if (ev.kind === "cleared") {
        const dropped = ev.droppedMarks.join(", ") || "none";
        console.log(`cleared at ${ev.positionMs} ms; dropped marks: ${dropped}`);
        finished = true;
        stream.closeSend(); // nothing queued: the stream stops
      } else if (ev.kind === "stopped") {
        console.log(`stopped: ${StopReason[ev.reason]}`);
      }
    }
    await speaker;
  } finally {
    client.close();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof RPCError ? `refused: ${err.codeName} ${err.reason}: ${err.rawMessage}` : String(err));
  process.exitCode = 1;
});
