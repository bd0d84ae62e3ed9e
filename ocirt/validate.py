"""Checks of caller input, done before anything is created."""

from __future__ import annotations

import math
import os
import re
import signal as _signal
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

from .errors import InvalidArgument

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
ID_MAX_LENGTH = 128
FULL_ID_PATTERN = re.compile(r"[0-9a-f]{64}")  # what ocirt's CLI makes: a name must never look like one
SIGNAL_MAX = _signal.SIGRTMAX

SignalLike = Union[int, str, _signal.Signals]


def check_id(value: object, what: str = "container id") -> str:
    """Return `value` if it is a valid id, else raise InvalidArgument.

    Valid: 1 to 128 characters from [A-Za-z0-9_.-], starting with a letter
    or digit (so never empty, '.', '..' or containing '/').
    """
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a string, not {type(value).__name__}")
    if not value:
        raise InvalidArgument(f"{what} must not be empty")
    if len(value) > ID_MAX_LENGTH:
        raise InvalidArgument(f"{what} is {len(value)} characters long; at most {ID_MAX_LENGTH} are allowed")
    if not ID_PATTERN.fullmatch(value):
        raise InvalidArgument(
            f"invalid {what} {value!r}: use letters, digits, '_', '.' and '-', starting with a letter or digit"
        )
    return value


def check_labels(labels: object) -> Dict[str, str]:
    """A copy of `labels` if it maps non-empty strings without "=" or NUL to
    strings without NUL, else InvalidArgument naming the bad one."""
    return _string_map(labels, "labels", "label")


def check_name(value: object, what: str = "container name") -> str:
    """Return `value` if it is a valid container name, else raise InvalidArgument.

    A name follows the id rules (see check_id) but must not look like a full
    container id (64 lowercase hex digits), so it can never be taken for
    another container's id.
    """
    name = check_id(value, what)
    if FULL_ID_PATTERN.fullmatch(name):
        raise InvalidArgument(f"invalid {what} {name!r}: 64 hex digits are a container id, not a name")
    return name


def parse_signal(value: SignalLike) -> int:
    """A signal number from an int, a Signals member, ASCII decimal digits, or a
    name like 'TERM' or 'SIGTERM' (any case); InvalidArgument for anything else."""
    if isinstance(value, bool):
        raise InvalidArgument(f"invalid signal {value!r}")
    if isinstance(value, str):
        name = value.strip().upper()
        if not value.isascii() or not name:
            raise InvalidArgument(f"unknown signal {value!r}")
        if name.isdecimal():
            if len(name) > 10:  # no need to turn a huge string into a number to know it is out of range
                raise InvalidArgument(f"signal {value!r} is out of range 1-{SIGNAL_MAX}")
            return parse_signal(int(name))
        if not name.startswith("SIG"):
            name = "SIG" + name
        try:
            return int(_signal.Signals[name])
        except KeyError:
            raise InvalidArgument(f"unknown signal {value!r}") from None
    if isinstance(value, int):
        if not 1 <= value <= SIGNAL_MAX:
            raise InvalidArgument(f"signal {int(value)} is out of range 1-{SIGNAL_MAX}")
        return int(value)
    raise InvalidArgument(f"invalid signal {value!r}")


def check_timeout(value: object, what: str = "timeout") -> float | None:
    """A non-negative number of seconds, or None for no limit.

    None and infinity (also an int too large for a float) mean no limit;
    NaN, negatives and non-numbers raise InvalidArgument.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
        raise InvalidArgument(f"{what} must be a non-negative number of seconds or None, not {value!r}")
    try:
        seconds = float(value)
    except OverflowError:
        return None
    return None if math.isinf(seconds) else seconds


def check_input(value: object) -> Optional[bytes]:
    """Data for a process's stdin as bytes (str as UTF-8; bytes-like copied),
    or None for none; InvalidArgument for anything else."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise InvalidArgument(f"stdin must be bytes or str, not {type(value).__name__}")


def check_argv(value: object, what: str = "command", *, empty_ok: bool = False) -> Tuple[str, ...]:
    """`value` as a tuple if it is a list or tuple (never a str, which would
    be split into characters) of non-empty strings without NUL, and not
    empty unless `empty_ok`; else InvalidArgument naming `what`."""
    args = check_sequence(value, what)
    if not args and not empty_ok:
        raise InvalidArgument(f"{what} must not be empty: give a list of strings such as ['sh', '-c', 'echo hi']")
    checked = []
    for arg in args:
        if not isinstance(arg, str) or not arg or "\0" in arg:
            raise InvalidArgument(f"invalid argument {arg!r:.80} in {what}: each must be a non-empty string without NUL")
        checked.append(arg)
    return tuple(checked)


def check_sequence(value: object, what: str) -> Tuple[Any, ...]:
    """`value` as a tuple if it is a sequence other than a str or bytes, else InvalidArgument naming `what`."""
    if isinstance(value, (str, bytes, bytearray)) or not isinstance(value, Sequence):
        raise InvalidArgument(f"{what} must be a list or tuple, not {type(value).__name__} {value!r:.80}")
    return tuple(value)


def check_env(value: object, what: str = "env") -> Dict[str, str]:
    """A copy of `value` if it maps names (non-empty, without '=' or NUL) to
    strings without NUL; {} for None; else InvalidArgument naming the bad entry."""
    return _string_map(value, what, "environment variable")


def _string_map(value: object, what: str, entry: str) -> Dict[str, str]:
    """A copy of `value` if it maps `entry` names (non-empty, without '=' or
    NUL) to strings without NUL; {} for None; else InvalidArgument."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"{what} must be a dict of strings, not {type(value).__name__} {value!r:.80}")
    for key, text in value.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise InvalidArgument(f"invalid {entry} name {key!r} in {what}: a non-empty string without '=' or NUL")
        if not isinstance(text, str) or "\0" in text:
            raise InvalidArgument(f"invalid value {text!r:.80} of {entry} {key!r} in {what}: a string without NUL")
    return dict(value)


def check_text(value: object, what: str) -> str:
    """`value` if it is a str without NUL, else InvalidArgument naming `what`."""
    if not isinstance(value, str) or "\0" in value:
        raise InvalidArgument(f"{what} must be a string without NUL, not {value!r:.80}")
    return value


def check_path(value: object, what: str) -> str:
    """`value` (a str or os.PathLike) as a str if it is a non-empty path
    without NUL, else InvalidArgument naming `what`. An empty path is
    refused, not taken as the current directory."""
    path = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(path, str) or not path or "\0" in path:
        raise InvalidArgument(f"{what} must be a non-empty path, not {value!r:.80}")
    return path
