"""Forgetting a user in the learning plugin (its ``mongars_erase_user``).

The core deleted the user's consent and run records before the plugins are
called; a run training on their data may still be going, though, and would
register an adapter learnt from data that is gone, and write its records
again as it stops. So that run is asked to stop (the cancel request any
process's runner reads), awaited, and the records it wrote meanwhile deleted.
"""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import delete
from sqlmodel import col

from mongars_core.storage.models import PluginStateRecord
from mongars_plugins.learning.errors import TrainingFailedError
from mongars_plugins.learning.runner import Learner
from mongars_plugins.learning.runs import CONSENT, RUNS

STOP_WAIT_S = 30.0
"""How long a run on the forgotten user's data gets to stop (it stops within a second
or two: the runner reads the request every half second, the worker gets SIGTERM)."""


async def stop_and_forget(learner: Learner, user_id: str, wait_s: float = STOP_WAIT_S) -> None:
    holder = learner.lock.holder()
    if holder is None or holder.user_id != user_id:
        return
    learner.request_cancel(expected=holder)
    deadline = time.monotonic() + wait_s
    while True:
        current = learner.lock.holder()
        if current is None or current.run_id != holder.run_id:
            break
        if time.monotonic() > deadline:
            raise TrainingFailedError(
                f"the run {holder.run_id} on the data of {user_id!r} has not stopped yet: "
                "forget them again in a moment"
            )
        await asyncio.sleep(0.1)
    store = learner.services.store
    async with store.session(write=True) as session:
        await session.execute(
            delete(PluginStateRecord).where(
                col(PluginStateRecord.user_id) == user_id,
                col(PluginStateRecord.namespace).in_([CONSENT, RUNS]),
            )
        )
        await session.commit()
