"""Where ocirt keeps its files under a Runtime's tmp_dir.

    tmp_dir/exits/<id>              conmon's exit file for the container
    tmp_dir/socket/<id>             conmon's attach-socket link (to the run dir)
    tmp_dir/containers/<id>/        the container's run dir: conmon's bundle and cwd
        config.json                 the caller's spec, made bundle-independent
        netns                       a bridged container's network namespace, bind-mounted (networks.py)
        pidfile, conmon.pid         the container's and conmon's pids
        ctr.log                     the container's output (k8s-file format)
        oom                         created by conmon on an OOM kill
        ctl, attach                 conmon's control FIFO and attach socket
        attended                    flock(2)ed by a foreground `run --rm` (see cli)
        exec/<session>/             one exec session: process.json (while it
                                    runs), pidfile, conmon.pid, ctr.log, ctl, exit/<id>
    tmp_dir/socket/exec:<digest>    an exec session's attach-socket link

Directories are 0700 and files that may hold env 0600: a container's spec
and its exec processes are nobody else's business.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from typing import Callable, Iterator, List, Optional, Tuple

from .errors import InvalidArgument

NETWORK_DIR = "/var/lib/ocirt/networks"  # the bridge networks' state, the host's (see networks.py)
PRIVATE_DIR = 0o700  # ocirt's directories: specs and env inside, nobody else's business
PRIVATE_FILE = 0o600


def make_private_dirs(path: str) -> None:
    """Make `path` (and missing parents) 0700, then check it is ours alone (check_private_dir)."""
    os.makedirs(path, mode=PRIVATE_DIR, exist_ok=True)
    check_private_dir(path)


def check_private_dir(path: str) -> None:
    """InvalidArgument unless `path` is a real directory owned by us that no one else
    can write, below directories that only root or we can change (or sticky ones, like /tmp).

    A directory another user controls could redirect what ocirt writes,
    removes and locks there.
    """
    me = os.geteuid()
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != me or st.st_mode & 0o022:
        what = "not a directory" if not stat.S_ISDIR(st.st_mode) else (f"owned by uid {st.st_uid}" if st.st_uid != me else "writable by others")
        raise InvalidArgument(f"refusing to keep ocirt's files in {path}: it is {what}")
    parent = os.path.dirname(path)
    while True:
        st = os.stat(parent)
        if st.st_uid not in (0, me) or (st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX):
            raise InvalidArgument(f"refusing to keep ocirt's files in {path}: {parent} can be changed by uid {st.st_uid} or others")
        if parent == "/":
            return
        parent = os.path.dirname(parent)


def read_small(path: str, limit: int = 65536, *, regular_only: bool = False) -> bytes:
    """The start (up to `limit` bytes) of a small file: a pid file, a /proc or
    cgroup file. Without Python's buffered file objects, which cost more
    than the read itself. With `regular_only` (a file a user names, such as
    a --cidfile), anything but a regular file is refused with
    OSError(EINVAL) before anything is read: a FIFO, device or socket could
    block the reader or never end. Raises OSError as open() does."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | (os.O_NONBLOCK if regular_only else 0))  # no wait for a FIFO's writer
    try:
        if regular_only and not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        data = b""
        while len(data) < limit:
            chunk = os.read(fd, limit - len(data))
            if not chunk:
                break
            data += chunk
        return data
    finally:
        os.close(fd)


def read_once(path: str, limit: int = 4096) -> bytes:
    """A kernel-made file of at most `limit` bytes (a cgroup knob, /proc/<pid>/stat)
    in one read: such files hand over all they hold at once, so the second
    read that `read_small` makes to see the end is saved. Raises OSError as
    open() does."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)


def write_private(path: str, data: bytes) -> None:
    """Write `path` as a 0600 file (never through a symlink)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


MAKING = ".making"  # beside bundles/<id>: flock(2)ed while its maker has not recorded the container


@contextlib.contextmanager
def making(bundle: str) -> Iterator[None]:
    """Held while this process makes `bundle` and records its container:
    a bundle that no record names is an orphan (its maker died between
    the two) only once nobody holds this (see remove_orphan_bundles)."""
    make_private_dirs(os.path.dirname(bundle))
    fd = os.open(bundle + MAKING, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(bundle + MAKING)
        os.close(fd)


def remove_orphan_bundles(bundles: str, recorded: Callable[[str], bool]) -> List[str]:
    """Remove each directory in `bundles` that no container record names
    (`recorded(name)`) and no process is making (see making): left by a
    process killed between writing a bundle (env and all) and recording
    its container. The names removed."""
    try:
        names = os.listdir(bundles)
    except FileNotFoundError:
        return []
    removed = []
    for name in names:
        if name.endswith(MAKING) or recorded(name):
            continue
        lock = os.path.join(bundles, name + MAKING)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # being made
        try:
            if not recorded(name) and remove_tree(os.path.join(bundles, name)) is None:
                removed.append(name)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)
            os.close(fd)
    return removed


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_tree(path: str) -> Optional[str]:
    """Remove `path` and everything below it, as a container may have left
    it: never following a symlink, however deep (no recursion: one
    descriptor open at a time, the path never longer than a name), however
    wide (each directory listed once). None when it is gone (or was never
    there); else what stopped the removal, which stops at the first error.
    """
    try:
        fd = os.open(path, _DIR_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno not in (errno.ENOTDIR, errno.ELOOP):
            return f"{path}: {e.strerror}"
        try:
            os.unlink(path)  # a file or a symlink where a tree was: the link, never its target
            return None
        except OSError as e2:
            return f"{path}: {e2.strerror}"
    try:
        # Each level: its name in its parent and the subdirectories still to remove.
        levels: List[Tuple[str, List[str]]] = [("", _clear_files(fd))]
        while levels:
            name, pending = levels[-1]
            if pending:
                child = pending.pop()
                try:
                    below = os.open(child, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    continue
                os.close(fd)
                fd = below
                levels.append((child, _clear_files(fd)))
                continue
            levels.pop()
            if levels:
                above = os.open("..", _DIR_FLAGS, dir_fd=fd)  # ".." is never a symlink
                os.close(fd)
                fd = above
                os.rmdir(name, dir_fd=fd)
        os.rmdir(path)
    except OSError as e:
        return f"{path}: {e.strerror} ({e.filename or 'a directory below it'})"
    finally:
        os.close(fd)
    return None


def _clear_files(fd: int) -> List[str]:
    """Unlink everything but directories in the directory at `fd`; the names of its subdirectories."""
    subdirs = []
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.name)
            else:
                os.unlink(entry.name, dir_fd=fd)
    return subdirs


class RuntimeDirs:
    """The directories shared by every container of one tmp_dir."""

    def __init__(self, tmp_dir: str) -> None:
        self.tmp_dir = os.path.abspath(tmp_dir)
        self.exits = os.path.join(self.tmp_dir, "exits")
        self.sockets = os.path.join(self.tmp_dir, "socket")
        self.containers = os.path.join(self.tmp_dir, "containers")

    def make(self) -> None:
        """Make the directories, 0700 (InvalidArgument if `tmp_dir` cannot hold them,
        or is not ocirt's alone: see check_private_dir)."""
        try:
            make_private_dirs(self.tmp_dir)
            for d in (self.exits, self.sockets, self.containers):
                make_private_dirs(d)
        except OSError as e:
            raise InvalidArgument(f"cannot keep ocirt's run files in {self.tmp_dir}: {e.strerror}") from e

    def container(self, cid: str) -> "ContainerDir":
        return ContainerDir(self, cid)


class ContainerDir:
    """The files of one container."""

    def __init__(self, dirs: RuntimeDirs, cid: str) -> None:
        self.cid = cid
        self.sockets = dirs.sockets
        self.root = os.path.join(dirs.containers, cid)
        self.config = os.path.join(self.root, "config.json")
        self.netns = os.path.join(self.root, "netns")  # a bridged container's network namespace (see networks.py)
        self.pidfile = os.path.join(self.root, "pidfile")
        self.conmon_pidfile = os.path.join(self.root, "conmon.pid")
        self.log = os.path.join(self.root, "ctr.log")
        self.ctl = os.path.join(self.root, "ctl")
        self.attended = os.path.join(self.root, "attended")
        self.oom = os.path.join(self.root, "oom")
        self.exit_dir = dirs.exits
        self.exit_file = os.path.join(dirs.exits, cid)
        self.socket_link = os.path.join(dirs.sockets, cid)

    def exec_session(self, session_id: str) -> "ExecDir":
        return ExecDir(self, session_id)


class ExecDir:
    """The files of one exec session (its own conmon bundle).

    Its conmon is named `cuuid`: "exec:" and a digest of the container's and
    the session's ids, so it can never be a container id (no ':' there) and
    its attach-socket link never replaces a container's.
    """

    def __init__(self, container: ContainerDir, session_id: str) -> None:
        import hashlib  # only for execs: not on every command's import

        self.cuuid = "exec:" + hashlib.sha256(f"{container.cid}/{session_id}".encode()).hexdigest()[:32]
        self.socket_link = os.path.join(container.sockets, self.cuuid)
        root = os.path.join(container.root, "exec", session_id)
        self.root = root
        self.process = os.path.join(root, "process.json")
        self.pidfile = os.path.join(root, "pidfile")
        self.conmon_pidfile = os.path.join(root, "conmon.pid")
        self.log = os.path.join(root, "ctr.log")
        self.ctl = os.path.join(root, "ctl")
        self.exit_dir = os.path.join(root, "exit")
