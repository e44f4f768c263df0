"""Named regression tests for what fuzzing found, parser by parser (the inputs are also in
the corpus as ``found-*``; these say in words what each one was)."""

from __future__ import annotations

import pytest

from mediastream.config import ConfigError, parse
from mediastream.core import wschannel
from mediastream.errors import InvalidArgument
from mediastream.shim import twilio, voipbin

DEEP = "[" * 20_000


@pytest.mark.parametrize(
    "argv",
    [
        ["--keepalive-time-s=nan"],  # passed every check, then int(nan) failed at start-up
        ["--resume-grace-s=inf"],
        ["--drain-timeout-s=1e400"],  # float() reads it as inf
        ["--keepalive-timeout-s=3000000"],  # over gRPC's 32-bit milliseconds: start-up failed
        ["--audiosocket-port=²"],  # isdigit() but not int(): ValueError
        ["--grpc-listen=127.0.0.1:²"],
        ["--ws-listen=127.0.0.1:³"],
        ["--metrics-listen=127.0.0.1:¹"],
        ["--ari-url=http://[::1"],  # urlparse raised ValueError
    ],
)
def test_bad_settings_are_config_errors(argv: list[str]) -> None:
    with pytest.raises(ConfigError):
        parse(argv, environ={})


def test_deep_json_event_is_a_wschannel_error() -> None:
    with pytest.raises(wschannel.WsChannelError):
        wschannel.parse_event('{"event":"X","a":' + DEEP)


def test_command_with_a_lone_surrogate_is_a_wschannel_error() -> None:
    with pytest.raises(wschannel.WsChannelError):
        wschannel.parse_command("MARK_MEDIA \ud800", json_format=False)


def test_deep_json_from_a_websocket_client_is_malformed() -> None:
    with pytest.raises(InvalidArgument) as err:
        voipbin.parse_control(DEEP)
    assert err.value.reason == "MALFORMED_MESSAGE"
    with pytest.raises(InvalidArgument) as err:
        twilio._parse(DEEP)
    assert err.value.reason == "MALFORMED_MESSAGE"


@pytest.mark.parametrize("direction", ["[]", "{}", "7", "null"])
def test_set_media_direction_of_another_type_is_a_wschannel_error(direction: str) -> None:
    # A list direction raised TypeError (unhashable) from the membership test.
    text = f'{{"command":"SET_MEDIA_DIRECTION","direction":{direction}}}'
    with pytest.raises(wschannel.WsChannelError) as err:
        wschannel.parse_command(text, json_format=True)
    assert err.value.reply is not None and "is not a valid direction" in err.value.reply
