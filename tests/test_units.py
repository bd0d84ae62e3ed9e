"""Pure functions: argv builders, parsers and spec helpers (no processes)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
from datetime import datetime, timezone

import pytest

import ocirt
from ocirt import logs, spec as specs
from ocirt.attach import DetachKeys, parse_detach_keys
from ocirt.conmon import ConmonArgs, check_sockets, conmon_env, socket_activation, sync_value
from ocirt.logs import LogReader, format_time, parse_time, parse_when, read_log
from ocirt.oci import OCIRuntime
from ocirt.validate import check_id, parse_signal

BASE = dict(
    conmon_path="/usr/bin/conmon",
    runtime_path="/usr/sbin/runc",
    cid="c1",
    cuuid="c1",
    bundle="/b",
    pidfile="/b/pidfile",
    conmon_pidfile="/b/conmon.pid",
    log_path="/b/ctr.log",
    exit_dir="/t/exits",
    socket_dir="/t/socket",
)


def test_conmon_argv_for_a_container():
    assert ConmonArgs(**BASE).argv() == [
        "/usr/bin/conmon", "-c", "c1", "-u", "c1", "-r", "/usr/sbin/runc", "-b", "/b",
        "-p", "/b/pidfile", "-P", "/b/conmon.pid", "-l", "/b/ctr.log",
        "--exit-dir", "/t/exits", "--socket-dir-path", "/t/socket",
    ]  # fmt: skip


def test_conmon_argv_options():
    argv = ConmonArgs(
        **BASE, systemd_cgroup=True, terminal=True, stdin=True, leave_stdin_open=True, log_size_max=4096, no_pivot=True, sync_log=False
    ).argv()
    assert argv[19:] == ["-s", "-t", "-i", "--leave-stdin-open", "--log-size-max", "4096", "--no-pivot", "--no-sync-log"]
    exec_argv = ConmonArgs(**BASE, exec_spec="/b/process.json").argv()
    assert exec_argv[19:] == ["-e", "--exec-process-spec", "/b/process.json", "--api-version"]


def test_every_flag_ocirt_gives_conmon_is_one_conmon_knows():
    """conmon's own --help is the oracle: a flag it does not list would fail every create."""
    shown = subprocess.run(["conmon", "--help"], capture_output=True, text=True, check=True).stdout
    known = set(re.findall(r"(?<![\w-])(-{1,2}[A-Za-z0-9][\w-]*)", shown))
    everything = ConmonArgs(
        **BASE, systemd_cgroup=True, terminal=True, stdin=True, leave_stdin_open=True, log_size_max=4096, no_pivot=True,
        sync_log=False, runtime_args=("debug",), exit_command=("/bin/true", "arg"),
    )  # fmt: skip
    exec_attached = ConmonArgs(**BASE, exec_spec="/b/process.json", exec_attach=True)
    flags = {a for a in everything.argv()[1:] + exec_attached.argv()[1:] if a.startswith("-")}
    assert flags - known == set()


def test_conmon_env_carries_the_pipes_and_nothing_of_ours(monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/n")
    monkeypatch.setenv("LISTEN_FDS", "2")
    env = conmon_env(None)
    assert env == {"PATH": env["PATH"], "_OCI_SYNCPIPE": "3", "_OCI_STARTPIPE": "4"}
    assert conmon_env({"A": "b"}, listen_fds=2) == {"A": "b", "_OCI_SYNCPIPE": "5", "_OCI_STARTPIPE": "6", "LISTEN_FDS": "2", "LISTEN_PID": "1"}


def test_socket_activation_is_taken_only_when_it_is_ours():
    assert socket_activation({"LISTEN_FDS": "2", "LISTEN_PID": "1"}) == []  # another process's
    assert socket_activation({"LISTEN_FDS": "2"}) == []  # no LISTEN_PID: not for us either
    for count in ("0", "33", "+1", "1.0", "²"):
        with pytest.raises(ocirt.InvalidArgument, match="LISTEN_FDS must be"):
            socket_activation({"LISTEN_FDS": count, "LISTEN_PID": str(os.getpid())})
    a, b = socket.socketpair()
    not_a_socket = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        check_sockets([a.fileno(), b.fileno()])
        for fds in ([a.fileno(), not_a_socket], [10**6], [-1], ["3"]):
            with pytest.raises(ocirt.InvalidArgument, match="not an open socket"):
                check_sockets(fds)
    finally:
        os.close(not_a_socket)
        a.close()
        b.close()


def test_sync_values():
    assert sync_value({"pid": 42}) == 42
    assert sync_value({"data": -1, "message": "x"}) == -1
    with pytest.raises(ocirt.ConmonError, match="without a pid"):
        sync_value({"pid": "42"})


def test_runtime_argv_builders():
    rt = OCIRuntime("/usr/sbin/runc", root="/run/r", systemd_cgroup=True)
    g = ["/usr/sbin/runc", "--root", "/run/r", "--systemd-cgroup"]
    assert rt.start_args("c") == g + ["start", "c"]
    assert rt.kill_args("c", 9, all_processes=True) == g + ["kill", "--all", "c", "9"]
    assert rt.delete_args("c", force=True) == g + ["delete", "--force", "c"]
    assert OCIRuntime("runc").state_args("c") == ["runc", "state", "c"]
    assert OCIRuntime("runc").pause_args("c") == ["runc", "pause", "c"]
    assert OCIRuntime("runc").resume_args("c") == ["runc", "resume", "c"]


def test_runtime_command_error_message():
    err = ocirt.RuntimeCommandError(["runc", "--root", "/r", "start", "c"], 1, "boom\n")
    assert str(err) == "`runc --root /r start c` failed with status 1: boom"
    assert err.argv[-1] == "c" and err.status == 1 and err.stderr == "boom\n"


@pytest.mark.parametrize(
    "value, number",
    [(9, 9), ("KILL", 9), ("sigterm", 15), ("15", 15), (signal.SIGUSR1, signal.SIGUSR1), (64, 64)],
)
def test_parse_signal(value, number):
    assert parse_signal(value) == number


@pytest.mark.parametrize("value", ["a", "a.b-c_d", "0", "A" * 128])
def test_good_ids(value):
    assert check_id(value) == value


def test_parse_time_keeps_microseconds_of_nanoseconds():
    assert parse_time("2026-11-28T15:31:00.856411123+00:00") == datetime(2026, 11, 28, 15, 31, 0, 856411, timezone.utc)
    assert parse_time("2026-11-28T15:31:00Z") == datetime(2026, 11, 28, 15, 31, 0, tzinfo=timezone.utc)
    assert parse_time("2026-11-28T15:31:00.5+01:00").microsecond == 500000


def test_read_log_joins_partials_per_stream_and_skips_a_torn_line(tmp_path):
    log = tmp_path / "ctr.log"
    t = "2026-11-28T15:31:00.000000001+00:00"
    log.write_text(
        f"{t} stdout P hel\n"
        f"{t} stderr F err\n"
        f"{t} stdout F lo\n"
        f"{t} stdout F \n"
        f"{t} stdout F with spaces  inside\n"
        f"{t} stdout F torn"
    )
    assert [(r.stream, r.text) for r in read_log(str(log))] == [
        ("stderr", "err"),
        ("stdout", "hello"),
        ("stdout", ""),
        ("stdout", "with spaces  inside"),
    ]
    assert list(read_log(str(tmp_path / "missing"))) == []


def test_a_log_rotated_between_a_read_and_the_check_is_read_to_its_end(tmp_path, monkeypatch):
    """conmon may write to the log and rename a new one over it after the
    reader's short read and before it looks at the path: the old file's last
    lines are still read, then the new file."""
    log = tmp_path / "ctr.log"
    t = "2026-11-28T15:31:00.000000001+00:00"
    log.write_text(f"{t} stdout F 1\n")
    reader = LogReader(str(log))
    assert [r.text for r in reader.read()] == ["1"]
    real_stat = os.stat

    def rotate_first(path, *args, **kwargs):
        with open(log, "a") as old:
            old.write(f"{t} stdout F 2\n")  # the old file's last line, after the read
        (tmp_path / "ctr.log.tmp").write_text(f"{t} stdout F 3\n")
        os.rename(tmp_path / "ctr.log.tmp", log)
        monkeypatch.setattr(logs.os, "stat", real_stat)
        return real_stat(path, *args, **kwargs)

    with open(log, "a") as old:
        old.write(f"{t} stdout F 1b\n")
    monkeypatch.setattr(logs.os, "stat", rotate_first)
    with reader:
        texts = []
        while not reader.at_end or not texts or texts[-1] != "3":
            texts += [r.text for r in reader.read()]
    assert texts == ["1b", "2", "3"]


@pytest.mark.parametrize(
    "value, expected",
    [
        ("10m", "2026-01-01T11:50:00+00:00"),
        ("1h30m", "2026-01-01T10:30:00+00:00"),
        ("1.5s", "2026-01-01T11:59:58.500000+00:00"),
        ("250ms", "2026-01-01T11:59:59.750000+00:00"),
        ("1700000000.5", "2023-11-14T22:13:20.500000+00:00"),
        ("2026-11-29T09:00:00.123456789Z", "2026-11-29T09:00:00.123456+00:00"),
        ("2026-11-29T09:00:00+02:00", "2026-11-29T09:00:00+02:00"),
    ],
)
def test_logs_since_and_until_take_times_dates_unix_seconds_and_durations(value, expected):
    now = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    assert parse_when(value, now) == datetime.fromisoformat(expected)
    if value[-1] in "smh":  # a duration: before now for --since, after it for --until
        assert parse_when(value, now, ahead=True) - now == now - parse_when(value, now)


@pytest.mark.parametrize("value", ["", "soon", "-5m", "10mm", "m", "2026-13-01"])
def test_a_time_logs_cannot_take_is_named(value):
    with pytest.raises(ocirt.InvalidArgument, match=f"not a time: {re.escape(repr(value))}"):
        parse_when(value)


def test_log_times_print_as_rfc3339_nano_in_utc():
    assert format_time(datetime(2026, 1, 1, 1, 2, 3, 120000, tzinfo=timezone.utc)) == "2026-01-01T01:02:03.12Z"
    assert format_time(datetime.fromisoformat("2026-01-01T03:02:03+02:00")) == "2026-01-01T01:02:03Z"


@pytest.mark.parametrize(
    "spec, keys",
    [("ctrl-p,ctrl-q", b"\x10\x11"), ("ctrl-@,a,ctrl-\\", b"\x00a\x1c"), ("CTRL-A", b"\x01"), ("", b"")],
)
def test_detach_keys_specs(spec, keys):
    assert parse_detach_keys(spec) == keys


@pytest.mark.parametrize("spec", ["ctrl-1", "ab", "ctrl-pp", "é", "ctrl-p,"])
def test_a_bad_detach_key_is_named(spec):
    with pytest.raises(ocirt.InvalidArgument, match="bad detach keys .* is neither a character nor ctrl-"):
        parse_detach_keys(spec)


def test_detach_keys_are_found_across_reads_and_a_near_miss_is_passed_on():
    keys = DetachKeys(b"\x10\x11")
    assert keys.feed(b"ab\x10") == (b"ab", False)  # the tail may begin the keys: held
    assert keys.feed(b"c") == (b"\x10c", False)  # it did not
    assert keys.feed(b"\x10") == (b"", False)
    assert keys.feed(b"\x11 after") == (b"", True)
    keys = DetachKeys(b"\x10\x11")
    assert keys.feed(b"x\x10\x10") == (b"x\x10", False)
    assert keys.feed(b"\x11") == (b"", True)
    keys = DetachKeys(b"\x10\x11")
    assert keys.feed(b"end\x10") == (b"end", False)
    assert keys.held() == b"\x10"  # the input ended: what was held goes on
    assert DetachKeys(b"").feed(b"\x10\x11") == (b"\x10\x11", False)


def test_runtime_spec_makes_bundle_paths_absolute():
    spec = {
        "root": {"path": "rootfs", "readonly": True},
        "process": {"args": ["true"]},
        "mounts": [
            {"destination": "/data", "type": "bind", "source": "data", "options": ["rbind"]},
            {"destination": "/opt", "source": "opt", "options": ["bind"]},
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/abs", "type": "bind", "source": "/srv"},
        ],
    }
    out = specs.runtime_spec("/bundle", spec)
    assert out["root"] == {"path": "/bundle/rootfs", "readonly": True}
    assert [m["source"] for m in out["mounts"]] == ["/bundle/data", "/bundle/opt", "proc", "/srv"]
    assert spec["root"]["path"] == "rootfs"  # the caller's spec is not changed


def test_stop_timeout_is_the_containers_own_else_ten_seconds():
    assert specs.stop_timeout({}) == 10
    assert specs.stop_timeout({"annotations": {specs.STOP_TIMEOUT_ANNOTATION: "2.5"}}) == 2.5
    for bad in ("soon", "-1", "inf", "nan"):
        assert specs.stop_timeout({"annotations": {specs.STOP_TIMEOUT_ANNOTATION: bad}}) == 10


def test_stop_signal_and_pid_namespace():
    assert specs.stop_signal({}) == signal.SIGTERM
    assert specs.stop_signal({"annotations": {specs.STOP_SIGNAL_ANNOTATION: "SIGQUIT"}}) == signal.SIGQUIT
    assert specs.has_own_pid_namespace({"linux": {"namespaces": [{"type": "pid"}]}})
    assert not specs.has_own_pid_namespace({"linux": {"namespaces": [{"type": "pid", "path": "/proc/1/ns/pid"}]}})
    assert not specs.has_own_pid_namespace({})


def test_exec_process_overrides(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("app:x:1000:1001::/:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("staff:x:50:\n")
    spec = {
        "process": {
            "args": ["sleep"],
            "env": ["PATH=/bin", "A=1"],
            "cwd": "/",
            "user": {"uid": 0, "gid": 0},
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]},
        }
    }
    ids = specs.parse_user("app:staff", str(tmp_path))
    p = specs.exec_process(spec, ["ls"], env={"A": "2", "B": "3"}, user=ids, cwd="/tmp", cap_add=["net_admin"])
    assert p["args"] == ["ls"] and p["cwd"] == "/tmp" and p["terminal"] is False
    assert p["env"] == ["PATH=/bin", "A=2", "B=3"]
    assert p["user"] == {"uid": 1000, "gid": 50}
    assert p["capabilities"]["bounding"] == ["CAP_KILL", "CAP_NET_ADMIN"]
    assert p["noNewPrivileges"] is False
    assert specs.parse_user("app", str(tmp_path)) == {"uid": 1000, "gid": 1001}
    assert spec["process"]["capabilities"]["bounding"] == ["CAP_KILL"]
    with pytest.raises(ocirt.InvalidArgument, match="environment variable"):
        specs.exec_process(spec, ["ls"], env={"A=B": "x"})


def test_every_error_is_an_ocirt_error():
    for name in ocirt.__all__:
        obj = getattr(ocirt, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, ocirt.OcirtError)
    assert issubclass(ocirt.InvalidArgument, ValueError)
    assert issubclass(ocirt.Timeout, TimeoutError)


def test_native_extension_is_required(tmp_path):
    # a source tree without the compiled module says how to build it
    import subprocess
    import sys

    src = os.path.dirname(os.path.dirname(ocirt.__file__))
    tree = tmp_path / "tree"
    (tree / "ocirt").mkdir(parents=True)
    for name in os.listdir(os.path.join(src, "ocirt")):
        if name.endswith(".py"):
            (tree / "ocirt" / name).write_text(open(os.path.join(src, "ocirt", name)).read())
    # -S: no site-packages, so no installed (or editable) ocirt can answer instead
    proc = subprocess.run([sys.executable, "-S", "-c", "import ocirt"], cwd=tree, capture_output=True, text=True)
    assert proc.returncode != 0 and "pip install -e ." in proc.stderr


def test_the_cli_finds_its_command_past_the_global_options():
    from ocirt.cli import build_parser, command_of

    assert command_of(["--root", "run", "ps", "-a"]) == "ps"  # "run" is the root's value here
    assert command_of(["--log-level=debug", "rm", "-f", "x"]) == "rm"
    assert command_of(["--help"]) is None and command_of(["frobnicate"]) is None
    args = build_parser("ps").parse_args(["ps", "-a", "--format", "json"])
    assert args.all and args.format == "json"
    assert "unpause" in build_parser("ps").format_help()  # every command is still listed


def test_a_record_with_every_field_set_round_trips_through_its_json():
    from ocirt.store import Record

    values = {"str": "x", "Optional[int]": 7, "bool": True, "Optional[float]": 1.5}
    record = Record(
        **{f.name: values[f.type] for f in dataclasses.fields(Record) if f.type in values},
        cgroup_dirs=["/sys/fs/cgroup/pids/a"], cgroup_parents=["/sys/fs/cgroup/pids"], container_cgroup_dirs=["/sys/fs/cgroup/pids/b"],
        exec_sessions={"e1": {"pid": 3, "cmd": ["true"]}}, labels={"k": "v"}, launch={"exit_command": ["x"], "kill_after": 1, "log_size_max": None},
    )  # fmt: skip
    assert all(getattr(record, f.name) != f.default for f in dataclasses.fields(Record) if f.default is not dataclasses.MISSING)
    assert Record.from_json(record.to_json()) == record
    assert json.loads(record.to_json()) == dataclasses.asdict(record)


def test_launch_options_round_trip_and_a_bad_record_gives_the_defaults():
    from ocirt.launcher import LaunchOptions

    kept = LaunchOptions(("/usr/bin/ocirt", "cleanup", "x"), 30, 4096)
    assert LaunchOptions.from_dict(kept.to_dict()) == kept
    assert set(kept.to_dict()) == {f.name for f in dataclasses.fields(LaunchOptions)}  # a new field is kept too
    for bad in (None, [], "x", {"exit_command": "rm -rf /", "kill_after": -5, "log_size_max": "big"}, {"exit_command": [1, 2]}):
        assert LaunchOptions.from_dict(bad) == LaunchOptions()


@pytest.mark.parametrize("value, seconds", [("250ms", 0.25), ("1s", 1.0), ("1m30s", 90.0), (" 2h ", 7200.0), ("1.5s", 1.5)])
def test_parse_duration(value, seconds):
    assert logs.parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "10", "1x", "s", "-1s", "1s2"])
def test_parse_duration_refuses_what_is_not_a_duration(value):
    assert logs.parse_duration(value) is None


def test_wait_interval_takes_a_duration_or_milliseconds():
    import argparse

    from ocirt.cli.values import interval

    assert (interval("250ms"), interval("2s"), interval("100")) == (0.25, 2.0, 0.1)
    for bad in ("0", "0s", "-1s", "soon", "١٠٠"):
        with pytest.raises(argparse.ArgumentTypeError, match="not a positive duration"):
            interval(bad)
