// The part of the `ws` package (a devDependency: Node 20 has no global
// WebSocket) that the browser client's tests use: a standard WebSocket, plus
// the Node event emitter that reports a refused upgrade.
declare module "ws" {
  import type { WebSocketHandler } from "../src/browser.js";

  export class WebSocket {
    constructor(url: string);
    binaryType: string;
    readonly readyState: number;
    send(data: string | ArrayBufferView | ArrayBuffer): void;
    close(code?: number, reason?: string): void;
    onopen: WebSocketHandler;
    onmessage: WebSocketHandler;
    onclose: WebSocketHandler;
    onerror: WebSocketHandler;
    on(event: string, listener: (...args: unknown[]) => void): this;
  }
  export default WebSocket;
}
