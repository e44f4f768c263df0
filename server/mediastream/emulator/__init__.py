"""A built-in Asterisk 23.4.1 emulator: ARI, externalMedia (RTP, AudioSocket, WebSocket).

It speaks the same protocols as a real Asterisk, as recorded in
``shared/fixtures/asterisk-23.4.1``, so the gateway runs unchanged against either::

    emulator = Emulator(EmulatorConfig(port=0))
    await emulator.start()
    ... emulator.ari_url ...   # http://127.0.0.1:<port>/ari
    await emulator.stop()

Start-up creates demo calls that run dialplan outside Stasis (reach them by snoop)
and a demo conference bridge; see :mod:`mediastream.emulator.demo`.

Hooks for tests (fault injection), on :class:`Emulator`:

* ``add_call(kind)``: a new Up call outside Stasis (``tone``, ``tone880``, ``echo``,
  ``dtmf``); returns its id;
* ``hangup(channel_id, cause=16)``: the far end hangs up (``ChannelHangupRequest``
  without ``soft``);
* ``end_conference(bridge_id)``: the bridge is destroyed, its non-Stasis members hang up;
* ``send_dtmf(channel_id, digits)``: the caller presses keys (audio pauses per digit);
* ``kill()``: vanish as a ``kill -9``'d Asterisk (no hangup events, every socket drops);
  ``stop()`` is ``core stop now`` (soft hangups with cause 4 first);
* ``channel_ids()``, and ``pbx`` / ``clock`` for white-box checks (``clock.tick()``
  fast-forwards the 20 ms clock).

Modules: ``ari`` (HTTP routes, auth, websockets), ``events`` (event shapes and
delivery), ``pbx`` (channel/bridge lifecycles), ``model`` (channels, frames),
``bridge`` (simple_bridge and softmix), ``media`` (clock, tones, mixing),
``dialplan`` (the recorded extensions), ``snoop``, ``rtp``, ``audiosocket``,
``websocket_channel`` (transports), ``demo``, ``server`` (:class:`Emulator`).
"""

from mediastream.emulator.demo import CONFERENCE_ID, DTMF_CALL_ID, ECHO_CALL_ID, TONE_CALL_ID
from mediastream.emulator.server import Emulator, EmulatorConfig

__all__ = [
    "CONFERENCE_ID",
    "DTMF_CALL_ID",
    "ECHO_CALL_ID",
    "TONE_CALL_ID",
    "Emulator",
    "EmulatorConfig",
]
