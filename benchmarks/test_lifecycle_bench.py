"""Speed targets, each a comparison with a floor measured in the same run.

Every test measures ocirt and its floor in alternating (ABBA) order, leaves
the warm-up rounds out, records both in pytest-benchmark's extra_info, and
asserts its own target: a target missed by more than MARGIN (a fraction)
fails. OCIRT_BENCH_PROFILE=short (CI) runs fewer rounds.

- Lifecycle of a busybox `true` container (create, start, wait for the exit
  code, delete) at most LIFECYCLE_RATIO (the goal: LIFECYCLE_GOAL) times
  the floor `runc create; runc start; wait; runc delete`; with the
  store-less Runtime and with Runtime.open (SQLite and lock files).
- Exit noticed: `Container.wait()` returns at most EXIT_NOTICE_S after a
  pidfd poll, in the same thread, sees the process exit.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from typing import Callable

import pytest

import ocirt
from ocirt import native as _native

from .support import MARGIN, SHORT, abba, next_id, runc_lifecycle, within

ROUNDS = 24 if SHORT else 40

LIFECYCLE_GOAL = 1.15  # what the test-farm issue asks
LIFECYCLE_RATIO = 1.3  # what CI holds it to until then (these machines' noise: 1.1 to 1.25 measured)
EXIT_NOTICE_S = 0.002


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
        floor, ours = abba(benchmark, lambda: runc_lifecycle(bundle, str(tmp_path)), lambda: ocirt_lifecycle(rt, bundle), ROUNDS)
    finally:
        rt.close()
    ratio = statistics.median(ours) / statistics.median(floor)
    benchmark.extra_info.update(
        floor_ms=statistics.median(floor) * 1000, ocirt_ms=statistics.median(ours) * 1000, ratio=ratio, target=LIFECYCLE_RATIO
    )
    print(f"\nlifecycle ({'Runtime.open' if store else 'store-less'}): ocirt {statistics.median(ours) * 1000:.1f} ms, "
          f"runc floor {statistics.median(floor) * 1000:.1f} ms, ratio {ratio:.2f} (goal {LIFECYCLE_GOAL}, CI bound {LIFECYCLE_RATIO})")  # fmt: skip
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

    try:
        process_exit, wait_returned = abba(
            benchmark, lambda: killed(lambda c: _native.wait_pids([c.state.pid], 30)), lambda: killed(lambda c: c.wait(30)), ROUNDS
        )
    finally:
        rt.close()
    latency = statistics.median(wait_returned) - statistics.median(process_exit)
    benchmark.extra_info.update(exit_notice_ms=latency * 1000, target_ms=EXIT_NOTICE_S * 1000)
    print(f"\nexit noticed {latency * 1000:.2f} ms after the process exited (median; target <= {EXIT_NOTICE_S * 1000:.0f} ms)")
    assert within(latency, EXIT_NOTICE_S), f"exit noticed {latency * 1000:.2f} ms after the exit"
