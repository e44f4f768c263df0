"""nginx and HAProxy from the distribution's packages, run on free ports with deploy/'s configs.

Each proxy runs the configuration operators get from ``deploy/`` (deploy/nginx/mediastream.conf,
deploy/haproxy/haproxy.cfg) with only its listen addresses and its gateway addresses
replaced, from a directory of its own under the test's tmp dir.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NGINX_CONF = ROOT / "deploy" / "nginx" / "mediastream.conf"
HAPROXY_CONF = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
KINDS = ("nginx", "haproxy")


def free_port() -> int:
    """A port free now (bound, then let go: another process may take it before we do)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binary(kind: str) -> str | None:
    """Where the proxy's executable is, or None."""
    return shutil.which(kind) or next((p for p in (f"/usr/sbin/{kind}",) if Path(p).exists()), None)


def missing_reason(kind: str) -> str:
    """Why `kind` cannot run here ("" : it can)."""
    if binary(kind) is None:
        return f"{kind} is not installed: `make proxies` installs Debian's package (root or sudo)"
    return ""


@dataclass(frozen=True)
class Backend:
    """One gateway instance as a proxy sees it."""

    grpc: str
    websocket: str
    metrics: str


def _replace_servers(text: str, pattern: str, lines: Callable[[str], list[str]]) -> str:
    """Replace the lines matching `pattern` (one per gateway) by ``lines(rest)``.

    `pattern` ends at the address; `rest` is what follows it on the first such line (the
    server's parameters in deploy/'s config, kept as they are).
    """
    regex = re.compile(rf"^([ \t]*){pattern}(.*)\n", re.M)
    found = list(regex.finditer(text))
    assert found, f"no line matches {pattern!r}: the deploy config changed"
    prefix, rest = found[0].group(1), found[0].group(2)
    block = "".join(f"{prefix}{line}\n" for line in lines(rest))
    out = text[: found[0].start()] + block
    last = found[0].end()
    for m in found[1:]:
        out += text[last : m.start()]
        last = m.end()
    return out + text[last:]


def nginx_config(backends: list[Backend], grpc_port: int, ws_port: int, workdir: Path) -> str:
    """nginx.conf around deploy/nginx/mediastream.conf, addresses and ports replaced."""
    site = NGINX_CONF.read_text()
    site = site.replace("listen 50051 http2;", f"listen 127.0.0.1:{grpc_port} http2;")
    site = site.replace("listen 8080;", f"listen 127.0.0.1:{ws_port};")
    site = _replace_servers(
        site, r"server \S+:50051", lambda rest: [f"server {b.grpc}{rest}" for b in backends]
    )
    site = _replace_servers(
        site, r"server \S+:8080", lambda rest: [f"server {b.websocket}{rest}" for b in backends]
    )
    (workdir / "mediastream.conf").write_text(site)
    temp = {name: workdir / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for d in temp.values():
        d.mkdir(exist_ok=True)
    return f"""
daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {workdir}/access.log;
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    include {workdir}/mediastream.conf;
}}
"""


def haproxy_config(backends: list[Backend], grpc_port: int, ws_port: int) -> str:
    """deploy/haproxy/haproxy.cfg, addresses and ports replaced."""
    cfg = HAPROXY_CONF.read_text()
    cfg = cfg.replace("bind :50051 proto h2", f"bind 127.0.0.1:{grpc_port} proto h2")
    cfg = cfg.replace("bind :8080\n", f"bind 127.0.0.1:{ws_port}\n")

    def check_port(b: Backend) -> str:
        return b.metrics.rpartition(":")[2]

    # The check goes to each gateway's own metrics port (deploy: 9464 on every pod).
    cfg = _replace_servers(
        cfg,
        r"server gw\d+ \S+:50051",
        lambda rest: [
            f"server gw{i} {b.grpc}{rest} port {check_port(b)}" for i, b in enumerate(backends)
        ],
    )
    cfg = _replace_servers(
        cfg,
        r"server gw\d+ \S+:8080",
        lambda rest: [
            f"server gw{i} {b.websocket}{rest} port {check_port(b)}" for i, b in enumerate(backends)
        ],
    )
    return cfg


@dataclass
class Proxy:
    """A running nginx or HAProxy in front of `backends`, on ports of its own."""

    kind: str
    backends: list[Backend]
    workdir: Path
    grpc_port: int = 0
    ws_port: int = 0
    process: subprocess.Popen[bytes] | None = None
    starts: int = field(default=0)

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def websocket(self) -> str:
        return f"127.0.0.1:{self.ws_port}"

    def start(self) -> None:
        """Start (again on the same ports, once it has run); wait until both ports listen."""
        if not self.grpc_port:
            self.grpc_port, self.ws_port = free_port(), free_port()
        exe = binary(self.kind)
        assert exe is not None
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / f"{self.kind}-{self.starts}.out", "wb")  # noqa: SIM115
        if self.kind == "nginx":
            conf = self.workdir / "nginx.conf"
            conf.write_text(nginx_config(self.backends, self.grpc_port, self.ws_port, self.workdir))
            error_log = str(self.workdir / "error.log")
            cmd = [exe, "-p", str(self.workdir), "-e", error_log, "-c", str(conf)]
        else:
            conf = self.workdir / "haproxy.cfg"
            conf.write_text(haproxy_config(self.backends, self.grpc_port, self.ws_port))
            cmd = [exe, "-db", "-f", str(conf)]
        self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.starts += 1
        deadline = time.monotonic() + 10
        for port in (self.grpc_port, self.ws_port):
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.kind} exited at start: {self.output()}")
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", port), timeout=1),
                ):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.kind} did not listen: {self.output()}")
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop at once (nginx: fast shutdown; HAProxy: hard stop): every connection is cut."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def output(self) -> str:
        """What the proxy logged (for failure messages)."""
        texts = []
        for f in sorted(self.workdir.glob("*.out")) + sorted(self.workdir.glob("error.log")):
            texts.append(f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}")
        return "\n".join(texts)
