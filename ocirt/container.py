"""Containers and exec sessions: the lifecycle verbs on one container.

Waits never poll at a fixed interval: a container's exit is the appearance
of conmon's exit file (an inotify watch guarded by conmon's pidfd), an exec
session's exit is conmon's last message on its sync socket. Signals go
through pidfds opened while the process was known to be alive, so they can
never reach a process that reused the pid.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import (
    TYPE_CHECKING,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Union,
)

from . import conmon
from . import native as _native
from . import spec as specs
from .errors import (
    ConmonError,
    ContainerNotFound,
    InvalidArgument,
    InvalidState,
    OcirtError,
    RuntimeCommandError,
    Timeout,
)
from .layout import ContainerDir, ExecDir
from .logs import LogReader, LogRecord, read_log
from .oci import is_not_found
from .store import Record
from .validate import SignalLike, check_id, check_timeout, parse_signal

if TYPE_CHECKING:
    from .cgroups import Cgroup
    from .runtime import Runtime

KILL_GRACE = 5.0  # seconds to wait after SIGKILL before giving up
CONMON_EXIT_GRACE = 5.0  # seconds conmon gets to exit once its container has


class ContainerStatus(str, Enum):
    CONFIGURED = "configured"
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


@dataclass
class ContainerState:
    """What ocirt knows about a container; `update_status()` refreshes it."""

    status: ContainerStatus
    pid: Optional[int] = None
    exit_code: Optional[int] = None
    oom_killed: bool = False
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    exec_sessions: Dict[str, "ExecSession"] = field(default_factory=dict)


class Container:
    """One container created by `Runtime.create`. Thread-safe."""

    def __init__(
        self,
        runtime: "Runtime",
        cid: str,
        bundle: str,
        spec: specs.Spec,
        files: ContainerDir,
        cgroup: Optional["Cgroup"],
        name: Optional[str] = None,
    ) -> None:
        self.id = cid
        self.name = name or cid
        self.bundle = bundle
        self.spec = spec
        self.state = ContainerState(ContainerStatus.CONFIGURED)
        self._runtime = runtime
        self._files = files
        self._cgroup = cgroup
        self._conmon_pid: Optional[int] = None
        self._pidfd: Optional[int] = None
        self._deleted = False
        self._lock = threading.RLock()
        self._depth = 0
        self._conmon_start: Optional[int] = None
        self._foreign_sessions: Dict[str, Dict[str, int]] = {}
        self.created_at = _now()
        self.owned_bundle = False
        self.auto_remove = False
        self.note = ""  # why the status is what it is, when that is not obvious

    def __repr__(self) -> str:
        return f"<Container {self.id} {self.state.status.value}>"

    # -- persistence (a no-op without a store) ------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive use of this container: threads here, processes via the store."""
        with self._lock:
            store = self._runtime.store
            if store is None or self._depth:  # nested verbs (stop -> resume) hold it already
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            with store.lock(self.id):
                self._depth += 1
                try:
                    record = store.get(self.id)
                    if record is None:
                        self._mark_deleted()
                    else:
                        self._apply(record)
                        self._reconcile()
                    yield
                finally:
                    self._depth -= 1
                    self._save()

    def _save(self) -> None:
        if self._runtime.store is not None and not self._deleted:
            self._runtime.store.save(self.to_record())

    def to_record(self) -> Record:
        st = self.state
        dirs = getattr(self._cgroup, "dirs", [])
        parents = getattr(self._cgroup, "created_parents", [])
        return Record(
            id=self.id,
            name=self.name,
            bundle=self.bundle,
            status=st.status.value,
            pid=st.pid,
            conmon_pid=self._conmon_pid,
            conmon_start_time=self._conmon_start,
            exit_code=st.exit_code,
            oom_killed=st.oom_killed,
            created_at=self.created_at.timestamp(),
            started_at=st.started_at.timestamp() if st.started_at else None,
            finished_at=st.finished_at.timestamp() if st.finished_at else None,
            cgroup_dirs=list(dirs),
            cgroup_parents=list(parents),
            owned_bundle=self.owned_bundle,
            auto_remove=self.auto_remove,
            exec_sessions=self.exec_session_pids(),
            note=self.note,
        )

    def exec_session_pids(self) -> Dict[str, Dict[str, int]]:
        """Exec sessions not known to have ended, by id: {"pid", "conmon_pid"}.

        Includes those recorded by other processes.
        """
        sessions = dict(self._foreign_sessions)
        for sid, s in self.state.exec_sessions.items():
            if s.exit_code is None:
                sessions[sid] = {"pid": s.pid, "conmon_pid": s.conmon_pid}
            else:
                sessions.pop(sid, None)
        return sessions

    def _apply(self, record: Record) -> None:
        """Take over what another process recorded."""
        st = self.state
        st.status = ContainerStatus(record.status)
        st.pid = record.pid
        st.exit_code = record.exit_code
        st.oom_killed = record.oom_killed
        st.started_at = _from_ts(record.started_at)
        st.finished_at = _from_ts(record.finished_at)
        self._conmon_pid = record.conmon_pid
        self._conmon_start = record.conmon_start_time
        self.created_at = _from_ts(record.created_at) or self.created_at
        self.owned_bundle = record.owned_bundle
        self.auto_remove = record.auto_remove
        self._foreign_sessions = {k: v for k, v in record.exec_sessions.items() if k not in self.state.exec_sessions}
        self.note = record.note
        if st.status is ContainerStatus.STOPPED:
            self._close_pidfd()

    def refresh(self, blocking: bool = True) -> ContainerState:
        """Reload the container's record from the store and reconcile it.

        Without a store there is nothing to reload. With `blocking=False` a
        container another process is working on is reloaded as it stands.
        """
        store = self._runtime.store
        if store is None:
            return self.state
        with self._lock, store.lock(self.id, blocking=blocking) as got:
            record = store.get(self.id)
            if record is None:
                self._mark_deleted()
                return self.state
            self._apply(record)
            if got:
                self._reconcile(deep=True)
                self._save()
        return self.state

    def _reopen_pidfd(self) -> None:
        """A pidfd for the init of a container loaded from the store.

        Only if the pid is still a child of the container's own (live) conmon:
        a reused pid gets no pidfd, and signals then go through the runtime.
        """
        pid = self.state.pid
        if self._pidfd is not None or not pid or self.state.status is ContainerStatus.STOPPED:
            return
        if not self._conmon_alive():
            return
        try:
            fd = _native.pidfd_open(pid)  # first: then the check below is about this very process
        except OSError:
            return
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            ppid = None
        if ppid == self._conmon_pid:
            self._pidfd = fd
        else:
            os.close(fd)

    def _reconcile(self, deep: bool = False) -> None:
        """Bring a record another (maybe dead) process left up to date.

        Never guesses an exit code: it comes from conmon's exit file, or is
        -1 with a note when conmon died without writing one. `deep` also asks
        the runtime, for a status changed by a process that died before
        recording it (a start or pause).
        """
        status = self.state.status
        if status is ContainerStatus.CONFIGURED:
            self.note = "half-created by a process that died; remove it with rm -f"
        elif status is not ContainerStatus.STOPPED:
            if os.path.exists(self._files.exit_file):
                self._record_exit()
            elif not self._conmon_alive():
                self.state.status = ContainerStatus.STOPPED
                self.state.exit_code = -1
                self.state.finished_at = _now()
                self.note = "conmon died without recording an exit code"
                self._close_pidfd()
            elif deep:
                try:
                    raw = self._runtime.oci.state(self.id)["status"]
                except ContainerNotFound:
                    raw = ContainerStatus.STOPPED.value
                if raw == ContainerStatus.STOPPED.value:
                    self._record_exit(timeout=CONMON_EXIT_GRACE)
                elif raw in (ContainerStatus.CREATED.value, ContainerStatus.RUNNING.value, ContainerStatus.PAUSED.value):
                    if raw == ContainerStatus.RUNNING.value and self.state.started_at is None:
                        self.state.started_at = _now()  # started by a process that died first
                    self.state.status = ContainerStatus(raw)

    def _conmon_alive(self) -> bool:
        pid = self._conmon_pid
        return pid is not None and self._conmon_start is not None and _start_time(pid) == self._conmon_start

    def _mark_deleted(self) -> None:
        self._deleted = True
        self._close_pidfd()

    @property
    def conmon_pid(self) -> Optional[int]:
        return self._conmon_pid

    @property
    def log_path(self) -> str:
        return self._files.log

    # called by Runtime.create once conmon reported the container's pid
    def _created(self, launched: conmon.Launched) -> None:
        self._conmon_pid = launched.conmon_pid
        if self._runtime.store is not None:  # only other processes need conmon's identity
            self._conmon_start = _start_time(launched.conmon_pid)
        self.state.pid = launched.pid
        self.state.status = ContainerStatus.CREATED
        # The init is blocked in the runtime until start: alive, so this
        # pidfd names exactly it.
        try:
            self._pidfd = _native.pidfd_open(launched.pid)
        except OSError as e:
            if e.errno not in (errno.ENOSYS, errno.ESRCH):
                raise

    # -- verbs -------------------------------------------------------------

    def start(self) -> None:
        """Start a created container; InvalidState in any other state."""
        with self._locked():
            self._require(ContainerStatus.CREATED, verb="start")
            started = _now()  # before: a quick process may finish before start returns
            self._runtime.oci.start(self.id)
            self.state.status = ContainerStatus.RUNNING
            self.state.started_at = started

    def kill(self, sig: SignalLike = signal.SIGKILL) -> None:
        """Send `sig` to the container's init process.

        InvalidArgument for an unknown or out-of-range signal; InvalidState if
        the container is not created, running or paused, or has exited.
        """
        signum = parse_signal(sig)
        with self._locked():
            self._require(ContainerStatus.CREATED, ContainerStatus.RUNNING, ContainerStatus.PAUSED, verb="kill")
            if not self._signal(signum):
                self._record_exit(timeout=KILL_GRACE)
                raise InvalidState(f"container {self.id} has exited (code {self.state.exit_code})")

    def stop(self, timeout: Optional[float] = 10) -> None:
        """Stop the container and record its exit.

        Sends the spec's stop signal (annotation org.opencontainers.image.stopSignal,
        else SIGTERM), resuming a paused container first so the signal lands;
        after `timeout` seconds SIGKILLs all its processes and waits up to 5 s
        more (then Timeout). A created (never started) container is killed at
        once. Stopping a stopped container does nothing.
        """
        grace = check_timeout(timeout)
        # The waits hold no lock: another process may kill or stop meanwhile.
        with self._locked():
            self._require_exists()
            if self.state.status is ContainerStatus.STOPPED:
                return
            self._require(ContainerStatus.CREATED, ContainerStatus.RUNNING, ContainerStatus.PAUSED, verb="stop")
            if self.state.status is ContainerStatus.PAUSED:
                self.resume()
            # A created container runs nothing of its own yet: nothing to be gentle with.
            polite = self.state.status is not ContainerStatus.CREATED and grace != 0
            signalled = polite and self._signal(specs.stop_signal(self.spec))
        if not (signalled and self._wait_exit(grace)):
            with self._locked():
                if self._deleted or self.state.status is ContainerStatus.STOPPED:
                    return
                self._kill_all()
            if not self._wait_exit(KILL_GRACE):
                raise Timeout(f"container {self.id} did not exit {KILL_GRACE:g}s after SIGKILL")
        with self._locked():
            self._record_exit()

    def pause(self) -> None:
        """Freeze every process of a running container."""
        with self._locked():
            self._require(ContainerStatus.RUNNING, verb="pause")
            self._runtime.oci.pause(self.id)
            self.state.status = ContainerStatus.PAUSED

    def resume(self) -> None:
        """Thaw a paused container."""
        with self._locked():
            self._require(ContainerStatus.PAUSED, verb="resume")
            self._runtime.oci.resume(self.id)
            self.state.status = ContainerStatus.RUNNING

    def wait(self, timeout: Optional[float] = None) -> int:
        """Block until the container exits and return its exit code.

        128+N for a death by signal N. Timeout after `timeout` seconds; a
        conmon that dies without an exit file records exit code -1 and
        raises ConmonError.
        """
        limit = check_timeout(timeout)
        self._require_exists()
        if self.state.status is not ContainerStatus.STOPPED:
            # No lock while blocking: another thread may stop or kill meanwhile.
            if not self._wait_exit(limit):
                raise Timeout(f"container {self.id} still running after {limit:g}s")
            with self._locked():
                self._require_exists()
                self._record_exit()
        if self.state.exit_code == -1:
            raise ConmonError(f"conmon of container {self.id} died without reporting an exit code")
        assert self.state.exit_code is not None
        return self.state.exit_code

    def update_status(self) -> ContainerState:
        """Ask the runtime for the container's status and update `state`.

        On the transition to stopped, reads the exit code, the finish time
        (the exit file's ctime) and the OOM flag. An unknown status is an
        OcirtError.
        """
        with self._locked():
            self._require_exists()
            if self.state.status is ContainerStatus.STOPPED:
                return self.state
            try:
                raw = self._runtime.oci.state(self.id)["status"]
            except ContainerNotFound:
                if not os.path.exists(self._files.exit_file):
                    raise
                raw = ContainerStatus.STOPPED.value
            try:
                status = ContainerStatus(raw)
            except ValueError:
                raise OcirtError(f"runtime reported unknown status {raw!r} for container {self.id}") from None
            if status is ContainerStatus.STOPPED:
                self._record_exit(timeout=CONMON_EXIT_GRACE)
            else:
                self.state.status = status
            return self.state

    def delete(self, force: bool = False) -> None:
        """Remove the container from the runtime and every trace of it.

        A running or paused container needs `force` (it is killed first), and
        so does a half-created one (left by a process that died in create).
        Afterwards conmon has exited, its cgroup is gone, and every verb
        raises ContainerNotFound.
        """
        with self._locked():
            self._require_exists()
            status = self.state.status
            if status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED, ContainerStatus.CONFIGURED) and not force:
                what = "half-created" if status is ContainerStatus.CONFIGURED else status.value
                raise InvalidState(f"container {self.id} is {what}: stop it first, or force the delete (rm -f)")
            if status is ContainerStatus.CONFIGURED:
                # conmon may still be creating: stop it first, so the runtime
                # (which dies with it) cannot finish a container after our delete.
                pid = conmon.read_pid(self._files.conmon_pidfile)
                if pid and conmon.is_conmon_of(pid, self.id):
                    conmon.stop_daemon(pid, 0)
            try:
                self._runtime.oci.delete(self.id, force=force or status is ContainerStatus.CREATED)
            except RuntimeCommandError as e:
                if not is_not_found(e):
                    raise
            self._release()

    def exec(
        self,
        cmd: Sequence[str],
        *,
        env: Optional[Mapping[str, str]] = None,
        user: Union[str, int, None] = None,
        cwd: Optional[str] = None,
        tty: bool = False,
        cap_add: Sequence[str] = (),
        no_new_privs: Optional[bool] = None,
        session_id: Optional[str] = None,
        timeout: Optional[float] = 240,
        attach: bool = False,
    ) -> "ExecSession":
        """Run `cmd` in the running container under its own conmon.

        Its output goes to the session's log (`ExecSession.logs()`); with
        `attach`, also live to `ExecSession.attach` (see ocirt.attach.relay),
        connected before the process starts so nothing is missed. Read that
        socket (or close it): conmon waits while it is full.
        InvalidArgument for an empty or malformed `cmd`, user or env.
        """
        if isinstance(cmd, (str, bytes)) or not cmd or not all(isinstance(a, str) for a in cmd):
            raise InvalidArgument("exec needs a command: a non-empty list of strings")
        sid = check_id(session_id, "exec session id") if session_id is not None else secrets.token_hex(16)
        limit = check_timeout(timeout)
        with self._locked():
            self._require(ContainerStatus.RUNNING, verb="exec in")
            process = specs.exec_process(
                self.spec,
                list(cmd),
                env=dict(env) if env else None,
                user=user,
                cwd=cwd,
                tty=tty,
                cap_add=tuple(cap_add),
                no_new_privs=no_new_privs,
                rootfs=self._rootfs(),
            )
            files = self._files.exec_session(sid)
            try:
                os.makedirs(os.path.dirname(files.root), exist_ok=True)
                os.mkdir(files.root)
            except FileExistsError:
                raise InvalidArgument(f"exec session {sid!r} already exists in container {self.id}") from None
            try:
                os.mkdir(files.exit_dir)
                with open(files.process, "w") as f:
                    json.dump(process, f)
                launched = self._runtime._launch_exec(self, sid, files, tty=tty, timeout=limit, attach=attach)
            except BaseException:
                shutil.rmtree(files.root, ignore_errors=True)
                raise
            session = ExecSession(self, sid, files, launched)
            self.state.exec_sessions[sid] = session
            return session

    def exec_stop(self, timeout: Optional[float] = 10) -> None:
        """Stop every exec session: SIGTERM, wait `timeout`, SIGKILL, wait 5 s."""
        grace = check_timeout(timeout)
        with self._locked():
            self._require_exists()
            sessions = [s for s in self.state.exec_sessions.values() if s.exit_code is None]
        pids = [s.pid for s in sessions if s._signal(signal.SIGTERM)]
        if grace != 0 and pids:
            pids = _native.wait_pids(pids, grace)
        if pids:
            for s in sessions:
                s._signal(signal.SIGKILL)
            pids = _native.wait_pids([s.pid for s in sessions], KILL_GRACE)
            if pids:
                raise Timeout(f"exec processes {pids} did not exit {KILL_GRACE:g}s after SIGKILL")
        for s in sessions:
            s.wait(KILL_GRACE)

    def logs(self, follow: bool = False) -> Iterator[LogRecord]:
        """The container's output as LogRecord(time, stream, text).

        With `follow`, keeps yielding new records as they are written until
        the container has exited and its conmon is done writing.
        """
        self._require_exists()
        if not follow:
            return read_log(self._files.log)
        return self._follow_logs()

    def _follow_logs(self) -> Iterator[LogRecord]:
        reader = LogReader(self._files.log)
        while True:
            yield from reader.read()
            if os.path.exists(self._files.exit_file) or not self._conmon_pid:
                break
            try:
                _native.wait_change(self._files.log, known_size=reader.offset, guard_pid=self._conmon_pid)
            except (ProcessLookupError, FileNotFoundError):
                break  # conmon is gone: what it wrote is all there is
        yield from reader.read(final=True)

    # -- internals ---------------------------------------------------------

    def _require_exists(self) -> None:
        if self._deleted:
            raise ContainerNotFound(f"container {self.id} was deleted")

    def _require(self, *allowed: ContainerStatus, verb: str) -> None:
        self._require_exists()
        if self.state.status not in allowed:
            raise InvalidState(f"cannot {verb} container {self.id}: it is {self.state.status.value}")

    def _rootfs(self) -> str:
        return os.path.join(self.bundle, self.spec["root"]["path"])

    def _signal(self, signum: int) -> bool:
        """Signal the init process; False if it is already gone."""
        if self._pidfd is None:
            try:
                self._runtime.oci.kill(self.id, signum)
            except RuntimeCommandError as e:
                if "not running" in e.stderr or is_not_found(e):
                    return False
                raise
            return True
        try:
            _native.pidfd_send_signal(self._pidfd, signum)
        except ProcessLookupError:
            return False
        return True

    def _kill_all(self) -> None:
        """SIGKILL every process of the container."""
        if specs.has_own_pid_namespace(self.spec):
            self._signal(signal.SIGKILL)  # the kernel takes the rest of the namespace
            return
        try:
            self._runtime.oci.kill(self.id, signal.SIGKILL, all_processes=True)
        except RuntimeCommandError:
            self._signal(signal.SIGKILL)

    def _wait_exit(self, timeout: Optional[float]) -> bool:
        """Wait for conmon's exit file; True once it is there.

        A conmon that dies without one counts as an exit (code -1).
        """
        try:
            return _native.wait_file(
                self._files.exit_dir, self.id, timeout, guard_pid=self._conmon_pid or 0
            )
        except ProcessLookupError:
            return True

    def _record_exit(self, timeout: Optional[float] = 0) -> None:
        """Read the exit file into `state`; exit code -1 if conmon is gone without one."""
        if self._deleted or self.state.status is ContainerStatus.STOPPED:
            return
        path = self._files.exit_file
        if not os.path.exists(path) and not self._wait_exit(timeout):
            raise Timeout(f"no exit file from conmon for container {self.id} after {timeout:g}s")
        try:
            with open(path) as f:
                text = f.read().strip()
            finished = os.stat(path).st_ctime
        except FileNotFoundError:
            text, finished = "-1", time.time()
            self.note = "conmon died without recording an exit code"
        try:
            code = int(text)
        except ValueError:
            raise ConmonError(f"conmon's exit file {path} holds {text[:50]!r}, not an exit code") from None
        self.state.exit_code = code
        finished_at = datetime.fromtimestamp(finished, timezone.utc)
        # ctime comes from the kernel's coarse clock (a tick behind): never
        # let a quick container finish before it started.
        if self.state.started_at is not None and finished_at < self.state.started_at:
            finished_at = self.state.started_at
        self.state.finished_at = finished_at
        self.state.oom_killed = os.path.exists(self._files.oom)
        self.state.status = ContainerStatus.STOPPED
        self._close_pidfd()

    def _release(self) -> None:
        """After the runtime deleted the container: conmon, cgroup, files, fds."""
        self._deleted = True
        self._close_pidfd()
        pids = [s.conmon_pid for s in self.state.exec_sessions.values()]
        if self._conmon_pid:
            pids.append(self._conmon_pid)
        if self._cgroup is not None:
            # conmons of exec sessions that other (maybe dead) processes started
            pids += [p for p in self._cgroup.pids() if p not in pids]
        for pid in pids:
            conmon.stop_daemon(pid, CONMON_EXIT_GRACE)
        for session in self.state.exec_sessions.values():
            session._close()
        errors: List[str] = []
        if self._cgroup is not None:
            try:
                self._cgroup.remove()
            except OcirtError as e:
                errors.append(str(e))
        for path in (self._files.exit_file, self._files.socket_link):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        shutil.rmtree(self._files.root, ignore_errors=True)
        if self.owned_bundle:
            shutil.rmtree(self.bundle, ignore_errors=True)
        self._runtime._forget(self)
        if errors:
            raise OcirtError(f"container {self.id} deleted, but: " + "; ".join(errors))

    def _leave_cgroup(self, pid: int) -> None:
        """Move `pid` from conmon's cgroup to its parent, so the cgroup can go."""
        for d in getattr(self._cgroup, "dirs", []):
            try:
                with open(os.path.join(os.path.dirname(d), "cgroup.procs"), "w") as f:
                    f.write(str(pid))
            except OSError as e:
                raise OcirtError(f"cannot move process {pid} out of {d}: {e}") from e

    def _close_fds(self) -> None:
        self._close_pidfd()
        for session in self.state.exec_sessions.values():
            session._close()

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def __del__(self) -> None:
        fd = getattr(self, "_pidfd", None)
        if fd is not None:
            os.close(fd)


class ExecSession:
    """A process started by `Container.exec`, monitored by its own conmon."""

    def __init__(self, container: Container, session_id: str, files: ExecDir, launched: conmon.Launched) -> None:
        self.id = session_id
        self.container = container
        self.pid = launched.pid
        self.conmon_pid = launched.conmon_pid
        self.exit_code: Optional[int] = None
        self.attach = launched.attach  # the live output socket, with exec(attach=True)
        self._files = files
        self._sync_fd: Optional[int] = launched.sync_fd
        self._lock = threading.Lock()
        try:
            self._pidfd: Optional[int] = _native.pidfd_open(self.pid)
        except ProcessLookupError:
            self._pidfd = None  # already exited; its code is on the sync socket
        except OSError as e:
            if e.errno != errno.ENOSYS:
                raise
            self._pidfd = None

    def __repr__(self) -> str:
        return f"<ExecSession {self.id} pid={self.pid} exit_code={self.exit_code}>"

    def fileno(self) -> int:
        """A descriptor that becomes readable when the session ends (for event loops)."""
        if self._sync_fd is None:
            raise InvalidState(f"exec session {self.id} has ended")
        return self._sync_fd

    def wait(self, timeout: Optional[float] = None) -> int:
        """Block until the process exits; its exit code (128+N for signal N)."""
        limit = check_timeout(timeout)
        with self._lock:
            if self.exit_code is not None:
                return self.exit_code
            if self._sync_fd is None:
                raise ContainerNotFound(f"container {self.container.id} was deleted")
            deadline = None if limit is None else time.monotonic() + limit
            message = conmon.read_sync(self._sync_fd, deadline)
            if message is None:
                code = self._exit_file_code()
                if code is None:
                    self._close()
                    raise ConmonError(f"conmon of exec session {self.id} died without reporting an exit code")
            else:
                code = conmon.sync_value(message)
            self.exit_code = code
            conmon.stop_daemon(self.conmon_pid, CONMON_EXIT_GRACE)
            self._close()
        if self.container._runtime.store is not None:
            with self.container._locked():
                pass  # records that this session ended
        return code

    def logs(self) -> Iterator[LogRecord]:
        """The session's output so far."""
        return read_log(self._files.log)

    def _exit_file_code(self) -> Optional[int]:
        try:
            with open(os.path.join(self._files.exit_dir, self.container.id)) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def _signal(self, signum: int) -> bool:
        if self._pidfd is None or self.exit_code is not None:
            return False
        try:
            _native.pidfd_send_signal(self._pidfd, signum)
        except ProcessLookupError:
            return False
        return True

    def _close(self) -> None:
        for name in ("_sync_fd", "_pidfd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)
        if self.attach is not None:
            self.attach.close()

    def __del__(self) -> None:
        if hasattr(self, "_pidfd"):
            self._close()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _from_ts(value: Optional[float]) -> Optional[datetime]:
    return None if value is None else datetime.fromtimestamp(value, timezone.utc)


def _start_time(pid: int) -> Optional[int]:
    """A process's start time in clock ticks since boot: with the pid, its identity."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None
