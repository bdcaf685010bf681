"""Stand-in LLM backends for tests: one that answers at once, one that follows a script.

Both keep every :class:`~mongars_core.types.GenerationRequest` they get in
``requests``, so a test can check the prompt a plugin built. They stream
their replies delta by delta, as a model does, and raise where a script says
so, as a failing model does. :class:`BackendPlugin` registers any backend
under a name.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeAlias

from mongars_core import hookimpl

if TYPE_CHECKING:
    from mongars_core.hookspecs import Register
    from mongars_core.llm import LLMBackend
    from mongars_core.types import GenerationRequest

DEFAULT_BACKEND = "instant"
"""The backend name the kit's settings choose and :class:`BackendPlugin` registers by default."""

Delta: TypeAlias = str | BaseException
"""A piece of a streamed reply, or the error the model raises at that point."""

ScriptStep: TypeAlias = str | BaseException | Sequence[Delta]
"""One reply of a :class:`ScriptedBackend`: a text sent word by word, an error
raised before anything is sent, or the exact deltas (an error among them is
raised there, mid-stream)."""


def words(text: str) -> list[str]:
    """``text`` as a model streams it: ``["You", " said:", " hi"]``."""
    return [word if index == 0 else " " + word for index, word in enumerate(text.split(" "))]


def last_user_message(request: GenerationRequest) -> str:
    """The content of the request's last user message (``""`` if there is none)."""
    users = [message.content for message in request.messages if message.role == "user"]
    return users[-1] if users else ""


class _RecordingBackend:
    """Streams what :meth:`deltas` returns, ``delay_s`` before each delta; keeps requests."""

    def __init__(self, *, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.requests: list[GenerationRequest] = []

    def deltas(self, request: GenerationRequest) -> Sequence[Delta]:
        raise NotImplementedError

    async def generate(self, request: GenerationRequest) -> str:
        return "".join([delta async for delta in self.stream(request)])

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        self.requests.append(request)
        for delta in self.deltas(request):
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if isinstance(delta, BaseException):
                raise delta
            yield delta


class InstantBackend(_RecordingBackend):
    """Answers at once with ``You said: <the user's message>``, word by word.

    ``reply(request)`` replaces that text; it may be reassigned mid-test, and
    an exception it raises is the backend's failure. ``delay_s`` waits before
    each word, so a test can act mid-stream.
    """

    def __init__(
        self, reply: Callable[[GenerationRequest], str] | None = None, *, delay_s: float = 0.0
    ) -> None:
        super().__init__(delay_s=delay_s)
        self.reply = reply or (lambda request: f"You said: {request.messages[-1].content}")

    def deltas(self, request: GenerationRequest) -> Sequence[Delta]:
        return words(self.reply(request))


class ScriptedBackend(_RecordingBackend):
    """Replies from a script: ``ScriptedBackend("Hello!", ["Wor", "king"], TimeoutError())``.

    Each generation takes the next of ``replies``, unless the user's message
    (stripped) is a key of ``by_message``, whose reply is then used every time
    it is asked. A generation with no reply left raises ``LookupError``, so a
    test that calls the model more often than it meant to fails.
    """

    def __init__(
        self,
        *replies: ScriptStep,
        by_message: Mapping[str, ScriptStep] | None = None,
        delay_s: float = 0.0,
    ) -> None:
        super().__init__(delay_s=delay_s)
        self.replies = list(replies)
        self.by_message = dict(by_message or {})

    def deltas(self, request: GenerationRequest) -> Sequence[Delta]:
        message = last_user_message(request).strip()
        if message in self.by_message:
            step = self.by_message[message]
        elif self.replies:
            step = self.replies.pop(0)
        else:
            raise LookupError(f"the script has no reply left for {message!r}")
        if isinstance(step, str):
            return words(step)
        if isinstance(step, BaseException):
            return [step]
        return list(step)


class BackendPlugin:
    """A plugin that registers ``backend`` as the LLM backend ``name``.

    ``backend`` is any :class:`~mongars_core.llm.LLMBackend`: a kit backend or
    the plugin's own.
    """

    def __init__(self, backend: LLMBackend, name: str = DEFAULT_BACKEND) -> None:
        self.backend = backend
        self.name = name

    @hookimpl
    def mongars_register_llm_backends(self, register: Register) -> None:
        register(self.name, self.backend)
