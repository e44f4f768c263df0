// A TCP proxy whose connections the tests cut, as a dropped network would.
import assert from "node:assert/strict";
import { createConnection, createServer, type Server, type Socket } from "node:net";

/** Forwards TCP connections to `target`; cut() closes the open ones, as a dropped network would. */
export class CutProxy {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();

  constructor(target: string) {
    const colon = target.lastIndexOf(":");
    const host = target.slice(0, colon);
    const port = Number(target.slice(colon + 1));
    this.server = createServer((inbound) => {
      const outbound = createConnection({ host, port });
      for (const s of [inbound, outbound]) {
        this.sockets.add(s);
        s.on("close", () => this.sockets.delete(s));
        s.on("error", () => {});
      }
      inbound.pipe(outbound);
      outbound.pipe(inbound);
      inbound.on("close", () => outbound.destroy());
      outbound.on("close", () => inbound.destroy());
    });
  }

  async start(): Promise<string> {
    await new Promise<void>((ok) => this.server.listen(0, "127.0.0.1", ok));
    const address = this.server.address();
    assert.ok(address && typeof address === "object");
    return `127.0.0.1:${address.port}`;
  }

  cut(): void {
    for (const s of this.sockets) {
      s.destroy();
    }
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise((ok) => this.server.close(ok));
  }
}
