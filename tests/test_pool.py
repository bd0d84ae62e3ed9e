"""The warm pool on real runc and conmon: jobs given to created containers
through the stub, their exit codes, sizes, images, stdin, names, labels
and limits; the fallback to a cold create; bad input; a crashed owner."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading

import pytest

import ocirt
from ocirt import InvalidArgument, InvalidState, Limits, aio
from ocirt.pool import JOB_MAX, STUB, Pool

from .cli_support import reap_orphans
from .image_support import busybox_files, tar_layer, write_layout

pytestmark = pytest.mark.skipif(not os.access(STUB, os.X_OK), reason="the stub is not built (pip install -e . builds it)")


def test_a_job_runs_with_its_own_argv_env_and_workdir_and_its_exit_code(runtime):
    with runtime.pool(size=2) as pool:
        r = pool.run(["sh", "-c", 'echo "$A $HOME"; pwd; echo oops >&2; exit 3'], env={"A": "1"}, workdir="/tmp")
        assert (r.exit_code, r.stdout, r.stderr) == (3, "1 /root\n/tmp\n", "oops\n")
        assert {"start", "run"} <= set(r.timings.phases())
        assert pool.run(["no-such-command"]).exit_code == 127
        assert pool.run(["/etc/passwd"]).exit_code == 126  # not executable
        bad_cwd = pool.run(["true"], workdir="/no/such/dir")
        assert bad_cwd.exit_code == 125 and "working directory" in bad_cwd.stderr
        with pytest.raises(ocirt.ContainerError):
            pool.run(["false"], check=True)
        stats = pool.stats()
        assert stats.taken == 5 and stats.made >= 5 - stats.fell_back
    runtime.finish_deletes()
    assert runtime.list() == []  # every job's container deleted, every ready one too


def test_a_job_sees_only_its_own_fds_files_and_memory_limit(runtime):
    listing = ["ls", "/proc/self/fd"]  # the job's own fds (and ls's directory); a pipe would add the shell's, for a moment
    with runtime.pool(size=2) as pool:
        assert pool.run(listing).stdout == runtime.run(listing).stdout  # fd 3, the job's socket, closed before the exec
        assert pool.run(["sh", "-c", "echo mine > /root/marker"]).exit_code == 0
        assert pool.run(["cat", "/root/marker"]).exit_code == 1  # another container: the last job's files are not here
        hog = pool.run(["sh", "-c", "head -c 300000000 /dev/zero | tail"], limits=Limits(memory=32 << 20))
        assert hog.oom_killed and hog.exit_code == 137
    runtime.finish_deletes()


def test_a_job_larger_than_a_socket_buffer_and_stdin_reach_the_container(runtime):
    env = {f"V{i}": "x" * 100_000 for i in range(4)}  # 400 kB: past the socket's buffer, each under execve's own bound
    with runtime.pool(size=1, stdin=True) as pool:
        assert pool.run(["sh", "-c", 'echo ${#V0} ${#V3}; cat'], env=env, stdin=b"in\n").stdout == "100000 100000\nin\n"
        with pytest.raises(InvalidArgument, match="at most"):
            pool.run(["true"], env={"BIG": "x" * JOB_MAX})
    with runtime.pool(size=1) as pool:
        with pytest.raises(InvalidArgument, match="stdin=True"):
            pool.run(["cat"], stdin=b"x")
    runtime.finish_deletes()


def test_a_started_job_takes_its_name_labels_and_limits(runtime):
    with runtime.pool(size=1) as pool:
        c = pool.start(["sleep", "1000"], name="job-a", labels={"suite": "api"}, limits=Limits(pids_limit=64), env={"J": "1"}, workdir="/tmp")
        with c:
            assert runtime.get("job-a") is c and c.labels == {"suite": "api"}  # the pool's own label gone
            assert c.state.status is ocirt.ContainerStatus.RUNNING
            assert c.exec_run(["sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '"])[1] == "sleep 1000 \n"  # the stub became the job
            assert c.stats().pids_limit == 64
            assert c.exec_run(["sh", "-c", "echo $J; pwd"])[1] == "1\n/tmp\n"  # an exec starts from the job's process, as podman's
            assert c.spec["process"]["args"] == ["sleep", "1000"]
    runtime.finish_deletes()


def test_a_job_that_finds_the_pool_empty_creates_its_container_cold(runtime, monkeypatch):
    monkeypatch.setattr(Pool, "_refill", lambda self: None)  # no background: the second job must fall back
    with runtime.pool(size=2) as pool:
        assert [pool.run(["echo", str(i)]).stdout for i in range(2)] == ["0\n", "1\n"]
        assert pool.stats() == ocirt.pool.PoolStats(ready=0, taken=2, made=2, fell_back=1)
    runtime.finish_deletes()


def test_the_pool_refills_in_the_background_and_close_deletes_what_is_ready(runtime):
    pool = runtime.pool(size=3)
    assert pool.wait_ready(60)
    assert len(runtime.list(status="created")) == 3
    pool.close()
    assert runtime.list() == []
    with pytest.raises(InvalidState, match="closed"):
        pool.run(["true"])


def _held_mount_namespaces() -> int:
    """How many mount namespaces this process holds an fd of."""
    links = (os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{fd}"))
    return sum(link.startswith("mnt:[") for link in links)


def test_a_replacement_waits_for_the_jobs_end_or_quiet_and_mounts_are_held_until_the_delete(runtime):
    before = _held_mount_namespaces()
    with runtime.pool(size=1) as pool:
        assert pool.wait_ready(60) and _held_mount_namespaces() == before + 1  # the ready container's
        c, sock, _ = pool.take(pool.job(["true"]))  # a job that never tells its end, as one that runs long
        sock.close()
        assert pool.wait_ready(60) and pool.stats().made == 2  # replaced all the same, QUIET after the take
        c.delete(force=True)
        pool.finished(c, delete=False)
        assert _held_mount_namespaces() == before + 1  # the taken one's went with its delete
        ended = pool.run(["true"])  # its end starts its replacement, and the pool deletes its container
        assert pool.wait_ready(60) and pool.stats().made == 3
        runtime.finish_deletes()
        assert ended.container_id not in runtime.containers()
    assert _held_mount_namespaces() == before


def test_a_pool_of_an_image_runs_its_command_user_and_env(runtime, tmp_path):
    path = str(tmp_path / "layout")
    config = {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo default"], "Env": ["A=1"], "WorkingDir": "/tmp", "User": "app"}
    write_layout(path, [tar_layer(busybox_files())], config, tag="1")
    with runtime.pool(size=1, image=f"oci:{path}:1") as pool:
        assert pool.run().stdout == "default\n"
        assert pool.run(['echo "$A $HOME $(id -un) $(pwd)"']).stdout == "1 /home/app app /tmp\n"  # a command replaces Cmd
    runtime.finish_deletes()


@pytest.mark.parametrize(
    "size, options, words",
    [
        (0, {}, "positive whole number"),
        (True, {}, "positive whole number"),
        (2, {"env": {"A": "1"}}, "env is a job's"),
        (2, {"timeout": 3}, "timeout is a job's"),
        (2, {"colour": "red"}, "no option 'colour'"),
        (2, {"stdin": b"data"}, "stdin is True"),
        (2, {"user": "nobody-here"}, "no 'nobody-here'"),
        (2, {"image": "nope/missing:1"}, "not in the store"),
    ],
)
def test_bad_input_makes_nothing(runtime, size, options, words):
    with pytest.raises(ocirt.OcirtError, match=words):
        runtime.pool(size=size, **options)
    assert runtime.list() == []
    bundles = os.path.join(runtime.tmp_dir, "bundles")
    assert not os.path.isdir(bundles) or os.listdir(bundles) == []


def test_a_crashed_owners_pooled_containers_go_when_the_store_is_opened(tmp_path):
    root = str(tmp_path / "root")
    script = textwrap.dedent(f"""
        import sys, ocirt
        rt = ocirt.Runtime.open({root!r})
        pool = rt.pool(size=2)
        assert pool.wait_ready(60)
        print("ready", flush=True)
        sys.stdin.read()
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert owner.stdout.readline() == b"ready\n"
    finally:
        owner.kill()
        owner.wait()
    with ocirt.Runtime.open(root) as rt:
        assert rt.list() == []
    reap_orphans()  # the pooled containers' conmons ended as this subreaper's children
    assert os.listdir(os.path.join(root, "bundles")) == []


def test_the_stub_is_built_static():
    head = open(STUB, "rb").read(4096)
    assert head[:4] == b"\x7fELF" and b"ld-linux" not in head
    if shutil.which("file"):
        assert "statically linked" in subprocess.run(["file", STUB], capture_output=True, text=True).stdout
    json.dumps({})


def test_run_takes_a_pool_and_asyncio_awaits_one(runtime):
    with runtime.pool(size=1) as pool:
        assert runtime.run(["echo", "pooled"], pool=pool).stdout == "pooled\n"
        with runtime.run(["sleep", "1000"], pool=pool, detach=True, name="via-run") as c:
            assert runtime.get("via-run") is c
        assert pool.stats().taken == 2

    async def on_a_loop() -> None:
        rt = aio.AsyncRuntime(runtime=runtime)
        async with await rt.pool(2) as pool:
            assert await pool.wait_ready(60)
            results = await asyncio.gather(*(pool.run(["echo", str(i)]) for i in range(3)))
            assert [r.stdout for r in results] == ["0\n", "1\n", "2\n"]
            c = await pool.start(["sleep", "1000"])
            await c.delete(force=True)
        await rt.finish_deletes()

    asyncio.run(on_a_loop())
    runtime.finish_deletes()
    assert runtime.list() == []


def test_an_interrupt_while_a_pool_starts_leaves_no_container(runtime, monkeypatch):
    start = threading.Thread.start

    def interrupted(thread):
        if thread.name == "ocirt-pool":
            raise KeyboardInterrupt  # as a Ctrl-C between the first create and the refill threads
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", interrupted)
    with pytest.raises(KeyboardInterrupt):
        runtime.pool(size=2)
    assert runtime.containers() == {}  # the first container, made before, is deleted
