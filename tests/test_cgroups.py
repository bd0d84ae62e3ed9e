"""conmon's cgroup: made in every hierarchy under our own cgroup, removed on delete."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

import ocirt
from ocirt.cgroups import Cgroupfs, Hierarchy, cgroupfs, hierarchies
from ocirt.launcher import end_cgroup

from .cli_support import reap_orphans


def conmon_cgroups(pid: int) -> dict:
    """{controllers: path} as /proc/<pid>/cgroup says, keyed like Hierarchy.controllers."""
    with open(f"/proc/{pid}/cgroup") as f:
        return {frozenset(filter(None, line.split(":")[1].split(","))): line.rstrip("\n").split(":", 2)[2] for line in f}


def placed() -> set:
    """The hierarchies conmon gets a cgroup of its own in (a hybrid host's cgroup2 mount only with controllers)."""
    return {h.controllers for h in Cgroupfs().hierarchies()}


def test_conmon_runs_in_its_own_cgroup_in_every_hierarchy_that_limits(create, make_bundle):
    c = create(make_bundle("sleep", "1000"))
    own = conmon_cgroups(os.getpid())
    paths = conmon_cgroups(c.conmon_pid)
    assert set(paths) == set(own)
    assert {h.controllers for h in hierarchies() if h.version == 1} <= placed()
    leaf = f"ocirt-conmon-{c.id}"
    for key, path in paths.items():
        assert path == (os.path.join(own[key], leaf) if key in placed() else own[key]), key
    dirs = [os.path.join(h.own_dir, leaf) for h in Cgroupfs().hierarchies()]
    assert all(os.path.isdir(d) for d in dirs)
    c.delete(force=True)
    assert not any(os.path.exists(d) for d in dirs)


class ForksAfterListing:
    """A cgroup whose first listing is followed, before anything is signalled,
    by `fork()`: as when conmon starts the runtime in that very moment."""

    def __init__(self, group, fork):
        self.group, self.fork, self.listings = group, fork, 0

    def members(self, below=False):
        found = self.group.members(below)
        self.listings += 1
        if self.listings == 1:
            self.fork()
        return found


def test_ending_a_cgroup_also_ends_what_its_processes_fork_meanwhile(new_id):
    group = Cgroupfs().create(f"ocirt-conmon-{new_id()}")
    shell = subprocess.Popen(["sh", "-c", "read go; sleep 1000 & echo forked; wait"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        group.add(shell.pid)

        def fork():
            shell.stdin.write(b"go\n")
            shell.stdin.flush()
            assert shell.stdout.readline() == b"forked\n"
            assert len(group.pids()) == 2

        listed = ForksAfterListing(group, fork)
        assert end_cgroup(listed, grace=0) == []
        assert listed.listings == 3  # the shell; the sleep it forked; nobody
        assert group.remove_if_empty()
    finally:
        for pid in group.pids(below=True):
            os.kill(pid, signal.SIGKILL)
        shell.kill()
        shell.wait()
        reap_orphans()
        group.remove()


def test_a_hybrid_hosts_cgroup2_without_controllers_is_left_out(tmp_path, monkeypatch):
    v1 = Hierarchy("/sys/fs/cgroup/memory", 1, frozenset({"memory"}), "/")
    v2 = Hierarchy(str(tmp_path), 2, frozenset(), "/")
    control = tmp_path / "cgroup.subtree_control"
    control.write_text("\n")
    monkeypatch.setattr(cgroupfs, "hierarchies", lambda: [v1, v2])
    assert Cgroupfs().hierarchies() == [v1]
    control.write_text("memory pids\n")
    assert Cgroupfs().hierarchies() == [v1, v2]
    monkeypatch.setattr(cgroupfs, "hierarchies", lambda: [v2])  # pure v2: always
    control.write_text("\n")
    assert Cgroupfs().hierarchies() == [v2]

def test_relative_parent_is_made_and_removed(make_runtime, make_bundle, new_id):
    parent = new_id()
    rt = make_runtime(cgroup_parent=f"{parent}/nested")
    c = rt.create(new_id(), make_bundle("true"))
    try:
        own = conmon_cgroups(os.getpid())
        for key in placed():
            assert conmon_cgroups(c.conmon_pid)[key] == os.path.join(own[key], parent, "nested", f"ocirt-conmon-{c.id}")
    finally:
        c.delete()
    for h in hierarchies():
        assert not os.path.exists(os.path.join(h.own_dir, parent))


def test_absolute_parent_places_conmon_there_in_every_hierarchy(make_runtime, make_bundle, new_id):
    # An absolute parent means the same path in every hierarchy. These
    # machines allow cgroups only inside our own subtree, so take the deepest
    # of our own cgroups, if every other one lies above it.
    own = sorted({h.own_path for h in hierarchies()}, key=len)
    if not all(own[-1] == p or own[-1].startswith(p.rstrip("/") + "/") for p in own):
        pytest.skip(f"no absolute path lies inside this process's cgroup in every hierarchy: {own}")
    parent = os.path.join(own[-1], new_id())
    made = [shallowest_missing(h.mountpoint, parent) for h in Cgroupfs().hierarchies()]  # what ocirt will have to make
    rt = make_runtime(cgroup_parent=parent)
    c = rt.create(new_id(), make_bundle("true"))
    try:
        paths = conmon_cgroups(c.conmon_pid)
        assert {paths[key] for key in placed()} == {os.path.join(parent, f"ocirt-conmon-{c.id}")}
    finally:
        c.delete()
    assert not any(os.path.exists(d) for d in made)


def shallowest_missing(mountpoint: str, path: str) -> str:
    parts = path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        d = os.path.join(mountpoint, *parts[:i])
        if not os.path.exists(d):
            return d
    raise AssertionError(f"{path} exists already under {mountpoint}")


def test_parent_with_dotdot_is_refused(tmp_path):
    with pytest.raises(ocirt.InvalidArgument, match=r"'\.\.'"):
        ocirt.Runtime(tmp_path, cgroup_parent="../escape")


MOUNTINFO_HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
33 31 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
34 31 0:31 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
35 31 0:32 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
36 31 0:30 / /mnt/again/memory rw,relatime - cgroup cgroup rw,memory
"""
CGROUP_HYBRID = """\
4:memory:/user/job
3:cpu,cpuacct:/
2:name=systemd:/init.scope
0::/init.scope
"""


def write(tmp_path, mountinfo, cgroup):
    (tmp_path / "mountinfo").write_text(mountinfo)
    (tmp_path / "cgroup").write_text(cgroup)
    return str(tmp_path / "mountinfo"), str(tmp_path / "cgroup")


def test_hierarchies_of_a_hybrid_host(tmp_path):
    found = hierarchies(*write(tmp_path, MOUNTINFO_HYBRID, CGROUP_HYBRID))
    assert found == [
        Hierarchy("/sys/fs/cgroup/cpu,cpuacct", 1, frozenset({"cpu", "cpuacct"}), "/"),
        Hierarchy("/sys/fs/cgroup/memory", 1, frozenset({"memory"}), "/user/job"),
        Hierarchy("/sys/fs/cgroup/systemd", 1, frozenset({"name=systemd"}), "/init.scope"),
        Hierarchy("/sys/fs/cgroup/unified", 2, frozenset(), "/init.scope"),
    ]


def test_hierarchies_of_a_pure_v2_host_in_a_cgroup_namespace(tmp_path):
    mountinfo = "30 23 0:26 /payload /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"
    found = hierarchies(*write(tmp_path, mountinfo, "0::/payload/job\n"))
    assert found == [Hierarchy("/sys/fs/cgroup", 2, frozenset(), "/job")]
    assert found[0].own_dir == "/sys/fs/cgroup/job"


def test_parent_dirs_relative_and_absolute():
    h = Hierarchy("/sys/fs/cgroup/memory", 1, frozenset({"memory"}), "/user/job")
    assert Cgroupfs(None).parent_dir(h) == "/sys/fs/cgroup/memory/user/job"
    assert Cgroupfs("ocirt").parent_dir(h) == "/sys/fs/cgroup/memory/user/job/ocirt"
    assert Cgroupfs("/machine/ocirt").parent_dir(h) == "/sys/fs/cgroup/memory/machine/ocirt"
