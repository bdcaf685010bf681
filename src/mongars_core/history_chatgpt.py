"""The ChatGPT export (``conversations.json``) as :mod:`mongars_core.history_io` reads it.

Each conversation's current branch, from ``current_node`` back to the root,
becomes a session of its title; each user message and the assistant messages
after it, a turn. System, tool and hidden messages and non-text parts are left out.

A conversation's session is ``chatgpt-`` and its id; an id that is not a safe session
id as it is (other characters, too long) is made one and given a short hash of itself,
so that ``a/b`` and ``a-b`` stay two sessions; a conversation whose id an earlier one
of the file has already taken gets ``-2``, ``-3``... and a warning.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

from mongars_core.errors import HistoryFormatError
from mongars_core.history_io import (
    ImportedTurn,
    ParsedHistory,
    check_message,
    check_reply,
    clean_title,
    loads,
    parse_moment,
    skipped_message,
)
from mongars_core.settings import Settings
from mongars_core.validation import ID_PATTERN

_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_.@-]")


def parse_chatgpt(text: str, settings: Settings) -> ParsedHistory:
    conversations = loads(text)
    if isinstance(conversations, dict):
        conversations = [conversations]  # one conversation on its own
    if not isinstance(conversations, list):
        raise HistoryFormatError("a ChatGPT export is a JSON list of conversations")
    history = ParsedHistory("chatgpt")
    taken: dict[str, int] = {}  # session id -> the conversation that has it
    for index, conversation in enumerate(conversations):
        where = f"conversation {index}"
        if not isinstance(conversation, dict):
            raise HistoryFormatError(f"{where}: expected a JSON object")
        title = clean_title(conversation.get("title"), where)
        if title:
            where = f"conversation {index} ({title!r})"
        session_id = _chatgpt_session(conversation, index)
        if session_id in taken:
            first, number, base = taken[session_id], 2, session_id[:140]
            while f"{base}-{number}" in taken:
                number += 1
            renamed = f"{base}-{number}"
            history.warnings.append(
                f"{where}: its id is conversation {first}'s too; imported as session {renamed!r}"
            )
            session_id = renamed
        taken[session_id] = index
        if title:
            history.titles[session_id] = title
        started = conversation.get("create_time")
        for message, reply, moment, node_id in _chatgpt_turns(conversation, where):
            at = f"{where}, node {node_id!r}"
            if moment is None:
                moment = started
            if moment is None:
                raise HistoryFormatError(f"{at}: neither it nor its conversation has a create_time")
            checked = check_message(settings, message, at)
            answer = check_reply(reply, at)
            created_at = parse_moment(moment, at)
            if checked is None:
                history.warnings.append(skipped_message(at))
                continue
            history.turns.append(ImportedTurn(session_id, checked, answer, created_at, at))
    return history


def _chatgpt_session(conversation: dict[str, Any], index: int) -> str:
    ident = conversation.get("conversation_id") or conversation.get("id")
    if isinstance(ident, str) and ident:
        safe = _UNSAFE_ID.sub("-", ident)
        if safe == ident and len(ident) <= 140:
            session_id = "chatgpt-" + ident
        else:  # a hash of the id as it was keeps apart ids made alike
            digest = hashlib.sha256(ident.encode("utf-8", "surrogatepass")).hexdigest()[:10]
            session_id = f"chatgpt-{safe[:120]}-{digest}"
    else:
        seed = repr([conversation.get("title"), conversation.get("create_time"), index])
        session_id = (
            "chatgpt-" + hashlib.sha256(seed.encode("utf-8", "surrogatepass")).hexdigest()[:24]
        )
    assert ID_PATTERN.fullmatch(session_id)
    return session_id


def _chatgpt_turns(
    conversation: dict[str, Any], where: str
) -> Iterable[tuple[str, str, object, str]]:
    """(message, reply, create_time, node id) of each user message on the current branch."""
    mapping = conversation.get("mapping")
    if not isinstance(mapping, dict):
        raise HistoryFormatError(f"{where}: 'mapping' must be an object of nodes")
    node_id = conversation.get("current_node")
    if node_id is None:
        if not mapping:
            return []
        leaves = [
            key
            for key, node in mapping.items()
            if isinstance(node, dict) and not node.get("children")
        ]
        node_id = leaves[-1] if leaves else next(iter(mapping))
    branch: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    while node_id is not None:
        if not isinstance(node_id, str) or node_id not in mapping:
            last = f"node {branch[-1][0]!r} names parent" if branch else "'current_node' is"
            raise HistoryFormatError(f"{where}: {last} {node_id!r}, which is not in 'mapping'")
        if node_id in seen:
            raise HistoryFormatError(f"{where}: node {node_id!r} is its own ancestor (a cycle)")
        seen.add(node_id)
        node = mapping[node_id]
        if not isinstance(node, dict):
            raise HistoryFormatError(f"{where}: node {node_id!r} must be an object")
        branch.append((node_id, node))
        node_id = node.get("parent")
    branch.reverse()

    turns: list[tuple[str, str, object, str]] = []
    pending: tuple[str, list[str], object, str] | None = None
    for node_id, node in branch:
        spoken = _chatgpt_message(node.get("message"), f"{where}, node {node_id!r}")
        if spoken is None:
            continue
        role, text, moment = spoken
        if role == "user":
            if pending is not None:
                turns.append((pending[0], "\n\n".join(pending[1]), pending[2], pending[3]))
            pending = (text, [], moment, node_id)
        elif pending is not None:  # an assistant message (one before any user's is dropped)
            pending[1].append(text)
    if pending is not None:
        turns.append((pending[0], "\n\n".join(pending[1]), pending[2], pending[3]))
    return turns


def _chatgpt_message(message: object, where: str) -> tuple[str, str, object] | None:
    """(role, text, create_time) of a user or assistant message; ``None`` for the rest."""
    if message is None:
        return None
    if not isinstance(message, dict):
        raise HistoryFormatError(f"{where}: 'message' must be an object")
    author = message.get("author")
    role = author.get("role") if isinstance(author, dict) else None
    if not isinstance(role, str):
        raise HistoryFormatError(f"{where}: the message has no author role")
    if role not in ("user", "assistant"):
        return None  # system prompts, tools, plugins
    metadata = message.get("metadata")
    if isinstance(metadata, dict) and metadata.get("is_visually_hidden_from_conversation"):
        return None
    content = message.get("content")
    if content is None:
        return None
    if not isinstance(content, dict):
        raise HistoryFormatError(f"{where}: 'content' must be an object")
    parts = content.get("parts", [])
    if not isinstance(parts, list):
        raise HistoryFormatError(f"{where}: 'content.parts' must be a list")
    # Images and files come as objects among the parts: only the text is kept.
    text = "\n".join(part for part in parts if isinstance(part, str)).strip()
    if not text:
        return None
    moment = message.get("create_time")
    if moment is not None and (isinstance(moment, bool) or not isinstance(moment, int | float)):
        raise HistoryFormatError(f"{where}: 'create_time' must be a number")
    return role, text, moment
