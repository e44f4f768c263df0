"""The conformance suite (scenarios.json) run with the Python SDK, one test per scenario.

Uses the gateway named by MEDIASTREAM_READY (its JSON ready line) if set, else the
session gateway of tests/conftest.py.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from mediastream_client import MediaStreamClient
from tests.conformance.runner import CuttableProxy, Runner, cuts_connection, load_suite, skip_reason

SUITE = load_suite()


@pytest.fixture(scope="module")
def ready(request: pytest.FixtureRequest) -> dict[str, Any]:
    line = os.environ.get("MEDIASTREAM_READY")
    if line:
        parsed: dict[str, Any] = json.loads(line)
        return parsed
    gw = request.getfixturevalue("gateway")
    return {"grpc": gw.grpc, "demo": gw.demo}


def _param(scenario: dict[str, Any]) -> Any:
    reason = skip_reason(scenario)
    marks = [pytest.mark.skip(reason=reason)] if reason else []
    return pytest.param(scenario, id=scenario["name"], marks=marks)


@pytest.mark.parametrize("scenario", [_param(sc) for sc in SUITE["scenarios"]])
async def test_scenario(scenario: dict[str, Any], ready: dict[str, Any]) -> None:
    timeout_s = scenario.get("timeout_ms", 20000) / 1000
    if not cuts_connection(scenario):
        async with MediaStreamClient(ready["grpc"]) as client:
            await Runner(client, ready["demo"], timeout_s).run(scenario)
        return
    # Its own client, through a proxy that cut_connection cuts.
    proxy = CuttableProxy(ready["grpc"])
    try:
        async with MediaStreamClient(await proxy.start()) as client:
            await Runner(client, ready["demo"], timeout_s, proxy).run(scenario)
    finally:
        await proxy.close()
