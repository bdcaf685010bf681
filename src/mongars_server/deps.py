"""Dependencies: the server state, the authenticated caller, rate limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from starlette.requests import HTTPConnection

from mongars_core.storage.models import AccountRecord
from mongars_server.app import ServerState
from mongars_server.errors import ApiError
from mongars_server.limits import retry_after
from mongars_server.security import API_KEY_PREFIX, AuthenticationError

# auto_error=False: a missing token gets our own JSON 401, not FastAPI's.
bearer = OAuth2PasswordBearer(tokenUrl="/token", auto_error=False)


def server_state(connection: HTTPConnection) -> ServerState:
    state: ServerState = connection.state.server
    return state


State = Annotated[ServerState, Depends(server_state)]


@dataclass(frozen=True)
class Caller:
    """Who is making the request.

    ``username`` is the login, shown to the client; ``user_id`` owns the
    account's conversations, memories and plugin state (never the username:
    see :mod:`mongars_server.accounts`). Routes pass ``user_id`` to the assistant.
    """

    username: str
    user_id: str
    is_admin: bool
    via: str  # "token" or "api_key"
    password_version: int


def _unauthorized(detail: str) -> ApiError:
    return ApiError(401, detail, "unauthorized", {"WWW-Authenticate": "Bearer"})


async def authenticate(server: ServerState, credential: str) -> Caller:
    """The caller behind an access token or an API key; raises a 401 ApiError."""
    accounts = server.accounts
    if credential.startswith(API_KEY_PREFIX):
        account = await accounts.account_for_key(credential)
        if account is None:
            raise _unauthorized("the API key is invalid or revoked")
        return _caller(account, "api_key")
    try:
        claims = server.tokens.verify(credential)
    except AuthenticationError as exc:
        raise _unauthorized(str(exc)) from None
    account = await accounts.get(claims.username)
    if (
        account is None
        or account.password_version != claims.password_version
        # A deleted account's token must not open a new account of the same name.
        or account.user_id != claims.user_id
    ):
        raise _unauthorized("the access token is no longer valid: log in again")
    return _caller(account, "token")


def _caller(account: AccountRecord, via: str) -> Caller:
    return Caller(
        account.username, account.user_id, account.is_admin, via, account.password_version
    )


async def enforce_rate_limit(server: ServerState, key: str) -> None:
    wait = await server.limiter.take(key)
    if wait > 0:
        raise ApiError(
            429,
            f"too many requests: retry in {retry_after(wait)} s",
            "rate_limited",
            {"Retry-After": retry_after(wait)},
        )


async def current_caller(server: State, token: Annotated[str | None, Depends(bearer)]) -> Caller:
    if not token:
        raise _unauthorized("not authenticated: send 'Authorization: Bearer <token>'")
    caller = await authenticate(server, token)
    await enforce_rate_limit(server, f"user:{caller.user_id}")  # the websocket's bucket too
    return caller


async def admin_caller(caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
    if not caller.is_admin:
        raise ApiError(403, "this needs an administrator", "forbidden")
    return caller


async def session_caller(caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
    """A caller who logged in with a password: API keys cannot manage keys or accounts,
    so a leaked key cannot make itself new keys that outlive it."""
    if caller.via != "token":
        raise ApiError(403, "this needs a login (access token), not an API key", "forbidden")
    return caller


async def session_admin_caller(caller: Annotated[Caller, Depends(session_caller)]) -> Caller:
    if not caller.is_admin:
        raise ApiError(403, "this needs an administrator", "forbidden")
    return caller


async def limit_by_client(server: State, request: Request) -> None:
    """Rate limit for routes without a user yet (login, register): per client address."""
    client = request.client.host if request.client else "unknown"
    await enforce_rate_limit(server, f"ip:{client}")


CurrentCaller = Annotated[Caller, Depends(current_caller)]
AdminCaller = Annotated[Caller, Depends(admin_caller)]
SessionCaller = Annotated[Caller, Depends(session_caller)]
SessionAdminCaller = Annotated[Caller, Depends(session_admin_caller)]
