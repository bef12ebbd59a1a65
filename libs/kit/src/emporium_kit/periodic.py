"""A job run every few seconds for the life of a service (deadlines, expiries, clean-ups)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import psycopg
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)


class Periodic:
    """Runs ``job()`` every ``interval`` seconds; a database outage is logged and retried on the
    next tick. A runtime resource: started and stopped with the service. ``logs_itself``: the
    job writes its own line when it did something (say, one with more to say than a count)."""

    def __init__(
        self, name: str, job: Callable[[], Awaitable[int]], *, interval: float, logs_itself: bool = False
    ) -> None:
        self.name = name
        self._job = job
        self._interval = interval
        self._logs_itself = logs_itself
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                if (done := await self._job()) and not self._logs_itself:
                    log.info("%s: %d done", self.name, done)
            except asyncio.CancelledError:
                raise
            except (SQLAlchemyError, psycopg.Error, OSError) as exc:
                log.warning("%s failed, retrying in %.1fs: %r", self.name, self._interval, exc)
            except Exception:  # a bug in one run must not end the job for the life of the service
                log.exception("%s failed unexpectedly; running again in %.1fs", self.name, self._interval)
