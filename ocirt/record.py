"""A container's record in the store, kept in step with the container.

Every verb runs inside `Recorder.locked()`: the container's lock and, at
the outermost level, its record loaded and reconciled before the verb and
saved after it. So processes that share a store see one container, and a
process that died mid-verb leaves a record the next one can reconcile.
Only a record that changed is written: reading and reconciling a container
that did not change writes nothing (and so works on a full filesystem).
"""

from __future__ import annotations

import contextlib
import logging
from typing import ContextManager, Iterator, Optional, Protocol

from .errors import StoreError, StoreFull
from .lock import ContainerLock, Hold
from .state import ContainerState
from .steps import Steps, block
from .store import Record, Store

log = logging.getLogger("ocirt")


class Recorded(Protocol):
    """What the recorder needs of its container (see core.ContainerCore)."""

    id: str
    state: ContainerState
    note: str

    @property
    def deleted(self) -> bool: ...

    def to_record(self) -> Record: ...

    def take_record(self, record: Record) -> None: ...

    def reconcile_steps(self, deep: bool) -> Steps[None]: ...

    def reconcile_would_change(self) -> bool: ...

    def vanished(self) -> None: ...


class Recorder:
    """Keeps `container`'s record in `store` (None: nothing to keep, only the lock)."""

    def __init__(self, container: Recorded, store: Optional[Store]) -> None:
        self._c = container
        self._store = store
        self._lock = ContainerLock(container.id, store)
        self._seen: Optional[Record] = None  # the record as last loaded or saved here

    def locking(self) -> Steps[ContextManager[None]]:
        """Exclusive use of the container until the returned context is left
        (`with (yield from recorder.locking()):`); the outermost hold loads the
        record now and saves it when left."""
        hold = yield from self._lock.hold()
        assert hold is not None
        try:
            if hold.outermost:
                yield from self._load(deep=False)
        except BaseException:
            hold.__exit__(None, None, None)
            raise
        return self._saving(hold)

    def locked(self) -> ContextManager[None]:
        """`locking`, for blocking code: `with recorder.locked():`."""
        return block(self.locking())

    @contextlib.contextmanager
    def _saving(self, hold: Hold) -> Iterator[None]:
        """Save when the outermost hold is left. On a full filesystem the
        verb's work stands (a stopped container is stopped) and the record
        stays as it was, which the next reader reconciles with the runtime
        (logged); any other store error goes on."""
        with hold:
            try:
                yield
            finally:
                if hold.outermost:
                    try:
                        self.save()
                    except StoreFull as e:
                        log.warning("container %s: %s: recorded once there is room", self._c.id, e)

    def refresh(self, blocking: bool) -> ContainerState:
        """refresh_steps, blocking."""
        return block(self.refresh_steps(blocking))

    def refresh_steps(self, blocking: bool) -> Steps[ContainerState]:
        """Reload and reconcile the record, asking the runtime too ("deep").

        With `blocking=False`, a record another process holds is taken as it
        stands, and a container another thread or task of this process is
        working on is left as it is. What reconciling found is returned even
        when the store cannot record it (a full filesystem, say: logged), as
        the next reader finds it again.
        """
        if self._store is None:
            return self._c.state
        hold = yield from self._lock.hold(blocking=blocking)
        if hold is None:
            return self._c.state
        with hold:
            if hold.contended:
                self._take_stored()
            elif hold.outermost and (yield from self._load(deep=True)):
                try:
                    self.save()
                except StoreError as e:
                    log.warning("container %s: its state is not recorded: %s", self._c.id, e)
        return self._c.state

    def glance(self, record: Record) -> None:
        """Bring the container up to date with `record` (just read from the
        store) and with what conmon's and the runtime's files show, for a
        listing: the lock file is taken (not waited for) only when that
        changes something to record. A container another thread or task of
        this process is working on is left as it is."""
        hold = self._lock.hold_here()
        if hold is None:
            return
        with hold:
            if not hold.outermost:
                return
            if record is not self._seen and record != self._seen:
                self.apply(record)
            changed = self._c.reconcile_would_change()
            self._keep_unreadable_note()
        if changed:
            self.refresh(blocking=False)

    def save(self) -> None:
        """Write the container's record, if it differs from the stored one."""
        if self._store is not None and not self._c.deleted:
            record = self._c.to_record()
            if record != self._seen:
                self._store.save(record)
                self._seen = record

    def save_now(self) -> Steps[None]:
        """Save under the lock (for a change made outside any verb)."""
        if self._store is not None:
            with (yield from self.locking()):
                pass

    def apply(self, record: Record) -> None:
        """Take over what another process recorded."""
        self._seen = record
        self._c.take_record(record)

    def _load(self, deep: bool) -> Steps[bool]:
        """Take over the stored record and reconcile it; False if it is gone."""
        if not self._take_stored():
            return False
        yield from self._c.reconcile_steps(deep)
        self._keep_unreadable_note()
        return True

    def _keep_unreadable_note(self) -> None:
        """Reconciling calls a container of unknown state half-created; one whose
        record is unreadable keeps saying so instead."""
        note = self._store.unreadable(self._c.id) if self._store is not None else None
        if note:
            self._c.note = note

    def _take_stored(self) -> bool:
        if self._store is None:
            return True
        record = self._store.get(self._c.id)
        if record is None:
            self._c.vanished()
            return False
        self.apply(record)
        return True
