"""Structured logs: every line carries the stream, call or conference, and Asterisk IDs.

The IDs live in context variables, set where a stream is handled; asyncio
tasks inherit them, so lines written deep in the Asterisk adapter still say
which stream they belong to. Audio bytes and secrets are never logged.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

stream_id: contextvars.ContextVar[str] = contextvars.ContextVar("stream_id", default="-")
target: contextvars.ContextVar[str] = contextvars.ContextVar("target", default="-")
asterisk: contextvars.ContextVar[str] = contextvars.ContextVar("asterisk", default="-")
identity: contextvars.ContextVar[str] = contextvars.ContextVar("identity", default="-")
"""Who the request being handled authenticated as (`who`); never a credential."""

MAX_IDENTITY_CHARS = 128


def set_identity(name: str) -> None:
    """Remember who the current request is (a JWT ``sub`` is the issuer's text: printable only)."""
    identity.set("".join(c if c.isprintable() else "?" for c in name[:MAX_IDENTITY_CHARS]))


def who() -> str:
    """`` as <identity>`` for a log line, or "" before (or without) authentication."""
    name = identity.get()
    return "" if name == "-" else f" as {name}"


_FIELDS = {"stream_id": stream_id, "target": target, "asterisk": asterisk}


class ContextFilter(logging.Filter):
    """Adds the current stream, target and Asterisk IDs to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate `record`; never drops it."""
        for name, var in _FIELDS.items():
            if not hasattr(record, name):
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        """`record` as compact JSON."""
        out = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _FIELDS:
            value = getattr(record, name, "-")
            if value != "-":
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, separators=(",", ":"))


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(stream_id)s %(target)s]: %(message)s"


def configure(level: str, fmt: str) -> None:
    """Send logs to stderr, as text or JSON (`fmt`), at `level`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
