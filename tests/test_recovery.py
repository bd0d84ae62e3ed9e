"""A managing process SIGKILLed in each phase: the next one reconciles.

Synchronisation is through files, never sleeps: a gated runtime (runc
behind a FIFO) or a container writing into a bind-mounted gate directory
says when the manager is where it should die.
"""

from __future__ import annotations

import json
import os
import signal
import time

from ocirt import native as _native
from ocirt.logs import parse_time

from .cli_support import Ocirt, reap_orphans
from .gates import GATE_TIMEOUT


def kill(proc) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def state(cli: Ocirt, name: str) -> dict:
    return json.loads(cli.ok("inspect", name))[0]["State"]


def test_killed_in_create_leaves_a_half_created_container_rm_f_removes(ocirt, gate):
    manager = ocirt.popen("--runtime", gate.runtime("create"), "create", "--name", "half", "busybox", "sleep", "1000")
    gate.reached("reached.main")
    kill(manager)
    gate.release("main")  # the runtime goes on creating for a manager that is gone
    st = state(ocirt, "half")
    assert st["Status"] == "configured" and "half-created" in st["Note"]
    assert "Half-created" in ocirt.ok("ps", "-a")
    assert ocirt("rm", "half").returncode == 125  # needs -f
    ocirt.ok("rm", "-f", "half")


def test_killed_in_start_shows_running(ocirt, gate):
    ocirt.ok("create", "--name", "s", "busybox", "sleep", "1000")
    manager = ocirt.popen("--runtime", gate.runtime("start"), "start", "s")
    gate.reached("reached.main")
    kill(manager)
    gate.release("main")
    gate.reached("done.main")  # the runtime started it for a manager that is gone
    st = state(ocirt, "s")
    assert st["Status"] == "running" and st["StartedAt"] != "0001-01-01T00:00:00Z"
    ocirt.ok("stop", "-t", "0", "s")
    assert state(ocirt, "s")["ExitCode"] == 137
    ocirt.ok("rm", "s")


def test_killed_in_stop_leaves_it_running_then_stop_records_once(ocirt, gate, make_bundle):
    bundle = make_bundle("sh", "-c", "trap 'touch /gate/term' TERM; while :; do sleep 1; done", edit=gate.mount)
    ocirt.ok("run", "-d", "--name", "t", "--bundle", bundle)
    manager = ocirt.popen("stop", "-t", "1000", "t")
    gate.reached("term")  # the manager signalled and is waiting
    kill(manager)
    assert state(ocirt, "t")["Status"] == "running"
    ocirt.ok("stop", "-t", "0", "t")
    st = state(ocirt, "t")
    assert (st["Status"], st["ExitCode"]) == ("exited", 137)
    ocirt.ok("rm", "t")


def test_killed_in_exec_keeps_the_container_and_rm_f_ends_all(ocirt, gate, make_bundle):
    ocirt.ok("run", "-d", "--name", "e", "--bundle", make_bundle("sleep", "1000", edit=gate.mount))
    manager = ocirt.popen("exec", "e", "sh", "-c", "touch /gate/exec; exec sleep 1000")
    gate.reached("exec")
    wait_recorded_session(ocirt, "e")
    kill(manager)
    assert state(ocirt, "e")["Status"] == "running"
    ocirt.ok("rm", "-f", "e")


def test_an_exec_whose_caller_is_killed_still_has_its_exit_code_recorded(ocirt, gate, make_bundle):
    cid = ocirt.ok("run", "-d", "--name", "e", "--bundle", make_bundle("sleep", "1000", edit=gate.mount)).strip()
    manager = ocirt.popen("exec", "e", "sh", "-c", "touch /gate/exec; read x < /gate/go; exit 5")
    gate.reached("exec")
    sid = wait_recorded_session(ocirt, "e")
    kill(manager)
    gate.release()  # the process exits now, with nobody waiting for it but its conmon
    exit_dir = os.path.join(ocirt.root, "run", "containers", cid, "exec", sid, "exit")
    assert _native.wait_file(exit_dir, cid, GATE_TIMEOUT)
    [session] = json.loads(ocirt.ok("inspect", "e"))[0]["ExecSessions"]
    assert (session["ID"], session["Running"], session["ExitCode"]) == (sid, False, 5)
    assert session["Command"] == ["sh", "-c", "touch /gate/exec; read x < /gate/go; exit 5"]
    assert parse_time(session["StartedAt"]) <= parse_time(session["FinishedAt"])
    ocirt.ok("rm", "-f", "e")


def wait_recorded_session(ocirt, name: str) -> str:
    """The id of the first exec session of container `name`, once recorded.

    The manager holds the database open (so its WAL exists) until it has
    recorded the session: wait for that record, on the WAL's writes."""
    wal = os.path.join(ocirt.root, "state.db-wal")
    deadline = time.monotonic() + GATE_TIMEOUT
    while not json.loads(ocirt.ok("inspect", name))[0]["ExecIDs"]:
        size = os.stat(wal).st_size  # after inspect, which writes too
        assert time.monotonic() < deadline, "the exec session was never recorded"
        _native.wait_change(wal, max(0.0, deadline - time.monotonic()), known_size=size)
    return json.loads(ocirt.ok("inspect", name))[0]["ExecIDs"][0]


def test_killed_in_delete_then_exit_code_from_exit_file(ocirt, gate):
    ocirt.ok("run", "-d", "--name", "d", "busybox", "sleep", "1000")
    manager = ocirt.popen("--runtime", gate.runtime("delete"), "rm", "-f", "d")
    gate.reached("reached.main")
    kill(manager)
    gate.release("main")
    gate.reached("done.main")  # the runtime killed and deleted it; nobody recorded that
    st = state(ocirt, "d")
    assert (st["Status"], st["ExitCode"], st["Note"]) == ("exited", 137, "")
    ocirt.ok("rm", "-f", "d")
    assert ocirt("inspect", "d").returncode == 125


def test_killed_in_pause_shows_paused(ocirt, gate):
    ocirt.ok("run", "-d", "--name", "p", "busybox", "sleep", "1000")
    manager = ocirt.popen("--runtime", gate.runtime("pause"), "pause", "p")
    gate.reached("reached.main")
    kill(manager)
    gate.release("main")
    gate.reached("done.main")
    assert state(ocirt, "p")["Status"] == "paused"
    ocirt.ok("unpause", "p")
    assert state(ocirt, "p")["Status"] == "running"
    ocirt.ok("rm", "-f", "p")


def test_exit_while_no_manager_is_read_from_the_exit_file(ocirt, gate, make_bundle):
    bundle = make_bundle("sh", "-c", "touch /gate/up; read x < /gate/go; exit 5", edit=gate.mount)
    manager = ocirt.popen("run", "--name", "x", "--bundle", bundle)
    gate.reached("up")  # running, its manager attached and about to wait
    kill(manager)
    assert state(ocirt, "x")["Status"] == "running"
    gate.release()
    assert ocirt.ok("wait", "x") == "5\n"
    st = state(ocirt, "x")
    assert (st["Status"], st["ExitCode"]) == ("exited", 5)
    assert "Exited (5)" in ocirt.ok("ps", "-a")
    ocirt.ok("rm", "x")


def test_a_container_that_outlives_its_conmon_runs_on_until_stopped(ocirt):
    """conmon SIGKILLed under a running container: the runtime is asked, so
    ps shows it running (with a note), stop ends it for real (its exit code
    unknown: -1), wait then fails at once, and a plain rm removes it."""
    ocirt.ok("run", "-d", "--name", "orphan", "busybox", "sleep", "1000")
    st = state(ocirt, "orphan")
    conmon, init = st["ConmonPid"], st["Pid"]
    fd = _native.pidfd_open(conmon)
    try:
        _native.pidfd_send_signal(fd, signal.SIGKILL)
        assert _native.wait_pids([conmon], 30) == []
    finally:
        os.close(fd)
    reap_orphans()
    st = state(ocirt, "orphan")
    assert (st["Status"], st["ExitCode"]) == ("running", 0) and "conmon died" in st["Note"]
    assert "Up" in ocirt.ok("ps", "-a")
    init_fd = _native.pidfd_open(init)
    try:
        ocirt.ok("stop", "-t", "0", "orphan")
        assert _native.wait_pids([init], 0) == []  # stop returned once the container's process was gone
    finally:
        os.close(init_fd)
    st = state(ocirt, "orphan")
    assert (st["Status"], st["ExitCode"]) == ("exited", -1) and "conmon died" in st["Note"]
    waited = ocirt("wait", "orphan")  # an error, at once: never a hang
    assert waited.returncode == 125 and "conmon" in waited.stderr and "died" in waited.stderr
    ocirt.ok("rm", "orphan")
