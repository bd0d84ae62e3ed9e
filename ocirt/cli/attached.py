"""Sessions attached to a container: start, attach and exec, and what run
shares with them (the relay, terminal handling, signals, detach keys)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
from typing import Any, Callable, Dict, Optional

from .. import attach, terminal
from ..container import Container
from ..errors import OcirtError
from ..runtime import Runtime
from ..state import ContainerStatus
from . import values
from .common import STOP_TIMEOUT, Out, Usage, Verb, each, log, names_option


def detach_keys_option(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--detach-keys", type=values.keys, default=attach.DEFAULT_DETACH_KEYS,
        help=f"keys that leave a terminal session, its container running (default {attach.DEFAULT_DETACH_KEYS}; \"\": none)",
    )  # fmt: skip


def _start_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-a", "--attach", action="store_true", help="attach to the container's output (one container), then start it")
    sp.add_argument("-i", "--interactive", action="store_true", help="with -a, send this stdin to the container")
    detach_keys_option(sp)
    names_option(sp)


def _attach_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--no-stdin", action="store_true", help="do not send this stdin to the container")
    detach_keys_option(sp)
    sp.add_argument("name")


def _exec_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-e", "--env", action="append", default=[], metavar="K=V", help="an environment variable (repeatable)")
    sp.add_argument("-u", "--user", help="uid[:gid] or a user name of the container (default: the container's)")
    sp.add_argument("-w", "--workdir", help="working directory (default: the container's)")
    sp.add_argument("-i", "--interactive", action="store_true", help="send this stdin to the process, to its end")
    sp.add_argument("-t", "--tty", action="store_true", help="give the process a terminal")
    sp.add_argument("-d", "--detach", action="store_true", help="print the session's id and leave it running (inspect shows its exit code)")
    detach_keys_option(sp)
    sp.add_argument("name")
    sp.add_argument("cmd", nargs=argparse.REMAINDER)


DETACHED = None  # attached_session's answer when the detach keys were typed


def attached_session(c: Container, sock: "socket.socket", args: argparse.Namespace, start: Optional[Callable[[], None]] = None) -> Optional[int]:
    """Relay `sock` (connected to `c`) to this process's stdout/stderr, and
    its stdin with args.interactive, running `start` first; the container's
    exit code once its output ends, or DETACHED. With a terminal on both
    sides: raw mode, the window size followed, the detach keys watched.
    SIGINT/SIGTERM/SIGHUP go to the container meanwhile."""
    tty = bool(c.spec.get("process", {}).get("terminal"))
    interactive = getattr(args, "interactive", False)
    typing = tty and interactive and os.isatty(0)
    forwarded = _forward_signals(c) if getattr(args, "sig_proxy", True) else {}
    try:
        with sock, contextlib.ExitStack() as stack:
            screen = 0 if os.isatty(0) else 1 if os.isatty(1) else None
            if tty and screen is not None:
                stack.enter_context(terminal.following_size(screen, c.resize))
            if start is not None:
                start()
            if typing:
                stack.enter_context(terminal.raw(0))
            try:
                keys = args.detach_keys if typing else b""
                if attach.relay(sock, stdin=0 if interactive else None, detach_keys=keys):
                    return DETACHED
            except BrokenPipeError:
                log.debug("output closed: stopping container %s", c.id)
                c.stop(STOP_TIMEOUT)
        return c.wait()
    finally:
        for sig, old in forwarded.items():
            signal.signal(sig, old)


def check_terminal(tty: bool, interactive: bool) -> None:
    """-it needs a terminal to read keys from: Usage, as podman, when stdin is none."""
    if tty and interactive and not os.isatty(0):
        raise Usage("ocirt: the input device is not a TTY: -t with -i needs one (or leave out -t)")


def _forward_signals(c: Container) -> Dict[int, Any]:
    """While attached, SIGINT/SIGTERM/SIGHUP go to the container (podman's --sig-proxy)."""
    old: Dict[int, Any] = {}

    def forward(signum: int, frame: object) -> None:
        try:
            c.kill(signum)
        except OcirtError as e:
            log.debug("signal %d not forwarded: %s", signum, e)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        old[sig] = signal.signal(sig, forward)
    return old


def cmd_attach(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    """Attach to a created, running or paused container until its output
    ends (its exit code) or the detach keys are typed (0, it runs on)."""
    c = rt.get(args.name)
    if c.state.status not in (ContainerStatus.RUNNING, ContainerStatus.PAUSED):
        raise OcirtError(f"cannot attach to container {c.name}: it is {c.state.status.value} (start -a attaches to a created one)")
    args.interactive = c.stdin and not args.no_stdin
    check_terminal(bool(c.spec.get("process", {}).get("terminal")), args.interactive)
    code = attached_session(c, c.connect(stdin=args.interactive), args)
    return 0 if code is DETACHED else code


def _start_unless_running(c: Container) -> None:
    """start; a running container is already what was asked (podman exits 0)."""
    if c.state.status is not ContainerStatus.RUNNING:
        c.start()


def cmd_start(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    """Start containers; with -a, one, attached (as attach, from its first output)."""
    if not args.attach:
        if args.interactive:
            raise Usage("ocirt start: -i sends this stdin to the container: it needs -a")
        return each(rt, args.names, _start_unless_running, out)
    if len(args.names) != 1:
        raise Usage("ocirt start: -a attaches to one container")
    c = rt.get(args.names[0])
    if args.interactive and not c.stdin:
        raise Usage(f"ocirt start: container {c.name} was created without -i: it takes no input")
    check_terminal(bool(c.spec.get("process", {}).get("terminal")), args.interactive)
    code = attached_session(c, c.connect(stdin=args.interactive), args, start=c.start)
    return 0 if code is DETACHED else code


def cmd_exec(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    if args.detach and args.interactive:
        raise Usage("ocirt exec: -i sends this stdin to the process to its end: not with -d")
    if not args.detach:
        check_terminal(args.tty, args.interactive)
    c = rt.get(args.name)
    options: Dict[str, Any] = dict(env=values.env(args.env) or None, user=args.user, cwd=args.workdir, tty=args.tty)
    if args.detach:
        out(c.exec(args.cmd, **options).id)  # conmon writes the exit code to the session's exit file
        return 0
    session = c.exec(args.cmd, attach=True, stdin=args.interactive, **options)
    assert session.attach is not None
    typing = args.tty and args.interactive and os.isatty(0)
    screen = 0 if os.isatty(0) else 1 if os.isatty(1) else None
    with session.attach, contextlib.ExitStack() as stack:
        if args.tty and screen is not None:
            stack.enter_context(terminal.following_size(screen, session.resize))
        if typing:
            stack.enter_context(terminal.raw(0))
        if attach.relay(session.attach, stdin=0 if args.interactive else None, detach_keys=args.detach_keys if typing else b""):
            return 0  # detached: the session runs on; inspect shows how it ends
    return session.wait()


VERBS: Dict[str, Verb] = {
    "start": Verb(_start_options, cmd_start),
    "attach": Verb(_attach_options, cmd_attach),
    "exec": Verb(_exec_options, cmd_exec),
}
