"""Stopping background tasks so that a shutdown never hangs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import structlog

log = structlog.get_logger(__name__)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any] | None], *, timeout_s: float = 10.0) -> None:
    """Cancel the tasks and wait until they have ended.

    A cancellation can be lost when it lands inside a client library's own clean-up (redis-py's connection
    release, for one): the task then goes on, and a plain ``await task`` waits forever. So a task that is
    still running is cancelled again every half second, up to ``timeout_s``; after that it is left behind
    with a warning rather than holding the shutdown. Exceptions of the ended tasks are retrieved (and
    dropped: they are stopping).
    """
    pending = {t for t in tasks if t is not None and not t.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while pending:
        for task in pending:
            task.cancel()
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.warning("tasks did not stop", tasks=sorted(t.get_name() for t in pending))
            return
        done, pending = await asyncio.wait(pending, timeout=min(0.5, remaining))
        for task in done:
            if not task.cancelled():
                task.exception()
