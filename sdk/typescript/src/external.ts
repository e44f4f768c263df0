/** Client of the ExternalMediaService: audio sent straight from Asterisk to a host. */
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import {
  ExternalMediaService,
  type ExternalMedia as PbExternalMedia,
} from "./gen/voipbin/mediastream/v1/external_media_pb.js";
import * as wireExternal from "./gen/voipbin/mediastream/v1/external_media_pb.js";
import * as wire from "./gen/voipbin/mediastream/v1/mediastream_pb.js";
import { fromWire, names, toWire } from "./enums.js";
import { RPCError } from "./errors.js";
import type { AudioFormat, Direction } from "./types.js";

/** Wire form of external media: `RTP` (the default), `AUDIOSOCKET`, `SLN`, or a bot WebSocket (`TWILIO_WEBSOCKET`, `VOIPBIN_WEBSOCKET`). */
export type ExternalMediaEncapsulation = "UNSPECIFIED" | "RTP" | "AUDIOSOCKET" | "SLN" | "TWILIO_WEBSOCKET" | "VOIPBIN_WEBSOCKET";
/** The {@link ExternalMediaEncapsulation} names, each its own value. */
export const ExternalMediaEncapsulation: { readonly [K in ExternalMediaEncapsulation]: K } = names(
  wireExternal.ExternalMediaEncapsulation,
);
/** State of external media: `RUNNING`, `TERMINATING` or `TERMINATED`. */
export type ExternalMediaStatus = "UNSPECIFIED" | "RUNNING" | "TERMINATING" | "TERMINATED";
/** The {@link ExternalMediaStatus} names, each its own value. */
export const ExternalMediaStatus: { readonly [K in ExternalMediaStatus]: K } = names(wireExternal.ExternalMediaStatus);

/** Whose audio to send where. Set exactly one of `callId` and `conferenceId`. */
export interface ExternalMediaConfig {
  callId?: string;
  conferenceId?: string;
  /** `host:port` to send to; the gateway's allow-list must allow it. */
  externalHost: string;
  /** Wire form; the default is RTP. */
  encapsulation?: ExternalMediaEncapsulation;
  /** Sample format (AudioSocket always carries 8 kHz slin). */
  format?: AudioFormat;
  /** Whose audio of a call is sent. */
  direction?: Direction;
}

/** One flow of audio to an external host. */
export interface ExternalMedia {
  id: string;
  callId?: string;
  conferenceId?: string;
  externalHost: string;
  encapsulation: ExternalMediaEncapsulation;
  format: AudioFormat;
  direction: Direction;
  status: ExternalMediaStatus;
  createTime?: Date;
  /** Why it ended, once terminated. */
  endReason: string;
}

/** Which external media to stop: one by ID, or all of a call or conference. */
export type StopSelector = { id: string } | { callId: string } | { conferenceId: string };

/** Starts, stops and lists external media. Get one from `MediaStreamClient.externalMedia`. */
export class ExternalMediaClient {
  private readonly rpc: Client<typeof ExternalMediaService>;

  /** @param transport The transport of the gateway connection. */
  constructor(transport: Transport) {
    this.rpc = createClient(ExternalMediaService, transport);
  }

  /** Starts sending audio and returns the running external media. */
  async start(config: ExternalMediaConfig): Promise<ExternalMedia> {
    const target = config.callId
      ? { case: "callId" as const, value: config.callId }
      : config.conferenceId
        ? { case: "conferenceId" as const, value: config.conferenceId }
        : { case: undefined };
    const res = await call(() =>
      this.rpc.startExternalMedia({
        target,
        externalHost: config.externalHost,
        encapsulation: toWire(wireExternal.ExternalMediaEncapsulation, config.encapsulation),
        format: toWire(wire.AudioFormat, config.format),
        direction: toWire(wire.Direction, config.direction),
      }),
    );
    return fromProto(res.externalMedia);
  }

  /** Stops external media and returns what was stopped. */
  async stop(selector: StopSelector): Promise<ExternalMedia[]> {
    const sel =
      "id" in selector
        ? { case: "id" as const, value: selector.id }
        : "callId" in selector
          ? { case: "callId" as const, value: selector.callId }
          : { case: "conferenceId" as const, value: selector.conferenceId };
    const res = await call(() => this.rpc.stopExternalMedia({ selector: sel }));
    return res.externalMedia.map(fromProto);
  }

  /** Returns one external media by ID. */
  async get(id: string): Promise<ExternalMedia> {
    const res = await call(() => this.rpc.getExternalMedia({ id }));
    return fromProto(res.externalMedia);
  }

  /**
   * Lists external media, newest first: of a call, of a conference, or all. The gateway
   * answers a page at a time (at most 1000 each); this follows the pages.
   */
  async list(filter: { callId?: string; conferenceId?: string } = {}): Promise<ExternalMedia[]> {
    const target = filter.callId
      ? { case: "callId" as const, value: filter.callId }
      : filter.conferenceId
        ? { case: "conferenceId" as const, value: filter.conferenceId }
        : { case: undefined };
    const out: ExternalMedia[] = [];
    let pageToken = "";
    for (;;) {
      const res = await call(() => this.rpc.listExternalMedia({ target, pageToken }));
      out.push(...res.externalMedia.map(fromProto));
      if (!res.nextPageToken) return out;
      pageToken = res.nextPageToken;
    }
  }
}

async function call<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw RPCError.from(err);
  }
}

function fromProto(m: PbExternalMedia | undefined): ExternalMedia {
  if (!m) {
    throw new RPCError(13, "the server's answer has no external media");
  }
  return {
    id: m.id,
    callId: m.target.case === "callId" ? m.target.value : undefined,
    conferenceId: m.target.case === "conferenceId" ? m.target.value : undefined,
    externalHost: m.externalHost,
    encapsulation: fromWire(wireExternal.ExternalMediaEncapsulation, m.encapsulation),
    format: fromWire(wire.AudioFormat, m.format),
    direction: fromWire(wire.Direction, m.direction),
    status: fromWire(wireExternal.ExternalMediaStatus, m.status),
    createTime: m.createTime ? timestampDate(m.createTime) : undefined,
    endReason: m.endReason,
  };
}
