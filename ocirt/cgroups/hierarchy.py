"""The cgroup hierarchies this process sees (/proc/self/mountinfo) and its
own cgroup in each (/proc/self/cgroup): v1, v2 or both (hybrid)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, FrozenSet, List

MOUNTINFO = "/proc/self/mountinfo"
OWN_CGROUP = "/proc/self/cgroup"


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy and this process's place in it."""

    mountpoint: str
    version: int  # 1 or 2
    controllers: FrozenSet[str]  # v1: e.g. {"cpu", "cpuacct"} or {"name=systemd"}
    own_path: str  # this process's cgroup, relative to the mount

    @property
    def own_dir(self) -> str:
        return os.path.join(self.mountpoint, self.own_path.lstrip("/"))


def hierarchies(mountinfo: str = MOUNTINFO, own_cgroup: str = OWN_CGROUP) -> List[Hierarchy]:
    """Every mounted cgroup hierarchy, each once, with this process's cgroup."""
    own: Dict[FrozenSet[str], str] = {}
    with open(own_cgroup) as f:
        for line in f:
            _, names, path = line.rstrip("\n").split(":", 2)
            own[frozenset(filter(None, names.split(",")))] = path
    found: List[Hierarchy] = []
    seen = set()
    with open(mountinfo) as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype, superopts = fields[sep + 1], fields[sep + 3].split(",")
            root, mountpoint = fields[3], _unescape(fields[4])
            if fstype == "cgroup2":
                key: FrozenSet[str] = frozenset()
                version = 2
            elif fstype == "cgroup":
                key = next((k for k in own if k and k <= set(superopts)), frozenset())
                version = 1
                if not key:
                    continue
            else:
                continue
            if key in seen or key not in own:
                continue
            seen.add(key)
            path = own[key]
            # Inside a cgroup namespace or a bind mount, the mount shows a subtree.
            if root != "/" and (path == root or path.startswith(root + "/")):
                path = path[len(root):] or "/"
            found.append(Hierarchy(mountpoint, version, key, path))
    return found


def _unescape(path: str) -> str:
    return path.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
