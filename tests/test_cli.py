"""The `ocirt` command line, as a subprocess, on real containers."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

import psutil
import pytest

import ocirt as ocirt_lib
from ocirt import native as _native
from ocirt.cgroups import hierarchies
from ocirt.cli import build_parser
from ocirt.logs import parse_time

from .cli_support import Ocirt
from .gates import Gate


def names(cli: Ocirt) -> list:
    return [c["Names"][0] for c in json.loads(cli.ok("ps", "-a", "--format", "json"))]


def test_run_rm_echo_hello_leaves_nothing(ocirt):
    proc = ocirt("run", "--rm", "busybox", "echo", "hello")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "hello\n", "")
    assert names(ocirt) == []
    run_dir = os.path.join(ocirt.root, "run")
    for d in ("containers", "exits", "socket"):
        assert os.listdir(os.path.join(run_dir, d)) == []
    assert os.listdir(os.path.join(ocirt.root, "bundles")) == []


def test_output_is_flushed_before_the_quick_exit_and_a_gone_reader_is_no_error(ocirt):
    # ps writes its table through a buffer that only the script's final flush empties.
    made = ocirt.ok("create", "--name", "flushed", "busybox", "true").strip()
    try:
        assert ocirt.ok("ps", "-a", "--format", "{{.ID}} {{.Names}}") == f"{made[:12]} flushed\n"
        read_end, write_end = os.pipe()
        os.close(read_end)  # `ocirt ps | head -0`: the reader is gone before anything is written
        try:
            proc = subprocess.run(ocirt.argv("ps", "-a"), stdout=write_end, stderr=subprocess.PIPE, env=ocirt.env, timeout=120)
        finally:
            os.close(write_end)
        assert (proc.returncode, proc.stderr) == (0, b"")
    finally:
        ocirt.ok("rm", "flushed")


def test_run_exit_code_and_streams(ocirt):
    proc = ocirt("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")


def test_run_i_sends_stdin_to_its_end_and_megabytes_of_binary_round_trip(ocirt):
    proc = ocirt("run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo done", input="hello\n")
    assert (proc.returncode, proc.stdout) == (0, "hello\ndone\n")
    data = os.urandom(4 << 20)  # far more than the socket buffers, every byte value, both ways
    proc = subprocess.run(ocirt.argv("run", "--rm", "-i", "busybox", "cat"), input=data, capture_output=True, env=ocirt.env, timeout=120)
    assert (proc.returncode, len(proc.stdout), proc.stdout == data) == (0, len(data), True)
    assert ocirt("run", "--rm", "busybox", "cat", input="not sent\n").stdout == ""  # without -i: no stdin
    assert names(ocirt) == []


def test_stdout_and_stderr_stay_apart_each_in_its_order(ocirt):
    script = "i=0; while [ $i -lt 2000 ]; do i=$((i+1)); echo out$i; echo err$i >&2; done"
    proc = ocirt("run", "--rm", "busybox", "sh", "-c", script)
    assert proc.returncode == 0
    assert proc.stdout == "".join(f"out{i}\n" for i in range(1, 2001))
    assert proc.stderr == "".join(f"err{i}\n" for i in range(1, 2001))


def test_run_i_with_d_is_refused(ocirt):
    proc = ocirt("run", "-i", "-d", "busybox", "cat")
    assert proc.returncode == 125 and "not with -d" in proc.stderr
    assert names(ocirt) == []


def test_run_streams_output_while_running(ocirt):
    with ocirt.running("run", "--name", "streamer", "busybox", "sh", "-c", "echo first; exec sleep 1000") as run:
        assert run.stdout.readline() == "first\n"  # before the container has exited
        assert ocirt("ps", "--format", "json").stdout.count('"running"') == 1
        ocirt.ok("kill", "streamer")
        assert run.wait(60) == 137
    ocirt.ok("rm", "streamer")


def test_run_forwards_sigterm_to_the_container(ocirt, tmp_path, make_bundle):
    gate = Gate(tmp_path / "gate")
    bundle = make_bundle("sh", "-c", "trap 'exit 3' TERM; touch /gate/up; while :; do sleep 1; done", edit=gate.mount)
    with ocirt.running("run", "--rm", "--bundle", bundle) as run:
        gate.reached("up")  # the trap is set and ocirt is attached
        run.send_signal(signal.SIGTERM)
        assert run.wait(60) == 3
    assert names(ocirt) == []


def test_command_that_cannot_run(ocirt):
    missing = ocirt("run", "--rm", "busybox", "no-such-command")
    assert missing.returncode == 127 and "no-such-command" in missing.stderr
    denied = ocirt("run", "--rm", "busybox", "/etc/passwd")
    assert denied.returncode == 126 and "permission denied" in denied.stderr.lower()
    assert names(ocirt) == []


def test_detached_lifecycle_through_every_verb(ocirt):
    cid = ocirt.ok("run", "-d", "--name", "svc", "-e", "GREETING=hi", "busybox", "sleep", "1000").strip()
    assert len(cid) == 64
    row = ocirt.ok("ps").splitlines()[1].split()
    assert (row[0], row[-1]) == (cid[:12], "svc")  # podman's columns: the id first, the names last
    assert ocirt.ok("exec", "-e", "X=1", "-w", "/tmp", "svc", "sh", "-c", 'echo "$GREETING $X $(pwd)"') == "hi 1 /tmp\n"
    assert ocirt("exec", "svc", "sh", "-c", "exit 4").returncode == 4
    ocirt.ok("pause", "svc")
    assert json.loads(ocirt.ok("inspect", "svc"))[0]["State"]["Status"] == "paused"
    ocirt.ok("unpause", cid[:8])  # a unique id prefix works too
    ocirt.ok("stop", "-t", "0", "svc")
    info = json.loads(ocirt.ok("inspect", cid))[0]
    assert (info["Name"], info["State"]["Status"], info["State"]["ExitCode"]) == ("svc", "exited", 137)
    assert ocirt.ok("wait", "svc") == "137\n"
    assert ocirt.ok("ps") .splitlines()[1:] == []
    assert "Exited (137)" in ocirt.ok("ps", "-a")
    ocirt.ok("rm", "svc")
    assert names(ocirt) == []


def test_create_start_wait_logs(ocirt):
    ocirt.ok("create", "--name", "job", "busybox", "sh", "-c", "echo one; echo two >&2")
    assert json.loads(ocirt.ok("inspect", "job"))[0]["State"]["Status"] == "created"
    ocirt.ok("start", "job")
    assert ocirt.ok("wait", "job") == "0\n"
    logs = ocirt("logs", "job")
    assert (logs.stdout, logs.stderr) == ("one\n", "two\n")
    stamped = ocirt.ok("logs", "--timestamps", "job").split(" ", 1)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", stamped[0])  # RFC3339Nano in UTC, as podman
    started = parse_time(json.loads(ocirt.ok("inspect", "job"))[0]["State"]["StartedAt"])  # any number of fraction digits
    assert started <= parse_time(stamped[0]) <= datetime.now(timezone.utc)
    assert stamped[1] == "one\n"
    ocirt.ok("rm", "job")


def test_logs_tail_since_and_until(ocirt):
    ocirt.ok("run", "--name", "counted", "busybox", "seq", "1", "5")
    assert ocirt.ok("logs", "--tail", "2", "counted") == "4\n5\n"
    assert ocirt.ok("logs", "-n", "0", "counted") == ""
    assert ocirt.ok("logs", "--tail", "-1", "counted") == ocirt.ok("logs", "counted") == "1\n2\n3\n4\n5\n"
    assert ocirt.ok("logs", "--since", "10m", "--until", "2099-01-01", "counted") == "1\n2\n3\n4\n5\n"
    assert ocirt.ok("logs", "--until", "10m", "counted") == "1\n2\n3\n4\n5\n"  # a duration is ahead of now, as podman
    assert ocirt.ok("logs", "--until", "2000-01-01", "counted") == ""
    assert ocirt.ok("logs", "--since", str(int(time.time()) + 3600), "counted") == ""
    for args, words in [
        (["--since", "soon"], "argument --since: not a time: 'soon'"),
        (["--tail", "x"], "argument -n/--tail: not a whole number: 'x'"),
    ]:
        proc = ocirt("logs", *args, "counted")
        assert (proc.returncode, proc.stdout) == (125, "") and words in proc.stderr
    ocirt.ok("rm", "counted")


def test_logs_follow_until_exit(ocirt):
    ocirt.ok("run", "-d", "--name", "talker", "busybox", "sh", "-c", "echo a; echo b; exec sleep 1000")
    with ocirt.running("logs", "-f", "talker") as follow:
        assert follow.stdout.readline() == "a\n"
        assert follow.stdout.readline() == "b\n"
    with ocirt.running("logs", "-f", "--tail", "1", "talker") as follow:
        assert follow.stdout.readline() == "b\n"  # the last line so far, then what comes
        ocirt.ok("kill", "-s", "KILL", "talker")  # the follow must end with the container
        assert follow.wait(60) == 0
        assert follow.stdout.read() == ""
    ocirt.ok("rm", "talker")


def test_limits_land_in_the_containers_cgroups(ocirt):
    ocirt.ok("run", "-d", "--name", "lim", "--memory", "32m", "--pids-limit", "64", "--cpus", "0.5", "busybox", "sleep", "1000")
    pid = json.loads(ocirt.ok("inspect", "lim"))[0]["State"]["Pid"]
    v1 = {c for h in hierarchies() if h.version == 1 for c in h.controllers}
    if "memory" in v1:
        assert cgroup_file(pid, "memory", "memory.limit_in_bytes") == "33554432"
        assert cgroup_file(pid, "pids", "pids.max") == "64"
        assert (cgroup_file(pid, "cpu", "cpu.cfs_quota_us"), cgroup_file(pid, "cpu", "cpu.cfs_period_us")) == ("50000", "100000")
    else:
        assert cgroup_file(pid, "", "memory.max") == "33554432"
        assert cgroup_file(pid, "", "pids.max") == "64"
        assert cgroup_file(pid, "", "cpu.max") == "50000 100000"
    ocirt.ok("rm", "-f", "lim")


def cgroup_file(pid: int, controller: str, name: str) -> str:
    """A file of the cgroup `pid` is in, in the hierarchy of `controller` ("" for cgroup v2)."""
    with open(f"/proc/{pid}/cgroup") as f:
        paths = {frozenset(filter(None, names.split(","))): path for _, names, path in (line.rstrip("\n").split(":", 2) for line in f)}
    h = next(h for h in hierarchies() if ((controller in h.controllers) if controller else h.version == 2))
    with open(os.path.join(h.mountpoint, paths[h.controllers].lstrip("/"), name)) as f:
        return f.read().strip()


def test_user_hostname_read_only_and_workdir(ocirt):
    out = ocirt.ok(
        "run", "--rm", "-u", "nobody", "--read-only", "--hostname", "box", "-w", "/tmp",
        "busybox", "sh", "-c", "id -u; hostname; pwd; touch /x 2>/dev/null || echo ro",
    )  # fmt: skip
    assert out.split() == ["65534", "box", "/tmp", "ro"]


def test_rootfs_and_bundle_options(ocirt, rootfs, make_bundle):
    assert ocirt.ok("run", "--rm", "--rootfs", rootfs, "--", "echo", "mine") == "mine\n"
    assert ocirt.ok("run", "--rm", "--bundle", make_bundle("echo", "bundled")) == "bundled\n"


@pytest.mark.parametrize(
    "args, words",
    [
        (["stop", "nope"], "no container named 'nope'"),
        (["run", "--memory", "lots", "busybox", "true"], "invalid size 'lots'"),
        (["run", "--pids-limit", "0", "busybox", "true"], "must be positive"),
        (["run", "--cpus", "0", "busybox", "true"], "must be positive"),
        (["run", "--rootfs", "/no/such/dir", "--", "true"], "/no/such/dir"),
        (["run", "--name", "bad/name", "busybox", "true"], "invalid container name"),
        (["run", "-e", "=x", "busybox", "true"], "invalid environment variable"),
        (["kill", "-s", "NOPE", "x"], "unknown signal"),
        (["run"], "an image is needed"),
        (["run", "--rootfs", "/"], "a command is needed"),
        (["run", "--pull", "sometimes", "busybox", "true"], "invalid choice"),
        (["run", "--pull", "never", "127.0.0.1:1/nope:1", "true"], "is not in the store, and the pull policy is never"),
        (["run", "Not/Valid", "true"], "not a valid image name"),
        (["run", "--rootfs", "/", "--bundle", "/", "--", "true"], "not allowed with"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_125_with_one_clear_line(ocirt, args, words):
    proc = ocirt(*args)
    assert proc.returncode == 125
    assert words in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert names(ocirt) == []


def test_an_empty_rootfs_or_bundle_is_refused_not_taken_for_the_current_directory(ocirt, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    for option in ("--rootfs", "--bundle"):
        argv = ocirt.argv("run", "--rm", option, "", "busybox", "true")
        proc = subprocess.run(argv, cwd=cwd, env=ocirt.env, capture_output=True, text=True, timeout=120)
        assert (proc.returncode, proc.stderr) == (125, f"Error: {option} must be a non-empty path, not ''\n")
    assert os.listdir(cwd) == []  # runc made no dev, proc, sys or tmp here
    assert names(ocirt) == []


def test_env_files_are_regular_files_of_bounded_size(ocirt, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # nobody ever writes it: reading it would block
    big = tmp_path / "big"
    big.write_bytes(b"A=" + b"x" * (1 << 20) + b"\n")
    bad_text, nul = tmp_path / "latin1", tmp_path / "nul"
    bad_text.write_bytes(b"A=caf\xe9\n")
    nul.write_bytes(b"A=x\0y\n")
    for path, words in [
        (fifo, "not a regular file"), ("/dev/zero", "not a regular file"), (big, f"larger than {1 << 20} bytes"),
        (bad_text, "not UTF-8 text"), (nul, "environment variable 'A'"),
    ]:  # fmt: skip
        proc = ocirt("run", "--rm", "--env-file", str(path), "busybox", "true", timeout=60)
        assert (proc.returncode, words in proc.stderr) == (125, True), (path, proc.stderr)
    assert names(ocirt) == []


def test_e_with_a_name_not_set_here_is_skipped_as_podman_does(ocirt):
    ocirt.env["OCIRT_TEST_SET"] = "here"
    ocirt.env.pop("OCIRT_TEST_UNSET", None)
    script = "echo ${OCIRT_TEST_SET-unset} ${OCIRT_TEST_UNSET-unset}"
    assert ocirt.ok("run", "--rm", "-e", "OCIRT_TEST_SET", "-e", "OCIRT_TEST_UNSET", "busybox", "sh", "-c", script) == "here unset\n"


def test_update_errors_name_the_options_given(ocirt):
    for args, message in [
        (["--memory-swap", "100"], "--memory-swap (100) is memory plus swap: it needs a memory limit no larger than it"),
        (["--cpuset-cpus", "x"], "--cpuset-cpus must list CPUs or memory nodes like '0-2,4', not 'x'"),
        (["--cpus", "1", "--cpu-quota", "2000"], "--cpus and --cpu-quota both set the CPU quota: give one"),
        (["--cpu-shares", "1"], "--cpu-shares must be a whole number from 2 to 262144, not 1"),
    ]:
        proc = ocirt("update", *args, "any")  # refused before any container is looked for
        assert (proc.returncode, proc.stderr) == (125, f"Error: ocirt update: {message}\n")


def test_taken_name(ocirt):
    ocirt.ok("create", "--name", "dup", "busybox", "true")
    proc = ocirt("create", "--name", "dup", "busybox", "true")
    assert proc.returncode == 125 and "dup" in proc.stderr and "exists" in proc.stderr
    assert names(ocirt) == ["dup"]
    ocirt.ok("rm", "dup")


def test_debug_log_level_shows_the_traceback(ocirt):
    proc = ocirt("--log-level", "debug", "stop", "nope")
    assert proc.returncode == 125 and "Traceback" in proc.stderr


def test_version(ocirt):
    assert ocirt.ok("version") == f"ocirt version {ocirt_lib.__version__} ({_native.BACKEND} backend)\n"


def test_the_installed_script_runs_the_command_line(ocirt):
    script = os.path.join(os.path.dirname(sys.executable), "ocirt")  # where pip puts the console script
    if not os.access(script, os.X_OK):
        pytest.skip(f"ocirt is not installed beside {sys.executable}")
    proc = subprocess.run([script, "version"], env=ocirt.env, capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, ocirt.ok("version"), "")
    missing = subprocess.run([script, "rm", "no-such"], env=ocirt.env, capture_output=True, text=True, timeout=60)
    assert (missing.returncode, missing.stderr) == (1, ocirt("rm", "no-such").stderr)  # podman's code for a missing container
    ran = subprocess.run([script, "run", "--rm", "busybox", "echo", "hi"], env=ocirt.env, capture_output=True, text=True, timeout=60)
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, "hi\n", "")  # every subpackage a run needs is installed


def test_every_subpackage_is_in_the_wheel():
    """pyproject names the packages the wheel holds: a new one left out works from the tree, and fails installed."""
    import tomllib

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(here, "pyproject.toml"), "rb") as f:
        listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
    found = {os.path.relpath(d, here).replace(os.sep, ".") for d, _, files in os.walk(os.path.join(here, "ocirt")) if "__init__.py" in files}
    assert found == listed


def test_several_names_per_verb_each_reported(ocirt):
    ocirt.ok("run", "-d", "--name", "one", "busybox", "sleep", "1000")
    ocirt.ok("run", "-d", "--name", "two", "busybox", "sleep", "1000")
    proc = ocirt("stop", "-t", "0", "one", "nope", "two")
    assert proc.returncode == 125
    assert proc.stdout == "one\ntwo\n" and proc.stderr == "Error: nope: no container named 'nope' or with an id starting with it\n"
    assert [c["State"]["Status"] for c in json.loads(ocirt.ok("inspect", "one", "two"))] == ["exited", "exited"]
    ocirt.ok("rm", "one", "two")


def test_exec_as_another_user(ocirt):
    ocirt.ok("run", "-d", "--name", "u", "busybox", "sleep", "1000")
    assert ocirt.ok("exec", "-u", "nobody", "u", "id", "-u") == "65534\n"
    ocirt.ok("rm", "-f", "u")


def test_exec_i_sends_stdin_to_its_end(ocirt):
    ocirt.ok("run", "-d", "--name", "ei", "busybox", "sleep", "1000")
    proc = ocirt("exec", "-i", "ei", "sh", "-c", "cat; echo done", input="one\ntwo\n")
    assert (proc.returncode, proc.stdout) == (0, "one\ntwo\ndone\n")
    assert ocirt("exec", "ei", "cat", input="not sent\n").stdout == ""  # without -i: no stdin
    ocirt.ok("rm", "-f", "ei")


def test_root_flag_keeps_containers_apart(ocirt, tmp_path):
    other = str(tmp_path / "other-root")
    ocirt.ok("--root", other, "run", "-d", "--name", "elsewhere", "busybox", "sleep", "1000")
    assert names(ocirt) == []
    assert [c["Names"][0] for c in json.loads(ocirt.ok("--root", other, "ps", "-a", "--format", "json"))] == ["elsewhere"]
    ocirt.ok("--root", other, "rm", "-f", "elsewhere")
    assert os.path.exists(os.path.join(other, "state.db"))


def test_create_timeout_ends_a_hanging_create(ocirt, fakes_dir):
    proc = ocirt("--conmon", os.path.join(fakes_dir, "conmon-hang"), "run", "--rm", "--create-timeout", "0.5", "busybox", "true")
    assert proc.returncode == 125 and "timed out waiting for conmon" in proc.stderr
    assert names(ocirt) == []


def test_detached_rm_is_removed_by_conmons_exit_command(ocirt):
    cid = ocirt.ok("run", "-d", "--rm", "--name", "brief", "busybox", "sleep", "1000").strip()
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


def test_rm_f_of_a_detached_rm_container_leaves_its_exit_command_nothing_to_wait_for(ocirt):
    ocirt.ok("run", "-d", "--rm", "--name", "brief", "busybox", "sleep", "1000")
    conmon = json.loads(ocirt.ok("inspect", "brief"))[0]["State"]["ConmonPid"]
    ocirt.ok("rm", "-f", "brief")
    # conmon ended under this subreaper: by itself once its exit command stepped
    # aside, not SIGKILLed by rm after waiting for a cleanup that waited for rm.
    ended = os.waitid(os.P_PID, conmon, os.WEXITED)
    assert ended is not None and ended.si_code == os.CLD_EXITED, ended
    assert names(ocirt) == []


def test_exec_streams_output_while_running(ocirt):
    ocirt.ok("run", "-d", "--name", "host", "busybox", "sleep", "1000")
    with ocirt.running("exec", "host", "sh", "-c", "echo first; echo oops >&2; exec sleep 1000") as run:
        assert run.stdout.readline() == "first\n"  # while the exec still runs
        assert run.stderr.readline() == "oops\n"
        ocirt.ok("stop", "-t", "0", "host")
        assert run.wait(60) == 137
    ocirt.ok("rm", "host")


def test_a_long_stop_does_not_lock_out_a_kill(ocirt, tmp_path, make_bundle):
    gate = Gate(tmp_path / "gate")
    bundle = make_bundle("sh", "-c", "trap 'touch /gate/term' TERM; while :; do sleep 1; done", edit=gate.mount)
    ocirt.ok("run", "-d", "--name", "stubborn", "--bundle", bundle)
    with ocirt.running("stop", "-t", "1000", "stubborn") as stopper:
        gate.reached("term")  # the stop signalled and now waits its 1000 s
        ocirt.ok("kill", "stubborn")  # would wait that out if the stop held the lock
        assert stopper.wait(60) == 0 and stopper.stdout.read() == "stubborn\n"
    assert json.loads(ocirt.ok("inspect", "stubborn"))[0]["State"]["ExitCode"] == 137
    ocirt.ok("rm", "stubborn")


def test_bench_reports_every_phase_and_no_leaks(ocirt):
    report = json.loads(ocirt.ok("bench", "-n", "6", "-c", "2", "--format", "json", "--", "sh", "-c", "exit 3"))
    assert report["count"] == 6 and report["failed"] == 0 and report["exit_codes"] == {"3": 6}
    assert set(report["phases"]) == {"spawn", "create", "start", "run", "record", "delete", "total"}
    assert all(p["n"] == 6 and 0 < p["p50"] <= p["p90"] <= p["p99"] <= p["max"] for p in report["phases"].values())
    assert report["leaks"] == {"runtime_state": 0, "run_files": 0, "cgroups": 0, "conmons": 0}
    assert names(ocirt) == []


def test_bench_in_a_warm_pool(ocirt):
    report = json.loads(ocirt.ok("bench", "--pool", "-n", "6", "-c", "2", "--format", "json", "--", "sh", "-c", "exit 3"))
    assert report["count"] == 6 and report["failed"] == 0 and report["exit_codes"] == {"3": 6}
    assert report["leaks"] == {"runtime_state": 0, "run_files": 0, "cgroups": 0, "conmons": 0}
    assert names(ocirt) == []  # the pool's ready containers went with it


def test_bench_table_and_plot(ocirt, tmp_path):
    out = ocirt.ok("bench", "-n", "3", "--plot", str(tmp_path / "phases.png"), "--", "true")
    assert "3 containers, 4 at a time" in out and "exit codes: 0: 3" in out and "leaks: none" in out
    assert (tmp_path / "phases.png").read_bytes().startswith(b"\x89PNG")


def test_bench_failures_and_bad_input(ocirt, tmp_path):
    failed = ocirt("bench", "-n", "2", "--", "/no/such/program")
    assert failed.returncode == 1 and "2 failed" in failed.stdout
    for args, words in (
        (["--plot", str(tmp_path / "x.jpg"), "--", "true"], "does not end in .png"),
        (["--plot", str(tmp_path / "missing" / "x.png"), "--", "true"], "does not exist"),
        (["-n", "0", "--", "true"], "must be positive"),
        ([], "a command is needed"),
    ):
        proc = ocirt("bench", *args)
        assert proc.returncode == 125 and words in proc.stderr, (args, proc.stderr)
    assert names(ocirt) == []


def test_exec_detached_prints_its_session_and_inspect_shows_its_exit_code(ocirt):
    cid = ocirt.ok("run", "-d", "--name", "host", "busybox", "sleep", "1000").strip()
    sid = ocirt.ok("exec", "-d", "host", "sh", "-c", "exit 7").strip()
    assert _native.wait_file(os.path.join(ocirt.root, "run", "containers", cid, "exec", sid, "exit"), cid, 60)
    [session] = json.loads(ocirt.ok("inspect", "host"))[0]["ExecSessions"]
    assert (session["ID"], session["Command"], session["Running"], session["ExitCode"]) == (sid, ["sh", "-c", "exit 7"], False, 7)
    proc = ocirt("exec", "-d", "-i", "host", "true")
    assert proc.returncode == 125 and "not with -d" in proc.stderr
    ocirt.ok("pause", "host")
    proc = ocirt("exec", "-d", "host", "true")
    assert proc.returncode != 0 and "paused" in proc.stderr
    ocirt.ok("rm", "-f", "host")


def test_start_a_attaches_before_the_start_and_attach_refuses_what_cannot_work(ocirt):
    ocirt.ok("create", "-i", "--name", "cat", "busybox", "sh", "-c", "cat; exit 3")
    proc = ocirt("attach", "cat")
    assert (proc.returncode, proc.stdout) == (125, "") and "it is created (start -a attaches to a created one)" in proc.stderr
    proc = ocirt("start", "-a", "-i", "cat", input="through\n")
    assert (proc.returncode, proc.stdout) == (3, "through\n")  # the container's exit code
    for args, words in [
        (["run", "-it", "busybox", "true"], "the input device is not a TTY"),
        (["exec", "-it", "cat", "true"], "the input device is not a TTY"),
        (["start", "-i", "cat"], "-i sends this stdin to the container: it needs -a"),
        (["attach", "cat"], "it is stopped"),
        (["run", "--detach-keys", "ctrl-1", "busybox", "true"], "bad detach keys 'ctrl-1'"),
    ]:
        proc = ocirt(*args, input="")
        assert (proc.returncode, proc.stdout) == (125, ""), (args, proc.stderr)
        assert words in proc.stderr
    ocirt.ok("rm", "cat")


def test_ps_and_inspect_speak_podmans_formats(ocirt):
    ocirt.ok("run", "-d", "--name", "up", "-l", "tier=web", "busybox", "sleep", "1000")
    assert ocirt("run", "--name", "done", "busybox", "sh", "-c", "exit 3").returncode == 3
    ocirt.ok("create", "--name", "new", "busybox", "true")
    records = {r["Names"][0]: r for r in json.loads(ocirt.ok("ps", "-a", "--format", "json"))}
    up, done, new = records["up"], records["done"], records["new"]
    assert (up["State"], up["ExitCode"], up["Exited"], up["Labels"], up["Command"]) == ("running", 0, False, {"tier": "web"}, ["sleep", "1000"])
    assert up["Status"].startswith("Up ") and up["Pid"] > 0 and up["ExitedAt"] == -62135596800
    assert (done["State"], done["ExitCode"], done["Exited"], done["Status"].startswith("Exited (3) ")) == ("exited", 3, True, True)
    assert (new["State"], new["Status"], new["StartedAt"]) == ("created", "Created", -62135596800)
    assert all(isinstance(r["Created"], int) and r["CreatedAt"].endswith(" ago") for r in records.values())
    assert ocirt.ok("ps", "-q") == up["Id"][:12] + "\n"
    assert ocirt.ok("ps", "-a", "--no-trunc", "--format", "{{.ID}}").split() == [r["Id"] for r in records.values()]
    assert ocirt.ok("ps", "--noheading", "--format", "table {{.Names}}") == "up\n"
    assert ocirt.ok("ps", "-l", "--format", "{{.Names}}") == "new\n"
    assert ocirt.ok("ps", "-n", "2", "--format", "{{.Names}}") == "done\nnew\n"
    for filters, names in [
        (["status=exited"], "done\n"), (["exited=3"], "done\n"), (["label=tier=web"], "up\n"), (["label=tier"], "up\n"),
        (["name=^n"], "new\n"), (["status=running", "status=created"], "up\nnew\n"), (["status=running", "name=new"], ""),
        ([f"id={new['Id'][:5]}"], "new\n"),
    ]:  # fmt: skip
        assert ocirt.ok("ps", "-a", *(f"--filter={f}" for f in filters), "--format", "{{.Names}}") == names, filters
    header = ocirt.ok("ps").splitlines()[0].split()
    assert header == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    [info] = json.loads(ocirt.ok("inspect", "up"))
    assert (info["Path"], info["Args"], info["Config"]["Cmd"], info["Config"]["StopSignal"]) == ("sleep", ["1000"], ["sleep", "1000"], 15)
    assert (info["State"]["Running"], info["State"]["Paused"], info["State"]["FinishedAt"]) == (True, False, "0001-01-01T00:00:00Z")
    assert info["Created"].endswith("Z") and info["HostConfig"]["AutoRemove"] is False and info["Config"]["Labels"] == {"tier": "web"}
    shown = ocirt.ok("inspect", "--format", "{{.State.Status}} {{json .Config.Cmd}}", "up", "done")
    assert shown == 'running ["sleep","1000"]\nexited ["sh","-c","exit 3"]\n'
    for args in (["ps", "--format", "{{.Bogus}}"], ["inspect", "--format", "{{printf .Name}}", "up"], ["ps", "--filter", "color=red"]):
        proc = ocirt(*args)
        assert (proc.returncode, proc.stdout) == (125, ""), args
    proc = ocirt("ps", "--nope")
    assert (proc.returncode, proc.stderr) == (125, "Error: ocirt ps: unknown flag '--nope' (see ocirt ps --help)\n")
    ocirt.ok("rm", "-f", "up", "done", "new")


def test_rm_stop_and_kill_take_all_and_filters_with_podmans_exit_codes(ocirt):
    ocirt.ok("run", "-d", "--name", "a", "-l", "group=x", "busybox", "sleep", "1000")
    ocirt.ok("run", "-d", "--name", "b", "busybox", "sleep", "1000")
    assert ocirt("start", "a").returncode == 0  # already running: what was asked
    proc = ocirt("rm", "nosuch")
    assert proc.returncode == 1 and "nosuch" in proc.stderr
    assert ocirt("rm", "-i", "nosuch").returncode == 0
    proc = ocirt("rm", "a")
    assert proc.returncode == 2 and "running" in proc.stderr
    assert ocirt("stop", "nosuch").returncode == 125
    assert ocirt("stop", "-i", "nosuch").returncode == 0
    ocirt.ok("kill", "--filter", "label=group=x")
    ocirt.ok("wait", "a")
    assert ocirt.ok("ps", "--format", "{{.Names}}") == "b\n"
    ocirt.ok("stop", "-a", "-t", "0")
    assert ocirt.ok("ps", "--format", "{{.Names}}") == ""
    assert ocirt("rm").returncode == 125 and ocirt("rm", "-a", "b").returncode == 125
    ocirt.ok("rm", "-a")
    assert ocirt.ok("ps", "-a", "--format", "{{.Names}}") == ""


def test_run_flags_scripts_bring_from_podman(ocirt, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "f").write_text("data\n")
    env_file = tmp_path / "env"
    env_file.write_text("A=1\n# a comment\n\nFROM_HERE\n")
    ocirt.env["FROM_HERE"] = "here"
    script = 'cat /v/f; touch /v/g || echo read-only; echo "$A $FROM_HERE"; grep -c " /scratch tmpfs" /proc/mounts; ulimit -n'
    proc = ocirt(
        "run", "--rm", "-v", f"{shared}:/v:ro", "--mount", "type=tmpfs,target=/scratch", "--env-file", str(env_file),
        "--ulimit", "nofile=512:512", "--entrypoint", "sh", "busybox", "-c", script,
    )  # fmt: skip
    assert (proc.returncode, proc.stdout) == (0, "data\nread-only\n1 here\n1\n512\n")
    proc = ocirt("run", "--rm", "--mount", f"type=bind,source={shared},target=/w", "busybox", "sh", "-c", "echo new > /w/g")
    assert proc.returncode == 0 and (shared / "g").read_text() == "new\n"
    cidfile = tmp_path / "cid"
    ocirt.ok("create", "--name", "c", "--stop-signal", "SIGUSR1", "--annotation", "io.example=1", "--cap-drop", "kill", "--cidfile", str(cidfile),
             "busybox", "sleep", "1000")  # fmt: skip
    info = json.loads(ocirt.ok("inspect", "c"))[0]
    assert cidfile.read_text() == info["Id"]
    assert (info["Config"]["StopSignal"], info["Config"]["Annotations"]["io.example"], info["HostConfig"]["CapDrop"]) == (10, "1", ["CAP_KILL"])
    proc = ocirt("create", "--cidfile", str(cidfile), "busybox", "true")
    assert proc.returncode == 125 and "exists already" in proc.stderr
    for args, words in [
        (["-v", "/nonexistent:/x"], "mount source '/nonexistent'"),
        (["--mount", "type=volume,target=/x"], "--mount 'type=volume,target=/x'"),
        (["--network", "nosuch"], "no network named 'nosuch'"),
        (["--network", "ns:/nonexistent"], "network namespace '/nonexistent'"),
        (["--ulimit", "nofile=x"], "--ulimit 'nofile=x'"),
        (["--stop-signal", "SIGNOPE"], "SIGNOPE"),
        (["--entrypoint", "[1]"], "not a JSON array of strings"),
    ]:
        proc = ocirt("run", "--rm", *args, "busybox", "true")
        assert (proc.returncode, words in proc.stderr) == (125, True), (args, proc.stderr)
    ocirt.ok("rm", "c")
    assert names(ocirt) == []


def test_run_timeout_kills_the_container_as_podman_does(ocirt):
    proc = ocirt("run", "--name", "slow", "--timeout", "1", "busybox", "sleep", "100")
    assert proc.returncode == 255  # podman's code for it too
    state = json.loads(ocirt.ok("inspect", "slow"))[0]["State"]
    assert (state["Status"], state["ExitCode"], "kill_after" in state["Note"]) == ("exited", -1, True)
    ocirt.ok("rm", "slow")


def test_help_version_completion_and_the_verbs_around_containers(ocirt):
    assert ocirt.ok("--version").startswith("ocirt version ")
    shown = ocirt.ok("--help")
    assert "cleanup" not in shown and "125  ocirt itself failed" in shown  # internal commands hidden; the exit codes explained
    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    undocumented = [
        (name, b.option_strings) for name, sp in commands.choices.items() for b in sp._actions
        if b.option_strings and not b.help and b.dest != "help"
    ]  # fmt: skip
    assert undocumented == []
    for shell in ("bash", "zsh", "fish"):
        script = ocirt.ok("completion", shell)
        assert "ocirt" in script and "--detach-keys" in script, shell
    info = json.loads(ocirt.ok("info"))
    assert info["cgroups"] in ("v1", "v2", "hybrid") and info["runtime"]["version"].startswith("runc version")
    ocirt.ok("run", "-d", "--name", "busy", "busybox", "sh", "-c", "sleep 1000 & exec sleep 999")
    top = ocirt.ok("top", "busy").splitlines()
    assert top[0].split() == ["USER", "PID", "PPID", "COMMAND"] and sorted(line.split(None, 3)[3] for line in top[1:]) == ["sleep 1000", "sleep 999"]
    ocirt.ok("run", "--name", "finished", "busybox", "true")
    assert ocirt.ok("container", "prune", "--filter", "name=nomatch") == ""
    ocirt.ok("container", "prune")
    assert ocirt.ok("ps", "-a", "--format", "{{.Names}}") == "busy\n"
    ocirt.ok("rm", "-f", "busy")


def test_a_bad_backend_setting_is_one_line(ocirt):
    proc = subprocess.run(ocirt.argv("ps"), env=dict(ocirt.env, OCIRT_BACKEND="nope"), capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (125, "", "Error: unknown OCIRT_BACKEND 'nope'; valid are cython, cffi\n")


def test_log_opt_max_size_and_stop_timeout_stay_with_the_container(ocirt):
    ocirt.ok("run", "--name", "chatty", "--log-opt", "max-size=4k", "--stop-timeout", "3", "busybox", "seq", "1", "3000")
    info = json.loads(ocirt.ok("inspect", "chatty"))[0]
    assert os.path.getsize(info["LogPath"]) <= 4096  # about 15 KB written: conmon rotated it
    assert ocirt.ok("logs", "--tail", "1", "chatty") == "3000\n"
    assert info["Config"]["StopTimeout"] == 3
    for option in ("tag=x", "max-size=lots"):
        proc = ocirt("run", "--rm", "--log-opt", option, "busybox", "true")
        assert proc.returncode == 125 and f"--log-opt '{option}'" in proc.stderr
    ocirt.ok("rm", "chatty")


def test_restart_runs_the_same_container_again(ocirt):
    ocirt.ok("run", "-d", "--name", "again", "busybox", "sleep", "1000")
    first = json.loads(ocirt.ok("inspect", "again"))[0]["State"]
    assert ocirt.ok("restart", "-t", "0", "again") == "again\n"
    second = json.loads(ocirt.ok("inspect", "again"))[0]["State"]
    assert second["Status"] == "running" and second["Pid"] != first["Pid"] and second["ConmonPid"] != first["ConmonPid"]
    ocirt.ok("stop", "-t", "0", "again")
    ocirt.ok("restart", "again")  # an exited one starts again
    assert json.loads(ocirt.ok("inspect", "again"))[0]["State"]["Status"] == "running"
    ocirt.ok("create", "--name", "idle", "busybox", "true")
    assert ocirt.ok("restart", "-a", "--running", "-t", "0") == json.loads(ocirt.ok("inspect", "again"))[0]["Id"] + "\n"
    assert json.loads(ocirt.ok("inspect", "idle"))[0]["State"]["Status"] == "created"  # --running left it alone
    ocirt.ok("rm", "-f", "again", "idle")


def test_restart_refuses_what_it_cannot_do(ocirt):
    ocirt.ok("run", "-d", "--rm", "--name", "gone-after", "busybox", "sleep", "1000")
    proc = ocirt("restart", "gone-after")
    assert proc.returncode == 125 and "removed when it exits" in proc.stderr
    assert ocirt("restart", "no-such").returncode == 125
    assert "--running goes with -a" in ocirt("restart", "--running", "x").stderr
    ocirt.ok("rm", "-f", "gone-after")


def test_wait_condition_sees_another_process_start_it(ocirt):
    ocirt.ok("create", "--name", "later", "busybox", "sleep", "1000")
    with ocirt.running("wait", "--condition", "running", "-i", "10ms", "later") as waiting:
        ocirt.ok("start", "later")
        out, err = waiting.communicate(timeout=60)
    assert (waiting.returncode, out) == (0, "-1\n"), err  # podman prints -1 for a condition other than the exit
    with ocirt.running("wait", "--condition", "paused", "--condition", "exited", "later") as waiting:
        ocirt.ok("stop", "-t", "0", "later")
        out, err = waiting.communicate(timeout=60)
    assert (waiting.returncode, out) == (0, "137\n"), err  # the exit, with its code
    bad = ocirt("wait", "--condition", "healthy", "later")
    assert bad.returncode == 125 and "invalid choice: 'healthy'" in bad.stderr
    assert "not a positive duration" in ocirt("wait", "-i", "0", "later").stderr
    ocirt.ok("rm", "later")


def test_rm_stop_kill_take_cidfiles(ocirt, tmp_path):
    cidfile = str(tmp_path / "cid")
    ocirt.ok("run", "-d", "--cidfile", cidfile, "--name", "byfile", "busybox", "sleep", "1000")
    cid = open(cidfile).read()
    assert ocirt.ok("kill", "-s", "STOP", "--cidfile", cidfile) == cid + "\n"
    assert ocirt.ok("stop", "-t", "0", "--cidfile", cidfile) == cid + "\n"
    assert ocirt.ok("rm", "--cidfile", cidfile) == cid + "\n"
    gone = str(tmp_path / "gone")
    missing = ocirt("rm", "--cidfile", gone)
    assert missing.returncode == 125 and f"--cidfile {gone}: no such file" in missing.stderr
    assert ocirt("rm", "-i", "--cidfile", gone).returncode == 0
    assert ocirt("rm", "-i", "--cidfile", cidfile).returncode == 0  # its container is gone: ignored
    assert ocirt("kill", "-i", "no-such").returncode == 0
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)  # nobody writes it: reading would wait forever
    refused = ocirt("rm", "--cidfile", fifo, timeout=30)
    assert refused.returncode == 125 and f"--cidfile {fifo}: not a regular file" in refused.stderr
