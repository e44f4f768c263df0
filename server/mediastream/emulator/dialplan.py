"""The dialplan the recordings were made with, run on the far side of a channel.

``POST /channels?endpoint=Local/<exten>@default`` creates a Local pair: the ``;1``
half enters Stasis and the ``;2`` half runs extension ``<exten>``. Audio the ``;2``
dialplan plays is what ``;1`` *reads*; what is written to ``;1`` is what the
dialplan hears. :class:`DialplanRunner` is that far side, driven by the media
clock so tones, DTMF and waits line up with 20 ms frames exactly as in Asterisk.

Extensions (context ``default``), as in the fixtures README:

* ``tone``: Answer, Playtones(440), Wait(60)
* ``tone880``: Answer, Playtones(880), Wait(60)
* ``echo``: Answer, Echo()
* ``dtmf``: Answer, Playtones(440), Wait(0.4), SendDTMF(12#,100,120), Playtones(440), Wait(60)
* ``short``: Answer, Playtones(440), Wait(1), Hangup
* ``silent``, ``wait``: Answer, Wait(120) (nothing is sent: a silent leg)
* ``playback``: Answer, Playback of a 500 Hz prompt in a loop (the real-Asterisk suite's
  generated ``mediastream-prompt``, tests/real_asterisk/asterisk.py)

A call originated into the dialplan (``POST /channels`` with ``extension`` and no
``app``) runs :data:`OWN_EXTENSIONS` on its ``;1`` half: what that dialplan plays is
*written* to the call (:class:`Playback`), which is what a snoop's whisper needs to be
heard (``wait`` writes nothing, as Asterisk's ``Wait()`` without ``transmit_silence``).

``Answer()`` returns when the first frame is heard or after 500 ms, which is why a
tone call bridged with a silent party starts its tone half a second late.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from mediastream.core.formats import FRAME_MS, AudioFormat
from mediastream.emulator.media import PLAYTONES_AMPLITUDE, MediaClock, ToneGenerator
from mediastream.emulator.model import Channel, FormatConverter, Frame

__all__ = [
    "EXTENSIONS",
    "OWN_EXTENSIONS",
    "PROMPT_AMPLITUDE",
    "PROMPT_HZ",
    "DialplanRunner",
    "Playback",
    "Program",
]

log = logging.getLogger(__name__)

ANSWER_WAIT_MS = 500
"""How long ``Answer()`` waits for a first media frame."""

SENDDTMF_BETWEEN_MS = 100
"""``SendDTMF(12#,100,120)``: quiet time before each digit."""

SENDDTMF_DURATION_MS = 120
"""``SendDTMF(12#,100,120)``: length of each digit."""

PROMPT_HZ = 500.0
"""Frequency of the prompt ``playback`` plays (as the real-Asterisk suite's generated file)."""

PROMPT_AMPLITUDE = 6000
"""Peak amplitude of that prompt."""

Program = Callable[["DialplanRunner"], Awaitable[None]]


def _ticks(ms: float) -> int:
    return max(1, round(ms / FRAME_MS))


class DialplanRunner:
    """The far end of a channel running dialplan (a Local ``;2`` half or a demo phone).

    It is the :class:`~mediastream.emulator.model.ChannelTech` of ``channel``:
    frames written to ``channel`` reach it, and what it plays it makes ``channel``
    read.

    Attributes:
        channel: The channel whose far end this is (``;1``, or the demo channel).
        dialplan_channel: The channel whose dialplan location changes (``;2``, or
            the demo channel itself).
    """

    def __init__(
        self,
        channel: Channel,
        dialplan_channel: Channel,
        clock: MediaClock,
        *,
        on_app: Callable[[Channel], None] | None = None,
        on_finished: Callable[[], None] | None = None,
    ) -> None:
        """Create a runner.

        Args:
            channel: See the class attributes.
            dialplan_channel: See the class attributes.
            clock: The media clock.
            on_app: Called after the dialplan moves to a new application (to publish
                ``ChannelDialplan``).
            on_finished: Called when the dialplan ends (the far end hangs up).
        """
        self.channel = channel
        self.dialplan_channel = dialplan_channel
        self.clock = clock
        self.on_app = on_app
        self.on_finished = on_finished
        self.echo = False
        self.in_digit = False
        self._tone: ToneGenerator | None = None
        self._tone_is_generator = True
        self._to_native = FormatConverter(channel.native_format)
        self._heard = asyncio.Event()
        self._deferring = False
        self._deferred: list[Frame] = []
        self._ticker = clock.add(self._tick, order=0)
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # --- ChannelTech -------------------------------------------------------

    def write_frame(self, frame: Frame) -> None:
        """The dialplan hears ``frame``; Echo() sends it straight back."""
        if self._generators_on_both_halves:
            return
        if self._deferring:
            # Answer() puts the frame that ended its wait back on the channel, and
            # later frames queue behind it, so the next application (Echo) gets them.
            self._deferred.append(frame)
        self._heard.set()
        if self.echo:
            self.channel.read(frame)

    def write_dtmf(self, digit: str, duration_ms: int) -> None:
        """Echo() returns DTMF too; other applications ignore it."""
        if self.echo:
            self.channel.read_dtmf_end(digit, duration_ms)

    def close(self) -> None:
        """Stop the dialplan (the channel is hanging up)."""
        self._closed = True
        self.clock.remove(self._ticker)
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    # --- running -----------------------------------------------------------

    def start(self, program: Program) -> None:
        """Run ``program`` in the background; when it returns the far end hangs up."""
        self._task = asyncio.get_running_loop().create_task(
            self._run(program), name=f"dialplan-{self.dialplan_channel.name}"
        )

    async def _run(self, program: Program) -> None:
        try:
            await program(self)
        except asyncio.CancelledError:
            return
        except Exception:
            log.exception("dialplan of %s failed", self.dialplan_channel.name)
        if not self._closed and self.on_finished is not None:
            self.on_finished()

    @property
    def _generators_on_both_halves(self) -> bool:
        """Playtones here (a generator on ``;2``) while a generator writes to ``;1``.

        ``main/core_unreal.c`` (``unreal_queue_frame``) passes no voice frame between
        the halves of a Local pair while both have a generator: with ARI's silence
        generator on the call, its far end's Playtones is not heard, nor is the
        call heard by it.
        """
        return (
            self._tone is not None
            and self._tone_is_generator
            and self.dialplan_channel is not self.channel
            and self.channel.generating
        )

    def _tick(self) -> None:
        if self._tone is not None and not self.in_digit and not self._closed:
            pcm = self._tone.next_frame()
            if self._generators_on_both_halves:
                return
            self.channel.read(self._to_native.convert(Frame(AudioFormat.SLIN, pcm)))

    # --- dialplan applications ----------------------------------------------

    async def app(self, name: str, data: str = "") -> None:
        """Move to the next priority running application ``name(data)``."""
        dp = self.dialplan_channel.dialplan
        dp.priority += 1
        dp.app_name, dp.app_data = name, data
        if self.on_app is not None:
            self.on_app(self.dialplan_channel)

    async def answer(self) -> None:
        """``Answer()``: return at the first frame heard, or after 500 ms."""
        self._deferring = True
        heard = asyncio.ensure_future(self._heard.wait())
        timeout = asyncio.ensure_future(self.clock.wait_ticks(_ticks(ANSWER_WAIT_MS)))
        try:
            await asyncio.wait({heard, timeout}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            heard.cancel()
            timeout.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(heard, timeout, return_exceptions=True)

    def start_echo(self) -> None:
        """``Echo()``: from now on send back what is heard, starting with deferred frames."""
        self.echo = True
        self._deferring = False
        deferred, self._deferred = self._deferred, []
        for frame in deferred:
            self.channel.read(frame)

    def discard_deferred(self) -> None:
        """Applications other than Echo() just read and drop the deferred frame."""
        self._deferring = False
        self._deferred.clear()

    def play_tones(
        self,
        *frequencies: float,
        amplitude: int = PLAYTONES_AMPLITUDE,
        generator: bool = True,
    ) -> None:
        """``Playtones(f1+f2...)``: start a steady tone (runs until stopped).

        Args:
            frequencies: The tone's components.
            amplitude: Peak amplitude of each.
            generator: Whether Asterisk plays it with a channel generator (Playtones
                does; ``Playback`` of a file does not).
        """
        self._tone = ToneGenerator(
            frequencies, self.channel.native_format.sample_rate, amplitude=amplitude
        )
        self._tone_is_generator = generator

    def stop_tones(self) -> None:
        """``StopPlaytones()``."""
        self._tone = None

    async def wait(self, seconds: float) -> None:
        """``Wait(seconds)``."""
        await self.clock.wait_ticks(_ticks(seconds * 1000))

    async def send_dtmf(
        self,
        digits: str,
        between_ms: int = SENDDTMF_BETWEEN_MS,
        duration_ms: int = SENDDTMF_DURATION_MS,
    ) -> None:
        """``SendDTMF(digits,between,duration)``: no audio while a digit is down."""
        for digit in digits:
            await self.clock.wait_ticks(_ticks(between_ms))
            self.in_digit = True
            await self.clock.wait_ticks(_ticks(duration_ms))
            self.in_digit = False
            self.channel.read_dtmf_end(digit, duration_ms)


class Playback:
    """``Playback()`` run by a channel's own dialplan: a frame *written* to it every 20 ms.

    Unlike a far end's Playtones (frames the channel reads), these frames pass the
    channel's write path and so its audio hooks: a snoop's whisper is mixed into them.
    With ``frequency`` None it plays silence (``Playback(silence/10)`` in a loop).
    """

    def __init__(
        self,
        channel: Channel,
        clock: MediaClock,
        frequency: float | None = None,
        amplitude: int = PROMPT_AMPLITUDE,
    ) -> None:
        """Start playing on ``channel``; stops by itself when the channel hangs up."""
        self.channel = channel
        self.clock = clock
        rate = channel.native_format.sample_rate
        self._format = AudioFormat.SLIN16 if rate >= 16000 else AudioFormat.SLIN
        self._tone = (
            ToneGenerator((frequency,), self._format.sample_rate, amplitude)
            if frequency is not None
            else None
        )
        self._silence = bytes(self._format.frame_bytes)
        self._handle: int | None = clock.add(self._tick, order=0)
        channel.on_hangup.append(self.stop)

    def _tick(self) -> None:
        if self.channel.hung_up:
            self.stop()
            return
        pcm = self._tone.next_frame() if self._tone is not None else self._silence
        self.channel.write(Frame(self._format, pcm))

    def stop(self) -> None:
        """Stop playing."""
        if self._handle is not None:
            self.clock.remove(self._handle)
            self._handle = None


async def _tone(r: DialplanRunner, frequency: float, wait: float) -> None:
    await r.answer()
    r.discard_deferred()
    await r.app("PlayTones", f"{frequency:g}")
    r.play_tones(frequency)
    await r.app("Wait", f"{wait:g}")
    await r.wait(wait)


async def ext_tone(r: DialplanRunner) -> None:
    """``tone``: Answer, Playtones(440), Wait(60)."""
    await _tone(r, 440, 60)


async def ext_tone880(r: DialplanRunner) -> None:
    """``tone880``: Answer, Playtones(880), Wait(60)."""
    await _tone(r, 880, 60)


async def ext_echo(r: DialplanRunner) -> None:
    """``echo``: Answer, Echo()."""
    await r.answer()
    await r.app("Echo", "")
    r.start_echo()
    await asyncio.Event().wait()


async def ext_dtmf(r: DialplanRunner) -> None:
    """``dtmf``: Answer, Playtones(440), Wait(0.4), SendDTMF(12#,100,120), ..."""
    await r.answer()
    r.discard_deferred()
    await r.app("PlayTones", "440")
    r.play_tones(440)
    await r.app("Wait", "0.4")
    await r.wait(0.4)
    await r.app("SendDTMF", "12#,100,120")
    await r.send_dtmf("12#")
    await r.app("PlayTones", "440")
    r.play_tones(440)
    await r.app("Wait", "60")
    await r.wait(60)


async def ext_short(r: DialplanRunner) -> None:
    """``short``: Answer, Playtones(440), Wait(1), Hangup."""
    await _tone(r, 440, 1)
    await r.app("Hangup", "")


async def ext_silent(r: DialplanRunner) -> None:
    """``silent``/``wait``: Answer, Wait(120): a leg that sends nothing."""
    await r.answer()
    r.discard_deferred()
    await r.app("Wait", "120")
    await r.wait(120)


async def ext_playback(r: DialplanRunner) -> None:
    """``playback``: Answer, then the 500 Hz prompt in a loop (what the far end sends)."""
    await r.answer()
    r.discard_deferred()
    await r.app("Playback", "mediastream-prompt")
    r.play_tones(PROMPT_HZ, amplitude=PROMPT_AMPLITUDE, generator=False)
    await asyncio.Event().wait()


EXTENSIONS: dict[str, Program] = {
    "tone": ext_tone,
    "tone880": ext_tone880,
    "echo": ext_echo,
    "dtmf": ext_dtmf,
    "short": ext_short,
    "silent": ext_silent,
    "wait": ext_silent,
    "playback": ext_playback,
}
"""Extensions of context ``default`` that ``Local/<exten>@default`` can dial."""

OWN_EXTENSIONS: dict[str, tuple[str, str, float | None]] = {
    "wait": ("Wait", "120", None),
    "silent": ("Wait", "120", None),
    "playback": ("Playback", "mediastream-prompt", PROMPT_HZ),
}
"""What a call originated into extension ``<key>`` runs itself: the dialplan application
and its data, and the prompt it writes to the call (None: nothing is written)."""
