/**
 * TypeScript client for the mediastream gateway: the live audio of Asterisk
 * calls and conferences over gRPC. For browsers, see `@voipbin/mediastream/browser`.
 */
export {
  MediaStreamClient,
  ListenStream,
  DuplexStream,
  DEFAULT_CLOSE_GRACE_MS,
  DEFAULT_OPEN_RETRIES,
  refusedBeforeStart,
  TARGET_HEADER,
} from "./client.js";
export type { ClientOptions, StreamOptions } from "./client.js";
export { RPCError, ConfigError, Code, codeName } from "./errors.js";
export type { ConfigErrorReason, FieldViolation } from "./errors.js";
export { ExternalMediaClient, ExternalMediaEncapsulation, ExternalMediaStatus } from "./external.js";
export type { ExternalMedia, ExternalMediaConfig, StopSelector } from "./external.js";
export {
  AudioFormat,
  Direction,
  Encapsulation,
  FlowState,
  MediaTransport,
  StopReason,
  chunkBytes,
} from "./types.js";
export type {
  AudioChunk,
  Cleared,
  DtmfReceived,
  FlowControl,
  MarkPlayed,
  Stopped,
  AudioEvent,
  ClearedEvent,
  DtmfEvent,
  FlowEvent,
  MarkEvent,
  Resume,
  StoppedEvent,
  StreamConfig,
  StreamEvent,
  StreamInfo,
} from "./types.js";
