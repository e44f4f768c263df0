"""A built-in Asterisk 23.4.1 emulator: ARI, externalMedia (RTP, AudioSocket, WebSocket).

It speaks the same protocols as a real Asterisk, as recorded in
``shared/fixtures/asterisk-23.4.1``, so the gateway runs unchanged against either::

    emulator = Emulator(EmulatorConfig(port=0))
    await emulator.start()
    ... emulator.ari_url ...   # http://127.0.0.1:<port>/ari
    await emulator.stop()
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
