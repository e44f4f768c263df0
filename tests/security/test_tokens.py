"""Tokens: scope claims of the wrong type (finding 1), JWT error text (finding 8),
and the token checks that held up in the probe (missing, wrong, expired, nbf,
alg none, key confusion, scoped string claims)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mediastream.auth import Authenticator
from mediastream.emulator import CONFERENCE_ID, ECHO_CALL_ID, TONE_CALL_ID
from mediastream.errors import Unauthenticated
from tests.harness import Harness, running_gateway
from tests.security.conftest import (
    KEY,
    PROBE_SETTINGS,
    SECRET,
    UPGRADE,
    assert_plain,
    listen,
    refusal,
    token,
)

BAD_SCOPES: list[tuple[str, Any]] = [
    ("call_id", 12345),
    ("call_id", [TONE_CALL_ID]),
    ("call_id", None),
    ("call_id", {}),
    ("call_id", True),
    ("call_id", ""),
    ("call_id", "x" * 129),
    ("call_id", "a b"),
    ("call_id", f"{TONE_CALL_ID}\n"),
    ("conference_id", [CONFERENCE_ID]),
    ("conference_id", 7),
]


@pytest.mark.parametrize(("claim", "value"), BAD_SCOPES)
def test_a_scope_claim_that_is_not_one_id_string_is_refused(claim: str, value: Any) -> None:
    auth = Authenticator(jwt_key=SECRET)
    with pytest.raises(Unauthenticated) as err:
        auth.authenticate(token(**{claim: value}))
    assert err.value.reason == "TOKEN_SCOPE_INVALID"
    assert err.value.metadata == {"claim": claim}
    assert claim in err.value.message


def test_both_scope_claims_at_once_are_refused() -> None:
    auth = Authenticator(jwt_key=SECRET)
    with pytest.raises(Unauthenticated) as err:
        auth.authenticate(token(call_id=TONE_CALL_ID, conference_id=CONFERENCE_ID))
    assert err.value.reason == "TOKEN_SCOPE_INVALID"


def test_asterisk_style_ids_are_valid_scopes() -> None:
    auth = Authenticator(jwt_key=SECRET)
    principal = auth.authenticate(token(call_id="1795515126.1745", sub="s"))
    assert principal.scope is not None and principal.scope.id == "1795515126.1745"


@pytest.mark.settings(**PROBE_SETTINGS)
async def test_non_string_scope_claims_open_nothing_anywhere(harness: Harness) -> None:
    assert harness.gateway.endpoints is not None
    base = f"http://{harness.gateway.endpoints.websocket}"
    async with grpc.aio.insecure_channel(harness.grpc) as channel, aiohttp.ClientSession() as http:
        for claim, value in BAD_SCOPES:
            bad = token(sub="probe", **{claim: value})
            for config in ({"call_id": TONE_CALL_ID}, {"conference_id": CONFERENCE_ID}):
                err = await refusal(listen(channel, bad, **config))
                assert (err.code, err.reason) == (
                    grpc.StatusCode.UNAUTHENTICATED,
                    "TOKEN_SCOPE_INVALID",
                ), (claim, value)
            for path in (
                f"/v1.0/calls/{TONE_CALL_ID}/media_stream?encapsulation=sln",
                f"/v1.0/conferences/{CONFERENCE_ID}/twilio",
                "/v1.0/streams",
            ):
                async with http.get(
                    base + path, headers={**UPGRADE, "Authorization": f"Bearer {bad}"}
                ) as r:
                    assert r.status == 401, (path, claim, value)
                    body = await r.json()
                    assert body["error"]["reason"] == "TOKEN_SCOPE_INVALID"
        # Held: a string scope opens its own call only.
        scoped = token(sub="probe", call_id=ECHO_CALL_ID)
        err = await refusal(listen(channel, scoped, call_id=TONE_CALL_ID))
        assert (err.code, err.reason) == (grpc.StatusCode.PERMISSION_DENIED, "TOKEN_SCOPE")
        err = await refusal(listen(channel, scoped, conference_id=CONFERENCE_ID))
        assert err.reason == "TOKEN_SCOPE"
        call = listen(channel, scoped, call_id=ECHO_CALL_ID)
        first = await call.read()
        assert first.WhichOneof("payload") == "started"
        call.cancel()
        async with http.get(
            f"{base}/v1.0/calls/{TONE_CALL_ID}/media_stream?encapsulation=sln",
            headers={**UPGRADE, "Authorization": f"Bearer {scoped}"},
        ) as r:
            assert r.status == 403
    assert await harness.leftovers() == []


@pytest.mark.settings(**PROBE_SETTINGS)
async def test_bad_tokens_are_refused_in_plain_words(harness: Harness) -> None:
    now = int(time.time())
    unsigned = jwt.encode({"exp": now + 60}, key="", algorithm="none")
    cases = {
        "": "TOKEN_MISSING",
        "probe-key-guessed": "TOKEN_INVALID",
        token(key="another-secret-of-sufficient-length-1234"): "TOKEN_INVALID",
        jwt.encode({"exp": now - 5}, SECRET, algorithm="HS256"): "TOKEN_EXPIRED",
        jwt.encode({"exp": now + 60, "nbf": now + 600}, SECRET, algorithm="HS256"): (
            "TOKEN_INVALID"
        ),
        jwt.encode({"sub": "no-exp"}, SECRET, algorithm="HS256"): "TOKEN_INVALID",
        unsigned: "TOKEN_INVALID",
    }
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        for credential, reason in cases.items():
            err = await refusal(listen(channel, credential, call_id=TONE_CALL_ID))
            assert (err.code, err.reason) == (grpc.StatusCode.UNAUTHENTICATED, reason), credential
            assert_plain(err.message)
        # Held: an API key opens any call.
        call = listen(channel, KEY, call_id=TONE_CALL_ID)
        assert (await call.read()).WhichOneof("payload") == "started"
        call.cancel()


def _hs256(claims: dict[str, object], secret: bytes) -> str:
    """An HS256 token, made by hand: PyJWT refuses a PEM key as an HMAC secret."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    head = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = part(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{part(mac)}"


def _pem(key: Any) -> str:
    data: bytes = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data.decode()


async def test_an_rsa_gateway_refuses_other_keys_in_plain_words(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = _pem(rsa_key)
    public = tmp_path / "jwt.pub"
    public.write_text(pem)
    now = int(time.time())
    ec_key = ec.generate_private_key(ec.SECP256R1())
    async with running_gateway(
        request,
        grpc_listen="127.0.0.1:0",
        ws_listen="127.0.0.1:0",
        metrics_listen="",
        jwt_key=str(public),
        jwt_audience="probe-audience",
    ) as (_, endpoints):
        good = {"exp": now + 60, "aud": "probe-audience", "sub": "s"}
        refused = {
            # ES256 against an RSA key: PyJWT's message names a generator object.
            jwt.encode(good, ec_key, algorithm="ES256"): "RS256",
            # Key confusion: HS256 signed with the public key as the secret.
            _hs256(good, pem.encode()): "RS256",
            jwt.encode({**good, "aud": "other"}, rsa_key, algorithm="RS256"): "aud",
            jwt.encode({"exp": now + 60, "sub": "s"}, rsa_key, algorithm="RS256"): "aud",
            "not.a.jwt": "not a JWT",
        }
        async with grpc.aio.insecure_channel(endpoints.grpc) as channel:
            for credential, hint in refused.items():
                err = await refusal(listen(channel, credential, call_id=TONE_CALL_ID))
                assert (err.code, err.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")
                assert_plain(err.message)
                assert hint in err.message, err.message
            call = listen(
                channel, jwt.encode(good, rsa_key, algorithm="RS256"), call_id=TONE_CALL_ID
            )
            assert (await call.read()).WhichOneof("payload") == "started"
            call.cancel()
