"""Playout (jitter) buffer for RTP audio arriving from Asterisk.

Tick-driven: :meth:`JitterBuffer.push` every packet as it arrives, and call
:meth:`JitterBuffer.pop` (or :meth:`JitterBuffer.pop_frame`) once per frame
period (every 20 ms) from the consumer's clock. The buffer never reads a clock
itself.

Ordering is by sequence number, unwrapped across the 16-bit wrap against the
highest sequence number seen so far. The buffer is a window of ``capacity``
sequence numbers starting at the next one to play, so it can never hold more than
``capacity`` packets:

* a packet older than the next to play is *late* (or a *duplicate* if it was
  played) and is dropped;
* a packet already buffered is a *duplicate* and is dropped;
* a packet arriving below the highest seen is *reordered* (and kept);
* a packet beyond the window slides the window forward: the oldest buffered
  packets are dropped (*overflow*) and playback jumps ahead, which bounds latency.

Playout starts once ``prefetch`` packets are buffered, or once the first buffered
packet has waited ``prefetch`` ticks, so packets reordered by up to ``prefetch``
frames still play in order (until the first frame plays, a packet older than the
first one received is accepted and goes first). When the packet due is missing
but later ones are buffered it is *lost* and concealed; when the buffer is empty
:meth:`JitterBuffer.pop` returns None (an *underrun*) and playout re-buffers,
skipping (not concealing) whatever went missing meanwhile.

Restarts (*resyncs*): a new SSRC drops what is buffered and starts over with the
new stream; so does a jump ahead that leaves nothing buffered, and a run of more
than ``max(capacity, 16)`` consecutive sequence numbers all arriving late (a
sender that restarted its numbering behind us).

Concealment: with a known ``fmt`` the previous frame is repeated at -6 dB, then
-12 dB, and silence after that (``max_repeats``); without ``fmt`` concealment is
the ``silence`` frame. Linear RTP payloads are big-endian (network order), as
Asterisk sends them.

Sender pauses: Asterisk stops sending during a DTMF digit and resumes with a
contiguous sequence number but a timestamp advanced by the real pause. With
``fill_gaps=True`` (and a known frame duration) :meth:`pop` plays silence for the
pause, keeping the output time-aligned; timestamps are compared modulo 2**32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mediastream.core.formats import AudioFormat
from mediastream.core.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from mediastream.core.rtp import RtpPacket, seq_distance, ts_distance

__all__ = ["JitterBuffer", "JitterStats", "PlayoutFrame"]

_RESTART_RUN = 16
"""Consecutive late sequence numbers (at least) that mean the sender started over."""


@dataclass(slots=True)
class JitterStats:
    """What happened to the packets pushed and the frames popped.

    Attributes:
        received: Packets pushed.
        played: Received packets played out.
        reordered: Packets that arrived after a higher sequence number (still played).
        duplicates: Packets dropped because the same sequence number was buffered
            or already played.
        late: Packets dropped because their turn had passed.
        lost: Sequence numbers whose turn came with no packet (concealed or skipped).
        concealed: Frames synthesised for lost packets.
        overflow: Buffered packets dropped to make room when the window slid ahead.
        underruns: Ticks where nothing was buffered while playing.
        resyncs: Restarts: a new SSRC, a jump ahead leaving nothing buffered, or more
            than ``max(capacity, 16)`` consecutive sequence numbers arriving late (a
            sender that restarted its numbering behind us).
        gap_frames: Silent frames played for sender pauses (``fill_gaps``).
    """

    received: int = 0
    played: int = 0
    reordered: int = 0
    duplicates: int = 0
    late: int = 0
    lost: int = 0
    concealed: int = 0
    overflow: int = 0
    underruns: int = 0
    resyncs: int = 0
    gap_frames: int = 0


@dataclass(frozen=True, slots=True)
class PlayoutFrame:
    """One frame out of the buffer.

    Attributes:
        payload: The audio, as carried by RTP.
        sequence_number: RTP sequence number of the slot (16-bit).
        timestamp: RTP timestamp; None for a synthesised frame.
        concealed: True if the packet was lost and this frame was synthesised.
        gap: True if this is silence filling a sender pause.
        marker: The packet's marker bit.
    """

    payload: bytes
    sequence_number: int
    timestamp: int | None
    concealed: bool = False
    gap: bool = False
    marker: bool = False


class JitterBuffer:
    """Reorders, de-duplicates and paces RTP packets into one frame per tick.

    See the module docstring for the policy.

    Attributes:
        capacity: Largest number of packets held (the window size).
        frame_bytes: Bytes of one frame (the size of a silence frame).
        prefetch: Packets to collect before (re)starting playout.
        stats: Counters.
    """

    def __init__(
        self,
        capacity: int,
        frame_bytes: int,
        *,
        prefetch: int = 2,
        fmt: AudioFormat | None = None,
        silence: bytes | None = None,
        max_repeats: int = 2,
        samples_per_frame: int | None = None,
        fill_gaps: bool = False,
    ) -> None:
        """Create an empty buffer.

        Args:
            capacity: Window size in packets (>= 1).
            frame_bytes: Bytes in one frame.
            prefetch: Packets (or ticks of waiting) before playout starts; 1..capacity.
            fmt: The payload format; enables attenuated repeats and the right silence.
            silence: Silence frame when ``fmt`` is None (default: ``frame_bytes`` zeros).
            max_repeats: Lost frames in a row concealed by a repeat before silence.
            samples_per_frame: RTP timestamp units per frame (default: from ``fmt``).
            fill_gaps: Play silence over sender pauses detected from timestamps.

        Raises:
            ValueError: If a size is out of range.
        """
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if frame_bytes < 1:
            raise ValueError(f"frame_bytes must be >= 1, got {frame_bytes}")
        if not 1 <= prefetch <= capacity:
            raise ValueError(f"prefetch must be 1..capacity ({capacity}), got {prefetch}")
        self.capacity = capacity
        self.frame_bytes = frame_bytes
        self.prefetch = prefetch
        self.stats = JitterStats()
        self._fmt = fmt
        if fmt is not None:
            self._silence = _fill(fmt, frame_bytes)
        else:
            self._silence = silence if silence is not None else bytes(frame_bytes)
        self._max_repeats = max_repeats if fmt is not None else 0
        if samples_per_frame is None and fmt is not None:
            samples_per_frame = frame_bytes // fmt.sample_width
        self._samples_per_frame = samples_per_frame
        self._fill_gaps = fill_gaps and samples_per_frame is not None
        self.reset()

    def reset(self) -> None:
        """Drop everything and wait for a new stream (stats are kept)."""
        self._buf: dict[int, RtpPacket] = {}
        self._played: set[int] = set()
        self._ssrc: int | None = None
        self._next: int | None = None
        self._highest = 0
        self._playing = False
        self._waited = 0
        self._late_run = 0
        self._late_last = 0
        self._consumed = False
        self._last_payload: bytes | None = None
        self._last_ext: int | None = None
        self._last_ts: int | None = None
        self._repeats = 0
        self._gap_left = 0
        self._gap_checked: int | None = None

    def __len__(self) -> int:
        """Packets buffered now."""
        return len(self._buf)

    @property
    def playing(self) -> bool:
        """Whether playout is running (False while buffering)."""
        return self._playing

    def push(self, packet: RtpPacket) -> None:
        """Add a received packet.

        Args:
            packet: The packet; its payload is played as is.
        """
        st = self.stats
        st.received += 1
        if self._next is None or packet.ssrc != self._ssrc:
            if self._next is not None:
                st.resyncs += 1
                st.overflow += len(self._buf)
                self.reset()
            self._start(packet, packet.sequence_number)
            return
        ext = self._highest + seq_distance(packet.sequence_number, self._highest & 0xFFFF)
        nxt = self._next
        if ext < nxt and not self._consumed and self._highest - ext < self.capacity:
            # Nothing played yet: an earlier packet that arrived second still goes first.
            self._next = nxt = ext
        if ext < nxt:
            if ext in self._played:
                st.duplicates += 1
                return
            st.late += 1
            # Stragglers arrive scattered; a restarted sender counts up one by one.
            consecutive = self._late_run and ext == self._late_last + 1
            self._late_run = self._late_run + 1 if consecutive else 1
            self._late_last = ext
            if self._late_run > max(self.capacity, _RESTART_RUN):
                # The sender restarted its sequence far behind us: follow it.
                st.late -= 1
                st.resyncs += 1
                st.overflow += len(self._buf)
                self.reset()
                self._start(packet, packet.sequence_number)
            return
        self._late_run = 0
        buf = self._buf
        if ext in buf:
            st.duplicates += 1
            return
        if ext < self._highest:
            st.reordered += 1
        else:
            self._highest = ext
        if ext - nxt >= self.capacity:
            self._slide(ext)
        buf[ext] = packet

    def _start(self, packet: RtpPacket, ext: int) -> None:
        self._ssrc = packet.ssrc
        self._next = ext
        self._highest = ext
        self._buf[ext] = packet

    def _slide(self, ext: int) -> None:
        # Keep `ext` as the last slot of the window; older buffered packets go.
        floor = ext - self.capacity + 1
        buf = self._buf
        dropped = [k for k in buf if k < floor]
        for k in dropped:
            del buf[k]
        self.stats.overflow += len(dropped)
        assert self._next is not None
        if buf:
            new_next = min(buf)
            # Slots jumped over that never arrived count as lost (not concealed).
            self.stats.lost += new_next - self._next - len(dropped)
            self._next = new_next
        else:
            # Nothing left to bridge: a jump in the stream, not a loss.
            self.stats.resyncs += 1
            self._next = ext

    def pop(self) -> bytes | None:
        """Take the frame for this tick.

        Returns:
            The payload to play (received, concealed or gap silence), or None while
            buffering or on underrun (the caller plays its own silence or nothing).
        """
        frame = self.pop_frame()
        return None if frame is None else frame.payload

    def pop_frame(self) -> PlayoutFrame | None:
        """Like :meth:`pop`, with the frame's sequence number, timestamp and kind."""
        buf = self._buf
        if not self._playing:
            if not buf:
                self._waited = 0
                return None
            self._waited += 1
            if len(buf) < self.prefetch and self._waited < self.prefetch:
                return None
            self._playing = True
            assert self._next is not None
            head = min(buf)
            if head > self._next:
                # Whatever went missing while we were starved is skipped, not concealed.
                self.stats.lost += head - self._next
                self._next = head
        nxt = self._next
        assert nxt is not None
        packet = buf.get(nxt)
        if packet is not None:
            if self._fill_gaps and self._gap_checked != nxt:
                self._gap_checked = nxt
                self._gap_left = self._pause_frames(packet, nxt)
            if self._gap_left:
                self._gap_left -= 1
                self.stats.gap_frames += 1
                return PlayoutFrame(self._silence, nxt & 0xFFFF, None, gap=True)
            del buf[nxt]
            self._next = nxt + 1
            self._consumed = True
            self._remember(nxt)
            self.stats.played += 1
            self._last_payload = packet.payload
            self._last_ext = nxt
            self._last_ts = packet.timestamp
            self._repeats = 0
            return PlayoutFrame(
                packet.payload, packet.sequence_number, packet.timestamp, marker=packet.marker
            )
        if buf:
            self._next = nxt + 1
            self._consumed = True
            self.stats.lost += 1
            self.stats.concealed += 1
            return PlayoutFrame(self._conceal(), nxt & 0xFFFF, None, concealed=True)
        self._playing = False
        self._waited = 0
        self.stats.underruns += 1
        return None

    def pop_ready(self, reorder_window: int = 2) -> list[PlayoutFrame]:
        """Packet-driven playout, for a consumer without a 20 ms clock of its own.

        Call after each :meth:`push`. Every frame whose packet is here comes out
        at once, in order, so an in-order stream gets no added delay. When the
        next packet is missing, its later packets wait until ``reorder_window``
        of them are buffered; then the missing one is taken as lost and
        concealed, and a straggler arriving after that is dropped as late.
        Sender pauses (``fill_gaps``) are not filled: with no clock there is no
        silence to time.

        Args:
            reorder_window: Later packets to hold while waiting for a missing one.

        Returns:
            The frames to play now, in order.
        """
        out: list[PlayoutFrame] = []
        buf = self._buf
        if self._next is None:
            return out
        self._playing = True
        while buf and (self._next in buf or len(buf) >= reorder_window):
            frame = self.pop_frame()
            if frame is None:
                break
            out.append(frame)
        return out

    def play_next(self, ssrc: int, sequence_number: int, timestamp: int, payload: bytes) -> bool:
        """Packet-driven fast path: play a packet that is exactly the one due.

        Equivalent to :meth:`push` then :meth:`pop_ready` when playout is running,
        nothing is buffered and the packet is the next of the same stream, which
        is every packet of an in-order stream; it builds no :class:`RtpPacket` or
        :class:`PlayoutFrame` for it. Otherwise it changes nothing.

        Args:
            ssrc: The packet's SSRC.
            sequence_number: Its 16-bit sequence number.
            timestamp: Its RTP timestamp.
            payload: Its payload, recorded for concealing a later loss.

        Returns:
            True if the caller plays ``payload`` now; False if the packet must go
            through :meth:`push` and :meth:`pop_ready`.
        """
        nxt = self._next
        if (
            nxt is None
            or self._buf
            or not self._playing
            or ssrc != self._ssrc
            or sequence_number != nxt & 0xFFFF
            or self._highest != nxt - 1
            or self._fill_gaps
        ):
            return False
        st = self.stats
        st.received += 1
        st.played += 1
        self._highest = nxt
        self._next = nxt + 1
        self._late_run = 0
        self._consumed = True
        self._remember(nxt)
        self._last_payload = payload
        self._last_ext = nxt
        self._last_ts = timestamp
        self._repeats = 0
        return True

    def _pause_frames(self, packet: RtpPacket, ext: int) -> int:
        if self._last_ts is None or self._last_ext is None or self._samples_per_frame is None:
            return 0
        spf = self._samples_per_frame
        extra = ts_distance(packet.timestamp, self._last_ts) - (ext - self._last_ext) * spf
        if extra < spf:
            return 0
        # A pause longer than the window is a new talk spurt, not something to replay.
        return min(extra // spf, self.capacity)

    def _remember(self, ext: int) -> None:
        played = self._played
        played.add(ext)
        if len(played) > 4 * self.capacity:
            floor = ext - 2 * self.capacity
            self._played = {k for k in played if k >= floor}

    def _conceal(self) -> bytes:
        self._repeats += 1
        last = self._last_payload
        if last is None or self._repeats > self._max_repeats or self._fmt is None:
            return self._silence
        return _attenuate(self._fmt, last, self._repeats)


def _fill(fmt: AudioFormat, n: int) -> bytes:
    byte = {AudioFormat.ULAW: b"\xff", AudioFormat.ALAW: b"\xd5"}.get(fmt, b"\x00")
    return byte * n


def _attenuate(fmt: AudioFormat, payload: bytes, halvings: int) -> bytes:
    if fmt is AudioFormat.ULAW:
        pcm = np.frombuffer(ulaw_decode(payload), dtype="<i2").astype(np.int16) >> halvings
        return ulaw_encode(pcm.astype("<i2").tobytes())
    if fmt is AudioFormat.ALAW:
        pcm = np.frombuffer(alaw_decode(payload), dtype="<i2").astype(np.int16) >> halvings
        return alaw_encode(pcm.astype("<i2").tobytes())
    usable = len(payload) & ~1
    samples = np.frombuffer(payload[:usable], dtype=">i2").astype(np.int16) >> halvings
    return samples.astype(">i2").tobytes()
