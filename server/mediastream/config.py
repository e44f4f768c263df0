"""The gateway's settings: one model, read from flags and the environment.

Each setting has a flag (``--ari-url``) and an environment variable
(``MEDIASTREAM_ARI_URL``); a flag wins over the environment, the environment
over the default. With no ARI URL the gateway starts its embedded Asterisk
emulator on loopback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlparse

from mediastream.core.stream import Transport

ENV_PREFIX = "MEDIASTREAM_"


class ConfigError(ValueError):
    """A setting has a value the gateway cannot run with."""


@dataclass(frozen=True)
class Settings:
    """Every setting of the gateway.

    Attributes:
        grpc_listen: ``host:port`` the gRPC server binds (port 0: any free port).
        ari_url: Base URL of a real Asterisk's ARI; empty starts the embedded emulator.
        ari_user: ARI user name.
        ari_password: ARI password.
        ari_app: Stasis application name the gateway registers.
        media_host: Address Asterisk reaches the gateway's media sockets on.
        transport: Default externalMedia transport when a client names none.
        log_level: Python logging level name.
    """

    grpc_listen: str = "127.0.0.1:50051"
    ari_url: str = ""
    ari_user: str = "asterisk"
    ari_password: str = field(default="asterisk", repr=False)
    ari_app: str = "mediastream"
    media_host: str = "127.0.0.1"
    transport: Transport = Transport.RTP
    log_level: str = "INFO"

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
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ConfigError(f"grpc_listen must be host:port, got {self.grpc_listen!r}")
        if self.ari_url:
            parsed = urlparse(self.ari_url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise ConfigError(f"ari_url must be an http(s) URL, got {self.ari_url!r}")
        if not self.ari_app or any(c in self.ari_app for c in ",/?&= "):
            raise ConfigError(f"ari_app must be a plain name, got {self.ari_app!r}")
        if not self.media_host:
            raise ConfigError("media_host must be set")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(
                f"log_level must be DEBUG, INFO, WARNING or ERROR, got {self.log_level!r}"
            )
        return self


def _convert(name: str, raw: str) -> object:
    if name == "transport":
        try:
            return Transport(raw.lower())
        except ValueError:
            choices = ", ".join(t.value for t in Transport)
            raise ConfigError(f"transport must be one of {choices}, got {raw!r}") from None
    return raw


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
