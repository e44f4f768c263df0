// Runs a real gateway (with its embedded Asterisk emulator) for the tests, or
// uses the one named by MEDIASTREAM_READY (its JSON ready line).
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

/** A running gateway. */
export interface Gateway {
  /** host:port of its gRPC endpoint. */
  grpc: string;
  /** Demo call names (tone_call, echo_call, dtmf_call, conference) to IDs. */
  demo: Record<string, string>;
  /** Stops it, if this process started it. */
  stop(): Promise<void>;
  /** SIGKILLs it (a gateway that vanishes), if this process started it. */
  kill(): Promise<void>;
}

/** The repository root: the first directory upwards holding pyproject.toml and proto/. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "pyproject.toml")) && existsSync(join(dir, "proto", "voipbin"))) {
      return dir;
    }
    const parent = resolve(dir, "..");
    if (parent === dir) {
      throw new Error("repository root not found");
    }
    dir = parent;
  }
}

/** Starts a gateway on a free port (or uses MEDIASTREAM_READY) and waits for its ready line. */
export async function startGateway(): Promise<Gateway> {
  const env = process.env.MEDIASTREAM_READY;
  if (env) {
    const ready = JSON.parse(env) as { grpc: string; demo: Record<string, string> };
    return { grpc: ready.grpc, demo: ready.demo, stop: async () => {}, kill: async () => {} };
  }
  return spawnGateway([]);
}

/**
 * Starts a gateway of its own, even when MEDIASTREAM_READY names one, with its
 * gRPC, metrics and WebSocket endpoints on free ports and `extra` appended to
 * its command line (a later flag overrides an earlier one).
 */
export async function startOwnGateway(...extra: string[]): Promise<Gateway> {
  return spawnGateway(["--metrics-listen", "127.0.0.1:0", "--ws-listen", "127.0.0.1:0", ...extra]);
}

async function spawnGateway(extra: string[]): Promise<Gateway> {
  const args = [
    "run", "--frozen", "python", "-m", "mediastream.cli", "serve",
    "--grpc-listen", "127.0.0.1:0", "--log-level", "WARNING", ...extra,
  ];
  const hasUv = spawnSync("uv", ["--version"]).status === 0;
  const child: ChildProcess = spawn(hasUv ? "uv" : "python3", hasUv ? args : ["-m", "uv", ...args], {
    cwd: repoRoot(),
    env: { ...process.env, PYTHONUNBUFFERED: "1", UV_PYTHON_DOWNLOADS: "never" },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<void>((res) => child.once("exit", () => res()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null && child.pid) {
      process.kill(-child.pid, "SIGTERM");
      const timer = setTimeout(() => child.pid && process.kill(-child.pid, "SIGKILL"), 15000);
      await exited;
      clearTimeout(timer);
    }
  };
  const kill = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null && child.pid) {
      process.kill(-child.pid, "SIGKILL");
      await exited;
    }
  };
  const line = await new Promise<string>((res, rej) => {
    const lines = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => rej(new Error(`no ready line after 90 s:\n${stderr}`)), 90000);
    lines.once("line", (l) => {
      clearTimeout(timer);
      res(l);
    });
    void exited.then(() => {
      clearTimeout(timer);
      rej(new Error(`the gateway exited before it was ready:\n${stderr}`));
    });
  }).catch(async (err: unknown) => {
    await stop();
    throw err;
  });
  child.stdout?.resume(); // keep draining
  const ready = JSON.parse(line) as { grpc: string; demo: Record<string, string> };
  return { grpc: ready.grpc, demo: ready.demo, stop, kill };
}
