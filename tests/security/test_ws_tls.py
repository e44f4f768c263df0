"""TLS, and client certificates where configured, on the WebSocket/page port (finding 4)."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp
import pytest

from mediastream.emulator import TONE_CALL_ID
from tests.harness import running_gateway
from tests.integration.test_security import self_signed


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mtls"])
async def test_the_websocket_port_speaks_tls(
    request: pytest.FixtureRequest, tmp_path: Path, mutual: bool
) -> None:
    cert, key = self_signed(tmp_path)
    tls: dict[str, object] = {"tls_cert": str(cert), "tls_key": str(key)}
    if mutual:
        tls["tls_client_ca"] = str(cert)
    async with running_gateway(
        request, grpc_listen="127.0.0.1:0", ws_listen="127.0.0.1:0", metrics_listen="", **tls
    ) as (_, endpoints):
        path = f"/v1.0/calls/{TONE_CALL_ID}/media_stream?encapsulation=sln"
        async with aiohttp.ClientSession() as http:
            # Plaintext to the TLS port gets no stream.
            with pytest.raises(aiohttp.ClientError):
                async with http.ws_connect(f"ws://{endpoints.websocket}{path}"):
                    pass
            trust = ssl.create_default_context(cafile=str(cert))
            if mutual:
                with pytest.raises(aiohttp.ClientError):  # no client certificate
                    async with http.ws_connect(f"wss://{endpoints.websocket}{path}", ssl=trust):
                        pass
                trust.load_cert_chain(str(cert), str(key))
            async with http.ws_connect(f"wss://{endpoints.websocket}{path}", ssl=trust) as ws:
                msg = await ws.receive(timeout=5)
                assert msg.type is aiohttp.WSMsgType.BINARY
