"""A container's limits, set at create and changed live, its statistics and
its OOM kills, for real on this host's v1 hierarchies; the v2 file names
and units against a directory tree laid out like a v2 cgroup."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

import ocirt

from .observe import until

MB = 1 << 20
# A shell that holds `n` MB of its own (a string of that many bytes), then says so.
HOLD = "x=$(head -c {n}000000 /dev/zero | tr '\\0' a); echo held; "


def test_limits_given_at_create_land_in_the_cgroup(make_bundle, create):
    limits = ocirt.Limits(memory=64 * MB, memory_swap=64 * MB, cpus=0.5, cpu_shares=512, pids_limit=50, cpuset_cpus="0")
    c = create(make_bundle("sleep", "1000"), limits=limits)
    got = c.limits()
    assert (got["memory"], got["memory_swap"], got["cpu_quota"], got["cpu_period"]) == (64 * MB, 64 * MB, 50_000, 100_000)
    assert (got["cpu_shares"], got["pids_limit"], got["cpuset_cpus"]) == (512, 50, "0")
    conmon_memory = c._cgroup.controllers["memory"]  # conmon's cgroup has none of them: they are the container's
    assert open(os.path.join(conmon_memory, "memory.limit_in_bytes")).read().strip() != str(64 * MB)


def test_bad_limits_are_refused_naming_them_before_anything_is_made(runtime, make_bundle, new_id):
    for bad, word in (
        (dict(memory=0), "memory"), (dict(pids_limit=-2), "pids_limit"), (dict(cpu_shares=1), "cpu_shares"),
        (dict(cpuset_cpus="0-"), "cpuset_cpus"), (dict(memory=10 * MB, memory_swap=MB), "memory_swap"),
        (dict(cpus=0.5, cpu_quota=1000), "cpu_quota"), (dict(cpus=float("nan")), "cpus"),
    ):  # fmt: skip
        with pytest.raises(ocirt.InvalidArgument, match=word):
            ocirt.Limits(**bad)
    with pytest.raises(ocirt.InvalidArgument, match="limits must be"):
        runtime.create(new_id(), make_bundle("true"), limits={"memory": MB})
    assert os.listdir(runtime.dirs.containers) == []


def test_stats_move_with_what_the_container_does(create, make_bundle):
    c = create(make_bundle("sh", "-c", HOLD.format(n=20) + "while :; do :; done"), limits=ocirt.Limits(memory=256 * MB))
    idle = c.stats()
    assert idle.pids_current >= 1 and idle.memory_limit == 256 * MB and idle.frozen is False  # runc init, with its threads
    c.start()
    until(lambda: (c.stats().memory_usage or 0) > 20 * MB)
    first = c.stats().cpu_total_ns
    until(lambda: c.stats().cpu_total_ns > first + 50_000_000)  # it spins: 50 ms more CPU time
    s = c.stats()
    assert s.cpu_user_ns > 0 and s.cpu_system_ns is not None and s.memory_peak >= s.memory_usage
    assert s.oom_kills == 0
    c.pause()
    assert c.stats().frozen is True
    c.resume()
    c.delete(force=True)
    with pytest.raises(ocirt.InvalidState, match="deleted"):
        c.stats()


def test_update_raises_a_limit_so_what_failed_before_now_fits(run):
    hold_40 = ["sh", "-c", HOLD.format(n=40)]
    assert run(*hold_40, memory=32 * MB).wait(60) == 137  # over the old limit: the OOM killer ends it
    c = run("sleep", "1000", memory=32 * MB)
    c.update(ocirt.Limits(memory=96 * MB, memory_swap=96 * MB))
    assert c.limits()["memory"] == 96 * MB
    session = c.exec(hold_40)
    assert session.wait(60) == 0
    with pytest.raises(ocirt.CgroupError, match="memory_swap too"):
        c.update(ocirt.Limits(memory=128 * MB))  # above memory+swap, which stays 96 MB
    c.update(ocirt.Limits(pids_limit=20, cpus=1.5))
    assert (c.limits()["pids_limit"], c.limits()["cpu_quota"]) == (20, 150_000)


def test_an_update_the_kernel_refuses_leaves_the_old_limits(run):
    c = run("sh", "-c", HOLD.format(n=40) + "sleep 1000", memory=128 * MB)
    until(lambda: (c.stats().memory_usage or 0) > 40 * MB)
    with pytest.raises(ocirt.CgroupError, match="memory.limit_in_bytes.*reclaim"):
        c.update(ocirt.Limits(memory=8 * MB, pids_limit=30))  # no swap here: 40 MB cannot go
    assert (c.limits()["memory"], c.limits()["memory_swap"]) == (128 * MB, 128 * MB)
    assert c.state.status is ocirt.ContainerStatus.RUNNING


def test_update_of_a_stopped_container_is_refused(run):
    c = run("true")
    c.wait(30)
    with pytest.raises(ocirt.InvalidState, match="update"):
        c.update(ocirt.Limits(memory=64 * MB))


def test_oom_kill_is_counted_by_the_cgroup_and_reported(run):
    c = run("sh", "-c", HOLD.format(n=64), memory=16 * MB)
    assert c.wait(60) == 137
    assert c.state.oom_killed
    assert c.stats().oom_kills >= 1


# -- the CLI ---------------------------------------------------------------


def test_cli_update_shows_in_inspect_and_stats(ocirt):
    cid = ocirt.ok("run", "-d", "--memory", "32m", "busybox", "sleep", "1000").strip()
    ocirt.ok("update", "--memory", "64m", "--memory-swap", "64m", "--pids-limit", "40", cid)
    limits = json.loads(ocirt.ok("inspect", cid))[0]["Limits"]
    assert (limits["memory"], limits["pids_limit"]) == (64 * MB, 40)
    rows = json.loads(ocirt.ok("stats", "--no-stream", "--format", "json", cid))
    assert [r["id"] for r in rows] == [cid] and rows[0]["memory_limit"] == 64 * MB and rows[0]["pids_current"] == 1
    table = ocirt.ok("stats", "--no-stream", cid)
    assert "MEM USAGE / LIMIT" in table and "64.0MiB" in table
    ocirt.ok("rm", "-f", cid)


def test_cli_memory_without_swap_allows_as_much_swap_again_as_podman(ocirt):
    cid = ocirt.ok("run", "-d", "-m", "32m", "busybox", "sleep", "1000").strip()
    assert json.loads(ocirt.ok("inspect", cid))[0]["Limits"]["memory_swap"] == 64 * MB  # podman 4.3: 64 MiB too
    ocirt.ok("update", "--memory", "40m", cid)
    limits = json.loads(ocirt.ok("inspect", cid))[0]["Limits"]
    assert (limits["memory"], limits["memory_swap"]) == (40 * MB, 80 * MB)
    ocirt.ok("rm", "-f", cid)


def test_cli_limit_options_that_do_not_fit_are_named(ocirt):
    result = ocirt("run", "--memory", "64m", "--memory-swap", "32m", "busybox", "true")
    assert result.returncode == 125 and "--memory-swap" in result.stderr
    result = ocirt("run", "--memory", "lots", "busybox", "true")
    assert result.returncode != 0 and "--memory" in result.stderr
    assert json.loads(ocirt.ok("ps", "-a", "--format", "json")) == []


# -- cgroup v2 files, against a tree laid out like them ---------------------


def test_v2_limits_and_stats_use_v2_files_and_units(tmp_path):
    d = tmp_path / "c"
    d.mkdir()
    for name, text in {
        "memory.current": "1000\n", "memory.peak": "2000\n", "memory.max": "max\n", "memory.events": "low 0\noom 1\noom_kill 2\n",
        "cpu.stat": "usage_usec 7\nuser_usec 5\nsystem_usec 2\n", "pids.current": "3\n", "pids.max": "max\n",
        "cgroup.events": "populated 1\nfrozen 0\n", "cpu.max": "max 100000\n", "cpu.weight": "100\n", "memory.swap.max": "max\n",
        "memory.low": "0\n",
    }.items():  # fmt: skip
        (d / name).write_text(text)
    controllers = {"v2": str(d)}
    stats = ocirt.cgroups.limits.read_stats(controllers)
    assert stats == ocirt.Stats(1000, 2000, None, 7000, 5000, 2000, 3, None, 2, False)
    ocirt.cgroups.limits.apply(controllers, ocirt.Limits(memory=64 * MB, memory_swap=96 * MB, cpus=0.5, cpu_shares=1024, pids_limit=9))
    written = {n: (d / n).read_text() for n in ("memory.max", "memory.swap.max", "cpu.max", "cpu.weight", "pids.max")}
    assert written == {"memory.max": str(64 * MB), "memory.swap.max": str(32 * MB), "cpu.max": "50000 100000", "cpu.weight": "39", "pids.max": "9"}
    assert ocirt.cgroups.limits.read_limits(controllers)["memory_swap"] == 96 * MB


def test_cli_stats_streams_until_ctrl_c_and_leaves_the_terminal_clean(ocirt):
    cid = ocirt.ok("run", "-d", "busybox", "sleep", "1000").strip()
    master, slave = os.openpty()
    proc = ocirt.popen("stats", "-i", "0.05", cid, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    seen = b""
    try:
        while seen.count(b"MEM USAGE") < 2:  # redrawn at least once
            seen += os.read(master, 4096)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        assert proc.stderr.read() == b""  # no traceback
    finally:
        os.close(master)
        proc.stderr.close()
        ocirt.ok("rm", "-f", cid)
    assert seen.startswith(b"\x1b[H\x1b[J")  # each table redraws in place
    assert cid[:12].encode() in seen
