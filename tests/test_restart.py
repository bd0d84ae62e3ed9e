"""restart: the same container run again from its bundle, on real containers."""

from __future__ import annotations

import os
import shutil

import psutil
import pytest

import ocirt
from ocirt import ContainerStatus


def lines(c: ocirt.Container) -> list:
    return [r.text for r in c.logs()]


def test_restart_of_an_exited_container_runs_it_again_and_appends_to_its_log(run):
    c = run("sh", "-c", "echo ran; exit 3")
    assert c.wait(30) == 3
    first_pid, first_conmon = c.state.pid, c.conmon_pid
    c.restart()
    assert c.state.status in (ContainerStatus.RUNNING, ContainerStatus.STOPPED)
    assert (c.state.pid, c.conmon_pid) != (first_pid, first_conmon)
    assert c.wait(30) == 3
    assert lines(c) == ["ran", "ran"]
    c.delete()


def test_restart_of_a_running_container_stops_it_first(run):
    c = run("sleep", "1000")  # pid 1 of its namespace: only SIGKILL ends it
    old = psutil.Process(c.state.pid)
    c.restart(timeout=0)
    assert not old.is_running() or old.status() == psutil.STATUS_ZOMBIE
    assert c.state.status is ContainerStatus.RUNNING and c.state.exit_code is None
    assert c.pids() == [c.state.pid]  # the new init, in the new cgroup
    c.stop(0)
    assert c.state.exit_code == 137
    c.delete()


def test_restart_of_a_created_container_starts_it(create, make_bundle):
    c = create(make_bundle("sh", "-c", "echo once"))
    c.restart()
    assert c.wait(30) == 0
    assert lines(c) == ["once"]
    c.delete()


def test_restart_drops_the_previous_runs_exec_sessions(run):
    c = run("sleep", "1000")
    assert c.exec_run(["true"])[0] == 0
    assert len(c.exec_sessions()) == 1
    c.restart(timeout=0)
    assert c.exec_sessions() == []
    c.delete(force=True)


def test_restart_from_another_process_keeps_how_conmon_runs_it(make_bundle, tmp_path):
    """The launch options (here conmon's kill timer) are kept in the store: a
    Runtime that only loaded the container restarts it the same way."""
    root = str(tmp_path / "stored")
    first = ocirt.Runtime.open(root)
    try:
        c = first.create("restart-kept", make_bundle("sleep", "1000"), kill_after=1)
        c.start()
        assert c.wait(30) == -1
        other = ocirt.Runtime.open(root)
        try:
            again = other.get("restart-kept")
            assert again is not c
            again.restart()
            assert again.wait(30) == -1  # killed by conmon again: the timer came back with it
            again.delete()
        finally:
            other.close()
    finally:
        for leftover in first.list():
            leftover.delete(force=True)
        first.close()


def test_restart_of_an_auto_removed_container_is_refused(create, make_bundle):
    c = create(make_bundle("sleep", "1000"), auto_remove=True)
    with pytest.raises(ocirt.InvalidState, match="removed when it exits"):
        c.restart()
    assert c.state.status is ContainerStatus.CREATED
    c.delete(force=True)


def test_a_restart_that_cannot_launch_leaves_it_stopped_with_its_exit_code(create, make_bundle, rootfs, tmp_path):
    own_root = str(tmp_path / "root")
    shutil.copytree(rootfs, own_root, symlinks=True)
    c = create(make_bundle("sh", "-c", "exit 5", edit=lambda spec: spec.update(root={"path": own_root, "readonly": True})))
    c.start()
    assert c.wait(30) == 5
    os.rename(own_root, own_root + ".gone")
    with pytest.raises(ocirt.OcirtError):
        c.restart()
    assert (c.state.status, c.state.exit_code) == (ContainerStatus.STOPPED, 5)
    assert "restart failed" in c.note
    c.delete()  # and the leak check finds no conmon, cgroup or file of the failed launch
    assert not os.path.exists(c.log_path)
