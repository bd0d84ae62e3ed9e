"""The lock that makes a container's verbs exclusive, across threads and processes."""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator, Optional

from .store import Store


class ContainerLock:
    """Exclusive use of one container.

    A reentrant lock for the threads of this process and, with a store, the
    container's lock file for other processes. A verb may call another verb
    (stop calls resume) while holding it: only the outermost hold takes the
    lock file, and only it should load and save the container's record.
    """

    def __init__(self, cid: str, store: Optional[Store]) -> None:
        self._cid = cid
        self._store = store
        self._mutex = threading.RLock()
        self._depth = 0

    @contextlib.contextmanager
    def held(self, *, blocking: bool = True) -> Iterator[bool]:
        """Hold the lock; yields True for the outermost hold of a store-backed container.

        False means there is nothing to load or save here: no store, a
        nested hold, or (with `blocking=False`) another process holds it and
        the caller goes on without it.
        """
        with self._mutex:
            if self._store is None or self._depth:
                self._depth += 1
                try:
                    yield False
                finally:
                    self._depth -= 1
                return
            with self._store.lock(self._cid, blocking=blocking) as got:
                self._depth += 1
                try:
                    yield got
                finally:
                    self._depth -= 1
