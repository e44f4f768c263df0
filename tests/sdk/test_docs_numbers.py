"""The numbers the docs give for limits and thresholds are the server's defaults.

Each check reads a number out of the prose (docs/troubleshooting.md and the Python SDK's
README, which state the gateway's limits to users) and compares it with the constant or
default the server really uses. A doc sentence that no longer matches its pattern fails
too: the check must not pass by finding nothing.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from mediastream import streams
from mediastream.api import grpc_service
from mediastream.asterisk import legs
from mediastream.config import Settings
from mediastream.core import formats
from mediastream.external_media import ExternalMediaManager
from mediastream.streams import StreamLimits

ROOT = Path(__file__).resolve().parents[2]
TROUBLESHOOTING = ROOT / "docs" / "troubleshooting.md"
PYTHON_README = ROOT / "sdk" / "python" / "README.md"

LIMITS = StreamLimits()


def _default(func: Callable[..., object], name: str) -> object:
    return inspect.signature(func).parameters[name].default


@dataclass(frozen=True)
class Claim:
    """A number stated in a doc, and the server value it must equal."""

    doc: Path
    pattern: str
    """A regular expression over the doc's text (whitespace normalised) with one group."""
    server: float
    what: str


CLAIMS = [
    Claim(
        TROUBLESHOOTING,
        r"BUFFER_FULL.*?`play_buffer_s` \(default (\d+) s\)",
        LIMITS.play_buffer_ms / 1000,
        "StreamLimits.play_buffer_ms (s)",
    ),
    Claim(
        TROUBLESHOOTING,
        r"BUFFER_FULL.*?`play_buffer_s` \(default (\d+) s\)",
        Settings().play_buffer_s,
        "Settings.play_buffer_s",
    ),
    Claim(
        TROUBLESHOOTING,
        r"advice sent at (\d+) s buffered",
        LIMITS.pause_at_ms / 1000,
        "StreamLimits.pause_at_ms",
    ),
    Claim(
        TROUBLESHOOTING,
        r"advice sent at \d+ s buffered and below (\d+) s",
        LIMITS.resume_at_ms / 1000,
        "StreamLimits.resume_at_ms",
    ),
    Claim(
        PYTHON_README,
        r"holds up to its `play_buffer_s` \((\d+) s by default\)",
        Settings().play_buffer_s,
        "Settings.play_buffer_s",
    ),
    Claim(
        PYTHON_README,
        r"When about (\d+) s wait to be played",
        LIMITS.pause_at_ms / 1000,
        "StreamLimits.pause_at_ms",
    ),
    Claim(
        PYTHON_README,
        r"FlowControl\(paused=False\)` once under (\d+) s",
        LIMITS.resume_at_ms / 1000,
        "StreamLimits.resume_at_ms",
    ),
    Claim(
        PYTHON_README,
        r"`resume_grace_s` \((\d+) s by default\)",
        Settings().resume_grace_s,
        "Settings.resume_grace_s",
    ),
    Claim(
        TROUBLESHOOTING,
        r"no first message \(the config\) within (\d+) s",
        grpc_service.FIRST_MESSAGE_TIMEOUT_S,
        "FIRST_MESSAGE_TIMEOUT_S",
    ),
    Claim(
        TROUBLESHOOTING,
        r"A mark name has more than (\d+) characters",
        streams.MAX_MARK_NAME_CHARS,
        "MAX_MARK_NAME_CHARS",
    ),
    Claim(
        TROUBLESHOOTING,
        r"(\d+) marks were waiting to be played",
        streams.MAX_PENDING_MARKS,
        "MAX_PENDING_MARKS",
    ),
    Claim(
        TROUBLESHOOTING,
        r"(\d+) events \(marks played",
        streams.MAX_PENDING_EVENTS,
        "MAX_PENDING_EVENTS",
    ),
    Claim(
        TROUBLESHOOTING,
        r"CHUNK_TOO_LARGE.*?`play_buffer_s` \(default (\d+) s\)",
        Settings().play_buffer_s,
        "Settings.play_buffer_s (one message)",
    ),
    Claim(
        TROUBLESHOOTING,
        r"a multiple of 20 up to (\d+)\.",
        formats.MAX_CHUNK_MS,
        "MAX_CHUNK_MS",
    ),
    Claim(
        TROUBLESHOOTING,
        r"terminated more than (\d+) minutes ago",
        float(str(_default(ExternalMediaManager.__init__, "keep_terminated_s"))) / 60,
        "ExternalMediaManager keep_terminated_s (min)",
    ),
    Claim(
        TROUBLESHOOTING,
        r"received no frame from Asterisk for (\d+) s",
        streams.STARVED_AFTER_S,
        "STARVED_AFTER_S",
    ),
    Claim(
        TROUBLESHOOTING,
        r"did not enter the gateway's Stasis app within (\d+) s",
        legs.STASIS_TIMEOUT,
        "STASIS_TIMEOUT",
    ),
]


def _text(doc: Path) -> str:
    # Line breaks in prose are not meaningful: match across them.
    return re.sub(r"\s+", " ", doc.read_text())


@pytest.mark.parametrize("claim", CLAIMS, ids=[f"{c.doc.name}:{c.what}" for c in CLAIMS])
def test_doc_number_is_the_server_default(claim: Claim) -> None:
    match = re.search(claim.pattern, _text(claim.doc))
    assert match is not None, f"{claim.doc.name} no longer says /{claim.pattern}/"
    assert float(match.group(1)) == claim.server, (
        f"{claim.doc.name} says {match.group(1)} for {claim.what}; the server uses {claim.server}"
    )
