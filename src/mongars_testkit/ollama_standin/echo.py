"""Fast, deterministic stand-ins for a model: the Ollama stand-in's ``--echo`` mode."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Sequence

import numpy as np

from mongars_core.llm import Vectors
from mongars_core.types import GenerationRequest

_WORD = re.compile(r"\w+")
_DELTA = re.compile(r"\s*\S+")


class EchoBackend:
    """An :class:`~mongars_core.llm.LLMBackend` that replies with the last user message.

    The reply comes word by word (``"the"``, ``" quick"``, ...), cut at the
    first stop string and at ``max_new_tokens`` words. With a
    ``request.prefix`` that begins the reply, it continues after it, as a model
    continues a reply another backend began. ``delay_s`` waits
    before each word after the first, so a test can act mid-stream;
    ``fail_after`` raises after that many words, like a crashing model.
    """

    def __init__(self, delay_s: float = 0.0, fail_after: int | None = None) -> None:
        self.delay_s = delay_s
        self.fail_after = fail_after
        self.requests: list[GenerationRequest] = []
        self.words_sent = 0
        self.streams_closed_early = 0
        """Streams whose consumer went away before the reply was complete."""

    async def generate(self, request: GenerationRequest) -> str:
        return "".join([delta async for delta in self.stream(request)])

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        self.requests.append(request)
        text = next(
            (message.content for message in reversed(request.messages) if message.role == "user"),
            "",
        )
        for stop in request.stop:
            if stop and stop in text:
                text = text[: text.index(stop)]
        reply = " ".join(text.split())
        if request.prefix and reply.startswith(request.prefix):
            reply = reply[len(request.prefix) :]  # continue the reply another backend began
        try:
            for index, word in enumerate(_DELTA.findall(reply)[: request.max_new_tokens]):
                if self.fail_after is not None and index >= self.fail_after:
                    raise RuntimeError("the model runner stopped unexpectedly")
                if index and self.delay_s:
                    await asyncio.sleep(self.delay_s)
                self.words_sent += 1
                yield word
        except (GeneratorExit, asyncio.CancelledError):
            self.streams_closed_early += 1
            raise


class HashingEmbedder:
    """An :class:`~mongars_core.llm.Embedder` from hashed words: same words, same vector.

    Texts that share words get similar vectors, which is enough to test
    semantic recall without a model.
    """

    def __init__(self, dimension: int = 64) -> None:
        self.dimension = dimension

    def embed(self, texts: Sequence[str]) -> Vectors:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()) or [""]:
                digest = hashlib.blake2b(word.encode("utf-8"), digest_size=32).digest()
                for offset in range(0, len(digest), 4):  # eight signed positions per word
                    number = int.from_bytes(digest[offset : offset + 4], "big")
                    vectors[row, number % self.dimension] += 1.0 if number & 1 else -1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors[norms[:, 0] == 0, 0] = 1.0
        return np.asarray(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), np.float32)
