/**
 * Plain types of the client API. Enums are string enums whose values are their
 * names (for example `AudioFormat.SLIN === "SLIN"`, `StopReason.CLIENT_DONE`),
 * with the members of the protobuf enums of the same name: events and infos
 * print with names, as the Go and Python SDKs' enums do.
 */
import * as wire from "./gen/voipbin/mediastream/v1/mediastream_pb.js";
import { names } from "./enums.js";

/** Sample format, the same both ways: `ULAW` (8 kHz), `SLIN` (16-bit 8 kHz), `SLIN16` (16-bit 16 kHz). */
export type AudioFormat = "UNSPECIFIED" | "ULAW" | "SLIN" | "SLIN16";
/** The {@link AudioFormat} names, each its own value. */
export const AudioFormat: { readonly [K in AudioFormat]: K } = names(wire.AudioFormat);
/** Whose audio a call stream hears: `BOTH`, `IN` (the caller's voice) or `OUT` (what the caller hears). */
export type Direction = "UNSPECIFIED" | "BOTH" | "IN" | "OUT";
/** The {@link Direction} names, each its own value. */
export const Direction: { readonly [K in Direction]: K } = names(wire.Direction);
/** Wire form of each chunk: `SLN` (bare samples), `RTP` or `AUDIOSOCKET`. */
export type Encapsulation = "UNSPECIFIED" | "RTP" | "SLN" | "AUDIOSOCKET";
/** The {@link Encapsulation} names, each its own value. */
export const Encapsulation: { readonly [K in Encapsulation]: K } = names(wire.Encapsulation);
/** How the gateway takes the audio from Asterisk: `RTP`, `AUDIOSOCKET` or `WEBSOCKET`. */
export type MediaTransport = "UNSPECIFIED" | "RTP" | "AUDIOSOCKET" | "WEBSOCKET";
/** The {@link MediaTransport} names, each its own value. */
export const MediaTransport: { readonly [K in MediaTransport]: K } = names(wire.MediaTransport);
/** Why a stream stopped. */
export type StopReason =
  | "UNSPECIFIED"
  | "CLIENT_DONE"
  | "CALL_HANGUP"
  | "CONFERENCE_ENDED"
  | "SERVER_SHUTDOWN"
  | "ASTERISK_FAILURE"
  | "CLIENT_HANGUP";
/** The {@link StopReason} names, each its own value. */
export const StopReason: { readonly [K in StopReason]: K } = names(wire.StopReason);
/** Flow control: `PAUSE` (hold off sending audio) or `RESUME`. */
export type FlowState = "UNSPECIFIED" | "PAUSE" | "RESUME";
/** The {@link FlowState} names, each its own value. */
export const FlowState: { readonly [K in FlowState]: K } = names(wire.FlowState);

/** What to stream and how. Set exactly one of `callId` and `conferenceId`. */
export interface StreamConfig {
  /** The call to stream (by default, the Asterisk channel ID). */
  callId?: string;
  /** The conference to stream (by default, the Asterisk bridge ID). */
  conferenceId?: string;
  /** Sample format in both directions; the server's default is mu-law. */
  format?: AudioFormat;
  /** Whose audio a call stream hears; the default is both sides. */
  direction?: Direction;
  /** Milliseconds per chunk: 0 (meaning 20) or a multiple of 20 up to 200. */
  chunkMs?: number;
  /** Wire form of each chunk; the default is bare samples. */
  encapsulation?: Encapsulation;
  /** How the gateway takes the audio from Asterisk; the default is the gateway's. */
  transport?: MediaTransport;
  /** Keep the stream for the server's grace period if the RPC ends without `stopped`. */
  resumable?: boolean;
  /** Take over a stream whose connection dropped (see {@link ListenStream.resumeFrom}). */
  resume?: Resume;
  /**
   * Open the stream resumable and, when its connection drops (UNAVAILABLE,
   * INTERNAL or UNKNOWN without a final reason such as `ASTERISK_FAILURE` or
   * `DRAINING`), resume it by itself: with its resume token and the last
   * sequence number received, at the instance the server advertised (then
   * through the client's target, and at an instance a `RESUME_WRONG_INSTANCE`
   * names if `allowedInstances` holds it), with the client's `openRetries`.
   * Iteration goes on as if nothing happened: the audio's sequence numbers
   * stay contiguous ({@link ListenStream.resumes} counts the resumes). Bounded
   * by the server's resume grace: past it the resume is refused and iteration
   * throws that error. Sends made while the connection is down reject; those
   * after the resume go to the resumed stream. The Go (`AutoResume`) and
   * Python (`auto_resume`) SDKs do the same.
   */
  autoResume?: boolean;
}

/** Continues a stream after its connection dropped (see `resumeFrom()` of a stream). */
export interface Resume {
  /** The `resumeToken` of the stream's {@link StreamInfo}. */
  token: string;
  /** Sequence number of the last audio chunk received; unset if none was. */
  lastSequenceNumber?: number;
  /**
   * The `instanceAddress` of the stream's {@link StreamInfo}: `host:port` of
   * the gateway instance holding it. When set and different from the client's
   * own target, the resume is sent there directly instead of through the load
   * balancer. Unset or empty: the client's own target (which redirects a
   * resume that reaches the wrong instance).
   */
  instanceAddress?: string;
}

/** What the server confirmed when the stream started. */
export interface StreamInfo {
  streamId: string;
  format: AudioFormat;
  /** 8000 or 16000. */
  sampleRateHz: number;
  /** Sample bytes in one 20 ms frame. */
  frameBytes: number;
  chunkMs: number;
  encapsulation: Encapsulation;
  transport: MediaTransport;
  /** Opaque token to resume the stream after a dropped connection. */
  resumeToken: string;
  /** Whether this stream continues an earlier connection. */
  resumed: boolean;
  /** Client chunks the server buffers before it asks the client to hold off. */
  bufferHighChunks: number;
  /**
   * `host:port` on which the gateway instance holding the stream can be
   * reached directly, bypassing a load balancer; a resume must reach that
   * instance. Empty when the instance advertises none (a single gateway).
   */
  instanceAddress: string;
}

/** Sample bytes in one chunk of a stream (without encapsulation). */
export function chunkBytes(info: StreamInfo): number {
  return (info.frameBytes * info.chunkMs) / 20;
}

/** One chunk of audio from the call or conference. */
export interface AudioChunk {
  kind: "audio";
  /** `chunkMs` of samples in the stream's format and encapsulation. */
  data: Uint8Array;
  /** Position of the chunk, from 0. */
  sequenceNumber: number;
  /** Media time of the first sample, in samples from the start of the stream. */
  timestamp: number;
}

/** A DTMF digit the call sent. */
export interface DtmfReceived {
  kind: "dtmf";
  /** 0-9, *, #, A-D. */
  digit: string;
  /** How long the digit lasted (0 if unknown). */
  durationMs: number;
}

/** The audio sent before a mark has been played. */
export interface MarkPlayed {
  kind: "mark";
  name: string;
  /** Milliseconds of client audio played at the mark. */
  positionMs: number;
}

/** The effect of a clear: queued audio was dropped. */
export interface Cleared {
  kind: "cleared";
  /** Play position where playback was cut. */
  positionMs: number;
  /** Marks dropped with the audio, in order. */
  droppedMarks: string[];
}

/** The server asks the client to hold off (`PAUSE`) or resume sending audio. */
export interface FlowControl {
  kind: "flow";
  state: FlowState;
  /** Milliseconds of audio buffered when the state changed. */
  bufferedMs: number;
}

/** The stream ended; always the last event. */
export interface Stopped {
  kind: "stopped";
  reason: StopReason;
  detail: string;
}

// The events are named as in the protocol and the Go and Python SDKs
// (AudioChunk, DtmfReceived, MarkPlayed, Cleared, FlowControl, Stopped); the
// names they had before are kept as deprecated aliases.
/** @deprecated Use {@link AudioChunk}. */
export type AudioEvent = AudioChunk;
/** @deprecated Use {@link DtmfReceived}. */
export type DtmfEvent = DtmfReceived;
/** @deprecated Use {@link MarkPlayed}. */
export type MarkEvent = MarkPlayed;
/** @deprecated Use {@link Cleared}. */
export type ClearedEvent = Cleared;
/** @deprecated Use {@link FlowControl}. */
export type FlowEvent = FlowControl;
/** @deprecated Use {@link Stopped}. */
export type StoppedEvent = Stopped;

/** Anything the server sends on a stream after it started. */
export type StreamEvent = AudioChunk | DtmfReceived | MarkPlayed | Cleared | FlowControl | Stopped;
