"""Stopping the Redis backend's own tasks: a cancellation a task swallows does not leave stop
waiting for ever."""

from __future__ import annotations

import asyncio

import pytest

from app.backends.redis.commands import stop_task

pytestmark = pytest.mark.anyio


async def test_a_task_that_swallows_its_cancellation_is_cancelled_again_until_it_ends() -> None:
    # As Python 3.11's asyncio.timeout may do when a cancellation and the timeout come at the
    # same instant: the task sees TimeoutError, takes it for Redis being slow, and goes on.
    swallowed = 0

    async def beats() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1

    task = asyncio.get_running_loop().create_task(beats())
    await asyncio.sleep(0)
    await asyncio.wait_for(stop_task(task), 5)
    assert task.cancelled()
    assert swallowed == 1
    await stop_task(task)  # ended already: nothing to do
