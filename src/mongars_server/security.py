"""Secrets, password hashing, access tokens and websocket tickets.

* The signing secret comes from ``MONGARS_SERVER__JWT_SECRET`` or, when unset,
  from ``<data dir>/server-secret``, created on first run with mode 0600.
* Passwords are hashed with argon2id in a worker thread (hashing is slow on
  purpose and must not stall the event loop).
* Access tokens are HS256 JWTs that expire; each carries the account's
  password version and its ``user_id``, so changing the password revokes
  older tokens, and a deleted account's tokens never work for a new account
  of the same name.
* Websocket tickets are HMAC-signed, bound to one account (name, ``user_id``
  and password version), expire after at most 60 s with no clock-skew
  allowance, and are accepted once.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from mongars_core.errors import ConfigurationError
from mongars_core.settings import Settings
from mongars_server.settings import SERVER

SECRET_FILE = "server-secret"
API_KEY_PREFIX = "mgs_"


class AuthenticationError(Exception):
    """Credentials, a token or a ticket were rejected (the message says why)."""


def load_or_create_secret(settings: Settings) -> bytes:
    """The signing secret: the setting, else the data directory's secret file."""
    configured = settings.section(SERVER).jwt_secret
    if configured is not None:
        value = configured.get_secret_value().encode()
        if len(value) < 32:
            raise ConfigurationError(
                "MONGARS_SERVER__JWT_SECRET is too short: use at least 32 characters"
            )
        return value
    path = Path(settings.data_dir) / SECRET_FILE
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            # O_EXCL: two workers starting together must not write two secrets.
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
        if path.stat().st_mode & 0o077:
            raise ConfigurationError(f"{path} is readable by other users: run `chmod 600 {path}`")
        value = path.read_text().strip().encode()
    except OSError as exc:
        raise ConfigurationError(f"cannot read or create the secret file {path}: {exc}") from exc
    if len(value) < 32:
        raise ConfigurationError(f"the secret in {path} is too short: delete the file")
    return value


class Passwords:
    """argon2id hashing, off the event loop."""

    def __init__(self) -> None:
        self._hasher = PasswordHasher()

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        def check() -> bool:
            try:
                return self._hasher.verify(password_hash, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(check)


@dataclass(frozen=True)
class TokenClaims:
    username: str
    password_version: int
    expires_at: int
    user_id: str


@dataclass(frozen=True)
class TicketClaims:
    """Whom a redeemed websocket ticket was issued to."""

    username: str
    user_id: str
    password_version: int


class AccessTokens:
    """Signed, expiring access tokens (JWT, HS256)."""

    algorithm = "HS256"

    def __init__(self, secret: bytes, ttl_s: int) -> None:
        self._key = _derive(secret, b"access-token")
        self.ttl_s = ttl_s

    def issue(self, username: str, password_version: int, user_id: str) -> str:
        now = int(time.time())
        claims = {
            "sub": username,
            "pv": password_version,
            "uid": user_id,
            "iat": now,
            "exp": now + self.ttl_s,
            "typ": "access",
        }
        return jwt.encode(claims, self._key, algorithm=self.algorithm)

    def verify(self, token: str) -> TokenClaims:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self.algorithm],
                options={"require": ["sub", "exp", "iat", "pv", "uid"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("the access token has expired") from None
        except jwt.PyJWTError:
            raise AuthenticationError("the access token is invalid") from None
        if (
            claims.get("typ") != "access"
            or not isinstance(claims["sub"], str)
            or not isinstance(claims["uid"], str)
        ):
            raise AuthenticationError("the access token is invalid")
        return TokenClaims(claims["sub"], int(claims["pv"]), int(claims["exp"]), claims["uid"])


class TicketSigner:
    """Short-lived, single-use websocket tickets bound to one account.

    A ticket is ``base64(payload).base64(hmac)``; the payload names the
    account (username, ``user_id``, password version), a random nonce and the
    expiry. ``redeem`` checks the signature and expiry and then marks the
    nonce used in ``used`` (a :class:`UsedTickets`), so a replay fails; the
    caller checks the account still has that ``user_id`` and password version.
    """

    def __init__(self, secret: bytes, ttl_s: int, used: UsedTickets) -> None:
        if not 1 <= ttl_s <= 60:
            raise ConfigurationError("websocket tickets must expire within 1 to 60 seconds")
        self._key = _derive(secret, b"ws-ticket")
        self.ttl_s = ttl_s
        self._used = used

    def issue(self, username: str, user_id: str, password_version: int) -> str:
        payload = {
            "u": username,
            "i": user_id,
            "v": password_version,
            "n": secrets.token_urlsafe(16),
            "e": time.time() + self.ttl_s,
        }
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{_b64(self._sign(body))}"

    async def redeem(self, ticket: str) -> TicketClaims:
        """Whom the ticket was issued to; raises :class:`AuthenticationError`."""
        body, _, signature = ticket.partition(".")
        try:
            valid = hmac.compare_digest(_unb64(signature), self._sign(body))
            payload = json.loads(_unb64(body)) if valid else None
        except (ValueError, UnicodeDecodeError):
            payload = None
        if not isinstance(payload, dict) or not {"u", "i", "v", "n", "e"} <= payload.keys():
            raise AuthenticationError("the websocket ticket is invalid")
        remaining = float(payload["e"]) - time.time()
        if remaining <= 0:
            raise AuthenticationError("the websocket ticket has expired")
        if not await self._used.claim(str(payload["n"]), remaining):
            raise AuthenticationError("the websocket ticket was already used")
        return TicketClaims(str(payload["u"]), str(payload["i"]), int(payload["v"]))

    def _sign(self, body: str) -> bytes:
        return hmac.new(self._key, body.encode(), hashlib.sha256).digest()


class UsedTickets:
    """Nonces of redeemed tickets, kept until the ticket would have expired."""

    def __init__(self) -> None:
        self._expiry: dict[str, float] = {}

    async def claim(self, nonce: str, ttl_s: float) -> bool:
        now = time.monotonic()
        if len(self._expiry) > 1024:
            self._expiry = {key: at for key, at in self._expiry.items() if at > now}
        if self._expiry.get(nonce, 0.0) > now:
            return False
        self._expiry[nonce] = now + ttl_s
        return True


class RedisUsedTickets(UsedTickets):
    """Used-ticket nonces in Redis, shared by every server process."""

    def __init__(self, redis: object, prefix: str = "mongars:") -> None:
        super().__init__()
        self._redis = redis
        self._prefix = f"{prefix}ticket:"

    async def claim(self, nonce: str, ttl_s: float) -> bool:
        claimed = await self._redis.set(  # type: ignore[attr-defined]
            f"{self._prefix}{nonce}", b"1", nx=True, px=max(1, int(ttl_s * 1000))
        )
        return bool(claimed)


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """API keys carry 256 random bits, so a plain SHA-256 is a safe lookup hash."""
    return hashlib.sha256(key.encode()).hexdigest()


def _derive(secret: bytes, purpose: bytes) -> bytes:
    """One key per purpose, so a ticket can never pass as an access token."""
    return hmac.new(secret, purpose, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
