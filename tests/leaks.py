"""What a test may leave behind, as snapshots to compare before and after."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import FrozenSet

import psutil

from ocirt import native
from ocirt.cgroups import Cgroupfs, hierarchies

CGROUP_ROOT = "/sys/fs/cgroup"
RUNC_ROOT = "/run/runc"


def _cgroup_dirs() -> FrozenSet[str]:
    """Every cgroup named *ocirt*, and every level of the parent path ocirt
    puts them under in each hierarchy (made for them where missing): on a
    pure v2 host the top level is itself a cgroup."""
    found = set()
    for root, dirs, _ in os.walk(CGROUP_ROOT):
        found.update(os.path.join(root, d) for d in dirs if "ocirt" in d)
    base = Cgroupfs().base() or "/"
    for h in hierarchies():
        path = h.mountpoint
        for part in filter(None, base.split("/")):
            path = os.path.join(path, part)
            if os.path.isdir(path):
                found.add(path)
    return frozenset(found)


def _runc_containers() -> FrozenSet[str]:
    try:
        return frozenset(os.listdir(RUNC_ROOT))
    except FileNotFoundError:
        return frozenset()


def _conmons() -> FrozenSet[str]:
    out = set()
    for p in psutil.Process().children(recursive=True):
        try:
            if p.name() == "conmon":
                out.add(f"{p.pid} ({p.status()})")
        except psutil.NoSuchProcess:
            pass
    return frozenset(out)


def _fds() -> FrozenSet[str]:
    """Open fds, less the idle inotify instances ocirt keeps for reuse (bounded)."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.add(f"{fd} -> {os.readlink(f'/proc/self/fd/{fd}')}")
        except FileNotFoundError:
            pass  # the fd listdir itself used
    inotify = {f for f in out if f.endswith("anon_inode:inotify")}
    pooled = sum(native.load(b).inotify_pool_size() for b in native.BACKENDS)  # each keeps <= 8
    assert len(inotify) <= pooled, "inotify instances leaked"
    return frozenset(out - inotify)


@dataclass(frozen=True)
class Snapshot:
    cgroups: FrozenSet[str]
    runc: FrozenSet[str]
    conmons: FrozenSet[str]
    fds: FrozenSet[str]

    @classmethod
    def take(cls) -> "Snapshot":
        return cls(_cgroup_dirs(), _runc_containers(), _conmons(), _fds())

    def leaks_since(self, before: "Snapshot") -> list[str]:
        """Human-readable lines for everything new since `before`."""
        lines = []
        for name in ("cgroups", "runc", "conmons", "fds"):
            new = getattr(self, name) - getattr(before, name)
            lines += [f"{name}: {item}" for item in sorted(new)]
        return lines
