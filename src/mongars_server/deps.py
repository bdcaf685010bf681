"""Dependencies: the server state, the authenticated caller, rate limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from starlette.requests import HTTPConnection

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
    """Who is making the request."""

    username: str
    is_admin: bool
    via: str  # "token" or "api_key"


def _unauthorized(detail: str) -> ApiError:
    return ApiError(401, detail, "unauthorized", {"WWW-Authenticate": "Bearer"})


async def authenticate(server: ServerState, credential: str) -> Caller:
    """The caller behind an access token or an API key; raises a 401 ApiError."""
    accounts = server.accounts
    if credential.startswith(API_KEY_PREFIX):
        account = await accounts.account_for_key(credential)
        if account is None:
            raise _unauthorized("the API key is invalid or revoked")
        return Caller(account.username, account.is_admin, "api_key")
    try:
        claims = server.tokens.verify(credential)
    except AuthenticationError as exc:
        raise _unauthorized(str(exc)) from None
    account = await accounts.get(claims.username)
    if account is None or account.password_version != claims.password_version:
        raise _unauthorized("the access token is no longer valid: log in again")
    return Caller(account.username, account.is_admin, "token")


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
    await enforce_rate_limit(server, f"user:{caller.username}")
    return caller


async def admin_caller(caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
    if not caller.is_admin:
        raise ApiError(403, "this needs an administrator", "forbidden")
    return caller


async def limit_by_client(server: State, request: Request) -> None:
    """Rate limit for routes without a user yet (login, register): per client address."""
    client = request.client.host if request.client else "unknown"
    await enforce_rate_limit(server, f"ip:{client}")


CurrentCaller = Annotated[Caller, Depends(current_caller)]
AdminCaller = Annotated[Caller, Depends(admin_caller)]
