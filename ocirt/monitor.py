"""How ocirt watches one container's processes: its conmon (known by pid and
start time), its init (held by a pidfd) and the exit file conmon writes.

A container's exit is the appearance of conmon's exit file: an inotify
watch armed before the existence check and guarded by conmon, so a dead
conmon is an error, not a hang.
"""

from __future__ import annotations

import os
import signal
from typing import Optional

from . import conmon, native as _native, spec as specs
from .errors import RuntimeCommandError, Timeout
from .layout import ContainerDir
from .oci import OCIRuntime, is_not_found
from .process import ProcessHandle, start_time
from .state import Exit, read_exit


class Monitor:
    """conmon and the init process of container `cid`."""

    def __init__(self, cid: str, files: ContainerDir, oci: OCIRuntime) -> None:
        self.cid = cid
        self.files = files
        self.oci = oci
        self.conmon_pid: Optional[int] = None
        self.conmon_start: Optional[int] = None  # with the pid, conmon's identity
        self.init: Optional[ProcessHandle] = None

    def launched(self, launched: conmon.Launched, *, remember_start: bool) -> None:
        """conmon reported the container's pid. `remember_start` keeps conmon's
        identity for other processes (only a store needs it)."""
        self.conmon_pid = launched.conmon_pid
        if remember_start:
            self.conmon_start = start_time(launched.conmon_pid)
        # The init is blocked in the runtime until start: alive, so this pidfd names exactly it.
        self.init = ProcessHandle.open(launched.pid)

    def adopt(self, pid: Optional[int]) -> None:
        """A pidfd for the init of a container loaded from the store.

        Only if it is still a child of the container's own (live) conmon: a
        reused pid gets none, and signals then go through the runtime.
        """
        if self.init is None and self.conmon_alive():
            self.init = ProcessHandle.open(pid, parent=self.conmon_pid)

    def conmon_alive(self) -> bool:
        pid = self.conmon_pid
        return pid is not None and self.conmon_start is not None and start_time(pid) == self.conmon_start

    def signal(self, signum: int) -> bool:
        """Signal the init process; False if it is already gone."""
        if self.init is not None:
            return self.init.signal(signum)
        try:
            self.oci.kill(self.cid, signum)
        except RuntimeCommandError as e:
            if "not running" in e.stderr or is_not_found(e):
                return False
            raise
        return True

    def kill_all(self, spec: specs.Spec) -> None:
        """SIGKILL every process of the container."""
        if specs.has_own_pid_namespace(spec):
            self.signal(signal.SIGKILL)  # the kernel takes the rest of the namespace
            return
        try:
            self.oci.kill(self.cid, signal.SIGKILL, all_processes=True)
        except RuntimeCommandError:
            self.signal(signal.SIGKILL)

    def wait_exit(self, timeout: Optional[float]) -> bool:
        """Wait for conmon's exit file; True once it is there (or conmon died without one)."""
        try:
            return _native.wait_file(self.files.exit_dir, self.cid, timeout, guard_pid=self.conmon_pid or 0)
        except ProcessLookupError:
            return True

    def exit(self, timeout: Optional[float] = 0) -> Exit:
        """The exit conmon recorded, waiting up to `timeout` for it (then Timeout)."""
        if not os.path.exists(self.files.exit_file) and not self.wait_exit(timeout):
            raise Timeout(f"no exit file from conmon for container {self.cid} after {timeout:g}s")
        return read_exit(self.files)

    def stop_creating(self) -> None:
        """Stop a conmon that may still be creating the container (left by a process
        that died in create), so the runtime cannot finish it after a delete."""
        pid = conmon.read_pid(self.files.conmon_pidfile)
        if pid and conmon.is_conmon_of(pid, self.cid):
            conmon.stop_daemon(pid, 0)

    def close(self) -> None:
        if self.init is not None:
            self.init.close()
            self.init = None
