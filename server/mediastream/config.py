"""The gateway's settings: one model, read from flags and the environment.

Each setting has a flag (``--ari-url``) and an environment variable
(``MEDIASTREAM_ARI_URL``); a flag wins over the environment, the environment
over the default. With no ARI URL the gateway starts its embedded Asterisk
emulator on loopback.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlparse

from mediastream.core.stream import Transport
from mediastream.external_media import parse_allow_list

ENV_PREFIX = "MEDIASTREAM_"

_MAX_GRPC_MS = 2**31 - 1
"""Largest millisecond value a gRPC channel argument (a C int) holds."""


class ConfigError(ValueError):
    """A setting has a value the gateway cannot run with."""


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
        resume_grace_s: Seconds a dropped stream waits for its client to resume.
        drain_timeout_s: Seconds streams get to finish on SIGTERM.
        external_media_allow: Comma-separated networks external media may be sent to.
        keepalive_time_s: Seconds between HTTP/2 pings to each gRPC client.
        keepalive_timeout_s: Seconds without a ping answer before a client counts as
            gone; a vanished client is detected within keepalive_time_s plus this.
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
    resume_grace_s: float = 10.0
    drain_timeout_s: float = 30.0
    external_media_allow: str = "127.0.0.0/8,::1/128"
    keepalive_time_s: float = 20.0
    keepalive_timeout_s: float = 10.0

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
        """Check every value; return self.

        Raises:
            ConfigError: naming the first bad setting and why.
        """
        host, sep, port = self.grpc_listen.rpartition(":")
        if not sep or not host or not _is_port(port):
            raise ConfigError(f"grpc_listen must be host:port, got {self.grpc_listen!r}")
        host, sep, port = self.ws_listen.rpartition(":")
        if not sep or not host or not _is_port(port):
            raise ConfigError(f"ws_listen must be host:port, got {self.ws_listen!r}")
        for url in self.ari_urls:
            try:
                parsed = urlparse(url)
            except ValueError:  # e.g. an unclosed IPv6 bracket
                parsed = urlparse("")
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise ConfigError(f"ari_url must be http(s) URLs, comma-separated, got {url!r}")
        if not self.ari_app or any(c in self.ari_app for c in ",/?&= "):
            raise ConfigError(f"ari_app must be a plain name, got {self.ari_app!r}")
        if not self.media_host:
            raise ConfigError("media_host must be set")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("tls_cert and tls_key must be set together")
        if self.tls_client_ca and not self.tls_cert:
            raise ConfigError("tls_client_ca (mTLS) needs tls_cert and tls_key")
        for name in ("tls_cert", "tls_key", "tls_client_ca"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                raise ConfigError(f"{name}: no such file {path!r}")
        if self.max_streams < 1 or self.max_streams_per_target < 1:
            raise ConfigError("max_streams and max_streams_per_target must be at least 1")
        if self.keepalive_time_s <= 0 or self.keepalive_timeout_s <= 0:
            raise ConfigError("keepalive_time_s and keepalive_timeout_s must be positive")
        if max(self.keepalive_time_s, self.keepalive_timeout_s) > _MAX_GRPC_MS / 1000:
            # gRPC takes them in milliseconds as a 32-bit int: more fails at start-up.
            raise ConfigError(
                f"keepalive_time_s and keepalive_timeout_s must be at most {_MAX_GRPC_MS // 1000} s"
            )
        if self.resume_grace_s < 0 or self.drain_timeout_s < 0:
            raise ConfigError("resume_grace_s and drain_timeout_s must not be negative")
        try:
            parse_allow_list(self.external_media_allow)
        except ValueError as exc:
            raise ConfigError(f"external_media_allow: {exc}") from None
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"log_format must be text or json, got {self.log_format!r}")
        if self.metrics_listen:
            mhost, msep, mport = self.metrics_listen.rpartition(":")
            if not msep or not mhost or not _is_port(mport):
                raise ConfigError(f"metrics_listen must be host:port, got {self.metrics_listen!r}")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(
                f"log_level must be DEBUG, INFO, WARNING or ERROR, got {self.log_level!r}"
            )
        return self


def _is_port(text: str) -> bool:
    # ASCII digits only: str.isdigit() also accepts digits int() cannot read ("²").
    return text.isascii() and text.isdigit() and int(text) <= 65535


def _convert(name: str, raw: str) -> object:
    if name == "audiosocket_port":
        if not _is_port(raw):
            raise ConfigError(f"audiosocket_port must be a port number, got {raw!r}")
        return int(raw)
    kind = _FIELD_TYPES.get(name)
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if kind is float:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        # nan and inf pass every range check and then break the gRPC options.
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be a number of seconds, got {raw!r}")
        return value
    if name == "transport":
        try:
            return Transport(raw.lower())
        except ValueError:
            choices = ", ".join(t.value for t in Transport)
            raise ConfigError(f"transport must be one of {choices}, got {raw!r}") from None
    return raw


_FIELD_TYPES = {
    "keepalive_time_s": float,
    "keepalive_timeout_s": float,
    "max_streams": int,
    "max_streams_per_target": int,
    "resume_grace_s": float,
    "drain_timeout_s": float,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting to `parser` (defaults left unset)."""
    for f in dataclasses.fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        env = ENV_PREFIX + f.name.upper()
        parser.add_argument(
            flag, dest=f.name, default=None, help=f"(env {env}; default {f.default!s})"
        )


def load(
    args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Settings from flags over environment over defaults, validated.

    Raises:
        ConfigError: a value is invalid.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for f in dataclasses.fields(Settings):
        raw = getattr(args, f.name, None) if args is not None else None
        if raw is None:
            raw = environ.get(ENV_PREFIX + f.name.upper())
        if raw is not None:
            values[f.name] = _convert(f.name, raw)
    return Settings(**values).validate()  # type: ignore[arg-type]


def parse(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from a command line (used by tests and `serve`)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return load(parser.parse_args(list(argv)), environ)
