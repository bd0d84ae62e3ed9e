"""The verbs that act on containers by name: rm, stop, kill, pause, unpause,
restart, wait, update, and `container prune`."""

from __future__ import annotations

import argparse
import contextlib
from typing import Dict

from .. import spec as specs
from ..container import Container
from ..errors import ContainerNotFound, InvalidState, OcirtError
from ..runtime import Runtime
from ..state import ContainerStatus
from ..validate import parse_signal
from . import values
from .common import EXIT_ERROR, EXIT_IN_USE, EXIT_NO_SUCH, Out, Usage, Verb, attending, chosen, each, names_option, report


def _chosen_options(sp: argparse.ArgumentParser) -> None:
    """Names or --cidfile, or -a or --filter (see chosen)."""
    sp.add_argument("-a", "--all", action="store_true", help="every container")
    sp.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE", help="the containers these match (see ps --filter)")
    sp.add_argument("--cidfile", action="append", default=[], metavar="FILE", help="the container whose id this file holds (repeatable)")
    sp.add_argument("names", nargs="*")


def _stop_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-t", "--time", type=values.non_negative_float, help="seconds before SIGKILL (default: the container's --stop-timeout, else 10)")
    sp.add_argument("-i", "--ignore", action="store_true", help="a name that matches no container is no error")
    _chosen_options(sp)


def _kill_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-s", "--signal", default="KILL", help="a signal name or number")
    sp.add_argument("-i", "--ignore", action="store_true", help="a name that matches no container is no error")
    _chosen_options(sp)


def _rm_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-f", "--force", action="store_true", help="remove running or half-created ones too")
    sp.add_argument("-i", "--ignore", action="store_true", help="a name that matches no container is no error")
    _chosen_options(sp)


def _restart_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-t", "--time", type=values.non_negative_float, help="seconds before SIGKILL (default: the container's --stop-timeout, else 10)")
    sp.add_argument("--running", action="store_true", help="with -a, only the running containers")
    _chosen_options(sp)


# podman's conditions, as ocirt's statuses ("exited" and "stopped" are both the exit)
CONDITIONS = {"configured": "configured", "created": "created", "running": "running", "paused": "paused", "exited": "stopped", "stopped": "stopped"}


def _wait_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--condition", action="append", default=[], choices=list(CONDITIONS), metavar="STATE",
        help=f"wait until the container is in this state: {', '.join(CONDITIONS)} (repeatable; default: stopped)",
    )  # fmt: skip
    sp.add_argument(
        "-i", "--interval", type=values.interval, default=0.25, metavar="DURATION",
        help="how often a state other than stopped is looked for, e.g. 250ms (default: 250ms)",
    )  # fmt: skip
    names_option(sp)


def _update_options(sp: argparse.ArgumentParser) -> None:
    values.limit_options(sp)
    names_option(sp)


def _container_command_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("action", choices=["prune"])
    sp.add_argument("-f", "--force", action="store_true", help="do not ask (ocirt never asks: accepted for podman's scripts)")
    sp.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE", help="only the stopped containers these match (see ps --filter)")


def cmd_rm(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    """Remove containers; exit 1 if a name matched none (unless -i), 2 if one is running (without -f)."""
    code = 0
    for name in chosen(rt, args):
        try:
            c = rt.get(name)
            with attending(c) if c.auto_remove else contextlib.nullcontext():  # its exit command must not wait for us
                c.delete(force=args.force)
        except ContainerNotFound as e:
            if not args.ignore and not (args.all or args.filter):  # picked by -a/--filter: gone meanwhile, removed all the same
                report(name, e)
                code = max(code, EXIT_NO_SUCH)
            continue
        except InvalidState as e:
            report(name, e)
            code = max(code, EXIT_IN_USE if e.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED) else EXIT_ERROR)
            continue
        except OcirtError as e:
            report(name, e)
            code = EXIT_ERROR
            continue
        out(name)
    return code


def cmd_stop(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    """Stop containers: the stop signal, then SIGKILL after -t (or the container's --stop-timeout)."""

    def stop(c: Container) -> None:
        c.stop(args.time if args.time is not None else specs.stop_timeout(c.spec))

    return each(rt, chosen(rt, args), stop, out, ignore=args.ignore, picked=args.all or bool(args.filter))


def cmd_kill(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    """Send the signal to each container."""
    sig = parse_signal(args.signal)
    return each(rt, chosen(rt, args), lambda c: c.kill(sig), out, ignore=args.ignore, picked=args.all or bool(args.filter))


def cmd_pause(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    return each(rt, args.names, lambda c: c.pause(), out)


def cmd_unpause(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    return each(rt, args.names, lambda c: c.resume(), out)


def cmd_restart(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    """Stop (-t, else the container's stop timeout) and start each container again."""
    if args.running and not args.all:
        raise Usage("ocirt restart: --running goes with -a")
    names = chosen(rt, args)
    if args.running:
        names = [name for name in names if rt.get(name).state.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED)]

    def restart(c: Container) -> None:
        c.restart(args.time if args.time is not None else specs.stop_timeout(c.spec))

    return each(rt, names, restart, out, picked=args.all or bool(args.filter))


def cmd_wait(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    """Each container's exit code once it has exited; with --condition, once
    it is in one of those states: the exit code for stopped, else -1 (as podman)."""
    wanted = {CONDITIONS[c] for c in args.condition} or {"stopped"}

    def wait(c: Container) -> str:
        if wanted == {"stopped"}:
            return str(c.wait())
        status = c.wait_for_status(wanted, interval=args.interval)
        return str(c.wait()) if status is ContainerStatus.STOPPED else "-1"

    return each(rt, args.names, wait, out)


def cmd_update(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    """Change the limits given on each container."""
    limits = values.limits_from(args)
    if limits is None:
        raise Usage("ocirt update: give at least one limit to change")
    return each(rt, args.names, lambda c: c.update(limits), out)


def cmd_container(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    """container prune: remove every stopped container (that --filter matches); their ids."""
    from .. import reports  # only the verbs with --filter need it

    keep = reports.parse_filters(args.filter)
    for c in rt.list(status="stopped"):
        if keep(c):
            with contextlib.suppress(ContainerNotFound):  # removed meanwhile
                c.delete()
                out(c.id)
    return 0


VERBS: Dict[str, Verb] = {
    "pause": Verb(names_option, cmd_pause),
    "unpause": Verb(names_option, cmd_unpause),
    "restart": Verb(_restart_options, cmd_restart),
    "wait": Verb(_wait_options, cmd_wait),
    "stop": Verb(_stop_options, cmd_stop),
    "kill": Verb(_kill_options, cmd_kill),
    "rm": Verb(_rm_options, cmd_rm),
    "update": Verb(_update_options, cmd_update),
    "container": Verb(_container_command_options, cmd_container),
}

