"""bench, completion and version, and the hidden `cleanup` (conmon's exit
command for a detached --rm container)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, Optional

from .. import __version__, native as _native
from ..errors import ContainerNotFound, OcirtError
from ..runtime import Runtime
from . import values
from .common import Out, Usage, Verb, attended, log, no_options
from .parser import build_parser


def _bench_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-n", "--count", type=values.positive_int, default=100, help="containers to run (default 100)")
    sp.add_argument("-c", "--concurrency", type=values.positive_int, default=4, help="at once (default 4)")
    sp.add_argument("--rootfs", help="a root filesystem directory (default: a busybox one)")
    sp.add_argument("--timeout", type=values.positive_float, help="seconds each container may run")
    sp.add_argument("--pool", action="store_true", help="run them in a warm pool's containers, created ahead (--concurrency of them)")
    sp.add_argument("--format", choices=["table", "json"], default="table", help="a table for people, or JSON")
    sp.add_argument("--plot", metavar="FILE.png", help="draw each phase's latencies (needs matplotlib)")
    sp.add_argument("cmd", nargs=argparse.REMAINDER, help="the command (after --)")


def _completion_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("shell", choices=["bash", "zsh", "fish"])


def _id(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("id")


def cmd_bench(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    """Churn the command; 1 if a container failed to run or left something behind."""
    from .. import bench  # only this verb needs it (and tqdm, matplotlib)

    if not args.cmd:
        raise Usage("ocirt bench: a command is needed after --")
    bench.check_plot(args.plot)
    report, samples = bench.bench(
        rt, args.cmd, count=args.count, concurrency=args.concurrency, rootfs=args.rootfs, timeout=args.timeout,
        progress=sys.stderr.isatty(), pool=args.pool,
    )  # fmt: skip
    if args.plot:
        bench.plot(samples, args.plot, f"ocirt bench: {args.count} x {' '.join(args.cmd)}, {args.concurrency} at a time")
    if args.format == "json":
        out(bench.to_json(report))
    else:
        bench.render(report, out)
    return 1 if report["failed"] or any(report["leaks"].values()) else 0


def cmd_completion(rt: Optional[Runtime], args: argparse.Namespace, out: Out) -> int:
    """A completion script for the shell, generated from the parser."""
    import shtab  # only this verb needs it

    out(shtab.complete(build_parser(), shell=args.shell))
    return 0


def cmd_version(rt: Optional[Runtime], args: argparse.Namespace, out: Out) -> int:
    out(f"ocirt version {__version__} ({_native.BACKEND} backend)")
    return 0


def cmd_cleanup(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    """conmon's exit command: remove the container once conmon itself is gone.

    conmon waits for its exit command, so this leaves conmon's cgroup, forks,
    lets conmon go, and removes the container from the detached child.
    """
    if attended(rt.dirs.container(args.id).attended):
        return 0  # the attached run reads the exit code and removes the container itself (it may be waiting for us)
    try:
        c = rt.get(args.id)
    except OcirtError:
        return 0  # removed already
    if c.id != args.id:
        return 0  # removed already: a name or an id prefix matched another container
    if c._cgroup is not None:
        c._cgroup.leave(os.getpid())
    rt.close()  # no database connection across fork
    if os.fork():
        os._exit(0)
    os.setsid()
    try:
        c = rt.get(args.id)
        if c.id != args.id:
            raise ContainerNotFound(f"container {args.id} was removed already")  # never delete another one
        if c._monitor.conmon is not None:  # held only if proven to be this container's conmon
            c._monitor.conmon.wait(60)
        c.delete(force=True)
    except OcirtError as e:
        log.warning("cleanup of %s: %s", args.id, e)
    finally:
        rt.close()
        os._exit(0)


VERBS: Dict[str, Verb] = {
    "bench": Verb(_bench_options, cmd_bench),
    "version": Verb(no_options, cmd_version, needs_runtime=False),
    "completion": Verb(_completion_options, cmd_completion, needs_runtime=False),
    "cleanup": Verb(_id, cmd_cleanup),
}
