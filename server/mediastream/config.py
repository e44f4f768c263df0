"""The gateway's settings: one model, read from flags, the environment and a file.

Each setting has a flag (``--ari-url``), an environment variable
(``MEDIASTREAM_ARI_URL``) and a key of the optional TOML configuration file
(``ari_url = "..."``) named by ``--config`` or ``MEDIASTREAM_CONFIG``. A flag
wins over the environment, the environment over the file, the file over the
default. Every value is checked before the gateway starts: a bad one raises
`ConfigError` naming the setting and where the value came from. With no ARI
URL the gateway starts its embedded Asterisk emulator on loopback.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib.util
import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlparse

import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from mediastream.core.stream import Transport
from mediastream.external_media import parse_allow_list

ENV_PREFIX = "MEDIASTREAM_"

_MAX_GRPC_MS = 2**31 - 1
"""Largest millisecond value a gRPC channel argument (a C int) holds."""

_MAX_WORKERS = 64

_MAX_PLAY_BUFFER_S = 600
"""Ten minutes: 19 MB of slin16 per stream, and a message size gRPC's int limit holds."""


class ConfigError(ValueError):
    """A setting has a value the gateway cannot run with.

    Attributes:
        key: The setting at fault (a Settings field name), or "" for the file itself.
    """

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Settings:
    """Every setting of the gateway.

    Attributes:
        grpc_listen: ``host:port`` the gRPC server binds (port 0: any free port).
        ws_listen: ``host:port`` the WebSocket endpoints and web page bind (port 0: any free port).
        ari_url: ARI base URL of a real Asterisk, or several comma-separated;
            empty starts the embedded emulator.
        ari_user: ARI user name.
        ari_password: ARI password.
        ari_app: Stasis application name the gateway registers.
        media_host: Address Asterisk reaches the gateway's media sockets on.
        audiosocket_port: TCP port of the AudioSocket listener (0: any free port).
        transport: Default externalMedia transport when a client names none.
        log_level: Python logging level name.
        log_format: ``text`` or ``json`` (one object per line).
        metrics_listen: ``host:port`` of the Prometheus /metrics endpoint; empty: off.
        metrics_token: Bearer token /metrics requires, if set.
        api_keys: Comma-separated static API keys (full access).
        jwt_key: HMAC secret, or path of a PEM public key file, to verify JWTs.
        jwt_audience: Required JWT ``aud``, if any.
        tls_cert: PEM certificate file for gRPC TLS (with tls_key).
        tls_key: PEM private key file for gRPC TLS.
        tls_client_ca: PEM CA file; when set, clients must present a certificate (mTLS).
        max_streams: Concurrent streams this process accepts.
        max_streams_per_target: Concurrent streams on one call or conference.
        max_streams_per_client: Concurrent streams one client may hold (0: no limit);
            a client is a JWT subject, an API key, or (with authentication off) a
            peer address.
        ws_header_timeout_s: Seconds a connection to ws_listen has to send a complete
            request head (and, over TLS, to finish its handshake); then 408 and closed.
        ws_max_pending_per_address: Connections to ws_listen one client address (IPv6:
            /64) may hold before their WebSocket upgrade; 0: no limit.
        resume_grace_s: Seconds a dropped stream waits for its client to resume.
        play_buffer_s: Seconds of a client's audio not yet played that a stream holds,
            and the most one message may carry; a message past it fails the stream
            with BUFFER_FULL. Memory per stream is bounded by this much audio in the
            format sent to Asterisk (8 kB/s mu-law, 16 kB/s slin, 32 kB/s slin16)
            plus one message being read.
        drain_timeout_s: Seconds streams get to finish on SIGTERM.
        external_media_allow: Comma-separated networks external media may be sent to
            (dial-out bots and their status callbacks too).
        dial_out_connect_timeout_s: Seconds a dial-out gets for its name lookup, TCP,
            TLS and WebSocket upgrade together.
        dial_out_ca_file: PEM CA bundle trusted for ``wss://`` bots besides the
            system's (a private CA); empty: the system's only.
        dial_out_callback_timeout_s: Seconds one status callback POST may take.
        dial_out_callback_retries: POSTs after a status callback's failed first one.
        dial_out_redials: New connections a dial-out makes after its bot's connection
            is lost without a close frame, each with a fresh ``start`` carrying the
            same ``streamSid``; 0: none (the default).
        keepalive_time_s: Seconds between HTTP/2 pings to each gRPC client.
        keepalive_timeout_s: Seconds without a ping answer before a client counts as
            gone; a vanished client is detected within keepalive_time_s plus this.
        advertise_address: ``host:port`` clients can reach this very instance on,
            bypassing the load balancer (a pod's own address); sent in
            StreamStarted so that a resume reaches the instance holding the stream.
            Empty: the instance is reached only through ``grpc_listen``.
        workers: Worker processes; each serves the same gRPC and WebSocket ports
            (SO_REUSEPORT) with media sockets, Stasis app and address of its own.
        event_loop: ``auto`` (uvloop when installed), ``uvloop`` or ``asyncio``.
        config: The TOML file the other settings were read from (``--config``,
            ``MEDIASTREAM_CONFIG``); empty: none. Only `load` reads it.
    """

    grpc_listen: str = "127.0.0.1:50051"
    ws_listen: str = "127.0.0.1:8080"
    ari_url: str = ""
    ari_user: str = "asterisk"
    ari_password: str = field(default="asterisk", repr=False)
    ari_app: str = "mediastream"
    media_host: str = "127.0.0.1"
    audiosocket_port: int = 0
    transport: Transport = Transport.RTP
    log_level: str = "INFO"
    log_format: str = "text"
    metrics_listen: str = "127.0.0.1:9464"
    metrics_token: str = field(default="", repr=False)
    api_keys: str = field(default="", repr=False)
    jwt_key: str = field(default="", repr=False)
    jwt_audience: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    max_streams: int = 1000
    max_streams_per_target: int = 5
    max_streams_per_client: int = 0
    ws_header_timeout_s: float = 10.0
    ws_max_pending_per_address: int = 64
    resume_grace_s: float = 10.0
    play_buffer_s: int = 120
    drain_timeout_s: float = 30.0
    external_media_allow: str = "127.0.0.0/8,::1/128"
    dial_out_connect_timeout_s: float = 10.0
    dial_out_ca_file: str = ""
    dial_out_callback_timeout_s: float = 5.0
    dial_out_callback_retries: int = 2
    dial_out_redials: int = 0
    keepalive_time_s: float = 20.0
    keepalive_timeout_s: float = 10.0
    advertise_address: str = ""
    workers: int = 1
    event_loop: str = "auto"
    config: str = ""

    @property
    def ari_urls(self) -> list[str]:
        """Every configured Asterisk's ARI URL (``ari_url`` is comma-separated)."""
        return [u.strip() for u in self.ari_url.split(",") if u.strip()]

    @property
    def api_key_list(self) -> list[str]:
        """The configured API keys."""
        return [k.strip() for k in self.api_keys.split(",") if k.strip()]

    def jwt_verification_key(self) -> str:
        """The JWT key: the file's contents if `jwt_key` names a file."""
        if self.jwt_key and os.path.isfile(self.jwt_key):
            with open(self.jwt_key) as f:
                return f.read()
        return self.jwt_key

    @property
    def embedded(self) -> bool:
        """Whether the gateway runs its built-in Asterisk emulator."""
        return not self.ari_url

    def validate(self) -> Settings:
        """Check every value, setting by setting in declaration order; return self.

        Raises:
            ConfigError: naming the first bad setting (`ConfigError.key`) and why.
                A secret's value is never part of the message.
        """
        for f in dataclasses.fields(self):
            _check_type(f.name, getattr(self, f.name))
        _check_address("grpc_listen", self.grpc_listen, brackets=True)
        _check_address("ws_listen", self.ws_listen)
        self._check_ari()
        if not self.media_host:
            raise ConfigError(
                "media_host must be set: an address of this host Asterisk can reach", "media_host"
            )
        problem = _host_problem(self.media_host, wildcard=False)
        if problem:
            raise ConfigError(
                f"media_host must be an address of this host Asterisk can reach, "
                f"got {self.media_host!r}: {problem}",
                "media_host",
            )
        if not 0 <= self.audiosocket_port <= 65535:
            raise ConfigError(
                f"audiosocket_port must be a port number (0-65535), got {self.audiosocket_port}",
                "audiosocket_port",
            )
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(
                f"log_level must be DEBUG, INFO, WARNING or ERROR, got {self.log_level!r}",
                "log_level",
            )
        if self.log_format not in ("text", "json"):
            raise ConfigError(
                f"log_format must be text or json, got {self.log_format!r}", "log_format"
            )
        if self.metrics_listen:
            _check_address("metrics_listen", self.metrics_listen)
        if self.metrics_token and not _is_token(self.metrics_token):
            raise ConfigError(
                "metrics_token must be printable ASCII without spaces (it is compared "
                "with an HTTP header); value not shown",
                "metrics_token",
            )
        self._check_credentials()
        self._check_tls()
        for name in ("max_streams", "max_streams_per_target"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}", name)
        if self.max_streams_per_client < 0:
            raise ConfigError(
                "max_streams_per_client must be 0 (no limit) or more, "
                f"got {self.max_streams_per_client}",
                "max_streams_per_client",
            )
        if self.ws_max_pending_per_address < 0:
            raise ConfigError(
                "ws_max_pending_per_address must be 0 (no limit) or more, "
                f"got {self.ws_max_pending_per_address}",
                "ws_max_pending_per_address",
            )
        if not 0.1 <= self.ws_header_timeout_s <= 3600:
            raise ConfigError(
                "ws_header_timeout_s must be between 0.1 and 3600 s, "
                f"got {self.ws_header_timeout_s}",
                "ws_header_timeout_s",
            )
        if not 1 <= self.play_buffer_s <= _MAX_PLAY_BUFFER_S:
            raise ConfigError(
                f"play_buffer_s must be between 1 and {_MAX_PLAY_BUFFER_S}, "
                f"got {self.play_buffer_s}",
                "play_buffer_s",
            )
        for name in ("resume_grace_s", "drain_timeout_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}", name)
        try:
            parse_allow_list(self.external_media_allow)
        except ValueError as exc:
            raise ConfigError(f"external_media_allow: {exc}", "external_media_allow") from None
        for name in ("dial_out_connect_timeout_s", "dial_out_callback_timeout_s"):
            if not 0 < getattr(self, name) <= 3600:
                raise ConfigError(
                    f"{name} must be more than 0 and at most 3600 s, got {getattr(self, name)}",
                    name,
                )
        for name in ("dial_out_callback_retries", "dial_out_redials"):
            if not 0 <= getattr(self, name) <= 10:
                raise ConfigError(
                    f"{name} must be between 0 and 10, got {getattr(self, name)}", name
                )
        for name in ("keepalive_time_s", "keepalive_timeout_s"):
            value = getattr(self, name)
            # gRPC takes them in whole milliseconds as a 32-bit int: 0 or more fails.
            if not 0.001 <= value <= _MAX_GRPC_MS / 1000:
                raise ConfigError(
                    f"{name} must be between 0.001 and {_MAX_GRPC_MS // 1000} s, got {value}",
                    name,
                )
        if self.advertise_address:
            _check_address(
                "advertise_address", self.advertise_address, brackets=True, dialable=True
            )
        if not 1 <= self.workers <= _MAX_WORKERS:
            raise ConfigError(
                f"workers must be between 1 and {_MAX_WORKERS}, got {self.workers}", "workers"
            )
        if self.event_loop not in ("auto", "uvloop", "asyncio"):
            raise ConfigError(
                f"event_loop must be auto, uvloop or asyncio, got {self.event_loop!r}",
                "event_loop",
            )
        if self.event_loop == "uvloop" and not _module_available("uvloop"):
            raise ConfigError(
                "event_loop uvloop: the uvloop package is not installed (use auto or asyncio)",
                "event_loop",
            )
        if self.config and not os.path.isfile(self.config):
            raise ConfigError(f"config: no such file {self.config!r}", "config")
        return self

    def _check_ari(self) -> None:
        if self.ari_url and not self.ari_urls:
            raise ConfigError(f"ari_url must be http(s) URLs, got {self.ari_url!r}", "ari_url")
        for url in self.ari_urls:
            try:
                parsed = urlparse(url)
                _ = parsed.port  # raises ValueError on a bad port
            except ValueError:  # e.g. an unclosed IPv6 bracket, port 99999
                parsed = urlparse("")
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise ConfigError(
                    f"ari_url must be http(s) URLs, comma-separated, got {url!r}", "ari_url"
                )
        if ":" in self.ari_user:
            raise ConfigError(
                f"ari_user must not contain ':' (HTTP basic authentication), got {self.ari_user!r}",
                "ari_user",
            )
        if not _PLAIN_NAME.fullmatch(self.ari_app):
            raise ConfigError(
                f"ari_app must be a plain name (letters, digits, '.', '_', '-'), "
                f"got {self.ari_app!r}",
                "ari_app",
            )

    def _check_credentials(self) -> None:
        if self.api_keys:
            keys = self.api_key_list
            if not keys:
                raise ConfigError("api_keys is set but holds no key (only commas)", "api_keys")
            for i, key in enumerate(keys, 1):
                if not _is_token(key):
                    raise ConfigError(
                        f"api_keys: key {i} of {len(keys)} must be printable ASCII without "
                        "spaces (it is sent as a bearer token); value not shown",
                        "api_keys",
                    )
        if not self.jwt_key:
            return
        if not self.jwt_key.strip():
            raise ConfigError("jwt_key is blank (only spaces)", "jwt_key")
        if os.path.isfile(self.jwt_key):
            try:
                with open(self.jwt_key) as f:
                    key = f.read()
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or "not text"
                raise ConfigError(
                    f"jwt_key: cannot read {self.jwt_key!r}: {reason}", "jwt_key"
                ) from None
            if not key.strip():
                # Authentication would silently be off.
                raise ConfigError(f"jwt_key: the file {self.jwt_key!r} is empty", "jwt_key")
        elif _looks_like_path(self.jwt_key):
            # Without this a mistyped path would quietly become the HMAC secret.
            raise ConfigError(
                "jwt_key looks like a file path (an absolute path, or it begins with "
                "./ ../ ~ or ends in .pem .pub .crt .key) but names no file; ~ is not "
                "expanded; value not shown",
                "jwt_key",
            )
        else:
            key = self.jwt_key
        if key.lstrip().startswith("-----BEGIN") and not _is_jwt_public_key(key):
            raise ConfigError(
                "jwt_key is PEM but not an RSA or EC key PyJWT can verify with "
                "(a certificate, or a damaged key?)",
                "jwt_key",
            )

    def _check_tls(self) -> None:
        for name, what in (
            ("tls_cert", "certificate"),
            ("tls_key", "private key"),
            ("tls_client_ca", "certificate"),
            ("dial_out_ca_file", "certificate"),
        ):
            path = getattr(self, name)
            if not path:
                continue
            if not os.path.isfile(path):
                raise ConfigError(f"{name}: no such file {path!r}", name)
            try:
                with open(path, "rb") as f:
                    text = f.read(1 << 20).decode("ascii", "replace")
            except OSError as exc:
                raise ConfigError(f"{name}: cannot read {path!r}: {exc.strerror}", name) from None
            pattern = _PEM_KEY if name == "tls_key" else _PEM_CERT
            if not pattern.search(text):
                raise ConfigError(f"{name}: {path!r} is not a PEM {what}", name)
            if name == "tls_key" and "ENCRYPTED" in text:
                raise ConfigError(
                    f"tls_key: {path!r} is encrypted; gRPC needs an unencrypted key", name
                )
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError(
                "tls_cert and tls_key must be set together",
                "tls_cert" if self.tls_cert else "tls_key",
            )
        if self.tls_client_ca and not self.tls_cert:
            raise ConfigError("tls_client_ca (mTLS) needs tls_cert and tls_key", "tls_client_ca")


_FIELD_TYPES: dict[str, type] = {
    f.name: {"str": str, "int": int, "float": float, "Transport": Transport}[str(f.type)]
    for f in dataclasses.fields(Settings)
}
"""Each setting's type (from the annotations, so a new setting is typed too)."""

_SECRETS = frozenset(f.name for f in dataclasses.fields(Settings) if not f.repr)
"""Settings whose values never appear in output or errors."""

_LISTS = frozenset({"ari_url", "api_keys", "external_media_allow"})
"""Comma-separated settings; the file may give them as arrays of strings."""

_WHAT = {
    str: "a string",
    int: "a whole number",
    float: "a number of seconds",
    Transport: "one of " + ", ".join(t.value for t in Transport),
}

_PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]+")
_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"{_LABEL}(\.{_LABEL})*\.?")
_DOTTED_NUMBERS = re.compile(r"[0-9.]+")
_PEM_CERT = re.compile(r"-----BEGIN (X509 |TRUSTED )?CERTIFICATE-----")
_PEM_KEY = re.compile(r"-----BEGIN ([A-Z]+ )?PRIVATE KEY-----")
_PATH_PREFIXES = ("./", "../", "~")
_PATH_SUFFIXES = (".pem", ".pub", ".crt", ".key")


def _looks_like_path(value: str) -> bool:
    """Whether a jwt_key that names no file was meant to name one.

    A base64 HMAC secret may begin with ``/`` too (one in 64 does); such secrets
    carry ``+`` or ``=`` or have at most one ``/`` more, where absolute paths have
    two or more slashes and neither character.
    """
    if value.startswith(_PATH_PREFIXES) or value.lower().endswith(_PATH_SUFFIXES):
        return True
    return value.startswith("/") and value.count("/") >= 2 and not any(c in value for c in "+=")


def _shown(name: str, value: object) -> str:
    """`value` for a message: its repr, or nothing of it for a secret."""
    return "a value (secret, not shown)" if name in _SECRETS else repr(value)


def _check_type(name: str, value: object) -> None:
    kind = _FIELD_TYPES[name]
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise ConfigError(f"{name} must be {_WHAT[kind]}, got {_shown(name, value)}", name)
    if kind is float and not math.isfinite(value):  # type: ignore[arg-type]
        # nan and inf pass every range check and then break the gRPC options.
        raise ConfigError(f"{name} must be a finite number of seconds, got {value!r}", name)


def _is_port(text: str) -> bool:
    # ASCII digits only: str.isdigit() also accepts digits int() cannot read ("²").
    return text.isascii() and text.isdigit() and int(text) <= 65535


def _is_token(text: str) -> bool:
    """Printable ASCII without whitespace: what fits in an HTTP header as a token."""
    return text.isascii() and text.isprintable() and not any(c.isspace() for c in text)


def _host_problem(host: str, *, wildcard: bool = True, brackets: bool | None = False) -> str:
    """Why `host` is no host name or IP address ("" if it is one).

    `brackets`: True when an IPv6 address must be bracketed, False when it must not
    be, None when either is fine. `wildcard`: whether 0.0.0.0 and :: are allowed.
    """
    if not host:
        return "empty"
    bracketed = host.startswith("[") and host.endswith("]")
    bare = host[1:-1] if bracketed else host
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        if bracketed:
            return "brackets must hold an IPv6 address"
        if not _HOSTNAME.fullmatch(host):
            return "not a host name or IP address"
        if _DOTTED_NUMBERS.fullmatch(host):
            return "not a valid IP address"
        return ""
    if ip.version == 6 and brackets is True and not bracketed:
        return "write an IPv6 address in brackets, as [::1]:50051"
    if bracketed and (ip.version == 4 or brackets is False):
        return "write the address without brackets"
    if not wildcard and ip.is_unspecified:
        return "a wildcard address (0.0.0.0, ::) is no address to send to"
    return ""


def _check_address(
    name: str, value: str, *, brackets: bool | None = None, dialable: bool = False
) -> None:
    """`value` is ``host:port`` (port 0 and wildcard hosts only if not `dialable`)."""
    host, sep, port = value.rpartition(":")
    problem = ""
    if not sep or not host:
        problem = "no host"
    elif not _is_port(port) or (dialable and int(port) == 0):
        problem = "port must be 1-65535" if dialable else "port must be 0-65535"
    else:
        problem = _host_problem(host, wildcard=not dialable, brackets=brackets)
    if problem:
        raise ConfigError(f"{name} must be host:port, got {value!r}: {problem}", name)


def _module_available(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _is_jwt_public_key(pem: str) -> bool:
    """Whether PyJWT can verify RS256 or ES256 tokens with `pem`."""
    for algorithm in (RSAAlgorithm(RSAAlgorithm.SHA256), ECAlgorithm(ECAlgorithm.SHA256)):
        try:
            algorithm.prepare_key(pem)
        except (jwt.PyJWTError, ValueError, TypeError):
            continue
        return True
    return False


def _convert(name: str, raw: str) -> object:
    """A setting from text (a flag, an environment variable or a string in the file)."""
    kind = _FIELD_TYPES[name]
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, got {raw!r}", name) from None
    if kind is float:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        # nan and inf pass every range check and then break the gRPC options.
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be a number of seconds, got {raw!r}", name)
        return value
    if kind is Transport:
        try:
            return Transport(raw.lower())
        except ValueError:
            choices = ", ".join(t.value for t in Transport)
            raise ConfigError(f"transport must be one of {choices}, got {raw!r}", name) from None
    return raw


def _from_file(name: str, value: object) -> object:
    """A setting from a TOML value: a string is read as from the environment."""
    kind = _FIELD_TYPES[name]
    if isinstance(value, str):
        return _convert(name, value)
    if isinstance(value, bool):
        pass  # TOML true/false is no setting's type (and bool is an int in Python)
    elif kind is int and isinstance(value, int):
        return value
    elif kind is float and isinstance(value, int | float):
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be a number of seconds, got {value!r}", name)
        return float(value)
    elif name in _LISTS and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    what = _WHAT[kind] + (" (in quotes)" if kind in (str, Transport) else "")
    if name in _LISTS:
        what += " or an array of strings"
    raise ConfigError(f"{name} must be {what}, got {_shown(name, value)}", name)


def read_file(path: str) -> dict[str, object]:
    """The settings of a TOML configuration file: top-level keys, Settings field names.

    Each value is converted and type-checked (not range-checked: `Settings.validate`
    does that for the values in effect).

    Raises:
        ConfigError: the file is missing, unreadable or not TOML, holds an unknown
            key or a table, or a value of the wrong type. The message names the file.
    """
    if not os.path.isfile(path):
        what = "is not a file" if os.path.exists(path) else "does not exist"
        raise ConfigError(f"configuration file {path!r} {what}", "config")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"configuration file {path!r}: {exc.strerror}", "config") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"configuration file {path!r} is not valid TOML: {exc}", "config"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"configuration file {path!r} is not UTF-8 text", "config") from None
    values: dict[str, object] = {}
    for key, value in data.items():
        if key == "config":
            raise ConfigError(f"{path}: 'config' cannot be set in a configuration file", "config")
        if key not in _FIELD_TYPES:
            if isinstance(value, dict):
                raise ConfigError(
                    f"{path}: [{key}] is a table; write settings as top-level keys "
                    '(grpc_listen = "..."), before any table',
                    "config",
                )
            near = difflib.get_close_matches(
                key.replace("-", "_").lower(), [n for n in _FIELD_TYPES if n != "config"], 1
            )
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(f"{path}: unknown setting {key!r}{hint}", "config")
        try:
            values[key] = _from_file(key, value)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (from {path})", key) from None
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config FILE`` and one flag per setting to `parser` (defaults left unset)."""
    parser.add_argument(
        "--config",
        dest="config",
        default=None,
        metavar="FILE",
        help=f"TOML file of settings (env {ENV_PREFIX}CONFIG); flags and environment win over it",
    )
    for f in dataclasses.fields(Settings):
        if f.name == "config":
            continue
        flag = "--" + f.name.replace("_", "-")
        env = ENV_PREFIX + f.name.upper()
        default = "secret" if f.name in _SECRETS and f.default else f.default
        parser.add_argument(
            flag, dest=f.name, default=None, help=f"(env {env}; default {default!s})"
        )


def load(
    args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Settings from flags over environment over configuration file over defaults, validated.

    Raises:
        ConfigError: a value is invalid; the message names the setting and where
            its value came from (flag, environment variable or file).
    """
    environ = os.environ if environ is None else environ
    raw: dict[str, tuple[str, str]] = {}  # setting -> (text, where from)
    for f in dataclasses.fields(Settings):
        flag = getattr(args, f.name, None) if args is not None else None
        env = ENV_PREFIX + f.name.upper()
        if flag is not None:
            raw[f.name] = (flag, "--" + f.name.replace("_", "-"))
        elif env in environ:
            raw[f.name] = (environ[env], env)
    values: dict[str, object] = {}
    source: dict[str, str] = {}
    path, path_from = raw.get("config", ("", ""))
    if path:
        try:
            from_file = read_file(path)
        except ConfigError as exc:
            if exc.key != "config":
                raise
            raise ConfigError(f"{exc} (from {path_from})", "config") from None
        for name, value in from_file.items():
            values[name], source[name] = value, path
    for name, (text, where) in raw.items():
        try:
            values[name] = _convert(name, text)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (from {where})", name) from None
        source[name] = where
    try:
        return Settings(**values).validate()  # type: ignore[arg-type]
    except ConfigError as exc:
        if exc.key not in source:
            raise
        raise ConfigError(f"{exc} (from {source[exc.key]})", exc.key) from None


def parse(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from a command line (used by tests and `serve`)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return load(parser.parse_args(list(argv)), environ)
