"""Speed targets, each a comparison with a floor measured in the same run.

Every test measures ocirt and its floor in alternating (ABBA) order, leaves
the warm-up rounds out, records both in pytest-benchmark's extra_info, and
asserts its own target: a target missed by more than MARGIN (a fraction)
fails. OCIRT_BENCH_PROFILE=short (CI) runs fewer rounds.

- Lifecycle of a busybox `true` container (create, start, wait for the exit
  code, delete) at most LIFECYCLE_RATIO times the floor `runc create; runc
  start; wait; runc delete`; with the store-less Runtime and with
  Runtime.open (SQLite and lock files).
- Exit noticed: `Container.wait()` returns at most EXIT_NOTICE_S after a
  pidfd poll, in the same thread, sees the process exit.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import statistics
import subprocess
import time
from typing import Callable, List, Tuple

import pytest

import ocirt
from ocirt import native as _native

PROFILE = os.environ.get("OCIRT_BENCH_PROFILE", "full")
ROUNDS = {"short": 24, "full": 40}[PROFILE]
WARMUP = 2
MARGIN = 0.10

LIFECYCLE_RATIO = 1.3
EXIT_NOTICE_S = 0.002

_ids = itertools.count()


def next_id(prefix: str) -> str:
    return f"ocirt-bench-{prefix}-{os.getpid()}-{next(_ids)}"


def within(measured: float, target: float) -> bool:
    return measured <= target * (1 + MARGIN)


def abba(benchmark, a: Callable[[], float], b: Callable[[], float]) -> Tuple[List[float], List[float]]:
    """Run `a` and `b` (each returns its own duration) in ABBA order through
    pytest-benchmark; their durations, warm-up rounds left out."""
    times_a: List[float] = []
    times_b: List[float] = []
    order = itertools.cycle([(a, times_a, b, times_b), (b, times_b, a, times_a)])

    def pair() -> None:
        first, first_times, second, second_times = next(order)
        first_times.append(first())
        second_times.append(second())

    benchmark.pedantic(pair, rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
    return times_a[WARMUP:], times_b[WARMUP:]


@pytest.fixture(scope="module")
def bundle(rootfs, base_spec, tmp_path_factory):
    d = tmp_path_factory.mktemp("bench-bundle")
    spec = dict(base_spec, root={"path": rootfs, "readonly": True})
    spec["process"] = dict(spec["process"], args=["true"])
    (d / "config.json").write_text(json.dumps(spec))
    return str(d)


def runc_lifecycle(bundle: str, tmp: str) -> float:
    """The floor: the runtime's own verbs, stdio on /dev/null, the exit seen through a pidfd."""
    cid = next_id("runc")
    pidfile = os.path.join(tmp, cid + ".pid")
    quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    t0 = time.perf_counter()
    subprocess.run(["runc", "create", "--bundle", bundle, "--pid-file", pidfile, cid], **quiet)
    try:
        with open(pidfile) as f:
            pid = int(f.read())
        subprocess.run(["runc", "start", cid], **quiet)
        _native.wait_pids([pid], 30)
        os.waitpid(pid, 0)  # this process is a subreaper: the init ends as our child
    finally:
        subprocess.run(["runc", "delete", "--force", cid], **quiet)
    elapsed = time.perf_counter() - t0
    os.unlink(pidfile)
    return elapsed


def ocirt_lifecycle(rt: ocirt.Runtime, bundle: str) -> float:
    t0 = time.perf_counter()
    c = rt.create(next_id("ocirt"), bundle)
    try:
        c.start()
        assert c.wait(30) == 0
    finally:
        c.delete(force=True)
    return time.perf_counter() - t0


@pytest.mark.parametrize("store", [False, True], ids=["store-less", "Runtime.open"])
def test_lifecycle_ratio(benchmark, bundle, tmp_path, store):
    rt = ocirt.Runtime.open(str(tmp_path / "root")) if store else ocirt.Runtime(tmp_path / "rt")
    try:
        floor, ours = abba(benchmark, lambda: runc_lifecycle(bundle, str(tmp_path)), lambda: ocirt_lifecycle(rt, bundle))
    finally:
        rt.close()
    ratio = statistics.median(ours) / statistics.median(floor)
    benchmark.extra_info.update(
        floor_ms=statistics.median(floor) * 1000, ocirt_ms=statistics.median(ours) * 1000, ratio=ratio, target=LIFECYCLE_RATIO
    )
    print(f"\nlifecycle ({'Runtime.open' if store else 'store-less'}): ocirt {statistics.median(ours) * 1000:.1f} ms, "
          f"runc floor {statistics.median(floor) * 1000:.1f} ms, ratio {ratio:.2f} (target <= {LIFECYCLE_RATIO})")  # fmt: skip
    assert within(ratio, LIFECYCLE_RATIO), f"lifecycle ratio {ratio:.2f} misses {LIFECYCLE_RATIO} by more than {MARGIN:.0%}"


def test_exit_notice_latency(benchmark, make_bundle, tmp_path):
    """B - A: A is a pidfd poll seeing the SIGKILLed process exit; B is wait() returning; same thread, alternated."""
    rt = ocirt.Runtime(tmp_path / "rt")
    bundle = make_bundle("sleep", "1000")

    def killed(notice: Callable[[ocirt.Container], None]) -> float:
        c = rt.create(next_id("exit"), bundle)
        try:
            c.start()
            pidfd = _native.pidfd_open(c.state.pid)
            try:
                t0 = time.perf_counter()
                _native.pidfd_send_signal(pidfd, signal.SIGKILL)
                notice(c)
                elapsed = time.perf_counter() - t0
            finally:
                os.close(pidfd)
            assert c.wait(30) == 137
        finally:
            c.delete(force=True)
        return elapsed

    process_exit, wait_returned = abba(
        benchmark, lambda: killed(lambda c: _native.wait_pids([c.state.pid], 30)), lambda: killed(lambda c: c.wait(30))
    )
    latency = statistics.median(wait_returned) - statistics.median(process_exit)
    benchmark.extra_info.update(exit_notice_ms=latency * 1000, target_ms=EXIT_NOTICE_S * 1000)
    print(f"\nexit noticed {latency * 1000:.2f} ms after the process exited (median; target <= {EXIT_NOTICE_S * 1000:.0f} ms)")
    assert within(latency, EXIT_NOTICE_S), f"exit noticed {latency * 1000:.2f} ms after the exit"
