"""run and create: their options, the container they make, and run's
foreground session (stopped, and with --rm removed, on any way out)."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

from .. import conmon, layout, specgen
from ..container import Container
from ..errors import ContainerNotFound, OcirtError
from ..images import PULL_POLICIES
from ..images.config import settle
from ..options import CreateOptions
from ..runtime import Runtime
from ..validate import check_name, check_path
from . import values
from .attached import DETACHED, attached_session, check_terminal, detach_keys_option
from .common import STOP_TIMEOUT, Out, Usage, Verb, attending, log


def made_options(sp: argparse.ArgumentParser) -> None:
    """What a container is made with that a pool fixes for its jobs (`pool create` takes these)."""
    sp.add_argument("-u", "--user", help="uid[:gid] or a user name of the image (default: the image's)")
    sp.add_argument("--hostname", help="the container's host name (default: ocirt)")
    sp.add_argument("--cap-add", action="append", default=[], metavar="CAP", help="a capability to add (repeatable)")
    sp.add_argument("--cap-drop", action="append", default=[], metavar="CAP", help="a capability to take away (repeatable)")
    sp.add_argument("--read-only", action="store_true", help="mount the root filesystem read-only")
    sp.add_argument("-v", "--volume", action="append", default=[], metavar="SRC:DST[:ro|rw]", help="bind mount a host path")
    sp.add_argument(
        "--mount", action="append", default=[], metavar="type=bind|tmpfs,...",
        help="type=bind,source=SRC,target=DST[,readonly] or type=tmpfs,target=DST",
    )  # fmt: skip
    sp.add_argument("--tmpfs", action="append", default=[], metavar="DST", help="mount a tmpfs at DST")
    sp.add_argument(
        "--network", default="none",
        help="none (loopback only, the default), host, bridge (an address of its own: ocirt's bridge), a network's name, or ns:PATH",
    )  # fmt: skip
    sp.add_argument(
        "-p", "--publish", action="append", default=[], metavar="[[IP:]HOSTPORT:]PORT[/udp]",
        help="publish a port of the container on the host (with a bridge network; no HOSTPORT: a free one)",
    )  # fmt: skip
    sp.add_argument("--log-opt", action="append", default=[], metavar="max-size=SIZE", help="max-size: the log's size before conmon rotates it")
    sp.add_argument("--ulimit", action="append", default=[], metavar="NAME=SOFT[:HARD]", help="a resource limit, e.g. nofile=1024:2048")
    sp.add_argument("--pull", choices=PULL_POLICIES, default="missing", help="pull the image: if it is missing, always, or never")
    sp.add_argument("--tls-verify", type=values.truth, default=True, metavar="BOOL", help="require HTTPS and a verified certificate to pull")
    sp.add_argument("--authfile", help="credentials for the registry (podman's auth.json)")


def _container_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--name", help="a name for the container (default: from its id)")
    sp.add_argument("-e", "--env", action="append", default=[], metavar="K=V", help="an environment variable (repeatable)")
    sp.add_argument("-w", "--workdir", help="working directory inside the container (default: the image's, else /)")
    sp.add_argument("-l", "--label", action="append", default=[], metavar="K[=V]", help="a label kept with the container (ps --filter label=)")
    values.limit_options(sp)
    made_options(sp)
    sp.add_argument("--env-file", action="append", default=[], metavar="FILE", help="K=V lines (# comments; K alone: from this environment)")
    sp.add_argument("--annotation", action="append", default=[], metavar="K=V", help="an OCI annotation for the runtime")
    sp.add_argument("--entrypoint", help="the command to run, before the arguments given (a string, or a JSON array)")
    sp.add_argument("--stop-signal", help="the signal stop sends first (default SIGTERM)")
    sp.add_argument("--stop-timeout", type=values.non_negative_float, help="seconds stop waits before SIGKILL (default 10)")
    sp.add_argument("--cidfile", help="write the container's id to this file (which must not exist)")
    src = sp.add_mutually_exclusive_group()
    src.add_argument("--rootfs", help="a root filesystem directory instead of an image: the first argument is then the command")
    src.add_argument("--bundle", help="an existing OCI bundle, run as is, instead of an image")
    sp.add_argument("--timeout", type=values.positive_int, help="seconds the container may run before it is killed (default: no limit)")
    sp.add_argument("--create-timeout", type=values.positive_float, default=240, help="seconds the create may take (default 240)")
    sp.add_argument("--rm", action="store_true", help="remove the container once it exits")
    sp.add_argument("-i", "--interactive", action="store_true", help="keep the container's stdin open (run: send this stdin to it)")
    sp.add_argument("-t", "--tty", action="store_true", help="give the container a terminal")
    sp.add_argument(
        "cmd", nargs=argparse.REMAINDER, metavar="IMAGE [COMMAND [ARG...]]",
        help="the image (a reference, as pull takes; busybox is built in), then the command replacing its Cmd",
    )  # fmt: skip


def _run_options(sp: argparse.ArgumentParser) -> None:
    _container_options(sp)
    sp.add_argument("-d", "--detach", action="store_true", help="print the id and leave it running")
    sp.add_argument(
        "--sig-proxy", type=values.truth, nargs="?", const=True, default=True, metavar="BOOL",
        help="pass SIGINT/SIGTERM/SIGHUP on to the container while attached (default true)",
    )  # fmt: skip
    detach_keys_option(sp)
    sp.add_argument("--pool", help="take a ready container of this pool (see `ocirt pool create`): every argument is then the command")


def cmd_create(rt: Runtime, args: argparse.Namespace, out: Out) -> Container:
    """Create the container described by the run/create options; every
    option is checked, and the image pulled, before anything is made."""
    image, command = _image_and_command(args)
    for option, path in (("--rootfs", args.rootfs), ("--bundle", args.bundle)):
        if path is not None:
            check_path(path, option)  # "" would be the current directory
    name = check_name(args.name) if args.name else None
    env = {**values.env_files(args.env_file), **values.env(args.env)}
    limits = values.limits_from(args)
    cid = os.urandom(32).hex()
    state_root = rt.root or rt.tmp_dir
    bundle = os.path.join(state_root, "bundles", cid)
    binds, tmpfs = values.mounts(args.volume, args.mount)
    if args.cidfile and os.path.lexists(args.cidfile):
        raise Usage(f"ocirt: the container id file {args.cidfile} exists already")
    owned = args.bundle is None
    exit_command = _cleanup_command(rt, cid) if args.rm else []
    options: Dict[str, Any] = dict(
        name=name or cid[:12],
        owned_bundle=owned,
        auto_remove=args.rm,
        timeout=args.create_timeout,
        kill_after=args.timeout,
        exit_command=exit_command,
        listen_fds=conmon.socket_activation(os.environ),  # systemd's, when it started us
        limits=limits,
        stdin=args.interactive,
        terminal=args.tty,
        labels=values.labels(args.label),
        log_size_max=values.log_size_max(args.log_opt),
    )
    spec_network, bridge = specgen.network_mode(args.network)
    if bridge is not None or args.publish:
        options.update(network=bridge, publish=tuple(args.publish))
    CreateOptions(**options)  # checks them now, before the bundle is written
    entrypoint = values.entrypoint(args.entrypoint)
    argv, user, workdir, stop_signal, layers = entrypoint + command, args.user, args.workdir, args.stop_signal, []
    annotations = values.labels(args.annotation)
    if image is not None:
        pulled = rt.pull(image, policy=args.pull, tls_verify=args.tls_verify, authfile=args.authfile)  # the last check
        settled = settle(
            pulled, rt.image_store.lower_dirs(pulled), command=command, entrypoint=entrypoint if args.entrypoint is not None else None,
            env=env, user=user, workdir=workdir, labels=options["labels"],
        )  # fmt: skip
        argv, env, user, workdir, options["labels"] = settled.argv, settled.env, settled.user, settled.workdir, settled.labels
        layers, stop_signal = settled.bundle["image_layers"], stop_signal or settled.bundle["stop_signal"]
        annotations = {**settled.bundle["annotations"], **annotations}
    if not owned:
        bundle = args.bundle
    with layout.making(bundle) if owned else contextlib.nullcontext():
        if owned:
            specgen.write_bundle(
                bundle,
                argv,
                rootfs=args.rootfs,
                cache_dir=os.path.join(state_root, "rootfs"),
                env=env,
                cwd=workdir or "/",
                user=user,
                hostname=args.hostname,
                read_only=args.read_only,
                cap_add=args.cap_add,
                cap_drop=args.cap_drop,
                tty=args.tty,
                mounts=binds,
                tmpfs=tmpfs + list(args.tmpfs),
                network=spec_network,
                ulimits=values.ulimits(args.ulimit),
                annotations=annotations,
                stop_signal=stop_signal,
                stop_timeout=args.stop_timeout,
                image_layers=layers,
            )
        try:
            c = rt.create(cid, bundle, **options)
        except BaseException:
            if owned:
                _rmtree(bundle)
            raise
    if args.cidfile:
        try:
            with open(args.cidfile, "x") as f:
                f.write(c.id)
        except OSError as e:
            c.delete(force=True)
            raise OcirtError(f"cannot write the container id to {args.cidfile}: {e.strerror}") from e
    return c


def _image_and_command(args: argparse.Namespace) -> Tuple[Optional[str], List[str]]:
    """The image and the command the positional arguments name: with
    --rootfs or --bundle, all of them are the command (podman's --rootfs)."""
    if args.rootfs is not None or args.bundle is not None:
        if args.rootfs is not None and not args.cmd:
            raise Usage("ocirt: a command is needed after the options (with --rootfs, the first argument is the command)")
        return None, list(args.cmd)
    if not args.cmd:
        raise Usage("ocirt: an image is needed (busybox is built in), then the command: ocirt run [OPTIONS] IMAGE [COMMAND [ARG...]]")
    return args.cmd[0], list(args.cmd[1:])


def _create(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    """create: the new container's id."""
    out(cmd_create(rt, args, out).id)
    return 0


def cmd_run(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    """Create, start and wait; stream the output. On any way out before the
    container's exit (an error, Ctrl-C before start, a reader gone: `| head`),
    the container is stopped, and with --rm removed. A terminal session left
    with the detach keys leaves it running (and with --rm, conmon removes it
    when it exits)."""
    if args.detach and args.interactive and not args.tty:
        raise Usage("ocirt: -i sends this stdin while the container runs in the foreground: not with -d")
    if not args.detach:
        check_terminal(args.tty, args.interactive)
    if args.pool is not None:
        from .pools import run_pooled

        return run_pooled(rt, args, out, _run_options)
    c = cmd_create(rt, args, out)
    if args.detach:
        try:
            c.start()
        except BaseException:
            undo_run(c, args.rm)
            raise
        out(c.id)
        return 0
    return foreground(c, args, c.start)


def foreground(c: Container, args: argparse.Namespace, start: Callable[[], None]) -> int:
    """run's foreground session on `c`, created: attach, `start()`, stream
    until it exits (the container's code) or the detach keys (0); on any
    other way out it is stopped, and with --rm removed."""
    ended = False
    with attending(c):
        try:
            sock = c.connect(stdin=args.interactive)  # before the start: nothing is missed
            code = attached_session(c, sock, args, start=start)
            ended = True
        finally:
            if not ended:
                undo_run(c, args.rm)
        if args.rm and code is not DETACHED:
            try:
                c.delete()
            except ContainerNotFound:
                pass  # removed by someone else meanwhile: removed all the same
    return 0 if code is DETACHED else code


def _cleanup_command(rt: Runtime, cid: str) -> List[str]:
    """conmon's exit command for a --rm container: `ocirt cleanup`, which
    removes it, unless a process attends it (a foreground run, an rm: see
    attending), which removes it itself. Asked of flock(1) first, so that
    an attended container's conmon does not wait for an interpreter to
    start; given to foreground runs too, so that one SIGKILLed still has
    its container removed when it exits."""
    # -I: conmon runs it from the container's run dir, which must not be on sys.path.
    cleanup = [sys.executable, "-I", "-m", "ocirt", "--root", rt.root or "", "cleanup", cid]
    flock = shutil.which("flock")
    if flock is None:
        return cleanup  # the cleanup tells attended containers too, later
    attended = rt.dirs.container(cid).attended
    return ["/bin/sh", "-c", '"$0" -n -x "$1" true 2>/dev/null || exit 0; shift; exec "$@"', flock, attended, *cleanup]


def undo_run(c: Container, remove: bool) -> None:
    """Stop a container whose run went wrong, and remove it with --rm; report, never raise."""
    try:
        c.stop(STOP_TIMEOUT)
        if remove:
            c.delete(force=True)
    except (OcirtError, OSError) as e:
        log.warning("cleanup of container %s failed: %s", c.id, e)


def _rmtree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


VERBS: Dict[str, Verb] = {
    "run": Verb(_run_options, cmd_run),
    "create": Verb(_container_options, _create),
}
