"""Reads started before they are asked for: alongside the block's multicall, not after it.

The journal's reads at a new head (the receipts of open transactions, the account's
transaction counts, its balance, the block's fee history) do not depend on the block's
decisions, only the use made of them does. :class:`ReadAhead` starts them at the head and
hands each answer, once, to the code that asks for the same thing later in the tick; what
was not read ahead (or was already handed out) is read then, as before. So an answer is
never older than the head it was started at, and a second question (the balance after a
first transaction of the block) is asked again.

A read that fails ahead raises where it is taken, inside the caller's retry policy, whose
next attempt reads afresh. Reads of a previous head that nobody took are cancelled when the
next head begins.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class ReadAhead:
    """Reads in flight for one head, keyed by what they read; each answered at most once."""

    def __init__(self) -> None:
        self.head: int | None = None
        self._tasks: dict[Hashable, asyncio.Task[Any]] = {}

    def begin(self, head: int | None) -> None:
        """A new head: what the last one read ahead and nobody took is dropped (None: no
        head, at shutdown)."""
        self.head = head
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()

    def start(self, key: Hashable, read: Callable[[], Awaitable[T]]) -> asyncio.Task[T]:
        """Start ``read`` now; :meth:`take` with the same key gets its answer."""
        task: asyncio.Task[T] = asyncio.ensure_future(read())
        task.add_done_callback(_retrieve)
        old = self._tasks.pop(key, None)
        if old is not None:
            old.cancel()
        self._tasks[key] = task
        return task

    async def take(self, key: Hashable, read: Callable[[], Awaitable[T]]) -> T:
        """The answer read ahead for ``key`` (once), else ``read()`` now."""
        task = self._tasks.pop(key, None)
        if task is None:
            return await read()
        result: T = await asyncio.shield(task) if not task.done() else task.result()
        return result


def _retrieve(task: asyncio.Task[Any]) -> None:
    """A read ahead that nobody takes must not log "exception was never retrieved"."""
    if not task.cancelled():
        task.exception()
