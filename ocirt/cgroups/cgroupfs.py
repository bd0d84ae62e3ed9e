"""cgroupfs: cgroups made by writing to the cgroup filesystem directly.

Works on cgroup v1, v2 and the hybrid layout (v1 controllers plus a
cgroup2 mount), as found in /proc/self/mountinfo.

Layout: conmon's cgroup `ocirt-conmon-<id>` and the container's `ocirt-<id>`
are siblings under one parent path, the same in every hierarchy, which the
runtime is given as an absolute `linux.cgroupsPath` (as podman and CRI-O
place them). The parent:

- v1 and hybrid: this process's own cgroup, the deepest of them where they
  differ between hierarchies (each other one lies above it, so the path is
  inside this process's subtree everywhere), plus a relative `parent`.
  Where no such path exists (own cgroups on unrelated branches), the
  container nests inside conmon's cgroup instead: v1 allows that.
- pure v2: a cgroup that holds no process, since v2 enables controllers
  only below such a one: `ocirt` beside this process's own cgroup (or a
  relative `parent` there), with the controllers enabled top-down.
- an absolute `parent`, given by the caller, is used as it is.

Parents made for a cgroup go with it once nothing else uses them, or, if
the manager that made or found it is still open, when that manager closes
(or its process exits): a manager's next cgroup would only make them again,
and making and removing a cgroup level costs 40-130 us of kernel time in
each hierarchy.
"""

from __future__ import annotations

import errno
import os
import weakref
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ..errors import CgroupError, InvalidArgument
from ..layout import read_small
from ..process import ProcessHandle
from .hierarchy import Hierarchy, hierarchies
from .tree import (
    REMOVE_TRIES,
    V2_CONTROLLERS,
    controllers_enabled,
    enable_controllers,
    make,
    make_parents,
    prepare_v2_parent,
    remove_dir,
    remove_parents,
)


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
        self._all: Optional[List[Hierarchy]] = None
        self._hierarchies: Optional[List[Hierarchy]] = None
        self._base: Optional[Tuple[Optional[str]]] = None
        self._planned: Optional[_Plan] = None
        self._kept = _KeptParents()
        self._release_kept = weakref.finalize(self, self._kept.release)

    def close(self) -> None:
        """Remove the parents this manager's cgroups left to it (see the
        module's docstring) where nothing uses them now; its later cgroups
        remove their own parents. Called again, does nothing."""
        self._release_kept()

    def check(self) -> None:
        if not self.hierarchies():
            raise CgroupError("no cgroup hierarchy is mounted (see /proc/self/mountinfo)")
        self.base()

    def all_hierarchies(self) -> List[Hierarchy]:
        """Every mounted hierarchy: where the runtime places a container."""
        if self._all is None:
            self._all = hierarchies()
        return self._all

    def hierarchies(self) -> List[Hierarchy]:
        """The hierarchies conmon's cgroup spans.

        On a hybrid host (v1 controllers plus a cgroup2 mount) the cgroup2
        mount counts only if controllers are enabled below our own cgroup
        there: otherwise membership in it limits nothing, and joining it
        would cost the process a wait for the cgroup core's global lock
        (writing a v2 cgroup.procs always takes it, 5-10 ms).
        """
        if self._hierarchies is None:
            found = self.all_hierarchies()
            if any(h.version == 1 for h in found):
                found = [h for h in found if h.version == 1 or controllers_enabled(h.own_dir)]
            self._hierarchies = found
        return self._hierarchies

    def base(self) -> Optional[str]:
        """The parent path (from each mount's root, the same in every
        hierarchy) under which conmon's and the container's cgroups go side
        by side; None where none lies inside this process's cgroup in every
        hierarchy (then the container nests in conmon's). CgroupError if a
        pure v2 parent cannot hold them (see the module's docstring)."""
        if self._base is None:
            self._base = (self._find_base(),)
        return self._base[0]

    def _find_base(self) -> Optional[str]:
        found = self.all_hierarchies()
        if not found:
            return None
        if self.absolute:
            base = "/" + self._relparent
        elif all(h.version == 2 for h in found):
            own = found[0].own_path.rstrip("/")
            beside = os.path.dirname(own) if own else ""  # the root itself may hold processes
            base = f"{beside.rstrip('/')}/{self._relparent or 'ocirt'}"
        else:
            deepest = max((h.own_path.rstrip("/") for h in found), key=len)
            if not all(deepest == p or deepest.startswith(p + "/") for p in (h.own_path.rstrip("/") for h in found)):
                return None
            base = f"{deepest}/{self._relparent}".rstrip("/") or "/"
        if all(h.version == 2 for h in found):
            prepare_v2_parent(found[0], base)
        return base

    def parent_dir(self, h: Hierarchy) -> str:
        """Where conmon's cgroup goes in hierarchy `h`."""
        base = self.base()
        if base is not None:
            return os.path.join(h.mountpoint, base.lstrip("/"))
        return os.path.join(h.own_dir, self._relparent) if self._relparent else h.own_dir

    def _plan(self) -> "_Plan":
        if self._planned is None:
            self._planned = _Plan(self)
        return self._planned

    def create(self, name: str, container: Optional[str] = None, needs: Sequence[str] = ()) -> "CgroupfsGroup":
        """Make cgroup `name` for a conmon; with `container`, plan the cgroup
        of that name the runtime will make for the container (`.container`,
        `.runtime_path`), making the parents it needs now, so that they are
        known and removed with this one. On v2, CgroupError names each
        controller of `needs` (the container's limits use them) that the
        parent is not given, before anything is made."""
        name = _check_leaf(name)
        self._check_v2_controllers(needs)
        plan = self._plan()
        group = CgroupfsGroup([], self._kept)
        group.created_parents = list(plan.levels)  # known from the start: a create cut short removes them too
        try:
            for h, parent in plan.conmon_parents:
                group.dirs.append(make(parent, name, h, group.created_parents))
                group.join.append(os.path.join(group.dirs[-1], "tasks" if h.version == 1 else "cgroup.procs"))
            self._describe(group)
            if container is not None:
                leaf = _check_leaf(container)
                base = self.base()
                if base is not None:
                    group.runtime_path = os.path.join(base, leaf)
                    for h, parent in plan.container_parents:
                        make_parents(parent, h, group.created_parents)
                        if h.version == 2 and len(plan.container_parents) == 1 and parent in group.created_parents:
                            enable_controllers(parent, V2_CONTROLLERS)  # made just now: its children need them
                    dirs = [os.path.join(parent, leaf) for _, parent in plan.container_parents]
                else:
                    group.runtime_path = leaf  # relative: inside the runtime's own cgroup, conmon's
                    dirs = [os.path.join(d, leaf) for d in group.dirs]
                group.container = self.existing(leaf, dirs, [])
        except OSError as e:
            group.remove()
            raise CgroupError(f"cannot create cgroup {name!r}: {e}") from e
        return group

    def planned(self, name: str, container: Optional[str] = None) -> "CgroupfsGroup":
        """The cgroup `create(name, container)` would make, with nothing made:
        its directories, for a record that names them before they exist (a
        process killed while making them leaves what the next one finds)."""
        name = _check_leaf(name)
        plan = self._plan()
        dirs = [os.path.join(parent, name) for _, parent in plan.conmon_parents]
        container_dirs: List[str] = []
        if container is not None:
            leaf = _check_leaf(container)
            parents = [parent for _, parent in plan.container_parents] if self.base() is not None else dirs
            container_dirs = [os.path.join(parent, leaf) for parent in parents]
        return self.existing(name, dirs, list(plan.levels), container_dirs)

    def _layout_levels(self) -> List[str]:
        """The directories between this process's own cgroup and the parent,
        in every hierarchy, top-down: made for ocirt's layout, so each
        cgroup removes them when it goes (if empty then), not only the one
        that happened to make them. None for an absolute parent: the
        caller's own."""
        if self.absolute:
            return []
        out: List[str] = []
        for h in self.all_hierarchies():
            own = h.own_dir.rstrip("/")
            level = self.parent_dir(h).rstrip("/")
            below: List[str] = []
            while level.startswith(own + "/"):
                below.append(level)
                level = os.path.dirname(level)
            out += reversed(below)
        return out

    def _check_v2_controllers(self, needs: Sequence[str]) -> None:
        base = self.base()
        found = self.all_hierarchies()
        if base is None or not needs or not all(h.version == 2 for h in found):
            return
        # The parent's own controllers come from its parent: the first level
        # that exists tells what is delegated to it.
        level = os.path.join(found[0].mountpoint, base.lstrip("/"))
        while not os.path.isdir(level):
            level = os.path.dirname(level)
        try:
            have = read_small(os.path.join(level, "cgroup.controllers")).decode().split()
        except OSError as e:
            raise CgroupError(f"cannot read {level}/cgroup.controllers: {e.strerror}") from e
        for c in needs:
            if c not in have:
                raise CgroupError(
                    f"the {c} controller is not delegated to cgroup {level} (not in its cgroup.controllers): "
                    f"the container's {c} limits cannot apply there"
                )

    def existing(self, name: str, dirs: List[str], parents: List[str], container_dirs: Sequence[str] = ()) -> "CgroupfsGroup":
        """The cgroup `name` made earlier: its recorded dirs, or wherever it
        exists; with the container's cgroup at `container_dirs`, if given."""
        if not dirs:
            dirs = [p for p in (os.path.join(self.parent_dir(h), name) for h in self.hierarchies()) if os.path.isdir(p)]
        group = CgroupfsGroup(list(dirs), self._kept)
        # A record made before its cgroup (a process that died in create) names no parents.
        group.created_parents = list(parents) or (list(self._plan().levels) if dirs else [])
        self._describe(group)
        if container_dirs:
            group.container = self.existing(os.path.basename(container_dirs[0]), list(container_dirs), [])
        return group

    def _describe(self, group: "CgroupfsGroup") -> None:
        """Set `group`'s controllers ({v1 controller, or "v2": its dir}) and freezer from its dirs."""
        keys = self._plan().keys
        for d in group.dirs:
            names = keys.get(_mount_of(d, keys), ())
            group.controllers.update(dict.fromkeys(names, d))
        group.freezer = group.controllers.get("freezer") or group.controllers.get("v2")


class _Plan:
    """Where a manager's cgroups go, worked out once: the same for each."""

    def __init__(self, manager: Cgroupfs) -> None:
        self.conmon_parents = [(h, manager.parent_dir(h)) for h in manager.hierarchies()]
        base = manager.base()
        found = manager.all_hierarchies()
        self.container_parents = [(h, os.path.join(h.mountpoint, base.lstrip("/"))) for h in found] if base is not None else []
        # Which dirs are whose: the keys a dir under each mount stands for.
        self.keys = {h.mountpoint.rstrip("/") + "/": tuple(h.controllers) if h.version == 1 else ("v2",) for h in found}
        self.levels = tuple(manager._layout_levels())


def _check_leaf(name: str) -> str:
    name = _check_relative(name, "cgroup name")
    if not name or "/" in name:
        raise InvalidArgument(f"cgroup name {name!r} must be one path component")
    return name


def _mount_of(path: str, mounts: Mapping[str, object]) -> str:
    """The longest of `mounts` (dirs ending in "/") that holds `path`; "" if none."""
    prefix = path.rstrip("/") + "/"
    while prefix and prefix not in mounts:
        prefix = prefix[: prefix.rstrip("/").rfind("/") + 1]
    return prefix

class CgroupfsGroup:
    """A cgroup made by Cgroupfs: its directories, one per hierarchy."""

    def __init__(self, dirs: List[str], kept: Optional["_KeptParents"] = None) -> None:
        self.dirs = dirs
        self.kept = kept  # its manager's, which removes the parents at close while open
        self.created_parents: List[str] = []
        self.join: List[str] = []  # join_files, when known from the making
        self.freezer: Optional[str] = None  # the dir whose freezer (v1) or cgroup.freeze (v2) holds its processes
        self.controllers: Dict[str, str] = {}  # v1 controller (or "v2") -> its dir among `dirs`
        self.container: Optional[CgroupfsGroup] = None  # the container's cgroup, beside (or in) a conmon's
        self.runtime_path: Optional[str] = None  # the container's linux.cgroupsPath for the runtime

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
        """Move `pid` out of this cgroup, and out of the parents made for it,
        in every hierarchy, so that all of them can go."""
        for d in self.dirs:
            above = [p for p in self.created_parents if d.startswith(p + "/")]
            target = os.path.dirname(min(above, key=len) if above else d)
            try:
                with open(os.path.join(target, "cgroup.procs"), "w") as f:
                    f.write(str(pid))
            except OSError as e:
                raise CgroupError(f"cannot move process {pid} out of {d}: {e}") from e

    def remove_if_empty(self) -> bool:
        """Remove the cgroup (and the container's beside it) if no process is
        left in either; False, having removed nothing, if one is.

        A process is in a cgroup in every hierarchy alike, so the first
        directory tells: when it goes, the rest go as `remove` removes them.
        """
        firsts = [g.dirs[0] for g in (self.container, self) if g is not None and g.dirs]
        for d in firsts:
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError as e:
                if e.errno in (errno.EBUSY, errno.ENOTEMPTY):
                    return False
                raise CgroupError(f"cannot remove cgroup {d}: {e.strerror}") from e
        self.remove()
        return True

    def kill_all(self) -> bool:
        """SIGKILL every process in the cgroup and below it at once, forks in
        flight included, through v2's cgroup.kill; False where there is none
        (v1 only, or a kernel before 5.14)."""
        v2 = self.controllers.get("v2")
        if v2 is None:
            return False
        try:
            with open(os.path.join(v2, "cgroup.kill"), "w") as f:
                f.write("1")
        except FileNotFoundError:
            return False
        except OSError as e:
            raise CgroupError(f"cannot kill the processes of cgroup {v2}: {e.strerror}") from e
        return True

    def remove(self) -> None:
        """Remove every directory of this cgroup, with all cgroups below it,
        and the container's cgroup beside it (when the runtime left it).

        Parents that were made for it go too when nothing else uses them (at
        its manager's close, while that is open). A
        directory whose last process is still exiting gets REMOVE_TRIES;
        CgroupError names those still busy then.
        """
        failed: List[str] = []
        for d in (self.container.dirs if self.container is not None else []) + self.dirs:
            error = remove_dir(d, () if failed else REMOVE_TRIES)  # one wait is enough to tell
            if error:
                failed.append(error)
        if self.kept is None or not self.kept.keep(self.created_parents):
            failed += remove_parents(self.created_parents)
        self.dirs, self.created_parents, self.join = [], [], []
        if self.container is not None:
            self.container.dirs = []
        if failed:
            raise CgroupError("cannot remove cgroup: " + "; ".join(failed))


class _KeptParents:
    """The parents an open manager keeps for its next cgroups, in the order made."""

    def __init__(self) -> None:
        self.open = True
        self.parents: List[str] = []

    def keep(self, parents: Sequence[str]) -> bool:
        """Keep `parents` until release, if still open; whether kept."""
        if not self.open:
            return False
        self.parents += [p for p in parents if p not in self.parents]
        return True

    def release(self) -> None:
        self.open = False
        remove_parents(self.parents)  # a busy one is another's: its remover takes it
