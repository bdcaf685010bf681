"""Accounts, access tokens, API keys and websocket tickets."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from mongars_core.storage.models import AccountRecord
from mongars_server.accounts import LastAdministratorError
from mongars_server.deps import (
    AdminCaller,
    CurrentCaller,
    SessionAdminCaller,
    SessionCaller,
    State,
    limit_by_client,
)
from mongars_server.errors import ApiError
from mongars_server.limits import retry_after
from mongars_server.login_throttle import LoginThrottled
from mongars_server.password_policy import password_problem
from mongars_server.routes.erasure import forget
from mongars_server.settings import SERVER

logger = logging.getLogger(__name__)

router = APIRouter(tags=["auth"])

Username = Annotated[str, Field(min_length=1, max_length=150, pattern=r"^[A-Za-z0-9_-]+$")]
Password = Annotated[str, Field(min_length=8, max_length=1024)]


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Annotated[str, Field(min_length=1, max_length=150)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class Registration(BaseModel):
    """A new account. The username is stored lower-case: ``Alice`` and ``alice``
    are one account. The password must not be trivial or common."""

    model_config = ConfigDict(extra="forbid")

    username: Username
    password: Password

    @field_validator("password")
    @classmethod
    def _strong_password(cls, password: str, info: ValidationInfo) -> str:
        problem = password_problem(password, str(info.data.get("username", "")))
        if problem is not None:
            raise ValueError(problem)
        return password


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    old_password: Annotated[str, Field(min_length=1, max_length=1024)]
    new_password: Password
    revoke_api_keys: bool = Field(
        True,
        description="Revoke every API key too (default); false keeps them, listed in "
        "the answer for review.",
    )


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"


class LoginOut(TokenOut):
    expires_in: int


class AccountOut(BaseModel):
    username: str
    is_admin: bool
    created_at: datetime


class UserList(BaseModel):
    users: list[AccountOut]


class TicketOut(BaseModel):
    ticket: str
    ttl: int


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")]


class KeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class NewKeyOut(KeyOut):
    key: str = Field(description="The API key itself; shown only in this response.")


class KeyList(BaseModel):
    keys: list[KeyOut]


class StatusOut(BaseModel):
    status: str


class PasswordChanged(StatusOut):
    revoked: list[str] = Field(
        description="What stopped working: sessions (access tokens), websocket tickets, "
        "open websockets, and API keys unless revoke_api_keys was false."
    )
    revoked_keys: list[KeyOut]
    kept_keys: list[KeyOut] = Field(description="Live API keys kept: review them.")


class AccountDeleted(BaseModel):
    username: str
    data_deleted: bool


def client_address(request: Request) -> str:
    """The caller's address (the proxy's client, with trusted proxies configured)."""
    return request.client.host if request.client else "unknown"


async def checked_password(
    server: State, request: Request, username: str, password: str
) -> AccountRecord | None:
    """The account when ``password`` is its password, through the failure throttle
    (:mod:`mongars_server.login_throttle`): 429 when this try may not count."""
    try:
        return await server.logins.check(
            username,
            client_address(request),
            lambda: server.accounts.authenticate(username, password),
        )
    except LoginThrottled as throttled:
        wait = retry_after(throttled.wait_s)
        raise ApiError(
            429,
            f"too many failed password checks for this account: retry in {wait} s",
            "rate_limited",
            {"Retry-After": wait},
        ) from None


async def _login(server: State, request: Request, username: str, password: str) -> str:
    account = await checked_password(server, request, username, password)
    if account is None:
        raise ApiError(
            401, "wrong username or password", "unauthorized", {"WWW-Authenticate": "Bearer"}
        )
    return server.tokens.issue(account.username, account.password_version, account.user_id)


@router.post("/token", response_model=TokenOut, dependencies=[Depends(limit_by_client)])
async def token(
    server: State,
    request: Request,
    username: Annotated[str, Form(min_length=1, max_length=150)],
    password: Annotated[str, Form(min_length=1, max_length=1024)],
) -> TokenOut:
    """OAuth2 password flow: form fields ``username`` and ``password``."""
    return TokenOut(access_token=await _login(server, request, username, password))


@router.post("/api/v1/auth/login", response_model=LoginOut, dependencies=[Depends(limit_by_client)])
async def login(server: State, request: Request, credentials: Credentials) -> LoginOut:
    access_token = await _login(server, request, credentials.username, credentials.password)
    return LoginOut(access_token=access_token, expires_in=server.tokens.ttl_s)


@router.post(
    "/api/v1/user/register",
    status_code=201,
    response_model=AccountOut,
    dependencies=[Depends(limit_by_client)],
    responses={409: {"description": "The username is taken."}},
)
async def register(server: State, registration: Registration) -> AccountOut:
    if not server.settings.section(SERVER).allow_registration:
        raise ApiError(403, "registration is closed on this server", "registration_closed")
    account = await server.accounts.create(registration.username, registration.password)
    return AccountOut.model_validate(account, from_attributes=True)


@router.post("/api/v1/user/change-password", response_model=PasswordChanged)
async def change_password(
    server: State, request: Request, caller: SessionCaller, change: PasswordChange
) -> PasswordChanged:
    """Change your password. Every access token and websocket ticket issued before
    stops working, your open websockets close (in every server process), and your
    API keys are revoked unless ``revoke_api_keys`` is false. The current password
    is checked through the same failure throttle as a login (429 beyond it)."""
    checked = await checked_password(server, request, caller.username, change.old_password)
    if checked is None:
        raise ApiError(403, "the current password is wrong", "wrong_password")
    if change.new_password == change.old_password:
        raise ApiError(422, "the new password is the current password", "invalid_input")
    await server.accounts.change_password(caller.username, change.new_password)
    await server.hub.revoke(caller.user_id, "the password changed: log in again")
    revoked = ["sessions", "websocket tickets", "open websockets"]
    if change.revoke_api_keys:
        revoked_keys = await server.accounts.revoke_all_keys(caller.username)
        revoked.append("api keys")
    else:
        revoked_keys = []
    kept = [k for k in await server.accounts.list_keys(caller.username) if k.revoked_at is None]
    return PasswordChanged(
        status="password changed",
        revoked=revoked,
        revoked_keys=[KeyOut.model_validate(k, from_attributes=True) for k in revoked_keys],
        kept_keys=[KeyOut.model_validate(k, from_attributes=True) for k in kept],
    )


@router.get("/api/v1/user/me", response_model=AccountOut)
async def me(server: State, caller: CurrentCaller) -> AccountOut:
    account = await server.accounts.get(caller.username)
    if account is None:
        raise ApiError(404, "your account no longer exists", "not_found")
    return AccountOut.model_validate(account, from_attributes=True)


@router.get("/api/v1/user/list", response_model=UserList)
async def list_users(
    server: State,
    caller: AdminCaller,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> UserList:
    """Every account (administrators only)."""
    accounts = await server.accounts.list_accounts(offset, limit)
    return UserList(users=[AccountOut.model_validate(a, from_attributes=True) for a in accounts])


@router.delete("/api/v1/user/{username}", response_model=AccountDeleted)
async def delete_user(
    server: State,
    caller: SessionAdminCaller,
    username: Annotated[str, Path(min_length=1, max_length=150)],
    keep_data: Annotated[bool, Query()] = False,
) -> AccountDeleted:
    """Delete an account and its API keys (administrators, logged in). Its
    conversations, memories and plugin state go too, unless ``keep_data``; its
    tokens, tickets and open websockets stop working at once. The last
    administrator cannot be deleted (409 ``last_administrator``). Its data goes
    as ``DELETE /api/v1/user/me/data`` forgets it (documents and the adapters
    learnt from it too), before the account: a failure leaves the account, to
    delete again."""
    try:
        account = await server.accounts.check_deletable(username)
        if not keep_data:
            await forget(server, account.user_id)
        account = await server.accounts.delete(username, keep_data=keep_data)
    except LookupError:
        raise ApiError(404, f"there is no account {username!r}", "not_found") from None
    except LastAdministratorError as exc:
        raise ApiError(409, str(exc), "last_administrator") from None
    await server.hub.revoke(account.user_id, "the account was deleted")
    if not keep_data:
        await server.assistant.invalidate(account.user_id)
        await server.changed(account.user_id)
    return AccountDeleted(username=account.username, data_deleted=not keep_data)


@router.post("/api/v1/auth/ws/ticket", response_model=TicketOut)
async def ws_ticket(server: State, caller: CurrentCaller) -> TicketOut:
    """A single-use ticket for ``/ws/chat/?t=<ticket>``, valid for ``ttl`` seconds."""
    ticket = server.tickets.issue(caller.username, caller.user_id, caller.password_version)
    return TicketOut(ticket=ticket, ttl=server.tickets.ttl_s)


@router.post("/api/v1/keys", status_code=201, response_model=NewKeyOut, tags=["keys"])
async def create_key(server: State, caller: SessionCaller, request: KeyRequest) -> NewKeyOut:
    """A new API key for the OpenAI-compatible API. The key is shown only once.
    Key management needs a login: an API key cannot make, list or revoke keys."""
    record, key = await server.accounts.create_key(caller.username, request.name)
    return NewKeyOut(**KeyOut.model_validate(record, from_attributes=True).model_dump(), key=key)


@router.get("/api/v1/keys", response_model=KeyList, tags=["keys"])
async def list_keys(server: State, caller: SessionCaller) -> KeyList:
    records = await server.accounts.list_keys(caller.username)
    return KeyList(keys=[KeyOut.model_validate(r, from_attributes=True) for r in records])


@router.delete("/api/v1/keys/{key_id}", status_code=204, tags=["keys"])
async def revoke_key(
    server: State, caller: SessionCaller, key_id: Annotated[int, Path(ge=1, le=2**62)]
) -> Response:
    if not await server.accounts.revoke_key(caller.username, key_id):
        raise ApiError(404, f"you have no live API key {key_id}", "not_found")
    return Response(status_code=204)
