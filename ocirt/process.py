"""Processes named by pidfds: a signal or a wait reaches the process meant,
never one that reused its pid.

A pid read from storage or from a pid file proves nothing: the process may
be long gone and its number given to another. `ProcessHandle.open` opens
the pidfd first and checks the identity afterwards (start time, parent,
command line), so what it checked is the very process the pidfd holds.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import threading
from typing import Callable, Iterable, List, Optional

from . import native as _native
from .layout import read_once, read_small
from .steps import Readable, Steps, block, deadline_after

KILL_GRACE = 5.0  # seconds a SIGKILLed process gets to be gone before that is an error


def proc_stat(pid: int) -> Optional[List[str]]:
    """The fields of /proc/<pid>/stat after the command name (field 3 onwards), or None."""
    try:
        data = read_once(f"/proc/{pid}/stat")
    except OSError:
        return None
    # The command name sits in parentheses and may hold spaces and parentheses.
    return data.rsplit(b")", 1)[1].decode("ascii", "replace").split()


def start_time(pid: int) -> Optional[int]:
    """A process's start time in clock ticks since boot: with the pid, its identity."""
    return _stat_int(pid, 19)


def parent_pid(pid: int) -> Optional[int]:
    return _stat_int(pid, 1)


def _stat_int(pid: int, index: int) -> Optional[int]:
    fields = proc_stat(pid)
    try:
        return int(fields[index]) if fields else None
    except (IndexError, ValueError):
        return None


def cmdline(pid: int) -> List[bytes]:
    """A process's argv (empty when it is gone or a zombie)."""
    try:
        return read_small(f"/proc/{pid}/cmdline").split(b"\0")[:-1]
    except OSError:
        return []


class ProcessHandle:
    """One process, held by a pidfd while it is open. Thread-safe."""

    def __init__(self, pid: int, fd: int) -> None:
        self.pid = pid
        self._fd: Optional[int] = fd
        self._lock = threading.Lock()  # the fd is never closed while a signal uses it

    def __repr__(self) -> str:
        return f"<ProcessHandle {self.pid}{'' if self._fd is not None else ' closed'}>"

    @classmethod
    def open(
        cls,
        pid: Optional[int],
        *,
        started: Optional[int] = None,
        parent: Optional[int] = None,
        check: Optional[Callable[[int], bool]] = None,
    ) -> Optional["ProcessHandle"]:
        """A handle on `pid` if it is alive and is who the caller says it is.

        `started` is its expected start time (clock ticks since boot),
        `parent` its expected parent pid, `check(pid)` any further test
        (its command line, say). Returns None when the process is gone, the
        kernel has no pidfds, or a check fails.
        """
        if not pid or pid <= 0:
            return None
        try:
            fd = _native.pidfd_open(pid)  # first: the checks below are then about this process
        except OSError as e:
            if e.errno not in (errno.ESRCH, errno.ENOSYS, errno.EINVAL):
                raise
            return None
        if (
            (started is not None and start_time(pid) != started)
            or (parent is not None and parent_pid(pid) != parent)
            or (check is not None and not check(pid))
        ):
            os.close(fd)
            return None
        return cls(pid, fd)

    @property
    def fd(self) -> Optional[int]:
        """The pidfd (readable once the process has exited); None once closed."""
        return self._fd

    def signal(self, signum: int) -> bool:
        """Send `signum`; False if the process has exited or the handle is closed."""
        with self._lock:
            if self._fd is None:
                return False
            try:
                _native.pidfd_send_signal(self._fd, signum)
            except ProcessLookupError:
                return False
        return True

    def exited(self) -> bool:
        """True once the process has exited (a zombie counts), or the handle is closed."""
        fd = self._fd
        if fd is None:
            return True
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))

    def wait(self, timeout: Optional[float]) -> bool:
        """Wait up to `timeout` seconds (None: no limit) for the exit; True once exited."""
        return not wait_all([self], timeout)

    def stop_steps(self, grace: Optional[float]) -> Steps[bool]:
        """stop, as steps (see ocirt.steps)."""
        if (yield from wait_steps([self], grace)):
            self.signal(signal.SIGKILL)
            if (yield from wait_steps([self], KILL_GRACE)):
                return False
        self.reap()
        return True

    def stop(self, grace: Optional[float]) -> bool:
        """Give it `grace` seconds to exit, then SIGKILL it and wait KILL_GRACE more.

        Reaps it if it is this process's child. False if it is still there.
        """
        return block(self.stop_steps(grace))

    def reap(self) -> bool:
        """Reap it if it is an exited child of this process (or of this subreaper).

        Through the pidfd: exactly this process, never another child that
        got its pid. A reaped process is gone for good: the handle closes
        (as `close`). False if there was nothing to reap.
        """
        with self._lock:
            if self._fd is None:
                return False
            try:
                reaped = os.waitid(os.P_PIDFD, self._fd, os.WEXITED | os.WNOHANG) is not None
            except ChildProcessError:
                return False
            if reaped:
                os.close(self._fd)
                self._fd = None
            return reaped

    def close(self) -> None:
        """Let go of the process, reaping it first if it is an exited child
        (nobody else can tell it from a reused pid once the pidfd is gone)."""
        if not self.reap():
            with self._lock:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)


def wait_all(handles: Iterable[ProcessHandle], timeout: Optional[float]) -> List[ProcessHandle]:
    """wait_steps, blocking."""
    return block(wait_steps(handles, timeout))


def wait_steps(handles: Iterable[ProcessHandle], timeout: Optional[float]) -> Steps[List[ProcessHandle]]:
    """Wait up to `timeout` seconds (None: no limit) until every one has exited; those still running.

    A closed handle counts as exited.
    """
    waiting = [h for h in handles if h.fd is not None]
    deadline = deadline_after(timeout)
    while waiting:
        ready = yield Readable(tuple(h.fd for h in waiting if h.fd is not None), deadline)
        waiting = [h for h in waiting if h.fd is not None and h.fd not in ready]
        if not ready:
            break
    return waiting
