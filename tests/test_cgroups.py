"""conmon's cgroup: made in every hierarchy under our own cgroup, removed on delete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

import ocirt
from ocirt.cgroups import Cgroupfs, Hierarchy, cgroupfs, hierarchies
from ocirt.launcher import end_cgroup

from .cli_support import reap_orphans
from .observe import until


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
    base = Cgroupfs().base()  # this process's deepest own cgroup: the others all lie above it
    for key, path in paths.items():
        assert path == (os.path.join(base, leaf) if key in placed() else own[key]), key
        assert path.startswith(own[key]), key  # inside our own subtree
    dirs = [os.path.join(h.mountpoint, base.lstrip("/"), leaf) for h in Cgroupfs().hierarchies()]
    assert all(os.path.isdir(d) for d in dirs)
    c.delete(force=True)
    assert not any(os.path.exists(d) for d in dirs)


class ForksAfterListing:
    """A cgroup whose first listing is followed, before anything is signalled,
    by `fork()`: as when conmon starts the runtime in that very moment."""

    container = None

    def kill_all(self):
        return False  # v1: one process at a time

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
        base = Cgroupfs().base()
        for key in placed():
            assert conmon_cgroups(c.conmon_pid)[key] == os.path.join(base, parent, "nested", f"ocirt-conmon-{c.id}")
    finally:
        c.delete()
    for h in hierarchies():
        assert not os.path.exists(os.path.join(h.mountpoint, base.lstrip("/"), parent, "nested", f"ocirt-conmon-{c.id}"))
        assert os.path.isdir(os.path.join(h.mountpoint, base.lstrip("/"), parent, "nested"))  # kept for the next
    rt.close()
    for h in hierarchies():
        assert not os.path.exists(os.path.join(h.mountpoint, base.lstrip("/"), parent))


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
    rt.close()
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


@pytest.mark.parametrize(
    "path, mount",
    [
        ("/sys/fs/cgroup/memory/a/b", "/sys/fs/cgroup/memory/"),
        ("/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory/"),
        ("/sys/fs/cgroup/unified/a", "/sys/fs/cgroup/unified/"),  # the longest mount holding it, not /sys/fs/cgroup/
        ("/sys/fs/cgroup/a", "/sys/fs/cgroup/"),
        ("/sys/fs/cgroupx/a", ""),
        ("/mnt/v2/a", "/mnt/v2/"),
        ("/elsewhere", ""),
    ],
)
def test_a_dirs_mount_is_the_longest_that_holds_it(path, mount):
    mounts = dict.fromkeys(["/sys/fs/cgroup/", "/sys/fs/cgroup/memory/", "/sys/fs/cgroup/unified/", "/mnt/v2/"])
    assert cgroupfs._mount_of(path, mounts) == mount


def test_parent_dirs_relative_and_absolute(monkeypatch):
    memory = Hierarchy("/sys/fs/cgroup/memory", 1, frozenset({"memory"}), "/user/job")
    cpu = Hierarchy("/sys/fs/cgroup/cpu", 1, frozenset({"cpu"}), "/user")
    unified = Hierarchy("/sys/fs/cgroup/unified", 2, frozenset(), "/")
    monkeypatch.setattr(cgroupfs, "hierarchies", lambda: [memory, cpu, unified])
    # own cgroups on one branch: the deepest, the same path in every hierarchy
    assert Cgroupfs(None).parent_dir(cpu) == "/sys/fs/cgroup/cpu/user/job"
    assert Cgroupfs("ocirt").parent_dir(memory) == "/sys/fs/cgroup/memory/user/job/ocirt"
    assert Cgroupfs("/machine/ocirt").parent_dir(cpu) == "/sys/fs/cgroup/cpu/machine/ocirt"
    # on unrelated branches: no common path; each hierarchy's own (the container nests in conmon's)
    cpu_elsewhere = Hierarchy("/sys/fs/cgroup/cpu", 1, frozenset({"cpu"}), "/other")
    monkeypatch.setattr(cgroupfs, "hierarchies", lambda: [memory, cpu_elsewhere])
    assert Cgroupfs(None).base() is None
    assert Cgroupfs("ocirt").parent_dir(cpu_elsewhere) == "/sys/fs/cgroup/cpu/other/ocirt"


# -- the container beside conmon ----------------------------------------------


def test_conmon_and_the_container_are_siblings_and_all_goes_with_delete_and_close(run, runtime):
    before = {d for h in hierarchies() for d in _dirs_below(h.mountpoint)}
    c = run("sleep", "1000")
    conmon, init = conmon_cgroups(c.conmon_pid), conmon_cgroups(c.state.pid)
    base = Cgroupfs().base()
    for key, path in init.items():
        assert path == f"{base}/ocirt-{c.id}", key  # the same path in every hierarchy, cgroup2 included
        if key in conmon and conmon[key] != "/":
            assert conmon[key] == f"{base}/ocirt-conmon-{c.id}", key
    c.delete(force=True)
    after = {d for h in hierarchies() for d in _dirs_below(h.mountpoint)}
    assert not any(c.id in d for d in after)
    assert after - before <= set(runtime._cgroups._plan().levels)  # kept for the runtime's next container
    runtime.close()
    assert {d for h in hierarchies() for d in _dirs_below(h.mountpoint)} == before


def _dirs_below(top: str) -> set:
    return {root for root, _, _ in os.walk(top)}


def test_the_cgroup2_mount_holds_the_container_and_kills_it_at_once(run):
    v2 = [h for h in hierarchies() if h.version == 2]
    if not v2:
        pytest.skip("no cgroup2 mount here")
    c = run("sh", "-c", "sleep 1000 & sleep 1000 & wait", pid_ns=False)
    group = c._cgroup.container
    unified = group.controllers["v2"]
    until(lambda: len(open(os.path.join(unified, "cgroup.procs")).read().split()) == 3)
    assert b"populated 1" in open(os.path.join(unified, "cgroup.events"), "rb").read()
    assert group.kill_all()
    assert c.wait(30) == 137
    until(lambda: b"populated 0" in open(os.path.join(unified, "cgroup.events"), "rb").read())
    c.delete()
    assert not os.path.exists(unified)


def test_a_failed_create_whose_delete_fails_too_leaves_no_cgroup(make_runtime, make_bundle, new_id, fakes_dir):
    env = {"PATH": os.environ["PATH"], "OCIRT_FAKE_FAIL": "create delete"}
    rt = make_runtime(runtime_path=os.path.join(fakes_dir, "runc-failing"), conmon_env=env)
    before = {d for h in hierarchies() for d in _dirs_below(h.mountpoint)}
    with pytest.raises(ocirt.ConmonError, match="create failed on purpose"):
        rt.create(new_id(), make_bundle("true"))
    rt.close()
    assert {d for h in hierarchies() for d in _dirs_below(h.mountpoint)} == before


def test_end_cgroup_ends_the_container_beside_conmon_too(create, make_bundle):
    c = create(make_bundle("sleep", "1000"))
    c.start()
    assert c._cgroup.container.pids() != []
    assert end_cgroup(c._cgroup, grace=0) == []
    assert c._cgroup.pids() == [] and c._cgroup.container.pids() == []


# -- pure cgroup v2, against a tree laid out like one ------------------------


def fake_v2(tmp_path, monkeypatch, own="/user.slice/session.scope", controllers="cpu io memory pids"):
    root = tmp_path / "cgroup"
    for level in ["", "user.slice", own.strip("/")]:
        d = root / level
        d.mkdir(parents=True, exist_ok=True)
        (d / "cgroup.controllers").write_text(controllers + "\n")
        (d / "cgroup.subtree_control").write_text("")
        (d / "cgroup.procs").write_text("")
    (root / own.strip("/") / "cgroup.procs").write_text("4242\n")  # the caller: holds a process
    monkeypatch.setattr(cgroupfs, "hierarchies", lambda: [Hierarchy(str(root), 2, frozenset(), own)])
    return root


def test_v2_parent_is_beside_the_callers_cgroup_with_controllers_enabled(tmp_path, monkeypatch):
    root = fake_v2(tmp_path, monkeypatch)
    manager = Cgroupfs()
    assert manager.base() == "/user.slice/ocirt"  # never the caller's own, which holds a process
    assert (root / "user.slice" / "cgroup.subtree_control").read_text() == "+cpu +io +memory +pids"


def test_v2_parent_that_holds_a_process_is_refused_naming_it(tmp_path, monkeypatch):
    root = fake_v2(tmp_path, monkeypatch)
    with pytest.raises(ocirt.CgroupError, match=r"session\.scope holds processes"):
        Cgroupfs("/user.slice/session.scope").check()
    assert (root / "user.slice" / "cgroup.subtree_control").read_text() == ""


def test_v2_controller_not_delegated_is_named_before_anything_is_made(tmp_path, monkeypatch):
    root = fake_v2(tmp_path, monkeypatch, controllers="cpu pids")
    manager = Cgroupfs()
    with pytest.raises(ocirt.CgroupError, match=r"the memory controller is not delegated to cgroup .*user\.slice"):
        manager.create("ocirt-conmon-x", "ocirt-x", needs=["memory"])
    assert not (root / "user.slice" / "ocirt").exists()


def test_stop_of_a_container_sharing_our_pid_namespace_uses_cgroup_kill(run, runtime, monkeypatch):
    c = run("sh", "-c", "sleep 1000 & sleep 1000 & wait", pid_ns=False)
    if "v2" not in c._cgroup.container.controllers:
        pytest.skip("no cgroup2 mount here")
    until(lambda: len(c._cgroup.container.pids()) == 3)
    commands = []
    run_steps = runtime.oci.run_steps
    monkeypatch.setattr(runtime.oci, "run_steps", lambda argv, *a, **kw: commands.append(argv) or run_steps(argv, *a, **kw))
    c.stop(0)
    assert c.state.exit_code == 137
    assert not any("kill" in argv for argv in commands)  # no runtime process: cgroup.kill ended all three
    until(lambda: c._cgroup.container.pids() == [], 10)  # the sleeps too, once they are through exiting


def test_the_parents_shared_by_two_cgroups_go_with_the_last_of_them(new_id):
    """Each manager stands for a process: its cgroups' parents stay while it
    is open, and go with the last cgroup of a closed one."""
    first_manager, second_manager = Cgroupfs(), Cgroupfs()
    levels = first_manager._layout_levels()  # below our own cgroup, up to the parent: ocirt's to remove
    before = {p for p in levels if os.path.isdir(p)}
    first = first_manager.create(f"ocirt-conmon-{new_id()}", "ocirt-a")
    second = second_manager.create(f"ocirt-conmon-{new_id()}", "ocirt-b")  # finds the parents made
    assert all(os.path.isdir(p) for p in levels)
    first.remove()
    first_manager.close()  # the parents above the second's directories stay
    held = [p for p in levels if any(d.startswith(p + "/") for d in second.dirs)]
    assert held and all(os.path.isdir(p) for p in held)
    second_manager.close()
    assert all(os.path.isdir(p) for p in held)  # still in use
    second.remove()  # it did not make them, but it is the last to go, its manager closed
    assert {p for p in levels if os.path.isdir(p)} == before


def test_an_open_manager_keeps_the_parents_for_its_next_cgroup(new_id):
    manager = Cgroupfs()
    levels = manager._layout_levels()
    before = {p for p in levels if os.path.isdir(p)}
    manager.create(f"ocirt-conmon-{new_id()}", "ocirt-a").remove()
    assert all(os.path.isdir(p) for p in levels)
    manager.close()
    assert {p for p in levels if os.path.isdir(p)} == before
    manager.close()  # again: nothing


CHURN = """
import sys
from ocirt.cgroups.cgroupfs import Cgroupfs
manager = Cgroupfs()
for i in range(int(sys.argv[2])):
    manager.create(f"ocirt-conmon-{sys.argv[1]}-{i}", f"ocirt-{sys.argv[1]}-{i}").remove()
"""


def test_processes_making_and_removing_cgroups_at_once_never_lose_a_parent(new_id):
    """Each create finds its parents, though other processes' removes take
    the same shared levels away whenever they are empty."""
    levels = Cgroupfs()._layout_levels()
    if not levels:
        pytest.skip("the parent is this process's own cgroup: no level is shared")
    before = {p for p in levels if os.path.isdir(p)}
    procs = [
        subprocess.Popen([sys.executable, "-c", CHURN, new_id(), "150"], stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    assert {p for p in levels if os.path.isdir(p)} == before
