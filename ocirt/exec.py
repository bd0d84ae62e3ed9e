"""Exec sessions: processes run in a running container, each under its own conmon.

A session's exit is conmon's last message on its sync socket (no polling);
signals go through a pidfd opened while the process was known to be alive.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Protocol, Sequence, Tuple, Union

from . import conmon, spec as specs, terminal
from .cgroups import Cgroup
from .errors import ConmonError, ContainerNotFound, InvalidArgument, InvalidState, Timeout
from .launcher import Launcher
from .layout import ContainerDir, ExecDir, read_small
from .logs import LogRecord, read_log
from .process import KILL_GRACE, ProcessHandle, wait_steps
from .steps import StepLock, Steps, block
from .store import from_timestamp
from .validate import check_argv, check_timeout


class Owner(Protocol):
    """The container a session runs in, as the session sees it."""

    id: str

    def _session_ended(self) -> Steps[None]:
        """Record that a session ended (so other processes stop seeing it)."""



def check_command(cmd: object) -> List[str]:
    """`cmd` as a list of non-empty strings without NUL, or InvalidArgument."""
    return list(check_argv(cmd, "exec's command"))


@dataclass(frozen=True)
class ExecOptions:
    """Container.exec's options (see there); the asyncio API takes the same."""

    env: Optional[Mapping[str, str]] = None
    user: Union[str, int, None] = None
    cwd: Optional[str] = None
    tty: bool = False
    cap_add: Sequence[str] = ()
    no_new_privs: Optional[bool] = None
    session_id: Optional[str] = None
    timeout: Optional[float] = 240
    attach: bool = False
    stdin: bool = False  # the process reads what is sent on the attach socket (attach only)


def start_steps(
    launcher: Launcher,
    container: Owner,
    files: ExecDir,
    cgroup: Optional[Cgroup],
    session_id: str,
    process: specs.Spec,
    *,
    timeout: Optional[float],
    attach: bool,
    stdin: bool = False,
) -> Steps["ExecSession"]:
    """Launch `process` (an OCI process) in `container` as session `session_id`, its files in `files` (steps)."""
    tty = bool(process.get("terminal"))
    started = time.time()  # before the launch: a quick process's exit file may be written before the pid is back
    try:
        launched = yield from launcher.exec_steps(
            container.id, files, process, cgroup=cgroup, tty=tty, attach=attach, stdin=stdin, timeout=timeout
        )
    except FileExistsError:
        raise InvalidArgument(f"exec session {session_id!r} already exists in container {container.id}") from None
    session = ExecSession(container, session_id, files, launched, process.get("args") or (), started)
    session.tty = tty
    return session


def stop_all_steps(sessions: Sequence["ExecSession"], grace: Optional[float]) -> Steps[None]:
    """SIGTERM each session, wait `grace` seconds, SIGKILL the rest, wait 5 s; then reap (steps)."""
    termed = [s._process for s in sessions if s._process is not None and s._signal(signal.SIGTERM)]
    left = (yield from wait_steps(termed, grace)) if grace != 0 else termed
    if left:
        for s in sessions:
            s._signal(signal.SIGKILL)
        left = yield from wait_steps([s._process for s in sessions if s._process is not None], KILL_GRACE)
        if left:
            raise Timeout(f"exec processes {[h.pid for h in left]} did not exit {KILL_GRACE:g}s after SIGKILL")
    for s in sessions:
        yield from s.wait_steps(KILL_GRACE)


KEPT_ENDED = 64  # ended sessions a container keeps (record, log, exit file): the newest; older ones go


@dataclass(frozen=True)
class ExecInfo:
    """An exec session as any process can see it (Container.exec_sessions)."""

    id: str
    command: List[str]
    pid: int
    conmon_pid: int
    started_at: Optional[datetime]
    exit_code: Optional[int]  # None while it runs, or when no one can tell (`finished_at` is None too)
    finished_at: Optional[datetime]

    @property
    def running(self) -> bool:
        return self.exit_code is None


class Sessions:
    """One container's exec sessions: this process's, as ExecSession objects
    (the dict `mine`, which is `ContainerState.exec_sessions`), and those
    other processes recorded, as their records (see `recorded`)."""

    def __init__(self, mine: Dict[str, "ExecSession"]) -> None:
        self.mine = mine
        self.foreign: Dict[str, Dict[str, Any]] = {}

    def add(self, session: "ExecSession") -> None:
        self.mine[session.id] = session

    def running(self) -> List["ExecSession"]:
        """This process's sessions that have not been seen to end."""
        return [s for s in self.mine.values() if s.exit_code is None]

    def recorded(self) -> Dict[str, Dict[str, Any]]:
        """What the store keeps of every session, by id: {"pid", "conmon_pid",
        "cmd", "started_at", and once known "exit_code", "finished_at"}
        (times as Unix seconds). Only the newest KEPT_ENDED ended ones."""
        out = dict(self.foreign)
        out.update((sid, s.record()) for sid, s in self.mine.items())
        return out

    def surplus(self) -> List[str]:
        """Sessions whose end is recorded, past the newest KEPT_ENDED, oldest
        first: for the caller to drop (`forget`) with their files. A session
        whose end only its exit file tells may still have a waiter (and a
        conmon writing there): it stays until the container goes."""
        ended = [(rec["finished_at"] or 0.0, sid) for sid, rec in self.recorded().items() if rec.get("exit_code") is not None]
        return [sid for _, sid in sorted(ended)[: max(0, len(ended) - KEPT_ENDED)]]

    def forget(self, session_ids: Iterable[str]) -> None:
        for sid in session_ids:
            self.foreign.pop(sid, None)
            self.mine.pop(sid, None)

    def infos(self, files: ContainerDir) -> Dict[str, ExecInfo]:
        """Every session recorded, by id, with the exit code and time conmon
        wrote to its exit file where no process has recorded them yet (its
        caller may be gone: `exec -d`, or killed)."""
        out = {}
        for sid, rec in self.recorded().items():
            code, finished = rec.get("exit_code"), rec.get("finished_at")
            if code is None:
                code, finished = exit_file(files.exec_session(sid), files.cid)
            out[sid] = ExecInfo(
                sid, list(rec.get("cmd") or []), int(rec.get("pid") or 0), int(rec.get("conmon_pid") or 0),
                from_timestamp(rec.get("started_at")), code, from_timestamp(finished),
            )  # fmt: skip
        return out

    def take_recorded(self, recorded: Dict[str, Dict[str, Any]]) -> None:
        """Take over the sessions a record lists (other processes' among them)."""
        self.foreign = {k: v for k, v in recorded.items() if k not in self.mine}

    def conmons(self) -> List[ProcessHandle]:
        """The conmons of this process's sessions that are still held."""
        return [s._conmon for s in self.mine.values() if s._conmon is not None]

    def close(self) -> None:
        for s in self.mine.values():
            s._close()


def exit_file(files: ExecDir, container_id: str) -> Tuple[Optional[int], Optional[float]]:
    """(exit code, when it was written) from a session's exit file; (None, None)
    while there is none. conmon names it after the container."""
    path = os.path.join(files.exit_dir, container_id)
    try:
        code = int(read_small(path, 64).strip())
        return code, os.stat(path).st_mtime
    except (OSError, ValueError):
        return None, None


class ExecSession:
    """A process started by `Container.exec`, monitored by its own conmon."""

    def __init__(
        self, container: Owner, session_id: str, files: ExecDir, launched: conmon.Launched, command: Sequence[str] = (), started_at: float = 0.0
    ) -> None:
        self.id = session_id
        self.container = container
        self.command = list(command)
        self.pid = launched.pid
        self.conmon_pid = launched.conmon_pid
        self.started_at = started_at or time.time()  # Unix seconds
        self.exit_code: Optional[int] = None
        self.finished_at: Optional[float] = None  # Unix seconds, once the exit code is known
        self.tty = False  # the process has a terminal (conmon's)
        self.attach = launched.attach  # the live output socket, with exec(attach=True)
        self._files = files
        self._sync_fd: Optional[int] = launched.sync_fd
        self._lock = StepLock()  # held across the wait: one waiter reads the sync socket
        # The process is conmon's child (conmon is its subreaper): proven so.
        # None when it already exited: its code is on the sync socket.
        self._process = ProcessHandle.open(self.pid, parent=launched.conmon_pid)
        self._conmon = launched.conmon

    def __repr__(self) -> str:
        return f"<ExecSession {self.id} pid={self.pid} exit_code={self.exit_code}>"

    def __enter__(self) -> "ExecSession":
        return self

    def __exit__(self, *exc: object) -> None:
        """Leaving a `with` block ends the process if it still runs (SIGKILL),
        waits for it, and closes the attach socket."""
        try:
            if self.exit_code is None and self._sync_fd is not None:
                self._signal(signal.SIGKILL)
                self.wait(KILL_GRACE)
        finally:
            if self.attach is not None:
                self.attach.close()

    def fileno(self) -> int:
        """A descriptor that becomes readable when the session ends (for event loops)."""
        if self._sync_fd is None:
            raise InvalidState(f"exec session {self.id} has ended")
        return self._sync_fd

    def wait(self, timeout: Optional[float] = None) -> int:
        """Block until the process exits; its exit code (128+N for signal N)."""
        return block(self.wait_steps(timeout))

    def wait_steps(self, timeout: Optional[float] = None) -> Steps[int]:
        """wait, as steps (see ocirt.steps)."""
        limit = check_timeout(timeout)
        with (yield from self._lock.hold()):
            if self.exit_code is not None:
                return self.exit_code
            if self._sync_fd is None:
                raise ContainerNotFound(f"container {self.container.id} was deleted")
            deadline = None if limit is None else time.monotonic() + limit
            message = yield from conmon.read_sync_steps(self._sync_fd, deadline)
            if message is None:
                code, _ = exit_file(self._files, self.container.id)
                if code is None:
                    self._close()
                    raise ConmonError(f"conmon of exec session {self.id} died without reporting an exit code")
            else:
                code = conmon.sync_value(message)
            self.exit_code, self.finished_at = code, time.time()
            if self._conmon is not None:
                yield from self._conmon.stop_steps(conmon.EXIT_GRACE)
            self._close()
            for path in (self._files.socket_link, self._files.process):  # the log stays for logs()
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass  # the container was deleted meanwhile
        yield from self.container._session_ended()
        return code

    def resize(self, rows: int, columns: int, wait: bool = True) -> None:
        """Set the size of the session's terminal, returning once the process's
        terminal has it (Timeout if it never does; not `wait`: once asked).
        InvalidState if it has none (tty=False) or has ended."""
        if not self.tty:
            raise InvalidState(f"exec session {self.id} has no terminal to resize")
        terminal.resize(self._files.ctl, rows, columns, self._process if wait and self.exit_code is None else None)

    def logs(self) -> Iterator[LogRecord]:
        """The session's output so far."""
        return read_log(self._files.log)

    def record(self) -> Dict[str, Any]:
        """What the store keeps of this session (see Sessions.recorded)."""
        out: Dict[str, Any] = {"pid": self.pid, "conmon_pid": self.conmon_pid, "cmd": self.command, "started_at": self.started_at}
        if self.exit_code is not None:
            out.update(exit_code=self.exit_code, finished_at=self.finished_at)
        return out

    def _signal(self, signum: int) -> bool:
        if self._process is None or self.exit_code is not None:
            return False
        return self._process.signal(signum)

    def _close(self) -> None:
        if self._sync_fd is not None:
            os.close(self._sync_fd)
            self._sync_fd = None
        for handle in (self._process, self._conmon):
            if handle is not None:
                handle.close()
        if self.attach is not None:
            self.attach.close()

    def __del__(self) -> None:
        if hasattr(self, "_process"):
            self._close()
