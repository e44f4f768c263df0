"""(Re)write the seed files of tests/fuzz/corpus/ from the Asterisk 23.4.1 recordings.

Run: ``uv run python -m tests.fuzz.seed_corpus`` (needs ../shared/fixtures beside the repo).

Seeds are named ``seed-<what>``; only those are rewritten. ``found-<what>`` files are inputs
that fuzzing found to break a parser (kept for ever, as regression inputs), and files named
by a hash are what atheris added while fuzzing; neither is touched here.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from mediastream._proto import mediastream_pb2 as pb
from mediastream.core import audiosocket
from mediastream.core.rtp import RtpPacket
from tests.asterisk_fixtures import FIXTURES, case, records
from tests.fuzz.targets import SETTINGS, TARGETS, UPLINK_SPECS, WATCHED

CORPUS = Path(__file__).resolve().parent / "corpus"
TONE = "00000000-0000-4000-8000-000000000440"


def _write(target: str, name: str, data: bytes) -> None:
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"seed-{name}").write_bytes(data)


def _bins(suffix: str, contains: str) -> list[str]:
    return sorted(p.name for p in FIXTURES.glob(f"*{suffix}") if contains in p.name)


def seed_rtp() -> None:
    for name in _bins("_asterisk.bin", "rtp"):
        for i, (_, data) in enumerate(records(name)):
            if i in (0, 1, 7):
                _write("rtp", f"{name.removesuffix('.bin')}-{i}", data)
    base = RtpPacket(0, 1, 160, 0xABCDEF, b"\xff" * 160)
    _write("rtp", "csrc", RtpPacket(0, 2, 320, 1, b"\x00" * 4, True, (1, 2, 3)).serialize())
    ext = bytearray(base.serialize())
    ext[0] |= 0x10
    ext[12:12] = b"\xbe\xde\x00\x01abcd"
    _write("rtp", "extension", bytes(ext))
    pad = bytearray(base.serialize() + b"\x00\x00\x03")
    pad[0] |= 0x20
    _write("rtp", "padding", bytes(pad))
    _write("rtp", "short", b"\x80\x00\x00")
    _write("rtp", "version1", b"\x40" + base.serialize()[1:])
    _write("rtp", "pt-telephone-event", RtpPacket(101, 3, 480, 1, b"\x01\x0a\x00\xa0").serialize())


def seed_audiosocket() -> None:
    for name in _bins("_from_asterisk.bin", "audiosocket"):
        stream = b"".join(data for _, data in records(name))[:1200]
        _write("audiosocket", name.removesuffix(".bin"), b"\x07" + stream)
    u = audiosocket.encode_uuid(uuid.UUID(TONE))
    _write(
        "audiosocket",
        "uuid-audio-dtmf-hangup",
        b"\x03"
        + u
        + audiosocket.encode_audio(b"\x00\x01" * 160)
        + audiosocket.encode_dtmf("5")
        + audiosocket.HANGUP,
    )
    _write("audiosocket", "zero-length-audio", b"\x01" + u + b"\x10\x00\x00")
    _write("audiosocket", "unknown-kinds", b"\x02" + b"\x7f\x00\x02hi\xfe\x00\x00\x02\x00\x01x")
    _write("audiosocket", "odd-length-audio", b"\x05" + u + b"\x10\x00\x03abc")
    _write("audiosocket", "error-kind", b"\x00" + u + b"\xff\x00\x01\x04")


def _ws_texts(direction: str) -> list[tuple[str, str]]:
    out = []
    for path in sorted(FIXTURES.glob("*.json")):
        body = json.loads(path.read_text())
        if not isinstance(body, dict) or "websocket" not in body:
            continue
        for i, w in enumerate(body["websocket"]):
            if w.get("type") == "text" and w["dir"] == direction:
                out.append((f"{path.stem}-{i}", str(w["data"])))
    return out


def seed_wschannel() -> None:
    seen: set[str] = set()
    for name, text in _ws_texts("recv"):
        if text not in seen:
            seen.add(text)
            _write("wschannel_event", name, text.encode())
    for name, text in _ws_texts("sent"):
        _write(
            "wschannel_command",
            name,
            (b"\x01" if text.startswith("{") else b"\x00") + text.encode(),
        )
    _write("wschannel_event", "plain-no-colon", b"MEDIA_START connection_id")
    _write("wschannel_event", "json-not-object", b'["MEDIA_START"]')
    _write("wschannel_event", "json-event-not-string", b'{"event":5}')
    _write("wschannel_command", "plain-unknown", b"\x00NOT_A_COMMAND x")
    _write(
        "wschannel_command",
        "json-bad-direction",
        b'\x01{"command":"SET_MEDIA_DIRECTION","direction":7}',
    )


def seed_uplink() -> None:
    from mediastream.core.stream import Encapsulation

    for i, spec in enumerate(UPLINK_SPECS):
        if spec.transport.value != "rtp" or spec.voipbin_rtp:
            continue
        fmt = spec.input_format
        samples = b"\x00\x01" * (fmt.frame_bytes // 2) if fmt.is_linear else b"\xff" * 160
        if spec.encapsulation is Encapsulation.RTP:
            data = RtpPacket(fmt.rtp_payload_type, 1, 0, 1, samples).serialize()
        elif spec.encapsulation is Encapsulation.AUDIOSOCKET:
            data = audiosocket.encode(audiosocket.Kind.AUDIO, samples)
        else:
            data = samples
        name = (
            f"{spec.encapsulation.value}-{fmt.value}-{'voipbin' if spec.uplink_format else 'same'}"
        )
        _write("uplink", name, bytes([i]) + data)


def seed_stream_config() -> None:
    configs = {
        "call": pb.StreamConfig(call_id=TONE, format=pb.AUDIO_FORMAT_SLIN, chunk_ms=100),
        "conference": pb.StreamConfig(
            conference_id=TONE, encapsulation=pb.ENCAPSULATION_RTP, resumable=True
        ),
        "unknown-enums": pb.StreamConfig.FromString(
            pb.StreamConfig(call_id=TONE).SerializeToString()
            + bytes([3 << 3, 99, 4 << 3, 42, 6 << 3, 7, 7 << 3, 9])  # fields 3, 4, 6, 7
        ),
        "bad-id": pb.StreamConfig(call_id="bad id!"),
        "empty": pb.StreamConfig(),
    }
    configs["resume"] = pb.StreamConfig(call_id=TONE)
    configs["resume"].resume.token = "x.y"
    for name, message in configs.items():
        _write("stream_config", name, b"\x01" + message.SerializeToString())
    _write(
        "stream_config",
        "unknown-field",
        b"\x00" + configs["call"].SerializeToString() + b"\xf8\x07\x01",
    )


def seed_shim() -> None:
    requests = {
        "voipbin-rtp": f"c\x00{TONE}\x00encapsulation=rtp&events=json\x00token=abc\x00",
        "format-and-bearer": f"c\x00{TONE}\x00encapsulation=sln&format=slin16\x00\x00Bearer tok",
        "conference": f"f\x00{TONE}\x00encapsulation=audiosocket&accesskey=k\x00\x00",
        "bad-id": "c\x001795515126.1745\x00encapsulation=rtp\x00\x00",
        "bad-encapsulation": f"c\x00{TONE}\x00encapsulation=mediasocket\x00\x00",
    }
    for name, text in requests.items():
        _write("shim_request", name, text.encode())
    sid = "MZ" + "0" * 32
    twilio_messages = {
        "media": '{"event":"media","media":{"payload":"//////////8="}}',
        "mark": f'{{"event":"mark","streamSid":"{sid}","mark":{{"name":"m1"}}}}',
        "clear": '{"event":"clear"}',
        "start": '{"event":"start","start":{}}',
        "bad-base64": '{"event":"media","media":{"payload":"***"}}',
        "media-not-object": '{"event":"media","media":[1]}',
        "not-json": "hello",
    }
    for name, text in twilio_messages.items():
        _write("twilio", name, text.encode())
    controls = {
        "mark": '{"type":"mark","name":"m"}',
        "clear": '{"type":"clear"}',
        "dtmf": '{"type":"dtmf","digits":"12#","duration_ms":120}',
        "dtmf-bool-duration": '{"type":"dtmf","digits":"1","duration_ms":true}',
        "hangup": '{"type":"hangup"}',
        "done": '{"type":"done"}',
        "unknown": '{"type":"pause"}',
    }
    for name, text in controls.items():
        _write("voipbin_control", name, b"\x00" + text.encode())
    _write("voipbin_control", "hangup-conference", b'\x01{"type":"hangup"}')


def seed_settings() -> None:
    samples = {
        "grpc-listen": "127.0.0.1:50051",
        "ari-url": "http://127.0.0.1:8088/ari,https://asterisk:8089/ari",
        "transport": "WebSocket",
        "max-streams": "1000",
        "keepalive-time-s": "20",
        "external-media-allow": "10.0.0.0/8,::1/128",
        "log-level": "debug",
        "audiosocket-port": "9092",
    }
    for name, value in samples.items():
        index = SETTINGS.index(name)
        _write("settings", f"flag-{name}", bytes([index]) + value.encode())
        _write("settings", f"env-{name}", bytes([index | 0x80]) + value.encode())


def _events() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name in ("ari_lifecycle.json", "ari_lifecycle_remote_hangup.json"):
        out += case(name)
    return out


def seed_ari() -> None:
    call, bridge = WATCHED
    for i, event in enumerate(_events()[:40]):
        text = json.dumps(event)
        # Make some of them about the watched call, so that they reach the monitor.
        if i % 2 and isinstance(event.get("channel"), dict):
            event = {**event, "channel": {**event["channel"], "id": call}}
            text = json.dumps(event)
        _write("ari_event", f"lifecycle-{i}-{event.get('type')}", text.encode())
    _write(
        "ari_event",
        "dtmf",
        json.dumps(
            {
                "type": "ChannelDtmfReceived",
                "digit": "5",
                "duration_ms": 120,
                "channel": {"id": call},
            }
        ).encode(),
    )
    _write(
        "ari_event",
        "bridge-destroyed",
        json.dumps({"type": "BridgeDestroyed", "bridge": {"id": bridge}}).encode(),
    )
    for path in sorted(FIXTURES.glob("*_requests.json")):
        for i, r in enumerate(case(path.name)["requests"][:12]):
            if "response" in r:
                _write("ari_answer", f"{path.stem}-{i}", json.dumps(r["response"]).encode())
    _write(
        "ari_answer",
        "channelvars",
        json.dumps(
            {
                "id": "x",
                "channelvars": {
                    "UNICASTRTP_LOCAL_ADDRESS": "127.0.0.1",
                    "UNICASTRTP_LOCAL_PORT": 4000,
                },
            }
        ).encode(),
    )


def main() -> None:
    for target in TARGETS:
        folder = CORPUS / target
        if folder.exists():
            for old in folder.glob("seed-*"):
                old.unlink()
    seed_rtp()
    seed_audiosocket()
    seed_wschannel()
    seed_uplink()
    seed_stream_config()
    seed_shim()
    seed_settings()
    seed_ari()
    for target in TARGETS:
        n = len(list((CORPUS / target).glob("*")))
        print(f"{target:18s} {n:4d} files")


if __name__ == "__main__":
    main()
