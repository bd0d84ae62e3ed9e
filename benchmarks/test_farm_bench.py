"""Test-farm targets: many containers at once, results early, a light manager.

Each is measured against a reference in the same run (alternating where
both are timed). Each has the goal its issue set and the bound CI holds it
to (failing beyond MARGIN): where the goal is not met yet, the bound is
what this code reaches on these 2-core machines with room for their noise,
so that a regression fails while the goal stays visible in the output.

- Time to result: create to exit code and output in hand (the delete
  overlapped, in the background) against the floor's whole create, start,
  wait and delete.
- Throughput with 4 at once, from threads and from asyncio, against the
  floor run by 4 parallel workers.
- The managing process's CPU (getrusage, its own threads: the runtime's
  processes are not counted, and nothing is subtracted) per lifecycle.
- Runtime.list() of many live containers, per container, and no process
  spawned.
- `ocirt run --rm busybox true` against `runc run` on the same rootfs.
- asyncio with ASYNC_CONTAINERS containers 8 at a time: the thread count
  stays what it was.
- podman run --rm against ocirt's lifecycle (skipped, saying so, where
  podman is not installed).
- Jobs through dask.distributed (a LocalCluster of one worker process on
  this host, 4 at once) against the churn helper's 4 threads.
"""

from __future__ import annotations

import asyncio
import multiprocessing.resource_tracker
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from typing import Callable, List

import pytest

import ocirt
from ocirt import native as _native
from ocirt.aio import AsyncRuntime, run_jobs as arun_jobs
from ocirt.churn import Job, run_jobs
from tests.cli_support import reap_orphans
from tests.dask_support import local_cluster
from tests.podman_support import PODMAN, Podman

from .support import MARGIN, QUIET, SHORT, Target, abba, at_least, next_id, report, runc_lifecycle, runc_run, within

# 0.82-0.90 in the runs of 2026-12-02; 1.07-1.21 on 2026-12-03 with that code and this alike (the floor's
# delete, which ours overlaps, took a smaller share of its lifecycle that hour).
TIME_TO_RESULT = Target(goal=0.9, bound=1.2)
THROUGHPUT = Target(goal=0.9, bound=0.75)
MANAGER_CPU_GOAL_S = 0.0010  # the goal: the manager's CPU seconds per lifecycle
# CI holds the manager's CPU to a multiple of the floor driver's own (three
# subprocess.run and a pidfd wait), measured alternately in the same run: in
# absolute terms it went from 5.9 to 8.7 ms with the VM's speed alone.
MANAGER_CPU_BOUND = 4.5  # 2.5-3.2x in the runs of 2026-12-02; 4.4x on 2026-12-03, the floor driver's own CPU lower that hour
LIST_PER_CONTAINER_S = Target(goal=50e-6, bound=160e-6)  # an absolute time: 92-151 us in the runs of 2026-11-29, as the machine's speed went
CLI_RATIO = Target(goal=2.0, bound=7.0)  # Python's own start alone is 1.5-2x `runc run` on these machines
# podman here runs with no network, a store of its own and its cleanup off the clock (see tests/podman_support.py):
# 3.6-3.9x measured on these machines, whose runc floor is 60+ ms.
PODMAN_RATIO = Target(goal=6.0, bound=3.0)
DASK_RATIO = Target(goal=0.8, bound=0.8)  # a task's trip through the scheduler, and a worker process of its own
ASYNC_CONTAINERS = 40 if SHORT else 200
LIVE_CONTAINERS = 50 if SHORT else 200
BATCH = 16 if SHORT else 40  # lifecycles per throughput measurement
ROUNDS = 8 if SHORT else 20


def test_time_to_result(benchmark, bundle, tmp_path):
    rt = ocirt.Runtime(tmp_path / "rt")

    def to_result() -> float:
        t0 = time.perf_counter()
        c = rt.create(next_id("ttr"), bundle)
        try:
            c.start()
            assert c.wait(30) == 0
            list(c.logs())
        except BaseException:
            c.delete(force=True)
            raise
        elapsed = time.perf_counter() - t0
        rt.delete_later(c)
        rt.finish_deletes()  # before the next round: nothing overlaps the floor
        return elapsed

    try:
        floor, ours = abba(benchmark, lambda: runc_lifecycle(bundle, str(tmp_path)), to_result, ROUNDS * 2)
    finally:
        rt.close()
    ratio = statistics.median(ours) / statistics.median(floor)
    report(benchmark, f"time to result: ocirt {statistics.median(ours) * 1000:.1f} ms, floor's whole lifecycle "
           f"{statistics.median(floor) * 1000:.1f} ms, ratio {ratio:.2f}", TIME_TO_RESULT, ratio=ratio)  # fmt: skip
    assert within(ratio, TIME_TO_RESULT.bound), f"time to result {ratio:.2f} of the floor misses {TIME_TO_RESULT.bound} by more than {MARGIN:.0%}"


def floor_batch(bundle: str, tmp: str, workers: int) -> float:
    """Lifecycles per second of the floor, `workers` threads running BATCH in all."""
    left = iter(range(BATCH))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                if next(left, None) is None:
                    return
            runc_lifecycle(bundle, tmp)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return BATCH / (time.perf_counter() - t0)


@pytest.mark.parametrize("driver", ["threads", "asyncio"])
def test_throughput_four_at_once(benchmark, bundle, tmp_path, driver):
    rt = ocirt.Runtime(tmp_path / "rt")
    jobs = [Job(bundle=bundle) for _ in range(BATCH)]

    def ours() -> float:
        t0 = time.perf_counter()
        if driver == "threads":
            results = run_jobs(rt, jobs, concurrency=4)
        else:
            results = asyncio.run(arun_jobs(AsyncRuntime(runtime=rt), jobs, concurrency=4))
        elapsed = time.perf_counter() - t0  # every container deleted by now
        assert [r.exit_code for r in results] == [0] * BATCH, [r.error for r in results if r.error]
        return BATCH / elapsed

    try:
        floor, mine = abba(benchmark, lambda: floor_batch(bundle, str(tmp_path), 4), ours, max(4, ROUNDS // 2))
    finally:
        rt.close()
    ratio = statistics.median(mine) / statistics.median(floor)
    report(benchmark, f"throughput, 4 at once ({driver}): ocirt {statistics.median(mine):.1f}/s, floor {statistics.median(floor):.1f}/s, "
           f"ratio {ratio:.2f}", THROUGHPUT, ratio=ratio)  # fmt: skip
    assert at_least(ratio, THROUGHPUT.bound), f"throughput {ratio:.2f} of the floor misses {THROUGHPUT.bound} by more than {MARGIN:.0%}"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def test_manager_cpu_per_lifecycle(benchmark, bundle, tmp_path):
    rt = ocirt.Runtime(tmp_path / "rt")

    def ours() -> float:
        c0 = cpu_seconds()
        for _ in range(BATCH):
            c = rt.create(next_id("cpu"), bundle)
            c.start()
            c.wait(30)
            c.delete()
        return (cpu_seconds() - c0) / BATCH

    def floor() -> float:
        c0 = cpu_seconds()
        for _ in range(BATCH):
            runc_lifecycle(bundle, str(tmp_path))
        return (cpu_seconds() - c0) / BATCH

    try:
        floor_cpu, cpu = abba(benchmark, floor, ours, max(4, ROUNDS // 2))
    finally:
        rt.close()
    mine, theirs = statistics.median(cpu), statistics.median(floor_cpu)
    ratio = mine / theirs
    target = Target(goal=MANAGER_CPU_GOAL_S / theirs, bound=MANAGER_CPU_BOUND)  # the goal of 1 ms, over this run's floor
    report(benchmark, f"manager CPU: {mine * 1000:.2f} ms per lifecycle (goal {MANAGER_CPU_GOAL_S * 1000:g} ms), "
           f"{ratio:.2f}x the floor driver's own {theirs * 1000:.2f} ms", target, cpu_ms=mine * 1000, ratio=ratio)  # fmt: skip
    assert within(ratio, MANAGER_CPU_BOUND), f"{mine * 1000:.2f} ms of CPU per lifecycle, {ratio:.2f}x the floor driver's, misses {MANAGER_CPU_BOUND}"


def test_list_of_live_containers(benchmark, make_bundle, tmp_path, monkeypatch):
    root = str(tmp_path / "root")
    bundle = make_bundle("sleep", "1000")
    made = ocirt.Runtime.open(root)
    try:
        for _ in range(LIVE_CONTAINERS):
            made.create(next_id("live"), bundle).start()
        spawned: List[str] = []
        spawn, popen_init = _native.spawn, subprocess.Popen.__init__

        def counting_spawn(path, *args, **kwargs):  # type: ignore[no-untyped-def]
            spawned.append(path)
            return spawn(path, *args, **kwargs)

        def counting_popen(self, args, *rest, **kwargs):  # type: ignore[no-untyped-def]
            spawned.append(str(args))
            return popen_init(self, args, *rest, **kwargs)

        monkeypatch.setattr(_native, "spawn", counting_spawn)
        monkeypatch.setattr(subprocess.Popen, "__init__", counting_popen)
        with ocirt.Runtime.open(root) as other:  # another process's view, as `ocirt ps` has it
            times: List[float] = []

            def listing() -> None:
                t0 = time.perf_counter()
                found = other.list()
                times.append((time.perf_counter() - t0) / len(found))
                assert len(found) == LIVE_CONTAINERS and all(c.state.status is ocirt.ContainerStatus.RUNNING for c in found)

            benchmark.pedantic(listing, rounds=ROUNDS, warmup_rounds=1, iterations=1)
        monkeypatch.undo()
    finally:
        for c in made.list():
            c.delete(force=True)
        made.close()
    per = statistics.median(times)
    report(benchmark, f"list(): {per * 1e6:.1f} us per live container, {len(spawned)} processes spawned", LIST_PER_CONTAINER_S,
           us_per_container=per * 1e6)  # fmt: skip
    assert not spawned, f"list() spawned {spawned[:3]}"
    assert within(per, LIST_PER_CONTAINER_S.bound), f"list() takes {per * 1e6:.1f} us per container"


def ocirt_command() -> List[str]:
    """The `ocirt` console script of this interpreter, as a user runs it."""
    script = os.path.join(os.path.dirname(sys.executable), "ocirt")
    return [script] if os.access(script, os.X_OK) else [sys.executable, "-m", "ocirt"]


def test_cli_run_rm_against_runc_run(benchmark, bundle, tmp_path):
    env = dict(os.environ, OCIRT_ROOT=str(tmp_path / "root"))
    fs_bundle = bundle

    def ocirt_run() -> float:
        t0 = time.perf_counter()
        subprocess.run([*ocirt_command(), "run", "--rm", "busybox", "true"], env=env, **QUIET)
        return time.perf_counter() - t0

    try:
        ocirt_run()  # builds the rootfs cache once
        floor, ours = abba(benchmark, lambda: runc_run(fs_bundle), ocirt_run, ROUNDS)
    finally:
        reap_orphans()  # the CLI's conmons end as this subreaper's children
    interpreter = min(timed(lambda: subprocess.run([sys.executable, "-c", "pass"], **QUIET)) for _ in range(5))
    ratio = statistics.median(ours) / statistics.median(floor)
    report(benchmark, f"ocirt run --rm busybox true: {statistics.median(ours) * 1000:.0f} ms, runc run {statistics.median(floor) * 1000:.0f} ms, "
           f"ratio {ratio:.2f}; the interpreter alone starts in {interpreter * 1000:.0f} ms", CLI_RATIO,
           ratio=ratio, interpreter_ms=interpreter * 1000)  # fmt: skip
    assert within(ratio, CLI_RATIO.bound), f"ocirt run is {ratio:.2f}x runc run"


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def test_asyncio_many_containers_take_no_threads(benchmark, bundle, tmp_path):
    rt = ocirt.Runtime(tmp_path / "rt")
    threads_before = len(os.listdir("/proc/self/task"))
    peak: List[int] = []

    def batch() -> None:
        jobs = [Job(bundle=bundle) for _ in range(ASYNC_CONTAINERS)]
        count_threads = lambda r: peak.append(len(os.listdir("/proc/self/task")))  # noqa: E731
        results = asyncio.run(arun_jobs(AsyncRuntime(runtime=rt), jobs, concurrency=8, on_result=count_threads))
        assert [r.exit_code for r in results] == [0] * ASYNC_CONTAINERS

    try:
        benchmark.pedantic(batch, rounds=1, iterations=1)
    finally:
        rt.close()
    report(benchmark, f"asyncio: {ASYNC_CONTAINERS} containers 8 at a time, threads {threads_before} before, at most {max(peak)} during",
           Target(threads_before, threads_before), threads=max(peak))  # fmt: skip
    assert max(peak) == threads_before


def test_podman_against_ocirt(benchmark, bundle, tmp_path):
    if PODMAN is None:
        pytest.skip("podman is not installed: the podman comparison did not run")
    podman = Podman()
    rt = ocirt.Runtime(tmp_path / "rt")
    rootfs = _rootfs_of(bundle)

    def podman_run() -> float:
        t0 = time.perf_counter()
        subprocess.run(podman.argv("run", "--rm", "--rootfs", rootfs, "true"), **QUIET)  # QUIET checks: a failing podman is no reference
        took = time.perf_counter() - t0
        _settle()  # podman's cleanup goes on after the run returns: not on ocirt's clock
        return took

    def ocirt_lifecycle() -> float:
        t0 = time.perf_counter()
        c = rt.create(next_id("pm"), bundle)
        c.start()
        c.wait(30)
        c.delete()
        return time.perf_counter() - t0

    try:
        theirs, ours = abba(benchmark, podman_run, ocirt_lifecycle, max(4, ROUNDS // 2))
    finally:
        rt.close()
        podman.close()
        reap_orphans()  # podman's conmons end as this subreaper's children
    ratio = statistics.median(theirs) / statistics.median(ours)
    report(benchmark, f"podman run --rm {statistics.median(theirs) * 1000:.0f} ms, ocirt {statistics.median(ours) * 1000:.0f} ms: "
           f"{ratio:.1f}x", PODMAN_RATIO, ratio=ratio)  # fmt: skip
    assert at_least(ratio, PODMAN_RATIO.bound)


def _settle() -> None:
    """Wait for the podman and conmon processes still running under this one (its subreaper)."""
    import psutil

    left = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.name() in ("podman", "conmon") and p.status() != psutil.STATUS_ZOMBIE:
                left.append(p.pid)
        except psutil.NoSuchProcess:
            pass
    assert _native.wait_pids(left, 60) == [], "podman's processes did not end"
    reap_orphans()


def _rootfs_of(bundle: str) -> str:
    import json

    with open(os.path.join(bundle, "config.json")) as f:
        return os.path.join(bundle, json.load(f)["root"]["path"])


@pytest.fixture(scope="module")
def resource_tracker() -> None:
    """Before the leak check's first look (see tests/test_dask.py)."""
    multiprocessing.resource_tracker.ensure_running()


def test_dask_against_the_churn_helper(benchmark, bundle, tmp_path, resource_tracker):
    distributed = pytest.importorskip("distributed")
    from ocirt.dask import OcirtPlugin, map_jobs

    rt = ocirt.Runtime(tmp_path / "rt")
    jobs = [Job(bundle=bundle) for _ in range(BATCH)]

    def churn() -> float:
        t0 = time.perf_counter()
        results = run_jobs(rt, jobs, concurrency=4)
        elapsed = time.perf_counter() - t0
        assert [r.exit_code for r in results] == [0] * BATCH
        return BATCH / elapsed

    try:
        with local_cluster(n_workers=1, threads_per_worker=4, processes=True, resources={"ocirt": 4},
                                      dashboard_address=":0", silence_logs=40) as cluster, distributed.Client(cluster) as client:  # fmt: skip
            client.register_plugin(OcirtPlugin(base=str(tmp_path / "dask")))

            def through_dask() -> float:
                t0 = time.perf_counter()
                results = list(map_jobs(client, jobs))
                elapsed = time.perf_counter() - t0
                assert sorted(r.exit_code for r in results) == [0] * BATCH, [r.error for r in results if r.error]
                return BATCH / elapsed

            own, dask_rate = abba(benchmark, churn, through_dask, max(4, ROUNDS // 2))
    finally:
        rt.close()
        reap_orphans()
    ratio = statistics.median(dask_rate) / statistics.median(own)
    report(benchmark, f"through Dask, 4 at once: {statistics.median(dask_rate):.1f}/s, churn helper {statistics.median(own):.1f}/s, "
           f"ratio {ratio:.2f}", DASK_RATIO, ratio=ratio)  # fmt: skip
    assert at_least(ratio, DASK_RATIO.bound), f"Dask throughput {ratio:.2f} of the churn helper's"
