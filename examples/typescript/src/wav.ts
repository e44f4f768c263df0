// WAV files of 16-bit little-endian mono PCM: the gateway's slin (8 kHz) and
// slin16 (16 kHz) audio with a 44-byte header in front.
import { readFileSync, writeFileSync } from "node:fs";

/** Writes `pcm` (16-bit little-endian mono samples at `sampleRate`) as a WAV file. */
export function writeWav(path: string, sampleRate: number, pcm: Uint8Array): void {
  const header = Buffer.alloc(44);
  header.write("RIFF", 0, "ascii");
  header.writeUInt32LE(36 + pcm.length, 4);
  header.write("WAVEfmt ", 8, "ascii");
  header.writeUInt32LE(16, 16); // size of the fmt chunk
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // channels
  header.writeUInt32LE(sampleRate, 24);
  header.writeUInt32LE(2 * sampleRate, 28); // bytes per second
  header.writeUInt16LE(2, 32); // bytes per sample frame
  header.writeUInt16LE(16, 34); // bits per sample
  header.write("data", 36, "ascii");
  header.writeUInt32LE(pcm.length, 40);
  writeFileSync(path, Buffer.concat([header, pcm]));
}

/** Reads a 16-bit mono PCM WAV file: its sample rate and samples. */
export function readWav(path: string): { sampleRate: number; pcm: Uint8Array } {
  const data = readFileSync(path);
  if (data.length < 12 || data.toString("ascii", 0, 4) !== "RIFF" || data.toString("ascii", 8, 12) !== "WAVE") {
    throw new Error(`${path}: not a WAV file`);
  }
  let sampleRate = 0;
  // After the RIFF header come chunks: a 4-byte ID, a 4-byte size, the body.
  for (let at = 12; at + 8 <= data.length; ) {
    const id = data.toString("ascii", at, at + 4);
    const size = Math.min(data.readUInt32LE(at + 4), data.length - at - 8);
    const body = data.subarray(at + 8, at + 8 + size);
    if (id === "fmt ") {
      const [format, channels, bits] = [body.readUInt16LE(0), body.readUInt16LE(2), body.readUInt16LE(14)];
      if (format !== 1 || channels !== 1 || bits !== 16) {
        throw new Error(`${path}: need 16-bit mono PCM, got format ${format}, ${channels} channels, ${bits} bits`);
      }
      sampleRate = body.readUInt32LE(4);
    } else if (id === "data") {
      if (!sampleRate) {
        throw new Error(`${path}: data before fmt`);
      }
      return { sampleRate, pcm: body.subarray(0, size & ~1) };
    }
    at += 8 + size + (size % 2); // chunks are padded to an even size
  }
  throw new Error(`${path}: no audio data`);
}
