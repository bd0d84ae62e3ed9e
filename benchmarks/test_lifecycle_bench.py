"""Speed targets, as ratios against the runtime measured in the same run.

- Lifecycle of a busybox `true` container (create, start, wait, exit code,
  delete): ocirt at most 1.3x the floor of `runc create; runc start;
  runc delete` (plus waiting for the exit) per container.
- Exit noticed within 2 ms: from the moment a pidfd on the container's
  process reports its exit to the moment `Container.wait()` returns.

Run: pytest benchmarks/  (the targets are checked by test_targets, last).
"""

from __future__ import annotations

import itertools
import os
import signal
import statistics
import subprocess
import threading
import time

import pytest

import ocirt
from ocirt import native as _native
from ocirt.conmon import reap_if_child

ROUNDS = int(os.environ.get("OCIRT_BENCH_ROUNDS", "40"))
LIFECYCLE_RATIO_TARGET = 1.3
EXIT_NOTICE_TARGET_S = 0.002

results: dict = {}
_ids = itertools.count()


def next_id(prefix: str) -> str:
    return f"ocirt-bench-{prefix}-{os.getpid()}-{next(_ids)}"


@pytest.fixture(scope="module")
def bundle(rootfs, base_spec, tmp_path_factory):
    import json

    d = tmp_path_factory.mktemp("bench-bundle")
    spec = dict(base_spec, root={"path": rootfs, "readonly": True})
    spec["process"] = dict(spec["process"], args=["true"])
    (d / "config.json").write_text(json.dumps(spec))
    return str(d)


def runc_lifecycle(bundle: str, tmp: str) -> None:
    """The floor: the runtime's own verbs, stdio on /dev/null, exit via pidfd."""
    cid = next_id("runc")
    pidfile = os.path.join(tmp, cid + ".pid")
    quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    subprocess.run(["runc", "create", "--bundle", bundle, "--pid-file", pidfile, cid], **quiet)
    with open(pidfile) as f:
        pid = int(f.read())
    subprocess.run(["runc", "start", cid], **quiet)
    _native.wait_pids([pid], 30)
    reap_if_child(pid)  # this process is a subreaper: the init ends as our child
    subprocess.run(["runc", "delete", cid], **quiet)
    os.unlink(pidfile)


def ocirt_lifecycle(rt: ocirt.Runtime, bundle: str) -> None:
    c = rt.create(next_id("ocirt"), bundle)
    c.start()
    assert c.wait(30) == 0
    c.delete()


def test_runc_lifecycle(benchmark, bundle, tmp_path):
    benchmark.pedantic(runc_lifecycle, args=(bundle, str(tmp_path)), rounds=ROUNDS, warmup_rounds=2)


def test_ocirt_lifecycle(benchmark, bundle, tmp_path):
    rt = ocirt.Runtime(tmp_path / "rt")
    benchmark.pedantic(ocirt_lifecycle, args=(rt, bundle), rounds=ROUNDS, warmup_rounds=2)


def test_lifecycle_ratio(bundle, tmp_path):
    """ocirt and the floor alternately, so both see the same machine noise."""
    rt = ocirt.Runtime(tmp_path / "rt")
    floor, ours = [], []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        runc_lifecycle(bundle, str(tmp_path))
        t1 = time.perf_counter()
        ocirt_lifecycle(rt, bundle)
        t2 = time.perf_counter()
        floor.append(t1 - t0)
        ours.append(t2 - t1)
    results["runc"] = statistics.median(floor)
    results["ocirt"] = statistics.median(ours)


def test_exit_notice_latency(benchmark, make_bundle, tmp_path):
    """Delay between the process's exit (seen by a pidfd) and wait() returning."""
    rt = ocirt.Runtime(tmp_path / "rt")
    bundle = make_bundle("sleep", "1000")
    delays = []

    def one() -> None:
        c = rt.create(next_id("exit"), bundle)
        c.start()
        pidfd = _native.pidfd_open(c.state.pid)
        seen = []
        watcher = threading.Thread(target=lambda: (_native.wait_pids([c.state.pid], 30), seen.append(time.perf_counter())))
        watcher.start()
        _native.pidfd_send_signal(pidfd, signal.SIGKILL)
        os.close(pidfd)
        code = c.wait(30)
        returned = time.perf_counter()
        watcher.join()
        delays.append(returned - seen[0])
        assert code == 137
        c.delete()

    benchmark.pedantic(one, rounds=ROUNDS // 2, warmup_rounds=1)
    benchmark.extra_info["exit_notice_median_ms"] = statistics.median(delays) * 1000
    results["exit_notice"] = statistics.median(delays)


def test_targets():
    """The ratios; printed always, asserted unless OCIRT_BENCH_REPORT_ONLY=1."""
    if not {"runc", "ocirt", "exit_notice"} <= results.keys():
        pytest.skip("run the whole benchmarks/ module to compare")
    ratio = results["ocirt"] / results["runc"]
    print(
        f"\nlifecycle: ocirt {results['ocirt'] * 1000:.1f} ms, runc floor {results['runc'] * 1000:.1f} ms, "
        f"ratio {ratio:.2f} (target <= {LIFECYCLE_RATIO_TARGET})"
        f"\nexit noticed {results['exit_notice'] * 1000:.2f} ms after the process exited "
        f"(median; target <= {EXIT_NOTICE_TARGET_S * 1000:.0f} ms)"
    )
    if os.environ.get("OCIRT_BENCH_REPORT_ONLY") == "1":
        return
    assert ratio <= LIFECYCLE_RATIO_TARGET
    assert results["exit_notice"] <= EXIT_NOTICE_TARGET_S
