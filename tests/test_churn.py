"""Churn on real containers: many jobs at bounded concurrency, results before cleanup, nothing left on any way out."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import ocirt
from ocirt.aio import AsyncRuntime, run_jobs as arun_jobs
from ocirt.churn import Job, run_jobs

from .cli_support import reap_orphans
from .observe import until


def started(gate, count: int, timeout: float = 60) -> None:
    """Until `count` containers signed in at the gate (each makes a started.* file; no event says so: look every ms)."""
    deadline = time.monotonic() + timeout
    while len([n for n in os.listdir(gate.path) if n.startswith("started.")]) < count:
        assert time.monotonic() < deadline, "the containers never started"
        time.sleep(0.001)


@pytest.fixture
def gated_bundle(make_bundle, gate):
    """A job that signs in at the gate, then blocks until released."""
    return make_bundle("sh", "-c", "mktemp /gate/started.XXXXXX; read x < /gate/go", edit=gate.mount)


def test_jobs_run_with_results_in_order(runtime, rootfs):
    jobs = [Job(["sh", "-c", f"echo out {i}; echo err {i} >&2; exit {i % 3}"], rootfs=rootfs) for i in range(7)]
    seen = []
    results = run_jobs(runtime, jobs, concurrency=3, on_result=lambda r: seen.append(r.index))
    assert [r.exit_code for r in results] == [i % 3 for i in range(7)]
    assert [r.stdout for r in results] == [f"out {i}\n" for i in range(7)]
    assert [r.stderr for r in results] == [f"err {i}\n" for i in range(7)]
    assert sorted(seen) == list(range(7))
    assert all(r.error is None and r.timings.deleted for r in results)  # deleted before run_jobs returned
    assert runtime.containers() == {}


def test_jobs_on_the_default_root_filesystem_with_env(runtime):
    [result] = run_jobs(runtime, [Job(["sh", "-c", "echo $GREETING > /written; cat /written"], env={"GREETING": "hi"})])
    assert result.ok and result.stdout == "hi\n"
    assert os.listdir(os.path.join(runtime.tmp_dir, "bundles")) == []  # each job's bundle went with it


@pytest.mark.parametrize(
    "job, words",
    [
        (lambda: Job("echo hi"), "list of non-empty strings"),
        (lambda: Job([]), "needs a cmd"),
        (lambda: Job(["true"], bundle="/b"), "give no cmd"),
        (lambda: Job(["true"], env={"A=B": "c"}), "invalid environment variable"),
        (lambda: Job(["true"], timeout=-1), "timeout"),
    ],
)
def test_bad_jobs_are_refused_when_made(job, words):
    with pytest.raises(ocirt.InvalidArgument, match=words):
        job()


def test_bad_arguments_are_refused_before_any_job_runs(runtime, rootfs):
    with pytest.raises(ocirt.InvalidArgument, match="Job objects"):
        run_jobs(runtime, [Job(["true"], rootfs=rootfs), "true"])  # type: ignore[list-item]
    with pytest.raises(ocirt.InvalidArgument, match="concurrency"):
        run_jobs(runtime, [Job(["true"], rootfs=rootfs)], concurrency=0)
    assert runtime.containers() == {} and not os.path.exists(os.path.join(runtime.tmp_dir, "bundles"))


def test_a_failing_job_is_removed_and_the_others_go_on(runtime, rootfs):
    jobs = [Job(["true"], rootfs=rootfs), Job(["/no/such/program"], rootfs=rootfs), Job(["true"], rootfs=rootfs)]
    results = run_jobs(runtime, jobs, concurrency=2)
    assert [r.exit_code for r in results] == [0, None, 0]
    assert isinstance(results[1].error, ocirt.ConmonError) and not results[1].ok
    assert runtime.containers() == {}


def test_a_job_past_its_timeout_is_killed(runtime, rootfs):
    [result] = run_jobs(runtime, [Job(["sleep", "1000"], rootfs=rootfs, timeout=0.2)])
    assert isinstance(result.error, ocirt.Timeout) and "still running after 0.2s" in str(result.error)
    assert runtime.containers() == {}


def test_an_error_in_the_callback_stops_every_job_and_removes_them(runtime, rootfs, gated_bundle, gate):
    def explode(result):
        raise RuntimeError("callback failed")

    jobs = [Job(["true"], rootfs=rootfs)] + [Job(bundle=gated_bundle) for _ in range(2)]
    with pytest.raises(RuntimeError, match="callback failed"):
        run_jobs(runtime, jobs, concurrency=3, on_result=explode)
    assert runtime.containers() == {}


def test_ctrl_c_removes_every_container(runtime, gated_bundle, gate):
    def interrupt_when_running():
        started(gate, 2)
        os.kill(os.getpid(), signal.SIGINT)

    helper = threading.Thread(target=interrupt_when_running)
    helper.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_jobs(runtime, [Job(bundle=gated_bundle) for _ in range(3)], concurrency=2)
    finally:
        helper.join()
    assert runtime.containers() == {}


def test_pooled_jobs_run_in_a_pool_per_root_and_leave_nothing(runtime, rootfs):
    jobs = [Job(["sh", "-c", f"echo out {i}; exit {i % 3}"], env={"I": str(i)}) for i in range(5)]
    jobs += [Job(["sh", "-c", "echo $I"], rootfs=rootfs, env={"I": "on a rootfs"}), Job(["sleep", "1000"], timeout=0.2)]
    results = run_jobs(runtime, jobs, concurrency=2, pool=True)
    assert [r.exit_code for r in results[:5]] == [i % 3 for i in range(5)] and [r.stdout for r in results[:5]] == [f"out {i}\n" for i in range(5)]
    assert results[5].stdout == "on a rootfs\n"
    assert isinstance(results[6].error, ocirt.Timeout)
    assert len({r.container_id for r in results}) == 7 and all(r.timings.started for r in results)
    assert runtime.containers() == {}  # the jobs' containers and both pools' ready ones


def test_ctrl_c_removes_every_pooled_container(runtime):
    def interrupt_when_running():
        until(lambda: len(runtime.list(status="running")) >= 2)
        os.kill(os.getpid(), signal.SIGINT)

    helper = threading.Thread(target=interrupt_when_running)
    helper.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_jobs(runtime, [Job(["sleep", "1000"]) for _ in range(3)], concurrency=2, pool=True)
    finally:
        helper.join()
    assert runtime.containers() == {}


def test_sigterm_removes_every_container_before_the_process_ends(tmp_path, gated_bundle, gate):
    script = textwrap.dedent(f"""
        import ocirt
        from ocirt.churn import Job, run_jobs
        rt = ocirt.Runtime({str(tmp_path / "rt")!r})
        run_jobs(rt, [Job(bundle={gated_bundle!r}) for _ in range(2)], concurrency=2)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    try:
        started(gate, 2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reap_orphans()
    assert proc.returncode == 1 and "Terminated" in err
    assert os.listdir(tmp_path / "rt" / "containers") == []
    # and, checked by the leak fixture: no runc container, no conmon, no cgroup


def test_a_failed_background_delete_is_reported(failing_runtime_path, make_runtime, make_bundle, new_id, monkeypatch):
    rt = make_runtime(runtime_path=failing_runtime_path)
    c = rt.create(new_id(), make_bundle("true"))
    c.start()
    c.wait(30)
    monkeypatch.setenv("OCIRT_FAKE_FAIL", "delete")
    rt.delete_later(c)
    with pytest.raises(ocirt.OcirtError, match=f"background delete failed: container {c.id}: .*delete failed on purpose"):
        rt.finish_deletes()
    monkeypatch.delenv("OCIRT_FAKE_FAIL")
    c.delete(force=True)


@pytest.fixture
def failing_runtime_path(fakes_dir):
    return os.path.join(fakes_dir, "runc-failing")


def test_asyncio_jobs_take_no_thread_each(runtime, rootfs):
    before = len(os.listdir("/proc/self/task"))
    peak = []

    async def main():
        async with AsyncRuntime(runtime=runtime) as art:
            jobs = [Job(["sh", "-c", f"echo {i}; exit {i % 2}"], rootfs=rootfs) for i in range(10)]
            return await arun_jobs(art, jobs, concurrency=4, on_result=lambda r: peak.append(len(os.listdir("/proc/self/task"))))

    results = asyncio.run(main())
    assert [r.exit_code for r in results] == [i % 2 for i in range(10)]
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(10)]
    assert max(peak) == before
    assert runtime.containers() == {}


def test_cancelling_asyncio_jobs_removes_every_container(runtime, gated_bundle, gate):
    async def main():
        art = AsyncRuntime(runtime=runtime)
        task = asyncio.ensure_future(arun_jobs(art, [Job(bundle=gated_bundle) for _ in range(3)], concurrency=2))
        while len([n for n in os.listdir(gate.path) if n.startswith("started.")]) < 2:
            await asyncio.sleep(0.001)  # the containers sign in from other processes: look between loop turns
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert runtime.containers() == {}
