"""`pool create|ls|rm|fill` and `run --pool`: warm containers kept in the
store under a name (see ocirt.named_pools), with no process holding them."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
from typing import Any, Callable, Dict

from .. import lifecycle
from ..cgroups.limits import LIMIT_FIELDS
from ..errors import ContainerNotFound, OcirtError
from ..named_pools import NamedPool
from ..pool import delete_quietly, send_ahead
from ..runtime import Runtime
from ..steps import block
from . import values
from .common import EXIT_NO_SUCH, Out, Usage, Verb, log
from .create import foreground, made_options, undo_run

# What `run --pool` takes besides the command: a job's own (the rest is the pool's).
JOB_DESTS = frozenset(
    ("name", "env", "env_file", "workdir", "label", "timeout", "rm", "interactive", "detach", "sig_proxy", "detach_keys", "pool", "cmd")
) | frozenset(LIMIT_FIELDS)


def _pool_options(sp: argparse.ArgumentParser) -> None:
    actions = sp.add_subparsers(dest="action", required=True, metavar="{create,ls,rm,fill}")
    create = actions.add_parser("create", help="make a pool of ready containers", description="Make a pool of ready containers.")
    create.add_argument("--size", type=values.positive_int, default=2, help="containers kept ready")
    made_options(create)
    create.add_argument("--rootfs", help="a root filesystem directory instead of an image")
    create.add_argument("-i", "--interactive", action="store_true", help="its jobs may send stdin (run --pool -i)")
    create.add_argument("name", help="the pool's name")
    create.add_argument("image", nargs="?", help="the image its containers run (default: busybox, built in)")
    ls = actions.add_parser("ls", help="list pools", description="List pools.")
    ls.add_argument("--format", choices=["table", "json"], default="table", help="how to print them")
    ls.add_argument("-q", "--quiet", action="store_true", help="only their names")
    rm = actions.add_parser("rm", help="remove pools and their ready containers", description="Remove pools and their ready containers.")
    rm.add_argument("names", nargs="+", help="the pools")
    fill = actions.add_parser("fill", help="make ready containers up to the pool's size (run --pool starts one)")
    fill.add_argument("name", help="the pool")


def cmd_pool(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    if args.action == "create":
        return _create(rt, args, out)
    if args.action == "ls":
        return _ls(rt, args, out)
    if args.action == "rm":
        code = 0
        for name in args.names:
            try:
                NamedPool(rt, name).remove()
            except ContainerNotFound as e:
                print(f"Error: {e}", file=sys.stderr)
                code = EXIT_NO_SUCH
                continue
            out(name)
        return code
    NamedPool(rt, args.name).fill()
    return 0


def _create(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    """pool create: every option checked, the image pulled, then the pool made and filled; its name."""
    binds, tmpfs = values.mounts(args.volume, args.mount)
    options: Dict[str, Any] = dict(
        user=args.user, hostname=args.hostname, cap_add=args.cap_add, cap_drop=args.cap_drop, read_only=args.read_only,
        mounts=binds, tmpfs=tmpfs + list(args.tmpfs), network=args.network, publish=args.publish, ulimits=values.ulimits(args.ulimit),
        log_size_max=values.log_size_max(args.log_opt), stdin=args.interactive,
    )  # fmt: skip
    if args.rootfs is not None:
        if args.image is not None:
            raise Usage("ocirt pool create: give an image or --rootfs, not both")
        options["rootfs"] = args.rootfs
    else:
        image = args.image or "busybox"
        rt.pull(image, policy=args.pull, tls_verify=args.tls_verify, authfile=args.authfile)
        options["image"] = image
    NamedPool.create(rt, args.name, args.size, **{k: v for k, v in options.items() if v not in (None, [], {}, False) or k == "stdin"})
    out(args.name)
    return 0


def _ls(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    pools = [NamedPool(rt, name).info() for name in NamedPool.names(rt)]
    if args.quiet:
        for p in pools:
            out(p.name)
    elif args.format == "json":
        shown = [{"Name": p.name, "Size": p.size, "Ready": p.ready, "Options": p.options, "Created": int(p.created_at)} for p in pools]
        out(json.dumps(shown, indent=2))
    else:
        rows = [("NAME", "SIZE", "READY", "RUNS ON")]
        rows += [(p.name, str(p.size), str(p.ready), str(p.options.get("image") or p.options.get("rootfs"))) for p in pools]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            out("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def run_pooled(rt: Runtime, args: argparse.Namespace, out: Out, run_options: Callable[[argparse.ArgumentParser], None]) -> int:
    """run --pool: the job (every positional argument its command) given to a
    ready container of the pool, then as run (attached, or -d); a fill
    started in the background. Options a pool fixes are refused, naming them."""
    _refuse_made_options(args, run_options)
    if args.detach and args.rm:
        raise Usage("ocirt run --pool: -d with --rm is not supported (the pool's containers have no exit command): remove it with rm")
    pool = NamedPool(rt, args.pool)
    recipe = pool.recipe()
    if args.interactive and not recipe.stdin:
        raise Usage(f"ocirt run --pool: -i needs a pool made with -i ({args.pool} was not)")
    env = {**values.env_files(args.env_file), **values.env(args.env)}
    limits = values.limits_from(args)
    job = recipe.job(args.cmd, env, args.workdir, None, None, limits, args.name, values.labels(args.label))
    c, sock = pool.claim(job)
    try:
        _fill_in_background(rt, args)
        rest = send_ahead(sock, job.encoded())
    except BaseException:  # a Ctrl-C, too: the claimed container is nobody's now, and never started
        sock.close()
        delete_quietly(c)
        raise

    def start() -> None:
        block(lifecycle.start(c, await_exec=False))  # the stub needs no wait
        rest()
        if args.timeout is not None:
            _kill_after(c, args.timeout)

    if args.detach:
        try:
            start()
        except BaseException:
            sock.close()
            undo_run(c, False)
            raise
        out(c.id)
        return 0
    try:
        return foreground(c, args, start)
    finally:
        sock.close()


def _refuse_made_options(args: argparse.Namespace, run_options: Callable[[argparse.ArgumentParser], None]) -> None:
    """Usage naming the first option given that the pool fixes (or that a pooled container cannot take)."""
    defaults = argparse.ArgumentParser(add_help=False)
    run_options(defaults)
    for action in defaults._actions:
        if action.dest not in JOB_DESTS and getattr(args, action.dest, action.default) != action.default:
            flag = max(action.option_strings, key=len)
            raise Usage(f"ocirt run --pool: {flag} is the pool's (give it to `ocirt pool create`), not a job's")


def _fill_in_background(rt: Runtime, args: argparse.Namespace) -> None:
    """Start `ocirt pool fill` in a session of its own, not waited for: it
    makes what the job took while the job runs."""
    argv = [sys.executable, "-I", "-m", "ocirt", "--root", str(rt.root)]
    for flag, value in (("--runtime", args.runtime), ("--conmon", args.conmon)):
        if value:
            argv += [flag, value]
    try:
        subprocess.Popen(
            [*argv, "pool", "fill", args.pool], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True, cwd="/",
        )  # fmt: skip
    except OSError as e:
        log.warning("cannot start the pool's fill: %s (the next job creates its container cold)", e)


def _kill_after(c: Any, seconds: int) -> None:
    """SIGKILL `c` once `seconds` have passed (a pooled container was created with no timer of its own)."""

    def kill() -> None:
        try:
            c.kill("KILL")
        except (OcirtError, OSError):
            pass  # exited meanwhile

    timer = threading.Timer(seconds, kill)
    timer.daemon = True
    timer.start()


VERBS: Dict[str, Verb] = {"pool": Verb(_pool_options, cmd_pool)}
