"""The `ocirt` command line, as a subprocess, on real containers."""

from __future__ import annotations

import json
import os

import psutil
import pytest

from ocirt import native as _native

from .cli_support import Ocirt


def names(cli: Ocirt) -> list:
    return [c["Name"] for c in json.loads(cli.ok("ps", "-a", "--format", "json"))]


def test_run_rm_echo_hello_leaves_nothing(ocirt):
    proc = ocirt("run", "--rm", "--", "echo", "hello")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "hello\n", "")
    assert names(ocirt) == []
    run_dir = os.path.join(ocirt.root, "run")
    for d in ("containers", "exits", "socket"):
        assert os.listdir(os.path.join(run_dir, d)) == []
    assert os.listdir(os.path.join(ocirt.root, "bundles")) == []


def test_run_exit_code_and_streams(ocirt):
    proc = ocirt("run", "--rm", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")


def test_run_streams_output_while_running(ocirt):
    with ocirt.running("run", "--name", "streamer", "--", "sh", "-c", "echo first; exec sleep 1000") as run:
        assert run.stdout.readline() == "first\n"  # before the container has exited
        assert ocirt("ps", "--format", "json").stdout.count('"running"') == 1
        ocirt.ok("kill", "streamer")
        assert run.wait(60) == 137
    ocirt.ok("rm", "streamer")


def test_command_that_cannot_run(ocirt):
    missing = ocirt("run", "--rm", "--", "no-such-command")
    assert missing.returncode == 127 and "no-such-command" in missing.stderr
    denied = ocirt("run", "--rm", "--", "/etc/passwd")
    assert denied.returncode == 126 and "permission denied" in denied.stderr.lower()
    assert names(ocirt) == []


def test_detached_lifecycle_through_every_verb(ocirt):
    cid = ocirt.ok("run", "-d", "--name", "svc", "-e", "GREETING=hi", "--", "sleep", "1000").strip()
    assert len(cid) == 64
    assert ocirt.ok("ps").splitlines()[1].split()[:2] == [cid[:12], "svc"]
    assert ocirt.ok("exec", "-e", "X=1", "-w", "/tmp", "svc", "sh", "-c", 'echo "$GREETING $X $(pwd)"') == "hi 1 /tmp\n"
    assert ocirt("exec", "svc", "sh", "-c", "exit 4").returncode == 4
    ocirt.ok("pause", "svc")
    assert json.loads(ocirt.ok("inspect", "svc"))[0]["State"]["Status"] == "paused"
    ocirt.ok("unpause", cid[:8])  # a unique id prefix works too
    ocirt.ok("stop", "-t", "0", "svc")
    info = json.loads(ocirt.ok("inspect", cid))[0]
    assert (info["Name"], info["State"]["Status"], info["State"]["ExitCode"]) == ("svc", "stopped", 137)
    assert ocirt.ok("wait", "svc") == "137\n"
    assert ocirt.ok("ps") .splitlines()[1:] == []
    assert "Exited (137)" in ocirt.ok("ps", "-a")
    ocirt.ok("rm", "svc")
    assert names(ocirt) == []


def test_create_start_wait_logs(ocirt):
    ocirt.ok("create", "--name", "job", "--", "sh", "-c", "echo one; echo two >&2")
    assert json.loads(ocirt.ok("inspect", "job"))[0]["State"]["Status"] == "created"
    ocirt.ok("start", "job")
    assert ocirt.ok("wait", "job") == "0\n"
    logs = ocirt("logs", "job")
    assert (logs.stdout, logs.stderr) == ("one\n", "two\n")
    stamped = ocirt.ok("logs", "--timestamps", "job").split(" ", 1)
    assert stamped[0].startswith("20") and stamped[1] == "one\n"
    ocirt.ok("rm", "job")


def test_logs_follow_until_exit(ocirt):
    ocirt.ok("run", "-d", "--name", "talker", "--", "sh", "-c", "echo a; exec sleep 1000")
    with ocirt.running("logs", "-f", "talker") as follow:
        assert follow.stdout.readline() == "a\n"
        ocirt.ok("kill", "-s", "KILL", "talker")  # the follow must end with the container
        assert follow.wait(60) == 0
        assert follow.stdout.read() == ""
    ocirt.ok("rm", "talker")


def test_limits_user_and_read_only(ocirt):
    out = ocirt.ok(
        "run", "--rm", "--memory", "32m", "--pids-limit", "64", "--cpus", "0.5", "-u", "nobody", "--read-only",
        "--hostname", "box", "--", "sh", "-c", "id -u; hostname; touch /x 2>/dev/null || echo ro",
    )  # fmt: skip
    assert out.split() == ["65534", "box", "ro"]


def test_rootfs_and_bundle_options(ocirt, rootfs, make_bundle):
    assert ocirt.ok("run", "--rm", "--rootfs", rootfs, "--", "echo", "mine") == "mine\n"
    assert ocirt.ok("run", "--rm", "--bundle", make_bundle("echo", "bundled")) == "bundled\n"


@pytest.mark.parametrize(
    "args, words",
    [
        (["stop", "nope"], "no container named 'nope'"),
        (["run", "--memory", "lots", "--", "true"], "invalid size 'lots'"),
        (["run", "--pids-limit", "-1", "--", "true"], "must be positive"),
        (["run", "--cpus", "0", "--", "true"], "must be positive"),
        (["run", "--rootfs", "/no/such/dir", "--", "true"], "/no/such/dir"),
        (["run", "--name", "bad/name", "--", "true"], "invalid container name"),
        (["run", "-e", "=x", "--", "true"], "invalid environment variable"),
        (["kill", "-s", "NOPE", "x"], "unknown signal"),
        (["run"], "a command is needed"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_125_with_one_clear_line(ocirt, args, words):
    proc = ocirt(*args)
    assert proc.returncode == 125
    assert words in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert names(ocirt) == []


def test_taken_name(ocirt):
    ocirt.ok("create", "--name", "dup", "--", "true")
    proc = ocirt("create", "--name", "dup", "--", "true")
    assert proc.returncode == 125 and "dup" in proc.stderr and "exists" in proc.stderr
    assert names(ocirt) == ["dup"]
    ocirt.ok("rm", "dup")


def test_debug_log_level_shows_the_traceback(ocirt):
    proc = ocirt("--log-level", "debug", "stop", "nope")
    assert proc.returncode == 125 and "Traceback" in proc.stderr


def test_version(ocirt):
    assert ocirt.ok("version").startswith("ocirt version ")


def test_detached_rm_is_removed_by_conmons_exit_command(ocirt):
    cid = ocirt.ok("run", "-d", "--rm", "--name", "brief", "--", "sleep", "1000").strip()
    conmon = json.loads(ocirt.ok("inspect", "brief"))[0]["State"]["ConmonPid"]
    ocirt.ok("kill", "brief")
    assert _native.wait_pids([conmon], 60) == []  # conmon ran the cleanup before it exited
    # The cleanup, detached from conmon, is now our (subreaper's) child.
    cleanups = []
    for p in psutil.Process().children():
        try:
            if "cleanup" in p.cmdline():
                cleanups.append(p.pid)
        except psutil.ZombieProcess:
            pass  # a conmon, done
    assert _native.wait_pids(cleanups, 60) == []
    assert names(ocirt) == []
    assert not os.path.exists(os.path.join(ocirt.root, "run", "containers", cid))
    assert not os.path.exists(os.path.join(ocirt.root, "bundles", cid))


def test_exec_streams_output_while_running(ocirt):
    ocirt.ok("run", "-d", "--name", "host", "--", "sleep", "1000")
    with ocirt.running("exec", "host", "sh", "-c", "echo first; echo oops >&2; exec sleep 1000") as run:
        assert run.stdout.readline() == "first\n"  # while the exec still runs
        assert run.stderr.readline() == "oops\n"
        ocirt.ok("stop", "-t", "0", "host")
        assert run.wait(60) == 137
    ocirt.ok("rm", "host")


def test_a_long_stop_does_not_lock_out_a_kill(ocirt):
    ocirt.ok("run", "-d", "--name", "stubborn", "--", "sleep", "1000")  # pid 1: ignores SIGTERM
    with ocirt.running("stop", "-t", "1000", "stubborn") as stopper:
        ocirt.ok("kill", "stubborn")  # would wait out the stop's 1000 s if the stop held the lock
        assert stopper.wait(60) == 0 and stopper.stdout.read() == "stubborn\n"
    assert json.loads(ocirt.ok("inspect", "stubborn"))[0]["State"]["ExitCode"] == 137
    ocirt.ok("rm", "stubborn")
