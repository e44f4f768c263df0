"""Have the gateway dial a bot's WebSocket server, as Twilio does, for a call.

A bot written for Twilio (a pipecat bot, a FastAPI endpoint, anything that serves
Twilio Media Streams) is used unchanged: the gateway connects to it, sends
``connected`` and ``start`` (with the custom parameters), then the call's audio;
the bot's ``media``, ``mark`` and ``clear`` go into the call. When the bot closes
the socket the call is hung up (two-way streams; ``--leave-call-up`` to keep it).

    uv run python examples/python/dial_out.py --call CALL_ID --url ws://127.0.0.1:8765/media
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from mediastream_client import (
    ExternalEncapsulation,
    ExternalStatus,
    MediaStreamClient,
    OnBotClose,
    RPCError,
)


async def dial_out(server: str, call_id: str, url: str, params: dict[str, str], keep: bool) -> str:
    """Dial `url` for `call_id`; wait until the stream ends; return why it ended."""
    async with MediaStreamClient(server) as client:
        media = await client.external_media.dial_out(
            call_id=call_id,
            url=url,
            protocol=ExternalEncapsulation.TWILIO_WEBSOCKET,
            custom_parameters=params,
            on_bot_close=OnBotClose.NOTHING if keep else None,
        )
        print(f"dialled {url}: external media {media.id}, stream {media.stream_sid}")
        while media.status is not ExternalStatus.TERMINATED:
            await asyncio.sleep(0.5)
            media = await client.external_media.get(media.id)
        return media.end_reason


def main() -> None:
    """Parse arguments, dial, print how it ended."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="127.0.0.1:50051", help="gateway gRPC address")
    parser.add_argument("--call", required=True, help="the call's ID")
    parser.add_argument("--url", required=True, help="the bot's ws:// or wss:// URL")
    parser.add_argument(
        "--param", action="append", default=[], help="NAME=VALUE, sent in customParameters"
    )
    parser.add_argument("--leave-call-up", action="store_true", help="do not hang up at the end")
    args = parser.parse_args()
    params = dict(p.split("=", 1) for p in args.param)
    try:
        reason = asyncio.run(dial_out(args.server, args.call, args.url, params, args.leave_call_up))
    except RPCError as exc:
        sys.exit(f"refused: {exc}")
    print(f"ended: {reason}")


if __name__ == "__main__":
    main()
