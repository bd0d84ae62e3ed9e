"""Pools kept in the store under a name (`ocirt pool`, `run --pool`) on real
runc and conmon: jobs given to ready containers made by other processes,
the background fill, claims that never share a container, a dead ready
container passed over, bad input, and nothing left after `pool rm`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from typing import Iterator

import pytest

import ocirt
from ocirt import ContainerNotFound, InvalidState
from ocirt.named_pools import NamedPool
from ocirt.pool import STUB

from .cli_support import Ocirt, reap_orphans
from .observe import until

pytestmark = pytest.mark.skipif(not os.access(STUB, os.X_OK), reason="the stub is not built (pip install -e . builds it)")


@pytest.fixture
def pooled(ocirt: Ocirt) -> Iterator[Ocirt]:
    """The command line with a pool `p` of two busybox containers, removed at the end (after any fill)."""
    assert ocirt.ok("pool", "create", "--size", "2", "p", "busybox") == "p\n"
    yield ocirt
    ocirt("pool", "rm", "p")
    reap_orphans()


def ready(cli: Ocirt, name: str = "p") -> int:
    return {p["Name"]: p["Ready"] for p in json.loads(cli.ok("pool", "ls", "--format", "json"))}[name]


def wait_filled(cli: Ocirt, name: str = "p", size: int = 2) -> None:
    """Until the background fill has made the pool whole again (no notification crosses processes)."""
    rt = ocirt.Runtime.open(cli.root)
    try:
        pool = NamedPool(rt, name)
        until(lambda: len(pool.ready()) >= size)
    finally:
        rt.close()


def test_a_job_runs_in_a_ready_container_and_the_pool_fills_again(pooled):
    assert ready(pooled) == 2
    ids_before = {c["Id"] for c in json.loads(pooled.ok("ps", "-a", "--format", "json"))}
    proc = pooled("run", "--pool", "p", "--rm", "-e", "A=1", "-w", "/tmp", "--name", "job1", "sh", "-c", 'echo "$A $HOME"; pwd; exit 3')
    assert (proc.returncode, proc.stdout) == (3, "1 /root\n/tmp\n"), proc.stderr
    wait_filled(pooled)
    left = json.loads(pooled.ok("ps", "-a", "--format", "json"))
    assert len(left) == 2 and len(ids_before & {c["Id"] for c in left}) == 1  # one taken (and removed), one made
    assert pooled("run", "--pool", "p", "--rm", "no-such-command").returncode == 127
    wait_filled(pooled)


def test_a_detached_job_is_named_and_labelled_and_its_container_leaves_the_pool(pooled):
    cid = pooled.ok("run", "--pool", "p", "-d", "--name", "srv", "-l", "role=web", "sleep", "60").strip()
    shown = json.loads(pooled.ok("inspect", "srv"))[0]
    assert shown["Id"] == cid and shown["State"]["Status"] == "running"
    assert shown["Config"]["Labels"] == {"role": "web"}  # the pool's label went with the claim
    assert shown["Config"]["Cmd"] == ["sleep", "60"]
    pooled.ok("rm", "-f", "srv")
    wait_filled(pooled)


def test_concurrent_jobs_never_share_a_container(pooled):
    procs = [pooled.popen("run", "--pool", "p", "-d", "sleep", "60", stdout=subprocess.PIPE, text=True) for _ in range(4)]
    ids = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        ids.append(out.strip())
    assert len(set(ids)) == 4  # two ready, two made cold for the jobs that found none
    pooled.ok("rm", "-f", *ids)
    wait_filled(pooled)


def test_a_ready_container_whose_stub_died_is_passed_over(pooled):
    rt = ocirt.Runtime.open(pooled.root)
    try:
        os.kill(NamedPool(rt, "p").ready()[0].state.pid, signal.SIGKILL)  # the stub, waiting in runc's init
    finally:
        rt.close()
    assert pooled.ok("run", "--pool", "p", "--rm", "echo", "hi") == "hi\n"
    wait_filled(pooled)


def test_stdin_and_a_timeout_reach_the_job(ocirt):
    ocirt.ok("pool", "create", "--size", "1", "-i", "q", "busybox")
    try:
        assert ocirt("run", "--pool", "q", "--rm", "-i", "cat", input="piped\n").stdout == "piped\n"
        assert ocirt("run", "--pool", "q", "--rm", "--timeout", "1", "sleep", "30").returncode == 137
    finally:
        ocirt.ok("pool", "rm", "q")
        reap_orphans()


def test_prune_keeps_ready_containers_and_pool_rm_removes_them(pooled):
    pooled.ok("container", "prune")
    assert ready(pooled) == 2
    assert pooled.ok("pool", "rm", "p") == "p\n"
    assert json.loads(pooled.ok("ps", "-a", "--format", "json")) == []
    assert pooled.ok("pool", "ls", "-q") == ""


@pytest.mark.parametrize(
    "args, said",
    [
        (["run", "--pool", "p", "--rm", "-u", "1000", "true"], "--user is the pool's"),
        (["run", "--pool", "p", "--rm", "--network", "host", "true"], "--network is the pool's"),
        (["run", "--pool", "p", "--rm", "-t", "true"], "--tty is the pool's"),
        (["run", "--pool", "p", "-d", "--rm", "true"], "-d with --rm"),
        (["run", "--pool", "p", "--rm", "-i", "cat"], "-i needs a pool made with -i"),
        (["run", "--pool", "nosuch", "--rm", "true"], "no pool named 'nosuch'"),
        (["run", "--pool", "p", "--rm", "-e", "=x", "true"], "env"),
        (["pool", "create", "--size", "0", "z"], "--size"),
        (["pool", "create", "p"], "exists already"),
        (["pool", "create", "--rootfs", "/", "z", "busybox"], "not both"),
        (["pool", "create", "--pull", "never", "z", "nosuch:1"], "not in the store"),
    ],
)
def test_bad_input_is_refused_with_nothing_made(pooled, args, said):
    before = pooled.ok("ps", "-a", "-q")
    proc = pooled(*args)
    assert proc.returncode == 125 and said in proc.stderr, proc.stderr
    assert pooled.ok("ps", "-a", "-q") == before and pooled.ok("pool", "ls", "-q") == "p\n"


def test_pool_rm_of_an_unknown_pool_exits_1(ocirt):
    proc = ocirt("pool", "rm", "nosuch")
    assert proc.returncode == 1 and "no pool named 'nosuch'" in proc.stderr


def test_a_named_pool_needs_a_store(tmp_path):
    rt = ocirt.Runtime(tmp_path / "rt")
    try:
        with pytest.raises(InvalidState, match="store"):
            NamedPool(rt, "p")
    finally:
        rt.close()
    opened = ocirt.Runtime.open(str(tmp_path / "root"))
    try:
        with pytest.raises(ContainerNotFound):
            NamedPool(opened, "p")
    finally:
        opened.close()
