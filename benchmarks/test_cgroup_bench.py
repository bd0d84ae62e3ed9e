"""Reading a container's cgroup: Container.stats() costs well under a
millisecond (a few small files read directly, no process), and so does
limits(). Measured on a running container; the bound holds within MARGIN."""

from __future__ import annotations

import statistics
import time
from typing import List

import ocirt

from .support import SHORT, next_id, within

STATS_BOUND_S = 0.0005  # "well under a millisecond"
CALLS = 200 if SHORT else 2000


def test_stats_call(benchmark, make_bundle, tmp_path):
    rt = ocirt.Runtime(tmp_path / "rt")
    c = rt.create(next_id("stats"), make_bundle("sleep", "1000"))
    try:
        c.start()
        times: List[float] = []

        def batch() -> None:
            t0 = time.perf_counter()
            for _ in range(CALLS):
                c.stats()
            times.append((time.perf_counter() - t0) / CALLS)

        benchmark.pedantic(batch, rounds=5, warmup_rounds=1, iterations=1)
        assert c.stats().pids_current == 1
    finally:
        c.delete(force=True)
        rt.close()
    per = statistics.median(times)
    print(f"\nContainer.stats(): {per * 1e6:.0f} us per call (bound {STATS_BOUND_S * 1e6:.0f} us)")
    benchmark.extra_info.update(us_per_call=per * 1e6, bound_us=STATS_BOUND_S * 1e6)
    assert within(per, STATS_BOUND_S), f"stats() takes {per * 1e6:.0f} us"
