"""Running plugin work in place or in a worker thread, by its size.

A thread hand-off costs a fraction of a millisecond; parsing a short message
costs less. Hooks that do pure CPU work whose cost grows with the text use
:func:`run_by_size` so short inputs run in place and long ones never block the
event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

INLINE_CHARS = 300
"""Texts up to this many characters are processed on the event loop."""


async def run_by_size(size: int, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``function(*args, **kwargs)`` in place when ``size`` is small, else in a thread."""
    if size <= INLINE_CHARS:
        return function(*args, **kwargs)
    return await asyncio.to_thread(function, *args, **kwargs)
