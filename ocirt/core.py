"""What every verb of a container works on: its identity and state, its
files, its monitor (conmon and the init process), its cgroup, its record
in the store, and the services of the Runtime that made it.

`Container` (container.py) offers the verbs on top of this; the lifecycle
verbs are written in lifecycle.py.
"""

from __future__ import annotations

import copy
import os
import shutil
import time
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Dict, Mapping, Optional, Type, TypeVar, Union

from . import conmon, exec as execs, spec as specs
from .cgroups import Cgroup, Manager as CgroupManager, limits as cgroup_limits
from .errors import ContainerNotFound, InvalidState
from .launcher import Launcher, LaunchOptions
from .layout import ContainerDir
from .monitor import Monitor
from .oci import OCIRuntime
from .record import Recorder
from .state import ContainerState, ContainerStatus, Timings, now, reconcile_steps
from .steps import Steps, block, done
from .store import Record, Store, from_timestamp

C = TypeVar("C", bound="ContainerCore")
CREATED, RUNNING, PAUSED, STOPPED = (ContainerStatus.CREATED, ContainerStatus.RUNNING, ContainerStatus.PAUSED, ContainerStatus.STOPPED)


@dataclass(frozen=True)
class Services:
    """What a Container uses of the Runtime that made it (never the Runtime itself)."""

    oci: OCIRuntime
    launcher: Launcher
    cgroups: CgroupManager
    store: Optional[Store]
    forget: Callable[["ContainerCore"], None]  # called once the container is deleted
    network_dir: str = ""  # the host's ocirt networks (see networks.py)


class ContainerCore:
    """A container's parts and the checks every verb shares. Thread-safe
    through its lock (`_locking`), which also keeps its record."""

    def __init__(
        self,
        services: Services,
        cid: str,
        bundle: str,
        spec: specs.Spec,
        files: ContainerDir,
        cgroup: Optional[Cgroup],
        name: Optional[str] = None,
    ) -> None:
        self.id = cid
        self.name = name or cid
        self.bundle = bundle
        self.spec = spec
        self.state = ContainerState(ContainerStatus.CONFIGURED)
        self.created_at = now()
        self.timings = Timings()  # this process's view of the container's phases
        self.owned_bundle = False  # ocirt generated the bundle: delete removes it
        self.auto_remove = False
        self.stdin = False  # created with stdin: conmon takes input on the attach socket
        self.labels: Dict[str, str] = {}  # the caller's, kept with the record (see Runtime.list)
        self.network: Dict[str, Any] = {}  # on a bridge network: networks.Attachment.to_dict()
        self.launch_options = LaunchOptions()  # how conmon runs it, again on a restart
        self.note = ""  # why the status is what it is, when that is not obvious
        self._svc = services
        self._files = files
        self._cgroup = cgroup
        self._monitor = Monitor(cid, files, services.oci)
        self._sessions = execs.Sessions(self.state.exec_sessions)
        self._deleted = False
        self._record = Recorder(self, services.store)

    @classmethod
    def _from_record(cls: Type[C], services: Services, record: Record, spec: specs.Spec, files: ContainerDir, cgroup: Optional[Cgroup]) -> C:
        """A container as its record in the store says."""
        c = cls(services, record.id, record.bundle, spec, files, cgroup, name=record.name)
        c._record.apply(record)  # holds its conmon and init where they are proven
        return c

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.state.status.value}>"

    @property
    def conmon_pid(self) -> Optional[int]:
        """The pid of the container's conmon daemon (None before it reported)."""
        return self._monitor.conmon_pid

    @property
    def log_path(self) -> str:
        """The container's output, in conmon's k8s-file format (see `logs()`)."""
        return self._files.log

    @property
    def deleted(self) -> bool:
        """Deleted: by this object, or (as the store says) by another process."""
        return self._deleted

    # -- the record, shared with other processes through the store -----------

    def to_record(self) -> Record:
        """What the store keeps of this container (see store.Record)."""
        m, cgroup = self._monitor, self._cgroup
        return Record(
            id=self.id,
            name=self.name,
            bundle=self.bundle,
            conmon_pid=m.conmon_pid,
            conmon_start_time=m.conmon_start,
            created_at=self.created_at.timestamp(),
            cgroup_dirs=list(getattr(cgroup, "dirs", [])),
            cgroup_parents=list(getattr(cgroup, "created_parents", [])),
            container_cgroup_dirs=list(getattr(cgroup.container if cgroup else None, "dirs", [])),
            owned_bundle=self.owned_bundle,
            auto_remove=self.auto_remove,
            stdin=self.stdin,
            exec_sessions=self._sessions.recorded(),
            note=self.note,
            labels=dict(self.labels),
            launch=self.launch_options.to_dict(),
            network=dict(self.network),
            **self.state.fields(),
        )

    def take_record(self, record: Record) -> None:
        """Take over what another process recorded. A record of another run
        (a restart elsewhere: another conmon) replaces the processes held."""
        m = self._monitor
        relaunched = (record.conmon_pid, record.conmon_start_time) != (m.conmon_pid, m.conmon_start)
        self.state.apply(record)
        if relaunched:
            m.close()  # the handles name the earlier run's conmon and init
        m.conmon_pid, m.conmon_start = record.conmon_pid, record.conmon_start_time
        self.created_at = from_timestamp(record.created_at) or self.created_at
        self.owned_bundle, self.auto_remove, self.stdin, self.note = record.owned_bundle, record.auto_remove, record.stdin, record.note
        self.labels = dict(record.labels)
        self.launch_options = LaunchOptions.from_dict(record.launch)
        self.network = dict(record.network)
        self._sessions.take_recorded(record.exec_sessions)
        if self.state.status is STOPPED:
            m.close_init()
        elif relaunched:
            m.adopt(self.state.pid)

    def reconcile_steps(self, deep: bool) -> Steps[None]:
        """Bring the state up to date with conmon's files (and, `deep`, the runtime's)."""
        m = self._monitor
        status = self._runtime_status if deep else None
        note = yield from reconcile_steps(
            self.state, self._files, conmon_alive=m.conmon_alive, runtime_status=status, orphan_status=self._orphan_status,
            wait_exit=m.wait_exit_steps,
        )  # fmt: skip
        self.note = note or self.note
        if self.state.status is STOPPED:
            m.close_init()
        elif not m.conmon_alive():
            m.adopt_orphan(self.state.pid, self._holds_process)

    def reconcile_would_change(self) -> bool:
        """Whether a reconcile that waits for nothing changes the state (for a
        listing); when it does not, its note is kept."""
        seen = copy.copy(self.state)
        m = self._monitor
        status, orphan = self._runtime_status, self._orphan_status
        no_wait = lambda _: done(True)  # noqa: E731  (a listing waits for nothing)
        note = block(reconcile_steps(seen, self._files, conmon_alive=m.conmon_alive, runtime_status=status, orphan_status=orphan, wait_exit=no_wait))
        if seen != self.state:
            return True
        self.note = note or self.note
        return False

    def vanished(self) -> None:
        """The store no longer has the container: another process deleted it."""
        self._deleted = True
        self._monitor.close()

    def refresh(self, blocking: bool = True) -> ContainerState:
        """Reload the container's record from the store and reconcile it.

        Without a store there is nothing to reload. With `blocking=False` a
        container another process is working on is reloaded as it stands.
        """
        return self._record.refresh(blocking)

    def refresh_steps(self, blocking: bool = True) -> Steps[ContainerState]:
        return self._record.refresh_steps(blocking)

    def _runtime_status(self) -> Steps[str]:
        """The runtime's status for the container: read from files where runc's own files
        tell (see OCIRuntime.status_from_files), else from `runtime state`."""
        started = self.state.status in (RUNNING, PAUSED)
        known = self._svc.oci.status_from_files(self.id, self._freezer_dir(), started=started)
        if known is not None:
            return known
        return (yield from self._orphan_status())

    def _orphan_status(self) -> Steps[str]:
        """The runtime's own status, asked when conmon is gone: it alone knows
        whether the container went with it (runc's files say "running" for a
        container whose processes are all gone)."""
        try:
            return str((yield from self._svc.oci.state_steps(self.id))["status"])
        except ContainerNotFound:
            return STOPPED.value

    def _holds_process(self, pid: int) -> bool:
        """Whether `pid` is in the container's own cgroup: a process there is the container's."""
        group = self._cgroup.container if self._cgroup is not None else None
        return group is not None and pid in group.pids()

    # -- what the verbs share --------------------------------------------------

    def _locking(self) -> Steps[ContextManager[None]]:
        return self._record.locking()

    def _require_exists(self) -> None:
        if self._deleted:
            raise ContainerNotFound(f"container {self.id} was deleted", container_id=self.id)

    def _require(self, *allowed: ContainerStatus, verb: str) -> None:
        self._require_exists()
        if self.state.status not in allowed:
            raise InvalidState(
                f"cannot {verb} container {self.id}: it is {self.state.status.value}", container_id=self.id, status=self.state.status, verb=verb
            )

    def _record_exit(self, timeout: Optional[float] = 0) -> Steps[None]:
        """Read conmon's exit file into `state`, waiting up to `timeout` for it."""
        if self._deleted or self.state.status is STOPPED:
            if self.state.status is STOPPED and self.timings.recorded is None:
                self.timings.recorded = time.monotonic()  # the record's reconcile read it first
            return
        exit = yield from self._monitor.exit_steps(timeout)
        if not exit.oom_killed and self._oom_kills() > 0:
            exit = exit._replace(oom_killed=True)  # conmon missed it (v2 without its watch, say): the cgroup counted it
        self.timings.exited = self.timings.exited or time.monotonic()
        self.state.record_exit(exit)
        self.note = exit.note or self.note
        self._monitor.close_init()
        self.timings.recorded = time.monotonic()

    def _session_ended(self) -> Steps[None]:
        """An exec session ended: record its exit code, and drop the oldest
        ended sessions past exec.KEPT_ENDED with their files."""
        with (yield from self._locking()):
            if not self._deleted:
                surplus = self._sessions.surplus()
                self._sessions.forget(surplus)
                for sid in surplus:
                    shutil.rmtree(self._files.exec_session(sid).root, ignore_errors=True)

    def _resolve_user(self, user: Union[str, int]) -> specs.Spec:
        """{"uid", "gid"} for `user`, names looked up in the container's own view of
        its root (its init's /proc/<pid>/root), else in the bundle's root filesystem."""
        root = self._monitor.open_root()
        try:
            return specs.parse_user(user, root if root is not None else os.path.join(self.bundle, self.spec["root"]["path"]))
        finally:
            if root is not None:
                os.close(root)

    def _oom_kills(self) -> int:
        group = self._cgroup.container if self._cgroup is not None else None
        return cgroup_limits.oom_kills(group.controllers) if group is not None else 0

    def _freezer_dir(self) -> Optional[str]:
        """The container's freezer cgroup (v1), or its v2 cgroup; None if unknown."""
        return getattr(self._cgroup.container if self._cgroup else None, "freezer", None)

    def _container_cgroup(self, verb: str) -> Mapping[str, str]:
        group = self._cgroup.container if self._cgroup is not None and not self._deleted else None
        if group is None or not group.controllers:
            raise InvalidState(f"cannot {verb} container {self.id}: {'it is deleted' if self._deleted else 'its cgroup is not known'}")
        return group.controllers

    def _created(self, launched: conmon.Launched) -> None:
        """conmon reported the container's pid: record it."""
        self._monitor.launched(launched)
        self.state.pid, self.state.status = launched.pid, CREATED
        self.timings.spawned, self.timings.created = launched.spawned_at, time.monotonic()
        self._record.save()

    def _close_fds(self) -> None:
        self._monitor.close()
        self._sessions.close()
