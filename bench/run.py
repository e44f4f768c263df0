"""Whole-path load benchmark of the gateway: N concurrent two-way streams per step.

Run: ``make bench`` (full, ~18-30 min) or ``make bench BENCH_ARGS=--quick`` (< 60 s),
or directly ``uv run python bench/run.py [--quick] [options]`` after
``cd bench && go build -o ../out/bin/loadgen ./loadgen``.

For each step a fresh gateway is started against the load generator
(``bench/loadgen``, built to ``out/bin/loadgen``), which plays Asterisk (ARI
REST, the events WebSocket, externalMedia RTP, AudioSocket and WebSocket-channel
media) and N clients: gRPC ``StreamMedia`` streams, or (``--clients shim-sln,shim-rtp``)
WebSocket clients of the gateway's VoIPBIN ``media_stream`` endpoint. Every call
sends a 20 ms ulaw frame every 20 ms; every client sends one chunk per
``chunk_ms`` back; both ends check every frame (stream, sequence, content) and
time it. The same step is repeated against
``bench/baseline_relay.py``, a minimal asyncio relay of the same frames over the
same sockets, so the gateway's cost can be given as a
ratio to it. Figures are printed as a table and written as JSON
(``out/bench.json`` by default).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LOADGEN = ROOT / "out" / "bin" / "loadgen"  # out/ is gitignored
NATIVE_RELAY = ROOT / "out" / "bin" / "nativerelay"

P99_LIMIT_MS = 10.0
NOISY_CORES = 0.3  # other users' CPU during a step above which its figures are suspect
STEP_QUANTUM = 25
FULL_NS = {100: [25, 50, 100, 200, 400, 700, 1000], 20: [25, 50, 100, 200, 400]}
QUICK_NS = {100: [100], 20: [50]}
# Who the N clients are. "grpc": StreamMedia streams (also the only client of the baseline
# and native relays); "shim-<encapsulation>": WebSocket clients of the gateway's VoIPBIN
# media_stream endpoint (server/mediastream/shim), which cuts 20 ms chunks only.
SHIM_CLIENTS = {"shim-sln": "sln", "shim-rtp": "rtp"}
CLIENTS = ["grpc", *SHIM_CLIENTS]
QUICK_CLIENTS = ["grpc", "shim-rtp"]
SHIM_CHUNK = 20


@dataclass
class Target:
    """What the load is pointed at."""

    name: str  # "gateway" or "baseline"
    argv: list[str]
    env: dict[str, str]


def build_loadgen() -> None:
    """``go build`` the load generator (quick when it is up to date)."""
    if shutil.which("go") is None:
        sys.exit("bench: Go is needed to build bench/loadgen")
    subprocess.run(["go", "build", "-o", str(LOADGEN), "./loadgen"], cwd=BENCH, check=True)
    subprocess.run(["go", "build", "-o", str(NATIVE_RELAY), "./nativerelay"], cwd=BENCH, check=True)


def read_ready(proc: subprocess.Popen[str], what: str, timeout: float = 60.0) -> dict[str, Any]:
    """The first JSON line a child prints (its ready line)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{what} exited with {proc.wait(5)} before it was ready")
        line = line.strip()
        if line.startswith("{"):
            data: dict[str, Any] = json.loads(line)
            return data
    raise RuntimeError(f"{what} was not ready within {timeout:.0f} s")


def stop(proc: subprocess.Popen[str], timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def gateway_target(
    ari_url: str, pythonpath: str | None, extra: list[str], transport: str | None = None
) -> Target:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    argv = [
        sys.executable,
        "-m",
        "mediastream.cli",
        "serve",
        "--grpc-listen",
        "127.0.0.1:0",
        # Any free port for the other listeners: other gateways may run here.
        "--ws-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--ari-url",
        ari_url,
        "--log-level",
        "WARNING",
        "--max-streams",
        "100000",
        # The WebSocket endpoints open every stream on the configured transport.
        *(["--transport", transport] if transport else []),
        *extra,
    ]
    return Target("gateway", argv, env)


def native_target(ari_url: str) -> Target:
    return Target("native", [str(NATIVE_RELAY), "--ari-url", ari_url], dict(os.environ))


def baseline_target(ari_url: str, extra: list[str]) -> Target:
    argv = [sys.executable, str(BENCH / "baseline_relay.py"), "--ari-url", ari_url, *extra]
    return Target("baseline", argv, {**os.environ, "PYTHONUNBUFFERED": "1"})


def busy_cores(seconds: float = 1.0) -> float:
    """Cores busy on the whole machine over `seconds`."""

    def sample() -> tuple[float, float]:
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)

    b0, t0 = sample()
    time.sleep(seconds)
    b1, t1 = sample()
    return (os.cpu_count() or 1) * (b1 - b0) / max(1.0, t1 - t0)


def wait_quiet(max_wait: float, threshold: float = 0.25) -> float:
    """Wait (up to `max_wait` s) for other work on this shared machine to stop.

    0 (or less): no wait, and no 1 s sample of the machine either.
    """
    if max_wait <= 0:
        return math.nan
    deadline = time.monotonic() + max_wait
    while True:
        busy = busy_cores()
        if busy < threshold or time.monotonic() > deadline:
            return busy
        print(f"          (machine busy: {busy:.2f} cores used by others; waiting)", flush=True)


NICE = 0  # --nice: scheduling priority of the gateway and the load generator
PYSPY_EXTRA: list[str] = os.environ.get("BENCH_PYSPY_ARGS", "").split()


def _renice() -> None:
    if NICE:
        os.setpriority(os.PRIO_PROCESS, 0, NICE)


def run_step(
    control: str,
    target: Target,
    cfg: dict[str, Any],
    profile: Path | None,
    log: TextIO,
) -> dict[str, Any]:
    """Start `target`, run one load step against it, stop it; return the result."""
    proc = subprocess.Popen(
        target.argv,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=target.env,
        cwd=ROOT,
        preexec_fn=_renice,
    )
    spy: subprocess.Popen[bytes] | None = None
    try:
        ready = read_ready(proc, target.name)
        time.sleep(0.5)  # let it settle (ARI events connected, orphan sweep done)
        addresses = {"grpc": ready["grpc"], "websocket": ready.get("websocket") or ""}
        body = json.dumps({**cfg, **addresses, "gateway_pid": proc.pid}).encode()
        req = urllib.request.Request(
            control, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        result: dict[str, Any] = {}
        with urllib.request.urlopen(req, timeout=600) as resp:
            for raw in resp:
                event = json.loads(raw)
                if event["event"] == "measuring" and profile is not None:
                    spy = start_profiler(proc.pid, cfg["measure_s"], profile)
                elif event["event"] == "result":
                    result = event["result"]
        if spy is not None:
            spy.wait(60)
        return result
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
        stop(proc)


def start_profiler(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """py-spy over the measurement window (collapsed stacks, with native frames)."""
    exe = shutil.which("py-spy")
    if exe is None:
        sys.exit("bench: --profile needs py-spy: uv run --with py-spy python bench/run.py ...")
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [exe, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds)))]
    # --native (C frames: grpc's Cython, asyncio's C tasks) cannot be non-blocking.
    mode = [] if "--native" in PYSPY_EXTRA else ["--nonblocking"]
    argv += ["--rate", "200", "--format", "raw", *mode, "--threads", *PYSPY_EXTRA]
    argv += ["-o", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_series(
    args: argparse.Namespace,
    control: str,
    target: Target,
    client: str,
    transport: str,
    chunk: int,
    ns: list[int],
    out_dir: Path,
    log: TextIO,
    results: list[dict[str, Any]],
) -> None:
    """Steps of growing N; after the first failure, one step half-way back."""
    last_ok = 0
    tried: set[int] = set()
    queue = list(ns)
    bisected = False
    while queue:
        n = queue.pop(0)
        tried.add(n)
        name = target.name if client == "grpc" else f"{target.name}-{client}"
        cfg = {
            "label": f"{name}-{transport}-{chunk}-{n}",
            "streams": n,
            "chunk_ms": chunk,
            "transport": transport,
            "client": "grpc" if client == "grpc" else "shim",
            **({"encapsulation": SHIM_CLIENTS[client]} if client in SHIM_CLIENTS else {}),
            "warmup_s": args.warmup,
            "measure_s": args.measure,
            "ramp_per_s": args.ramp,
            "streams_per_conn": args.streams_per_conn,
        }
        prof = (
            out_dir / f"profile-{cfg['label']}.txt"
            if args.profile and target.name == "gateway"
            else None
        )
        for attempt in range(1 + args.retries):
            wait_quiet(args.quiet_wait)
            r = run_step(control, target, cfg, prof, log)
            s = summarise(r)
            noisy = s["others_cores"] > NOISY_CORES
            print(row(target.name, client, r, s) + (" (noisy)" if noisy else ""), flush=True)
            if r.get("errors"):
                print(f"          errors: {Counter(r['errors']).most_common(2)}", flush=True)
            if s["ok"] or not noisy or attempt == args.retries:
                break
            print("          other work on the machine during a failed step: again", flush=True)
        results.append(
            {
                "target": target.name,
                "client": client,
                "result": r,
                "summary": s,
                "noisy": noisy,
                "profile": str(prof),
            }
        )
        if s["ok"]:
            last_ok = max(last_ok, n)
            continue
        if args.keep_going:
            continue
        # Past the limits: try once half-way between the last good N and this one.
        if not bisected and last_ok and n - last_ok >= 2 * STEP_QUANTUM:
            bisected = True
            mid = (last_ok + n) // 2 // STEP_QUANTUM * STEP_QUANTUM
            if last_ok < mid < n and mid not in tried:
                queue = [mid]
                continue
        # Far past them, a larger N only takes longer to fail.
        if r["failed"] > 0.05 * n or s["p99_ms"] > 100:
            break


def summarise(r: dict[str, Any]) -> dict[str, Any]:
    """Derived figures of one step."""
    cfg = r["config"]
    n = max(1, r["started"])
    win = max(1e-9, r["window_s"])
    frames = r["down"]["sent_in_window"] + r["up"]["sent_in_window"]
    cpu = r["gateway_cpu_s"]
    down, up = r["down"], r["up"]
    lost = down["lost"] + up["lost"] + down["bad"] + up["bad"]
    p99 = max(_num(down["added_latency"]["p99_ms"]), _num(up["added_latency"]["p99_ms"]))
    ok = r["failed"] == 0 and r["started"] == cfg["streams"] and lost == 0 and p99 <= P99_LIMIT_MS
    return {
        "streams": cfg["streams"],
        "ok": ok,
        "cpu_ms_per_stream_s": 1000 * cpu / (n * win),
        "cpu_us_per_frame": 1e6 * cpu / frames if frames else math.nan,
        "cores": cpu / win,
        "rss_kb_per_stream": (r["gateway_rss_kb"] - r["gateway_rss_idle_kb"]) / n,
        "loadgen_cores": r["loadgen_cpu_s"] / win,
        # CPU used by anything else on the machine (other users' work): noise.
        "others_cores": max(
            0.0,
            r["machine_busy_fraction"] * (os.cpu_count() or 1) - (cpu + r["loadgen_cpu_s"]) / win,
        ),
        "p99_ms": p99,
    }


def _num(x: Any) -> float:
    if x is None:
        return math.nan
    if isinstance(x, str):
        return math.inf if "Inf" in x else math.nan
    return float(x)


def fmt_ms(x: Any) -> str:
    v = _num(x)
    if math.isnan(v):
        return "-"
    if math.isinf(v) or v >= 1000:
        return ">1s"  # past the load generator's histogram (its max is in the JSON)
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


HEADER = (
    f"{'target':9} {'client':8} {'transport':11} {'chunk':>5} {'N':>5} {'start':>5} "
    f"{'lost↓':>6} {'lost↑':>6} {'bad':>4} "
    f"{'↓p50':>6} {'↓p99':>6} {'↓max':>6} {'↑p50':>6} {'↑p99':>6} {'↑max':>6} {'↑flr':>5} "
    f"{'ms/str·s':>8} {'µs/frm':>7} {'cores':>5} {'KB/str':>7} {'lg':>5} {'other':>5} {'ok':>3}"
)


def row(target: str, client: str, r: dict[str, Any], s: dict[str, Any]) -> str:
    cfg, d, u = r["config"], r["down"], r["up"]
    dl, ul = d["added_latency"], u["added_latency"]
    return (
        f"{target:9} {client:8} {cfg['transport']:11} {cfg['chunk_ms']:>5} {cfg['streams']:>5} "
        f"{r['started']:>5} {d['lost']:>6} {u['lost']:>6} {d['bad'] + u['bad']:>4} "
        f"{fmt_ms(dl['p50_ms']):>6} {fmt_ms(dl['p99_ms']):>6} {fmt_ms(dl['max_ms']):>6} "
        f"{fmt_ms(ul['p50_ms']):>6} {fmt_ms(ul['p99_ms']):>6} {fmt_ms(ul['max_ms']):>6} "
        f"{fmt_ms((u.get('per_stream_floor') or {}).get('p50_ms')):>5} "
        f"{s['cpu_ms_per_stream_s']:>8.2f} {s['cpu_us_per_frame']:>7.1f} {s['cores']:>5.2f} "
        f"{s['rss_kb_per_stream']:>7.1f} {s['loadgen_cores']:>5.2f} "
        f"{s['others_cores']:>5.2f} {'yes' if s['ok'] else 'no':>3}"
    )


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def git(*a: str) -> str:
        try:
            return subprocess.run(
                ["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "git_head": git("rev-parse", "--short", "HEAD"),
        "server_tree_modified": bool(git("status", "--porcelain", "--", "server")),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: RTP only, small N, < 60 s")
    p.add_argument("--transports", default="rtp,audiosocket,websocket")
    p.add_argument("--chunks", default="100,20", help="chunk_ms values")
    p.add_argument("--ns", help="stream counts for every chunk size, e.g. 100,400,1000")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds after ramp-up")
    p.add_argument("--measure", type=float, default=10.0, help="seconds measured per step")
    p.add_argument("--ramp", type=float, default=150.0, help="streams opened per second")
    p.add_argument(
        "--clients",
        help="who the N clients are, any of: grpc (StreamMedia streams), shim-sln, shim-rtp\n"
        "(WebSocket clients of the shim's media_stream endpoint with that encapsulation;\n"
        "20 ms chunks only, so they run in the 20 ms steps of --shim-transports);\n"
        f"default {','.join(CLIENTS)}, with --quick {','.join(QUICK_CLIENTS)}",
    )
    p.add_argument(
        "--shim-transports",
        default="rtp",
        help="transports (of those in --transports) whose 20 ms steps run the shim clients too\n"
        "(default rtp)",
    )
    p.add_argument("--streams-per-conn", type=int, default=50, help="gRPC streams per connection")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="before each step, wait up to this long for the machine to be idle (0: no wait)",
    )
    p.add_argument("--baseline-only", action="store_true")
    p.add_argument(
        "--native-relay",
        action="store_true",
        help="also run the steps against bench/nativerelay (the same relay in Go)",
    )
    p.add_argument("--keep-going", action="store_true", help="run every N even after a failure")
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        help="priority of the gateway and load generator (e.g. -10 as root on a shared machine)",
    )
    p.add_argument("--retries", type=int, default=1, help="re-run a failed step that was noisy")
    p.add_argument("--baseline-arg", action="append", default=[], help="extra baseline flag")
    p.add_argument("--json", default=str(ROOT / "out" / "bench.json"))
    p.add_argument("--profile", action="store_true", help="py-spy the gateway in every step")
    p.add_argument(
        "--gateway-pythonpath",
        help="put this before the project on PYTHONPATH (to measure a patched copy of server/)",
    )
    p.add_argument("--gateway-arg", action="append", default=[], help="extra flag for serve")
    p.add_argument("--label", default="", help="what this run measures (goes in the JSON)")
    args = p.parse_args(argv)

    chunks = [int(c) for c in args.chunks.split(",")]
    transports = args.transports.split(",")
    ns_for: dict[int, list[int]] = {}
    for c in chunks:
        default = QUICK_NS if args.quick else FULL_NS
        ns_for[c] = [int(n) for n in args.ns.split(",")] if args.ns else default.get(c, [100])
    if args.quick:
        transports = ["rtp"] if "--transports" not in (argv or sys.argv) else transports
        args.warmup, args.measure = min(args.warmup, 1.0), min(args.measure, 3.0)
        args.quiet_wait, args.retries = min(args.quiet_wait, 1.0), 0
    clients = args.clients.split(",") if args.clients else QUICK_CLIENTS if args.quick else CLIENTS
    if unknown := sorted(set(clients) - set(CLIENTS)):
        p.error(f"--clients: unknown {', '.join(unknown)} (choose from {', '.join(CLIENTS)})")
    shim_clients = [c for c in clients if c in SHIM_CLIENTS]
    shim_transports = set(args.shim_transports.split(","))
    if shim_clients and (SHIM_CHUNK not in chunks or not shim_transports & set(transports)):
        print(
            f"bench: {', '.join(shim_clients)} run in the {SHIM_CHUNK} ms steps of "
            f"--shim-transports ({args.shim_transports}) only: none in this run",
            file=sys.stderr,
        )

    build_loadgen()
    out_dir = Path(args.json).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "bench-children.log"
    log = open(log_path, "a")  # noqa: SIM115 - open for the whole run
    global NICE
    NICE = args.nice
    # Stop children on SIGTERM too (finally blocks run on SystemExit).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    lg = subprocess.Popen(
        [str(LOADGEN), "--listen", "127.0.0.1:0"],
        preexec_fn=_renice,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    started = time.time()
    info = machine()
    print(
        f"machine: {info['nproc']} CPUs, {info['cpu_model']}; Python {info['python']}; "
        f"children's stderr -> {log_path}",
        flush=True,
    )
    results: list[dict[str, Any]] = []
    try:
        ready = read_ready(lg, "loadgen")
        ari, control = ready["ari_url"], ready["control"]
        gateway = not args.baseline_only
        print(HEADER, flush=True)
        for transport in transports:
            for chunk in chunks:
                series: list[tuple[Target, str]] = []
                if gateway and "grpc" in clients:
                    gw = gateway_target(ari, args.gateway_pythonpath, args.gateway_arg)
                    series.append((gw, "grpc"))
                if gateway and chunk == SHIM_CHUNK and transport in shim_transports:
                    gw = gateway_target(ari, args.gateway_pythonpath, args.gateway_arg, transport)
                    series += [(gw, client) for client in shim_clients]
                if transport == "rtp" and not args.no_baseline:
                    series.append((baseline_target(ari, args.baseline_arg), "grpc"))
                if transport == "rtp" and args.native_relay:
                    series.append((native_target(ari), "grpc"))
                for target, client in series:
                    run_series(args, control, target, client, transport, chunk, ns_for[chunk],
                               out_dir, log, results)  # fmt: skip
    finally:
        if lg.stdin:
            lg.stdin.close()
        stop(lg, 5)
        log.close()

    report = conclude(results)
    for line in report["lines"]:
        print(line)
    doc = {
        "label": args.label,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "machine": info,
        "duration_s": round(time.time() - started, 1),
        "p99_limit_ms": P99_LIMIT_MS,
        "steps": results,
        "largest_ok": report["largest"],
        "ratio_to_baseline": report["ratios"],
    }
    Path(args.json).write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"wrote {args.json} ({doc['duration_s']:.0f} s)")
    return 0


def conclude(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Largest N with zero loss and p99 <= limit, and gateway/baseline cost ratios."""
    largest: dict[str, int] = {}
    per: dict[tuple[str, str, str, int, int], dict[str, Any]] = {}
    for item in results:
        cfg = item["result"]["config"]
        client = item.get("client", "grpc")
        # gRPC rows keep the keys they had before the shim clients existed.
        via = "" if client == "grpc" else f"{client} "
        key = f"{item['target']} {via}{cfg['transport']} {cfg['chunk_ms']}ms"
        largest.setdefault(key, 0)
        if item["summary"]["ok"]:
            largest[key] = max(largest[key], cfg["streams"])
        per[(item["target"], client, cfg["transport"], cfg["chunk_ms"], cfg["streams"])] = item[
            "summary"
        ]
    ratios: dict[str, dict[str, float]] = defaultdict(dict)
    for (target, client, transport, chunk, n), s in per.items():
        if target != "gateway":
            continue
        base = per.get(("baseline", "grpc", "rtp", chunk, n))
        if base and base["cpu_us_per_frame"] > 0:
            ratio = s["cpu_us_per_frame"] / base["cpu_us_per_frame"]
            via = "" if client == "grpc" else f"{client} "
            ratios[f"{via}{transport} {chunk}ms"][str(n)] = round(ratio, 2)
    lines = ["", f"largest N with zero loss and p99 <= {P99_LIMIT_MS:.0f} ms:"]
    lines += [f"  {k:34} {v if v else 'none of those tried'}" for k, v in largest.items()]
    if ratios:
        lines.append("gateway CPU per frame / baseline relay's (same N, same chunk):")
        for k, v in ratios.items():
            lines.append(f"  {k:34} " + ", ".join(f"N={n}: {x:.2f}x" for n, x in v.items()))
    return {"largest": largest, "ratios": ratios, "lines": lines}


if __name__ == "__main__":
    raise SystemExit(main())
