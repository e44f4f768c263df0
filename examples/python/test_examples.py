"""The Python examples, run as a user runs them, against a real gateway.

The gateway is the one named by MEDIASTREAM_READY (``make sdk-test`` starts
one for every SDK's tests); without it the tests are skipped. To run them on
their own:

    uv run python tests/conformance/with_gateway.py -- python -m pytest -q examples/python
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
READY: dict[str, Any] = json.loads(os.environ.get("MEDIASTREAM_READY") or "{}")

pytestmark = pytest.mark.skipif(
    not READY, reason="needs a gateway: run through `make sdk-test` or with_gateway.py"
)


def run(example: str, *args: str) -> str:
    """Run examples/python/`example` with `args`; return its output (it must exit 0)."""
    done = subprocess.run(
        [sys.executable, str(HERE / example), "--server", READY["grpc"], *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    print(done.stdout)
    return done.stdout


def dominant_hz(samples: np.ndarray[Any, np.dtype[np.int16]], rate: int) -> float:
    """Frequency of the strongest spectral peak."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    spectrum[0] = 0
    return float(np.argmax(spectrum)) * rate / len(samples)


def test_listen_writes_the_tone_call_to_a_wav(tmp_path: Path) -> None:
    """One second of the tone call, in ten 100 ms chunks, is a WAV file of 440 Hz."""
    path = tmp_path / "tone.wav"
    out = run("listen_to_wav.py", "--call", READY["demo"]["tone_call"], "--seconds", "1", str(path))
    assert re.search(r"wrote .*tone\.wav: 1\.00 s in 10 chunks of 100 ms", out), out
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert len(samples) == 8000
    assert abs(dominant_hz(samples, 8000) - 440) < 5


def test_play_sends_a_wav_at_real_time_and_waits_for_stopped(tmp_path: Path) -> None:
    """A 1.5 s WAV takes at least 1.4 s to play, and the stream ends with client_done."""
    path = tmp_path / "prompt.wav"
    t = np.arange(12000) / 8000  # 1.5 s
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes((8000 * np.sin(2 * np.pi * 500 * t)).astype("<i2").tobytes())
    started = time.monotonic()
    out = run("play_wav.py", "--call", READY["demo"]["echo_call"], str(path))
    elapsed = time.monotonic() - started
    match = re.search(r"played .*prompt\.wav: 1\.50 s of audio in ([\d.]+) s .*stopped: (\w+)", out)
    assert match, out
    assert 1.4 <= float(match[1]) <= elapsed, "the gateway paces the audio at real time"
    assert match[2] == "client_done"


def test_barge_in_clears_when_the_caller_presses_a_key() -> None:
    """The dtmf_call's first digit cuts the prompt: Cleared with a position and dropped marks."""
    out = run("barge_in.py", "--call", READY["demo"]["dtmf_call"], "--seconds", "6")
    assert re.search(r"caller pressed [12#]: barge-in", out), out
    match = re.search(r"cleared at (\d+) ms; dropped marks: (.*)", out)
    assert match, out
    assert 0 <= int(match[1]) < 6000
    # The prompt runs 3 s ahead of playback: at least the sentence being played is
    # dropped. The demo caller presses its keys every 2 s from a phase of its own, so it
    # may barge in during the first sentence, before that sentence's mark was sent (its
    # frames go first); only then may no mark be dropped.
    if match[2] == "none":
        assert int(match[1]) < 1000, out
    else:
        assert match[2].startswith("sentence-"), out
    assert out.rstrip().endswith("stopped: client_done"), out


def test_dial_out_to_a_pipecat_bot() -> None:
    """The gateway dials examples/python/pipecat_bot for the echo call.

    The bot hears its own tone back and ends; the call is left up (the demo gateway
    is shared).
    """
    bot_python = HERE / "pipecat_bot" / ".venv" / "bin" / "python"
    assert bot_python.exists(), "no pipecat environment: run `make setup`"
    bot = subprocess.Popen(
        [str(bot_python), str(HERE / "pipecat_bot" / "bot.py"), "--port", "0", "--listen-s", "2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert bot.stdout is not None
        listening = json.loads(bot.stdout.readline())
        out = run(
            "dial_out.py",
            "--call",
            READY["demo"]["echo_call"],
            "--url",
            f"ws://127.0.0.1:{listening['port']}/media",
            "--param",
            "caller=+15550100",
            "--leave-call-up",
        )
        assert re.search(r"dialled ws://\S+: external media \S+, stream MZ[0-9a-f]{32}", out), out
        assert out.rstrip().endswith("ended: bot closed the WebSocket (1000)"), out
        start = json.loads(bot.stdout.readline())
        assert start["custom_parameters"] == {"caller": "+15550100"}
        heard = json.loads(bot.stdout.readline())
        assert abs(heard["dominant_hz"] - 1000) < 15, heard
    finally:
        bot.terminate()
        bot.wait(10)
