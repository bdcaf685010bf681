"""Self-training (the bundled ``learning`` plugin, extra ``train``).

A consenting user's turns are scrubbed (``mongars_scrub``; the bundled
scrubber is ``trylast``, so a user's own scrubbers run first and this one sees
their output), curated, and trained into a LoRA adapter for that user in a
low-priority subprocess; an adapter reaches the user only after the
evaluation gate and an approval. docs/learning.md describes the whole loop.

What the plugin registers: the ``learning`` settings section, the ``learn``
command, the learning routes (``/api/v1/learning``,
``/api/v1/admin/learning``), and the idle-time scheduler, started with the
assistant when ``learning.schedule`` is on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mongars_core import hookimpl
from mongars_core.hookspecs import Register, RegisterSection
from mongars_core.services import Services, StashKey
from mongars_core.settings import Settings
from mongars_core.storage.unit_of_work import UnitOfWork
from mongars_core.types import Reply, Turn
from mongars_plugins.learning.scrub import Span, find_spans, scrub
from mongars_plugins.learning.settings import LEARNING

__all__ = ["LEARNING", "Span", "find_spans", "idle_scheduler", "learner", "scrub"]

if TYPE_CHECKING:
    from mongars_plugins.learning.runner import Learner
    from mongars_plugins.learning.scheduler import IdleScheduler

LEARNER: StashKey[Learner] = StashKey("learning.learner")
SCHEDULER: StashKey[IdleScheduler] = StashKey("learning.scheduler")


def learner(services: Services) -> Learner:
    """The assistant's :class:`~mongars_plugins.learning.runner.Learner` (one per assistant)."""
    from mongars_plugins.learning.runner import Learner

    found = services.stash.get(LEARNER, None)
    if found is None:
        found = services.stash.setdefault(LEARNER, Learner(services))
    return found


def idle_scheduler(services: Services) -> IdleScheduler | None:
    """The idle-time scheduler, when it runs in this process. (Not named ``scheduler``:
    importing the ``scheduler`` submodule would replace a package attribute of that name.)"""
    return services.stash.get(SCHEDULER, None)


@hookimpl
def mongars_register_settings(register: RegisterSection) -> None:
    register(LEARNING)


@hookimpl
def mongars_register_commands(register: Register, settings: Settings) -> None:
    from mongars_plugins.learning.cli import learn_app

    register("learn", learn_app)


@hookimpl
def mongars_register_routers(register: Register, settings: Settings) -> None:
    from mongars_plugins.learning.routes import admin_router, router

    register("learning", router)
    register("learning_admin", admin_router)


@hookimpl
async def mongars_startup(services: Services) -> None:
    if not services.settings.section(LEARNING).schedule:
        return
    from mongars_plugins.learning.scheduler import IdleScheduler

    found = IdleScheduler(learner(services))
    services.stash[SCHEDULER] = found
    found.start()


@hookimpl
async def mongars_shutdown(services: Services) -> None:
    found = idle_scheduler(services)
    if found is not None:
        await found.stop()


@hookimpl
async def mongars_turn_completed(turn: Turn, reply: Reply, writes: UnitOfWork) -> None:
    # async: awaited in the loop, no worker thread for a clock read
    found = idle_scheduler(turn.services)
    if found is not None:
        found.touch()


@hookimpl
async def mongars_erase_user(services: Services, user_id: str) -> None:
    """Forget me: a run or validation on the user's data (on this node, in any
    process) is stopped, then the records it wrote while stopping are deleted (the
    core deleted the others). One that does not stop in time is an error: forget again."""
    from mongars_plugins.learning.erasure import stop_and_forget

    await stop_and_forget(learner(services), user_id)


@hookimpl(trylast=True)
def mongars_scrub(text: str) -> str | None:
    """Replace e-mail addresses, phones, IBANs, cards, IPs, credentials and ids."""
    scrubbed = scrub(text)
    return scrubbed if scrubbed != text else None
