"""Kernel state that tests observe (a wait that is armed, a process that is
watched) or steer (the pid the next process gets)."""

from __future__ import annotations

import os
import time
from typing import Callable, TypeVar

import pytest

NS_LAST_PID = "/proc/sys/kernel/ns_last_pid"
T = TypeVar("T")


def until(condition: Callable[[], bool], timeout: float = 30) -> None:
    """Look at `condition()` every millisecond until it holds (for kernel state with no notification)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.001)


def _fds_of_kind(kind: str, pid: str = "self"):
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == kind:
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    yield f.read()
        except OSError:
            pass


def inotify_watching(path: str, pid: object = "self") -> bool:
    """True if one of the inotify instances of process `pid` (default: this one) has a watch on `path`."""
    inode = format(os.stat(path).st_ino, "x")
    return any(f" ino:{inode} " in info for info in _fds_of_kind("anon_inode:inotify", str(pid)))


def pidfd_open_on(pid: int) -> bool:
    """True if this process holds a pidfd on `pid`."""
    return any(f"\nPid:\t{pid}\n" in "\n" + info for info in _fds_of_kind("anon_inode:[pidfd]"))


def spawn_with_pid(pid: int, spawn: Callable[[], T], pid_of: Callable[[T], int], discard: Callable[[T], None], tries: int = 50) -> T:
    """`spawn()` again until what it makes runs as `pid` (steered through ns_last_pid).

    Each miss is `discard`ed. Skips the test where ns_last_pid cannot be
    written, or when other processes keep taking the pid.
    """
    for _ in range(tries):
        try:
            with open(NS_LAST_PID, "w") as f:
                f.write(str(pid - 1))
        except OSError as e:
            pytest.skip(f"cannot steer pids here ({NS_LAST_PID}: {e.strerror})")
        made = spawn()
        if pid_of(made) == pid:
            return made
        discard(made)
    pytest.skip(f"pid {pid} kept going to other processes")
