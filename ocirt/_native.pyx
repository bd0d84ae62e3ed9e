# cython: language_level=3
"""Cython binding of csrc/: the hot paths of spawning and waiting.

Every function raises the built-in OSError subclass for the C errno
(FileNotFoundError, ProcessLookupError, ...). Blocking calls release the GIL.
Timeouts are in seconds; None waits forever.

The fallback paths can be forced for the whole process with the environment
switches OCIRT_NO_PIDFD=1 and OCIRT_NO_INOTIFY=1 (read at import), or per
call with the `use_pidfd` / `use_inotify` arguments.
"""

import os

from . import _nativeargs

from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport errno, EINTR, ETIMEDOUT
from libc.stdlib cimport malloc, free
from libc.string cimport memset

cdef extern from "ocirt.h" nogil:
    int OCIRT_SPAWN_SETSID
    int OCIRT_SPAWN_SETPGID
    int OCIRT_WAIT_NO_PIDFD
    int OCIRT_WAIT_NO_INOTIFY
    int OCIRT_SPAWN_MAX_FDS
    int ocirt_spawn(const char *path, char **argv, char **envp,
                    const int *fdmap, size_t nfds, const int *cgroups, size_t ncgroups,
                    const char *cwd, int flags, int *failed_step)
    int ocirt_socketpair(int type, int *fds)
    int ocirt_pidfd_open(int pid)
    int ocirt_pidfd_send_signal(int pidfd, int sig)
    int ocirt_set_subreaper(int on)
    int ocirt_wait_pids(const int *pids, size_t n, int timeout_ms, int flags,
                        unsigned char *alive)
    int ocirt_wait_file(const char *dir, const char *name, int timeout_ms,
                        int guard_pid, int guard_fd, int flags)
    int ocirt_inotify_pool_size()
    int ocirt_open_in_root(int dirfd, const char *path)
    int ocirt_netns_make(const char *path)
    int ocirt_netns_remove(const char *path)
    int ocirt_watch_open(const char *dir, int *wd)
    int ocirt_watch_seen(int fd, const char *name)
    void ocirt_watch_close(int fd, int wd)
    int ocirt_wait_change(const char *path, long long known_size, int timeout_ms,
                          int guard_pid, int guard_fd, int flags)

SPAWN_MAX_FDS = OCIRT_SPAWN_MAX_FDS
PIDFD_DEFAULT = os.environ.get("OCIRT_NO_PIDFD", "") in ("", "0")
INOTIFY_DEFAULT = os.environ.get("OCIRT_NO_INOTIFY", "") in ("", "0")


cdef raise_errno(int err, object filename=None):
    if filename is None:
        raise OSError(err, os.strerror(err))
    raise OSError(err, os.strerror(err), filename)


cdef int wait_flags(object use_pidfd, object use_inotify):
    cdef int flags = 0
    if not (PIDFD_DEFAULT if use_pidfd is None else use_pidfd):
        flags |= OCIRT_WAIT_NO_PIDFD
    if not (INOTIFY_DEFAULT if use_inotify is None else use_inotify):
        flags |= OCIRT_WAIT_NO_INOTIFY
    return flags


cdef char **string_array(list items) except NULL:
    cdef char **arr = <char **>malloc((len(items) + 1) * sizeof(char *))
    if arr == NULL:
        raise MemoryError()
    for i, item in enumerate(items):
        arr[i] = <char *>item
    arr[len(items)] = NULL
    return arr


def spawn(path, argv, env=None, fds=(), cwd=None, *, cgroups=(), setsid=False, setpgid=False):
    """Fork and exec `path` with `argv`; return the child's pid.

    `env` is a mapping (None: this process's environment). `fds` is a
    sequence of (source fd, target fd) pairs: each source lands exactly on
    its target in the child, whatever the overlap; every other fd is closed
    there. `cgroups` are fds of open cgroup files (v1 `tasks`, v2
    `cgroup.procs`) the child moves itself into first. The child's signal
    mask and dispositions are reset. A failure in the child raises its
    OSError here, naming the step (FileNotFoundError with the path for a
    missing binary, with the cwd for a missing directory), the child
    already reaped. ValueError for NUL bytes, or '=' in an env name.
    """
    bpath, bargv, benv, bcwd = _nativeargs.encode(path, argv, env, cwd)
    cdef const char *ccwd = NULL
    if bcwd is not None:
        ccwd = <bytes>bcwd
    cdef list pairs = _nativeargs.fd_pairs(fds, OCIRT_SPAWN_MAX_FDS)
    cdef list cgroup_fds = [int(fd) for fd in cgroups]
    if len(cgroup_fds) > OCIRT_SPAWN_MAX_FDS:
        raise ValueError(f"at most {OCIRT_SPAWN_MAX_FDS} cgroup files, not {len(cgroup_fds)}")
    cdef int flags = (OCIRT_SPAWN_SETSID if setsid else 0) | (OCIRT_SPAWN_SETPGID if setpgid else 0)
    cdef int fdmap[128]
    cdef int cgmap[64]
    for i, (s, t) in enumerate(pairs):
        fdmap[2 * i] = s
        fdmap[2 * i + 1] = t
    for i, fd in enumerate(cgroup_fds):
        cgmap[i] = fd
    cdef char **cargv = string_array(bargv)
    cdef char **cenv = NULL
    cdef const char *cpath = <bytes>bpath
    cdef size_t nfds = len(pairs)
    cdef size_t ncg = len(cgroup_fds)
    cdef int step = 0
    cdef int pid
    try:
        if benv is not None:
            cenv = string_array(benv)
        with nogil:
            pid = ocirt_spawn(cpath, cargv, cenv, fdmap, nfds, cgmap, ncg, ccwd, flags, &step)
        if pid < 0:
            raise _nativeargs.error(errno, step, path, cwd)
        return pid
    finally:
        free(cargv)
        free(cenv)


def socketpair(int type=1):
    """A close-on-exec AF_UNIX socketpair (default SOCK_STREAM) as two fds."""
    cdef int fds[2]
    if ocirt_socketpair(type, fds) < 0:
        raise_errno(errno)
    return fds[0], fds[1]


def pidfd_open(int pid):
    """A pidfd for `pid` (close-on-exec); ProcessLookupError if it is gone."""
    cdef int fd = ocirt_pidfd_open(pid)
    if fd < 0:
        raise_errno(errno)
    return fd


def pidfd_send_signal(int pidfd, int sig):
    """Signal the process behind `pidfd`: never a process that reused its pid."""
    if ocirt_pidfd_send_signal(pidfd, sig) < 0:
        raise_errno(errno)


def set_subreaper(bint on=True):
    """Make this process the reaper of its orphaned descendants (or stop)."""
    if ocirt_set_subreaper(on) < 0:
        raise_errno(errno)


def wait_pids(pids, timeout=None, *, use_pidfd=None):
    """Wait until every pid in `pids` has exited (a zombie counts as exited).

    Returns the list of pids still running: empty when all exited, the
    stragglers when `timeout` (seconds) ran out. Does not reap children.
    Signal handlers run while waiting (Ctrl-C raises KeyboardInterrupt).
    """
    cdef list plist = [int(p) for p in pids]
    deadline = _nativeargs.Deadline(timeout)
    cdef int flags = wait_flags(use_pidfd, None)
    cdef size_t n
    cdef int tmo, ret, err
    cdef int *cpids = NULL
    cdef unsigned char *alive = NULL
    while True:
        n = len(plist)
        cpids = <int *>malloc((n + 1) * sizeof(int))
        alive = <unsigned char *>malloc(n + 1)
        try:
            if cpids == NULL or alive == NULL:
                raise MemoryError()
            memset(alive, 0, n + 1)
            for i, p in enumerate(plist):
                cpids[i] = p
            tmo = deadline.ms()
            with nogil:
                ret = ocirt_wait_pids(cpids, n, tmo, flags, alive)
                err = errno
            plist = [plist[i] for i in range(n) if alive[i]]
        finally:
            free(cpids)
            free(alive)
        if ret == 0 or err == ETIMEDOUT:
            return plist
        if err != EINTR:
            raise_errno(err)
        PyErr_CheckSignals()


def wait_file(directory, name, timeout=None, *, guard_pid=0, guard_fd=-1, use_inotify=None, use_pidfd=None):
    """Wait until `directory`/`name` exists; True if it does, False on timeout.

    The guard, a process that would write the file: `guard_fd`, a pidfd the
    caller holds (it names exactly that process), else `guard_pid`. When it
    exits while the file is still missing, raises ProcessLookupError (it
    wrote nothing and never will). Signal handlers run while waiting.
    """
    cdef bytes bdir = os.fsencode(directory)
    cdef bytes bname = os.fsencode(name)
    cdef const char *cdir = bdir
    cdef const char *cname = bname
    deadline = _nativeargs.Deadline(timeout)
    cdef int flags = wait_flags(use_pidfd, use_inotify)
    cdef int gpid = guard_pid
    cdef int gfd = guard_fd
    cdef int tmo, ret, err
    while True:
        tmo = deadline.ms()
        with nogil:
            ret = ocirt_wait_file(cdir, cname, tmo, gpid, gfd, flags)
            err = errno
        if ret == 0:
            return True
        if err == ETIMEDOUT:
            return False
        if err != EINTR:
            raise_errno(err, os.path.join(directory, name))
        PyErr_CheckSignals()


def wait_change(path, timeout=None, *, known_size=-1, guard_pid=0, guard_fd=-1, use_inotify=None, use_pidfd=None):
    """Wait until the file `path` is written to, renamed or removed; True, or False on timeout.

    Returns at once if its size differs from `known_size` (what the caller
    read up to), so a write between the caller's read and this call is not
    missed. Raises ProcessLookupError when the guard (as for wait_file)
    exits first. Signal handlers run while waiting.
    """
    cdef bytes bpath = os.fsencode(path)
    cdef const char *cpath = bpath
    deadline = _nativeargs.Deadline(timeout)
    cdef int flags = wait_flags(use_pidfd, use_inotify)
    cdef int gpid = guard_pid
    cdef int gfd = guard_fd
    cdef long long size = known_size
    cdef int tmo, ret, err
    while True:
        tmo = deadline.ms()
        with nogil:
            ret = ocirt_wait_change(cpath, size, tmo, gpid, gfd, flags)
            err = errno
        if ret == 0:
            return True
        if err == ETIMEDOUT:
            return False
        if err != EINTR:
            raise_errno(err, path)
        PyErr_CheckSignals()


def open_in_root(int dirfd, path):
    """Open the regular file `path` beneath the directory `dirfd` as if that were /.

    Symlinks and ".." cannot lead out of it; never blocks (a FIFO cannot
    hang it); anything but a regular file raises OSError(EINVAL). For files
    in a container's root, which the container controls.
    """
    cdef bytes bpath = _nativeargs._encode(path, "path")
    cdef int fd = ocirt_open_in_root(dirfd, bpath)
    if fd < 0:
        raise_errno(errno, path)
    return fd


def netns_make(path):
    """Make a network namespace of its own, kept by a bind mount on the new file `path`."""
    cdef bytes bpath = _nativeargs._encode(path, "path")
    cdef const char *cpath = bpath
    cdef int ret, err = 0
    with nogil:
        ret = ocirt_netns_make(cpath)
        if ret < 0:
            err = errno
    if ret < 0:
        raise_errno(err, path)


def netns_remove(path):
    """Unmount and remove the namespace file `path` (what is gone already is no error)."""
    cdef bytes bpath = _nativeargs._encode(path, "path")
    if ocirt_netns_remove(bpath) < 0:
        raise_errno(errno, path)


def watch_open(directory):
    """(fd, wd): an inotify instance watching `directory` for files that appear, for an
    event loop to poll. Drain it with watch_seen; give it back with watch_close."""
    cdef bytes bdir = os.fsencode(directory)
    cdef int wd = -1
    cdef int fd = ocirt_watch_open(bdir, &wd)
    if fd < 0:
        raise_errno(errno, directory)
    return fd, wd


def watch_seen(int fd, name):
    """Drain the watch's events: True if one named `name` (or events were lost)."""
    cdef bytes bname = os.fsencode(name)
    return ocirt_watch_seen(fd, bname) == 1


def watch_close(int fd, int wd):
    """Remove the watch and give the instance back to the pool (closing it would cost 10+ ms)."""
    ocirt_watch_close(fd, wd)


def inotify_pool_size():
    """How many idle inotify instances wait_file keeps open for reuse (at most 8).

    Closing an inotify instance costs the kernel a grace period (10+ ms), so
    wait_file reuses them instead.
    """
    return ocirt_inotify_pool_size()
