"""Async UDFs for tests/asynchronous.rs (no network: asyncio.sleep stands
for a wait on a server)."""
import asyncio
import os
import signal

import coil

IN_FLIGHT = 0


async def in_flight(x: int) -> int:
    """x * 1000 + how many rows of this executor were in flight when row x
    started (itself included); each waits 20 ms."""
    global IN_FLIGHT
    IN_FLIGHT += 1
    seen = IN_FLIGHT
    try:
        await asyncio.sleep(0.02)
    finally:
        IN_FLIGHT -= 1
    return x * 1000 + seen


async def double(x: int) -> int:
    """2x, after a wait that differs from row to row (so rows finish out
    of order)."""
    await asyncio.sleep(0.001 * (7 - x % 7))
    return 2 * x


async def plus_one(x: int) -> int:
    """x + 1 without ever awaiting."""
    return x + 1


async def stuck_on_three(x: int) -> int:
    """x, at once; row 3 waits ten seconds."""
    await asyncio.sleep(10 if x == 3 else 0.001)
    return x


def busy_loop(x: int) -> int:
    """Blocks the event loop: a synchronous wait inside async code."""
    import time
    time.sleep(10)
    return x


async def blocks_the_loop(x: int) -> int:
    """Row 2 blocks the event loop with synchronous code."""
    if x == 2:
        busy_loop(x)
    await asyncio.sleep(0.001)
    return x


CALLS = {}


def _count(x):
    CALLS[x] = CALLS.get(x, 0) + 1
    return CALLS[x]


def flaky(x: int) -> int:
    """10x, on the third call of each x: the first two raise
    ConnectionError."""
    if _count(x) < 3:
        raise ConnectionError(f"connection to row {x}'s server refused")
    return 10 * x


async def flaky_async(x: int) -> int:
    """flaky, async."""
    await asyncio.sleep(0.001)
    return flaky(x)


def wrong(x: int) -> int:
    """Always raises ValueError (never retried unless asked)."""
    _count(x)
    raise ValueError(f"no answer for {x}")


async def asks_to_wait(x: int) -> int:
    """x, on the second call; the first asks to be retried after 0.3 s."""
    if _count(x) < 2:
        raise coil.RetryAfter(0.3)
    return x


async def asks_too_much(x: int) -> int:
    """Asks to be retried after an hour."""
    raise coil.RetryAfter(3600)


def not_awaitable(x):
    """Declared async (coil_async) but returns a plain value."""
    return x


not_awaitable.coil_async = True


async def dies_once(marker: str, x: int) -> int:
    """x + 1; the first time row 100 runs (no MARKER file yet), it kills
    its worker while the rows around it are in flight."""
    await asyncio.sleep(0.01)
    if x == 100 and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    await asyncio.sleep(0.01)
    return x + 1


async def words(s: str):
    """An async generator: refused."""
    for w in s.split():
        yield w


class Session:
    """An async class UDF: open() and close() are async and make the
    executor's one session; eval checks it runs on the same loop."""

    async def open(self):
        self.loop = asyncio.get_running_loop()
        self.prefix = "row-"

    async def eval(self, x: int) -> str:
        assert asyncio.get_running_loop() is self.loop, "a different loop"
        await asyncio.sleep(0.001)
        return f"{self.prefix}{x}"

    async def close(self):
        await asyncio.sleep(0)
