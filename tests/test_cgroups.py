"""conmon's cgroup: made in every hierarchy under our own cgroup, removed on delete."""

from __future__ import annotations

import os

import pytest

import ocirt
from ocirt.cgroups import Cgroupfs, Hierarchy, hierarchies


def conmon_cgroups(pid: int) -> dict:
    with open(f"/proc/{pid}/cgroup") as f:
        return {line.split(":")[1]: line.rstrip("\n").split(":", 2)[2] for line in f}


def test_conmon_runs_in_its_own_cgroup_in_every_hierarchy(create, make_bundle):
    c = create(make_bundle("sleep", "1000"))
    own = conmon_cgroups(os.getpid())
    paths = conmon_cgroups(c.conmon_pid)
    assert set(paths) == set(own)
    leaf = f"ocirt-conmon-{c.id}"
    for key, path in paths.items():
        assert path == os.path.join(own[key], leaf), key
    dirs = [os.path.join(h.own_dir, leaf) for h in hierarchies()]
    assert all(os.path.isdir(d) for d in dirs)
    c.delete(force=True)
    assert not any(os.path.exists(d) for d in dirs)


def test_relative_parent_is_made_and_removed(tmp_path, make_bundle, new_id):
    rt = ocirt.Runtime(tmp_path / "rt", cgroup_parent="ocirt-test-parent/nested")
    c = rt.create(new_id(), make_bundle("true"))
    try:
        own = conmon_cgroups(os.getpid())
        for key, path in conmon_cgroups(c.conmon_pid).items():
            assert path == os.path.join(own[key], "ocirt-test-parent/nested", f"ocirt-conmon-{c.id}")
    finally:
        c.delete()
    for h in hierarchies():
        assert not os.path.exists(os.path.join(h.own_dir, "ocirt-test-parent"))


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
