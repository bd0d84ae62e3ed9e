"""cgroup managers: where conmon runs.

`manager(name, parent)` returns the manager for `cgroup_manager` =
"cgroupfs" (direct writes to the cgroup filesystem, v1, v2 or hybrid) or
"systemd" (transient scopes through systemd's D-Bus API). Both expose:

- `check()`: raise CgroupError if the manager cannot work on this host;
  called before anything is created.
- `create(name, container, needs) -> Cgroup`: a new cgroup for one conmon,
  planning the container's beside it (see cgroupfs for the layout).
- `close()`: release what the manager kept for its next cgroups (parents).

A `Cgroup` has `join_files()` (what a new process writes "0" to, to move
itself in before it runs anything; empty when the manager must be asked),
`add(pid)`, `pids()`, `members()` (held by pidfds), `kill_all()`,
`leave(pid)` (back to the parent), `remove()`, and `container`, the
container's cgroup (None where the runtime's manager places it);
`remove()` deletes the cgroup and everything below it once no process is
left in it.
"""

from __future__ import annotations

from typing import List, Mapping, Optional, Protocol, Sequence

from ..errors import InvalidArgument
from ..process import ProcessHandle
from .cgroupfs import Cgroupfs, CgroupfsGroup
from .hierarchy import Hierarchy, hierarchies
from .systemd import Systemd

MANAGERS = ("cgroupfs", "systemd")


class Cgroup(Protocol):
    @property
    def container(self) -> "Optional[Cgroup]": ...  # the container's cgroup the runtime makes, when known

    @property
    def controllers(self) -> Mapping[str, str]: ...  # v1 controller (or "v2") -> its directory

    @property
    def runtime_path(self) -> Optional[str]: ...  # where the runtime is told to make it (linux.cgroupsPath)

    def join_files(self) -> List[str]: ...

    def kill_all(self) -> bool: ...

    def add(self, pid: int) -> None: ...

    def pids(self, below: bool = False) -> List[int]: ...

    def members(self, below: bool = False) -> List[ProcessHandle]: ...

    def leave(self, pid: int) -> None: ...

    def remove(self) -> None: ...

    def remove_if_empty(self) -> bool: ...


class Manager(Protocol):
    def check(self) -> None: ...

    def create(self, name: str, container: Optional[str] = None, needs: Sequence[str] = ()) -> Cgroup: ...

    def planned(self, name: str, container: Optional[str] = None) -> Cgroup: ...

    def existing(self, name: str, dirs: List[str], parents: List[str], container_dirs: Sequence[str] = ()) -> Cgroup: ...

    def close(self) -> None: ...


def manager(name: str, parent: Optional[str] = None) -> Manager:
    """The manager called `name` (one of MANAGERS), nesting under `parent`."""
    if name == "cgroupfs":
        return Cgroupfs(parent)
    if name == "systemd":
        return Systemd(parent)
    raise InvalidArgument(f"unknown cgroup manager {name!r}; valid are {', '.join(MANAGERS)}")


__all__ = ["MANAGERS", "Cgroup", "Cgroupfs", "CgroupfsGroup", "Hierarchy", "Manager", "Systemd", "hierarchies", "manager"]
