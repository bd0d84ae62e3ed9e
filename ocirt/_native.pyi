"""Types of the Cython binding of csrc/ (see _native.pyx for the contracts)."""

from typing import Iterable, Mapping, Optional, Sequence, Tuple, Union

_Path = Union[str, bytes]

SPAWN_MAX_FDS: int
PIDFD_DEFAULT: bool
INOTIFY_DEFAULT: bool

def spawn(
    path: _Path,
    argv: Sequence[_Path],
    env: Optional[Mapping[str, str]] = ...,
    fds: Iterable[Tuple[int, int]] = ...,
    cwd: Optional[_Path] = ...,
    *,
    cgroups: Iterable[int] = ...,
    setsid: bool = ...,
    setpgid: bool = ...,
) -> int: ...
def socketpair(type: int = ...) -> Tuple[int, int]: ...
def pidfd_open(pid: int) -> int: ...
def pidfd_send_signal(pidfd: int, sig: int) -> None: ...
def set_subreaper(on: bool = ...) -> None: ...
def wait_pids(pids: Iterable[int], timeout: Optional[float] = ..., *, use_pidfd: Optional[bool] = ...) -> list[int]: ...
def wait_file(
    directory: _Path,
    name: _Path,
    timeout: Optional[float] = ...,
    *,
    guard_pid: int = ...,
    guard_fd: int = ...,
    use_inotify: Optional[bool] = ...,
    use_pidfd: Optional[bool] = ...,
) -> bool: ...
def wait_change(
    path: _Path,
    timeout: Optional[float] = ...,
    *,
    known_size: int = ...,
    guard_pid: int = ...,
    guard_fd: int = ...,
    use_inotify: Optional[bool] = ...,
    use_pidfd: Optional[bool] = ...,
) -> bool: ...
def inotify_pool_size() -> int: ...
def open_in_root(dirfd: int, path: _Path) -> int: ...
def netns_make(path: _Path) -> None: ...
def netns_remove(path: _Path) -> None: ...
def watch_open(directory: _Path) -> Tuple[int, int]: ...
def watch_seen(fd: int, name: _Path) -> bool: ...
def watch_close(fd: int, wd: int) -> None: ...
