// Listens to a call and writes what it hears to a WAV file.
//
// This is the shape of a transcriber: a listen-only stream (nothing is played
// into the call), audio in 100 ms chunks of 16-bit 8 kHz samples (what most
// speech recognisers take), each chunk handled as it arrives.
//
//   node dist/listen.js --server 127.0.0.1:50051 --call CALL_ID --seconds 5 out.wav
import { parseArgs } from "node:util";
// In your own project: import { ... } from "@voipbin/mediastream";
import { AudioFormat, MediaStreamClient, RPCError } from "../../../sdk/typescript/dist/src/index.js";
import { writeWav } from "./wav.js";

/** Chunk size: any multiple of 20 ms up to 200 ms. */
const CHUNK_MS = 100;

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    options: {
      server: { type: "string", default: "127.0.0.1:50051" }, // the gateway's gRPC host:port
      call: { type: "string" }, // ID of the call to listen to
      seconds: { type: "string", default: "5" }, // how much to record
    },
    allowPositionals: true,
  });
  const [path] = positionals;
  if (!values.call || !path) {
    throw new Error("usage: listen --call ID [--server HOST:PORT] [--seconds N] out.wav");
  }
  const seconds = Number(values.seconds);

  const client = new MediaStreamClient(values.server!);
  try {
    // listen() resolves once the gateway has confirmed the stream; a refusal rejects with RPCError.
    const stream = await client.listen({ callId: values.call, format: AudioFormat.SLIN, chunkMs: CHUNK_MS });
    const info = stream.info;
    console.log(`listening to ${values.call}: stream ${info.streamId}, ${info.sampleRateHz} Hz, ${info.chunkMs} ms chunks`);

    const chunks: Uint8Array[] = [];
    // audio() yields only the audio; iterating the stream itself also gives DTMF and `stopped`.
    for await (const data of stream.audio()) {
      chunks.push(data); // a transcriber would send `data` on here
      if (chunks.length * CHUNK_MS >= seconds * 1000) {
        break;
      }
    }
    stream.close(); // ends the stream

    const pcm = Buffer.concat(chunks);
    writeWav(path, info.sampleRateHz, pcm);
    const written = pcm.length / 2 / info.sampleRateHz;
    console.log(`wrote ${path}: ${written.toFixed(2)} s in ${chunks.length} chunks of ${CHUNK_MS} ms`);
  } finally {
    client.close();
  }
}

main().catch((err: unknown) => {
  // The gateway's refusal: a gRPC code and a stable reason, e.g. NOT_FOUND CALL_NOT_FOUND.
  console.error(err instanceof RPCError ? `refused: ${err.codeName} ${err.reason}: ${err.rawMessage}` : String(err));
  process.exitCode = 1;
});
