"""Blocking work written once, as generators, and driven two ways.

A step function is a generator that yields `Readable(fds, deadline)`
whenever it must wait: for a pidfd (its process exited), an inotify fd, a
pipe or a socket to become readable, or for the deadline to pass. It is
resumed with the set of fds that are readable (empty: the deadline passed,
which the step function turns into its own Timeout, or into a retry).

`block(steps)` drives it with poll(2), for the blocking API (the GIL is
released while polling, and signal handlers run: Ctrl-C interrupts);
`ocirt.aio` drives the same generators with the event loop's add_reader,
so the asyncio API needs no thread per container. A verb is written once,
as steps (`start_steps`), and derived: `start = blocking(start_steps)`,
and `ocirt.aio.awaited(Container.start_steps)` for the asyncio API. A driver that stops
early (an exception, a cancelled task) closes the generator, so its
cleanup (killing what it started, closing its fds) runs.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import select
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, ContextManager, Generator, Iterator, Optional, ParamSpec, Set, Tuple, TypeVar

T = TypeVar("T")
P = ParamSpec("P")

MAX_POLL_MS = 2**31 - 1  # poll's timeout is a C int


@dataclass(frozen=True)
class Readable:
    """Resume me when one of `fds` is readable, or at `deadline` (time.monotonic(); None: never)."""

    fds: Tuple[int, ...]
    deadline: Optional[float] = None


Steps = Generator[Readable, Set[int], T]


def deadline_after(timeout: Optional[float]) -> Optional[float]:
    return None if timeout is None else time.monotonic() + timeout


def sleep(seconds: float) -> Generator[Readable, Set[int], None]:
    """Wait `seconds` (for the few waits that have no fd to wait on)."""
    yield Readable((), time.monotonic() + seconds)


def done(value: T) -> Steps[T]:
    """Steps that end at once with `value` (where a step function is expected and nothing is to wait for)."""
    return value
    yield  # never reached: it makes this a generator


def ms_left(deadline: Optional[float]) -> int:
    """poll's timeout for `deadline`: -1 for none, else milliseconds rounded up."""
    if deadline is None:
        return -1
    return min(max(0, math.ceil((deadline - time.monotonic()) * 1000)), MAX_POLL_MS)


class Cancelled(BaseException):
    """block() saw its `cancel` descriptor readable, and closed the steps."""


def block(steps: Steps[T], cancel: Optional[int] = None) -> T:
    """Run `steps` to its end in this thread, waiting with poll(2).

    With `cancel` (a descriptor another thread makes readable), stops at the
    next wait once it is readable: the steps are closed (their cleanup runs)
    and Cancelled is raised.
    """
    ready: Optional[Set[int]] = None
    try:
        while True:
            request = steps.send(ready) if ready is not None else next(steps)
            if cancel is not None:
                request = Readable(request.fds + (cancel,), request.deadline)
            ready = _poll(request)
            if cancel is not None and cancel in ready:
                raise Cancelled
    except StopIteration as done:
        value: T = done.value
        return value
    finally:
        steps.close()


def blocking(steps: Callable[P, Steps[T]]) -> Callable[P, T]:
    """The blocking form of the step function `steps`: the same arguments
    and docstring, run to its end by `block`. Its name drops "_steps"."""

    @functools.wraps(steps)
    def verb(*args: P.args, **kwargs: P.kwargs) -> T:
        return block(steps(*args, **kwargs))

    verb.__name__ = steps.__name__.removesuffix("_steps")
    verb.__qualname__ = steps.__qualname__.removesuffix("_steps")
    return verb


def _poll(request: Readable) -> Set[int]:
    poller = select.poll()
    for fd in request.fds:
        poller.register(fd, select.POLLIN)
    while True:
        ready = {fd for fd, _ in poller.poll(ms_left(request.deadline))}
        if ready or request.deadline is None or time.monotonic() >= request.deadline:
            return ready


def _holder() -> object:
    """Who is running: the asyncio task, when there is one, else the thread."""
    aio = sys.modules.get("asyncio")  # not imported: no task can be running (and the CLI need not import it)
    if aio is not None:
        try:
            task = aio.current_task()
        except RuntimeError:  # no event loop runs in this thread
            task = None
        if task is not None:
            return task
    return threading.get_ident()


class StepLock:
    """A reentrant lock whose holder is a thread or an asyncio task, and which
    step functions hold across their waits.

    Waiting for it is a step like any other (a pipe is written at each
    release someone waits for), so asyncio tasks of one loop queue for it
    without blocking the loop, and threads wait in poll(2).
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._holder: object = None
        self._depth = 0
        self._waiting = 0
        self._wakeup: Optional[Tuple[int, int]] = None  # made at the first wait

    def acquire(self, blocking: bool = True) -> Steps[int]:
        """Take the lock: the depth of this hold (1: the outermost), or 0 if
        not `blocking` and another thread or task holds it."""
        me = _holder()
        waiting = False
        try:
            while True:
                with self._guard:
                    if self._holder is None or self._holder == me:
                        if waiting:
                            waiting = False
                            self._stop_waiting()
                        self._holder = me
                        self._depth += 1
                        return self._depth
                    if not blocking:
                        return 0
                    if not waiting:
                        waiting = True
                        self._waiting += 1
                    if self._wakeup is None:
                        self._wakeup = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
                    else:
                        self._drain()
                    wakeup = self._wakeup[0]
                yield Readable((wakeup,))
        finally:
            if waiting:
                with self._guard:
                    self._stop_waiting()

    def try_acquire(self) -> int:
        """acquire(blocking=False), without steps."""
        me = _holder()
        with self._guard:
            if self._holder is None or self._holder == me:
                self._holder = me
                self._depth += 1
                return self._depth
            return 0

    def release(self) -> None:
        with self._guard:
            self._depth -= 1
            if self._depth == 0:
                self._holder = None
                if self._waiting and self._wakeup is not None:
                    try:
                        os.write(self._wakeup[1], b"\0")
                    except BlockingIOError:
                        pass  # full: readable already

    def hold(self) -> Steps[ContextManager[None]]:
        """The lock, held until the returned context is left: `with (yield from lock.hold()):`."""
        yield from self.acquire()
        return _Release(self.release)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """The lock, for blocking code: `with lock.held():`."""
        block(self.acquire())
        try:
            yield
        finally:
            self.release()

    def _drain(self) -> None:
        assert self._wakeup is not None
        try:
            while os.read(self._wakeup[0], 4096):
                pass
        except BlockingIOError:
            pass

    def _stop_waiting(self) -> None:
        """One waiter fewer (under the guard); the last one closes the pipe."""
        self._waiting -= 1
        if self._waiting == 0 and self._wakeup is not None:
            for fd in self._wakeup:
                os.close(fd)
            self._wakeup = None


class _Release:
    """Calls `release` when left (a context manager that is entered already)."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release = release

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self._release()
