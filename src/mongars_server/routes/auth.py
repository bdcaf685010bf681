"""Accounts, access tokens, API keys and websocket tickets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from mongars_server.deps import AdminCaller, CurrentCaller, State, limit_by_client
from mongars_server.errors import ApiError

router = APIRouter(tags=["auth"])

Username = Annotated[str, Field(min_length=1, max_length=150, pattern=r"^[A-Za-z0-9_-]+$")]
Password = Annotated[str, Field(min_length=8, max_length=1024)]


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Annotated[str, Field(min_length=1, max_length=150)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class Registration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Username
    password: Password


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    old_password: Annotated[str, Field(min_length=1, max_length=1024)]
    new_password: Password


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


async def _login(server: State, username: str, password: str) -> str:
    account = await server.accounts.authenticate(username, password)
    if account is None:
        raise ApiError(
            401, "wrong username or password", "unauthorized", {"WWW-Authenticate": "Bearer"}
        )
    return server.tokens.issue(account.username, account.password_version)


@router.post("/token", response_model=TokenOut, dependencies=[Depends(limit_by_client)])
async def token(
    server: State,
    username: Annotated[str, Form(min_length=1, max_length=150)],
    password: Annotated[str, Form(min_length=1, max_length=1024)],
) -> TokenOut:
    """OAuth2 password flow: form fields ``username`` and ``password``."""
    return TokenOut(access_token=await _login(server, username, password))


@router.post("/api/v1/auth/login", response_model=LoginOut, dependencies=[Depends(limit_by_client)])
async def login(server: State, credentials: Credentials) -> LoginOut:
    access_token = await _login(server, credentials.username, credentials.password)
    return LoginOut(access_token=access_token, expires_in=server.tokens.ttl_s)


@router.post(
    "/api/v1/user/register",
    status_code=201,
    response_model=AccountOut,
    dependencies=[Depends(limit_by_client)],
    responses={409: {"description": "The username is taken."}},
)
async def register(server: State, registration: Registration) -> AccountOut:
    if not server.settings.server.allow_registration:
        raise ApiError(403, "registration is closed on this server", "registration_closed")
    account = await server.accounts.create(registration.username, registration.password)
    return AccountOut.model_validate(account, from_attributes=True)


@router.post("/api/v1/user/change-password", response_model=StatusOut)
async def change_password(
    server: State, caller: CurrentCaller, change: PasswordChange
) -> StatusOut:
    """Change your password; every access token issued before stops working."""
    if await server.accounts.authenticate(caller.username, change.old_password) is None:
        raise ApiError(403, "the current password is wrong", "wrong_password")
    await server.accounts.change_password(caller.username, change.new_password)
    return StatusOut(status="password changed")


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


@router.post("/api/v1/auth/ws/ticket", response_model=TicketOut)
async def ws_ticket(server: State, caller: CurrentCaller) -> TicketOut:
    """A single-use ticket for ``/ws/chat/?t=<ticket>``, valid for ``ttl`` seconds."""
    return TicketOut(ticket=server.tickets.issue(caller.username), ttl=server.tickets.ttl_s)


@router.post("/api/v1/keys", status_code=201, response_model=NewKeyOut, tags=["keys"])
async def create_key(server: State, caller: CurrentCaller, request: KeyRequest) -> NewKeyOut:
    """A new API key for the OpenAI-compatible API. The key is shown only once."""
    record, key = await server.accounts.create_key(caller.username, request.name)
    return NewKeyOut(**KeyOut.model_validate(record, from_attributes=True).model_dump(), key=key)


@router.get("/api/v1/keys", response_model=KeyList, tags=["keys"])
async def list_keys(server: State, caller: CurrentCaller) -> KeyList:
    records = await server.accounts.list_keys(caller.username)
    return KeyList(keys=[KeyOut.model_validate(r, from_attributes=True) for r in records])


@router.delete("/api/v1/keys/{key_id}", status_code=204, tags=["keys"])
async def revoke_key(
    server: State, caller: CurrentCaller, key_id: Annotated[int, Path(ge=1, le=2**62)]
) -> Response:
    if not await server.accounts.revoke_key(caller.username, key_id):
        raise ApiError(404, f"you have no live API key {key_id}", "not_found")
    return Response(status_code=204)
