"""`ocirt bench`: churn N containers K at a time and report how it went.

A live progress bar (tqdm) while it runs; then throughput, latency
percentiles per phase of a container's life (see Timings), the exit codes,
and leak counts: what is left of the benchmark's containers afterwards
(runtime state, conmon processes, cgroups, run files), which must be none.
`--plot FILE.png` draws each phase's latency distribution (matplotlib, the
optional `plot` extra). Only the `bench` verb imports this module.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .churn import Job, Result, run_jobs
from .errors import InvalidArgument
from .runtime import Runtime
from .state import Timings

PERCENTILES = (50, 90, 99)
PHASES = [phase for phase, _, _ in Timings.PHASES] + ["total"]


def check_plot(path: Optional[str]) -> None:
    """InvalidArgument now, before any container runs, if the plot cannot be made."""
    if path is None:
        return
    if not path.endswith(".png"):
        raise InvalidArgument(f"--plot writes a PNG file: {path!r} does not end in .png")
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise InvalidArgument(f"--plot: directory {os.path.dirname(os.path.abspath(path))} does not exist")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InvalidArgument("--plot needs matplotlib: pip install 'ocirt[plot]'") from None


def bench(
    rt: Runtime,
    cmd: Sequence[str],
    *,
    count: int,
    concurrency: int,
    rootfs: Optional[str] = None,
    timeout: Optional[float] = None,
    progress: bool = True,
    pool: bool = False,
) -> Tuple[Dict[str, Any], Dict[str, List[float]]]:
    """Run `cmd` `count` times, `concurrency` at once (with `pool`, in a warm
    pool's containers: see run_jobs): the report (see `summary`) and the
    milliseconds each phase took (see `phase_samples`)."""
    jobs = [Job(cmd, rootfs=rootfs, timeout=timeout) for _ in range(count)]
    bar = _progress_bar(count) if progress else None
    started = time.perf_counter()
    try:
        results = run_jobs(rt, jobs, concurrency=concurrency, on_result=(lambda r: bar.update(1)) if bar is not None else None, pool=pool)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - started
    samples = phase_samples(results)
    return summary(results, samples, seconds, concurrency, rt.traces([r.container_id for r in results if r.container_id])), samples


def _progress_bar(count: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=count, unit="container", leave=False, dynamic_ncols=True)


def summary(results: List[Result], samples: Dict[str, List[float]], seconds: float, concurrency: int, leaked: Dict[str, int]) -> Dict[str, Any]:
    """{"count", "concurrency", "seconds", "per_second", "failed", "errors",
    "exit_codes", "phases": {phase: {"p50", "p90", "p99", "max", "n"} in ms}, "leaks"}."""
    codes: Dict[str, int] = {}
    for r in results:
        if r.exit_code is not None:
            codes[str(r.exit_code)] = codes.get(str(r.exit_code), 0) + 1
    failed = [r for r in results if r.error is not None]
    return {
        "count": len(results),
        "concurrency": concurrency,
        "seconds": seconds,
        "per_second": len(results) / seconds if seconds > 0 else 0.0,
        "failed": len(failed),
        "errors": sorted({f"{type(r.error).__name__}: {r.error}" for r in failed})[:10],
        "exit_codes": codes,
        "phases": {phase: _percentiles(ms) for phase, ms in samples.items() if ms},
        "leaks": leaked,
    }


def phase_samples(results: List[Result]) -> Dict[str, List[float]]:
    """Milliseconds each phase took, per phase, over the results that saw it."""
    samples: Dict[str, List[float]] = {phase: [] for phase in PHASES}
    for r in results:
        for phase, seconds in r.timings.phases().items():
            samples[phase].append(seconds * 1000)
        t = r.timings
        if t.create is not None and t.deleted is not None:
            samples["total"].append((t.deleted - t.create) * 1000)
    return samples


def _percentiles(ms: List[float]) -> Dict[str, float]:
    ordered = sorted(ms)
    out = {f"p{p}": ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] for p in PERCENTILES}  # nearest rank
    out["max"] = ordered[-1]
    out["n"] = len(ordered)
    return out


def render(report: Dict[str, Any], out: Callable[[str], None]) -> None:
    """The report as text."""
    out(
        f"{report['count']} containers, {report['concurrency']} at a time, in {report['seconds']:.2f} s: "
        f"{report['per_second']:.1f} per second; {report['failed']} failed"
    )
    for error in report["errors"]:
        out(f"  {error}")
    codes = ", ".join(f"{code}: {n}" for code, n in sorted(report["exit_codes"].items(), key=lambda kv: int(kv[0])))
    out(f"exit codes: {codes or 'none'}")
    out(f"{'phase (ms)':12s}" + "".join(f"{name:>10s}" for name in ("p50", "p90", "p99", "max")))
    for phase in PHASES:
        p = report["phases"].get(phase)
        if p:
            out(f"{phase:12s}" + "".join(f"{p[name]:10.2f}" for name in ("p50", "p90", "p99", "max")))
    leaked = {what: n for what, n in report["leaks"].items() if n}
    out("leaks: " + (", ".join(f"{what} {n}" for what, n in leaked.items()) if leaked else "none"))


def plot(samples: Dict[str, List[float]], path: str, title: str) -> None:
    """Each phase's latency distribution as a box plot, saved to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")  # a file, no display
    import matplotlib.pyplot as plt

    phases = [phase for phase in PHASES if samples.get(phase)]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.boxplot([samples[phase] for phase in phases], showfliers=True)
    ax.set_xticks(range(1, len(phases) + 1), phases)
    ax.set_yscale("log")
    ax.set_ylabel("milliseconds (log scale)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def to_json(report: Dict[str, Any]) -> str:
    return json.dumps(report, indent=2)
