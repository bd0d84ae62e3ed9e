"""Synchronisation through files, never sleeps.

A Gate is a directory shared with gated runtimes and with containers (bind
mounted at /gate). A gated runtime is runc, except that before one verb it
says `reached.<side>` and waits for `release(side)`; after that verb it says
`done.<side>`. The side is $GATE_SIDE of the process that runs the runtime
(default "main"), so two racing processes are told apart.
"""

from __future__ import annotations

import os
import stat
import time
from typing import Optional

from ocirt import native as _native

GATE_TIMEOUT = 60


class Gate:
    def __init__(self, path) -> None:
        self.path = str(path)
        os.mkdir(self.path)
        os.chmod(self.path, 0o777)
        os.mkfifo(os.path.join(self.path, "go"))  # for containers: read x < /gate/go

    def reached(self, name: str, timeout: float = GATE_TIMEOUT) -> None:
        assert _native.wait_file(self.path, name, timeout), f"gate {name} never reached"

    def has(self, name: str) -> bool:
        return os.path.exists(os.path.join(self.path, name))

    def release(self, side: Optional[str] = None) -> None:
        """Let a waiting container (no side) or gated runtime (its side) go on."""
        with open(os.path.join(self.path, "go" if side is None else f"go.{side}"), "w") as f:
            f.write("go\n")

    def release_if_waiting(self, side: str) -> None:
        """release(side), if a gated runtime still waits there (else do nothing)."""
        try:
            fd = os.open(os.path.join(self.path, f"go.{side}"), os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # no fifo, or nobody reading it
            return
        try:
            os.write(fd, b"go\n")
        finally:
            os.close(fd)

    def open(self) -> None:
        """From now on gated runtimes pass through without stopping."""
        open(os.path.join(self.path, "open"), "w").close()

    def shut(self) -> None:
        """From now on gated runtimes stop again (undoes open)."""
        os.unlink(os.path.join(self.path, "open"))

    def runtime(self, verb: str) -> str:
        """The gated runtime for `verb` (see the module's docstring)."""
        path = os.path.join(self.path, f"runc-gated-{verb}")
        g = self.path
        with open(path, "w") as f:
            f.write(
                "#!/bin/sh\n"
                'for arg in "$@"; do case "$arg" in -*) ;; *) verb=$arg; break ;; esac; done\n'
                'side=${GATE_SIDE:-main}\n'
                f'if [ "$verb" = "{verb}" ] && [ ! -e {g}/open ]; then\n'
                f'  mkfifo {g}/go.$side; : > {g}/reached.$side; read x < {g}/go.$side\n'
                "fi\n"
                'runc "$@"; rc=$?\n'
                f'[ "$verb" = "{verb}" ] && : > {g}/done.$side\n'
                "exit $rc\n"
            )
        os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
        return path

    def mount(self, spec) -> None:
        spec["mounts"].append({"destination": "/gate", "type": "bind", "source": self.path, "options": ["rbind", "rw"]})


def blocked_on_flock(pid: int, path: str, timeout: float = GATE_TIMEOUT) -> None:
    """Wait until process `pid` is blocked waiting for a flock on `path` (as /proc/locks shows).

    /proc/locks lists a blocked request as "N: -> FLOCK ADVISORY WRITE <pid> <dev>:<inode> ...".
    It has no change notification, so this looks again every millisecond, up to `timeout`.
    """
    inode = os.stat(path).st_ino
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/locks") as f:
            for line in f:
                fields = line.split()
                if "->" in fields and fields[fields.index("->") + 4] == str(pid) and fields[fields.index("->") + 5].endswith(f":{inode}"):
                    return
        time.sleep(0.001)
    raise AssertionError(f"process {pid} never blocked on the lock {path}")
