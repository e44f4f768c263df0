/** Client of the ExternalMediaService: audio sent straight from Asterisk to a host. */
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import {
  ExternalMediaService,
  type ExternalMedia as PbExternalMedia,
  ExternalMediaEncapsulation,
  ExternalMediaStatus,
} from "./gen/voipbin/mediastream/v1/external_media_pb.js";
import type { AudioFormat, Direction } from "./gen/voipbin/mediastream/v1/mediastream_pb.js";
import { RPCError } from "./errors.js";

export { ExternalMediaEncapsulation, ExternalMediaStatus };

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
        encapsulation: config.encapsulation,
        format: config.format,
        direction: config.direction,
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
    encapsulation: m.encapsulation,
    format: m.format,
    direction: m.direction,
    status: m.status,
    createTime: m.createTime ? timestampDate(m.createTime) : undefined,
    endReason: m.endReason,
  };
}
