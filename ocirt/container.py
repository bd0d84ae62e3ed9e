"""Container: the verbs on one container, and their contracts.

Each verb is written once, as steps (see ocirt.steps), and offered
blocking (`start`) and as steps (`start_steps`, which ocirt.aio awaits).
Each takes the container's lock, checks the state (state.py), acts through
the runtime command (oci.py), a pidfd (process.py) or conmon's files, and
records the result. The lifecycle verbs are done in lifecycle.py; what a
container is made of is core.py.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from . import attach, exec as execs, exec_verbs, lifecycle, logs as logfile, terminal
from .cgroups import limits as cgroup_limits
from .cgroups.limits import Limits, Stats
from .core import CREATED, PAUSED, RUNNING, ContainerCore
from .errors import ContainerNotFound, ExecSessionNotFound, InvalidArgument, InvalidState, Timeout
from .exec import ExecSession
from .logs import LogRecord
from .state import ContainerState, ContainerStatus
from .steps import Steps, block, blocking
from .validate import SignalLike, check_id, check_input, check_timeout


class Container(ContainerCore):
    """One container created by `Runtime.create` (or loaded from its store). Thread-safe."""

    def __enter__(self) -> "Container":
        return self

    def __exit__(self, *exc: object) -> None:
        """Leaving a `with` block deletes the container (force), exception or not."""
        if not self._deleted:
            try:
                self.delete(force=True)
            except ContainerNotFound:
                pass  # deleted by another process meanwhile

    # -- the lifecycle ---------------------------------------------------------

    def start_steps(self) -> Steps[None]:
        """Start a created container; InvalidState in any other state."""
        return lifecycle.start(self)

    def kill_steps(self, sig: SignalLike = signal.SIGKILL) -> Steps[None]:
        """Send `sig` to the container's init process.

        InvalidArgument for an unknown or out-of-range signal; InvalidState if
        the container is not created, running or paused, or has exited.
        """
        return lifecycle.kill(self, sig)

    def stop_steps(self, timeout: Optional[float] = 10) -> Steps[None]:
        """Stop the container and record its exit.

        Sends the spec's stop signal (annotation org.opencontainers.image.stopSignal,
        else SIGTERM), resuming a paused container first so the signal lands;
        after `timeout` seconds SIGKILLs all its processes and waits up to 5 s
        more (then Timeout). A created (never started) container is killed at
        once. Stopping a stopped container does nothing.
        """
        return lifecycle.stop(self, timeout)

    def pause_steps(self) -> Steps[None]:
        """Freeze every process of a running container."""
        return lifecycle.pause(self)

    def resume_steps(self) -> Steps[None]:
        """Thaw a paused container."""
        return lifecycle.resume(self)

    def wait_steps(self, timeout: Optional[float] = None) -> Steps[int]:
        """Block until the container exits and return its exit code.

        128+N for a death by signal N; -1 (as podman) when conmon killed it
        at its `kill_after`. Timeout after `timeout` seconds; a conmon that
        dies without an exit file records exit code -1 and raises ConmonError.
        """
        return lifecycle.wait(self, timeout)

    def wait_for_status_steps(
        self, statuses: "Iterable[ContainerStatus | str]", timeout: Optional[float] = None, interval: float = 0.25
    ) -> Steps[ContainerStatus]:
        """Block until the container is in one of `statuses` (ContainerStatus
        values, or their names) and return the one it is in.

        STOPPED is the container's exit, noticed as `wait` notices it. Any
        other status is looked for in the record every `interval` seconds:
        another process's start or pause sends this one no event (podman's
        `wait --condition` polls the same way). Timeout after `timeout`
        seconds; ContainerNotFound once the container is deleted; an unknown
        status is InvalidArgument.
        """
        return lifecycle.wait_for_status(self, statuses, timeout, interval)

    def update_status_steps(self) -> Steps[ContainerState]:
        """Ask the runtime for the container's status and update `state`.

        On the transition to stopped, reads the exit code, the finish time
        (the exit file's ctime) and the OOM flag. An unknown status is an
        OcirtError.
        """
        return lifecycle.update_status(self)

    def delete_steps(self, force: bool = False) -> Steps[None]:
        """Remove the container from the runtime and every trace of it.

        A running or paused container needs `force` (it is killed first), and
        so does a half-created one (left by a process that died in create).
        Afterwards conmon has exited, its cgroup is gone, and every verb
        raises ContainerNotFound.
        """
        return lifecycle.delete(self, force)

    def restart_steps(self, timeout: Optional[float] = 10) -> Steps[None]:
        """Stop the container if it runs (as `stop(timeout)`), then run it
        again from its bundle: the same id, name, spec, labels and limits,
        its log appended to; a new init process, conmon and cgroup, no exec
        sessions. From created, running, paused or stopped.

        A container removed when it exits (auto_remove) cannot be restarted:
        InvalidState. When the new launch fails, what it made is undone, the
        container stays stopped with its last exit code, and the launch's
        error is raised.
        """
        return lifecycle.restart(self, timeout)

    start = blocking(start_steps)
    kill = blocking(kill_steps)
    stop = blocking(stop_steps)
    pause = blocking(pause_steps)
    resume = blocking(resume_steps)
    wait = blocking(wait_steps)
    wait_for_status = blocking(wait_for_status_steps)
    update_status = blocking(update_status_steps)
    delete = blocking(delete_steps)
    restart = blocking(restart_steps)

    # -- resources: the container's cgroup ----------------------------------------

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

    def update_steps(self, limits: Limits) -> Steps[None]:
        """Change the limits of a created, running or paused container in
        place, writing its cgroup's files. If the kernel refuses a value
        (a memory limit below what cannot be reclaimed, say) CgroupError
        says which, and every limit is left as it was."""
        if not isinstance(limits, Limits):
            raise InvalidArgument(f"limits must be an ocirt.Limits, not {type(limits).__name__}")
        with (yield from self._locking()):
            self._require(CREATED, RUNNING, PAUSED, verb="update")
            cgroup_limits.apply(self._container_cgroup("update"), limits)

    update = blocking(update_steps)

    def pids(self) -> List[int]:
        """The pids (host view) of the container's processes, read from its
        cgroup. InvalidState once it is deleted."""
        group = self._cgroup.container if self._cgroup is not None and not self._deleted else None
        if group is None:
            raise InvalidState(f"cannot list the processes of container {self.id}: {'it is deleted' if self._deleted else 'its cgroup is not known'}")
        return sorted(group.pids(below=True))

    # -- processes run inside: exec ----------------------------------------------

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
        """`exec` as steps, its options as one ExecOptions."""
        return exec_verbs.exec_in(self, cmd, options or execs.ExecOptions())

    def exec_stop_steps(self, timeout: Optional[float] = 10) -> Steps[None]:
        """Stop every exec session: SIGTERM, wait `timeout`, SIGKILL, wait 5 s."""
        grace = check_timeout(timeout)
        with (yield from self._locking()):
            self._require_exists()
            sessions = self._sessions.running()
        yield from execs.stop_all_steps(sessions, grace)

    exec_stop = blocking(exec_stop_steps)

    def exec_run(
        self, cmd: Sequence[str], timeout: Optional[float] = None, stdin: "bytes | str | None" = None, **options: Any
    ) -> Tuple[int, str, str]:
        """Run `cmd` in the container to its end: (exit code, stdout, stderr).
        `stdin` (bytes, or str as UTF-8) is its input, then EOF; `options`
        are exec's (env, user, cwd, ...); Timeout after `timeout` seconds,
        the process stopped."""
        return exec_verbs.run_to_end(self.exec, cmd, timeout, check_input(stdin), options)

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

    # -- streams: output, input, the terminal ----------------------------------

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
        return logfile.chosen(self._files.log, keep, tail)

    def wait_for_log(self, match: "Union[str, re.Pattern[str], Callable[[LogRecord], bool]]", timeout: Optional[float] = 60) -> LogRecord:
        """The first record of the container's output that `match` (a regular
        expression searched in each line, or a predicate) accepts, as soon as
        it is written: woken by the log file's growth, never by polling.
        Timeout after `timeout` seconds; InvalidState if the container exits
        without writing one."""
        self._require_exists()
        return logfile.wait_for(self.id, self._files.log, self._files.exit_file, self._monitor.conmon, match, timeout)

    # -- its network -----------------------------------------------------------

    @property
    def ip(self) -> Optional[str]:
        """Its address on its bridge network (None on none or host)."""
        address = self.network.get("address")
        return str(address) if address else None

    def ports(self) -> List[Tuple[int, str, str, int]]:
        """Its published ports: (container port, protocol, host address ("" for all), host port) each."""
        return [(int(p["container_port"]), str(p["protocol"]), str(p["host_ip"]), int(p["host_port"])) for p in self.network.get("ports") or []]

    def host_port(self, port: int, protocol: str = "tcp") -> int:
        """The host port its `port` is published on (InvalidArgument if it is not)."""
        for inner, proto, _, outer in self.ports():
            if (inner, proto) == (port, protocol):
                return outer
        raise InvalidArgument(f"container {self.name} publishes no {port}/{protocol} (see ports())")

    def wait_for_port(self, port: int, timeout: Optional[float] = 30) -> Tuple[str, int]:
        """Return once a TCP connection to its `port` is accepted: through the
        host port it is published on (at 127.0.0.1, or the one address it is
        published on), else at its own address; the (host, port) that
        answered. No event says a port listens: it tries every few
        milliseconds, at most `timeout` seconds (Timeout), and gives up with
        InvalidState if the container exits first or is on no network."""
        limit = check_timeout(timeout)
        published = [(host or "127.0.0.1", outer) for inner, proto, host, outer in self.ports() if (inner, proto) == (port, "tcp")]
        if not published and self.ip is None:
            raise InvalidState(f"container {self.name} is on no bridge network: give it network='bridge' to reach its ports")
        target = published[0] if published else (str(self.ip), port)
        deadline = None if limit is None else time.monotonic() + limit
        pause = 0.001
        while True:
            try:
                with socket.create_connection(target, timeout=1):
                    return target
            except OSError:
                pass
            if os.path.exists(self._files.exit_file):
                raise InvalidState(f"container {self.name} exited before its port {port} answered")
            if deadline is not None and time.monotonic() >= deadline:
                raise Timeout(f"port {port} of container {self.name} did not answer within {limit:g}s")
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

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

    def resize(self, rows: int, columns: int, wait: bool = True) -> None:
        """Set the size of the container's terminal (conmon's control FIFO),
        returning once the container's process has it: what is sent after
        reaches a process of the new size (Timeout if it never takes it; not
        `wait`: returns once asked, as a relay of the caller's SIGWINCH may).
        InvalidState if it has none (terminal=False), has stopped, or its
        conmon is gone; InvalidArgument for a size out of 1-65535."""
        terminal.check_size(rows, columns)
        if not self.spec.get("process", {}).get("terminal"):
            raise InvalidState(f"container {self.id} has no terminal to resize", container_id=self.id)
        with self._record.locked():
            self._require(CREATED, RUNNING, PAUSED, verb="resize the terminal of")
        terminal.resize(self._files.ctl, rows, columns, self._monitor.init if wait else None)
