"""A pipecat bot served the way Twilio reaches an application, for the gateway to dial.

The bot is written as pipecat bots are deployed behind Twilio: a FastAPI WebSocket
endpoint, ``parse_telephony_websocket`` to read Twilio's ``connected`` and
``start``, pipecat's own ``TwilioFrameSerializer`` (``auto_hang_up=False``: the
gateway hangs up when the bot closes the socket) and ``FastAPIWebsocketTransport``.
Nothing in it knows about the gateway. Start it, then have the gateway dial it:

    cd examples/python/pipecat_bot && uv sync --frozen
    .venv/bin/python bot.py --port 8765

    # from the repository root, with a gateway running (make run):
    uv run python examples/python/dial_out.py --call 00000000-0000-4000-8000-000000000ec0 \
        --url ws://127.0.0.1:8765/media

Instead of speech-to-text, a language model and text-to-speech (which need keys and
a network), the pipeline says a one-second 1000 Hz tone when the call starts,
listens to the call, and ends itself once it has heard `--listen-s` seconds: it
then prints one JSON line with what it heard (its dominant frequency and level,
the call's ``customParameters``) and closes the socket, as a bot ending its
pipeline does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI, WebSocket
from pipecat.frames.frames import (
    EndTaskFrame,
    Frame,
    InputAudioRawFrame,
    OutputAudioRawFrame,
    StartFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineParams, PipelineTask
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.runner.utils import parse_telephony_websocket
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import (
    FastAPIWebsocketParams,
    FastAPIWebsocketTransport,
)

RATE = 8000
"""The pipeline's sample rate: Twilio's, so the serializer need not resample."""


def report(line: dict[str, Any]) -> None:
    """One JSON line on stdout (what a test or a person reads)."""
    print(json.dumps(line), flush=True)


class SayAndListen(FrameProcessor):
    """Says a tone when the call starts, listens, ends the pipeline after `listen_s`."""

    def __init__(self, listen_s: float, tone_hz: float, facts: dict[str, Any]) -> None:
        super().__init__()
        self._listen_bytes = int(listen_s * RATE) * 2
        self._tone_hz = tone_hz
        self._facts = facts
        self._heard = bytearray()
        self._ending = False

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Say the tone on start; collect the call's audio; pass everything else on."""
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            t = np.arange(RATE) / RATE
            tone = (np.sin(2 * np.pi * self._tone_hz * t) * 8000).astype("<i2").tobytes()
            for i in range(0, len(tone), 320):  # 20 ms frames, as a TTS service yields
                await self.push_frame(OutputAudioRawFrame(tone[i : i + 320], RATE, 1))
            return
        if isinstance(frame, InputAudioRawFrame):
            # What the call says; not passed on (the bot would talk back to itself).
            self._heard += frame.audio
            if len(self._heard) >= self._listen_bytes and not self._ending:
                self._ending = True
                report({"event": "heard", **self._facts, **analyse(bytes(self._heard))})
                # A bot ends its call by ending its pipeline: the transport closes the socket.
                await self.push_frame(EndTaskFrame(), FrameDirection.UPSTREAM)
            return
        await self.push_frame(frame, direction)


def analyse(pcm: bytes) -> dict[str, float]:
    """Dominant frequency and RMS level of the loudest second of 16-bit audio."""
    samples = np.frombuffer(pcm, "<i2").astype(np.float64)
    if len(samples) > RATE:
        windows = [samples[i : i + RATE] for i in range(0, len(samples) - RATE + 1, RATE // 10)]
        samples = max(windows, key=lambda w: float(np.sqrt(np.mean(w**2))))
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    peak = int(np.argmax(spectrum[1:]) + 1)
    return {
        "dominant_hz": peak * RATE / len(samples),
        "rms": float(np.sqrt(np.mean(samples**2))),
    }


def make_app(listen_s: float, tone_hz: float) -> FastAPI:
    """The bot's web application: one WebSocket endpoint, ``/media``."""
    app = FastAPI()

    @app.websocket("/media")
    async def media(websocket: WebSocket) -> None:
        await websocket.accept()
        transport_type, call_data = await parse_telephony_websocket(websocket)
        facts = {
            "transport": transport_type,
            "stream_id": call_data["stream_id"],
            "call_id": call_data["call_id"],
            "custom_parameters": call_data["body"],
        }
        report({"event": "start", **facts})
        serializer = TwilioFrameSerializer(
            stream_sid=call_data["stream_id"],
            call_sid=call_data["call_id"],
            params=TwilioFrameSerializer.InputParams(auto_hang_up=False),
        )
        transport = FastAPIWebsocketTransport(
            websocket=websocket,
            params=FastAPIWebsocketParams(
                audio_in_enabled=True,
                audio_out_enabled=True,
                add_wav_header=False,
                serializer=serializer,
            ),
        )
        pipeline = Pipeline(
            [transport.input(), SayAndListen(listen_s, tone_hz, facts), transport.output()]
        )
        task = PipelineTask(
            pipeline,
            params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
        )
        await PipelineRunner(handle_sigint=False).run(task)
        report({"event": "ended"})

    return app


async def serve(host: str, port: int, listen_s: float, tone_hz: float) -> None:
    """Serve on ``host:port`` (port 0: a free one, printed as ``{"listening": port}``)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)  # before saying where: a connection that comes at once is queued
    report({"event": "listening", "port": sock.getsockname()[1]})
    config = uvicorn.Config(make_app(listen_s, tone_hz), log_level="warning", ws="websockets")
    await uvicorn.Server(config).serve(sockets=[sock])


def main() -> None:
    """Parse arguments and serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--listen-s", type=float, default=3.0, help="listen this long, then end")
    parser.add_argument("--tone-hz", type=float, default=1000.0)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.host, args.port, args.listen_s, args.tone_hz))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
