"""One real Asterisk process on loopback, everything private in a directory of its own.

    prefix = build(release)                  # scripts/asterisk/build.sh: cached, blocks once
    ast = Asterisk(release, prefix, workdir)
    ast.start()                              # returns when ARI answers
    ast.ari_url, ast.ari_user, ast.ari_password, ast.rx("core show channels"), ast.log_path
    ast.restart(); ast.kill(); ast.stop()

Each instance has its own ``asterisk.conf`` (every ``ast*dir`` under ``workdir``, so its
control socket and PID file are its own), its HTTP server on a free ``127.0.0.1`` port, its
own RTP port range (a random block below the kernel's ephemeral range, checked free), and
only the modules the gateway and the test dialplan need. No sound package is installed:
the prompt ``Playback()`` plays is generated here (:data:`PROMPT_HZ`). Notes on the
releases: ../shared/asterisk/README.md.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RELEASES = ("23.4.1", "22.10.1", "20.20.1")
"""The releases the gateway supports, newest first."""

PROMPT = "mediastream-prompt"
"""Name of the generated prompt file (``Playback(mediastream-prompt)``)."""

PROMPT_HZ = 500.0
"""Frequency of the generated prompt; distinct from every tone the tests send or play."""

PROMPT_SECONDS = 20.0
"""Length of the generated prompt (the ``playback`` extension loops it)."""

# How long Asterisk may take to come up, and to stop. Generous: on a loaded 2-core machine
# (other builds, other helpers) a start measured 1-3 s; ten times that is still a clear hang.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0

DIALPLAN = """
[general]
static = yes
writeprotect = yes

; Context `default`: the same extension names as the embedded emulator
; (server/mediastream/emulator/dialplan.py), plus the ones only a real Asterisk runs.
[default]
exten => tone,1,Answer()
 same => n,Playtones(440)
 same => n,Wait(120)
exten => tone880,1,Answer()
 same => n,Playtones(880)
 same => n,Wait(120)
exten => echo,1,Answer()
 same => n,Echo()
exten => dtmf,1,Answer()
 same => n,Playtones(440)
 same => n,Wait(0.4)
 same => n,SendDTMF(12#,100,120)
 same => n,Playtones(440)
 same => n,Wait(120)
exten => short,1,Answer()
 same => n,Playtones(440)
 same => n,Wait(1)
 same => n,Hangup()
; A call that nothing is sent to: Wait() writes no frames (unless transmit_silence).
exten => wait,1,Answer()
 same => n,Wait(120)
; Silence from the far end, forever: a silent bridge peer.
exten => silent,1,Answer()
 same => n,Wait(120)
; A prompt playing (a generated 500 Hz file; no sound package is installed).
exten => playback,1,Answer()
 same => n(loop),Playback({prompt})
 same => n,Goto(loop)
""".replace("{prompt}", PROMPT)

# `autoload = yes` (a hand-made `load` list breaks on each release's own dependencies: 23
# needs res_websocket_client for ARI, which needs res_sorcery_config...), minus the modules
# that listen on fixed ports (two instances side by side would clash), want configuration or
# databases the tests do not have, or only slow the start down.
NOLOAD = (
    "chan_iax2.so",  # UDP 4569
    "chan_unistim.so",  # UDP 5000
    "pbx_dundi.so",  # UDP 4520
    "res_phoneprov.so",
    "res_hep.so",
    "res_hep_rtcp.so",
    "res_prometheus.so",
    "res_statsd.so",
    "res_stun_monitor.so",
    "res_calendar.so",
    "res_smdi.so",
    "res_config_pgsql.so",
    "res_config_curl.so",
    "res_config_sqlite3.so",
    "cdr_pgsql.so",
    "cel_pgsql.so",
    "cdr_csv.so",
    "cdr_custom.so",
    "cdr_manager.so",
    "cdr_sqlite3_custom.so",
    "cel_custom.so",
    "cel_manager.so",
    "cel_sqlite3_custom.so",
    "app_voicemail.so",
    "app_minivm.so",
    "app_queue.so",
    "app_festival.so",
    "res_fax.so",
    "res_timing_pthread.so",  # timerfd is the one chan_websocket is known to work with
    "pbx_ael.so",
    "pbx_realtime.so",
    "res_speech_aeap.so",
    "res_aeap.so",
    # Need configuration files the tests do not write (they would only log that they declined)
    "res_parking.so",
    "app_agent_pool.so",
    "app_confbridge.so",
    "app_page.so",
    "app_alarmreceiver.so",
    "app_amd.so",
    "app_followme.so",
    "res_clialiases.so",
    "res_geolocation.so",
    "res_adsi.so",
    "app_adsiprog.so",
    "app_getcpeid.so",
)

MODULES_NEEDED = (
    "res_ari.so",
    "res_stasis_snoop.so",
    "res_http_websocket.so",
    "chan_rtp.so",
    "res_audiosocket.so",
    "chan_audiosocket.so",
    "bridge_simple.so",
    "bridge_softmix.so",
    "app_echo.so",
    "app_playtones.so",
    "app_senddtmf.so",
    "app_playback.so",
    "codec_ulaw.so",
    "format_sln.so",
)
"""Modules every test needs; :meth:`Asterisk.start` fails naming any that did not load.

``chan_websocket.so`` (with ``res_timing_timerfd.so``) is checked per release by the
WebSocket transport's tests (:meth:`Asterisk.has_module`)."""


class AsteriskError(RuntimeError):
    """Asterisk did not start, answer or stop as expected (the message names the log)."""


def shared_asterisk() -> Path:
    """Where the release tarballs live (``../shared/asterisk`` beside the clone)."""
    shared = os.environ.get("MEDIASTREAM_SHARED")
    base = Path(shared) if shared else ROOT.parent / "shared"
    return base / "asterisk"


def missing_reason() -> str | None:
    """Why real-Asterisk tests cannot run here, or None when they can."""
    src = shared_asterisk()
    if not src.is_dir():
        return f"real Asterisk: no {src} (the release sources); real_asterisk tests need it"
    return None


def build(release: str) -> Path:
    """The install prefix of ``release``, built into the cache first if needed (blocks)."""
    done = subprocess.run(
        [str(ROOT / "scripts" / "asterisk" / "build.sh"), release],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise AsteriskError(f"build.sh {release} failed:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tcp_port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_udp_block(size: int = 200, low: int = 10000, high: int = 19990) -> tuple[int, int]:
    """A random ``[start, end]`` UDP range on 127.0.0.1 whose every port is free now.

    Below Linux's ephemeral range (32768+), so the gateway's own port-0 sockets never land
    in it, and below the emulator's default 20000-20999; random, so instances started side
    by side (other sessions too) rarely collide.
    """
    rng = random.Random()
    for _ in range(50):
        start = rng.randrange(low, high - size) & ~1
        held: list[socket.socket] = []
        try:
            for port in range(start, start + size):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
        return start, start + size - 1
    raise AsteriskError("no free UDP block for rtp.conf")


def write_prompt(sounds: Path, hz: float = PROMPT_HZ, seconds: float = PROMPT_SECONDS) -> None:
    """A steady tone as ``<sounds>/<PROMPT>.sln`` (8 kHz) and ``.sln16`` (16 kHz)."""
    for ext, rate in (("sln", 8000), ("sln16", 16000)):
        n = int(seconds * rate)
        samples = (int(6000 * math.sin(2 * math.pi * hz * i / rate)) for i in range(n))
        (sounds / f"{PROMPT}.{ext}").write_bytes(struct.pack(f"<{n}h", *samples))


class Asterisk:
    """One Asterisk of ``release`` under ``workdir``; see the module docstring.

    Attributes:
        release: e.g. ``23.4.1``.
        prefix: Its install prefix (``<prefix>/sbin/asterisk``).
        workdir: Private tree: ``etc/`` (configuration), ``run/``, ``log/``, ``lib/``...
        http_port: ARI's port on 127.0.0.1.
        rtp_range: The ``rtp.conf`` port range.
        transmit_silence: Whether ``asterisk.conf`` sets ``transmit_silence`` (off by default:
            the gateway must not need it).
    """

    ari_user = "mediastream"
    ari_password = "mediastream-test"

    def __init__(
        self,
        release: str,
        prefix: Path,
        workdir: Path,
        *,
        transmit_silence: bool = False,
    ) -> None:
        """Prepare the configuration (nothing runs until :meth:`start`)."""
        self.release = release
        self.prefix = prefix
        self.workdir = workdir
        self.transmit_silence = transmit_silence
        self.http_port = 0
        self.rtp_range = (0, 0)
        self.process: subprocess.Popen[bytes] | None = None
        self._console: object | None = None
        self.starts = 0

    # --- where things are ------------------------------------------------------------

    @property
    def binary(self) -> Path:
        """``<prefix>/sbin/asterisk``."""
        return self.prefix / "sbin" / "asterisk"

    @property
    def conf(self) -> Path:
        """Its ``asterisk.conf`` (``asterisk -C``)."""
        return self.workdir / "etc" / "asterisk.conf"

    @property
    def log_path(self) -> Path:
        """The full log (``log/messages``): notices, warnings, errors, verbose 3."""
        return self.workdir / "log" / "messages"

    @property
    def console_path(self) -> Path:
        """What the foreground process printed (crashes end up here)."""
        return self.workdir / "console.out"

    @property
    def sounds(self) -> Path:
        """The private sounds directory (the generated prompt is in ``en/``)."""
        return self.workdir / "sounds"

    @property
    def ari_url(self) -> str:
        """``http://127.0.0.1:<port>/ari``."""
        return f"http://127.0.0.1:{self.http_port}/ari"

    @property
    def pid(self) -> int | None:
        """The running process's PID, or None."""
        return self.process.pid if self.process and self.process.poll() is None else None

    def has_module(self, name: str) -> bool:
        """Whether this release built ``name`` (e.g. ``chan_websocket.so``)."""
        return (self.prefix / "lib" / "asterisk" / "modules" / name).exists()

    # --- configuration -----------------------------------------------------------------

    def _configure(self) -> None:
        etc = self.workdir / "etc"
        for sub in ("etc", "run", "log", "lib", "spool", "sounds/en", "keys", "data"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        modules = self.prefix / "lib" / "asterisk" / "modules"
        w = self.workdir
        files = {
            "asterisk.conf": f"""
[directories]
astetcdir => {etc}
astmoddir => {modules}
astvarlibdir => {w / "lib"}
astdbdir => {w / "lib"}
astkeydir => {w / "keys"}
astdatadir => {w / "data"}
astagidir => {w / "data" / "agi-bin"}
astspooldir => {w / "spool"}
astrundir => {w / "run"}
astlogdir => {w / "log"}
astsbindir => {self.prefix / "sbin"}

[options]
verbose = 3
debug = 0
; Off unless a test asks: the gateway must make the client heard without it.
transmit_silence = {"yes" if self.transmit_silence else "no"}
hideconnect = yes
""",
            "modules.conf": "[modules]\nautoload = yes\n"
            + "".join(f"noload = {m}\n" for m in NOLOAD if (modules / m).exists()),
            "logger.conf": "[general]\n[logfiles]\nmessages => notice,warning,error,verbose\n",
            "http.conf": f"""
[general]
enabled = yes
bindaddr = 127.0.0.1
bindport = {self.http_port}
""",
            "ari.conf": f"""
[general]
enabled = yes
pretty = no

[{self.ari_user}]
type = user
read_only = no
password = {self.ari_password}
password_format = plain
""",
            "rtp.conf": f"""
[general]
rtpstart = {self.rtp_range[0]}
rtpend = {self.rtp_range[1]}
""",
            "extensions.conf": DIALPLAN,
            "musiconhold.conf": "[general]\n",
        }
        for name, text in files.items():
            (etc / name).write_text(text.lstrip())
        write_prompt(self.sounds / "en")
        # Sounds are found under <astdatadir>/sounds.
        link = w / "data" / "sounds"
        if not link.exists():
            link.symlink_to(self.sounds)

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start in the foreground (``-f``) and return when ARI answers ``/asterisk/ping``."""
        if self.pid is not None:
            return
        # The same HTTP port across restarts (a gateway pointed at it reconnects), unless
        # something else took it meanwhile.
        if not self.http_port or not _tcp_port_free(self.http_port):
            self.http_port = free_tcp_port()
        if not self.rtp_range[0]:
            self.rtp_range = free_udp_block()
        self._configure()
        console = self.console_path.open("ab")
        self._console = console
        self.process = subprocess.Popen(
            [str(self.binary), "-C", str(self.conf), "-f", "-n", "-g"],
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.starts += 1
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AsteriskError(
                    f"Asterisk {self.release} exited with {self.process.returncode} at start; "
                    f"see {self.console_path} and {self.log_path}"
                )
            if self.ping():
                self._check_modules()
                return
            time.sleep(0.1)
        self.kill()
        raise AsteriskError(f"Asterisk {self.release} did not answer ARI; see {self.log_path}")

    def _check_modules(self) -> None:
        shown = self.rx("module show")
        missing = [m for m in MODULES_NEEDED if m not in shown]
        if missing:
            self.kill()
            raise AsteriskError(
                f"Asterisk {self.release} did not load {missing}; see {self.log_path}"
            )

    def loaded(self, module: str) -> bool:
        """Whether ``module`` (e.g. ``chan_websocket.so``) is loaded now."""
        return module in self.rx(f"module show like {module.removesuffix('.so')}")

    def ping(self) -> bool:
        """Whether ARI answers ``GET /asterisk/ping`` now."""
        if not self.http_port:
            return False
        token = b64encode(f"{self.ari_user}:{self.ari_password}".encode()).decode()
        request = urllib.request.Request(
            f"{self.ari_url}/asterisk/ping", headers={"Authorization": f"Basic {token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def rx(self, command: str, timeout: float = 20.0) -> str:
        """Run one CLI command (``asterisk -C <conf> -rx``) and return what it printed."""
        done = subprocess.run(
            [str(self.binary), "-C", str(self.conf), "-rx", command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return done.stdout

    def stop(self) -> None:
        """``core stop now``; SIGKILL if it has not exited within :data:`STOP_TIMEOUT_S`."""
        process = self.process
        if process is None or process.poll() is not None:
            self._close_console()
            return
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            self.rx("core stop now", timeout=STOP_TIMEOUT_S)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
        self._close_console()

    def kill(self) -> None:
        """``kill -9``: Asterisk vanishes without a word to anyone."""
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            process.wait(STOP_TIMEOUT_S)
        self._close_console()

    def restart(self) -> None:
        """Stop (``core stop now``) and start again on the same HTTP port and RTP block."""
        self.stop()
        self.start()

    def _close_console(self) -> None:
        console = self._console
        self._console = None
        if console is not None:
            console.close()  # type: ignore[attr-defined]

    def log_tail(self, lines: int = 40) -> str:
        """The end of the log, for an assertion message."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def cleanup(self) -> None:
        """Stop and remove the private tree."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
