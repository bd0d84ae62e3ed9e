"""The `ocirt` command line: podman's verbs and flags, where they exist.

Exit codes: a container's own code for `run`, `wait` and `exec`; 125 for
ocirt's own errors (one line on stderr, the traceback with --log-level
debug); 126 and 127 when the container's command cannot run or is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar

from . import __version__, attach, conmon, logs as logfile, native as _native, spec as specs, specgen, terminal
from .cgroups.limits import LIMIT_FIELDS, Limits
from .container import Container
from .errors import ConmonError, ContainerNotFound, InvalidArgument, InvalidState, OcirtError, Terminated, raise_terminated
from .runtime import Runtime
from .state import ContainerStatus
from .validate import check_name, parse_signal

STOP_TIMEOUT = 10  # seconds a container gets to stop before SIGKILL, as podman's default
EXIT_ERROR = 125
EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127

log = logging.getLogger("ocirt")
T = TypeVar("T")


class Usage(OcirtError):
    """A bad command line (argparse's own errors are turned into this)."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> "NoReturn":  # type: ignore[name-defined]  # noqa: F821
        raise Usage(f"{self.prog}: {message}")


EXIT_CODES = """exit codes:
  0    done (run, start -a, attach, exec: the container's or process's own code)
  1    rm: a name matched no container
  2    rm: the container is running (use -f)
  125  ocirt itself failed, or the command line was wrong
  126  the container's command could not be run
  127  the container's command was not found"""


class _Help(argparse.RawDescriptionHelpFormatter):
    """Each option's default in its help (where it has one to show and the
    help does not already say), and the epilog as written."""

    def _get_help_string(self, action: argparse.Action) -> Optional[str]:
        text = action.help or ""
        if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS) and "default" not in text:
            text += " (default: %(default)s)"
        return text


def build_parser(command: Optional[str] = None) -> Parser:
    """The whole parser; with `command`, only that subcommand gets its options
    (the others are listed, bare: what a single run parses is all it needs).
    Internal commands (conmon's exit command) are not listed."""
    p = Parser(prog="ocirt", description="Run OCI containers with conmon and runc, no daemon.", epilog=EXIT_CODES, formatter_class=_Help)
    p.add_argument("--version", action="version", version=f"ocirt version {__version__}")
    p.add_argument("--root", help="state directory (default: $OCIRT_ROOT, else /var/lib/ocirt)")
    p.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"], help="what ocirt logs on stderr (debug: with tracebacks)"
    )
    p.add_argument("--runtime", help="OCI runtime binary (default: runc on PATH)")
    p.add_argument("--conmon", help="conmon binary (default: conmon on PATH)")
    shown = [name for name, (text, _) in _COMMANDS.items() if text]
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="{" + ",".join(shown) + "}")
    for name, (text, define) in _COMMANDS.items():
        extra: Dict[str, Any] = dict(help=text, description=text.capitalize() + ".") if text else {}
        sp = sub.add_parser(name, epilog=EXIT_CODES, formatter_class=_Help, **extra)
        if command is None or command == name:
            define(sp)
    return p


def _container_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--name", help="a name for the container (default: from its id)")
    sp.add_argument("-e", "--env", action="append", default=[], metavar="K=V", help="an environment variable (repeatable)")
    sp.add_argument("-u", "--user", help="uid[:gid] or a user name of the rootfs")
    sp.add_argument("-w", "--workdir", default="/", help="working directory inside the container")
    sp.add_argument("--hostname", help="the container's host name (default: ocirt)")
    sp.add_argument("-l", "--label", action="append", default=[], metavar="K[=V]", help="a label kept with the container (ps --filter label=)")
    _limit_options(sp)
    sp.add_argument("--cap-add", action="append", default=[], metavar="CAP", help="a capability to add (repeatable)")
    sp.add_argument("--cap-drop", action="append", default=[], metavar="CAP", help="a capability to take away (repeatable)")
    sp.add_argument("--read-only", action="store_true", help="mount the root filesystem read-only")
    sp.add_argument("-v", "--volume", action="append", default=[], metavar="SRC:DST[:ro|rw]", help="bind mount a host path")
    sp.add_argument(
        "--mount", action="append", default=[], metavar="type=bind|tmpfs,...",
        help="type=bind,source=SRC,target=DST[,readonly] or type=tmpfs,target=DST",
    )  # fmt: skip
    sp.add_argument("--tmpfs", action="append", default=[], metavar="DST", help="mount a tmpfs at DST")
    sp.add_argument("--network", default="none", help="none (loopback only, the default), host, or ns:PATH (a network namespace)")
    sp.add_argument("--env-file", action="append", default=[], metavar="FILE", help="K=V lines (# comments; K alone: from this environment)")
    sp.add_argument("--annotation", action="append", default=[], metavar="K=V", help="an OCI annotation for the runtime")
    sp.add_argument("--entrypoint", help="the command to run, before the arguments given (a string, or a JSON array)")
    sp.add_argument("--stop-signal", help="the signal stop sends first (default SIGTERM)")
    sp.add_argument("--stop-timeout", type=_non_negative_float, help="seconds stop waits before SIGKILL (default 10)")
    sp.add_argument("--log-opt", action="append", default=[], metavar="max-size=SIZE", help="max-size: the log's size before conmon rotates it")
    sp.add_argument("--ulimit", action="append", default=[], metavar="NAME=SOFT[:HARD]", help="a resource limit, e.g. nofile=1024:2048")
    sp.add_argument("--cidfile", help="write the container's id to this file (which must not exist)")
    src = sp.add_mutually_exclusive_group()
    src.add_argument("--rootfs", help="a root filesystem directory (default: a busybox one)")
    src.add_argument("--bundle", help="an existing OCI bundle, run as is")
    sp.add_argument("--timeout", type=_positive_int, help="seconds the container may run before it is killed (default: no limit)")
    sp.add_argument("--create-timeout", type=_positive_float, default=240, help="seconds the create may take (default 240)")
    sp.add_argument("--rm", action="store_true", help="remove the container once it exits")
    sp.add_argument("-i", "--interactive", action="store_true", help="keep the container's stdin open (run: send this stdin to it)")
    sp.add_argument("-t", "--tty", action="store_true", help="give the container a terminal")
    sp.add_argument("cmd", nargs=argparse.REMAINDER, help="the command (after its options, or after --)")


def _one_name(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("name")


def _container_command_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("action", choices=["prune"])
    sp.add_argument("-f", "--force", action="store_true", help="do not ask (ocirt never asks: accepted for podman's scripts)")
    sp.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE", help="only the stopped containers these match (see ps --filter)")


def _completion_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("shell", choices=["bash", "zsh", "fish"])


def _detach_keys(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--detach-keys", type=_keys, default=attach.DEFAULT_DETACH_KEYS,
        help=f"keys that leave a terminal session, its container running (default {attach.DEFAULT_DETACH_KEYS}; \"\": none)",
    )  # fmt: skip


def _run_options(sp: argparse.ArgumentParser) -> None:
    _container_options(sp)
    sp.add_argument("-d", "--detach", action="store_true", help="print the id and leave it running")
    sp.add_argument(
        "--sig-proxy", type=_truth, nargs="?", const=True, default=True, metavar="BOOL",
        help="pass SIGINT/SIGTERM/SIGHUP on to the container while attached (default true)",
    )  # fmt: skip
    _detach_keys(sp)


def _start_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-a", "--attach", action="store_true", help="attach to the container's output (one container), then start it")
    sp.add_argument("-i", "--interactive", action="store_true", help="with -a, send this stdin to the container")
    _detach_keys(sp)
    _names(sp)


def _attach_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--no-stdin", action="store_true", help="do not send this stdin to the container")
    _detach_keys(sp)
    sp.add_argument("name")


def _id(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("id")


def _names(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("names", nargs="+")


def _stop_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-t", "--time", type=_non_negative_float, help="seconds before SIGKILL (default: the container's --stop-timeout, else 10)")
    sp.add_argument("-i", "--ignore", action="store_true", help="a name that matches no container is no error")
    _chosen(sp)


def _kill_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-s", "--signal", default="KILL", help="a signal name or number")
    _chosen(sp)


def _chosen(sp: argparse.ArgumentParser) -> None:
    """Names, or -a or --filter (see chosen)."""
    sp.add_argument("-a", "--all", action="store_true", help="every container")
    sp.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE", help="the containers these match (see ps --filter)")
    sp.add_argument("names", nargs="*")


def _rm_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-f", "--force", action="store_true", help="remove running or half-created ones too")
    sp.add_argument("-i", "--ignore", action="store_true", help="a name that matches no container is no error")
    _chosen(sp)


def _ps_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-a", "--all", action="store_true", help="stopped and created ones too")
    sp.add_argument("--format", help="json, or a Go template such as 'table {{.ID}}\\t{{.Names}}' (default: the table)")
    sp.add_argument("-q", "--quiet", action="store_true", help="the ids only")
    sp.add_argument("--no-trunc", action="store_true", help="whole ids and commands")
    sp.add_argument("--noheading", action="store_true", help="no header row")
    sp.add_argument("-n", "--last", type=_positive_int, metavar="N", help="the N most recently created (stopped ones too)")
    sp.add_argument("-l", "--latest", action="store_true", help="the most recently created (stopped ones too)")
    _filter_option(sp)
    sp.add_argument("--sync", action="store_true", help="ask the runtime for each container's status (default: the store and conmon's files)")


def _filter_option(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
        help="id=, name= (a regular expression), status=, label=KEY[=VALUE], exited=CODE; repeatable",
    )  # fmt: skip


def _inspect_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-f", "--format", help="json (the default), or a Go template such as '{{.State.Status}}'")
    _names(sp)


def _logs_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-f", "--follow", action="store_true", help="keep printing new output until the container exits")
    sp.add_argument("-t", "--timestamps", action="store_true", help="each line's time (RFC 3339, UTC) first")
    when = "an RFC 3339 time, a date, Unix seconds, or a duration like 10m"
    sp.add_argument("--since", type=_when, help=f"only lines written since then: {when} ago")
    sp.add_argument("--until", type=_until, help=f"only lines written until then: {when} from now (as podman)")
    sp.add_argument("-n", "--tail", type=_tail, default=None, metavar="N", help="only the last N lines (-1: all; with -f, then all new ones)")
    sp.add_argument("name")


def _exec_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-e", "--env", action="append", default=[], metavar="K=V", help="an environment variable (repeatable)")
    sp.add_argument("-u", "--user", help="uid[:gid] or a user name of the container (default: the container's)")
    sp.add_argument("-w", "--workdir", help="working directory (default: the container's)")
    sp.add_argument("-i", "--interactive", action="store_true", help="send this stdin to the process, to its end")
    sp.add_argument("-t", "--tty", action="store_true", help="give the process a terminal")
    sp.add_argument("-d", "--detach", action="store_true", help="print the session's id and leave it running (inspect shows its exit code)")
    _detach_keys(sp)
    sp.add_argument("name")
    sp.add_argument("cmd", nargs=argparse.REMAINDER)


def _limit_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-m", "--memory", type=_size, help="memory limit, e.g. 64m (-1: none)")
    sp.add_argument("--memory-reservation", type=_size, help="memory the container is kept above under pressure")
    sp.add_argument("--memory-swap", type=_size, help="memory plus swap (-1: no swap limit; default: as --memory)")
    sp.add_argument("--cpus", type=_positive_float, help="CPUs' worth of time, e.g. 1.5")
    sp.add_argument("--cpu-shares", type=_positive_int, help="relative CPU weight (2-262144)")
    sp.add_argument("--cpu-quota", type=_limit, help="CFS quota in microseconds per period (-1: none)")
    sp.add_argument("--cpu-period", type=_positive_int, help="CFS period in microseconds")
    sp.add_argument("--cpuset-cpus", help="CPUs it may run on, e.g. 0-1")
    sp.add_argument("--cpuset-mems", help="memory nodes it may use, e.g. 0")
    sp.add_argument("--pids-limit", type=_limit, help="processes at most (-1: none)")
    sp.add_argument("--blkio-weight", type=_positive_int, help="relative block I/O weight (10-1000)")


def _update_options(sp: argparse.ArgumentParser) -> None:
    _limit_options(sp)
    _names(sp)


def _stats_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--no-stream", action="store_true", help="print once and exit")
    sp.add_argument("--format", choices=["table", "json"], default="table", help="a table for people, or JSON")
    sp.add_argument("-i", "--interval", type=_positive_float, default=1.0, help="seconds between refreshes")
    sp.add_argument("names", nargs="*", help="containers (default: every running one)")


def _bench_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-n", "--count", type=_positive_int, default=100, help="containers to run (default 100)")
    sp.add_argument("-c", "--concurrency", type=_positive_int, default=4, help="at once (default 4)")
    sp.add_argument("--rootfs", help="a root filesystem directory (default: a busybox one)")
    sp.add_argument("--timeout", type=_positive_float, help="seconds each container may run")
    sp.add_argument("--format", choices=["table", "json"], default="table", help="a table for people, or JSON")
    sp.add_argument("--plot", metavar="FILE.png", help="draw each phase's latencies (needs matplotlib)")
    sp.add_argument("cmd", nargs=argparse.REMAINDER, help="the command (after --)")


_COMMANDS: Dict[str, Tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "run": ("create, start and wait for a container", _run_options),
    "create": ("create a container", _container_options),
    "start": ("start containers", _start_options),
    "attach": ("attach to a running container's output (and input)", _attach_options),
    "pause": ("pause containers", _names),
    "unpause": ("resume containers", _names),
    "wait": ("wait for containers", _names),
    "stop": ("stop containers", _stop_options),
    "kill": ("signal containers", _kill_options),
    "rm": ("remove containers", _rm_options),
    "ps": ("list containers", _ps_options),
    "inspect": ("show containers as JSON", _inspect_options),
    "logs": ("show a container's output", _logs_options),
    "exec": ("run a command in a running container", _exec_options),
    "stats": ("show containers' resource use", _stats_options),
    "update": ("change running containers' limits", _update_options),
    "bench": ("run a command in many containers, K at a time, and report", _bench_options),
    "version": ("print versions", lambda sp: None),
    "info": ("show what ocirt runs with: versions, cgroups, directories", lambda sp: None),
    "top": ("show the processes of a running container (from its cgroup)", _one_name),
    "container": ("container subcommands: prune (remove every stopped container)", _container_command_options),
    "completion": ("print a completion script for bash, zsh or fish", _completion_options),
    "cleanup": ("", _id),  # conmon's exit command for `run -d --rm`; not for people
}
_GLOBAL_WITH_VALUE = ("--root", "--log-level", "--runtime", "--conmon")


def command_of(argv: Sequence[str]) -> Optional[str]:
    """The subcommand `argv` names (skipping the global options and their values), or None."""
    args = iter(argv)
    for arg in args:
        if arg in _GLOBAL_WITH_VALUE:
            next(args, None)
        elif not arg.startswith("-"):
            return arg if arg in _COMMANDS else None
    return None


def _positive_int(text: str) -> int:
    """argparse type: a whole number above 0, in ASCII digits."""
    digits = text.strip()
    if not text.isascii() or not re.fullmatch(r"[+-]?[0-9]+", digits):
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    try:
        value = int(digits)
    except ValueError:  # more digits than int() takes
        raise argparse.ArgumentTypeError(f"too large: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _limit(text: str) -> int:
    """argparse type: a whole number above 0, or -1 for none."""
    return -1 if text.strip() == "-1" else _positive_int(text)


def _checked(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from a parser that raises InvalidArgument (its message becomes argparse's)."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except InvalidArgument as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return convert


_when = _checked(logfile.parse_when)  # logs --since (see logs.parse_when)
_until = _checked(lambda text: logfile.parse_when(text, ahead=True))  # logs --until: a duration is ahead of now, as podman
_keys = _checked(attach.parse_detach_keys)  # --detach-keys


def _tail(text: str) -> Optional[int]:
    """argparse type: a number of lines, or -1 for all (None)."""
    if text.strip() in ("-1", "0"):
        return None if text.strip() == "-1" else 0
    return _positive_int(text)


def _size(text: str) -> int:
    """argparse type: a size like 64m (see specgen.parse_size), or -1 for none."""
    if text.strip() == "-1":
        return -1
    try:
        return specgen.parse_size(text)
    except InvalidArgument as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def limits_from(args: argparse.Namespace, *, swap_as_memory: bool = False) -> Optional[Limits]:
    """The limit options given, as Limits (None if none); Usage naming the
    options when they do not fit together. `swap_as_memory`: without
    --memory-swap, a --memory limit allows no swap (as create always has)."""
    values = {f: getattr(args, f) for f in LIMIT_FIELDS}
    if swap_as_memory and values["memory_swap"] is None and values["memory"] not in (None, -1):
        values["memory_swap"] = values["memory"]
    if all(v is None for v in values.values()):
        return None
    try:
        return Limits(**values)
    except InvalidArgument as e:
        message = str(e)
        for field in sorted(LIMIT_FIELDS, key=len, reverse=True):
            message = re.sub(rf"\b{field}\b", "--" + field.replace("_", "-"), message)
        raise Usage(f"ocirt {args.command}: {message}") from e


def _positive_float(text: str) -> float:
    """argparse type: a finite number above 0, in ASCII."""
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    """argparse type: a finite number of at least 0, in ASCII ("10", "1.5", "2e3")."""
    try:
        value = float(text) if text.isascii() else math.nan
    except ValueError:
        value = math.nan
    if math.isnan(value):
        raise argparse.ArgumentTypeError(f"not a number: {text!r}")
    if math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a finite number: {text!r}")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _truth(text: str) -> bool:
    """argparse type: true or false, as podman's boolean flags take them."""
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"not true or false: {text!r}")


def _entrypoint(text: Optional[str]) -> List[str]:
    """--entrypoint: a JSON array of strings, or one command."""
    if not text:
        return []
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise Usage(f"ocirt: --entrypoint {text!r} is not a JSON array of strings")
        return list(value)
    return [text]


def _mounts(volumes: Sequence[str], mounts: Sequence[str]) -> "Tuple[List[Tuple[str, ...]], List[str]]":
    """-v SRC:DST[:ro|rw] and --mount type=...,... as (bind mounts, tmpfs destinations)."""
    binds: List[Tuple[str, ...]] = []
    tmpfs: List[str] = []
    for volume in volumes:
        parts = volume.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise Usage(f"ocirt: -v {volume!r}: use SRC:DST, SRC:DST:ro or SRC:DST:rw")
        binds.append(tuple(parts))
    for mount in mounts:
        fields: Dict[str, str] = {}
        for item in mount.split(","):
            key, sep, value = item.partition("=")
            fields[key] = value if sep else "true"
        kind, target = fields.pop("type", ""), fields.pop("target", fields.pop("destination", fields.pop("dst", "")))
        readonly = any(fields.pop(k, "false") in ("true", "1") for k in ("readonly", "ro"))
        source = fields.pop("source", fields.pop("src", ""))
        if kind == "bind" and source and target and not fields:
            binds.append((source, target, "ro" if readonly else "rw"))
        elif kind == "tmpfs" and target and not source and not fields:
            tmpfs.append(target)
        else:
            raise Usage(f"ocirt: --mount {mount!r}: use type=bind,source=SRC,target=DST[,readonly] or type=tmpfs,target=DST")
    return binds, tmpfs


def _ulimits(specs_given: Sequence[str]) -> Dict[str, Tuple[int, int]]:
    """--ulimit NAME=SOFT[:HARD] as {name: (soft, hard)}."""
    out = {}
    for given in specs_given:
        name, sep, values = given.partition("=")
        soft, _, hard = values.partition(":")
        try:
            out[name] = (int(soft), int(hard or soft))
        except ValueError:
            raise Usage(f"ocirt: --ulimit {given!r}: use NAME=SOFT[:HARD] with whole numbers") from None
        if not sep or not name:
            raise Usage(f"ocirt: --ulimit {given!r}: use NAME=SOFT[:HARD]")
    return out


def _env_files(paths: Sequence[str]) -> Dict[str, str]:
    """--env-file: K=V lines; blank lines and # comments skipped; K alone takes this process's value, if any."""
    env: Dict[str, str] = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise Usage(f"ocirt: --env-file {path}: {e.strerror}") from e
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if sep:
                env[key] = value
            elif key in os.environ:
                env[key] = os.environ[key]
    return env


def _log_size_max(options: Sequence[str]) -> Optional[int]:
    """--log-opt max-size=SIZE as bytes (None: the Runtime's); other log options are refused by name."""
    size = None
    for option in options:
        key, sep, value = option.partition("=")
        if key != "max-size" or not sep:
            raise Usage(f"ocirt: --log-opt {option!r}: only max-size=SIZE is supported (the log is conmon's k8s-file)")
        try:
            size = -1 if value.strip() == "-1" else specgen.parse_size(value)
        except InvalidArgument as e:
            raise Usage(f"ocirt: --log-opt {option!r}: {e}") from None
    return size


def _labels(pairs: Sequence[str]) -> Dict[str, str]:
    """-l K=V (or K, an empty value) as a dict."""
    return {k: v for k, _, v in (p.partition("=") for p in pairs)}


def _env(pairs: Sequence[str]) -> Dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            value = os.environ.get(key, "")  # podman's -e NAME takes it from the caller
        if not key:
            raise InvalidArgument(f"invalid environment variable {pair!r}: use K=V")
        env[key] = value
    return env


# -- verbs -------------------------------------------------------------------


def cmd_create(rt: Runtime, args: argparse.Namespace, out: Callable[[str], None]) -> Container:
    """Create the container described by the run/create options."""
    if not args.cmd and not args.bundle:
        raise Usage("ocirt: a command is needed (after --), or --bundle")
    name = check_name(args.name) if args.name else None
    env = {**_env_files(args.env_file), **_env(args.env)}
    limits = limits_from(args, swap_as_memory=True)
    cid = os.urandom(32).hex()
    state_root = rt.root or rt.tmp_dir
    bundle = os.path.join(state_root, "bundles", cid)
    binds, tmpfs = _mounts(args.volume, args.mount)
    if args.cidfile and os.path.lexists(args.cidfile):
        raise Usage(f"ocirt: the container id file {args.cidfile} exists already")
    if args.bundle:
        bundle, owned = args.bundle, False
    else:
        specgen.write_bundle(
            bundle,
            _entrypoint(args.entrypoint) + list(args.cmd),
            rootfs=args.rootfs,
            cache_dir=os.path.join(state_root, "rootfs"),
            env=env,
            cwd=args.workdir,
            user=args.user,
            hostname=args.hostname,
            read_only=args.read_only,
            cap_add=args.cap_add,
            cap_drop=args.cap_drop,
            tty=args.tty,
            mounts=binds,
            tmpfs=tmpfs + list(args.tmpfs),
            network=args.network,
            ulimits=_ulimits(args.ulimit),
            annotations=_labels(args.annotation),
            stop_signal=args.stop_signal,
            stop_timeout=args.stop_timeout,
        )
        owned = True
    # A detached --rm container is removed by conmon's exit command; in the
    # foreground, `run` removes it itself, unless a terminal session may
    # detach from it (detach keys).
    detached = getattr(args, "detach", False) or args.command == "create" or (args.tty and args.interactive)
    # -I: conmon runs it from the container's run dir, which must not be on sys.path.
    exit_command = [sys.executable, "-I", "-m", "ocirt", "--root", rt.root or "", "cleanup", cid] if args.rm and detached else []
    try:
        c = rt.create(
            cid,
            bundle,
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
            labels=_labels(args.label),
            log_size_max=_log_size_max(args.log_opt),
        )
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


def cmd_run(rt: Runtime, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """Create, start and wait; stream the output. On any way out before the
    container's exit (an error, Ctrl-C before start, a reader gone: `| head`),
    the container is stopped, and with --rm removed. A terminal session left
    with the detach keys leaves it running (and with --rm, conmon removes it
    when it exits)."""
    if args.detach and args.interactive and not args.tty:
        raise Usage("ocirt: -i sends this stdin while the container runs in the foreground: not with -d")
    if not args.detach:
        _check_terminal(args.tty, args.interactive)
    c = cmd_create(rt, args, out)
    if args.detach:
        try:
            c.start()
        except BaseException:
            _undo_run(c, args.rm)
            raise
        out(c.id)
        return 0
    ended = False
    with _attending(c):
        try:
            sock = c.connect(stdin=args.interactive)  # before the start: nothing is missed
            code = _attached(c, sock, args, start=c.start)
            ended = True
        finally:
            if not ended:
                _undo_run(c, args.rm)
        if args.rm and code is not DETACHED:
            try:
                c.delete()
            except ContainerNotFound:
                pass  # removed by someone else meanwhile: removed all the same
    return 0 if code is DETACHED else code


@contextlib.contextmanager
def _attending(c: Container) -> Iterator[None]:
    """While held, conmon's exit command (`cleanup`, given to a terminal
    session's --rm container, which may be detached from) leaves the
    container to this process, which reads its exit code and removes it.
    (A cleanup that waited for it instead would deadlock: our delete waits
    for conmon, which waits for its exit command.)"""
    fd = os.open(c._files.attended, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


DETACHED = None  # _attached's answer when the detach keys were typed


def _attached(c: Container, sock: "socket.socket", args: argparse.Namespace, start: Optional[Callable[[], None]] = None) -> Optional[int]:
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


def _check_terminal(tty: bool, interactive: bool) -> None:
    """-it needs a terminal to read keys from: Usage, as podman, when stdin is none."""
    if tty and interactive and not os.isatty(0):
        raise Usage("ocirt: the input device is not a TTY: -t with -i needs one (or leave out -t)")


def cmd_attach(rt: Runtime, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """Attach to a created, running or paused container until its output
    ends (its exit code) or the detach keys are typed (0, it runs on)."""
    c = rt.get(args.name)
    if c.state.status not in (ContainerStatus.RUNNING, ContainerStatus.PAUSED):
        raise OcirtError(f"cannot attach to container {c.name}: it is {c.state.status.value} (start -a attaches to a created one)")
    args.interactive = c.stdin and not args.no_stdin
    _check_terminal(bool(c.spec.get("process", {}).get("terminal")), args.interactive)
    code = _attached(c, c.connect(stdin=args.interactive), args)
    return 0 if code is DETACHED else code


def _start_unless_running(c: Container) -> None:
    """start; a running container is already what was asked (podman exits 0)."""
    if c.state.status is not ContainerStatus.RUNNING:
        c.start()


def cmd_start(rt: Runtime, args: argparse.Namespace, out: Callable[[str], None]) -> int:
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
    _check_terminal(bool(c.spec.get("process", {}).get("terminal")), args.interactive)
    code = _attached(c, c.connect(stdin=args.interactive), args, start=c.start)
    return 0 if code is DETACHED else code


def _undo_run(c: Container, remove: bool) -> None:
    """Stop a container whose run went wrong, and remove it with --rm; report, never raise."""
    try:
        c.stop(STOP_TIMEOUT)
        if remove:
            c.delete(force=True)
    except (OcirtError, OSError) as e:
        log.warning("cleanup of container %s failed: %s", c.id, e)


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


def report(name: str, error: OcirtError) -> None:
    """One line on stderr for a failed name; the traceback at --log-level debug."""
    log.debug("%s failed", name, exc_info=error)
    print(f"Error: {name}: {error}", file=sys.stderr)


def each(
    rt: Runtime,
    names: Iterable[str],
    action: Callable[[Container], Optional[str]],
    out: Callable[[str], None],
    *,
    ignore: bool = False,
    picked: bool = False,
) -> int:
    """Apply `action` to each named container; report errors per name, like
    podman. A name that matches none is skipped silently with `ignore`, or
    when `picked` (by -a or --filter: removed meanwhile)."""
    code = 0
    for name in names:
        try:
            result = action(rt.get(name))
        except ContainerNotFound as e:
            if not (ignore or picked):
                report(name, e)
                code = EXIT_ERROR
            continue
        except OcirtError as e:
            report(name, e)
            code = EXIT_ERROR
            continue
        out(result if result is not None else name)
    return code


EXIT_NO_SUCH = 1  # rm: a name that matches no container (podman's code)
EXIT_IN_USE = 2  # rm: a running container without -f (podman's code)


def chosen(rt: Runtime, args: argparse.Namespace) -> List[str]:
    """The containers a verb's names, -a and --filter pick (names first, as given)."""
    from . import reports  # only the verbs with --filter need it

    if args.all or args.filter:
        if args.names:
            raise Usage(f"ocirt {args.command}: give names, or -a/--filter, not both")
        keep = reports.parse_filters(args.filter)
        return [c.id for c in rt.list() if keep(c)]
    if not args.names:
        raise Usage(f"ocirt {args.command}: name at least one container, or give -a or --filter")
    return list(args.names)


def cmd_rm(rt: Runtime, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """Remove containers; exit 1 if a name matched none (unless -i), 2 if one is running (without -f)."""
    code = 0
    for name in chosen(rt, args):
        try:
            rt.get(name).delete(force=args.force)
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


def cmd_inspect(rt: Runtime, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """Each container in podman's inspect layout: a JSON list, or a template's line each."""
    from . import gotemplate, reports  # only ps and inspect need them

    template = gotemplate.parse(args.format) if args.format not in (None, "json") else None
    found, code = [], 0
    for name in args.names:
        try:
            c = rt.get(name)
            found.append(reports.inspect_record(c, c.exec_sessions(), _live_limits(c)))
        except OcirtError as e:
            report(name, e)
            code = EXIT_ERROR
    if template is None:
        out(json.dumps(found, indent=2))
    else:
        sys.stdout.write(template.table(found))
    return code


def _live_limits(c: Container) -> Optional[Dict[str, Any]]:
    """The limits in force, while the container's cgroup is there to say."""
    if c.state.status not in (ContainerStatus.CREATED, ContainerStatus.RUNNING, ContainerStatus.PAUSED):
        return None
    try:
        return c.limits()
    except OcirtError:
        return None


def cmd_stats(rt: Runtime, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """Each container's resource use, once or refreshed every interval until Ctrl-C."""
    from .statsview import StatsView  # only this verb needs it

    containers = [rt.get(n) for n in args.names] if args.names else [c for c in rt.list() if c.state.status is ContainerStatus.RUNNING]
    view = StatsView(containers, json_format=args.format == "json", clear=not args.no_stream and sys.stdout.isatty())
    try:
        out(view.render())
        while not args.no_stream:
            time.sleep(args.interval)  # the refresh rate, not a wait for anything
            out(view.render())
    except KeyboardInterrupt:
        return 0
    return 0


def cmd_ps(rt: Runtime, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    from . import gotemplate, reports  # only ps and inspect need them

    keep = reports.parse_filters(args.filter)
    template = None
    if args.format not in (None, "json", "table", "{{json .}}"):
        template = gotemplate.parse(args.format, reports.PS_HEADERS)
    everything = args.all or args.last or args.latest or args.filter
    listed = rt.list()
    for c in listed if args.sync else ():
        with contextlib.suppress(OcirtError):  # removed meanwhile, or a runtime that cannot tell: as the store says
            c.update_status()
    shown = [c for c in listed if (everything or c.state.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED)) and keep(c)]
    if args.last or args.latest:
        shown = sorted(shown, key=lambda c: c.created_at)[-(1 if args.latest else args.last) :]
    now = time.time()
    if args.quiet:
        for c in shown:
            out(c.id if args.no_trunc else c.id[:12])
        return 0
    if args.format in ("json", "{{json .}}"):
        out(json.dumps([reports.ps_record(c, now) for c in shown], indent=2))
        return 0
    if template is None:
        template = gotemplate.parse(
            "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.CreatedAt}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}",
            dict(reports.PS_HEADERS, CreatedAt="CREATED"),
        )
        rows = [reports.ps_view(c, now, args.no_trunc) for c in shown]
        for row in rows:
            row["CreatedAt"] = row["RunningFor"]
    else:
        rows = [reports.ps_view(c, now, args.no_trunc) for c in shown]
    text = template.table(rows)
    if args.noheading and template.is_table:
        text = text.split("\n", 1)[1]
    sys.stdout.write(text)
    return 0


def cmd_logs(rt: Runtime, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    c = rt.get(args.name)
    for record in c.logs(follow=args.follow, since=args.since, until=args.until, tail=args.tail):
        stream = sys.stdout if record.stream == "stdout" else sys.stderr
        prefix = logfile.format_time(record.time) + " " if args.timestamps else ""
        stream.write(prefix + record.text + "\n")
        stream.flush()
    return 0


def cmd_exec(rt: Runtime, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    if args.detach and args.interactive:
        raise Usage("ocirt exec: -i sends this stdin to the process to its end: not with -d")
    if not args.detach:
        _check_terminal(args.tty, args.interactive)
    c = rt.get(args.name)
    options: Dict[str, Any] = dict(env=_env(args.env) or None, user=args.user, cwd=args.workdir, tty=args.tty)
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


def _attended(path: str) -> bool:
    """Whether a foreground `run --rm` holds the container (see _attending)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def cmd_cleanup(rt: Runtime, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """conmon's exit command: remove the container once conmon itself is gone.

    conmon waits for its exit command, so this leaves conmon's cgroup, forks,
    lets conmon go, and removes the container from the detached child.
    """
    if _attended(rt.dirs.container(args.id).attended):
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


def cmd_bench(rt: Runtime, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """Churn the command; 1 if a container failed to run or left something behind."""
    from . import bench  # only this verb needs it (and tqdm, matplotlib)

    if not args.cmd:
        raise Usage("ocirt bench: a command is needed after --")
    bench.check_plot(args.plot)
    report, samples = bench.bench(
        rt, args.cmd, count=args.count, concurrency=args.concurrency, rootfs=args.rootfs, timeout=args.timeout,
        progress=sys.stderr.isatty(),
    )  # fmt: skip
    if args.plot:
        bench.plot(samples, args.plot, f"ocirt bench: {args.count} x {' '.join(args.cmd)}, {args.concurrency} at a time")
    if args.format == "json":
        out(bench.to_json(report))
    else:
        bench.render(report, out)
    return 1 if report["failed"] or any(report["leaks"].values()) else 0


def cmd_completion(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """A completion script for the shell, generated from the parser."""
    import shtab  # only this verb needs it

    out(shtab.complete(build_parser(), shell=args.shell))
    return 0


def cmd_info(rt: Runtime, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """What this ocirt runs with, as JSON."""
    from .cgroups import hierarchies

    def version_of(path: str) -> str:
        try:
            proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
        except OSError as e:
            return f"unavailable: {e.strerror}"
        return proc.stdout.splitlines()[0] if proc.stdout else ""

    mounts = hierarchies()
    info = {
        "version": __version__,
        "backend": _native.BACKEND,
        "runtime": {"path": rt.oci.path, "version": version_of(rt.oci.path)},
        "conmon": {"path": rt.launcher.conmon_path, "version": version_of(rt.launcher.conmon_path)},
        "cgroups": "v2" if all(h.version == 2 for h in mounts) else "v1" if all(h.version == 1 for h in mounts) else "hybrid",
        "root": rt.root,
        "run_dir": rt.tmp_dir,
        "containers": len(rt.list()),
    }
    out(json.dumps(info, indent=2))
    return 0


def cmd_top(rt: Runtime, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """The container's processes, read from its cgroup: user, pid, parent, command."""
    import pwd

    from .gotemplate import align  # only this verb needs it
    from .layout import read_small

    rows = ["USER\tPID\tPPID\tCOMMAND"]
    for pid in rt.get(args.name).pids():
        try:
            text = read_small(f"/proc/{pid}/status").decode(errors="replace")
            status = dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
            command = read_small(f"/proc/{pid}/cmdline").replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # ended meanwhile
        uid = int(status.get("Uid", "0").split()[0])
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = str(uid)
        rows.append(f"{user}\t{pid}\t{status.get('PPid', '').strip()}\t{command or status.get('Name', '').strip()}")
    sys.stdout.write(align(rows, min_width=8))
    return 0


def cmd_version(rt: Optional[Runtime], args: argparse.Namespace, out: Callable[[str], None]) -> int:
    out(f"ocirt version {__version__} ({_native.BACKEND} backend)")
    return 0


def _rmtree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def cannot_run_code(error: OcirtError) -> int:
    """126/127 for a container command that cannot run, as podman reports them."""
    text = str(error).lower()
    if isinstance(error, ConmonError):
        if "permission denied" in text:
            return EXIT_CANNOT_INVOKE
        if "no such file or directory" in text or "executable file not found" in text:
            return EXIT_NOT_FOUND
    return EXIT_ERROR


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--log-level=debug" in argv or any(a == "--log-level" and argv[i + 1 : i + 2] == ["debug"] for i, a in enumerate(argv))
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, raise_terminated)
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return 130
    except Terminated as e:
        return 128 + e.signum
    except OcirtError as e:
        if debug:
            log.exception("ocirt failed")
        print(f"Error: {e}", file=sys.stderr)
        return cannot_run_code(e)
    except OSError as e:
        if debug:
            log.exception("ocirt failed")
        print(f"Error: {e}", file=sys.stderr)
        return EXIT_ERROR


def _main(argv: List[str]) -> int:
    command = command_of(argv)
    args, unknown = build_parser(command).parse_known_args(argv)
    if unknown:
        where = f"ocirt {args.command}" if getattr(args, "command", None) else "ocirt"
        raise Usage(f"{where}: unknown flag {unknown[0]!r} (see {where} --help)")
    if getattr(args, "cmd", None) and args.cmd[0] == "--":
        args.cmd = args.cmd[1:]
    if args.command == "exec" and not args.cmd:
        raise Usage("ocirt exec: a command is needed after the container name")
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    out = lambda line: print(line, flush=True)  # noqa: E731
    if args.command == "version":
        return cmd_version(None, args, out)
    if args.command == "completion":
        return cmd_completion(args, out)
    options = {}
    if args.runtime:
        options["runtime_path"] = args.runtime
    if args.conmon:
        options["conmon_path"] = args.conmon
    with Runtime.open(args.root, **options) as rt:
        return _dispatch(rt, args, out)


def _dispatch(rt: Runtime, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    if args.command == "run":
        return cmd_run(rt, args, out)
    if args.command == "create":
        out(cmd_create(rt, args, out).id)
        return 0
    if args.command == "rm":
        return cmd_rm(rt, args, out)
    if args.command == "cleanup":
        return cmd_cleanup(rt, args, out)
    if args.command == "ps":
        return cmd_ps(rt, args, out)
    if args.command == "bench":
        return cmd_bench(rt, args, out)
    if args.command == "stats":
        return cmd_stats(rt, args, out)
    if args.command == "update":
        limits = limits_from(args)
        if limits is None:
            raise Usage("ocirt update: give at least one limit to change")
        return each(rt, args.names, lambda c: c.update(limits), out)
    if args.command == "logs":
        return cmd_logs(rt, args, out)
    if args.command == "exec":
        return cmd_exec(rt, args, out)
    if args.command == "attach":
        return cmd_attach(rt, args, out)
    if args.command == "start":
        return cmd_start(rt, args, out)
    if args.command == "inspect":
        return cmd_inspect(rt, args, out)
    if args.command == "info":
        return cmd_info(rt, args, out)
    if args.command == "top":
        return cmd_top(rt, args, out)
    if args.command == "container":
        from . import reports  # only the verbs with --filter need it

        keep = reports.parse_filters(args.filter)
        for c in rt.list(status="stopped"):
            if keep(c):
                with contextlib.suppress(ContainerNotFound):  # removed meanwhile
                    c.delete()
                    out(c.id)
        return 0
    if args.command == "wait":
        return each(rt, args.names, lambda c: str(c.wait()), out)
    if args.command == "kill":
        sig = parse_signal(args.signal)
        return each(rt, chosen(rt, args), lambda c: c.kill(sig), out, picked=args.all or bool(args.filter))
    if args.command == "stop":
        def stop(c: Container) -> None:
            c.stop(args.time if args.time is not None else specs.stop_timeout(c.spec))

        return each(rt, chosen(rt, args), stop, out, ignore=args.ignore, picked=args.all or bool(args.filter))
    verbs: Dict[str, Callable[[Container], None]] = {
        "pause": lambda c: c.pause(),
        "unpause": lambda c: c.resume(),
    }
    return each(rt, args.names, verbs[args.command], out)
