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

import json
import os
import re
import signal
import socket
import stat
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from . import attach, native as _native
from ._nativeargs import STEP_CGROUP
from .errors import CgroupError, ConmonError, InvalidArgument, Timeout
from .layout import read_small
from .process import ProcessHandle, cmdline, wait_steps
from .steps import Readable, Steps, block

SYNC_FD = 3  # with socket-activation fds, the pipes come after them (see conmon_env)
START_FD = 4
ATTACH_FD = 5  # exec attach pipe (an exec passes no socket-activation fds)
LISTEN_FDS_MAX = 32
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
    leave_stdin_open: bool = False  # an attacher that leaves does not end the process's stdin (terminals: detach, attach)
    kill_after: int = 0  # seconds the container may run before conmon kills it (0: no limit)
    log_size_max: int = -1
    no_pivot: bool = False
    sync_log: bool = True  # conmon fsyncs the log when the container exits
    replace_listen_pid: bool = False  # socket activation: LISTEN_PID becomes the runtime's
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
        if self.leave_stdin_open:
            args.append("--leave-stdin-open")
        if self.kill_after > 0:
            args += ["--timeout", str(self.kill_after)]
        if self.log_size_max >= 0:
            args += ["--log-size-max", str(self.log_size_max)]
        if self.no_pivot:
            args.append("--no-pivot")
        if not self.sync_log:
            args.append("--no-sync-log")
        if self.replace_listen_pid:
            args.append("--replace-listen-pid")
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


def conmon_env(base: Optional[Mapping[str, str]], listen_fds: int = 0) -> Dict[str, str]:
    """conmon's environment: `base` (default: a standard PATH, nothing of this
    process's own, so no NOTIFY_SOCKET) plus the pipes' fd numbers.

    With `listen_fds` socket-activation fds (placed at 3 onwards, the pipes
    after them), LISTEN_FDS says so; with --replace-listen-pid conmon sets
    LISTEN_PID to the runtime's pid, and the runtime hands them on.
    """
    env = dict(DEFAULT_ENV if base is None else base)
    env["_OCI_SYNCPIPE"] = str(SYNC_FD + listen_fds)
    env["_OCI_STARTPIPE"] = str(START_FD + listen_fds)
    if listen_fds:
        env["LISTEN_FDS"] = str(listen_fds)
        env["LISTEN_PID"] = "1"  # replaced by conmon
    return env


def socket_activation(environ: Mapping[str, str]) -> List[int]:
    """The fds systemd's socket activation passed to this process (sd_listen_fds).

    Only if LISTEN_PID is this process's pid and LISTEN_FDS a small ASCII
    number, and only fds that are sockets; InvalidArgument otherwise (never
    a host fd that merely happens to be open at 3 onwards).
    """
    count = environ.get("LISTEN_FDS")
    if count is None or environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    if not (count.isascii() and count.isdecimal()) or not 0 < int(count) <= LISTEN_FDS_MAX:
        raise InvalidArgument(f"LISTEN_FDS must be a number from 1 to {LISTEN_FDS_MAX}, not {count[:20]!r}")
    fds = list(range(3, 3 + int(count)))
    check_sockets(fds)
    return fds


def check_sockets(fds: Sequence[int]) -> None:
    """InvalidArgument unless every fd is an open socket."""
    if len(fds) > LISTEN_FDS_MAX:
        raise InvalidArgument(f"at most {LISTEN_FDS_MAX} socket-activation fds can be passed, not {len(fds)}")
    for fd in fds:
        try:
            is_socket = isinstance(fd, int) and not isinstance(fd, bool) and fd >= 0 and stat.S_ISSOCK(os.fstat(fd).st_mode)
        except OSError:
            is_socket = False
        if not is_socket:
            raise InvalidArgument(f"socket-activation fd {fd!r} is not an open socket")


@dataclass
class Launched:
    """A conmon daemon that reported its container (or exec) pid."""

    pid: int  # the container's (or exec process's) pid
    conmon_pid: int  # the conmon daemon's pid
    spawned_at: float = field(repr=False)  # time.monotonic() when conmon was spawned
    sync_fd: int = field(repr=False)  # our end of the sync socket, still open
    conmon: Optional[ProcessHandle] = field(default=None, repr=False)  # the daemon, proven by its argv
    attach: Optional[socket.socket] = field(default=None, repr=False)  # exec output, when attached


def launch(args: ConmonArgs, env: Dict[str, str], **options: Any) -> Launched:
    """launch_steps, blocking."""
    return block(launch_steps(args, env, **options))


def launch_steps(
    args: ConmonArgs,
    env: Dict[str, str],
    *,
    cwd: str,
    timeout: Optional[float],
    join_files: Sequence[str] = (),
    join_cgroup: Optional[Callable[[int], None]] = None,
    listen_fds: Sequence[int] = (),
    attach_dir: Optional[str] = None,
    attach_input: bool = False,
) -> Steps[Launched]:
    """Run conmon and wait for its first sync message (see ocirt.steps).

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
    # Socket-activation fds at 3 onwards, where the runtime hands them on from; the pipes after them.
    fds = [(devnull, 0), (err_w, 1), (err_w, 2), *((fd, 3 + i) for i, fd in enumerate(listen_fds))]
    fds += [(sync_child, SYNC_FD + len(listen_fds)), (start_child, START_FD + len(listen_fds))]
    attach_parent = attach_child = -1
    if attach_dir is not None:
        attach_parent, attach_child = _native.socketpair()
        fds.append((attach_child, ATTACH_FD))
        env = dict(env, _OCI_ATTACHPIPE=str(ATTACH_FD))
    pid = -1
    sock: Optional[socket.socket] = None
    daemon: Optional[ProcessHandle] = None
    first: Optional[ProcessHandle] = None  # conmon's first process, our child until reaped
    joins: List[int] = []
    try:
        try:
            for path in join_files:
                joins.append(_open_cgroup_file(path))
            pid = _native.spawn(args.conmon_path, args.argv(), env, fds, cwd, cgroups=joins)
            spawned_at = time.monotonic()
            first = ProcessHandle.open(pid)
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
        while first is not None and not first.exited():  # it forks the daemon, then exits
            if not (yield Readable((first.fd or -1,), deadline)):
                raise Timeout("timed out waiting for conmon to start")
        status = _reap(pid)
        pid = -1
        if early is not None and not isinstance(early, OSError):
            raise early  # ours (a CgroupError, KeyboardInterrupt, ...), not conmon's
        said = _drain(err_r) if status != 0 else ""
        if status != 0 or early is not None:
            raise ConmonError(f"conmon exited with status {status}: {said or 'no message'}") from early
        if attach_dir is not None:
            if (yield from read_sync_steps(attach_parent, deadline)) is None:
                raise ConmonError("conmon exited before its attach socket was ready")
            sock = attach.connect(attach_dir, send_input=attach_input)
            os.write(start_parent, b"0")  # now the exec may start
        message = yield from read_sync_steps(sync_parent, deadline)
        conmon_pid = read_pid(args.conmon_pidfile)
        daemon = _launched_conmon(conmon_pid, args)
        if message is None:
            detail = _drain(err_r)
            raise ConmonError("conmon exited without reporting the container's pid" + (f": {detail}" if detail else ""))
        value = sync_value(message)
        if value < 0:
            if daemon is not None:
                if args.leave_stdin_open:
                    daemon.signal(signal.SIGKILL)  # it would hold the stdin it keeps open; there is nothing else to do
                yield from wait_steps([daemon], EXIT_GRACE)  # it exits by itself after reporting the failure
            raise ConmonError(runtime_message(str(message.get("message") or "")) or f"conmon reported failure {value}")
        if conmon_pid is None:
            raise ConmonError(f"conmon reported pid {value} but wrote no pid file {args.conmon_pidfile}")
        return Launched(value, conmon_pid, spawned_at, sync_parent, conmon=daemon, attach=sock)
    except BaseException:
        os.close(sync_parent)
        if sock is not None:
            sock.close()
        if pid > 0:  # the first process, still ours: it must not read a closed start pipe as "go"
            os.kill(pid, signal.SIGKILL)
            _reap(pid)
        if daemon is None:
            daemon = _launched_conmon(read_pid(args.conmon_pidfile), args)
        if daemon is not None:
            daemon.stop(0)
            daemon.close()
        raise
    finally:
        if first is not None:
            first.close()
        os.close(err_r)
        for fd in (start_parent, attach_parent):
            if fd >= 0:
                os.close(fd)


def _open_cgroup_file(path: str) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise CgroupError(f"cannot join cgroup {os.path.dirname(path)}: {e.strerror}") from e


SYNC_MAX = 64 << 10  # bytes in one sync message, at most


def read_sync(fd: int, deadline: Optional[float]) -> Optional[Dict[str, Any]]:
    """read_sync_steps, blocking."""
    return block(read_sync_steps(fd, deadline))


def read_sync_steps(fd: int, deadline: Optional[float]) -> Steps[Optional[Dict[str, Any]]]:
    """Read one JSON line from the sync socket; None on EOF (conmon is gone).

    Raises Timeout at `deadline` (time.monotonic() seconds) and ConmonError
    on anything that is not one JSON object of at most SYNC_MAX bytes.
    """
    buf = b""
    while b"\n" not in buf:
        if len(buf) > SYNC_MAX:
            raise ConmonError(f"conmon sent a sync message longer than {SYNC_MAX} bytes: {buf[:200]!r}...")
        if not (yield Readable((fd,), deadline)):
            raise Timeout("timed out waiting for conmon's sync message")
        chunk = os.read(fd, min(4096, SYNC_MAX + 1 - len(buf)))  # a message of SYNC_MAX bytes and its newline fit
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
    """The runtime's error without its logfmt wrapping (time=... level=error msg="...").

    Each msg is Go-quoted (%q); one that does not decode is kept as written.
    """
    found = _LOGFMT_MSG.findall(text)
    if not found:
        return text.strip()
    messages = []
    for quoted in found:
        try:
            messages.append(go_unquote(quoted))
        except ValueError:
            messages.append(quoted)
    return "; ".join(messages)


_GO_ESCAPES = {"a": b"\a", "b": b"\b", "f": b"\f", "n": b"\n", "r": b"\r", "t": b"\t", "v": b"\v", "\\": b"\\", '"': b'"'}
_GO_TOKEN = re.compile(
    r"\\(?:([abfnrtv\\\"])|x([0-9A-Fa-f]{2})|([0-7]{3})|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8}))|([^\\]+)|(\\)",
    re.DOTALL,
)


def go_unquote(body: str) -> str:
    """The text of a Go double-quoted string literal, given without its quotes.

    Decodes Go's escapes: \\a \\b \\f \\n \\r \\t \\v \\\\ \\" \\xNN and \\NNN (octal)
    as bytes (so they may form UTF-8 characters; invalid UTF-8 becomes
    U+FFFD), \\uXXXX and \\UXXXXXXXX as characters. Raises ValueError for
    anything Go would refuse: an unknown or short escape, an octal escape
    above 255, a surrogate or a code point above U+10FFFF.
    """
    out = bytearray()
    for m in _GO_TOKEN.finditer(body):
        simple, hex_byte, octal, short, long, plain, bad = m.groups()
        if bad is not None:
            raise ValueError(f"invalid escape at {m.start()} in a Go string")
        if plain is not None:
            out += plain.encode("utf-8")  # a lone surrogate cannot be encoded: UnicodeEncodeError, a ValueError
        elif simple is not None:
            out += _GO_ESCAPES[simple]
        elif hex_byte is not None:
            out.append(int(hex_byte, 16))
        elif octal is not None:
            if int(octal, 8) > 255:
                raise ValueError(f"octal escape \\{octal} is above 255")
            out.append(int(octal, 8))
        else:
            code = int(short or long, 16)
            if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
                raise ValueError(f"escape for U+{code:X} is not a character")
            out += chr(code).encode("utf-8")
    return out.decode("utf-8", errors="replace")


def sync_value(message: Dict[str, Any]) -> int:
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
        text = read_small(path, 64).decode(errors="replace").strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def is_conmon_of(pid: int, cid: str, cuuid: Optional[str] = None) -> bool:
    """True if `pid` runs conmon for container `cid` (and `cuuid`, default `cid`: an
    exec's conmon has its own), not some process that reused the pid."""
    argv = cmdline(pid)
    pairs = set(zip(argv, argv[1:], strict=False))
    return (b"-c", cid.encode()) in pairs and (b"-u", (cuuid or cid).encode()) in pairs


def _launched_conmon(pid: Optional[int], args: ConmonArgs) -> Optional[ProcessHandle]:
    """The daemon of the conmon just launched, from the pid file it just wrote.

    Proven by being our child (when we are its subreaper: only we can reap
    it, so until we do, the pid is still that conmon's, exiting or not), or
    else by its argv.
    """
    return ProcessHandle.open(pid, parent=os.getpid()) or open_conmon(pid, args.cid, args.cuuid)


def open_conmon(pid: Optional[int], cid: str, cuuid: Optional[str] = None, started: Optional[int] = None) -> Optional[ProcessHandle]:
    """A handle on the conmon of `cid`/`cuuid` at `pid` (from a pid file or a record),
    if that is what runs there (and it started at `started`, when given); else None."""
    return ProcessHandle.open(pid, started=started, check=lambda p: is_conmon_of(p, cid, cuuid))


__all__: Sequence[str] = ["ConmonArgs", "Launched", "conmon_env", "launch", "open_conmon", "read_sync", "sync_value", "read_pid"]
