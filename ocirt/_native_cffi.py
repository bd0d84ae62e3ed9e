"""The cffi backend of ocirt's native helpers: same names, same contracts as
the Cython backend (ocirt/_native.pyx), over the same csrc/ code.

cffi releases the GIL around every C call; errno becomes the built-in
OSError subclass, as in the Cython backend.
"""

from __future__ import annotations

import errno
import os
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from . import _nativeargs
from ._cffi_native import ffi, lib  # type: ignore[import-not-found]

_Path = Union[str, bytes]

SPAWN_MAX_FDS = lib.OCIRT_SPAWN_MAX_FDS
PIDFD_DEFAULT = os.environ.get("OCIRT_NO_PIDFD", "") in ("", "0")
INOTIFY_DEFAULT = os.environ.get("OCIRT_NO_INOTIFY", "") in ("", "0")
_ETIMEDOUT = 110


def _raise(filename: object = None) -> None:
    err = ffi.errno
    if filename is None:
        raise OSError(err, os.strerror(err))
    raise OSError(err, os.strerror(err), filename)


def _flags(use_pidfd: Optional[bool], use_inotify: Optional[bool]) -> int:
    flags = 0
    if not (PIDFD_DEFAULT if use_pidfd is None else use_pidfd):
        flags |= lib.OCIRT_WAIT_NO_PIDFD
    if not (INOTIFY_DEFAULT if use_inotify is None else use_inotify):
        flags |= lib.OCIRT_WAIT_NO_INOTIFY
    return flags


def _strings(items: List[bytes]) -> Tuple[Any, List[Any]]:
    keep = [ffi.new("char[]", item) for item in items]
    array = ffi.new("char *[]", keep + [ffi.NULL])
    return array, keep


def spawn(
    path: _Path,
    argv: Sequence[_Path],
    env: Optional[Mapping[str, str]] = None,
    fds: Iterable[Tuple[int, int]] = (),
    cwd: Optional[_Path] = None,
    *,
    cgroups: Iterable[int] = (),
    setsid: bool = False,
    setpgid: bool = False,
) -> int:
    """See ocirt._native.spawn."""
    bpath, bargv, benv, bcwd = _nativeargs.encode(path, argv, env, cwd)
    pairs = _nativeargs.fd_pairs(fds, SPAWN_MAX_FDS)
    cgroup_fds = [int(fd) for fd in cgroups]
    if len(cgroup_fds) > SPAWN_MAX_FDS:
        raise ValueError(f"at most {SPAWN_MAX_FDS} cgroup files, not {len(cgroup_fds)}")
    fdmap = ffi.new("int[]", [fd for pair in pairs for fd in pair] or [0])
    cgmap = ffi.new("int[]", cgroup_fds or [0])
    cargv, keep_argv = _strings(bargv)
    cenv, keep_env = _strings(benv) if benv is not None else (ffi.NULL, [])
    ccwd = ffi.NULL if bcwd is None else ffi.new("char[]", bcwd)
    flags = (lib.OCIRT_SPAWN_SETSID if setsid else 0) | (lib.OCIRT_SPAWN_SETPGID if setpgid else 0)
    step = ffi.new("int *")
    pid = lib.ocirt_spawn(bpath, cargv, cenv, fdmap, len(pairs), cgmap, len(cgroup_fds), ccwd, flags, step)
    if pid < 0:
        raise _nativeargs.error(ffi.errno, step[0], path, cwd)
    return int(pid)


def socketpair(type: int = 1) -> Tuple[int, int]:
    """See ocirt._native.socketpair."""
    fds = ffi.new("int[2]")
    if lib.ocirt_socketpair(type, fds) < 0:
        _raise()
    return fds[0], fds[1]


def pidfd_open(pid: int) -> int:
    """See ocirt._native.pidfd_open."""
    fd = lib.ocirt_pidfd_open(pid)
    if fd < 0:
        _raise()
    return int(fd)


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    """See ocirt._native.pidfd_send_signal."""
    if lib.ocirt_pidfd_send_signal(pidfd, sig) < 0:
        _raise()


def set_subreaper(on: bool = True) -> None:
    """See ocirt._native.set_subreaper."""
    if lib.ocirt_set_subreaper(1 if on else 0) < 0:
        _raise()


def wait_pids(pids: Iterable[int], timeout: Optional[float] = None, *, use_pidfd: Optional[bool] = None) -> List[int]:
    """See ocirt._native.wait_pids."""
    plist = [int(p) for p in pids]
    deadline = _nativeargs.Deadline(timeout)
    flags = _flags(use_pidfd, None)
    while True:
        cpids = ffi.new("int[]", plist or [0])
        alive = ffi.new("unsigned char[]", len(plist) or 1)
        ret = lib.ocirt_wait_pids(cpids, len(plist), deadline.ms(), flags, alive)
        err = ffi.errno
        plist = [p for i, p in enumerate(plist) if alive[i]]
        if ret == 0 or err == _ETIMEDOUT:
            return plist
        if err != errno.EINTR:
            raise OSError(err, os.strerror(err))
        # EINTR: pending signal handlers run as this loop goes on (Ctrl-C raises).


def wait_file(
    directory: _Path,
    name: _Path,
    timeout: Optional[float] = None,
    *,
    guard_pid: int = 0,
    guard_fd: int = -1,
    use_inotify: Optional[bool] = None,
    use_pidfd: Optional[bool] = None,
) -> bool:
    """See ocirt._native.wait_file."""
    deadline = _nativeargs.Deadline(timeout)
    bdir, bname, flags = os.fsencode(directory), os.fsencode(name), _flags(use_pidfd, use_inotify)
    while True:
        ret = lib.ocirt_wait_file(bdir, bname, deadline.ms(), guard_pid, guard_fd, flags)
        err = ffi.errno
        if ret == 0:
            return True
        if err == _ETIMEDOUT:
            return False
        if err != errno.EINTR:
            raise OSError(err, os.strerror(err), os.path.join(os.fsdecode(directory), os.fsdecode(name)))


def wait_change(
    path: _Path,
    timeout: Optional[float] = None,
    *,
    known_size: int = -1,
    guard_pid: int = 0,
    guard_fd: int = -1,
    use_inotify: Optional[bool] = None,
    use_pidfd: Optional[bool] = None,
) -> bool:
    """See ocirt._native.wait_change."""
    deadline = _nativeargs.Deadline(timeout)
    bpath, flags = os.fsencode(path), _flags(use_pidfd, use_inotify)
    while True:
        ret = lib.ocirt_wait_change(bpath, known_size, deadline.ms(), guard_pid, guard_fd, flags)
        err = ffi.errno
        if ret == 0:
            return True
        if err == _ETIMEDOUT:
            return False
        if err != errno.EINTR:
            raise OSError(err, os.strerror(err), os.fsdecode(path))


def open_in_root(dirfd: int, path: _Path) -> int:
    """See ocirt._native.open_in_root."""
    fd = lib.ocirt_open_in_root(dirfd, _nativeargs._encode(path, "path"))
    if fd < 0:
        _raise(path)
    return int(fd)


def netns_make(path: _Path) -> None:
    """See ocirt._native.netns_make."""
    if lib.ocirt_netns_make(_nativeargs._encode(path, "path")) < 0:
        _raise(path)


def netns_remove(path: _Path) -> None:
    """See ocirt._native.netns_remove."""
    if lib.ocirt_netns_remove(_nativeargs._encode(path, "path")) < 0:
        _raise(path)


def watch_open(directory: _Path) -> Tuple[int, int]:
    """See ocirt._native.watch_open."""
    wd = ffi.new("int *")
    fd = lib.ocirt_watch_open(os.fsencode(directory), wd)
    if fd < 0:
        _raise(directory)
    return int(fd), int(wd[0])


def watch_seen(fd: int, name: _Path) -> bool:
    """See ocirt._native.watch_seen."""
    return bool(lib.ocirt_watch_seen(fd, os.fsencode(name)) == 1)


def watch_close(fd: int, wd: int) -> None:
    """See ocirt._native.watch_close."""
    lib.ocirt_watch_close(fd, wd)


def inotify_pool_size() -> int:
    """See ocirt._native.inotify_pool_size."""
    return int(lib.ocirt_inotify_pool_size())
