"""Demo calls and a demo conference, present from start-up.

They stand for calls that run dialplan (not Stasis), so the gateway reaches a call
through a snoop channel and the conference by joining its bridge:

* :data:`TONE_CALL_ID`: plays 440 Hz at Playtones level;
* :data:`ECHO_CALL_ID`: sends back whatever it hears. Its dialplan plays silence in a
  loop (``Playback(silence/10)``), as a platform keeps something playing to a call it
  parks: a snoop's whisper is mixed only into frames written to the call
  (:mod:`mediastream.emulator.snoop`, as in Asterisk), so without it a client talking
  to the echo call would hear nothing back;
* :data:`DTMF_CALL_ID`: 440 Hz, and every 2 s ``SendDTMF(12#,100,120)``;
* :data:`CONFERENCE_ID`: a mixing bridge with a 440 Hz and an 880 Hz participant.
"""

from __future__ import annotations

import asyncio
import itertools

from mediastream.core.formats import AudioFormat
from mediastream.emulator.dialplan import DialplanRunner, Playback, Program
from mediastream.emulator.model import Channel, Dialplan
from mediastream.emulator.pbx import Pbx

__all__ = [
    "CONFERENCE_440_ID",
    "CONFERENCE_880_ID",
    "CONFERENCE_ID",
    "DTMF_CALL_ID",
    "ECHO_CALL_ID",
    "TONE_CALL_ID",
    "add_call",
    "create_demo",
]

TONE_CALL_ID = "00000000-0000-4000-8000-000000000440"
"""A call that plays 440 Hz (amplitude ~7200, like Playtones)."""
ECHO_CALL_ID = "00000000-0000-4000-8000-000000000ec0"
"""A call that echoes what it hears."""
DTMF_CALL_ID = "00000000-0000-4000-8000-0000000d7f00"
"""A 440 Hz call that sends DTMF 1, 2, # every 2 s (as ``SendDTMF(12#,100,120)``)."""
CONFERENCE_ID = "00000000-0000-4000-8000-00000000c0f0"
"""A mixing bridge holding a 440 Hz and an 880 Hz participant."""
CONFERENCE_440_ID = "00000000-0000-4000-8000-00000000c440"
"""The conference participant that plays 440 Hz."""
CONFERENCE_880_ID = "00000000-0000-4000-8000-00000000c880"
"""The conference participant that plays 880 Hz."""

DTMF_PERIOD_SECONDS = 2.0
"""A new ``1 2 #`` sequence starts this often on the DTMF demo call."""


def _tone(frequency: float) -> Program:
    async def program(r: DialplanRunner) -> None:
        r.play_tones(frequency)
        await asyncio.Event().wait()

    return program


async def _echo(r: DialplanRunner) -> None:
    r.start_echo()
    await asyncio.Event().wait()


async def _dtmf(r: DialplanRunner) -> None:
    r.play_tones(440)
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await r.send_dtmf("12#")
        await r.wait(max(0.02, DTMF_PERIOD_SECONDS - (loop.time() - started)))


CALL_KINDS: dict[str, Program] = {
    "tone": _tone(440),
    "tone880": _tone(880),
    "echo": _echo,
    "dtmf": _dtmf,
}
"""What :func:`add_call` can create: the demo calls' behaviours."""

_call_counter = itertools.count(0x100)


def add_call(pbx: Pbx, kind: str = "tone", channel_id: str | None = None) -> Channel:
    """Add an Up call that runs dialplan (not Stasis), like the demo calls.

    Args:
        pbx: The PBX.
        kind: ``tone`` (440 Hz), ``tone880``, ``echo`` or ``dtmf``.
        channel_id: Its id; a fresh uniqueid when omitted.

    Returns:
        The new channel.

    Raises:
        ValueError: Unknown ``kind``.
    """
    program = CALL_KINDS.get(kind)
    if program is None:
        raise ValueError(f"unknown call kind {kind!r}; use one of {sorted(CALL_KINDS)}")
    name = f"PJSIP/call-{kind}-{next(_call_counter):08x}"
    return _demo_channel(
        pbx, channel_id, name, f"call-{kind}", ("Caller", "1000"), program, kind == "echo"
    )


def _demo_channel(
    pbx: Pbx,
    channel_id: str | None,
    name: str,
    exten: str,
    caller: tuple[str, str],
    program: Program,
    plays_silence: bool = False,
) -> Channel:
    dialplan = (
        Dialplan("default", exten, 3, "Playback", "silence/10")
        if plays_silence
        else Dialplan("default", exten, 2, "Wait", "3600")
    )
    channel = pbx.new_channel(name, AudioFormat.ULAW, channel_id, dialplan=dialplan, state="Up")
    channel.caller = caller
    runner = DialplanRunner(channel, channel, pbx.clock, on_finished=lambda: pbx.hangup(channel))
    channel.tech = runner
    pbx.runners[channel.id] = runner
    runner.start(program)
    if plays_silence:
        Playback(channel, pbx.clock)
    return channel


def create_demo(pbx: Pbx) -> None:
    """Create the demo calls and the demo conference (call on the running loop)."""
    _demo_channel(
        pbx,
        TONE_CALL_ID,
        "PJSIP/demo-tone-00000001",
        "demo-tone",
        ("Demo Tone", "1001"),
        _tone(440),
    )
    _demo_channel(
        pbx,
        ECHO_CALL_ID,
        "PJSIP/demo-echo-00000002",
        "demo-echo",
        ("Demo Echo", "1002"),
        _echo,
        plays_silence=True,
    )
    _demo_channel(
        pbx, DTMF_CALL_ID, "PJSIP/demo-dtmf-00000003", "demo-dtmf", ("Demo DTMF", "1003"), _dtmf
    )
    bridge = pbx.create_bridge("mixing", "demo-conference", CONFERENCE_ID)
    members = [
        _demo_channel(
            pbx,
            CONFERENCE_440_ID,
            "PJSIP/demo-conf-440-00000004",
            "demo-conference",
            ("Conference 440", "2001"),
            _tone(440),
        ),
        _demo_channel(
            pbx,
            CONFERENCE_880_ID,
            "PJSIP/demo-conf-880-00000005",
            "demo-conference",
            ("Conference 880", "2002"),
            _tone(880),
        ),
    ]
    pbx.join(bridge, members)
