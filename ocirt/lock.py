"""The lock that makes a container's verbs exclusive, across threads, asyncio tasks and processes."""

from __future__ import annotations

import contextlib
import os
from typing import Callable, Iterator, Optional

from .steps import StepLock, Steps, block
from .store import Store


class Hold:
    """A hold on a ContainerLock, released when the context is left."""

    def __init__(self, release: Callable[[], None], *, outermost: bool = False, contended: bool = False) -> None:
        self.outermost = outermost  # the first hold of a store-backed container: load the record, save it after
        self.contended = contended  # (blocking=False) another process holds the lock file
        self._release = release

    def __enter__(self) -> "Hold":
        return self

    def __exit__(self, *exc: object) -> None:
        self._release()


class ContainerLock:
    """Exclusive use of one container.

    A reentrant lock for the threads and asyncio tasks of this process (see
    steps.StepLock) and, with a store, the container's lock file for other
    processes. A verb may call another verb (stop calls resume) while holding
    it: only the outermost hold takes the lock file, and only it should load
    and save the container's record.
    """

    def __init__(self, cid: str, store: Optional[Store]) -> None:
        self._cid = cid
        self._store = store
        self._mutex = StepLock()

    def hold(self, *, blocking: bool = True) -> Steps[Optional[Hold]]:
        """Take the lock, waiting as a step for other threads and tasks of this process.

        None only with `blocking=False` when another thread or task of this
        process holds it. Another process's hold is waited for as a step too
        (see Store.lock_steps): an event loop goes on meanwhile.
        """
        depth = yield from self._mutex.acquire(blocking)
        if not depth:
            return None
        if depth > 1 or self._store is None:
            return Hold(self._mutex.release)
        stack = contextlib.ExitStack()
        stack.callback(self._mutex.release)
        try:
            fd = yield from self._store.lock_steps(self._cid, blocking=blocking)
        except BaseException:
            stack.close()
            raise
        if fd is not None:
            stack.callback(os.close, fd)
        return Hold(stack.close, outermost=fd is not None, contended=fd is None)

    def hold_here(self) -> Optional[Hold]:
        """The lock among this process's threads and tasks only (no lock file),
        if it is free now; for a look that records nothing. `outermost`: no
        verb of this thread or task is under way."""
        depth = self._mutex.try_acquire()
        return Hold(self._mutex.release, outermost=depth == 1) if depth else None

    @contextlib.contextmanager
    def held(self, *, blocking: bool = True) -> Iterator[Optional[Hold]]:
        """`hold`, for blocking code."""
        hold = block(self.hold(blocking=blocking))
        if hold is None:
            yield None
            return
        with hold:
            yield hold
