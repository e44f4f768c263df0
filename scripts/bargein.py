"""Measure barge-in after a burst on every dialect: 60 s of audio sent at once, then a clear.

Starts a gateway with its embedded emulator on free ports, opens a stream on the echo
demo call over gRPC (generated stubs, flow messages not honoured), the VoIPBIN WebSocket
(``events=json``) and the Twilio dialect, sends 60 s of audio as fast as the connection
takes it, then a mark and a clear, and prints how long the clear took to be acknowledged
(``cleared`` on gRPC and ``events=json``; on Twilio the dropped mark coming back).

    uv run --frozen python scripts/bargein.py [--seconds 60] [--timeout 60]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import grpc

from mediastream._proto import mediastream_pb2 as pb
from mediastream._proto import mediastream_pb2_grpc as pb_grpc
from mediastream.app import Endpoints, Gateway
from mediastream.config import Settings
from mediastream.emulator import ECHO_CALL_ID

SLIN_FRAME = 320
ULAW_FRAME = 160


async def over_grpc(ep: Endpoints, seconds: int, timeout: float) -> tuple[float, float]:
    """Seconds to send the burst, seconds from the clear to ``cleared``."""
    queue: asyncio.Queue[pb.StreamMediaRequest | None] = asyncio.Queue()

    async def requests() -> AsyncIterator[pb.StreamMediaRequest]:
        config = pb.StreamConfig(call_id=ECHO_CALL_ID, format=pb.AUDIO_FORMAT_SLIN)
        yield pb.StreamMediaRequest(config=config)
        while (item := await queue.get()) is not None:
            yield item

    async with grpc.aio.insecure_channel(ep.grpc) as channel:
        call = pb_grpc.MediaStreamServiceStub(channel).StreamMedia(requests())
        responses = aiter(call)
        await anext(responses)  # started
        start = time.monotonic()
        frame = b"\x10\x27" * (SLIN_FRAME // 2)
        for _ in range(seconds * 50):
            queue.put_nowait(pb.StreamMediaRequest(audio=pb.AudioChunk(data=frame)))
        queue.put_nowait(pb.StreamMediaRequest(mark=pb.Mark(name="end")))
        queue.put_nowait(pb.StreamMediaRequest(clear=pb.Clear()))
        sent = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                async for response in responses:
                    if response.WhichOneof("payload") == "cleared":
                        return sent - start, time.monotonic() - sent
        except TimeoutError:
            return sent - start, float("inf")
        finally:
            call.cancel()
    return sent - start, float("nan")


async def over_websocket(
    ep: Endpoints, seconds: int, timeout: float, *, twilio: bool
) -> tuple[float, float]:
    """Seconds to send the burst, seconds from the clear to its acknowledgement."""
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
        start = time.monotonic()
        ack_at: list[float] = []

        async def read() -> None:
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if data.get("type") == "cleared" or (
                    data.get("event") == "mark" and data["mark"]["name"] == "end"
                ):
                    ack_at.append(time.monotonic())
                    return

        reader = asyncio.create_task(read())
        sent = float("inf")
        try:
            async with asyncio.timeout(timeout):
                if twilio:
                    payload = base64.b64encode(b"\x10" * ULAW_FRAME).decode()
                    media = json.dumps(
                        {"event": "media", "streamSid": sid, "media": {"payload": payload}}
                    )
                    for _ in range(seconds * 50):
                        await ws.send_str(media)
                    await ws.send_str(
                        json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": "end"}})
                    )
                    sent = time.monotonic()
                    await ws.send_str(json.dumps({"event": "clear", "streamSid": sid}))
                else:
                    frame = b"\x10\x27" * (SLIN_FRAME // 2)
                    for _ in range(seconds * 50):
                        await ws.send_bytes(frame)
                    await ws.send_str(json.dumps({"type": "mark", "name": "end"}))
                    sent = time.monotonic()
                    await ws.send_str(json.dumps({"type": "clear"}))
                await reader
        except TimeoutError:
            reader.cancel()
            return sent - start, float("inf")
        return sent - start, ack_at[0] - sent


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="audio in the burst")
    parser.add_argument("--timeout", type=float, default=60.0, help="give up after this long")
    args = parser.parse_args()
    settings = Settings(
        grpc_listen="127.0.0.1:0", ws_listen="127.0.0.1:0", metrics_listen="", drain_timeout_s=0.5
    )
    gateway = Gateway(settings)
    ep = await gateway.start()
    try:
        cases = {
            "grpc": over_grpc(ep, args.seconds, args.timeout),
            "websocket events=json": over_websocket(ep, args.seconds, args.timeout, twilio=False),
            "twilio": over_websocket(ep, args.seconds, args.timeout, twilio=True),
        }
        for name, case in cases.items():
            burst, latency = await case
            print(
                f"{name}: {args.seconds} s of audio sent in {burst:.2f} s; "
                f"clear acknowledged after {latency * 1000:.1f} ms",
                flush=True,
            )
    finally:
        await gateway.stop(grace=0.5)


if __name__ == "__main__":
    asyncio.run(main())
