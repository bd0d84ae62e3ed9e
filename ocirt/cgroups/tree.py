"""Making and removing cgroup directories in the cgroup filesystem, as
cgroupfs.py lays them out: levels made again while another process's
cleanup takes a shared parent away, v1 cpusets given their parent's cpus
and mems, v2 controllers enabled top-down, busy directories retried.
"""

from __future__ import annotations

import errno
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import CgroupError
from ..layout import read_small
from .hierarchy import Hierarchy

V2_CONTROLLERS = ("cpu", "cpuset", "io", "memory", "pids")  # what a v2 parent enables for its containers


def prepare_v2_parent(h: Hierarchy, base: str) -> None:
    """Make sure v2 cgroup `base` can hold conmon's and the containers'
    cgroups with controllers: it holds no process, and each controller its
    parent offers is enabled top-down, from base's parent to base itself.
    CgroupError names the cgroup that refused. Makes nothing: a missing
    level is made (and checked) when a container is created.
    """
    path = os.path.join(h.mountpoint, base.lstrip("/"))
    procs = os.path.join(path, "cgroup.procs")
    try:
        held = read_small(procs).split()
    except FileNotFoundError:
        held = []
    except OSError as e:
        raise CgroupError(f"cannot read {procs}: {e.strerror}") from e
    if held and base != "/":
        raise CgroupError(
            f"cgroup {path} holds processes, so cgroup v2 enables no controller below it: "
            "give a cgroup parent that holds none"
        )
    levels = [os.path.dirname(path), path] if base != "/" else [path]
    for level in levels:
        if os.path.isdir(level):
            enable_controllers(level, V2_CONTROLLERS)


def enable_controllers(cgroup_dir: str, wanted: "Tuple[str, ...] | List[str]") -> List[str]:
    """Enable in `cgroup_dir`'s subtree_control each of `wanted` it has; the
    ones it has not, so the caller can name them. CgroupError if the kernel
    refuses one it has (the cgroup holds processes, or it is not delegated)."""
    try:
        have = read_small(os.path.join(cgroup_dir, "cgroup.controllers")).decode().split()
        enabled = read_small(os.path.join(cgroup_dir, "cgroup.subtree_control")).decode().split()
    except FileNotFoundError:
        return list(wanted)
    missing = [c for c in wanted if c not in have]
    to_enable = [c for c in wanted if c in have and c not in enabled]
    control = os.path.join(cgroup_dir, "cgroup.subtree_control")
    try:
        if to_enable:
            with open(control, "w") as f:
                f.write(" ".join(f"+{c}" for c in to_enable))
    except OSError:
        for c in to_enable:  # which one: the error names it
            try:
                with open(control, "w") as f:
                    f.write(f"+{c}")
            except OSError as e:
                raise CgroupError(f"cannot enable the {c} controller in {control}: {e.strerror}") from e
    return missing


def controllers_enabled(cgroup_dir: str) -> bool:
    try:
        with open(os.path.join(cgroup_dir, "cgroup.subtree_control")) as f:
            return bool(f.read().split())
    except OSError:
        return False


MAKE_TRIES = 100  # a shared parent can vanish again and again while other processes churn


def make(parent: str, name: str, h: Hierarchy, created_parents: List[str]) -> str:
    """mkdir parent/name, the parents first where missing; cpuset levels get cpus/mems.

    A parent level is shared: another process's remove() takes it away
    whenever it is empty, which it is until this cgroup is in it (then
    rmdir finds it busy). So the chain is made again while a parent
    vanishes under any step, the new cgroup removed before each new try.
    """
    path = os.path.join(parent, name)
    for attempt in range(MAKE_TRIES):
        last = attempt == MAKE_TRIES - 1
        try:
            if attempt:
                makedirs(parent, h, created_parents)
            os.mkdir(path)
        except OSError as e:
            if last or not vanished(e):
                raise
            continue
        try:
            if "cpuset" in h.controllers:
                inherit_cpuset(path)
            return path
        except BaseException as e:
            try:
                os.rmdir(path)  # not left behind unrecorded, whatever stopped it
            except OSError:
                pass
            if last or not isinstance(e, OSError) or not vanished(e):
                raise
    raise AssertionError("unreachable")


def make_parents(path: str, h: Hierarchy, created: List[str]) -> None:
    """Make cgroup `path` and the levels above it where missing, again while
    a level vanishes under a step (see make); the runtime makes its
    cgroup there, and makes the path again itself if it vanishes after."""
    for attempt in range(MAKE_TRIES):
        try:
            makedirs(path, h, created)
            return
        except OSError as e:
            if attempt == MAKE_TRIES - 1 or not vanished(e):
                raise


def vanished(e: OSError) -> bool:
    """Whether `e` says a cgroup directory went while in use: gone from its
    path (ENOENT), or removed with the file open (ENODEV)."""
    return e.errno in (errno.ENOENT, errno.ENODEV)


def makedirs(path: str, h: Hierarchy, created: List[str]) -> None:
    if os.path.isdir(path):
        return
    makedirs(os.path.dirname(path), h, created)
    try:
        os.mkdir(path)
    except FileExistsError:
        return
    if path not in created:
        created.append(path)
    if "cpuset" in h.controllers:
        inherit_cpuset(path)


parent_cpusets: Dict[Tuple[str, str], str] = {}  # (parent dir, knob): its value when last read


def inherit_cpuset(path: str) -> None:
    """A v1 cpuset cgroup takes no task until cpus and mems are set: copy the
    parent's (as last read; read again if the parent changed since)."""
    parent = os.path.dirname(path)
    for knob in ("cpuset.cpus", "cpuset.mems"):
        for fresh in (False, True):
            value = parent_cpusets.get((parent, knob)) if not fresh else None
            if value is None:
                value = read_small(os.path.join(parent, knob)).decode().strip()
                if not value:  # a parent another process made an instant ago, not yet given its own
                    inherit_cpuset(parent)
                    value = read_small(os.path.join(parent, knob)).decode().strip()
                parent_cpusets[(parent, knob)] = value
            try:
                with open(os.path.join(path, knob), "w") as f:
                    f.write(value)
                break
            except OSError as e:
                # EINVAL, ENOSPC: the parent's changed; EACCES: not within a
                # parent made again since, and not yet given its own.
                if fresh or e.errno not in (errno.EINVAL, errno.ENOSPC, errno.EACCES):
                    raise




def remove_parents(parents: Sequence[str]) -> List[str]:
    """rmdir each of `parents` unless in use, deepest first; what failed otherwise."""
    failed = []
    for p in sorted(parents, key=len, reverse=True):
        try:
            os.rmdir(p)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.EBUSY, errno.ENOTEMPTY):
                failed.append(f"{p}: {e.strerror}")
    return failed


REMOVE_TRIES = (0.001, 0.005, 0.02, 0.1)  # seconds between tries: a process leaves its cgroups as it exits


def remove_dir(path: str, pauses: Tuple[float, ...]) -> Optional[str]:
    """rmdir a cgroup (with what is below it), trying again after each of
    `pauses` while it is busy; what went wrong, or None."""
    for pause in (*pauses, None):
        try:
            os.rmdir(path)  # the runtime removed its own cgroup below: usually all there is
            return None
        except FileNotFoundError:
            return None
        except OSError:
            try:
                rmtree_cgroup(path)
                return None
            except OSError as e:
                if pause is None or e.errno != errno.EBUSY:
                    return f"{path}: {e.strerror}"
        time.sleep(pause)
    return None


def rmtree_cgroup(top: str) -> None:
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
