"""The caller's terminal while attached to a container's: raw mode, size, resizes.

conmon owns the container's pseudo-terminal (conmon -t). Its size is set
through conmon's control FIFO (`ctl` in its bundle dir): the line
"1 <rows> <columns>" resizes it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import termios
import tty
from typing import Callable, Iterator, Optional, Tuple

from .errors import InvalidArgument, InvalidState

RESIZE_EVENT = 1  # conmon's WIN_RESIZE_EVENT


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


def resize(ctl: str, rows: int, columns: int) -> None:
    """Ask the conmon whose control FIFO is `ctl` to size its terminal.

    InvalidState when no conmon reads the FIFO (it has exited) or there is
    none; never blocks.
    """
    check_size(rows, columns)
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
def following_size(fd: int, set_size: Callable[[int, int], None]) -> Iterator[None]:
    """Size the container's terminal (`set_size(rows, columns)`, e.g.
    Container.resize) as the caller's terminal at `fd` now, and again on
    each SIGWINCH, until the block is left. The main thread only (signal
    handlers)."""

    def follow(signum: int = 0, frame: object = None) -> None:
        now = size(fd)
        if now is not None:
            with contextlib.suppress(InvalidState):  # the process ended: nothing to size
                set_size(*now)

    old = signal.signal(signal.SIGWINCH, follow)
    try:
        follow()
        yield
    finally:
        signal.signal(signal.SIGWINCH, old)
