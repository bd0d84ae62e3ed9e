"""Runtime roots claimed with flock(2), for processes that come and go.

A test worker or a Dask worker keeps its containers in a root of its own
under a shared base directory, holding `<root>.lock` while it lives. The
kernel drops the lock however the process ends (SIGKILL included), so a
root whose lock is free belongs to a process that ended without cleaning
up: the next process to claim it removes what it left.
"""

from __future__ import annotations

import fcntl
import os
from typing import Iterator, Tuple

from .errors import OcirtError
from .layout import check_private_dir, make_private_dirs

MAX_ROOTS = 64  # roots under one base: more live claimants than this is a mistake
ROOT_BASE = "/run/ocirt"  # root's bases go here: only root can make entries in /run


def user_base() -> str:
    """The directory under which this user's bases of claimed roots go
    unless told, made 0700 if missing: ROOT_BASE for root, else
    $XDG_RUNTIME_DIR/ocirt, else ocirt-UID in the temporary directory.
    The first two are in directories where no other user can make it
    first (one who did would block every run: see `claim`); in the last,
    another user can, and then InvalidArgument says so."""
    if os.geteuid() == 0:
        base = ROOT_BASE
    elif os.path.isabs(os.environ.get("XDG_RUNTIME_DIR", "")):
        base = os.path.join(os.environ["XDG_RUNTIME_DIR"], "ocirt")
    else:
        import tempfile  # only for users other than root without a runtime directory

        base = os.path.join(tempfile.gettempdir(), f"ocirt-{os.geteuid()}")
    make_private_dirs(base)
    return base


def claim(root: str) -> Tuple[str, int]:
    """The first of `root`, `root`-1, `root`-2, ... whose lock this process
    gets; (that root, the fd holding its lock: close it to release).
    The base directory is made 0700 if new and, new or not, must be ours
    alone (InvalidArgument otherwise: another user could plant roots and
    locks there). OcirtError when MAX_ROOTS are held."""
    base = os.path.dirname(root)
    make_private_dirs(base)
    for n in range(MAX_ROOTS):
        path = root if n == 0 else f"{root}-{n}"
        fd = _lock(path)
        if fd is not None:
            return path, fd
    raise OcirtError(f"{MAX_ROOTS} live processes hold roots named {os.path.basename(root)} under {base}")


def unclaimed(base: str) -> Iterator[Tuple[str, int]]:
    """Each root under `base` whose lock no process holds, claimed in turn:
    (root, its lock's fd) for the caller to clean and then close. Nothing
    when `base` does not exist; InvalidArgument when it is not ours alone."""
    try:
        check_private_dir(base)
    except FileNotFoundError:
        return
    names = sorted(os.listdir(base))
    for name in names:
        if name.endswith(".lock") and os.path.isdir(os.path.join(base, name[: -len(".lock")])):
            root = os.path.join(base, name[: -len(".lock")])
            fd = _lock(root)
            if fd is not None:
                yield root, fd


def _lock(root: str) -> "int | None":
    """An fd holding the lock of `root` now; None if another process holds it."""
    fd = os.open(root + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd
