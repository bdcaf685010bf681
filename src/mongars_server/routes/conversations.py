"""Your conversations: list, create, rename, delete, read their turns, rate their
replies; the message limit.

A conversation is a session of turns. One is created by ``POST`` or by the
first turn stored with a new ``session_id``; that turn names an untitled one.
Deleting a conversation deletes its turns; the memories learnt in it stay
(``/api/v1/memories`` lists and deletes them). Another user's conversation, or
turn, is a 404, never a 403: its existence is not revealed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mongars_core.errors import UnknownUserError
from mongars_core.types import Conversation
from mongars_server.app import ServerState
from mongars_server.deps import CurrentCaller, State
from mongars_server.events import make_event
from mongars_server.routes.conversation import RATING_NAMES, HistoryItem, Rating, history_item

router = APIRouter(tags=["conversations"])

SessionPath = Annotated[str, Path(min_length=1, max_length=150, pattern=r"^[A-Za-z0-9_.@-]+$")]
TURN_ID_PATTERN = r"^[A-Za-z0-9_-]+$"
TurnPath = Annotated[str, Path(min_length=1, max_length=64, pattern=TURN_ID_PATTERN)]
TurnId = Annotated[str, Field(min_length=1, max_length=64, pattern=TURN_ID_PATTERN)]
Title = Annotated[str, Field(max_length=200, description="Spaces are collapsed.")]


class Limits(BaseModel):
    max_message_chars: int = Field(description="The longest message a turn accepts.")


class ConversationOut(BaseModel):
    session_id: str
    title: str = Field(description="Empty until the first message names the conversation.")
    turns: int
    created_at: datetime
    updated_at: datetime


class ConversationList(BaseModel):
    items: list[ConversationOut]


class NewConversation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title = ""
    session_id: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=150,
            pattern=r"^[A-Za-z0-9_.@-]+$",
            description="Chosen by the client (a 409 when you have it already); random if absent.",
        ),
    ] = None


class Rename(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Annotated[Title, Field(min_length=1)]


class DeletedConversation(BaseModel):
    session_id: str
    deleted_turns: int


class TurnList(BaseModel):
    items: list[HistoryItem]


class RatingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rating: Rating | Literal[1, -1] | None = Field(
        description='`"up"` (or 1), `"down"` (or -1), or null to take the rating back.'
    )

    @field_validator("rating", mode="before")
    @classmethod
    def _not_a_bool(cls, value: object) -> object:
        # true == 1 and 1.0 == 1 in Python: a literal 1 would take them.
        if isinstance(value, bool | float):
            raise ValueError('a rating is "up", "down", 1, -1 or null')
        return value

    def stored(self) -> int | None:
        """The rating as the store keeps it: 1, -1 or ``None``."""
        if self.rating == "up":
            return 1
        if self.rating == "down":
            return -1
        return self.rating


class RatedTurn(BaseModel):
    turn_id: str
    session_id: str
    rating: Rating | None


class RateFrame(RatingRequest):
    """The data of a websocket ``chat.rate`` frame."""

    turn_id: TurnId


async def rate_turn(server: ServerState, user: str, turn_id: str, rating: int | None) -> RatedTurn:
    """Store a rating; the other server processes drop what they cached of ``user``."""
    turn = await server.assistant.rate(user, turn_id, rating)
    await server.changed(user)
    return RatedTurn(
        turn_id=turn_id,
        session_id=turn.session_id,
        rating=None if turn.rating is None else RATING_NAMES[turn.rating],
    )


async def announce_rating(server: ServerState, user: str, rated: RatedTurn, ref: object) -> None:
    """Tell the user's open consoles, so every tab shows the same thumbs."""
    data = {**rated.model_dump(), "ref": ref}
    await server.hub.publish(make_event("turn.rated", user, data))


def _out(conversation: Conversation) -> ConversationOut:
    return ConversationOut.model_validate(conversation.model_dump())


async def _announce(server: State, user: str, session_id: str, change: str) -> None:
    """Tell the user's open consoles, so every tab shows the same list."""
    data = {"session_id": session_id, "change": change}
    await server.hub.publish(make_event("conversation.changed", user, data))


@router.get("/api/v1/limits", response_model=Limits, tags=["conversation"])
async def limits(server: State) -> Limits:
    """The limits a client should enforce before sending (no user data: public)."""
    return Limits(max_message_chars=server.settings.max_message_chars)


@router.get("/api/v1/conversations", response_model=ConversationList)
async def list_conversations(
    server: State, caller: CurrentCaller, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> ConversationList:
    """Your conversations, most recently used first."""
    try:
        found = await server.assistant.list_conversations(caller.user_id, limit)
    except UnknownUserError:
        found = []
    return ConversationList(items=[_out(conversation) for conversation in found])


@router.post("/api/v1/conversations", status_code=201, response_model=ConversationOut)
async def create_conversation(
    server: State, caller: CurrentCaller, request: NewConversation
) -> ConversationOut:
    """A new, empty conversation, with a random ``session_id`` unless one is given."""
    created = await server.assistant.create_conversation(
        caller.user_id, request.title, session_id=request.session_id
    )
    await _announce(server, caller.user_id, created.session_id, "created")
    return _out(created)


@router.patch("/api/v1/conversations/{session_id}", response_model=ConversationOut)
async def rename_conversation(
    server: State, caller: CurrentCaller, session_id: SessionPath, request: Rename
) -> ConversationOut:
    """Rename one of your conversations (404 when it is not yours)."""
    renamed = await server.assistant.rename_conversation(caller.user_id, session_id, request.title)
    await _announce(server, caller.user_id, session_id, "renamed")
    return _out(renamed)


@router.delete("/api/v1/conversations/{session_id}", response_model=DeletedConversation)
async def delete_conversation(
    server: State, caller: CurrentCaller, session_id: SessionPath
) -> DeletedConversation:
    """Delete one of your conversations and its turns; its memories stay."""
    count = await server.assistant.delete_conversation(caller.user_id, session_id)
    await server.changed(caller.user_id)
    await _announce(server, caller.user_id, session_id, "deleted")
    return DeletedConversation(session_id=session_id, deleted_turns=count)


@router.get("/api/v1/conversations/{session_id}/turns", response_model=TurnList)
async def conversation_turns(
    server: State,
    caller: CurrentCaller,
    session_id: SessionPath,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> TurnList:
    """The last ``limit`` turns of one of your conversations, oldest first."""
    turns = await server.assistant.conversation_turns(caller.user_id, session_id, limit)
    return TurnList(items=[history_item(turn, username=caller.username) for turn in turns])


@router.put("/api/v1/turns/{turn_id}/rating", response_model=RatedTurn)
async def rate(
    server: State, caller: CurrentCaller, turn_id: TurnPath, request: RatingRequest
) -> RatedTurn:
    """Rate the reply of one of your turns, thumbs up or down, or take the rating
    back (404 when the turn is not yours). Learning trains on replies rated up and
    leaves out those rated down."""
    rated = await rate_turn(server, caller.user_id, turn_id, request.stored())
    await announce_rating(server, caller.user_id, rated, None)
    return rated
