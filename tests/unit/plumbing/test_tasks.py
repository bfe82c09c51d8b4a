"""cancel_and_wait: a shutdown ends even when a task loses its first cancellation."""

from __future__ import annotations

import asyncio

from shared.tasks import cancel_and_wait


async def _swallows_one_cancel(stopped: list[str]) -> None:
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        pass  # what a library's clean-up path can do by mistake
    try:
        await asyncio.sleep(3600)
    finally:
        stopped.append("second cancel")


async def _refuses_to_stop(release: asyncio.Event) -> None:
    while not release.is_set():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            continue


async def _fails() -> None:
    raise RuntimeError("boom")


async def test_a_swallowed_cancellation_is_repeated() -> None:
    stopped: list[str] = []
    task = asyncio.create_task(_swallows_one_cancel(stopped))
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait([task]), 5)
    assert task.done() and stopped == ["second cancel"]


async def test_a_task_that_never_stops_does_not_hold_the_shutdown() -> None:
    release = asyncio.Event()
    task = asyncio.create_task(_refuses_to_stop(release))
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait([task], timeout_s=0.3), 5)
    assert not task.done(), "left behind, not awaited forever"
    release.set()  # the test's own clean-up of the stubborn task
    task.cancel()
    await asyncio.wait({task}, timeout=5)
    assert task.done()


async def test_ended_and_missing_tasks_are_fine() -> None:
    failed = asyncio.create_task(_fails())
    await asyncio.sleep(0)
    await cancel_and_wait([failed, None])
    assert failed.done() and isinstance(failed.exception(), RuntimeError)
