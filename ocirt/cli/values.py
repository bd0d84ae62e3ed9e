"""The command line's values: argparse types, the limit options (create, run
and update), and the converters from flags to what the library takes."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from typing import Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

from .. import attach, logs as logfile, specgen
from ..cgroups.limits import LIMIT_FIELDS, Limits
from ..errors import InvalidArgument
from ..layout import read_small
from .common import Usage

T = TypeVar("T")


def positive_int(text: str) -> int:
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
    return -1 if text.strip() == "-1" else positive_int(text)


def _checked(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from a parser that raises InvalidArgument (its message becomes argparse's)."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except InvalidArgument as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return convert


when = _checked(logfile.parse_when)  # logs --since (see logs.parse_when)
until = _checked(lambda text: logfile.parse_when(text, ahead=True))  # logs --until: a duration is ahead of now, as podman
keys = _checked(attach.parse_detach_keys)  # --detach-keys


def tail(text: str) -> Optional[int]:
    """argparse type: a number of lines, or -1 for all (None)."""
    if text.strip() in ("-1", "0"):
        return None if text.strip() == "-1" else 0
    return positive_int(text)


def size(text: str) -> int:
    """argparse type: a size like 64m (see specgen.parse_size), or -1 for none."""
    if text.strip() == "-1":
        return -1
    try:
        return specgen.parse_size(text)
    except InvalidArgument as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def limit_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-m", "--memory", type=size, help="memory limit, e.g. 64m (-1: none)")
    sp.add_argument("--memory-reservation", type=size, help="memory the container is kept above under pressure")
    sp.add_argument("--memory-swap", type=size, help="memory plus swap (-1: no swap limit; default: as --memory)")
    sp.add_argument("--cpus", type=positive_float, help="CPUs' worth of time, e.g. 1.5")
    sp.add_argument("--cpu-shares", type=positive_int, help="relative CPU weight (2-262144)")
    sp.add_argument("--cpu-quota", type=_limit, help="CFS quota in microseconds per period (-1: none)")
    sp.add_argument("--cpu-period", type=positive_int, help="CFS period in microseconds")
    sp.add_argument("--cpuset-cpus", help="CPUs it may run on, e.g. 0-1")
    sp.add_argument("--cpuset-mems", help="memory nodes it may use, e.g. 0")
    sp.add_argument("--pids-limit", type=_limit, help="processes at most (-1: none)")
    sp.add_argument("--blkio-weight", type=positive_int, help="relative block I/O weight (10-1000)")


def limits_from(args: argparse.Namespace) -> Optional[Limits]:
    """The limit options given, as Limits (None if none); Usage naming the
    options when they do not fit together. A --memory limit without
    --memory-swap allows as much swap again, as podman's (memory plus swap
    twice the memory) on run, create and update alike."""
    values = {f: getattr(args, f) for f in LIMIT_FIELDS}
    if values["memory_swap"] is None and values["memory"] not in (None, -1):
        values["memory_swap"] = 2 * values["memory"]
    if all(v is None for v in values.values()):
        return None
    try:
        return Limits(**values)
    except InvalidArgument as e:
        raise Usage(f"ocirt {args.command}: {_as_options(str(e))}") from e


def _as_options(message: str) -> str:
    """A message of Limits with the fields it names written as their options
    (memory_swap as --memory-swap), in one pass, so that no option is
    rewritten again. A name with an underscore is one wherever it is; a
    one-word name (memory, cpus) only as the first word, where Limits names
    the field at fault: elsewhere it is a plain word ("memory nodes")."""
    longest_first = sorted(LIMIT_FIELDS, key=len, reverse=True)
    anywhere = "|".join(f for f in longest_first if "_" in f)
    pattern = rf"^(?:{'|'.join(longest_first)})\b|\b(?:{anywhere})\b"
    return re.sub(pattern, lambda found: "--" + found.group(0).replace("_", "-"), message)


def positive_float(text: str) -> float:
    """argparse type: a finite number above 0, in ASCII."""
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def non_negative_float(text: str) -> float:
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


def interval(text: str) -> float:
    """argparse type: a Go duration like 250ms or 1s, or a number of milliseconds (as podman's wait --interval)."""
    seconds = logfile.parse_duration(text)
    if seconds is None and text.strip().isascii() and text.strip().isdigit():
        seconds = int(text.strip()) / 1000
    if seconds is None or seconds <= 0:
        raise argparse.ArgumentTypeError(f"not a positive duration: {text!r} (e.g. 250ms, 1s)")
    return seconds


def truth(text: str) -> bool:
    """argparse type: true or false, as podman's boolean flags take them."""
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"not true or false: {text!r}")


def entrypoint(text: Optional[str]) -> List[str]:
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


def mounts(volumes: Sequence[str], mounts: Sequence[str]) -> "Tuple[List[Tuple[str, ...]], List[str]]":
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


def ulimits(specs_given: Sequence[str]) -> Dict[str, Tuple[int, int]]:
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


ENV_FILE_MAX = 1 << 20  # bytes: half of all that execve takes (arguments and environment) by default


def env_files(paths: Sequence[str]) -> Dict[str, str]:
    """--env-file: K=V lines; blank lines and # comments skipped; K alone takes this process's value, if any.
    Each file is a regular one of at most ENV_FILE_MAX bytes of UTF-8 (a FIFO
    or a device such as /dev/zero could block or never end), else Usage."""
    env: Dict[str, str] = {}
    for path in paths:
        try:
            data = read_small(path, ENV_FILE_MAX + 1, regular_only=True)
        except OSError as e:
            raise Usage(f"ocirt: --env-file {path}: {e.strerror or e}") from e
        if len(data) > ENV_FILE_MAX:
            raise Usage(f"ocirt: --env-file {path}: larger than {ENV_FILE_MAX} bytes")
        try:
            lines = data.decode("utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise Usage(f"ocirt: --env-file {path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
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


def log_size_max(options: Sequence[str]) -> Optional[int]:
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


def labels(pairs: Sequence[str]) -> Dict[str, str]:
    """-l K=V (or K, an empty value) as a dict."""
    return {k: v for k, _, v in (p.partition("=") for p in pairs)}


def env(pairs: Sequence[str]) -> Dict[str, str]:
    """-e K=V as a dict; -e K takes K from this process's environment, and
    is skipped when K is not set there (as podman does)."""
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not key:
            raise InvalidArgument(f"invalid environment variable {pair!r}: use K=V")
        if sep:
            env[key] = value
        elif key in os.environ:
            env[key] = os.environ[key]
    return env
