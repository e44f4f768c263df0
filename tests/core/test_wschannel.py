"""chan_websocket control messages against every TEXT frame recorded from Asterisk."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mediastream.core.wschannel import (
    MAX_COMMAND_BYTES,
    ControlCommand,
    ControlEvent,
    WsChannelError,
    format_command,
    format_event,
    parse_command,
    parse_event,
)
from tests.asterisk_fixtures import case

CASES = [
    "websocket_slin16",
    "websocket_slin16_json",
    "websocket_json_control",
    "dtmf_websocket_plain",
    "dtmf_websocket_json",
    "roundtrip_websocket_slin16",
]


def texts(name: str, direction: str) -> list[str]:
    return [
        str(w["data"])
        for w in case(f"{name}.json")["websocket"]
        if w.get("type") == "text" and w["dir"] == direction
    ]


def is_json_case(name: str) -> bool:
    return name.endswith("json") or name == "websocket_json_control"


@pytest.mark.parametrize("name", CASES)
def test_every_recorded_event_round_trips_exactly(name: str) -> None:
    events = texts(name, "recv")
    assert events
    for text in events:
        event = parse_event(text)
        assert event.name.isupper()
        assert format_event(event, json_format=text.startswith("{")) == text
        assert text.startswith("{") == is_json_case(name)


@pytest.mark.parametrize("name", CASES)
def test_every_recorded_command_parses(name: str) -> None:
    for text in texts(name, "sent"):
        try:
            cmd = parse_command(text, json_format=is_json_case(name))
        except WsChannelError:
            continue  # the deliberately bad ones, checked below
        assert cmd.name.isupper()
        if cmd.is_known and not cmd.fields:
            assert format_command(cmd, json_format=is_json_case(name)) == text


def test_bad_commands_from_json_control_case() -> None:
    sent = texts("websocket_json_control", "sent")
    outcomes: list[Any] = []
    for text in sent:
        try:
            cmd = parse_command(text, json_format=True)
            outcomes.append(cmd.name if cmd.is_known else ("unknown", cmd.name))
        except WsChannelError as exc:
            outcomes.append(("error", exc.reply))
    assert ("error", "Unable to parse JSON command") in outcomes  # plain GET_STATUS
    assert ("unknown", "NO_SUCH_COMMAND") in outcomes  # no reply at all
    assert ("error", "'sideways' is not a valid direction for SET_MEDIA_DIRECTION.\n") in outcomes
    assert ("error", None) in outcomes  # the 153-byte GET_STATUS, silently ignored
    # ... and the ERROR events Asterisk sent carry exactly those texts.
    errors = [parse_event(t).error_text for t in texts("websocket_json_control", "recv")]
    assert [e for e in errors if e] == [
        "Unable to parse JSON command",
        "'sideways' is not a valid direction for SET_MEDIA_DIRECTION.\n",
    ]


def test_media_start_plain_and_json_agree() -> None:
    (plain,) = [parse_event(t) for t in texts("websocket_slin16", "recv") if "MEDIA_START" in t]
    (js,) = [parse_event(t) for t in texts("websocket_slin16_json", "recv") if "MEDIA_START" in t]
    for ev in (plain, js):
        assert ev.name == "MEDIA_START"
        assert ev.format == "slin16"
        assert ev.optimal_frame_size == 640 and ev.ptime == 20
        assert ev.channel is not None and ev.channel.startswith("WebSocket/INCOMING/0x")
        assert ev.channel_id is not None and ev.connection_id is not None
    assert plain.channel_variables == {}
    assert js.channel_variables == {
        "MEDIA_WEBSOCKET_CONNECTION_ID": js.connection_id,
        "MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE": "640",  # a string here, an int in the event
    }
    assert list(plain.fields) == [k for k in js.fields if k != "channel_variables"]
    assert {k: type(v) for k, v in plain.fields.items()} == {
        k: type(v) for k, v in js.fields.items() if k != "channel_variables"
    }


def test_status_is_typed() -> None:
    status = [parse_event(t) for t in texts("websocket_json_control", "recv") if "STATUS" in t]
    assert [s.queue_length for s in status] == [0, 50, 0, 1000, 798, 0, 1, 3, 4, 0]
    assert [s.queue_full for s in status][3] is True
    assert status[6].get_bool("media_paused") is True
    assert status[7].get_bool("bulk_media") is True
    plain = parse_event(texts("websocket_slin16", "recv")[1])
    assert plain.fields == {
        "channel_id": plain.channel_id,
        "queue_length": 0,
        "xon_level": 800,
        "xoff_level": 900,
        "queue_full": False,
        "bulk_media": False,
        "media_paused": False,
    }


def test_dtmf_plain_and_json_cross_format() -> None:
    plain = [parse_event(t) for t in texts("dtmf_websocket_plain", "recv")[1:]]
    js = texts("dtmf_websocket_json", "recv")[1:]
    assert [e.digit for e in plain] == ["1", "2", "#"]
    for p, j in zip(plain, js, strict=True):
        other_id = parse_event(j).channel_id
        assert other_id is not None
        moved = ControlEvent(p.name, {**p.fields, "channel_id": other_id})
        # JSON puts channel_id first, plain text puts digit first.
        assert format_event(moved, json_format=True) == j
        assert format_event(parse_event(j), json_format=False) == (
            f"DTMF_END digit:{p.digit} channel_id:{other_id}"
        )


def test_plain_forms_of_json_only_fields() -> None:
    cid = "1795515138.1765"
    xoff = parse_event('{"event":"MEDIA_XOFF","channel_id":"1795515138.1765"}')
    assert format_event(xoff, json_format=False) == "MEDIA_XOFF"
    assert parse_event("MEDIA_XON") == ControlEvent("MEDIA_XON", {})
    mark = parse_event(
        f'{{"event":"MEDIA_MARK_PROCESSED","channel_id":"{cid}","correlation_id":"m 1:x"}}'
    )
    assert format_event(mark, json_format=False) == "MEDIA_MARK_PROCESSED m 1:x"
    assert parse_event("MEDIA_MARK_PROCESSED m 1:x").correlation_id == "m 1:x"
    assert format_event(ControlEvent("MEDIA_BUFFERING_COMPLETED", {}), json_format=False) == (
        "MEDIA_BUFFERING_COMPLETED"
    )
    err = ControlEvent("ERROR", {"channel_id": cid, "error_text": "'x' is bad: really.\n"})
    text = format_event(err, json_format=False)
    assert text == f"ERROR channel_id:{cid} error_text:'x' is bad: really.\n"
    assert parse_event(text) == err


def test_json_escapes_like_jansson() -> None:
    ev = ControlEvent("ERROR", {"channel_id": "1", "error_text": "a\x1fb\\u001fc/é\n"})
    text = format_event(ev, json_format=True)
    assert text == '{"event":"ERROR","channel_id":"1","error_text":"a\\u001Fb\\\\u001fc/é\\n"}'
    assert parse_event(text) == ev


@given(
    st.sampled_from(["ERROR", "MEDIA_MARK_PROCESSED", "DTMF_END", "X_CUSTOM"]),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
)
def test_json_events_round_trip_any_text(name: str, value: str) -> None:
    ev = ControlEvent(name, {"channel_id": "7.1", "correlation_id": value})
    assert parse_event(format_event(ev, json_format=True)) == ev


def test_format_command_forms() -> None:
    mark = ControlCommand("MARK_MEDIA", "mark-1")
    assert (
        format_command(mark, json_format=True)
        == '{"command":"MARK_MEDIA","correlation_id":"mark-1"}'
    )
    assert format_command(mark, json_format=False) == "MARK_MEDIA mark-1"
    direction = ControlCommand("SET_MEDIA_DIRECTION", fields={"direction": "in"})
    assert format_command(direction, json_format=True) == (
        '{"command":"SET_MEDIA_DIRECTION","direction":"in"}'
    )
    with pytest.raises(WsChannelError, match="JSON control format"):
        format_command(direction, json_format=False)
    assert parse_command("MARK_MEDIA mark-1", json_format=False) == mark
    assert parse_command("  GET_STATUS \n", json_format=False) == ControlCommand("GET_STATUS")
    assert parse_command(
        '{"command":"SET_MEDIA_DIRECTION","direction":"out"}', json_format=True
    ) == (ControlCommand("SET_MEDIA_DIRECTION", None, {"direction": "out"}))


def test_command_length_limit() -> None:
    ok = ControlCommand("MARK_MEDIA", "x" * (MAX_COMMAND_BYTES - len("MARK_MEDIA ")))
    assert len(format_command(ok, json_format=False)) == MAX_COMMAND_BYTES
    with pytest.raises(WsChannelError, match="over 128 bytes"):
        format_command(ControlCommand("MARK_MEDIA", ok.correlation_id + "y"), json_format=False)
    with pytest.raises(WsChannelError, match="over 128 bytes"):
        format_command(ControlCommand("MARK_MEDIA", "é" * 60), json_format=True)
    with pytest.raises(WsChannelError) as info:
        parse_command("G" * 129, json_format=False)
    assert info.value.reply is None


def test_parse_command_errors() -> None:
    with pytest.raises(WsChannelError) as info:
        parse_command("GET_STATUS", json_format=True)
    assert info.value.reply == "Unable to parse JSON command"
    with pytest.raises(WsChannelError) as info:
        parse_command('{"cmd":"GET_STATUS"}', json_format=True)
    assert info.value.reply is None
    with pytest.raises(WsChannelError):
        parse_command("", json_format=False)
    with pytest.raises(WsChannelError) as info:
        parse_command('{"command":"SET_MEDIA_DIRECTION"}', json_format=True)
    assert info.value.reply is not None and info.value.reply.endswith("SET_MEDIA_DIRECTION.\n")
    with pytest.raises(WsChannelError, match="invalid command name"):
        format_command(ControlCommand("A B"), json_format=True)


def test_parse_event_errors() -> None:
    for bad in ("", "   ", "{not json", '{"no_event":1}', "[1]", "STATUS queue_length"):
        with pytest.raises(WsChannelError):
            parse_event(bad)
