"""Forget me: delete everything stored of a user and keep their account.

``DELETE /api/v1/user/me/data`` for the logged-in user (a login, not an API
key: a leaked key must not wipe its owner's data), and
``DELETE /api/v1/admin/users/{username}/data`` for an administrator. Both run
``Assistant.forget_user`` (:mod:`mongars_core.erasure`): history,
conversations, memories, documents, style profile, learning records and the
adapters learnt from the data. The user's open websockets close first (the
console reconnects and shows an empty history), and the other server
processes drop what they cache of the user.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from mongars_core.erasure import ErasureSummary
from mongars_core.errors import ErasureIncompleteError
from mongars_server.app import ServerState
from mongars_server.deps import SessionAdminCaller, SessionCaller, State
from mongars_server.errors import ApiError

router = APIRouter(tags=["auth"])

Username = Annotated[str, Path(min_length=1, max_length=150)]


class DataDeleted(BaseModel):
    username: str
    deleted: dict[str, int] = Field(
        description="How many of each kind went: turns, conversations, memories, "
        "plugin_state, adapters, and the tables plugins erased (documents...)."
    )
    namespaces: list[str] = Field(
        description="The plugin state the user had (style, learning.consent, learning.runs...)."
    )


async def forget(server: ServerState, user_id: str) -> ErasureSummary:
    """Forget ``user_id`` (an account's): their sockets close first, so no reply being
    written there is stored past the erasure; the other processes hear of it
    whatever happens."""
    await server.hub.revoke(user_id, "your data was deleted")
    # An account that never chatted may hold documents: it is a user to forget.
    await server.assistant.store.ensure_user(user_id)
    try:
        return await server.assistant.forget_user(user_id)
    except ErasureIncompleteError:
        raise ApiError(
            503,
            "some of the data remains (a reply was being stored meanwhile): delete again",
            "erasure_incomplete",
            {"Retry-After": "1"},
        ) from None
    finally:
        await server.changed(user_id)


@router.delete("/api/v1/user/me/data", response_model=DataDeleted)
async def forget_me(server: State, caller: SessionCaller) -> DataDeleted:
    """Delete everything stored of you: history, conversations, memories, documents,
    style profile, learning records, and the adapters learnt from your data. Your
    account, password and API keys stay; you go on from zero. Cannot be undone
    (export first: ``GET /api/v1/admin/history/{username}/export``). Needs a login
    (access token), not an API key."""
    summary = await forget(server, caller.user_id)
    return DataDeleted(
        username=caller.username, deleted=summary.deleted, namespaces=summary.namespaces
    )


@router.delete("/api/v1/admin/users/{username}/data", response_model=DataDeleted, tags=["admin"])
async def forget_account(
    server: State, caller: SessionAdminCaller, username: Username
) -> DataDeleted:
    """Delete everything stored of an account's user, as ``DELETE /api/v1/user/me/data``
    does for oneself (administrators, logged in). The account stays."""
    account = await server.accounts.get(username)
    if account is None:
        raise ApiError(404, f"there is no account {username!r}", "not_found")
    summary = await forget(server, account.user_id)
    return DataDeleted(
        username=account.username, deleted=summary.deleted, namespaces=summary.namespaces
    )
