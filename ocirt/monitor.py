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
    """conmon and the init process of container `cid`, each held by a pidfd
    once proven to be the process meant."""

    def __init__(self, cid: str, files: ContainerDir, oci: OCIRuntime) -> None:
        self.cid = cid
        self.files = files
        self.oci = oci
        self.conmon_pid: Optional[int] = None  # as recorded; trusted only through `conmon`
        self.conmon_start: Optional[int] = None  # with the pid, conmon's identity
        self.conmon: Optional[ProcessHandle] = None
        self.init: Optional[ProcessHandle] = None

    def launched(self, launched: conmon.Launched) -> None:
        """conmon reported the container's pid."""
        self.conmon_pid, self.conmon = launched.conmon_pid, launched.conmon
        self.conmon_start = start_time(launched.conmon_pid)
        # The init is blocked in the runtime until start: alive, so this pidfd names exactly it.
        self.init = ProcessHandle.open(launched.pid)

    def adopt(self, pid: Optional[int]) -> None:
        """Hold the processes of a container another process recorded.

        conmon only if the recorded pid still runs conmon for this container
        and started when recorded; the init only as that conmon's child. What
        cannot be proven is not held, and so never signalled.
        """
        if self.conmon is None and self.conmon_start is not None:
            self.conmon = conmon.open_conmon(self.conmon_pid, self.cid, started=self.conmon_start)
        if self.init is None and self.conmon is not None:
            self.init = ProcessHandle.open(pid, parent=self.conmon.pid)

    def open_root(self) -> Optional[int]:
        """An O_PATH fd of the root the running container sees (its init's
        /proc/<pid>/root), or None; opened while the init was proven alive."""
        init = self.init
        if init is None or init.exited():
            return None
        try:
            fd = os.open(f"/proc/{init.pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        if init.exited():  # the pid may have gone to another process before the open
            os.close(fd)
            return None
        return fd

    def conmon_alive(self) -> bool:
        return self.conmon is not None and not self.conmon.exited()

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
        """Wait for conmon's exit file; True once it is there, or once conmon is gone without it.

        A conmon that is not held (gone, or not proven) counts as gone.
        """
        if self.conmon is None or self.conmon.fd is None:
            return True
        try:
            return _native.wait_file(self.files.exit_dir, self.cid, timeout, guard_fd=self.conmon.fd, guard_pid=self.conmon.pid)
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
        daemon = conmon.open_conmon(conmon.read_pid(self.files.conmon_pidfile), self.cid)
        if daemon is not None:
            daemon.stop(0)
            daemon.close()

    def close_init(self) -> None:
        """The container has exited: nothing more to signal. (conmon stays held
        until the container is deleted: it may still be finishing.)"""
        if self.init is not None:
            self.init.close()
            self.init = None

    def close(self) -> None:
        self.close_init()
        if self.conmon is not None:
            self.conmon.close()
            self.conmon = None
