"""Deleting containers off the caller's path (see Runtime.delete_later)."""

from __future__ import annotations

import collections
import logging
import threading
from typing import TYPE_CHECKING, Deque, List, Tuple

from .errors import ContainerNotFound

if TYPE_CHECKING:
    from .container import Container

log = logging.getLogger("ocirt")


class Deleter:
    """Force-deletes containers in a background thread, in the order given.

    The thread runs while there is work and ends when there is none, so it
    never holds an idle process open (and at interpreter exit, the deletes
    still queued are finished: it is no daemon thread). Failures are logged
    at once and kept for `finish`.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: Deque["Container"] = collections.deque()
        self._running = False
        self._failures: List[Tuple[str, BaseException]] = []

    def submit(self, container: "Container", start: bool = True) -> None:
        """Queue `container`'s delete. Without `start` the thread is left for
        `kick` (or `finish`) to start: a caller on a short job's path does
        not wait for a thread to start."""
        with self._cond:
            self._queue.append(container)
            if start:
                self._start()

    def kick(self) -> None:
        """Start the thread for what is queued, unless it runs."""
        with self._cond:
            self._start()

    def _start(self) -> None:
        """Under the lock: start the thread, if there is work and it is not running."""
        if self._queue and not self._running:
            self._running = True
            threading.Thread(target=self._work, name="ocirt-delete").start()

    def finish(self) -> List[Tuple[str, BaseException]]:
        """Wait until every submitted delete is done; the (container id, error) of
        those that failed since the last call."""
        with self._cond:
            self._start()
            while self._running:
                self._cond.wait()
            failures, self._failures = self._failures, []
        return failures

    def _work(self) -> None:
        while True:
            with self._cond:
                if not self._queue:
                    self._running = False
                    self._cond.notify_all()
                    return
                container = self._queue.popleft()
            try:
                container.delete(force=True)
            except ContainerNotFound:
                pass  # someone else removed it: removed all the same
            except BaseException as e:  # noqa: B036  (reported to finish(), never lost in a thread)
                log.warning("background delete of container %s failed: %s", container.id, e)
                with self._cond:
                    self._failures.append((container.id, e))
