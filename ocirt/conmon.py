"""conmon: its command line, its launch and its sync-pipe protocol.

The launch follows conmon's contract: the sync socket at fd 3 and the
start socket at fd 4 (named by `_OCI_SYNCPIPE` / `_OCI_STARTPIPE`), conmon
moved into its cgroup before the start byte is written, its first process
reaped (it double-forks and the daemon carries on), then one JSON line on
the sync socket: `{"pid": N}` (`{"data": N}` with --api-version), or a
negative value with the runtime's error `message`.

conmon never sees the caller's stdio: fd 0 is /dev/null and fds 1-2 a pipe
that only the first process writes to (its option errors); the daemon
replaces them with /dev/null itself.
"""

from __future__ import annotations

import errno
import json
import os
import re
import select
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from . import attach, native as _native
from ._nativeargs import STEP_CGROUP
from .errors import CgroupError, ConmonError, Timeout

SYNC_FD = 3
START_FD = 4
LISTEN_FDS_START = 5  # systemd socket-activation fds are passed on from here
ATTACH_FD = 5  # exec attach pipe (an exec passes no socket-activation fds)
EXIT_GRACE = 5.0  # seconds conmon gets to write its exit file and exit once its container (or exec) has
DEFAULT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


@dataclass(frozen=True)
class ConmonArgs:
    """Everything conmon's command line says about one container or exec."""

    conmon_path: str
    runtime_path: str
    cid: str
    cuuid: str
    bundle: str
    pidfile: str
    conmon_pidfile: str
    log_path: str
    exit_dir: str
    socket_dir: str
    systemd_cgroup: bool = False
    terminal: bool = False
    stdin: bool = False
    log_size_max: int = -1
    no_pivot: bool = False
    sync_log: bool = True  # conmon fsyncs the log when the container exits
    exec_spec: Optional[str] = None  # set for an exec session
    exec_attach: bool = False  # the exec waits until we are attached
    runtime_args: Tuple[str, ...] = ()
    exit_command: Tuple[str, ...] = ()  # run by conmon once the container has exited

    def argv(self) -> List[str]:
        args = [
            self.conmon_path,
            "-c", self.cid,
            "-u", self.cuuid,
            "-r", self.runtime_path,
            "-b", self.bundle,
            "-p", self.pidfile,
            "-P", self.conmon_pidfile,
            "-l", self.log_path,
            "--exit-dir", self.exit_dir,
            "--socket-dir-path", self.socket_dir,
        ]
        for arg in self.runtime_args:
            args += ["--runtime-arg", arg]
        if self.systemd_cgroup:
            args.append("-s")
        if self.terminal:
            args.append("-t")
        if self.stdin:
            args.append("-i")
        if self.log_size_max >= 0:
            args += ["--log-size-max", str(self.log_size_max)]
        if self.no_pivot:
            args.append("--no-pivot")
        if not self.sync_log:
            args.append("--no-sync-log")
        if self.exit_command:
            args += ["--exit-command", self.exit_command[0]]
            for arg in self.exit_command[1:]:
                args += ["--exit-command-arg", arg]
        if self.exec_spec is not None:
            # --api-version is a flag: the pid, then the exit code, as "data".
            args += ["-e", "--exec-process-spec", self.exec_spec, "--api-version"]
            if self.exec_attach:
                args.append("--exec-attach")
        return args


def conmon_env(base: Optional[Mapping[str, str]], environ: Mapping[str, str]) -> Tuple[Dict[str, str], int]:
    """conmon's environment and the number of socket-activation fds to pass.

    `base` (default: a standard PATH) plus the pipe fd numbers, plus
    NOTIFY_SOCKET and LISTEN_FDS when this process has them.
    """
    env = dict(DEFAULT_ENV if base is None else base)
    env["_OCI_SYNCPIPE"] = str(SYNC_FD)
    env["_OCI_STARTPIPE"] = str(START_FD)
    if "NOTIFY_SOCKET" in environ:
        env["NOTIFY_SOCKET"] = environ["NOTIFY_SOCKET"]
    listen = 0
    if environ.get("LISTEN_FDS", "").isdigit() and environ.get("LISTEN_PID", str(os.getpid())) == str(os.getpid()):
        listen = int(environ["LISTEN_FDS"])
        env["LISTEN_FDS"] = str(listen)
    return env, listen


@dataclass
class Launched:
    """A conmon daemon that reported its container (or exec) pid."""

    pid: int  # the container's (or exec process's) pid
    conmon_pid: int  # the conmon daemon's pid
    sync_fd: int = field(repr=False)  # our end of the sync socket, still open
    attach: Optional[socket.socket] = field(default=None, repr=False)  # exec output, when attached


def launch(
    args: ConmonArgs,
    env: Dict[str, str],
    *,
    cwd: str,
    timeout: Optional[float],
    join_files: Sequence[str] = (),
    join_cgroup: Optional[Callable[[int], None]] = None,
    listen_fds: int = 0,
    attach_dir: Optional[str] = None,
) -> Launched:
    """Run conmon and wait for its first sync message.

    conmon joins its cgroup before the start byte lets it fork: it writes
    "0" to each of `join_files` itself before it runs (see native.spawn),
    or `join_cgroup(pid)` moves it after the spawn (systemd's way).

    With `attach_dir` (an exec with `exec_attach`), conmon says on the attach
    pipe when its attach socket in `attach_dir` is ready; we connect, and a
    second start byte lets the exec begin, so no output is missed.

    On success the caller owns `Launched.sync_fd`. On failure raises
    ConmonError (carrying conmon's or the runtime's message), CgroupError or
    Timeout; conmon's first process is always reaped, and a daemon whose pid
    is known is killed. The caller removes what the runtime made.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    sync_parent, sync_child = _native.socketpair()
    start_parent, start_child = _native.socketpair()
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    fds = [(devnull, 0), (err_w, 1), (err_w, 2), (sync_child, SYNC_FD), (start_child, START_FD)]
    fds += [(3 + i, LISTEN_FDS_START + i) for i in range(listen_fds)]
    attach_parent = attach_child = -1
    if attach_dir is not None:
        attach_parent, attach_child = _native.socketpair()
        fds.append((attach_child, ATTACH_FD))
        env = dict(env, _OCI_ATTACHPIPE=str(ATTACH_FD))
    pid = -1
    sock: Optional[socket.socket] = None
    joins: List[int] = []
    try:
        try:
            for path in join_files:
                joins.append(_open_cgroup_file(path))
            pid = _native.spawn(args.conmon_path, args.argv(), env, fds, cwd, cgroups=joins)
        except OSError as e:
            if getattr(e, "failed_step", 0) == STEP_CGROUP:
                raise CgroupError(f"conmon cannot join its cgroup: {e.strerror}") from e
            raise ConmonError(f"cannot run conmon {args.conmon_path}: {e.strerror}") from e
        finally:
            for fd in (sync_child, start_child, err_w, devnull, attach_child, *joins):
                if fd >= 0:
                    os.close(fd)
        early: Optional[BaseException] = None
        try:
            if join_cgroup is not None:
                join_cgroup(pid)
            os.write(start_parent, b"0")
        except BaseException as e:
            # conmon died already (a failed write; its status says why), or we
            # failed or were interrupted (Ctrl-C): conmon must not go on, and it
            # reads a closed start pipe as "go", so it dies before the pipe closes.
            early = e
            os.kill(pid, signal.SIGKILL)  # still our unreaped child: its pid is ours
        finally:
            if attach_dir is None or early is not None:
                os.close(start_parent)
                start_parent = -1
        status = _reap(pid)
        if early is not None and not isinstance(early, OSError):
            raise early  # ours (a CgroupError, KeyboardInterrupt, ...), not conmon's
        said = _drain(err_r) if status != 0 else ""
        if status != 0 or early is not None:
            raise ConmonError(f"conmon exited with status {status}: {said or 'no message'}") from early
        if attach_dir is not None:
            if read_sync(attach_parent, deadline) is None:
                raise ConmonError("conmon exited before its attach socket was ready")
            sock = attach.connect(attach_dir)
            os.write(start_parent, b"0")  # now the exec may start
        message = read_sync(sync_parent, deadline)
        conmon_pid = read_pid(args.conmon_pidfile)
        if message is None:
            detail = _drain(err_r)
            raise ConmonError("conmon exited without reporting the container's pid" + (f": {detail}" if detail else ""))
        value = sync_value(message)
        if value < 0:
            if conmon_pid:
                _native.wait_pids([conmon_pid], 5)
            raise ConmonError(runtime_message(str(message.get("message") or "")) or f"conmon reported failure {value}")
        if conmon_pid is None:
            raise ConmonError(f"conmon reported pid {value} but wrote no pid file {args.conmon_pidfile}")
        return Launched(value, conmon_pid, sync_parent, sock)
    except BaseException:
        os.close(sync_parent)
        if sock is not None:
            sock.close()
        conmon_pid = read_pid(args.conmon_pidfile)
        if conmon_pid:
            _kill_quietly(conmon_pid)
        raise
    finally:
        os.close(err_r)
        for fd in (start_parent, attach_parent):
            if fd >= 0:
                os.close(fd)


def _open_cgroup_file(path: str) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise CgroupError(f"cannot join cgroup {os.path.dirname(path)}: {e.strerror}") from e


def read_sync(fd: int, deadline: Optional[float]) -> Optional[dict]:
    """Read one JSON line from the sync socket; None on EOF (conmon is gone).

    Raises Timeout at `deadline` (time.monotonic() seconds) and ConmonError
    on anything that is not one JSON object.
    """
    buf = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while b"\n" not in buf:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not poller.poll(None if left is None else int(left * 1000 + 0.999)):
            if left is not None and left <= 0:
                raise Timeout("timed out waiting for conmon's sync message")
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            if not buf.strip():
                return None
            break
        buf += chunk
    line = buf.split(b"\n", 1)[0]
    try:
        message = json.loads(line)
    except ValueError:
        raise ConmonError(f"conmon sent garbage on the sync pipe: {line[:200]!r}") from None
    if not isinstance(message, dict):
        raise ConmonError(f"conmon sent garbage on the sync pipe: {line[:200]!r}")
    return message


_LOGFMT_MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')


def runtime_message(text: str) -> str:
    """The runtime's error without its logfmt wrapping (time=... level=error msg="...")."""
    found = _LOGFMT_MSG.findall(text)
    if not found:
        return text.strip()
    return "; ".join(json.loads(f'"{m}"') for m in found)


def sync_value(message: dict) -> int:
    """The pid or exit code in a sync message (key "pid", "exit_code" or "data")."""
    for key in ("pid", "data", "exit_code"):
        value = message.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    raise ConmonError(f"conmon sent a sync message without a pid: {json.dumps(message)[:200]}")


def _reap(pid: int) -> int:
    """waitpid for our own child; its exit status (128+signal if killed)."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue
        code = os.waitstatus_to_exitcode(status)
        return code if code >= 0 else 128 - code


def reap_if_child(pid: int) -> None:
    """Reap `pid` if this process is its (sub)reaper; harmless otherwise."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _drain(fd: int) -> str:
    os.set_blocking(fd, False)
    out = b""
    try:
        while chunk := os.read(fd, 65536):
            out += chunk
    except BlockingIOError:
        pass
    return out.decode(errors="replace").strip()


def read_pid(path: str) -> Optional[int]:
    """The pid in a pid file, or None if the file is missing or empty."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def _kill_quietly(pid: int) -> None:
    try:
        fd = _native.pidfd_open(pid)
    except OSError:
        return
    try:
        _native.pidfd_send_signal(fd, signal.SIGKILL)
    except OSError as e:
        if e.errno != errno.ESRCH:
            raise
    finally:
        os.close(fd)
    _native.wait_pids([pid], 5)
    reap_if_child(pid)


def is_conmon_of(pid: int, cid: str) -> bool:
    """True if `pid` runs conmon for container `cid` (not some process that reused the pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return b"-c" in argv and cid.encode() in argv


def stop_daemon(conmon_pid: int, timeout: float) -> None:
    """Wait up to `timeout` for a conmon daemon to exit, then kill it; reap it."""
    if _native.wait_pids([conmon_pid], timeout):
        _kill_quietly(conmon_pid)
    reap_if_child(conmon_pid)


__all__: Sequence[str] = ["ConmonArgs", "Launched", "conmon_env", "launch", "read_sync", "sync_value", "read_pid", "reap_if_child", "stop_daemon"]
