"""Your long-term memories: list, search, delete."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel

from mongars_core.errors import UnknownUserError
from mongars_server.deps import CurrentCaller, State

router = APIRouter(prefix="/api/v1/memories", tags=["memories"])


class MemoryItem(BaseModel):
    id: int
    text: str
    session_id: str
    created_at: datetime
    expires_at: datetime | None


class MemoryList(BaseModel):
    items: list[MemoryItem]


class FoundMemory(BaseModel):
    id: int | str
    text: str
    score: float
    source: str
    created_at: datetime | None


class FoundMemories(BaseModel):
    items: list[FoundMemory]


class Deleted(BaseModel):
    deleted: int


@router.get("", response_model=MemoryList)
async def list_memories(server: State, caller: CurrentCaller) -> MemoryList:
    """Your live memories, oldest first."""
    try:
        records = await server.assistant.list_memories(caller.user_id)
    except UnknownUserError:
        return MemoryList(items=[])
    return MemoryList(items=[MemoryItem.model_validate(r, from_attributes=True) for r in records])


@router.get("/search", response_model=FoundMemories)
async def search_memories(
    server: State,
    caller: CurrentCaller,
    q: Annotated[str, Query(min_length=1, max_length=1000)],
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> FoundMemories:
    """Your memories most relevant to ``q``, best first."""
    try:
        found = await server.assistant.search_memories(caller.user_id, q, limit)
    except UnknownUserError:
        return FoundMemories(items=[])
    return FoundMemories(items=[FoundMemory.model_validate(m.model_dump()) for m in found])


@router.delete("/{memory_id}", status_code=204)
async def delete_memory(
    server: State, caller: CurrentCaller, memory_id: Annotated[int, Path(ge=1, le=2**62)]
) -> Response:
    """Delete one of your memories (404 when it is not yours)."""
    await server.assistant.delete_memory(caller.user_id, memory_id)
    await server.changed(caller.user_id)
    return Response(status_code=204)


@router.delete("", response_model=Deleted)
async def delete_memories(server: State, caller: CurrentCaller) -> Deleted:
    """Delete all your memories."""
    try:
        count = await server.assistant.delete_memories(caller.user_id)
    except UnknownUserError:
        count = 0
    await server.changed(caller.user_id)
    return Deleted(deleted=count)
