"""The OCI runtime command line (runc and compatible), one method per verb.

Modelled on go-runc: `OCIRuntime` holds the global flags, each verb builds
its argv with a pure `*_args` method that tests check without running
anything, and a failing command raises RuntimeCommandError carrying argv,
exit status and stderr.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from . import native as _native
from .errors import ContainerNotFound, RuntimeCommandError
from .layout import read_once, read_small
from .steps import Readable, Steps, block

if TYPE_CHECKING:
    from .process import ProcessHandle

EXEC_FIFO_TIMEOUT_MS = 10_000
HOST_ONLY_ENV = ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")  # this process's, not a container's

# Substrings of runc's stderr that mean "no such container".
_NOT_FOUND = ("does not exist", "not found", "no such")


class OCIRuntime:
    """A runtime binary with its global flags (`--root`, `--systemd-cgroup`)."""

    def __init__(self, path: str, *, root: Optional[str] = None, systemd_cgroup: bool = False) -> None:
        self.path = path
        self.root = root
        self.systemd_cgroup = systemd_cgroup
        self.name = os.path.basename(path)

    @property
    def state_dir(self) -> str:
        """Where the runtime keeps its containers' state (runc as root: /run/runc)."""
        return self.root or os.path.join("/run", self.name)

    def status_from_files(self, cid: str, freezer: Optional[str], *, started: bool = False) -> Optional[str]:
        """The status `state` would report, read the way runc reads it, without a runc process.

        runc says "created" while the container's exec.fifo exists, "paused"
        while its freezer cgroup is frozen, else "running" (its process
        alive: the caller knows that from a pidfd), and knows no container
        whose state directory is gone. `freezer` is the container's v1
        freezer cgroup directory or v2 cgroup directory. None when this
        cannot be read (another runtime, no freezer): ask `state` then.
        `started`: the container is known to have been started, so it cannot
        be "created" any more and its exec.fifo is not looked for.
        """
        if self.name != "runc" or freezer is None:
            return None
        directory = os.path.join(self.state_dir, cid)
        if not started and os.path.exists(os.path.join(directory, "exec.fifo")):
            return "created"
        try:
            return "paused" if read_once(os.path.join(freezer, "freezer.state")).strip() == b"FROZEN" else "running"
        except FileNotFoundError:
            pass
        try:
            return "paused" if b"frozen 1" in read_once(os.path.join(freezer, "cgroup.events")).splitlines() else "running"
        except FileNotFoundError:
            pass
        # No freezer cgroup: runc delete removed it with the state directory, or it cannot be read here.
        return None if os.path.isdir(directory) else "stopped"

    def global_args(self) -> List[str]:
        args = [self.path]
        if self.root:
            args += ["--root", self.root]
        if self.systemd_cgroup:
            args.append("--systemd-cgroup")
        return args

    # argv builders: pure, no side effects

    def start_args(self, cid: str) -> List[str]:
        return self.global_args() + ["start", cid]

    def kill_args(self, cid: str, sig: int, all_processes: bool = False) -> List[str]:
        return self.global_args() + ["kill"] + (["--all"] if all_processes else []) + [cid, str(sig)]

    def pause_args(self, cid: str) -> List[str]:
        return self.global_args() + ["pause", cid]

    def resume_args(self, cid: str) -> List[str]:
        return self.global_args() + ["resume", cid]

    def delete_args(self, cid: str, force: bool = False) -> List[str]:
        return self.global_args() + ["delete"] + (["--force"] if force else []) + [cid]

    def state_args(self, cid: str) -> List[str]:
        return self.global_args() + ["state", cid]

    # verbs, as steps (see ocirt.steps); the few used outside any verb also blocking

    def start_steps(self, cid: str, init: Optional[ProcessHandle] = None, *, hooks: bool = False, await_exec: bool = True) -> Steps[None]:
        """Start a created container; with runc, return once its process runs.

        What `runc start` does is read the container's exec.fifo, which lets
        `runc init` exec the process, and remove it: about 0.1 ms instead of
        a 5-9 ms runc process. So for runc that fifo is read here, guarded
        by the init's pidfd (`init`); any other runtime, or a container with
        poststart `hooks` (which `runc start` runs), goes through the runtime.
        Either way runc init execs the process a few ms after the fifo ends
        (`runc start` returns before that about half the time): a signal
        sent in between would reach runc init, so this waits for the exec
        (unless not `await_exec`: a caller that sends no signal but SIGKILL,
        which ends runc init as surely).
        """
        init_fd = init.fd if init is not None and self.name == "runc" else None
        if init is None or init_fd is None:
            yield from self.run_steps(self.start_args(cid))
            return
        if hooks or not (yield from _read_exec_fifo(os.path.join(self.state_dir, cid, "exec.fifo"), init_fd)):
            yield from self.run_steps(self.start_args(cid))
        if await_exec:
            yield from _await_exec(init.pid, init_fd)

    def delete(self, cid: str, force: bool = False) -> None:
        block(self.run_steps(self.delete_args(cid, force)))

    def state(self, cid: str) -> Dict[str, Any]:
        return block(self.state_steps(cid))

    def state_steps(self, cid: str) -> Steps[Dict[str, Any]]:
        """`runtime state`: a dict with at least `status`; ContainerNotFound if unknown."""
        argv = self.state_args(cid)
        try:
            out = yield from self.run_steps(argv)
        except RuntimeCommandError as e:
            if is_not_found(e):
                raise ContainerNotFound(f"the runtime has no container {cid!r}") from e
            raise
        try:
            state = json.loads(out)
        except ValueError as e:
            raise RuntimeCommandError(argv, 0, f"unparsable state output {out[:200]!r}") from e
        if not isinstance(state, dict) or "status" not in state:
            raise RuntimeCommandError(argv, 0, f"state output without status: {out[:200]!r}")
        return state

    def run(self, argv: List[str]) -> str:
        """run_steps, blocking."""
        return block(self.run_steps(argv))

    def run_steps(self, argv: List[str]) -> Steps[str]:
        """Run the runtime with `argv`, stdin on /dev/null, through the native spawn; its stdout.

        RuntimeCommandError (argv, status, stderr) if it fails. Its env is
        this process's without the host-only variables (no notify proxy, no
        activation fds).
        """
        env = {k: v for k, v in os.environ.items() if k not in HOST_ONLY_ENV} if any(k in os.environ for k in HOST_ONLY_ENV) else None
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            pid = _native.spawn(argv[0], argv, env, [(devnull, 0), (out_w, 1), (err_w, 2)])
        except OSError as e:
            for fd in (out_r, err_r):
                os.close(fd)
            raise RuntimeCommandError(argv, -1, f"cannot run {argv[0]}: {e}") from e
        finally:
            for fd in (out_w, err_w, devnull):
                os.close(fd)
        captured = {out_r: bytearray(), err_r: bytearray()}
        open_fds = [out_r, err_r]
        try:
            while open_fds:  # both pipes end when it exits
                for fd in (yield Readable(tuple(open_fds))):
                    chunk = os.read(fd, 65536)
                    if chunk:
                        captured[fd] += chunk
                    else:
                        open_fds.remove(fd)
            code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            pid = -1
        finally:
            if pid > 0:  # interrupted: it is ours to end
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            for fd in (out_r, err_r):
                os.close(fd)
        if code != 0:
            raise RuntimeCommandError(argv, code if code > 0 else 128 - code, captured[err_r].decode(errors="replace"))
        return captured[out_r].decode(errors="replace")


def _read_exec_fifo(path: str, init_fd: int) -> Steps[bool]:
    """Read runc's exec.fifo to its end, then remove it; False if that is not
    for us to do (no fifo, or the init gone before it wrote)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        data = b""
        deadline = time.monotonic() + EXEC_FIFO_TIMEOUT_MS / 1000
        while True:
            ready = yield Readable((fd, init_fd), deadline)
            if not ready:
                return False  # runc init never wrote: let runc start say why
            if fd in ready:
                try:
                    chunk = os.read(fd, 64)
                except BlockingIOError:
                    continue
                if not chunk:
                    if data:
                        break  # runc init wrote, then closed it: it is about to exec the process
                    return False
                data += chunk
            elif not data:
                return False  # runc init died before it wrote: runc start reports it
    finally:
        os.close(fd)
    os.unlink(path)
    return True


RUNC_INIT_COMM = b"runc:[2:INIT]"  # the name runc's init process gives itself


def _await_exec(pid: int, init_fd: int, timeout: float = EXEC_FIFO_TIMEOUT_MS / 1000) -> Steps[None]:
    """Wait until runc init has exec'd the container's process, or exited.

    No event says "exec'd": the process's name is looked at in pauses that
    grow from 50 us to 1 ms, each ended early by the init's exit.
    """
    delay, deadline = 50e-6, time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if read_small(f"/proc/{pid}/comm").rstrip(b"\n") != RUNC_INIT_COMM:
                return
        except OSError:
            return  # gone: its exit is the container's to report
        if (yield Readable((init_fd,), time.monotonic() + delay)):
            return
        delay = min(delay * 2, 1e-3)


def is_not_found(error: RuntimeCommandError) -> bool:
    """True if the runtime failed because the container does not exist."""
    text = error.stderr.lower()
    return any(s in text for s in _NOT_FOUND)
