"""Snoop channels (``POST /channels/{id}/snoop``), as ``res_stasis_snoop`` does them.

A :class:`Snoop` is two things at once:

* an audio hook on the snooped channel: it copies what the channel *sends*
  (``in``, frames read from it) and what it *hears* (``out``, frames written to
  it), and mixes whisper audio into those paths;
* the endpoint of the snoop channel: every 20 ms it makes the snoop channel read
  one frame of slin at the snooped channel's rate (the spied directions summed at
  full level, silence when there is nothing), and frames written to the snoop
  channel become the whisper audio.

The spy copy is taken *before* the whisper is mixed in, so a client never hears
its own whisper on the spy side.

As in Asterisk (``main/audiohook.c``, the audiohook write paths of
``main/channel.c``), whisper is mixed only into frames that pass the channel
anyway: a call that nothing is written to (alone in Stasis, alone in a bridge,
bridged to a silent leg, in a dialplan ``Wait()``) hears none of it. What keeps
frames flowing to such a call is the platform's business (a playback, a talking
peer, ARI's silence generator). Whisper that finds no frame to ride on is
dropped once more than :data:`_MAX_BUFFER_FRAMES` are waiting.

Hanging up a snoop channel does not end at once either: Asterisk's
``ast_audiohook_detach`` waits until the snooped channel's audio path has seen the
hook shut down, which happens when the next frame passes that channel (read or
written) or when it hangs up. Until then the snoop channel stays listed, out of
Stasis (:attr:`Snoop.detaching`; the PBX destroys it on :attr:`Snoop.on_detached`).
"""

from __future__ import annotations

from collections.abc import Callable

from mediastream.core.formats import FRAME_MS, AudioFormat
from mediastream.emulator.media import MediaClock, clip_to_pcm, pcm_array
from mediastream.emulator.model import Channel, FormatConverter, Frame

__all__ = ["DIRECTIONS", "Snoop"]

DIRECTIONS = frozenset({"none", "both", "out", "in"})
"""Values of the ``spy`` and ``whisper`` parameters."""

# Unplayed audio kept per direction; more than this is old and dropped.
_MAX_BUFFER_FRAMES = 5


class _Buffer:
    """Audio waiting in one direction, at the snoop's rate."""

    def __init__(self, fmt: AudioFormat) -> None:
        self.converter = FormatConverter(fmt)
        self.data = bytearray()
        self.limit = _MAX_BUFFER_FRAMES * fmt.frame_bytes

    def append(self, frame: Frame) -> None:
        self.data += self.converter.convert(frame).payload
        if len(self.data) > self.limit:
            del self.data[: len(self.data) - self.limit]

    def take(self, nbytes: int) -> bytes:
        chunk = bytes(self.data[:nbytes])
        del self.data[:nbytes]
        return chunk


class Snoop:
    """Spy and whisper on one channel; the tech of the snoop channel.

    Attributes:
        target: The snooped channel.
        spy: ``none``, ``in``, ``out`` or ``both``.
        whisper: ``none``, ``in``, ``out`` or ``both``.
        channel: The snoop channel (set by whoever creates it).
    """

    def __init__(self, target: Channel, spy: str, whisper: str, clock: MediaClock) -> None:
        """Attach to ``target`` and start the 20 ms timer."""
        self.target = target
        self.spy = spy
        self.whisper = whisper
        self.clock = clock
        self.channel: Channel | None = None
        self.format = (
            AudioFormat.SLIN16 if target.native_format.sample_rate >= 16000 else (AudioFormat.SLIN)
        )
        self._samples = self.format.sample_rate * FRAME_MS // 1000
        self._spy_in = _Buffer(self.format)
        self._spy_out = _Buffer(self.format)
        self._whisper_in = bytearray()
        self._whisper_out = bytearray()
        self._mix_in = FormatConverter(self.format)
        self._mix_out = FormatConverter(self.format)
        self._whisper_converter = FormatConverter(self.format)
        self.detaching = False
        self.on_detached: Callable[[], None] | None = None
        target.hooks.append(self)
        self._ticker = clock.add(self._tick, order=2)

    # --- hook on the snooped channel ------------------------------------------

    def on_read(self, frame: Frame) -> Frame:
        """A frame the snooped channel sends."""
        if self.detaching:
            self._detached()
            return frame
        if self.spy in ("in", "both"):
            self._spy_in.append(frame)
        if self.whisper in ("in", "both") and self._whisper_in:
            return self._mix_whisper(frame, self._whisper_in, self._mix_in)
        return frame

    def on_write(self, frame: Frame) -> Frame:
        """A frame the snooped channel hears."""
        if self.detaching:
            self._detached()
            return frame
        if self.spy in ("out", "both"):
            self._spy_out.append(frame)
        if self.whisper in ("out", "both") and self._whisper_out:
            return self._mix_whisper(frame, self._whisper_out, self._mix_out)
        return frame

    def _mix_whisper(self, frame: Frame, pending: bytearray, conv: FormatConverter) -> Frame:
        pcm = conv.convert(frame).payload
        n = len(pcm) // 2
        whisper = bytes(pending[: 2 * n])
        del pending[: 2 * n]
        mixed = pcm_array(pcm, n) + pcm_array(whisper, n)
        return Frame(self.format, clip_to_pcm(mixed), frame.timing_ms)

    # --- tech of the snoop channel --------------------------------------------

    def write_frame(self, frame: Frame) -> None:
        """Audio for the snoop channel: the whisper."""
        pcm = self._whisper_converter.convert(frame).payload
        limit = _MAX_BUFFER_FRAMES * self.format.frame_bytes
        for direction, buffer in (("in", self._whisper_in), ("out", self._whisper_out)):
            if self.whisper in (direction, "both"):
                buffer += pcm
                if len(buffer) > limit:
                    del buffer[: len(buffer) - limit]

    def write_dtmf(self, digit: str, duration_ms: int) -> None:
        """Audiohooks carry no DTMF."""

    def close(self) -> None:
        """Stop the timer and ask to be detached from the snooped channel.

        The detach completes on the next frame passing the snooped channel, or when it
        hangs up (:meth:`target_gone`); :attr:`detaching` says it has not yet.
        """
        self.clock.remove(self._ticker)
        if self.target.hung_up or self not in self.target.hooks:
            self._detached()
        else:
            self.detaching = True

    def target_gone(self) -> None:
        """The snooped channel hangs up: its audiohooks are all detached."""
        self._detached()

    def _detached(self) -> None:
        self.detaching = False
        if self in self.target.hooks:
            self.target.hooks.remove(self)
        callback, self.on_detached = self.on_detached, None
        if callback is not None:
            callback()

    def _tick(self) -> None:
        nbytes = 2 * self._samples
        if self.spy == "none" or self.channel is None:
            return
        total = pcm_array(b"", self._samples)
        if self.spy in ("in", "both"):
            total = total + pcm_array(self._spy_in.take(nbytes), self._samples)
        if self.spy in ("out", "both"):
            total = total + pcm_array(self._spy_out.take(nbytes), self._samples)
        self.channel.read(Frame(self.format, clip_to_pcm(total)))
