"""The caller's terminal while attached to a container's: raw mode, size, resizes.

conmon owns the container's pseudo-terminal (conmon -t). Its size is set
through conmon's control FIFO (`ctl` in its bundle dir): the line
"1 <rows> <columns>" resizes it. conmon applies the line when it gets to
it, so `resize` then reads the size back from the process's own terminal
(TIOCGWINSZ) until it is the one asked for: input sent after a resize
reaches a process that already has the new size.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import stat
import struct
import termios
import time
import tty
from typing import Callable, Iterator, Optional, Tuple

from .errors import InvalidArgument, InvalidState, Timeout
from .process import ProcessHandle

RESIZE_EVENT = 1  # conmon's WIN_RESIZE_EVENT
SIZE_TAKEN_WITHIN = 5.0  # seconds conmon gets to apply a resize


def size(fd: int) -> Optional[Tuple[int, int]]:
    """(rows, columns) of the terminal at `fd`; None if it is not one."""
    try:
        columns, rows = os.get_terminal_size(fd)
    except OSError:
        return None
    return rows, columns


def check_size(rows: object, columns: object) -> None:
    """InvalidArgument unless rows and columns are whole numbers from 1 to 65535."""
    if not all(isinstance(n, int) and not isinstance(n, bool) and 0 < n < 1 << 16 for n in (rows, columns)):
        raise InvalidArgument(f"a terminal size is rows and columns from 1 to 65535, not {rows!r} x {columns!r}")


def resize(ctl: str, rows: int, columns: int, process: Optional[ProcessHandle] = None) -> None:
    """Ask the conmon whose control FIFO is `ctl` to size its terminal, and
    with `process` (the one on that terminal) return once its terminal has
    that size: Timeout if it does not within SIZE_TAKEN_WITHIN seconds.
    Without `process`, or when it has no terminal open as fd 0, 1 or 2 (or
    has exited), returns once asked.

    InvalidState when no conmon reads the FIFO (it has exited) or there is
    none.
    """
    check_size(rows, columns)
    watched = open_terminal(process) if process is not None else None
    try:
        _ask(ctl, rows, columns)
        if watched is not None:
            _await_size(watched, rows, columns, SIZE_TAKEN_WITHIN)
    finally:
        if watched is not None:
            os.close(watched)


def open_terminal(process: ProcessHandle) -> Optional[int]:
    """The pseudo-terminal `process` has open as its stdin, stdout or stderr
    (the first that is one), opened for reading its size: never as the
    caller's controlling terminal, never blocking. What the process holds is
    the container's: only a pty slave is opened (looked at before and after
    the open), never a FIFO or another device. None if it has none, or has
    exited (checked after the open, so the fd is that process's)."""
    for n in (0, 1, 2):
        if process.exited():
            return None
        path = f"/proc/{process.pid}/fd/{n}"
        try:
            if not _is_pty_slave(os.stat(path)):
                continue
            fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
        if _is_pty_slave(os.fstat(fd)) and not process.exited():
            return fd
        os.close(fd)
    return None


def _is_pty_slave(st: os.stat_result) -> bool:
    """A Unix 98 pty slave (/dev/pts/N): character devices of majors 136-143."""
    return stat.S_ISCHR(st.st_mode) and 136 <= os.major(st.st_rdev) <= 143


def _size_of(fd: int) -> Tuple[int, int]:
    rows, columns, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, bytes(8)))
    return rows, columns


def _await_size(fd: int, rows: int, columns: int, timeout: float) -> None:
    """Until the terminal at `fd` is rows x columns: there is no event for a
    terminal's size, so read it back with a pause that grows from 50 us to 5 ms."""
    deadline = time.monotonic() + timeout
    pause = 0.00005
    while _size_of(fd) != (rows, columns):
        if time.monotonic() >= deadline:
            now = "%d x %d" % _size_of(fd)
            raise Timeout(f"the terminal is still {now}, not {rows} x {columns}, {timeout:g}s after the resize")
        time.sleep(pause)
        pause = min(pause * 2, 0.005)


def _ask(ctl: str, rows: int, columns: int) -> None:
    """Write the resize line to conmon's control FIFO `ctl`; never blocks."""
    try:
        fd = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as e:
        if e.errno in (errno.ENXIO, errno.ENOENT):
            raise InvalidState(f"no conmon takes resizes at {ctl}: the process has ended") from e
        raise
    try:
        os.write(fd, f"{RESIZE_EVENT} {rows} {columns}\n".encode())  # a short line: one atomic write to a FIFO
    finally:
        os.close(fd)


@contextlib.contextmanager
def raw(fd: int) -> Iterator[None]:
    """The terminal at `fd` in raw mode (every key goes to the container as
    it is typed, ctrl-c and ctrl-z too), restored however the block is left."""
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def following_size(fd: int, set_size: Callable[..., None]) -> Iterator[None]:
    """Size the container's terminal (`set_size(rows, columns, wait=)`, e.g.
    Container.resize) as the caller's terminal at `fd` now, waiting until
    it has that size, and again on each SIGWINCH, without waiting, until the
    block is left. The main thread only (signal handlers)."""

    def follow(signum: int = 0, frame: object = None, wait: bool = False) -> None:
        now = size(fd)
        if now is not None:
            with contextlib.suppress(InvalidState):  # the process ended: nothing to size
                set_size(*now, wait=wait)

    old = signal.signal(signal.SIGWINCH, follow)
    try:
        follow(wait=True)
        yield
    finally:
        signal.signal(signal.SIGWINCH, old)
