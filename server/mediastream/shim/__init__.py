"""WebSocket endpoints: VoIPBIN's media_stream, a Twilio Media Streams dialect, a web page.

A thin adapter over the stream core, like the gRPC one: it validates
requests into `StreamSpec`, relays `Stream.output()` to the socket and the
socket's messages to the stream, and maps the error tree in one place
(`mediastream.shim.errors`). docs/websocket.md describes the wire forms.
"""

from mediastream.shim.server import ShimServer

__all__ = ["ShimServer"]
