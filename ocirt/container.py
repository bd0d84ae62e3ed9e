"""Container: the lifecycle verbs on one container.

Each verb takes the container's lock (lock.py), checks the state
(state.py), acts through the runtime command (oci.py), a pidfd
(process.py) or conmon's files, and records the result. A container's exit
is the appearance of conmon's exit file, an inotify watch guarded by
conmon's pidfd: waits never poll at a fixed interval.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, ContextManager, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from . import attach, conmon, exec as execs, logs as logfile, spec as specs, terminal
from .cgroups import Cgroup, Manager as CgroupManager, limits as cgroup_limits
from .cgroups.limits import Limits, Stats
from .errors import ConmonError, ContainerNotFound, ExecSessionNotFound, InvalidArgument, InvalidState, OcirtError, RuntimeCommandError, Timeout
from .exec import ExecSession
from .launcher import Launcher, LaunchOptions, end_cgroup
from .layout import ContainerDir
from .logs import LogRecord
from .monitor import Monitor
from .oci import OCIRuntime, is_not_found
from .process import KILL_GRACE
from .record import Recorder
from .state import LIVE, TIMED_OUT, ContainerState, ContainerStatus, Timings, now, parse_status
from .steps import Steps, block, deadline_after, sleep
from .store import Record, Store
from .validate import SignalLike, check_id, check_input, check_timeout, parse_signal

log = logging.getLogger("ocirt")
DEFAULT_CREATE_TIMEOUT = 240.0  # seconds conmon and the runtime get to create a container (Runtime.create's default)
CREATED, RUNNING, PAUSED, STOPPED = (ContainerStatus.CREATED, ContainerStatus.RUNNING, ContainerStatus.PAUSED, ContainerStatus.STOPPED)


@dataclass(frozen=True)
class Services:
    """What a Container uses of the Runtime that made it (never the Runtime itself)."""

    oci: OCIRuntime
    launcher: Launcher
    cgroups: CgroupManager
    store: Optional[Store]
    forget: Callable[["Container"], None]  # called once the container is deleted


class Container:
    """One container created by `Runtime.create` (or loaded from its store). Thread-safe."""

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
        self.launch_options = LaunchOptions()  # how conmon runs it, again on a restart
        self.note = ""  # why the status is what it is, when that is not obvious
        self._svc = services
        self._files = files
        self._cgroup = cgroup
        self._monitor = Monitor(cid, files, services.oci)
        self._record = Recorder(self, services.store)
        self._sessions = execs.Sessions(self.state.exec_sessions)
        self._deleted = False

    @classmethod
    def _from_record(
        cls, services: Services, record: Record, spec: specs.Spec, files: ContainerDir, cgroup: Optional[Cgroup]
    ) -> "Container":
        """A container as its record in the store says."""
        c = cls(services, record.id, record.bundle, spec, files, cgroup, name=record.name)
        c._record.apply(record)
        if c.state.status is not STOPPED:
            c._monitor.adopt(c.state.pid)
        return c

    def __repr__(self) -> str:
        return f"<Container {self.id} {self.state.status.value}>"

    def __enter__(self) -> "Container":
        return self

    def __exit__(self, *exc: object) -> None:
        """Leaving a `with` block deletes the container (force), exception or not."""
        if not self._deleted:
            try:
                self.delete(force=True)
            except ContainerNotFound:
                pass  # deleted by another process meanwhile

    @property
    def conmon_pid(self) -> Optional[int]:
        """The pid of the container's conmon daemon (None before it reported)."""
        return self._monitor.conmon_pid

    @property
    def log_path(self) -> str:
        """The container's output, in conmon's k8s-file format (see `logs()`)."""
        return self._files.log

    # -- verbs: each blocking verb runs its steps (see ocirt.steps), which ocirt.aio drives too --

    def start(self) -> None:
        """Start a created container; InvalidState in any other state."""
        block(self.start_steps())

    def start_steps(self) -> Steps[None]:
        with (yield from self._locking()):
            self._require(CREATED, verb="start")
            started = now()  # before: a quick process may finish before start returns
            yield from self._svc.oci.start_steps(self.id, self._monitor.init, hooks=specs.has_poststart_hooks(self.spec))
            self.state.status, self.state.started_at = RUNNING, started
            self.timings.started = time.monotonic()

    def kill(self, sig: SignalLike = signal.SIGKILL) -> None:
        """Send `sig` to the container's init process.

        InvalidArgument for an unknown or out-of-range signal; InvalidState if
        the container is not created, running or paused, or has exited.
        """
        block(self.kill_steps(sig))

    def kill_steps(self, sig: SignalLike = signal.SIGKILL) -> Steps[None]:
        signum = parse_signal(sig)
        with (yield from self._locking()):
            self._require(*LIVE, verb="kill")
            if not (yield from self._monitor.signal_steps(signum)):
                yield from self._record_exit(timeout=KILL_GRACE)
                raise InvalidState(f"container {self.id} has exited (code {self.state.exit_code})")

    def stop(self, timeout: Optional[float] = 10) -> None:
        """Stop the container and record its exit.

        Sends the spec's stop signal (annotation org.opencontainers.image.stopSignal,
        else SIGTERM), resuming a paused container first so the signal lands;
        after `timeout` seconds SIGKILLs all its processes and waits up to 5 s
        more (then Timeout). A created (never started) container is killed at
        once. Stopping a stopped container does nothing.
        """
        block(self.stop_steps(timeout))

    def stop_steps(self, timeout: Optional[float] = 10) -> Steps[None]:
        grace = check_timeout(timeout)
        # The waits hold no lock: another thread, task or process may kill or stop meanwhile.
        with (yield from self._locking()):
            self._require_exists()
            if self.state.status is STOPPED:
                return
            self._require(*LIVE, verb="stop")
            if self.state.status is PAUSED:
                yield from self.resume_steps()
            # A created container runs nothing of its own yet: nothing to be gentle with.
            polite = self.state.status is not CREATED and grace != 0
            signalled = polite and (yield from self._monitor.signal_steps(specs.stop_signal(self.spec)))
        if not (signalled and (yield from self._monitor.wait_exit_steps(grace))):
            with (yield from self._locking()):
                if self._deleted or self.state.status is STOPPED:
                    return
                group = self._cgroup.container if self._cgroup is not None else None
                yield from self._monitor.kill_all_steps(self.spec, group.kill_all if group is not None else lambda: False)
            if not (yield from self._monitor.wait_exit_steps(KILL_GRACE)):
                raise Timeout(f"container {self.id} did not exit {KILL_GRACE:g}s after SIGKILL")
        with (yield from self._locking()):
            yield from self._record_exit()

    def pause(self) -> None:
        """Freeze every process of a running container."""
        block(self.pause_steps())

    def pause_steps(self) -> Steps[None]:
        with (yield from self._locking()):
            self._require(RUNNING, verb="pause")
            yield from self._svc.oci.run_steps(self._svc.oci.pause_args(self.id))
            self.state.status = PAUSED

    def resume(self) -> None:
        """Thaw a paused container."""
        block(self.resume_steps())

    def resume_steps(self) -> Steps[None]:
        with (yield from self._locking()):
            self._require(PAUSED, verb="resume")
            yield from self._svc.oci.run_steps(self._svc.oci.resume_args(self.id))
            self.state.status = RUNNING

    def stats(self) -> Stats:
        """What the kernel counts in the container's cgroup (memory, CPU time,
        processes, OOM kills, frozen), read from its files: no subprocess.
        InvalidState once the container is deleted (or if its runtime's
        cgroup manager leaves ocirt no way to read them)."""
        return cgroup_limits.read_stats(self._container_cgroup("read stats of"))

    def limits(self) -> Dict[str, Any]:
        """The limits in force in the container's cgroup, by Limits' field
        names (-1: none; None: this host cannot tell)."""
        return cgroup_limits.read_limits(self._container_cgroup("read limits of"))

    def update(self, limits: Limits) -> None:
        """Change the limits of a created, running or paused container in
        place, writing its cgroup's files. If the kernel refuses a value
        (a memory limit below what cannot be reclaimed, say) CgroupError
        says which, and every limit is left as it was."""
        block(self.update_steps(limits))

    def update_steps(self, limits: Limits) -> Steps[None]:
        if not isinstance(limits, Limits):
            raise InvalidArgument(f"limits must be an ocirt.Limits, not {type(limits).__name__}")
        with (yield from self._locking()):
            self._require(CREATED, RUNNING, PAUSED, verb="update")
            cgroup_limits.apply(self._container_cgroup("update"), limits)

    def pids(self) -> List[int]:
        """The pids (host view) of the container's processes, read from its
        cgroup. InvalidState once it is deleted."""
        group = self._cgroup.container if self._cgroup is not None and not self._deleted else None
        if group is None:
            raise InvalidState(f"cannot list the processes of container {self.id}: {'it is deleted' if self._deleted else 'its cgroup is not known'}")
        return sorted(group.pids(below=True))

    def _container_cgroup(self, verb: str) -> Mapping[str, str]:
        group = self._cgroup.container if self._cgroup is not None and not self._deleted else None
        if group is None or not group.controllers:
            raise InvalidState(f"cannot {verb} container {self.id}: {'it is deleted' if self._deleted else 'its cgroup is not known'}")
        return group.controllers

    def wait(self, timeout: Optional[float] = None) -> int:
        """Block until the container exits and return its exit code.

        128+N for a death by signal N; -1 (as podman) when conmon killed it
        at its `kill_after`. Timeout after `timeout` seconds; a conmon that
        dies without an exit file records exit code -1 and raises ConmonError.
        """
        return block(self.wait_steps(timeout))

    def wait_steps(self, timeout: Optional[float] = None) -> Steps[int]:
        limit = check_timeout(timeout)
        self._require_exists()
        if self.state.status is not STOPPED:
            # No lock while waiting: another thread, task or process may stop or kill meanwhile.
            if not (yield from self._monitor.wait_exit_steps(limit)):
                raise Timeout(f"container {self.id} still running after {limit:g}s")
            self.timings.exited = self.timings.exited or time.monotonic()
            with (yield from self._locking()):
                self._require_exists()
                yield from self._record_exit()
        if self.state.exit_code == -1 and self.note != TIMED_OUT:
            raise ConmonError(f"conmon of container {self.id} died without reporting an exit code")
        assert self.state.exit_code is not None
        return self.state.exit_code

    def wait_for_status(
        self, statuses: "Iterable[ContainerStatus | str]", timeout: Optional[float] = None, interval: float = 0.25
    ) -> ContainerStatus:
        """Block until the container is in one of `statuses` (ContainerStatus
        values, or their names) and return the one it is in.

        STOPPED is the container's exit, noticed as `wait` notices it. Any
        other status is looked for in the record every `interval` seconds:
        another process's start or pause sends this one no event (podman's
        `wait --condition` polls the same way). Timeout after `timeout`
        seconds; ContainerNotFound once the container is deleted; an unknown
        status is InvalidArgument.
        """
        return block(self.wait_for_status_steps(statuses, timeout, interval))

    def wait_for_status_steps(
        self, statuses: "Iterable[ContainerStatus | str]", timeout: Optional[float] = None, interval: float = 0.25
    ) -> Steps[ContainerStatus]:
        wanted = _statuses(statuses)
        pause = check_timeout(interval, "interval")
        if not pause:
            raise InvalidArgument(f"interval must be a positive number of seconds, not {interval!r}")
        deadline = deadline_after(check_timeout(timeout))
        while True:
            status = (yield from self.refresh_steps(blocking=False)).status
            self._require_exists()
            if status in wanted:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise Timeout(f"container {self.id} is still {status.value}, not {' or '.join(sorted(s.value for s in wanted))}, after {timeout:g}s")
            nap = pause if deadline is None else max(0.0, min(pause, deadline - time.monotonic()))
            if STOPPED in wanted and self._monitor.conmon is not None:
                if (yield from self._monitor.wait_exit_steps(nap)):  # an exit ends the nap at once
                    with (yield from self._locking()):
                        self._require_exists()
                        yield from self._record_exit()
            else:
                yield from sleep(nap)

    def update_status(self) -> ContainerState:
        """Ask the runtime for the container's status and update `state`.

        On the transition to stopped, reads the exit code, the finish time
        (the exit file's ctime) and the OOM flag. An unknown status is an
        OcirtError.
        """
        return block(self.update_status_steps())

    def update_status_steps(self) -> Steps[ContainerState]:
        with (yield from self._locking()):
            self._require_exists()
            if self.state.status is STOPPED:
                return self.state
            try:
                status = parse_status((yield from self._svc.oci.state_steps(self.id))["status"], self.id)
            except ContainerNotFound:
                if not os.path.exists(self._files.exit_file):
                    raise
                status = STOPPED
            if status is STOPPED:
                yield from self._record_exit(timeout=conmon.EXIT_GRACE)
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
        block(self.delete_steps(force))

    def delete_steps(self, force: bool = False) -> Steps[None]:
        with (yield from self._locking()):
            self._require_exists()
            status = self.state.status
            if status in (RUNNING, PAUSED, ContainerStatus.CONFIGURED) and not force:
                what = "half-created" if status is ContainerStatus.CONFIGURED else status.value
                raise InvalidState(
                    f"container {self.id} is {what}: stop it first, or force the delete (rm -f)", container_id=self.id, status=status, verb="delete"
                )
            if status is ContainerStatus.CONFIGURED:
                yield from self._monitor.stop_creating()
            try:
                yield from self._svc.oci.run_steps(self._svc.oci.delete_args(self.id, force=force or status is CREATED))
            except RuntimeCommandError as e:
                if not is_not_found(e):
                    raise
            yield from self._release()

    def restart(self, timeout: Optional[float] = 10) -> None:
        """Stop the container if it runs (as `stop(timeout)`), then run it
        again from its bundle: the same id, name, spec, labels and limits,
        its log appended to; a new init process, conmon and cgroup, no exec
        sessions. From created, running, paused or stopped.

        A container removed when it exits (auto_remove) cannot be restarted:
        InvalidState. When the new launch fails, what it made is undone, the
        container stays stopped with its last exit code, and the launch's
        error is raised.
        """
        block(self.restart_steps(timeout))

    def restart_steps(self, timeout: Optional[float] = 10) -> Steps[None]:
        check_timeout(timeout)
        self._require_exists()
        if self.auto_remove:
            raise InvalidState(
                f"cannot restart container {self.id}: it is removed when it exits", container_id=self.id, status=self.state.status, verb="restart"
            )
        yield from self.stop_steps(timeout)
        with (yield from self._locking()):
            self._require(STOPPED, verb="restart")
            began = time.monotonic()
            try:
                yield from self._svc.oci.run_steps(self._svc.oci.delete_args(self.id, force=True))
            except RuntimeCommandError as e:
                if not is_not_found(e):
                    raise
            for error in (yield from self._end_run(relaunching=True)):
                log.warning("restart of container %s: %s", self.id, error)
            exit_code, finished_at, oom_killed = self.state.exit_code, self.state.finished_at, self.state.oom_killed
            self.state = ContainerState(ContainerStatus.CONFIGURED)
            self._sessions = execs.Sessions(self.state.exec_sessions)
            self.timings = Timings(create=began)
            self.note = ""
            self._record.save()  # half-created until conmon reports: a process that dies here leaves what rm -f removes
            try:
                yield from self._launch_steps(DEFAULT_CREATE_TIMEOUT)
            except BaseException as e:
                self._undo_launch(delete_from_runtime=True)
                self.state.status, self.state.exit_code = STOPPED, exit_code
                self.state.finished_at, self.state.oom_killed = finished_at, oom_killed
                self.note = f"restart failed: {e}"
                raise
        yield from self.start_steps()

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
        stdin: bool = False,
    ) -> ExecSession:
        """Run `cmd` in the running container under its own conmon.

        Its output goes to the session's log (`ExecSession.logs()`); with
        `attach`, also live to `ExecSession.attach` (see ocirt.attach.relay),
        connected before the process starts so nothing is missed. Read that
        socket (or close it): conmon waits while it is full. With `stdin`
        (attach only), what is sent on it is the process's stdin, and
        shutting its writing end is the process's EOF.
        InvalidArgument for an empty or malformed `cmd`, user or env.
        """
        options = execs.ExecOptions(env, user, cwd, tty, tuple(cap_add), no_new_privs, session_id, timeout, attach, stdin)
        return block(self.exec_steps(cmd, options))

    def exec_steps(self, cmd: Sequence[str], options: Optional[execs.ExecOptions] = None) -> Steps[ExecSession]:
        o = options or execs.ExecOptions()
        args = execs.check_command(cmd)
        sid = check_id(o.session_id, "exec session id") if o.session_id is not None else os.urandom(16).hex()
        limit = check_timeout(o.timeout)
        if o.stdin and not o.attach:
            raise InvalidArgument("an exec's stdin is sent on its attach socket: stdin=True needs attach=True")
        ids = self._resolve_user(o.user) if o.user is not None else None  # reads the container's files: never under its lock
        with (yield from self._locking()):
            self._require(RUNNING, verb="exec in")
            process = specs.exec_process(
                self.spec, args, env=dict(o.env) if o.env else None, user=ids, cwd=o.cwd, tty=o.tty,
                cap_add=tuple(o.cap_add), no_new_privs=o.no_new_privs,
            )  # fmt: skip
            files = self._files.exec_session(sid)
            session = yield from execs.start_steps(
                self._svc.launcher, self, files, self._cgroup, sid, process, timeout=limit, attach=o.attach, stdin=o.stdin
            )
            self._sessions.add(session)
            return session

    def exec_stop(self, timeout: Optional[float] = 10) -> None:
        """Stop every exec session: SIGTERM, wait `timeout`, SIGKILL, wait 5 s."""
        block(self.exec_stop_steps(timeout))

    def exec_stop_steps(self, timeout: Optional[float] = 10) -> Steps[None]:
        grace = check_timeout(timeout)
        with (yield from self._locking()):
            self._require_exists()
            sessions = self._sessions.running()
        yield from execs.stop_all_steps(sessions, grace)

    def logs(
        self,
        follow: bool = False,
        *,
        since: Optional[datetime] = None,
        until: Optional[datetime] = None,
        tail: Optional[int] = None,
        stream: Optional[str] = None,
    ) -> Iterator[LogRecord]:
        """The container's output as LogRecord(time, stream, text).

        With `follow`, keeps yielding new records as they are written until
        the container has exited and its conmon is done writing (a log
        rotated at log_size_max is followed into the new file). `since`,
        `until` (aware datetimes) and `stream` ("stdout" or "stderr") choose
        among them; `tail` keeps the last N (with `follow`: the last N of
        what is written so far, then all that comes).
        """
        keep = logfile.chooser(since=since, until=until, stream=stream, tail=tail)
        self._require_exists()
        if follow:
            return logfile.follow(self._files.log, self._files.exit_file, self._monitor.conmon, keep=keep, tail=tail)
        return logfile.last(filter(keep, logfile.read_log(self._files.log)), tail)

    def wait_for_log(self, match: "Union[str, re.Pattern[str], Callable[[LogRecord], bool]]", timeout: Optional[float] = 60) -> LogRecord:
        """The first record of the container's output that `match` (a regular
        expression searched in each line, or a predicate) accepts, as soon as
        it is written: woken by the log file's growth, never by polling.
        Timeout after `timeout` seconds; InvalidState if the container exits
        without writing one."""
        if callable(match):
            accept = match
        else:
            pattern = re.compile(match)
            accept = lambda record: pattern.search(record.text) is not None  # noqa: E731
        limit = check_timeout(timeout)
        deadline = None if limit is None else time.monotonic() + limit
        self._require_exists()
        try:
            for record in logfile.follow(self._files.log, self._files.exit_file, self._monitor.conmon, deadline):
                if accept(record):
                    return record
        except Timeout:
            raise Timeout(f"container {self.id} wrote no line matching {match!r} within {timeout:g}s") from None
        raise InvalidState(f"container {self.id} ended its output without a line matching {match!r}")

    def connect(self, stdin: bool = False) -> socket.socket:
        """conmon's attach socket for the container, connected: its live
        output as packets, and with `stdin` its input (see ocirt.attach).
        Several may be connected at once; each gets all the output from
        its connection on. InvalidState unless the container is created,
        running or paused.

        conmon ends the stdin of a container created with stdin=True (and
        no terminal) when any attacher stops sending: at once for one
        connected without `stdin`."""
        with self._record.locked():
            self._require(CREATED, RUNNING, PAUSED, verb="attach to")
        try:
            return attach.connect(self._files.socket_link, send_input=stdin)
        except OSError as e:
            raise InvalidState(f"cannot attach to container {self.id}: its attach socket is gone ({e.strerror})", container_id=self.id) from e

    def attach(
        self, stdin: object = None, stdout: object = None, stderr: object = None, *, detach_keys: Union[str, bytes] = b""
    ) -> bool:
        """Relay the container's live output until it ends (False), or until
        `detach_keys` are read from `stdin` (True: the container runs on).

        `stdout`/`stderr`: an fd, a binary file or a function given each
        chunk (None: dropped). `stdin`: bytes (str as UTF-8) or an fd or
        file read to its end; it reaches a container created with
        stdin=True. `detach_keys`: bytes, or a spec like "ctrl-p,ctrl-q"
        (see ocirt.attach.parse_detach_keys), watched for on an fd `stdin`.
        InvalidState unless the container is created, running or paused.
        """
        keys = attach.parse_detach_keys(detach_keys) if isinstance(detach_keys, str) else bytes(detach_keys)
        out, err, given = attach.sink(stdout), attach.sink(stderr), attach.source(stdin)  # checked before connecting
        if given is not None and not self.stdin:
            raise InvalidState(f"container {self.id} was created without stdin: it takes no input", container_id=self.id)
        with self.connect(stdin=given is not None) as sock:
            return attach.relay(sock, out, err, stdin=given, detach_keys=keys)

    def resize(self, rows: int, columns: int) -> None:
        """Set the size of the container's terminal (conmon's control FIFO).
        InvalidState if it has none (terminal=False), has stopped, or its
        conmon is gone; InvalidArgument for a size out of 1-65535."""
        terminal.check_size(rows, columns)
        if not self.spec.get("process", {}).get("terminal"):
            raise InvalidState(f"container {self.id} has no terminal to resize", container_id=self.id)
        with self._record.locked():
            self._require(CREATED, RUNNING, PAUSED, verb="resize the terminal of")
        terminal.resize(self._files.ctl, rows, columns)

    def exec_run(
        self, cmd: Sequence[str], timeout: Optional[float] = None, stdin: "bytes | str | None" = None, **options: Any
    ) -> Tuple[int, str, str]:
        """Run `cmd` in the container to its end: (exit code, stdout, stderr).
        `stdin` (bytes, or str as UTF-8) is its input, then EOF; `options`
        are exec's (env, user, cwd, ...); Timeout after `timeout` seconds,
        the process stopped."""
        data = check_input(stdin)
        if data is not None:
            options.update(attach=True, stdin=True)
        feeder: Optional[threading.Thread] = None
        try:
            with self.exec(cmd, **options) as session:  # a timeout ends the process on the way out
                if data is not None and session.attach is not None:
                    feeder = attach.feeding(session.attach, data, name=f"ocirt-exec-stdin-{session.id[:12]}")
                    feeder.start()
                code = session.wait(timeout)
                out = list(session.logs())
        finally:
            if feeder is not None:
                feeder.join()  # conmon hung up: the process exited, or was stopped
        return code, _text(out, "stdout"), _text(out, "stderr")

    # -- the record, shared with other processes through the store -----------

    def refresh(self, blocking: bool = True) -> ContainerState:
        """Reload the container's record from the store and reconcile it.

        Without a store there is nothing to reload. With `blocking=False` a
        container another process is working on is reloaded as it stands.
        """
        return self._record.refresh(blocking)

    def to_record(self) -> Record:
        """What the store keeps of this container (see store.Record)."""
        return self._record.record()

    def exec_sessions(self) -> List[execs.ExecInfo]:
        """Every exec session of the container, other processes' too, oldest
        first: running ones, and the newest exec.KEPT_ENDED ended ones with
        their exit codes (recorded by conmon even when the process that
        started the session is gone)."""
        self.refresh(blocking=False)
        infos = self._sessions.infos(self._files).values()
        return sorted(infos, key=lambda i: (i.started_at or datetime.min.replace(tzinfo=timezone.utc), i.id))

    def exec_info(self, session_id: str) -> execs.ExecInfo:
        """One exec session (see exec_sessions); ExecSessionNotFound if the
        container has none of that id (or no longer keeps it)."""
        check_id(session_id, "exec session id")
        for info in self.exec_sessions():
            if info.id == session_id:
                return info
        raise ExecSessionNotFound(f"container {self.id} has no exec session {session_id}")

    def refresh_steps(self, blocking: bool = True) -> Steps[ContainerState]:
        return self._record.refresh_steps(blocking)

    def _locking(self) -> Steps[ContextManager[None]]:
        return self._record.locking()

    def _session_ended(self) -> Steps[None]:
        """An exec session ended: record its exit code, and drop the oldest
        ended sessions past exec.KEPT_ENDED with their files."""
        with (yield from self._locking()):
            if not self._deleted:
                surplus = self._sessions.surplus()
                self._sessions.forget(surplus)
                for sid in surplus:
                    shutil.rmtree(self._files.exec_session(sid).root, ignore_errors=True)

    # -- internals -----------------------------------------------------------

    def _launch_steps(self, timeout: Optional[float], listen_fds: Sequence[int] = ()) -> Steps[None]:
        """Make conmon's cgroup and have conmon create the container, as
        `launch_options` say; the caller undoes a failure (`_undo_launch`)."""
        self._cgroup = self._svc.cgroups.create(f"ocirt-conmon-{self.id}", f"ocirt-{self.id}", needs=specs.controllers_used(self.spec))
        launched = yield from self._svc.launcher.create_steps(
            self.id, self._files, self.bundle, self.spec, cgroup=self._cgroup, terminal=bool(self.spec["process"].get("terminal")),
            stdin=self.stdin, options=self.launch_options, timeout=timeout, listen_fds=listen_fds,
        )  # fmt: skip
        self._created(launched)

    def _undo_launch(self, *, delete_from_runtime: bool) -> None:
        """Remove whatever a failed launch made, in reverse order, blocking.

        Best effort, step by step: a step that fails is logged and the next
        one still runs, and the caller raises the launch's own error.
        """
        files = self._files
        # conmon joined its cgroup before it ran anything: whatever it started
        # (the runtime, the container's init) is in it or below, even what a
        # pid file does not name yet. End all of it before the runtime's delete.
        if self._cgroup is not None:
            end_cgroup(self._cgroup, grace=0)
        if delete_from_runtime:
            try:
                self._svc.oci.delete(self.id, force=True)
            except RuntimeCommandError as e:
                if not is_not_found(e):
                    log.warning("cannot delete half-created container %s from the runtime: %s", self.id, e)
        self._monitor.close()
        daemon = conmon.open_conmon(conmon.read_pid(files.conmon_pidfile), self.id)
        try:
            errors = self._svc.launcher.teardown(files, self._cgroup, [daemon] if daemon else [])
        except (OcirtError, OSError) as e:
            errors = [str(e)]
        finally:
            if daemon is not None:
                daemon.close()
        self._cgroup = None
        for error in errors:
            log.warning("cleanup of half-created container %s: %s", self.id, error)

    def _end_run(self, *, relaunching: bool) -> Steps[List[str]]:
        """After the runtime deleted the container: end its conmons, remove
        its cgroup and run files (with `relaunching`, keep the log), close
        its fds. What could not be removed, as messages."""
        self._monitor.close_init()
        conmons = [h for h in (*self._sessions.conmons(), self._monitor.conmon) if h is not None]
        sessions = {*self.state.exec_sessions, *self._sessions.foreign}
        errors = yield from self._svc.launcher.teardown_steps(self._files, self._cgroup, conmons, sessions, relaunching=relaunching)
        self._monitor.close()
        self._sessions.close()
        return errors

    def _created(self, launched: conmon.Launched) -> None:
        """conmon reported the container's pid (called by Runtime.create): record it."""
        self._monitor.launched(launched)
        self.state.pid, self.state.status = launched.pid, CREATED
        self.timings.spawned, self.timings.created = launched.spawned_at, time.monotonic()
        self._record.save()

    def _require_exists(self) -> None:
        if self._deleted:
            raise ContainerNotFound(f"container {self.id} was deleted", container_id=self.id)

    def _require(self, *allowed: ContainerStatus, verb: str) -> None:
        self._require_exists()
        if self.state.status not in allowed:
            raise InvalidState(
                f"cannot {verb} container {self.id}: it is {self.state.status.value}", container_id=self.id, status=self.state.status, verb=verb
            )

    def _resolve_user(self, user: Union[str, int]) -> specs.Spec:
        """{"uid", "gid"} for `user`, names looked up in the container's own view of
        its root (its init's /proc/<pid>/root), else in the bundle's root filesystem."""
        root = self._monitor.open_root()
        try:
            return specs.parse_user(user, root if root is not None else os.path.join(self.bundle, self.spec["root"]["path"]))
        finally:
            if root is not None:
                os.close(root)

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

    def _oom_kills(self) -> int:
        group = self._cgroup.container if self._cgroup is not None else None
        return cgroup_limits.oom_kills(group.controllers) if group is not None else 0

    def _release(self) -> Steps[None]:
        """After the runtime deleted the container: conmon, cgroup, files, fds."""
        self._deleted = True
        errors = yield from self._end_run(relaunching=False)
        if self.owned_bundle:
            shutil.rmtree(self.bundle, ignore_errors=True)
        self._svc.forget(self)
        self.timings.deleted = time.monotonic()
        if errors:
            raise OcirtError(f"container {self.id} deleted, but: " + "; ".join(errors))

    def _freezer_dir(self) -> Optional[str]:
        """The container's freezer cgroup (v1), or its v2 cgroup; None if unknown."""
        return getattr(self._cgroup.container if self._cgroup else None, "freezer", None)

    def _close_fds(self) -> None:
        self._monitor.close()
        self._sessions.close()


def _statuses(given: "Iterable[ContainerStatus | str]") -> "frozenset[ContainerStatus]":
    """`given` as ContainerStatus values; InvalidArgument naming one that is none, or for none at all."""
    if isinstance(given, (str, ContainerStatus)):
        given = [given]
    out = set()
    for status in given:
        try:
            out.add(ContainerStatus(status))
        except ValueError:
            known = ", ".join(s.value for s in ContainerStatus)
            raise InvalidArgument(f"unknown container status {status!r}: use {known}") from None
    if not out:
        raise InvalidArgument("wait_for_status needs at least one status")
    return frozenset(out)


def _text(records: Sequence[LogRecord], stream: str) -> str:
    """One stream of the records, each line ended by a newline."""
    return "".join(r.text + "\n" for r in records if r.stream == stream)
