"""ocirt.steps and the asyncio driver, without containers: waits, deadlines, the lock, cancellation."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from ocirt.aio import drive
from ocirt.steps import Readable, StepLock, block, sleep


def read_one(fd: int):
    """A step function: wait for `fd`, then read a byte."""
    ready = yield Readable((fd,))
    assert fd in ready
    return os.read(fd, 1)


@pytest.fixture
def pipe():
    r, w = os.pipe2(os.O_CLOEXEC)
    yield r, w
    for fd in (r, w):
        os.close(fd)


def test_block_resumes_on_a_readable_fd(pipe):
    r, w = pipe
    os.write(w, b"x")
    assert block(read_one(r)) == b"x"


def test_block_resumes_with_nothing_ready_at_the_deadline(pipe):
    def waits():
        return (yield Readable((pipe[0],), time.monotonic() + 0.01))

    assert block(waits()) == set()


def test_drive_waits_on_the_loop(pipe):
    r, w = pipe

    async def main():
        loop = asyncio.get_running_loop()
        loop.call_soon(os.write, w, b"y")
        return await drive(read_one(r))

    assert asyncio.run(main()) == b"y"


def test_drive_shares_one_fd_among_many_waiters(pipe):
    """A loop allows one reader per fd: every step waiting on it must still wake."""
    r, w = pipe

    def peek():
        ready = yield Readable((r,))
        return r in ready

    async def main():
        waiters = [asyncio.ensure_future(drive(peek())) for _ in range(5)]
        await asyncio.sleep(0)
        os.write(w, b"z")
        return await asyncio.gather(*waiters)

    assert asyncio.run(main()) == [True] * 5


def test_cancelling_drive_closes_the_steps(pipe):
    closed = []

    def waits_forever():
        try:
            yield Readable((pipe[0],))
        finally:
            closed.append(True)

    async def main():
        task = asyncio.ensure_future(drive(waits_forever()))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert closed == [True]


def test_the_lock_excludes_another_task_across_its_waits():
    lock = StepLock()
    order = []

    def worker(name, pause):
        with (yield from lock.hold()):
            order.append(f"{name} in")
            yield from sleep(pause)
            order.append(f"{name} out")

    async def main():
        first = asyncio.ensure_future(drive(worker("a", 0.02)))
        await asyncio.sleep(0)  # a holds the lock and waits
        await asyncio.gather(first, drive(worker("b", 0)))

    asyncio.run(main())
    assert order == ["a in", "a out", "b in", "b out"]


def test_the_lock_is_reentrant_for_its_holder():
    lock = StepLock()

    def nested():
        with (yield from lock.hold()):
            with (yield from lock.hold()):
                return True

    assert block(nested())
    assert asyncio.run(drive(nested()))


def test_the_lock_excludes_another_thread_and_wakes_it():
    lock = StepLock()
    events = []

    def other():
        with lock.held():
            events.append("other")

    with lock.held():
        t = threading.Thread(target=other)
        t.start()
        waiting_for(lock)
        events.append("main")
    t.join(10)
    assert not t.is_alive() and events == ["main", "other"]


def waiting_for(lock: StepLock, timeout: float = 10) -> None:
    """Until another thread waits for `lock` (no event says so: look every millisecond)."""
    deadline = time.monotonic() + timeout
    while lock._waiting == 0:
        assert time.monotonic() < deadline, "no thread ever waited for the lock"
        time.sleep(0.001)


def test_the_lock_not_blocking_says_it_is_taken():
    lock = StepLock()
    results = []

    def try_it():
        results.append(block(lock.acquire(blocking=False)))

    with lock.held():
        t = threading.Thread(target=try_it)
        t.start()
        t.join(10)
    assert results == [0]
