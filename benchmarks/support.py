"""What every benchmark shares: the profile, the margin, ABBA alternation and the runtime's own floor."""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from typing import Callable, List, NamedTuple, Optional, Tuple

from ocirt import native as _native

PROFILE = os.environ.get("OCIRT_BENCH_PROFILE", "full")
SHORT = PROFILE == "short"
MARGIN = 0.10  # a target missed by more than this fraction fails
WARMUP = 2

_ids = itertools.count()


def next_id(prefix: str) -> str:
    return f"ocirt-bench-{prefix}-{os.getpid()}-{next(_ids)}"


class Target(NamedTuple):
    goal: float  # what the issue asks
    bound: float  # what CI enforces until the goal is met


def report(benchmark, line: str, target: Target, **info: float) -> None:
    benchmark.extra_info.update(info, goal=target.goal, bound=target.bound)
    print(f"\n{line} (goal {target.goal:g}, CI bound {target.bound:g})")


def within(measured: float, target: float) -> bool:
    """`measured` (lower is better) meets `target` within MARGIN."""
    return measured <= target * (1 + MARGIN)


def at_least(measured: float, target: float) -> bool:
    """`measured` (higher is better) meets `target` within MARGIN."""
    return measured >= target * (1 - MARGIN)


def abba(benchmark, a: Callable[[], float], b: Callable[[], float], rounds: int) -> Tuple[List[float], List[float]]:
    """Run `a` and `b` (each returns its own measure) in ABBA order through
    pytest-benchmark; their measures, warm-up rounds left out."""
    times_a: List[float] = []
    times_b: List[float] = []
    order = itertools.cycle([(a, times_a, b, times_b), (b, times_b, a, times_a)])

    def pair() -> None:
        first, first_times, second, second_times = next(order)
        first_times.append(first())
        second_times.append(second())

    benchmark.pedantic(pair, rounds=rounds, warmup_rounds=WARMUP, iterations=1)
    return times_a[WARMUP:], times_b[WARMUP:]


QUIET = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)


def runc_lifecycle(bundle: str, tmp: str) -> float:
    """The floor: the runtime's own verbs, stdio on /dev/null, the exit seen through a pidfd."""
    cid = next_id("runc")
    pidfile = os.path.join(tmp, cid + ".pid")
    t0 = time.perf_counter()
    subprocess.run(["runc", "create", "--bundle", bundle, "--pid-file", pidfile, cid], **QUIET)
    try:
        with open(pidfile) as f:
            pid = int(f.read())
        subprocess.run(["runc", "start", cid], **QUIET)
        _native.wait_pids([pid], 30)
        os.waitpid(pid, 0)  # this process is a subreaper: the init ends as our child
    finally:
        subprocess.run(["runc", "delete", "--force", cid], **QUIET)
    elapsed = time.perf_counter() - t0
    os.unlink(pidfile)
    return elapsed


def runc_run(bundle: str) -> float:
    """The command line's floor: `runc run` of `bundle`, stdio on /dev/null; its seconds."""
    t0 = time.perf_counter()
    subprocess.run(["runc", "run", "--bundle", bundle, next_id("run")], **QUIET)
    return time.perf_counter() - t0


DEBIAN_PYTHON = "/usr/bin/python3"


def debian_python(tmp: str) -> Optional[List[str]]:
    """A Debian user's interpreter for ocirt, as its command line is timed:
    a venv of Debian's own /usr/bin/python3 (which starts in about 10 ms,
    against 60 ms for a version manager's shim) that imports this source
    tree, built extension and stub included, through a .pth line. None
    where there is no such interpreter or it cannot import ocirt's native
    layer (another CPython minor version)."""
    if not os.access(DEBIAN_PYTHON, os.X_OK):
        return None
    venv = os.path.join(tmp, "debian-venv")
    made = subprocess.run([DEBIAN_PYTHON, "-m", "venv", "--without-pip", venv], capture_output=True)
    python = os.path.join(venv, "bin", "python3")
    if made.returncode != 0:
        return None
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True)
    with open(os.path.join(site.stdout.strip(), "ocirt-source.pth"), "w") as f:
        f.write(os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + "\n")
    works = subprocess.run([python, "-c", "import ocirt._native, ocirt.cli"], capture_output=True)
    return [python, "-m", "ocirt"] if works.returncode == 0 else None
