"""Event sequences and JSON shapes compared with ari_lifecycle*.json, event by event.

Ids, names, ports and timestamps differ from run to run, so both the recording and
the live events are normalized (each id/name replaced by its role) and then must be
*equal*: same events, same order, same keys in the same order, same values.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mediastream.emulator import Emulator, EmulatorConfig
from tests.asterisk_fixtures import case
from tests.emulator.conftest import APP, Ari, UdpPeer


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    # No demo calls: the recorded GET /channels lists only the scenario's channels.
    emu = Emulator(EmulatorConfig(port=0, demo=False))
    await emu.start()
    yield emu
    await emu.stop()


_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$")


def normalize(value: Any, roles: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: normalize(v, roles) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v, roles) for v in value]
    if isinstance(value, str):
        if _TIMESTAMP.match(value):
            return "<time>"
        for text in sorted(roles, key=len, reverse=True):
            value = value.replace(text, roles[text])
        return value
    return value


def roles_of(requests: list[dict[str, Any]], host: str) -> dict[str, str]:
    """Roles from the request/response sequence of one run (recorded or live)."""
    roles = {host: "<host>"}
    for step in requests:
        response = step.get("response")
        if not isinstance(response, dict) or "id" not in response:
            continue
        if step["request"] == "POST /ari/channels":
            name = response["name"]
            roles[response["id"]] = "<caller-id>"
            roles[name] = "<caller>"
            roles[name[:-2] + ";2"] = "<caller;2>"
            roles[name[:-2]] = "<local>"
        elif step["request"] == "POST /ari/channels/externalMedia":
            roles[response["id"]] = "<em-id>"
            roles[response["name"]] = "<em>"
            roles[response["channelvars"]["UNICASTRTP_LOCAL_PORT"]] = "<rtp-port>"
        elif step["request"] == "POST /ari/bridges":
            roles[response["id"]] = "<bridge-id>"
    return roles


def second_half_id(events: list[dict[str, Any]], roles: dict[str, str]) -> None:
    for event in events:
        channel = event.get("channel", {})
        if channel.get("name", "").endswith(";2") and channel.get("id") not in roles:
            roles[channel["id"]] = "<caller;2-id>"


async def run_scenario(ari: Ari, exten: str, hangup_by_app: bool) -> list[dict[str, Any]]:
    """The recorded scenario; returns the requests made, in the fixture's format."""
    peer = await UdpPeer.open()
    steps: list[dict[str, Any]] = []

    async def step(method: str, path: str, **params: str) -> Any:
        r = await ari.request(method, path, **params)
        steps.append({"request": f"{method} /ari{path}", "status": r.status, "response": r.json})
        return r.json

    call = await step(
        "POST", "/channels", endpoint=f"Local/{exten}@default", app=APP, formats="ulaw"
    )
    await ari.stasis_start(call["id"])  # the recorder's GET came after the StasisStart
    await step("GET", "/channels")
    bridge = await step("POST", "/bridges", type="mixing")
    em = await step(
        "POST", "/channels/externalMedia", app=APP, external_host=peer.address, format="ulaw"
    )
    await ari.stasis_start(em["id"])
    await step("POST", f"/bridges/{bridge['id']}/addChannel", channel=f"{call['id']},{em['id']}")
    if hangup_by_app:
        await ari.wait_event(
            lambda e: e["type"] == "ChannelDialplan" and e["dialplan_app"] == "Wait"
        )
        await asyncio.sleep(0.005)
        await step("DELETE", f"/channels/{call['id']}")
    await ari.wait_event(
        lambda e: e["type"] == "ChannelDestroyed" and e["channel"]["id"] == call["id"], timeout=4
    )
    await asyncio.sleep(0.05)
    await step("DELETE", f"/channels/{em['id']}")
    await asyncio.sleep(0.05)
    await step("DELETE", f"/bridges/{bridge['id']}")
    await ari.wait_event(lambda e: e["type"] == "BridgeDestroyed")
    peer.close()
    return steps


def _compare(name: str, live_steps: list[dict[str, Any]], ari: Ari) -> None:
    recorded_events = case(f"{name}.json")
    recorded_requests = case(f"{name}_requests.json")["requests"]
    host = recorded_requests[3]["params"]["external_host"]
    recorded_roles = roles_of(recorded_requests, host)
    second_half_id(recorded_events, recorded_roles)
    live_host = next(
        s["response"]["name"].split("/")[1].rsplit("-", 1)[0]
        for s in live_steps
        if s["request"] == "POST /ari/channels/externalMedia"
    )
    live_roles = roles_of(live_steps, live_host)
    live_events = [e for _, e in ari.events]
    second_half_id(live_events, live_roles)

    expected = normalize(recorded_events, recorded_roles)
    got = normalize(live_events, live_roles)
    for e in expected + got:
        e["asterisk_id"] = "<asterisk>"
    exp_types = [
        (e["type"], (e.get("channel") or e.get("peer") or {}).get("name")) for e in expected
    ]
    got_types = [(e["type"], (e.get("channel") or e.get("peer") or {}).get("name")) for e in got]
    assert got_types == exp_types
    for want, have in zip(expected, got, strict=True):
        assert json.dumps(have) == json.dumps(want)  # equal *and* in the same key order
    # The responses too (the GET /channels list and the originate/externalMedia bodies).
    for want_step, have_step in zip(recorded_requests, live_steps, strict=True):
        assert have_step["request"].split("/")[:3] == want_step["request"].split("/")[:3]
        assert have_step["status"] == want_step["status"]
        want_body = normalize(want_step["response"], recorded_roles)
        have_body = normalize(have_step["response"], live_roles)
        assert json.dumps(have_body) == json.dumps(want_body), want_step["request"]


async def test_lifecycle_with_ari_hangup_matches_recording(emulator: Emulator, ari: Ari) -> None:
    steps = await run_scenario(ari, "tone", hangup_by_app=True)
    _compare("ari_lifecycle", steps, ari)


async def test_lifecycle_with_remote_hangup_matches_recording(emulator: Emulator, ari: Ari) -> None:
    steps = await run_scenario(ari, "short", hangup_by_app=False)
    _compare("ari_lifecycle_remote_hangup", steps, ari)
