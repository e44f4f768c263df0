"""Proof with a real client nobody here wrote: a pipecat pipeline with pipecat's own
TwilioFrameSerializer and FastAPIWebsocketTransport, served as pipecat bots are served
behind Twilio (examples/python/pipecat_bot/bot.py), dialled by the gateway for the
demo echo call. pipecat runs in its own environment (its protobuf pin conflicts with
the gateway's), made by `make setup`."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from mediastream.emulator import ECHO_CALL_ID
from tests.harness import Harness

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "python"
_spec = importlib.util.spec_from_file_location("dial_out", EXAMPLES / "dial_out.py")
assert _spec is not None and _spec.loader is not None
dial_out = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dial_out)

BOT_DIR = EXAMPLES / "pipecat_bot"
BOT_PYTHON = BOT_DIR / ".venv" / "bin" / "python"


async def read_line(process: asyncio.subprocess.Process, timeout: float) -> dict[str, Any]:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout)
    assert line, "the pipecat bot exited"
    message: dict[str, Any] = json.loads(line)
    return message


async def test_a_pipecat_bot_hears_the_echo_call_and_the_call_hears_it(
    harness: Harness,
) -> None:
    assert BOT_PYTHON.exists(), f"no pipecat environment at {BOT_DIR}/.venv: run `make setup`"
    bot = await asyncio.create_subprocess_exec(
        str(BOT_PYTHON),
        str(BOT_DIR / "bot.py"),
        "--port",
        "0",
        "--listen-s",
        "3",
        stdout=subprocess.PIPE,
        stderr=sys.stderr,
    )
    try:
        # pipecat's imports take a few seconds on a busy machine.
        listening = await read_line(bot, 60)
        assert listening["event"] == "listening"
        # Dialled by examples/python/dial_out.py, through the Python SDK.
        call = asyncio.create_task(
            dial_out.dial_out(
                harness.grpc,
                ECHO_CALL_ID,
                f"ws://127.0.0.1:{listening['port']}/media",
                {"caller": "+15550100"},
                keep=False,
            )
        )
        start = await read_line(bot, 10)
        # pipecat's parse_telephony_websocket recognised Twilio and read its start.
        assert re.fullmatch(r"MZ[0-9a-f]{32}", start.pop("stream_id"))
        assert start == {
            "event": "start",
            "transport": "twilio",
            "call_id": ECHO_CALL_ID,
            "custom_parameters": {"caller": "+15550100"},
        }
        heard = await read_line(bot, 10)
        assert heard["event"] == "heard"
        print("pipecat bot heard:", heard)
        # The bot said 1000 Hz into the call; the echo call said it back; the bot heard it
        # (the snoop's spy side never carries the stream's own whisper).
        assert abs(heard["dominant_hz"] - 1000) < 15, heard
        assert heard["rms"] > 1000, heard
        # The bot ended its pipeline: the socket closed, and the call was hung up.
        end_reason = await asyncio.wait_for(call, 10)
        assert end_reason.startswith("bot closed the WebSocket (1000")
        assert end_reason.endswith("; call hung up")
        assert (await read_line(bot, 10))["event"] == "ended"
    finally:
        bot.terminate()
        await bot.wait()
