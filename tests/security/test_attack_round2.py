"""The second attack round's findings (shared/reviews/attack-round-2.md),
each reproduced as the attack it describes, on real containers.

Each test fails on the code the round attacked (main at 76afe0e) and passes
once its finding is fixed at the cause.
"""

from __future__ import annotations

import os
import signal
import threading

import ocirt
from ocirt import ContainerStatus, Runtime, layout
from ocirt.layout import remove_tree

from ..cli_support import Ocirt
from ..observe import until

# -- M2: a container's deep tree made it unremovable ---------------------------

DEEP = 1500  # levels: past Python's recursion limit, and paths past PATH_MAX


def test_a_container_that_leaves_a_deep_tree_is_removed_and_rm_all_goes_on(ocirt: Ocirt):
    # Each round wraps the tree in a new top directory: the paths used stay short.
    made = f"cd / && mkdir d && ln -s / d/up && i=0 && while [ $i -lt {DEEP} ]; do mkdir n && mv d n/ && mv n d || exit 1; i=$((i+1)); done"
    ocirt.ok("run", "--name", "deep", "busybox", "sh", "-c", made)
    ocirt.ok("run", "-d", "--name", "bystander", "busybox", "sleep", "600")
    removed = ocirt("rm", "-f", "-a")
    assert removed.returncode == 0, removed.stderr
    assert "Traceback" not in removed.stderr
    assert ocirt.ok("ps", "-a", "-q") == ""


def test_remove_tree_never_follows_a_link_and_takes_any_depth(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    top = tmp_path / "top"
    path = str(top)
    os.mkdir(path)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(DEEP):  # past PATH_MAX: made relative to a descriptor
            os.mkdir("dddddddd", dir_fd=fd)
            below = os.open("dddddddd", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = below
            os.symlink(str(outside), "out", dir_fd=fd)
    finally:
        os.close(fd)
    os.symlink(str(outside), str(tmp_path / "top" / "linked"))
    assert remove_tree(path) is None
    assert not os.path.lexists(path)
    assert (outside / "keep").read_text() == "x"
    os.symlink(str(outside), path)  # the tree itself a link: the link goes, never its target
    assert remove_tree(path) is None
    assert not os.path.lexists(path) and (outside / "keep").exists()
    assert remove_tree(path) is None  # gone already


# -- M1: a Runtime that loaded a container before another restarted it -------


def test_a_restart_elsewhere_is_seen_as_the_new_run_not_as_a_dead_conmon(make_bundle, tmp_path):
    """Runtime `a` holds the first run's conmon and init; `b` restarts the
    container. `a`'s next look must take the new run's processes, not
    record the old conmon's exit as "conmon died" for every process."""
    root = str(tmp_path / "stored")
    a = Runtime.open(root)
    b = Runtime.open(root)
    try:
        c = a.create("restarted", make_bundle("sleep", "1000"))
        c.start()
        old_conmon = c.conmon_pid
        b.get("restarted").restart(timeout=0)
        listed = {x.id: x for x in a.list()}["restarted"]
        assert listed is c
        assert (c.state.status, c.state.exit_code, c.note) == (ContainerStatus.RUNNING, None, "")
        assert c.conmon_pid != old_conmon
        assert b.get("restarted").state.status is ContainerStatus.RUNNING  # nothing wrong was stored
        assert a.oci.state(c.id)["status"] == "running"
        c.stop(0)  # through the new run's processes
        assert c.state.exit_code == 137
        c.delete()
    finally:
        for rt in (a, b):
            for leftover in rt.list():
                leftover.delete(force=True)
            rt.close()


# -- M3: an exec the container keeps waiting held the container's lock -------


def test_stop_and_delete_do_not_wait_for_an_exec_the_container_keeps_waiting(runtime):
    """The container makes /etc/passwd a FIFO: the runtime's exec opens it
    and waits. stop and delete must go through at once (the exec then
    fails), not wait for the exec's 240 s."""
    c = runtime.run(["sh", "-c", "rm /etc/passwd && mkfifo /etc/passwd && echo ready && exec sleep 1000"], detach=True)
    c.wait_for_log("ready", timeout=30)
    failed = []

    def exec_it() -> None:
        try:
            c.exec(["true"], timeout=90)
        except ocirt.OcirtError as e:
            failed.append(e)

    execing = threading.Thread(target=exec_it)
    execing.start()
    try:
        until(lambda: len(c._cgroup.pids(below=True)) > 1, 30)  # the exec's conmon and runtime: waiting on the FIFO
        stopping = threading.Thread(target=c.stop, args=(0,))
        stopping.start()
        stopping.join(60)
        assert not stopping.is_alive(), "stop waited for the exec"
        execing.join(60)
        assert not execing.is_alive() and failed, "the exec did not fail once the container stopped"
        assert c.state.exit_code == 137
    finally:
        execing.join()
    c.delete()


# -- L2: stop racing pause ----------------------------------------------------


def test_a_container_paused_during_stops_grace_is_thawed_and_killed(runtime):
    c = runtime.run(["sh", "-c", "trap 'echo got TERM' TERM; echo ready; while :; do sleep 1; done"], detach=True)
    c.wait_for_log("ready", timeout=30)
    stopping = threading.Thread(target=c.stop, args=(3,))  # SIGTERM, ignored: SIGKILL after 3 s
    stopping.start()
    try:
        c.wait_for_log("got TERM", timeout=30)  # the grace has begun: stop holds no lock now
        c.pause()
    finally:
        stopping.join(60)
    assert not stopping.is_alive()
    assert (c.state.status, c.state.exit_code) == (ContainerStatus.STOPPED, 137)
    c.delete()


# -- L1: a manager killed in create; the next one finds conmon's cgroup ------


def test_a_run_rm_killed_in_create_leaves_no_cgroup_once_cleaned_up(ocirt: Ocirt, gate):
    """The record is made before conmon's cgroup and names it: conmon's exit
    command (run from inside that cgroup) and rm -f find it however the
    caller's own cgroup lies, and remove it."""
    manager = ocirt.popen("--runtime", gate.runtime("create"), "run", "-d", "--rm", "--name", "half", "busybox", "sleep", "1000")
    gate.reached("reached.main")
    os.kill(manager.pid, signal.SIGKILL)
    manager.wait()
    gate.release("main")  # the runtime goes on creating for a manager that is gone
    gate.reached("done.main")
    until(lambda: ocirt.ok("ps", "-a", "--format", "{{.Status}}").strip() != "Half-created", 30)
    ocirt("rm", "-f", "half")  # removed already by its exit command, or now: the leak check finds nothing either way
    assert ocirt.ok("ps", "-a", "-q") == ""


# -- L4: kills that left things behind ------------------------------------------


def test_a_foreground_run_rm_killed_still_has_its_container_removed_when_it_exits(ocirt: Ocirt, gate):
    """conmon's exit command is given to foreground --rm runs too: with the
    run gone (SIGKILL), it removes the container when the container exits."""
    run = ocirt.popen("run", "--rm", "--name", "fg", "-v", f"{gate.path}:/gate", "busybox", "sh", "-c", "touch /gate/up; read x < /gate/go")
    try:
        gate.reached("up")
        os.kill(run.pid, signal.SIGKILL)
    finally:
        run.wait()
    gate.release()  # the container exits now, its run gone
    until(lambda: ocirt.ok("ps", "-a", "-q") == "", 30)



def test_a_bundle_whose_maker_died_before_recording_it_is_removed_on_open(ocirt: Ocirt):
    """A process killed between writing a bundle (env and all) and
    recording its container left bundles/<id> that nothing listed. The next
    Runtime.open removes it, but never one a live process is still making."""
    bundles = os.path.join(ocirt.root, "bundles")
    orphan, being_made = os.path.join(bundles, "a" * 64), os.path.join(bundles, "b" * 64)
    for bundle in (orphan, being_made):
        os.makedirs(bundle)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            f.write('{"process": {"env": ["SECRET=1"]}}')
    with layout.making(being_made):
        ocirt.ok("ps", "-a")
        assert not os.path.exists(orphan)
        assert os.path.exists(os.path.join(being_made, "config.json"))
    ocirt.ok("ps", "-a")
    assert os.listdir(bundles) == []
