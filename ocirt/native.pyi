from types import ModuleType

from ._native import (
    INOTIFY_DEFAULT as INOTIFY_DEFAULT,
    PIDFD_DEFAULT as PIDFD_DEFAULT,
    SPAWN_MAX_FDS as SPAWN_MAX_FDS,
    inotify_pool_size as inotify_pool_size,
    netns_make as netns_make,
    netns_remove as netns_remove,
    open_in_root as open_in_root,
    pidfd_open as pidfd_open,
    pidfd_send_signal as pidfd_send_signal,
    set_subreaper as set_subreaper,
    socketpair as socketpair,
    spawn as spawn,
    wait_change as wait_change,
    wait_file as wait_file,
    wait_pids as wait_pids,
    watch_close as watch_close,
    watch_open as watch_open,
    watch_seen as watch_seen,
)

PUBLIC: tuple[str, ...]
BACKENDS: dict[str, str]
BACKEND: str

def load(name: str) -> ModuleType: ...
