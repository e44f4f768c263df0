"""Barge-in: speak into a call, and stop speaking when the caller presses a key.

A voice bot sends its prompt ahead of time, marking the end of each sentence.
When the caller interrupts (here: a DTMF digit; a bot would also use speech
detection on the call's audio), the bot sends `clear`: the gateway drops
everything still queued and answers with Cleared, saying where playback was
cut and which marks were dropped, i.e. which sentences the caller never heard.

    uv run python examples/python/barge_in.py --call CALL_ID --seconds 10

The demo `dtmf_call` presses 1, 2, # every 2 s: a ready-made impatient caller.
A tone stands in for the bot's speech.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import math
import sys
import time

from mediastream_client import (
    AudioFormat,
    Cleared,
    DtmfReceived,
    DuplexStream,
    MarkPlayed,
    MediaStreamClient,
    RPCError,
    Stopped,
)

SENTENCE_S = 1.0
"""Length of one "sentence" of the prompt; a mark follows each."""

LEAD_S = 3.0
"""How far ahead of playback the prompt is sent: what a barge-in drops.

It stays under the 8 s at which the gateway asks to pause (FlowControl), so
`send` never has to wait and the speaker stops at once when the caller barges in.
"""

FORMAT = AudioFormat.SLIN


def tone(seconds: float, hz: float = 500.0) -> bytes:
    """A tone as 16-bit little-endian samples at 8 kHz: the bot's "speech"."""
    rate = FORMAT.sample_rate
    samples = array.array(
        "h", (int(8000 * math.sin(2 * math.pi * hz * i / rate)) for i in range(int(seconds * rate)))
    )
    return samples.tobytes()


async def speak(
    stream: DuplexStream, sentences: int, writing: asyncio.Lock, interrupted: asyncio.Event
) -> None:
    """Send the prompt: `sentences` sentences, each followed by a mark, up to LEAD_S ahead."""
    assert stream.info is not None
    frame = stream.info.frame_bytes  # 20 ms
    sentence = tone(SENTENCE_S)
    start = time.monotonic()
    sent_s = 0.0
    for n in range(1, sentences + 1):
        for i in range(0, len(sentence), frame):
            ahead = sent_s - (time.monotonic() - start)
            if ahead > LEAD_S:
                await asyncio.sleep(ahead - LEAD_S)
            if interrupted.is_set():
                return  # the caller barged in: say nothing more
            # One write at a time: the stream takes no concurrent writes.
            async with writing:
                await stream.send(sentence[i : i + frame])
            sent_s += 0.020
        if interrupted.is_set():
            return
        async with writing:
            await stream.mark(f"sentence-{n}")


async def barge_in(server: str, call_id: str, seconds: float) -> Cleared | None:
    """Speak for `seconds` into `call_id` until a DTMF digit interrupts; return any Cleared."""
    sentences = max(1, round(seconds / SENTENCE_S))
    writing = asyncio.Lock()
    interrupted = asyncio.Event()
    cleared: Cleared | None = None
    finished = False  # done_sending was called: no clear after it
    async with (
        MediaStreamClient(server) as client,
        client.stream(call_id=call_id, format=FORMAT) as stream,
    ):
        print(f"speaking {sentences} sentences of {SENTENCE_S:.0f} s into {call_id}")
        speaker = asyncio.create_task(speak(stream, sentences, writing, interrupted))
        async for event in stream.events():
            if isinstance(event, MarkPlayed):
                print(f"played {event.name} (at {event.position_ms} ms)")
                if event.name == f"sentence-{sentences}":
                    print("the caller heard the whole prompt")
                    finished = True
                    async with writing:
                        await stream.done_sending()
            elif isinstance(event, DtmfReceived) and not (interrupted.is_set() or finished):
                print(f"caller pressed {event.digit}: barge-in")
                interrupted.set()
                await speaker  # it stops before its next frame
                async with writing:
                    await stream.clear()  # drop the queued prompt now
            elif isinstance(event, Cleared):
                cleared = event
                dropped = ", ".join(event.dropped_marks) or "none"
                print(f"cleared at {event.position_ms} ms; dropped marks: {dropped}")
                finished = True
                async with writing:
                    await stream.done_sending()  # nothing queued: the stream stops
            elif isinstance(event, Stopped):
                print(f"stopped: {event.reason.value}")
        await speaker
    return cleared


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the example."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--server", default="127.0.0.1:50051", help="the gateway's gRPC host:port")
    parser.add_argument("--call", required=True, help="ID of the call to speak into")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the prompt")
    args = parser.parse_args(argv)
    try:
        asyncio.run(barge_in(args.server, args.call, args.seconds))
    except RPCError as exc:
        print(f"refused: {exc.code.name} {exc.reason}: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
