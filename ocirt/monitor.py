"""How ocirt watches one container's processes: its conmon (known by pid and
start time), its init (held by a pidfd) and the exit file conmon writes.

A container's exit is the appearance of conmon's exit file: an inotify
watch armed before the existence check and guarded by conmon, so a dead
conmon is an error, not a hang.
"""

from __future__ import annotations

import errno
import math
import os
import signal
import time
from typing import Callable, Optional, Tuple

from . import conmon, native as _native, spec as specs
from .errors import RuntimeCommandError, Timeout
from .layout import ContainerDir
from .oci import OCIRuntime, is_not_found
from .process import ProcessHandle, start_time
from .state import Exit, read_exit
from .steps import Readable, Steps, block, deadline_after


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
        self.mounts: Optional[int] = None  # see hold_mounts

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

    def adopt_orphan(self, pid: Optional[int], proven: Callable[[int], bool]) -> None:
        """Hold the init of a container whose conmon is gone, if `proven(pid)`
        (checked once its pidfd is open): waits then end with the init."""
        if self.init is None:
            self.init = ProcessHandle.open(pid, check=proven)

    def open_root(self) -> Optional[int]:
        """An O_PATH fd of the root the running container sees (its init's
        /proc/<pid>/root), or None; opened while the init was proven alive."""
        return self._open_of_init("root", os.O_PATH | os.O_DIRECTORY)

    def hold_mounts(self) -> None:
        """Hold the container's mount namespace until drop_mounts (or the
        container's end: see lifecycle.end_run). The kernel then tears its
        mounts down when the hold goes, not as the last process exits: that
        teardown (an RCU grace period or more) leaves the exit's path, which
        a pooled job's waiter is on. Nothing is held when the init is gone."""
        if self.mounts is None:
            self.mounts = self._open_of_init("ns/mnt", os.O_RDONLY)

    def drop_mounts(self) -> None:
        """Let the held mount namespace go (the teardown happens here if the container is gone)."""
        if self.mounts is not None:
            os.close(self.mounts)
            self.mounts = None

    def _open_of_init(self, name: str, flags: int) -> Optional[int]:
        """An fd of the init's /proc/<pid>/`name`, or None; opened while the init was proven alive."""
        init = self.init
        if init is None or init.exited():
            return None
        try:
            fd = os.open(f"/proc/{init.pid}/{name}", flags | os.O_CLOEXEC)
        except OSError:
            return None
        if init.exited():  # the pid may have gone to another process before the open
            os.close(fd)
            return None
        return fd

    def conmon_alive(self) -> bool:
        return self.conmon is not None and not self.conmon.exited()

    def signal_steps(self, signum: int) -> Steps[bool]:
        """Signal the init process (through the runtime when it is not held); False if it is already gone."""
        if self.init is not None:
            return self.init.signal(signum)
        try:
            yield from self.oci.run_steps(self.oci.kill_args(self.cid, signum))
        except RuntimeCommandError as e:
            if "not running" in e.stderr or is_not_found(e):
                return False
            raise
        return True

    def kill_all_steps(self, spec: specs.Spec, kill_cgroup: Callable[[], bool] = lambda: False) -> Steps[None]:
        """SIGKILL every process of the container: its init where that takes
        the whole pid namespace, else `kill_cgroup()` (cgroup v2's
        cgroup.kill: all at once, no process to start) where it can, else
        the runtime's kill --all."""
        if specs.has_own_pid_namespace(spec):
            yield from self.signal_steps(signal.SIGKILL)  # the kernel takes the rest of the namespace
            return
        if kill_cgroup():
            return
        try:
            yield from self.oci.run_steps(self.oci.kill_args(self.cid, signal.SIGKILL, all_processes=True))
        except RuntimeCommandError:
            yield from self.signal_steps(signal.SIGKILL)

    def wait_exit(self, timeout: Optional[float]) -> bool:
        """wait_exit_steps, blocking."""
        return block(self.wait_exit_steps(timeout))

    def wait_exit_steps(self, timeout: Optional[float]) -> Steps[bool]:
        """Wait for conmon's exit file; True once it is there (or conmon is gone
        without it: then, if the container outlived conmon, once its init is).

        An inotify watch on the exit directory, armed before the check, and
        conmon's pidfd: no polling. Without inotify (OCIRT_NO_INOTIFY, or
        out of instances) it looks again after pauses growing to 10 ms. A
        conmon that is not held (gone, or not proven) counts as gone.
        """
        daemon = self.conmon
        if daemon is None or daemon.fd is None:
            daemon = self.init  # conmon is gone: no exit file will come, the init's end is the exit
            if daemon is None or daemon.fd is None:
                return True
        deadline = deadline_after(timeout)
        watch = self._watch()
        delay = 100e-6
        try:
            while not os.path.exists(self.files.exit_file):
                daemon_fd = daemon.fd
                if daemon_fd is None:
                    return True  # closed meanwhile: the container was deleted
                wake = deadline if watch else min(math.inf if deadline is None else deadline, time.monotonic() + delay)
                ready = yield Readable((daemon_fd,) + ((watch[0],) if watch else ()), wake)
                if daemon_fd in ready:
                    init = self.init
                    if daemon is not self.conmon or init is None or init.fd is None or os.path.exists(self.files.exit_file):
                        return True  # gone: with an exit file, or without one (exit() tells)
                    daemon = init  # conmon died under a container that runs on: its init's end is the exit
                    continue
                if watch and watch[0] in ready:
                    _native.watch_seen(watch[0], self.cid)
                if deadline is not None and time.monotonic() >= deadline and not os.path.exists(self.files.exit_file):
                    return False
                delay = min(delay * 2, 0.01)
            return True
        finally:
            if watch:
                _native.watch_close(*watch)

    def _watch(self) -> Optional[Tuple[int, int]]:
        """An inotify watch on the exit directory, or None to look from time to time instead."""
        if not _native.INOTIFY_DEFAULT:
            return None
        try:
            return _native.watch_open(self.files.exit_dir)
        except OSError as e:
            if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM):
                return None  # out of inotify instances
            raise

    def exit_steps(self, timeout: Optional[float] = 0) -> Steps[Exit]:
        """The exit conmon recorded, waiting up to `timeout` for it (then Timeout)."""
        if not os.path.exists(self.files.exit_file) and not (yield from self.wait_exit_steps(timeout)):
            raise Timeout(f"no exit file from conmon for container {self.cid} after {timeout:g}s")
        return read_exit(self.files)

    def stop_creating(self) -> Steps[None]:
        """Stop a conmon that may still be creating the container (left by a process
        that died in create), so the runtime cannot finish it after a delete."""
        daemon = conmon.open_conmon(conmon.read_pid(self.files.conmon_pidfile), self.cid)
        if daemon is not None:
            try:
                yield from daemon.stop_steps(0)
            finally:
                daemon.close()

    def close_init(self) -> None:
        """The container has exited: nothing more to signal. (conmon stays held
        until the container is deleted: it may still be finishing.)"""
        if self.init is not None:
            self.init.close()
            self.init = None

    def close(self) -> None:
        self.close_init()
        self.drop_mounts()
        if self.conmon is not None:
            self.conmon.close()
            self.conmon = None
