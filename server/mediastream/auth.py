"""Who may open which stream: static API keys and JWTs, optionally scoped.

A request carries a bearer token. An API key from the configuration grants
everything. A JWT is verified with the configured HMAC secret or public key;
its ``exp`` is enforced, and if it names a ``call_id`` or ``conference_id``
claim it opens only that call or conference. With neither keys nor a JWT key
configured, authentication is off (the embedded demo); the gateway logs that.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import jwt

from mediastream import logs
from mediastream.core.stream import Target, TargetKind, validate_target_id
from mediastream.errors import InvalidArgument, PermissionDenied, Unauthenticated


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    Attributes:
        subject: Who it is: the JWT ``sub``, or ``api-key:<first 8 hex digits of the
            key's SHA-256>`` (names the key in logs and limits without revealing it).
        scope: The only target it may open; None for any.
        client: Who it counts as in the per-client limit (``key:<hash>``,
            ``jwt:<sub>``); empty when authentication is off.
    """

    subject: str
    scope: Target | None = None
    client: str = ""

    @property
    def identity(self) -> str:
        """Who may resume a stream this principal opened.

        The same API key, or the same JWT ``sub`` with the same scope (a JWT
        without ``sub`` counts as one identity per scope).
        """
        scope = f"{self.scope.kind.value}:{self.scope.id}" if self.scope is not None else "*"
        return f"{self.subject}|{scope}"

    def check(self, target: Target) -> None:
        """Raise PermissionDenied unless this principal may open `target`."""
        if self.scope is not None and self.scope != target:
            raise PermissionDenied(
                f"token is scoped to {self.scope.kind.value} {self.scope.id}",
                reason="TOKEN_SCOPE",
                metadata={"scope": f"{self.scope.kind.value}:{self.scope.id}"},
            )


ANONYMOUS = Principal("anonymous")


def client_id(principal: Principal, peer_host: str) -> str:
    """Who a stream counts against in the per-client limit.

    Args:
        principal: The authenticated caller.
        peer_host: The caller's IP address, which stands for the client when
            authentication is off.
    """
    return principal.client or f"peer:{peer_host}"


_SCOPE_CLAIMS = (("call_id", TargetKind.CALL), ("conference_id", TargetKind.CONFERENCE))


def _scope(claims: Mapping[str, object]) -> Target | None:
    """The target a token's scope claim names; None when it has none.

    A scope claim that is present must be one well-formed ID: any other value
    (a number, a list, null, an empty string, both claims at once) is refused,
    never dropped, since a dropped claim would make the token unscoped.

    Raises:
        Unauthenticated: the claim is present but not one well-formed ID (TOKEN_SCOPE_INVALID).
    """
    present = [(name, kind) for name, kind in _SCOPE_CLAIMS if name in claims]
    if not present:
        return None
    if len(present) > 1:
        raise Unauthenticated(
            "a token may carry call_id or conference_id, not both",
            reason="TOKEN_SCOPE_INVALID",
        )
    name, kind = present[0]
    value = claims[name]
    try:
        # The same rule as an ID in a request: a string of safe characters, bounded.
        if isinstance(value, str) and value == value.strip():
            return Target(kind, validate_target_id(name, value))
    except InvalidArgument:
        pass
    raise Unauthenticated(
        f"the token's {name} claim must be one call or conference ID, a string of "
        "1-128 letters, digits, '.', '_', ':' or '-'",
        reason="TOKEN_SCOPE_INVALID",
        metadata={"claim": name},
    )


class Authenticator:
    """Verifies bearer tokens.

    Args:
        api_keys: Static keys that grant full access.
        jwt_key: HMAC secret (HS256) or PEM public key (RS256/ES256) for JWTs.
        jwt_audience: Required ``aud`` claim, if set.
    """

    def __init__(
        self, api_keys: Iterable[str] = (), jwt_key: str = "", jwt_audience: str = ""
    ) -> None:
        self._keys = [k.encode() for k in api_keys if k]
        self._jwt_key = jwt_key
        self._audience = jwt_audience or None
        self._algorithms = (
            ["RS256", "ES256"] if jwt_key.lstrip().startswith("-----BEGIN") else ["HS256"]
        )

    @property
    def enabled(self) -> bool:
        """Whether any credential is required."""
        return bool(self._keys or self._jwt_key)

    def authenticate(self, token: str | None) -> Principal:
        """The principal a bearer token stands for.

        Raises:
            Unauthenticated: authentication is on and the token is missing or invalid.
        """
        # Per request: an aiohttp connection handles its requests in one task.
        logs.identity.set("-")
        if not self.enabled:
            return ANONYMOUS
        if not token:
            raise Unauthenticated("a bearer token is required", reason="TOKEN_MISSING")
        candidate = token.encode()
        for key in self._keys:
            if hmac.compare_digest(candidate, key):
                name = hashlib.sha256(key).hexdigest()[:8]
                logs.set_identity(f"api-key:{name}")
                return Principal(f"api-key:{name}", client=f"key:{name}")
        if not self._jwt_key:
            raise Unauthenticated("unknown API key", reason="TOKEN_INVALID")
        try:
            claims = jwt.decode(
                token,
                self._jwt_key,
                algorithms=self._algorithms,
                audience=self._audience,
                options={"require": ["exp"], "verify_aud": bool(self._audience)},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired", reason="TOKEN_EXPIRED") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(
                f"invalid token: {self._jwt_problem(exc)}", reason="TOKEN_INVALID"
            ) from None
        subject = claims.get("sub")
        # Signed by the issuer: who it is is known, even if its scope claim is refused.
        logs.set_identity(f"jwt:{subject}" if isinstance(subject, str) and subject else "jwt")
        scope = _scope(claims)
        if not isinstance(subject, str) or not subject:
            # No subject: such tokens are not one client; each counts by its peer.
            return Principal("jwt", scope)
        return Principal(subject, scope, client=f"jwt:{subject}")

    def _jwt_problem(self, exc: jwt.PyJWTError) -> str:
        """What is wrong with a token, and how to fix it, in our own words.

        PyJWT's own messages can carry Python reprs (a generator object, a key
        class); they are never passed on.
        """
        if isinstance(exc, jwt.MissingRequiredClaimError):
            return f"the {exc.claim} claim is required"
        if isinstance(exc, jwt.InvalidAudienceError):
            return "the aud claim does not name this gateway's audience (jwt_audience)"
        if isinstance(exc, jwt.ImmatureSignatureError):
            return "not valid yet (nbf or iat is in the future)"
        if isinstance(exc, jwt.InvalidAlgorithmError | jwt.InvalidKeyError):
            return f"sign it with one of {', '.join(self._algorithms)} and the gateway's key"
        if isinstance(exc, jwt.InvalidSignatureError):
            return "the signature does not verify with the gateway's key"
        if isinstance(exc, jwt.DecodeError):
            return "not a JWT (three base64url parts) and not a configured API key"
        return "the token's claims are malformed (exp, nbf, iat must be numbers)"

    def authenticate_metadata(self, metadata: Iterable[tuple[str, str | bytes]]) -> Principal:
        """Authenticate from gRPC metadata (``authorization: Bearer <token>``).

        Raises:
            Unauthenticated: as `authenticate`.
        """
        token = None
        for key, value in metadata:
            if key.lower() == "authorization" and isinstance(value, str):
                scheme, _, rest = value.partition(" ")
                if scheme.lower() == "bearer":
                    token = rest.strip()
        return self.authenticate(token)
