"""A container's state: its status, its exit as conmon recorded it, and
reconciliation of a record that another (maybe dead) process left behind.

Exit codes are never guessed: they come from conmon's exit file, or are -1
with a note when conmon died without writing one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import TYPE_CHECKING, Any, Callable, Dict, NamedTuple, Optional

from .conmon import EXIT_GRACE
from .errors import ConmonError, OcirtError, Timeout
from .layout import ContainerDir
from .store import Record, from_timestamp

if TYPE_CHECKING:
    from .exec import ExecSession
    from .steps import Steps

CONMON_DIED = "conmon died without recording an exit code"
ORPHANED = "conmon died: the container runs on unmonitored (no log, no exit code); stop or rm -f ends it"
TIMED_OUT = "killed by conmon: its time to run (kill_after) was up"
HALF_CREATED = "half-created by a process that died; remove it with rm -f"


class ContainerStatus(str, Enum):
    """Where a container is in its lifecycle (the runtime's states, plus configured).

    CONFIGURED: recorded, but conmon has not yet reported the container
    (being created, or left half-created by a process that died).
    """

    CONFIGURED = "configured"
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


LIVE = (ContainerStatus.CREATED, ContainerStatus.RUNNING, ContainerStatus.PAUSED)


@dataclass
class ContainerState:
    """What ocirt knows about a container; `Container.update_status()` refreshes it."""

    status: ContainerStatus
    pid: Optional[int] = None
    exit_code: Optional[int] = None
    oom_killed: bool = False
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    exec_sessions: Dict[str, "ExecSession"] = field(default_factory=dict)

    def record_exit(self, exit: "Exit") -> None:
        """The container has stopped, as `exit` says."""
        self.status = ContainerStatus.STOPPED
        self.exit_code = exit.code
        # ctime comes from the kernel's coarse clock (a tick behind): never
        # let a quick container finish before it started.
        finished = exit.finished_at
        if self.started_at is not None and finished < self.started_at:
            finished = self.started_at
        self.finished_at = finished
        self.oom_killed = exit.oom_killed

    def fields(self) -> Dict[str, Any]:
        """The state's part of a store Record."""
        return {
            "status": self.status.value,
            "pid": self.pid,
            "exit_code": self.exit_code,
            "oom_killed": self.oom_killed,
            "started_at": self.started_at.timestamp() if self.started_at else None,
            "finished_at": self.finished_at.timestamp() if self.finished_at else None,
        }

    def apply(self, record: Record) -> None:
        """Take over the state another process recorded."""
        self.status = ContainerStatus(record.status)
        self.pid = record.pid
        self.exit_code = record.exit_code
        self.oom_killed = record.oom_killed
        self.started_at = from_timestamp(record.started_at)
        self.finished_at = from_timestamp(record.finished_at)


def parse_status(raw: object, cid: str) -> ContainerStatus:
    """A status the runtime reported; OcirtError for one ocirt does not know."""
    try:
        return ContainerStatus(raw)
    except ValueError:
        raise OcirtError(f"runtime reported unknown status {raw!r} for container {cid}") from None


@dataclass
class Timings:
    """When each phase of a container's life ended, in time.monotonic() seconds;
    None until reached (or when another process did it).

    create: Runtime.create was called; spawned: conmon was spawned; created:
    conmon reported the container's pid (the runtime's create is done);
    started: start returned; exited: the exit was noticed; recorded: the
    exit code was read and recorded; deleted: delete returned.
    """

    create: Optional[float] = None
    spawned: Optional[float] = None
    created: Optional[float] = None
    started: Optional[float] = None
    exited: Optional[float] = None
    recorded: Optional[float] = None
    deleted: Optional[float] = None

    PHASES = (("spawn", "create", "spawned"), ("create", "spawned", "created"), ("start", "created", "started"),
              ("run", "started", "exited"), ("record", "exited", "recorded"), ("delete", "recorded", "deleted"))  # fmt: skip

    def phases(self) -> Dict[str, float]:
        """Seconds each phase took, for the phases whose start and end were both seen here."""
        out = {}
        for phase, begin, end in self.PHASES:
            a, b = getattr(self, begin), getattr(self, end)
            if a is not None and b is not None:
                out[phase] = b - a
        return out


class Exit(NamedTuple):
    """How a container ended."""

    code: int  # 128+N for a death by signal N; -1 when conmon died without saying
    finished_at: datetime
    oom_killed: bool = False
    note: str = ""


def read_exit(files: ContainerDir) -> Exit:
    """The exit conmon recorded in its exit file (and oom flag).

    A missing exit file means conmon is gone without writing one: exit code
    -1, with a note. ConmonError if the file holds no exit code.
    """
    path = files.exit_file
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            text = os.read(fd, 64).decode(errors="replace").strip()
            finished = os.fstat(fd).st_ctime
        finally:
            os.close(fd)
    except FileNotFoundError:
        return Exit(-1, now(), note=CONMON_DIED)
    try:
        code = int(text)
    except ValueError:
        raise ConmonError(f"conmon's exit file {path} holds {text[:50]!r}, not an exit code") from None
    note = TIMED_OUT if code == -1 else ""  # the only -1 conmon writes (podman shows it as the exit code too)
    return Exit(code, datetime.fromtimestamp(finished, timezone.utc), os.path.exists(files.oom), note)


def reconcile_steps(
    state: ContainerState,
    files: ContainerDir,
    *,
    conmon_alive: Callable[[], bool],
    runtime_status: Optional[Callable[[], Steps[str]]] = None,
    orphan_status: Callable[[], Steps[str]],
    wait_exit: Callable[[float], Steps[bool]],
) -> Steps[str]:
    """Bring a recorded state up to date with what conmon and the runtime
    know; steps (see ocirt.steps), so that asking the runtime and waiting
    for an exit file never block an event loop.

    An exit file means the container exited. A dead conmon without one:
    the runtime is asked (`orphan_status`); a container that outlived its
    conmon keeps its status with the note ORPHANED, one that went with it
    has exit code -1. With `runtime_status` (a "deep" reconcile) the
    runtime is asked too, for a start or pause done by a process that died
    before it recorded it. Returns the note to keep with the state ("" if
    none new).
    """
    if state.status is ContainerStatus.CONFIGURED:
        return HALF_CREATED
    if state.status is ContainerStatus.STOPPED:
        return ""
    if os.path.exists(files.exit_file):
        return _stopped(state, files)
    if not conmon_alive():
        if os.path.exists(files.exit_file):
            return _stopped(state, files)  # written as conmon went
        raw = yield from orphan_status()
        if raw in (s.value for s in LIVE):
            state.status = ContainerStatus(raw)
            return ORPHANED
        state.record_exit(Exit(-1, now(), note=CONMON_DIED))
        return CONMON_DIED
    if runtime_status is None:
        return ""
    raw = yield from runtime_status()
    if raw == ContainerStatus.STOPPED.value:
        if not (yield from wait_exit(EXIT_GRACE)):
            raise Timeout(f"no exit file from conmon for container {os.path.basename(files.exit_file)} after {EXIT_GRACE:g}s")
        return _stopped(state, files)
    if raw in (s.value for s in LIVE):
        if raw == ContainerStatus.RUNNING.value and state.started_at is None:
            state.started_at = now()  # started by a process that died first
        state.status = ContainerStatus(raw)
    return ""


def _stopped(state: ContainerState, files: ContainerDir) -> str:
    exit = read_exit(files)
    state.record_exit(exit)
    return exit.note


def now() -> datetime:
    return datetime.now(timezone.utc)



