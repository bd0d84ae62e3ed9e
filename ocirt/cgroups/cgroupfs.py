"""cgroupfs: cgroups made by writing to the cgroup filesystem directly.

Works on cgroup v1, v2 and the hybrid layout (v1 controllers plus a
cgroup2 mount), as found in /proc/self/mountinfo. A relative parent (the
default) nests under this process's own cgroup in every hierarchy, exactly
as runc does for a relative cgroupsPath; only an absolute parent given by
the caller reaches outside that subtree.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Dict, FrozenSet, List, Optional, Tuple

from ..errors import CgroupError, InvalidArgument
from ..layout import read_small
from ..process import ProcessHandle

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


def _check_relative(path: str, what: str) -> str:
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise InvalidArgument(f"{what} {path!r} must not contain '.' or '..'")
    return "/".join(parts)


class Cgroupfs:
    """The cgroupfs manager: one directory per hierarchy for each cgroup."""

    def __init__(self, parent: Optional[str] = None) -> None:
        self.parent = parent or ""
        self.absolute = self.parent.startswith("/")
        self._relparent = _check_relative(self.parent, "cgroup parent")
        self._hierarchies: Optional[List[Hierarchy]] = None

    def check(self) -> None:
        if not self.hierarchies():
            raise CgroupError("no cgroup hierarchy is mounted (see /proc/self/mountinfo)")

    def hierarchies(self) -> List[Hierarchy]:
        """The hierarchies a cgroup of this manager spans.

        On a hybrid host (v1 controllers plus a cgroup2 mount) the cgroup2
        mount counts only if controllers are enabled below our own cgroup
        there: otherwise membership in it limits nothing, and joining it
        would cost the process a wait for the cgroup core's global lock
        (writing a v2 cgroup.procs always takes it, 5-10 ms).
        """
        if self._hierarchies is None:
            found = hierarchies()
            if any(h.version == 1 for h in found):
                found = [h for h in found if h.version == 1 or _controllers_enabled(h.own_dir)]
            self._hierarchies = found
        return self._hierarchies

    def parent_dir(self, h: Hierarchy) -> str:
        base = h.mountpoint if self.absolute else h.own_dir
        return os.path.join(base, self._relparent) if self._relparent else base

    def create(self, name: str) -> "CgroupfsGroup":
        name = _check_relative(name, "cgroup name")
        if not name or "/" in name:
            raise InvalidArgument(f"cgroup name {name!r} must be one path component")
        group = CgroupfsGroup([])
        try:
            for h in self.hierarchies():
                group.dirs.append(_make(self.parent_dir(h), name, h, group.created_parents))
                group.join.append(os.path.join(group.dirs[-1], "tasks" if h.version == 1 else "cgroup.procs"))
            group.freezer = self._freezer_of(group.dirs)
        except OSError as e:
            group.remove()
            raise CgroupError(f"cannot create cgroup {name!r}: {e}") from e
        return group


    def existing(self, name: str, dirs: List[str], parents: List[str]) -> "CgroupfsGroup":
        """The cgroup `name` made earlier: its recorded dirs, or wherever it exists."""
        if not dirs:
            dirs = [p for p in (os.path.join(self.parent_dir(h), name) for h in self.hierarchies()) if os.path.isdir(p)]
        group = CgroupfsGroup(list(dirs))
        group.created_parents = list(parents)
        group.freezer = self._freezer_of(group.dirs)
        return group

    def _freezer_of(self, dirs: List[str]) -> Optional[str]:
        """Which of `dirs` freezes its processes: the v1 freezer hierarchy's, else a v2 one."""
        for freezes in (lambda h: "freezer" in h.controllers, lambda h: h.version == 2):
            for h in self.hierarchies():
                if freezes(h):
                    for d in dirs:
                        if d.startswith(h.mountpoint + "/"):
                            return d
        return None


def _controllers_enabled(cgroup_dir: str) -> bool:
    try:
        with open(os.path.join(cgroup_dir, "cgroup.subtree_control")) as f:
            return bool(f.read().split())
    except OSError:
        return False


def _make(parent: str, name: str, h: Hierarchy, created_parents: List[str]) -> str:
    """mkdir parent/name, and the parent first if it is missing; cpuset levels get cpus/mems."""
    path = os.path.join(parent, name)
    for attempt in range(3):
        try:
            os.mkdir(path)
            break
        except FileNotFoundError:
            # The parent is not there (yet, or a concurrent remove() took a shared one away).
            if attempt == 2:
                raise
            _makedirs(parent, h, created_parents)
    if "cpuset" in h.controllers:
        _inherit_cpuset(path)
    return path


def _makedirs(path: str, h: Hierarchy, created: List[str]) -> None:
    if os.path.isdir(path):
        return
    _makedirs(os.path.dirname(path), h, created)
    try:
        os.mkdir(path)
    except FileExistsError:
        return
    created.append(path)
    if "cpuset" in h.controllers:
        _inherit_cpuset(path)


_parent_cpusets: Dict[Tuple[str, str], str] = {}  # (parent dir, knob): its value when last read


def _inherit_cpuset(path: str) -> None:
    """A v1 cpuset cgroup takes no task until cpus and mems are set: copy the
    parent's (as last read; read again if the parent changed since)."""
    parent = os.path.dirname(path)
    for knob in ("cpuset.cpus", "cpuset.mems"):
        for fresh in (False, True):
            value = _parent_cpusets.get((parent, knob)) if not fresh else None
            if value is None:
                with open(os.path.join(parent, knob)) as f:
                    value = _parent_cpusets[(parent, knob)] = f.read().strip()
            try:
                with open(os.path.join(path, knob), "w") as f:
                    f.write(value)
                break
            except OSError as e:
                if fresh or e.errno not in (errno.EINVAL, errno.ENOSPC):
                    raise


class CgroupfsGroup:
    """A cgroup made by Cgroupfs: its directories, one per hierarchy."""

    def __init__(self, dirs: List[str]) -> None:
        self.dirs = dirs
        self.created_parents: List[str] = []
        self.join: List[str] = []  # join_files, when known from the making
        self.freezer: Optional[str] = None  # the dir whose freezer (v1) or cgroup.freeze (v2) holds its processes

    def join_files(self) -> List[str]:
        """The files a process writes "0" to in order to move itself here:
        `tasks` on v1 (no global lock for a thread that moves itself),
        `cgroup.procs` on v2."""
        if len(self.join) == len(self.dirs):
            return list(self.join)
        out = []
        for d in self.dirs:
            tasks = os.path.join(d, "tasks")
            out.append(tasks if os.path.exists(tasks) else os.path.join(d, "cgroup.procs"))
        return out

    def add(self, pid: int) -> None:
        """Move `pid` (a whole process) into this cgroup in every hierarchy."""
        for d in self.dirs:
            try:
                with open(os.path.join(d, "cgroup.procs"), "w") as f:
                    f.write(str(pid))
            except OSError as e:
                raise CgroupError(f"cannot move process {pid} into cgroup {d}: {e}") from e

    def pids(self, below: bool = False) -> List[int]:
        """The pids in this cgroup (from its first hierarchy), as listed now;
        with `below`, those in the cgroups below it too (the runtime's)."""
        if not self.dirs:
            return []
        found: List[int] = []
        for root, _, _ in os.walk(self.dirs[0]) if below else [(self.dirs[0], [], [])]:
            try:
                found += [int(line) for line in read_small(os.path.join(root, "cgroup.procs"), 1 << 20).split()]
            except FileNotFoundError:
                pass
        return found

    def members(self, below: bool = False) -> List[ProcessHandle]:
        """The processes in this cgroup (and, with `below`, in those below it),
        each held by a pidfd.

        Each pidfd is opened first, then the cgroups are listed again: a pid
        still listed then is that very process (a process that left or died
        would not be), so a number reused meanwhile is never held.
        """
        opened = [h for h in (ProcessHandle.open(pid) for pid in self.pids(below)) if h is not None]
        still = set(self.pids(below))
        for h in opened:
            if h.pid not in still:
                h.close()
        return [h for h in opened if h.pid in still]

    def leave(self, pid: int) -> None:
        """Move `pid` from this cgroup to its parent in every hierarchy, so the cgroup can go."""
        for d in self.dirs:
            try:
                with open(os.path.join(os.path.dirname(d), "cgroup.procs"), "w") as f:
                    f.write(str(pid))
            except OSError as e:
                raise CgroupError(f"cannot move process {pid} out of {d}: {e}") from e

    def remove_if_empty(self) -> bool:
        """Remove the cgroup if no process and no cgroup is left in it; False,
        having removed nothing, if something is.

        A process is in the cgroup in every hierarchy alike, so the first
        directory tells: when it goes, the rest go as `remove` removes them.
        """
        if self.dirs:
            try:
                os.rmdir(self.dirs[0])
            except FileNotFoundError:
                pass
            except OSError as e:
                if e.errno in (errno.EBUSY, errno.ENOTEMPTY):
                    return False
                raise CgroupError(f"cannot remove cgroup {self.dirs[0]}: {e.strerror}") from e
        self.remove()
        return True

    def remove(self) -> None:
        """Remove every directory of this cgroup, with all cgroups below it.

        Parents that were made for it go too when nothing else uses them.
        Raises CgroupError if a process still runs inside.
        """
        failed = []
        for d in self.dirs:
            try:
                os.rmdir(d)  # the runtime removed its own cgroup below: usually all there is
            except FileNotFoundError:
                pass
            except OSError:
                try:
                    _rmtree_cgroup(d)
                except OSError as e:
                    failed.append(f"{d}: {e.strerror}")
        for p in reversed(self.created_parents):
            try:
                os.rmdir(p)
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.EBUSY, errno.ENOTEMPTY):
                    failed.append(f"{p}: {e.strerror}")
        self.dirs, self.created_parents, self.join = [], [], []
        if failed:
            raise CgroupError("cannot remove cgroup: " + "; ".join(failed))


def _rmtree_cgroup(top: str) -> None:
    """rmdir a cgroup and its descendants, deepest first (cgroupfs needs no unlink)."""
    for root, dirs, _ in os.walk(top, topdown=False):
        for d in dirs:
            try:
                os.rmdir(os.path.join(root, d))
            except FileNotFoundError:
                pass
    try:
        os.rmdir(top)
    except FileNotFoundError:
        pass
