"""What both native backends check and convert before calling C: spawn
arguments, timeouts, and errors."""

from __future__ import annotations

import math
import os
import time
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple, Union

MAX_TIMEOUT_MS = 2**31 - 1  # C's int: about 24 days, the longest a single wait may be

Path = Union[str, bytes]

# The steps a spawn can fail at in the child (csrc/ocirt.h OCIRT_STEP_*), as words.
STEP_CGROUP = 2
STEPS = {1: "placing its fds", STEP_CGROUP: "moving into its cgroup", 3: "changing directory", 4: "starting a session", 5: "exec"}


def _encode(value: Path, what: str) -> bytes:
    data = os.fsencode(value)
    if b"\0" in data:
        raise ValueError(f"embedded null byte in {what}")
    return data


def encode(
    path: Path, argv: Sequence[Path], env: Optional[Mapping[str, str]], cwd: Optional[Path]
) -> Tuple[bytes, List[bytes], Optional[List[bytes]], Optional[bytes]]:
    """(path, argv, env as KEY=VALUE, cwd) as bytes; ValueError for what exec would misread.

    env None is this process's environment, copied now: the vfork child
    must not read C's `environ`, which another thread's os.environ change
    (pytest sets one at each test) may reallocate under it (EFAULT).
    """
    bargv = [_encode(a, "argv") for a in argv]
    if not bargv:
        raise ValueError("argv must not be empty")
    if env is None:
        benv = [key + b"=" + value for key, value in os.environb.items()]
        return _encode(path, "path"), bargv, benv, None if cwd is None else _encode(cwd, "cwd")
    benv = []
    for key, value in env.items():
        bkey = _encode(key, "an environment variable name")
        if not bkey or b"=" in bkey:
            raise ValueError(f"illegal environment variable name {key!r}")
        benv.append(bkey + b"=" + _encode(value, f"environment variable {key!r}"))
    return _encode(path, "path"), bargv, benv, None if cwd is None else _encode(cwd, "cwd")


def fd_pairs(fds: Iterable[Tuple[int, int]], limit: int) -> List[Tuple[int, int]]:
    pairs = [(int(s), int(t)) for s, t in fds]
    if len(pairs) > limit:
        raise ValueError(f"at most {limit} fds can be passed, not {len(pairs)}")
    return pairs


def error(err: int, step: int, path: Path, cwd: Optional[Path]) -> OSError:
    """The OSError for a spawn that failed at `step` (0: in the parent), naming what
    failed; its `failed_step` attribute is `step`."""
    message = os.strerror(err)
    if step == 5 or step == 0:
        e = OSError(err, message, os.fsdecode(path))
    elif step == 3 and cwd is not None:
        e = OSError(err, f"{message} (changing directory)", os.fsdecode(cwd))
    else:
        e = OSError(err, f"{message} ({STEPS.get(step, 'spawning')})")
    e.failed_step = step  # type: ignore[attr-defined]
    return e


class Deadline:
    """A timeout in seconds (None: none) as C's milliseconds, shrinking as time passes.

    A wait that a signal interrupts (EINTR) goes on with the time left.
    """

    def __init__(self, timeout: Optional[float]) -> None:
        if timeout is not None and (math.isnan(timeout) or timeout < 0):
            raise ValueError(f"timeout must be >= 0 or None, not {timeout!r}")
        self._end = None if timeout is None or math.isinf(timeout) else time.monotonic() + timeout

    def ms(self) -> int:
        """Milliseconds left, rounded up (a 0.1 ms wait still waits); -1 for no limit."""
        if self._end is None:
            return -1
        left = self._end - time.monotonic()
        return 0 if left <= 0 else min(math.ceil(left * 1000), MAX_TIMEOUT_MS)
