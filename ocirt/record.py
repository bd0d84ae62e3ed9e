"""A container's record in the store, kept in step with the Container object.

Every verb runs inside `Recorder.locked()`: the container's lock and, at
the outermost level, its record loaded and reconciled before the verb and
saved after it. So processes that share a store see one container, and a
process that died mid-verb leaves a record the next one can reconcile.
"""

from __future__ import annotations

import contextlib
import copy
from typing import TYPE_CHECKING, ContextManager, Iterator, Optional

from .errors import ContainerNotFound
from .launcher import LaunchOptions
from .lock import ContainerLock, Hold
from .state import ContainerState, ContainerStatus, from_timestamp, reconcile
from .steps import Steps, block
from .store import Record, Store

if TYPE_CHECKING:
    from .container import Container


class Recorder:
    """Keeps `container`'s record in `store` (None: nothing to keep, only the lock)."""

    def __init__(self, container: "Container", store: Optional[Store]) -> None:
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
                self._load(deep=False)
        except BaseException:
            hold.__exit__(None, None, None)
            raise
        return self._saving(hold)

    def locked(self) -> ContextManager[None]:
        """`locking`, for blocking code: `with recorder.locked():`."""
        return block(self.locking())

    @contextlib.contextmanager
    def _saving(self, hold: Hold) -> Iterator[None]:
        with hold:
            try:
                yield
            finally:
                if hold.outermost:
                    self.save()

    def refresh(self, blocking: bool) -> ContainerState:
        """refresh_steps, blocking."""
        return block(self.refresh_steps(blocking))

    def refresh_steps(self, blocking: bool) -> Steps[ContainerState]:
        """Reload and reconcile the record, asking the runtime too ("deep").

        With `blocking=False`, a record another process holds is taken as it
        stands, and a container another thread or task of this process is
        working on is left as it is.
        """
        if self._store is None:
            return self._c.state
        hold = yield from self._lock.hold(blocking=blocking)
        if hold is None:
            return self._c.state
        with hold:
            if hold.contended:
                self._take_stored()
            elif hold.outermost and self._load(deep=True):
                self.save()
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
            c = self._c
            seen = copy.copy(c.state)
            note = reconcile(seen, c._files, conmon_alive=c._monitor.conmon_alive, runtime_status=self._runtime_status, wait_exit=lambda _: True)
            changed = seen != c.state
            if not changed:
                c.note = note or c.note
        if changed:
            self.refresh(blocking=False)

    def save(self) -> None:
        if self._store is not None and not self._c._deleted:
            self._seen = self.record()
            self._store.save(self._seen)

    def save_now(self) -> Steps[None]:
        """Save under the lock (for a change made outside any verb)."""
        if self._store is not None:
            with (yield from self.locking()):
                pass

    def record(self) -> Record:
        c, m = self._c, self._c._monitor
        return Record(
            id=c.id,
            name=c.name,
            bundle=c.bundle,
            conmon_pid=m.conmon_pid,
            conmon_start_time=m.conmon_start,
            created_at=c.created_at.timestamp(),
            cgroup_dirs=list(getattr(c._cgroup, "dirs", [])),
            cgroup_parents=list(getattr(c._cgroup, "created_parents", [])),
            container_cgroup_dirs=list(getattr(c._cgroup.container if c._cgroup else None, "dirs", [])),
            owned_bundle=c.owned_bundle,
            auto_remove=c.auto_remove,
            stdin=c.stdin,
            exec_sessions=c._sessions.recorded(),
            note=c.note,
            labels=dict(c.labels),
            launch=c.launch_options.to_dict(),
            **c.state.fields(),
        )

    def apply(self, record: Record) -> None:
        """Take over what another process recorded."""
        self._seen = record
        c, m = self._c, self._c._monitor
        c.state.apply(record)
        m.conmon_pid, m.conmon_start = record.conmon_pid, record.conmon_start_time
        c.created_at = from_timestamp(record.created_at) or c.created_at
        c.owned_bundle, c.auto_remove, c.stdin, c.note = record.owned_bundle, record.auto_remove, record.stdin, record.note
        c.labels = dict(record.labels)
        c.launch_options = LaunchOptions.from_dict(record.launch)
        c._sessions.take_recorded(record.exec_sessions)
        if c.state.status is ContainerStatus.STOPPED:
            m.close_init()

    def _load(self, deep: bool) -> bool:
        """Take over the stored record and reconcile it; False if it is gone."""
        if not self._take_stored():
            return False
        c, m = self._c, self._c._monitor
        status = self._runtime_status if deep else None
        c.note = reconcile(c.state, c._files, conmon_alive=m.conmon_alive, runtime_status=status, wait_exit=m.wait_exit) or c.note
        if c.state.status is ContainerStatus.STOPPED:
            m.close_init()
        return True

    def _take_stored(self) -> bool:
        if self._store is None:
            return True
        record = self._store.get(self._c.id)
        if record is None:
            self._c._deleted = True
            self._c._monitor.close()
            return False
        self.apply(record)
        return True

    def _runtime_status(self) -> str:
        """The runtime's status for the container: read from files where runc's own files
        tell (see OCIRuntime.status_from_files), else from `runtime state`."""
        c = self._c
        started = c.state.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED)
        known = c._svc.oci.status_from_files(c.id, c._freezer_dir(), started=started)
        if known is not None:
            return known
        try:
            return str(c._svc.oci.state(c.id)["status"])
        except ContainerNotFound:
            return ContainerStatus.STOPPED.value
