"""Soak: many lifecycles with a mix of exit codes, kills, execs and OOM kills.

Every exit code must arrive (none lost, none wrong); afterwards no process,
fd, cgroup, mount or runtime state of ocirt's may remain, and the managing
process's memory must stay flat. OCIRT_BENCH_PROFILE=short (CI) runs 200
lifecycles, full 10,000.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import signal
from typing import Callable, Dict, List, Tuple

import psutil
import pytest

import ocirt

PROFILE = os.environ.get("OCIRT_BENCH_PROFILE", "full")

LIFECYCLES = {"short": 200, "full": 10_000}[PROFILE]
RSS_GROWTH_MAX = 8 * 1024 * 1024  # bytes the manager may grow by after warming up

_ids = itertools.count()


def cid() -> str:
    return f"ocirt-soak-{os.getpid()}-{next(_ids)}"


EXIT_CODES = 7  # containers exit with 0..6


@pytest.fixture(scope="module")
def bundles(rootfs, base_spec, tmp_path_factory) -> Dict[str, str]:
    """Bundles by kind: exit0..exit6, sleep, oom (a 16 MiB limit and a shell that takes 64 MB)."""
    kinds = {f"exit{code}": ["sh", "-c", f"exit {code}"] for code in range(EXIT_CODES)}
    kinds["sleep"] = ["sleep", "1000"]
    kinds["oom"] = ["sh", "-c", "x=$(head -c 64000000 /dev/zero | tr '\\0' a)"]
    made = {}
    for kind, args in kinds.items():
        d = tmp_path_factory.mktemp(f"soak-{kind}")
        spec = json.loads(json.dumps(base_spec))
        spec["root"] = {"path": rootfs, "readonly": True}
        spec["process"]["args"] = args
        if kind == "oom":
            spec["linux"].setdefault("resources", {})["memory"] = {"limit": 16 << 20, "swap": 16 << 20}
        (d / "config.json").write_text(json.dumps(spec))
        made[kind] = str(d)
    return made


def one_exit(rt: ocirt.Runtime, bundles: Dict[str, str], n: int) -> Tuple[int, int]:
    """A container exiting with a code of its own; (expected, got)."""
    code = n % EXIT_CODES
    c = rt.create(cid(), bundles[f"exit{code}"])
    try:
        c.start()
        return code, c.wait(30)
    finally:
        c.delete(force=True)


def one_kill(rt: ocirt.Runtime, bundles: Dict[str, str], n: int) -> Tuple[int, int]:
    c = rt.create(cid(), bundles["sleep"])
    try:
        c.start()
        c.kill(signal.SIGKILL)
        return 137, c.wait(30)
    finally:
        c.delete(force=True)


def one_exec(rt: ocirt.Runtime, bundles: Dict[str, str], n: int) -> Tuple[int, int]:
    """An exec exiting with its own code, then the container stopped: (expected, got) for the exec."""
    c = rt.create(cid(), bundles["sleep"])
    try:
        c.start()
        session = c.exec(["sh", "-c", f"exit {n % 5}"])
        got = session.wait(30)
        c.stop(timeout=0)
        assert c.state.exit_code == 137
        return n % 5, got
    finally:
        c.delete(force=True)


def one_oom(rt: ocirt.Runtime, bundles: Dict[str, str], n: int) -> Tuple[int, int]:
    c = rt.create(cid(), bundles["oom"])
    try:
        c.start()
        got = c.wait(60)
        assert c.state.oom_killed
        return 137, got
    finally:
        c.delete(force=True)


MIX: List[Tuple[str, Callable[..., Tuple[int, int]], int]] = [
    ("exit", one_exit, 10),
    ("kill", one_kill, 4),
    ("exec", one_exec, 4),
    ("oom", one_oom, 1),
]


@pytest.mark.timeout(max(300, LIFECYCLES // 2))  # about 80 ms a lifecycle: room to spare
def test_soak(benchmark, bundles, tmp_path):
    schedule = [kind for kind, _, weight in MIX for _ in range(weight)]
    runners = {kind: run for kind, run, _ in MIX}
    rt = ocirt.Runtime(tmp_path / "rt")
    me = psutil.Process()
    results: Dict[str, collections.Counter] = {kind: collections.Counter() for kind in runners}
    wrong: List[str] = []
    rss: List[int] = []

    def soak() -> None:
        for n in range(LIFECYCLES):
            kind = schedule[n % len(schedule)]
            expected, got = runners[kind](rt, bundles, n)
            results[kind]["ok" if got == expected else "wrong"] += 1
            if got != expected:
                wrong.append(f"{kind} #{n}: expected {expected}, got {got}")
            if n % max(1, LIFECYCLES // 20) == 0:
                rss.append(me.memory_info().rss)

    benchmark.pedantic(soak, rounds=1, iterations=1)
    rt.close()
    benchmark.extra_info.update(lifecycles=LIFECYCLES, results={k: dict(v) for k, v in results.items()}, rss=rss)
    print(f"\nsoak: {LIFECYCLES} lifecycles, {json.dumps({k: dict(v) for k, v in results.items()})}; "
          f"RSS {rss[1] / 2**20:.1f} -> {rss[-1] / 2**20:.1f} MiB")  # fmt: skip
    assert wrong == [], "lost or wrong exit codes:\n" + "\n".join(wrong[:20])
    assert rss[-1] - rss[1] <= RSS_GROWTH_MAX, f"the manager grew by {(rss[-1] - rss[1]) / 2**20:.1f} MiB"
    with open("/proc/self/mounts") as f:
        assert "ocirt" not in f.read()
    assert os.listdir(rt.dirs.containers) == [] and os.listdir(rt.dirs.exits) == [] and os.listdir(rt.dirs.sockets) == []
    # processes, fds, cgroups and runc state: the leak check around every benchmark
