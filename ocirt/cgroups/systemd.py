"""The systemd cgroup manager: conmon in a transient scope unit.

systemd owns the cgroup tree where it runs as PID 1; there cgroups are
asked for through its D-Bus API instead of written directly. These machines
run no systemd, so this manager's job here is to refuse, clearly and before
anything is created.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Dict, List, Optional, Sequence

from ..errors import CgroupError, InvalidArgument
from ..process import ProcessHandle

SYSTEMD_RUNNING_DIR = "/run/systemd/system"  # sd_booted()'s test
DEFAULT_SLICE = "machine.slice"


def systemd_running() -> bool:
    return os.path.isdir(SYSTEMD_RUNNING_DIR)


class Systemd:
    """Transient scopes `ocirt-<name>.scope` in slice `parent` (default machine.slice)."""

    def __init__(self, parent: Optional[str] = None) -> None:
        self.slice = parent or DEFAULT_SLICE
        if not re.fullmatch(r"[A-Za-z0-9:_.\\-]+\.slice", self.slice):
            raise InvalidArgument(f"systemd cgroup parent must be a slice name like 'machine.slice', not {self.slice!r}")

    def check(self) -> None:
        if not systemd_running():
            try:
                with open("/proc/1/comm") as f:
                    init = f.read().strip()
            except OSError:
                init = "unknown"
            raise CgroupError(
                f"cgroup manager 'systemd' needs systemd running as PID 1, but PID 1 is {init!r} "
                f"({SYSTEMD_RUNNING_DIR} is missing); use cgroup_manager='cgroupfs'"
            )
        if shutil.which("busctl") is None:
            raise CgroupError("cgroup manager 'systemd' needs busctl (package systemd) to talk to systemd")

    def create(self, name: str, container: Optional[str] = None, needs: Sequence[str] = ()) -> "SystemdScope":
        self.check()
        return SystemdScope(f"ocirt-{name}.scope", self.slice)


    def planned(self, name: str, container: Optional[str] = None) -> "SystemdScope":
        return SystemdScope(f"ocirt-{name}.scope", self.slice)

    def existing(self, name: str, dirs: List[str], parents: List[str], container_dirs: Sequence[str] = ()) -> "SystemdScope":
        return SystemdScope(f"ocirt-{name}.scope", self.slice)

    def close(self) -> None:
        """Nothing is kept: systemd removes each scope."""


class SystemdScope:
    """A transient scope; systemd removes it once its last process exits."""

    container = None  # the runtime's systemd driver places the container
    controllers: Dict[str, str] = {}
    runtime_path = None

    def __init__(self, unit: str, slice_: str) -> None:
        self.unit = unit
        self.slice = slice_

    def add(self, pid: int) -> None:
        argv = [
            "busctl", "call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager", "StartTransientUnit", "ssa(sv)a(sa(sv))",
            self.unit, "fail", "3",
            "Slice", "s", self.slice,
            "PIDs", "au", "1", str(pid),
            "Delegate", "b", "true",
            "0",
        ]
        import subprocess  # only with systemd: not on every import

        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if proc.returncode != 0:
            raise CgroupError(f"systemd refused scope {self.unit}: {proc.stderr.strip()}")

    def pids(self, below: bool = False) -> List[int]:
        return []

    def members(self, below: bool = False) -> List[ProcessHandle]:
        return []

    def kill_all(self) -> bool:
        return False

    def join_files(self) -> List[str]:
        """None: systemd is asked to move the process (see `add`)."""
        return []

    def leave(self, pid: int) -> None:
        """Nothing to do: systemd's scope is not ocirt's to empty."""

    def remove(self) -> None:
        # A transient scope is garbage-collected by systemd when it empties.
        pass

    def remove_if_empty(self) -> bool:
        return True  # systemd's to remove
