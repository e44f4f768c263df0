"""Measure barge-in after a burst on every dialect: 60 s of audio sent at once, then a clear.

Starts a gateway with its embedded emulator on free ports, opens a stream on the echo
demo call over gRPC, the VoIPBIN WebSocket (``events=json``) and the Twilio dialect, sends
60 s of audio as fast as the connection takes it (20 ms a message), then a mark and a
clear, and prints how long the clear took to be acknowledged: from the client sending it,
and from the gateway reading it (what is left between the two is the reading of the 3000
messages sent before it).

gRPC is measured twice: ``grpc in-stream`` sends the clear on the stream (generated stubs,
flow messages not honoured), acknowledged by the stream's ``cleared``, which comes only
after the gateway has read the 3000 messages before it. ``grpc ControlStream (stubs)``
queues the same burst and sends the clear beside the stream (the ControlStream RPC) at
once, most of the burst still on its way; ``grpc ControlStream (SDK clear)`` is the Python
SDK's ``send`` (awaited chunk by chunk) and ``clear()``. Both are acknowledged by the RPC's
reply, once playback is cut; the line also says when the stream's ``cleared`` came (once
the gateway has read what the clear overtook) and which marks it named. On ``events=json``
the ack is ``cleared``; on Twilio the dropped mark coming back. Then one message of 1 s of
audio and a mark: the mark's position (gRPC, ``events=json``; at least 980 ms means the
whole second played first).

With ``--process`` the gateway runs in a process of its own (``mediastream.cli serve``),
as deployed: the client's 3000 messages then do not share the gateway's event loop, and only
the latency from the client is known.

    uv run --frozen python scripts/bargein.py [--seconds 60] [--timeout 60] [--process] [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import grpc

from mediastream._proto import mediastream_pb2 as pb
from mediastream._proto import mediastream_pb2_grpc as pb_grpc
from mediastream.app import Endpoints, Gateway
from mediastream.config import Settings
from mediastream.core.stream import PlaybackCleared
from mediastream.emulator import ECHO_CALL_ID
from mediastream.streams import Stream
from mediastream_client import AudioFormat, Cleared, MediaStreamClient

SLIN_FRAME = 320
ULAW_FRAME = 160

FRAMES_PER_MESSAGE = 1
"""20 ms frames in each message of the burst (``--frames-per-message``)."""

CLEARS_READ: list[float] = []
"""When the gateway read each clear (`Stream.clear` called), in ``time.monotonic()``."""


def record_clears() -> None:
    """Note when the gateway reads a clear (this process runs the gateway)."""
    clear = Stream.clear

    def recording(self: Stream, *args: Any, **kwargs: Any) -> PlaybackCleared:
        CLEARS_READ.append(time.monotonic())
        return clear(self, *args, **kwargs)

    Stream.clear = recording  # type: ignore[method-assign]


class Result:
    """One dialect's burst: how long sending took, and when the clear was sent and acked."""

    def __init__(self, start: float, sent: float, acked: float) -> None:
        self.burst_s = sent - start
        self.from_client_ms = (acked - sent) * 1000
        read = CLEARS_READ.pop() if CLEARS_READ else float("nan")
        self.from_gateway_ms = (acked - read) * 1000
        self.event_ms: float | None = None
        """ControlStream: when the stream's Cleared came, from the client sending the clear."""
        self.event_marks: tuple[str, ...] = ()


def requests_from(
    queue: asyncio.Queue[pb.StreamMediaRequest | None], config: pb.StreamConfig
) -> AsyncIterator[pb.StreamMediaRequest]:
    """A request stream: the config, then whatever is queued until None."""

    async def gen() -> AsyncIterator[pb.StreamMediaRequest]:
        yield pb.StreamMediaRequest(config=config)
        while (item := await queue.get()) is not None:
            yield item

    return gen()


async def over_grpc(ep: Endpoints, seconds: int, timeout: float, *, side: bool = False) -> Result:
    """60 s burst over gRPC, then a mark and a clear: on the stream, or beside it (`side`)."""
    queue: asyncio.Queue[pb.StreamMediaRequest | None] = asyncio.Queue()
    config = pb.StreamConfig(call_id=ECHO_CALL_ID, format=pb.AUDIO_FORMAT_SLIN)
    async with grpc.aio.insecure_channel(ep.grpc) as channel:
        stub = pb_grpc.MediaStreamServiceStub(channel)
        call = stub.StreamMedia(requests_from(queue, config))
        responses = aiter(call)
        started = await anext(responses)
        start = time.monotonic()
        frame = b"\x10\x27" * (SLIN_FRAME // 2) * FRAMES_PER_MESSAGE
        chunks = seconds * 50 // FRAMES_PER_MESSAGE
        for seq in range(chunks):
            audio = pb.AudioChunk(data=frame, sequence_number=seq)
            queue.put_nowait(pb.StreamMediaRequest(audio=audio))
        queue.put_nowait(pb.StreamMediaRequest(mark=pb.Mark(name="end")))
        sent = time.monotonic()
        result: Result | None = None
        try:
            async with asyncio.timeout(timeout):
                if side:
                    await stub.ControlStream(
                        pb.ControlStreamRequest(
                            stream_id=started.started.stream_id,
                            clear=pb.Clear(),
                            last_sent_sequence_number=chunks - 1,
                            marks_and_dtmf_sent=1,
                        )
                    )
                    result = Result(start, sent, time.monotonic())
                else:
                    queue.put_nowait(pb.StreamMediaRequest(clear=pb.Clear()))
                async for response in responses:
                    if response.WhichOneof("payload") == "cleared":
                        if result is None:
                            return Result(start, sent, time.monotonic())
                        result.event_ms = (time.monotonic() - sent) * 1000
                        result.event_marks = tuple(response.cleared.dropped_marks)
                        return result
        finally:
            call.cancel()
    raise AssertionError("the stream ended before cleared")


async def over_control_stream(ep: Endpoints, seconds: int, timeout: float) -> Result:
    """60 s burst through the Python SDK, then a mark and its `clear()` (ControlStream)."""
    async with (
        MediaStreamClient(ep.grpc) as client,
        client.stream(call_id=ECHO_CALL_ID, format=AudioFormat.SLIN) as stream,
    ):
        stream.wait_while_paused = False  # a bot's burst: the SDK sends at once
        start = time.monotonic()
        frame = b"\x10\x27" * (SLIN_FRAME // 2) * FRAMES_PER_MESSAGE
        for _ in range(seconds * 50 // FRAMES_PER_MESSAGE):
            await stream.send(frame)
        await stream.mark("end")
        sent = time.monotonic()
        async with asyncio.timeout(timeout):
            await stream.clear()
            result = Result(start, sent, time.monotonic())
            async for event in stream:
                if isinstance(event, Cleared):
                    result.event_ms = (time.monotonic() - sent) * 1000
                    result.event_marks = event.dropped_marks
                    break
        await stream.cancel()
    return result


async def over_websocket(ep: Endpoints, seconds: int, timeout: float, *, twilio: bool) -> Result:
    """60 s burst over the VoIPBIN WebSocket (events=json) or the Twilio dialect."""
    base = f"http://{ep.websocket}/v1.0/calls/{ECHO_CALL_ID}"
    url = f"{base}/twilio" if twilio else f"{base}/media_stream?encapsulation=sln&events=json"
    async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
        sid = ""
        while True:
            msg = await ws.receive(timeout=5)
            if msg.type is aiohttp.WSMsgType.TEXT:
                data = json.loads(msg.data)
                if data.get("event") == "start" or data.get("type") == "started":
                    sid = data.get("streamSid", "")
                    break
        acked: list[float] = []

        async def read() -> None:
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if data.get("type") == "cleared" or (
                    data.get("event") == "mark" and data["mark"]["name"] == "end"
                ):
                    acked.append(time.monotonic())
                    return

        reader = asyncio.create_task(read())
        start = time.monotonic()
        async with asyncio.timeout(timeout):
            if twilio:
                payload = base64.b64encode(b"\x10" * ULAW_FRAME * FRAMES_PER_MESSAGE).decode()
                media = json.dumps(
                    {"event": "media", "streamSid": sid, "media": {"payload": payload}}
                )
                for _ in range(seconds * 50 // FRAMES_PER_MESSAGE):
                    await ws.send_str(media)
                mark = {"event": "mark", "streamSid": sid, "mark": {"name": "end"}}
                await ws.send_str(json.dumps(mark))
                sent = time.monotonic()
                await ws.send_str(json.dumps({"event": "clear", "streamSid": sid}))
            else:
                frame = b"\x10\x27" * (SLIN_FRAME // 2) * FRAMES_PER_MESSAGE
                for _ in range(seconds * 50 // FRAMES_PER_MESSAGE):
                    await ws.send_bytes(frame)
                await ws.send_str(json.dumps({"type": "mark", "name": "end"}))
                sent = time.monotonic()
                await ws.send_str(json.dumps({"type": "clear"}))
            await reader
        return Result(start, sent, acked[0])


async def one_second_grpc(ep: Endpoints) -> int:
    """Position of a mark sent after one 1 s AudioChunk."""
    queue: asyncio.Queue[pb.StreamMediaRequest | None] = asyncio.Queue()
    config = pb.StreamConfig(call_id=ECHO_CALL_ID, format=pb.AUDIO_FORMAT_SLIN)
    async with grpc.aio.insecure_channel(ep.grpc) as channel:
        call = pb_grpc.MediaStreamServiceStub(channel).StreamMedia(requests_from(queue, config))
        queue.put_nowait(pb.StreamMediaRequest(audio=pb.AudioChunk(data=b"\x10\x27" * 8000)))
        queue.put_nowait(pb.StreamMediaRequest(mark=pb.Mark(name="one-second")))
        try:
            async for response in call:
                if response.WhichOneof("payload") == "mark":
                    return int(response.mark.position_ms)
        finally:
            call.cancel()
    raise AssertionError("the stream ended before the mark")


async def one_second_websocket(ep: Endpoints) -> int:
    """Position of a mark sent after one WebSocket message of 1 s (events=json)."""
    url = f"http://{ep.websocket}/v1.0/calls/{ECHO_CALL_ID}/media_stream?encapsulation=sln&events=json"
    async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
        await ws.send_bytes(b"\x10\x27" * 8000)
        await ws.send_str(json.dumps({"type": "mark", "name": "one-second"}))
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                data = json.loads(msg.data)
                if data.get("type") == "mark":
                    return int(data["position_ms"])
    raise AssertionError("the stream ended before the mark")


async def gateway_process() -> tuple[Endpoints, asyncio.subprocess.Process]:
    """A gateway in a process of its own, on free ports, and its endpoints once ready."""
    listen = ["--grpc-listen", "127.0.0.1:0", "--ws-listen", "127.0.0.1:0"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "mediastream.cli", "serve", *listen, "--metrics-listen", ""),
        *("--log-level", "WARNING"),
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None
    ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 90))
    ep = Endpoints(ready["grpc"], ready["ari_url"], True, "", websocket=ready["websocket"])
    return ep, proc


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="audio in the burst")
    parser.add_argument("--timeout", type=float, default=60.0, help="give up after this long")
    parser.add_argument("--process", action="store_true", help="the gateway in its own process")
    parser.add_argument("--runs", type=int, default=1, help="measure the bursts this many times")
    parser.add_argument(
        "--frames-per-message", type=int, default=1, help="20 ms frames per burst message"
    )
    args = parser.parse_args()
    global FRAMES_PER_MESSAGE
    FRAMES_PER_MESSAGE = args.frames_per_message
    gateway: Gateway | None = None
    proc: asyncio.subprocess.Process | None = None
    if args.process:
        ep, proc = await gateway_process()
    else:
        settings = Settings(
            grpc_listen="127.0.0.1:0",
            ws_listen="127.0.0.1:0",
            metrics_listen="",
            drain_timeout_s=0.5,
        )
        record_clears()
        gateway = Gateway(settings)
        ep = await gateway.start()
    try:
        acks: dict[str, list[float]] = {}
        for _ in range(args.runs):
            cases: dict[str, Callable[[], Awaitable[Result]]] = {
                "grpc in-stream": lambda: over_grpc(ep, args.seconds, args.timeout),
                "grpc ControlStream (stubs)": lambda: over_grpc(
                    ep, args.seconds, args.timeout, side=True
                ),
                "grpc ControlStream (SDK clear)": lambda: over_control_stream(
                    ep, args.seconds, args.timeout
                ),
                "websocket events=json": lambda: over_websocket(
                    ep, args.seconds, args.timeout, twilio=False
                ),
                "twilio": lambda: over_websocket(ep, args.seconds, args.timeout, twilio=True),
            }
            for name, case in cases.items():
                r = await case()
                acks.setdefault(name, []).append(r.from_client_ms)
                print(
                    f"{name}: {args.seconds} s of audio in {FRAMES_PER_MESSAGE * 20} ms messages "
                    f"sent in {r.burst_s:.2f} s; clear acknowledged "
                    f"{r.from_client_ms:.1f} ms after the client sent it"
                    + (
                        ""
                        if args.process
                        else f", {r.from_gateway_ms:.1f} ms after the gateway read it"
                    )
                    + (
                        ""
                        if r.event_ms is None
                        else f"; the stream's cleared came {r.event_ms:.1f} ms after it was sent"
                        f" (dropped marks: {list(r.event_marks)})"
                    ),
                    flush=True,
                )
        if args.runs > 1:
            for name, values in acks.items():
                print(
                    f"{name}: clear acknowledged after {statistics.median(values):.1f} ms "
                    f"(median of {len(values)}), {max(values):.1f} ms at most",
                    flush=True,
                )
        for name, one in {
            "grpc": one_second_grpc(ep),
            "websocket events=json": one_second_websocket(ep),
        }.items():
            print(f"{name}: one message of 1 s, then a mark: mark at {await one} ms", flush=True)
    finally:
        if gateway is not None:
            await gateway.stop(grace=0.5)
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            await proc.wait()


if __name__ == "__main__":
    asyncio.run(main())
