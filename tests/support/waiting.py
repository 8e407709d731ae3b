"""Waiting for a state instead of sleeping for a guess: call a check until it holds, or a deadline passes.

`wait_until` is for plain code and threads, `until` for coroutines. Both call the check at least once, and
the deadline only stops a broken test from hanging: a test that needs the state asserts on the value returned
(or passes `message`, which turns a timeout into an AssertionError).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["until", "wait_until"]

T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout: float = 10.0, *, interval: float = 0.01,
               ignore: tuple[type[BaseException], ...] = (), message: str | None = None) -> T | None:
    """Call `check()` every `interval` s until it returns something truthy; return that value.

    On the deadline, return the last value (falsy), or raise AssertionError(`message`) when one is given.
    Exceptions of the `ignore` types count as "not yet" (a server still starting, say); the value is then None.
    """
    deadline = time.monotonic() + timeout
    while True:
        value: T | None = None
        try:
            value = check()
        except ignore:
            pass
        if value:
            return value
        if time.monotonic() > deadline:
            if message is not None:
                raise AssertionError(message)
            return value
        time.sleep(interval)


async def until(check: Callable[[], T], timeout: float = 10.0, *, interval: float = 0.02,  # noqa: ASYNC109 - a test deadline
                message: str = "condition never became true") -> T:
    """`wait_until` for coroutines (sleeps on the event loop); fails with `message` on the deadline."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, message
        await asyncio.sleep(interval)
    return value
