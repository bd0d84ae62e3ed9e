"""A cgroup parent for a reference engine (podman, dockerd) to make its
containers' cgroups in: below this process's own cgroup, never at the root
of a hierarchy, and removed, exactly the levels the engine made, after it."""

from __future__ import annotations

import errno
import os
from typing import List, Optional

from ocirt import native as _native
from ocirt.cgroups import Hierarchy, hierarchies

SETTLE_TIMEOUT = 30  # seconds an engine's last processes get to leave (its conmons run their exit commands)


def own_cgroup() -> str:
    """This process's cgroup (in the first hierarchy that names one)."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            path = line.rstrip("\n").split(":", 2)[2]
            if path and path != "/":
                return path
    return "/"


class CgroupParent:
    """`path`: OWN/TAG-PID, for an engine's --cgroup-parent. The levels of it
    that do not exist yet are noted now: the engine makes them, `remove` takes them."""

    def __init__(self, tag: str) -> None:
        self.path = os.path.join(own_cgroup(), f"{tag}-{os.getpid()}")
        self._levels = [level for level in map(self._first_missing, hierarchies()) if level is not None]

    @staticmethod
    def _pids(tops: List[str]) -> List[int]:
        """The processes in the cgroups at and below `tops`."""
        found = set()
        for top in tops:
            for root, _, files in os.walk(top):
                if "cgroup.procs" in files:
                    try:
                        with open(os.path.join(root, "cgroup.procs")) as f:
                            found.update(int(line) for line in f if line.strip())
                    except OSError:
                        pass
        return sorted(found)

    def _first_missing(self, h: Hierarchy) -> Optional[str]:
        path = h.mountpoint
        for part in filter(None, self.path.split("/")):
            path = os.path.join(path, part)
            if not os.path.isdir(path):
                return path
        return None

    def remove(self) -> List[str]:
        """rmdir what the engine made, deepest first, once the processes still
        in it have exited (an engine's `rm -f` can return before its conmon
        does); what could not go, as messages. A shared level above the
        parent that another process is using is theirs now, and no error."""
        left = []
        tops = [os.path.join(h.mountpoint, self.path.lstrip("/")) for h in hierarchies()]
        _native.wait_pids(self._pids(tops), SETTLE_TIMEOUT)
        for top in self._levels:
            for root, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
                try:
                    os.rmdir(root)
                except FileNotFoundError:
                    pass
                except OSError as e:
                    below = any(root == t or root.startswith(t + "/") for t in tops)
                    if below or e.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                        left.append(f"cgroup {root}: {e.strerror}")
        return left
