"""A user's history in and out, for administrators: import a file, export everything.

The account is named by its username; its data lives under its ``user_id``
(see :mod:`mongars_server.accounts`). The formats are
:mod:`mongars_core.history_io`'s.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel

from mongars_core.errors import UnknownUserError
from mongars_core.history_io import dumps_jsonl, parse_history
from mongars_server.deps import AdminCaller, State
from mongars_server.errors import ApiError

router = APIRouter(prefix="/api/v1/admin/history", tags=["admin"])

Username = Annotated[str, Path(min_length=1, max_length=150)]


class ImportedOut(BaseModel):
    username: str
    format: str
    turns: int
    sessions: int
    memories: int
    duplicates: int
    warnings: list[str]


async def _user_id(server: State, username: str) -> str:
    account = await server.accounts.get(username)
    if account is None:
        raise ApiError(404, f"there is no account {username!r}", "not_found")
    return account.user_id


@router.post("/{username}/import", response_model=ImportedOut)
async def import_history(
    server: State,
    caller: AdminCaller,
    username: Username,
    request: Request,
    format: Annotated[Literal["auto", "mongars", "chatgpt"], Query()] = "auto",
) -> ImportedOut:
    """Import the request body (monGARS JSONL or a ChatGPT ``conversations.json``)
    as the account's history and memories, all or nothing (422 naming the line
    or node when the file is malformed)."""
    user_id = await _user_id(server, username)
    body = await request.body()
    assistant = server.assistant
    history = await asyncio.to_thread(parse_history, body, assistant.settings, format)
    summary = await assistant.import_history(user_id, history)
    if summary.turns:
        await server.changed(user_id)
    fields = summary.as_dict()
    del fields["user_id"]  # the account's data id is not the caller's to see
    return ImportedOut(username=username, **fields)


@router.get("/{username}/export")
async def export_history(server: State, caller: AdminCaller, username: Username) -> Response:
    """The account's history, memories, style profile and adapters as JSONL."""
    user_id = await _user_id(server, username)
    try:
        records = await server.assistant.export_history(user_id)
    except UnknownUserError:
        raise ApiError(404, f"{username!r} has no history yet", "not_found") from None
    return Response(
        dumps_jsonl(records),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="history.jsonl"'},
    )
