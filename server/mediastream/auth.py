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
from collections.abc import Iterable
from dataclasses import dataclass

import jwt

from mediastream.core.stream import Target, TargetKind
from mediastream.errors import PermissionDenied, Unauthenticated


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
        if not self.enabled:
            return ANONYMOUS
        if not token:
            raise Unauthenticated("a bearer token is required", reason="TOKEN_MISSING")
        candidate = token.encode()
        for key in self._keys:
            if hmac.compare_digest(candidate, key):
                name = hashlib.sha256(key).hexdigest()[:8]
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
            raise Unauthenticated(f"invalid token: {exc}", reason="TOKEN_INVALID") from None
        scope = None
        if isinstance(claims.get("call_id"), str):
            scope = Target(TargetKind.CALL, claims["call_id"])
        elif isinstance(claims.get("conference_id"), str):
            scope = Target(TargetKind.CONFERENCE, claims["conference_id"])
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            # No subject: such tokens are not one client; each counts by its peer.
            return Principal("jwt", scope)
        return Principal(subject, scope, client=f"jwt:{subject}")

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
